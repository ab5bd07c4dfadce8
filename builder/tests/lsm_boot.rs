//! Boots the default board with the Rust IPE LSM (`lsm = "ipe-rust"`) and
//! checks from the serial console that it registered as `ipe`, activated
//! the boot policy, let the init activate the release policy and enforces
//! with the enforce lock. A second boot uses a test kernel with
//! `CONFIG_SECURITY_IPE_RUST_SELFTEST`, which runs the policy engine's
//! vectors (lsm/ipe/tests/data) at boot, and checks that all of them pass.
//!
//! The differential test builds the board once with the upstream C IPE
//! (`lsm = "ipe"`) and once with the Rust IPE from the same inputs, and
//! boots both. Both kernels get boards/kernel/test-loaders.config, so
//! module and firmware loading exist in both, and both boots get the same
//! unverified ext4 disk as a second drive. An operation matrix script
//! records exit codes and error messages of execs, PROT_EXEC mappings,
//! module and firmware loads and securityfs writes, the files of the IPE
//! tree and the IPE audit records the kernel logged. The test compares the
//! two records case by case and line by line. Pids, audit serial numbers
//! and timestamps, and the root hash are masked before comparing. The only
//! accepted difference is the enforce toggle (see [`DELIBERATE_DIFFERENCES`]).
//!
//! Each image gets one extra overlay file, `/etc/appliance-test.sh`, which
//! the appliance's rcS runs before the ready line; it prints `lsm-check`
//! or `diff-check` lines. Needs root, the kernel cache or the Debian build root
//! (~/.cache/applbuild), qemu-system-x86_64 with OVMF, keys/test, gcc with a
//! static glibc for the probes of builder/tests/data/tamper, and mke2fs.
//! `ci/test.sh` runs it with `cargo test --test lsm_boot -- --ignored`.

mod common;
use common::{applbuild, repo, run};

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Serialises the tests: both build the board's kernel in the same
/// out-of-tree folder of the build root, and boots are slow under TCG.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Seconds the boot may take under TCG (software emulation), with room for
/// a busy shared host.
const BOOT_TIMEOUT_SECS: u64 = 300;
/// The line the LSM prints at init, up to its version.
const INIT_LINE: &str = "ipe: Integrity Policy Enforcement, Rust implementation ";
/// The line the LSM prints once the compiled-in boot policy is active.
const BOOT_POLICY_LINE: &str = "ipe: boot policy \"applbuild-boot\" version 0.0.0 is active";

/// Test script run by rcS: prints what the Rust LSM exposes in securityfs.
const CHECK_SCRIPT: &str = r#"#!/bin/sh
exec > /dev/console 2>&1
ipe=/sys/kernel/security/ipe
echo "lsm-check lsm: $(cat /sys/kernel/security/lsm)"
echo "lsm-check enforce: $(cat $ipe/enforce)"
for dir in $ipe/policies/*; do
	echo "lsm-check policy: $(cat $dir/name) $(cat $dir/version) active=$(cat $dir/active)"
done
if echo 0 > $ipe/enforce; then
	echo "lsm-check enforce-off: ok"
else
	echo "lsm-check enforce-off: failed"
fi
echo "lsm-check enforce-after: $(cat $ipe/enforce)"
echo "lsm-check done"
"#;

/// The operation matrix. Each observation is one `diff-check` line.
const MATRIX_SCRIPT: &str = r#"#!/bin/sh
exec > /dev/console 2>&1
ipe=/sys/kernel/security/ipe
dmesg -n 1
echo 0 > /proc/sys/kernel/printk_ratelimit

# Runs "$@" once in a subshell and prints its exit status and last
# non-empty output line as case $1, then the IPE audit records (types
# 1400-1499) it caused.
check() {
	case_name=$1
	shift
	dmesg -c > /dev/null
	output=$( ( "$@" ) 2>&1; status=$?; echo; echo "exit=$status")
	status=${output##*exit=}
	result=$(printf '%s\n' "${output%exit=*}" | grep -v '^$' | tail -n 1)
	echo "diff-check $case_name: status=$status output=$result"
	dmesg | grep -o 'type=14[0-9][0-9] .*' | while read -r line; do
		echo "diff-check $case_name audit: $line"
	done
}

mkdir -p /tmp/diff/exec
mount -t tmpfs -o mode=0755 tmpfs /tmp/diff/exec
cp /bin/busybox /tmp/diff/exec/busybox
printf '#!/bin/sh\necho script-ran\n' > /tmp/diff/exec/script.sh
chmod 755 /tmp/diff/exec/script.sh

check exec-verified-root /bin/busybox true
check exec-tmpfs /tmp/diff/exec/busybox true
check exec-tmpfs-script /tmp/diff/exec/script.sh
check script-via-shell /bin/sh /tmp/diff/exec/script.sh

# The probe (builder/tests/data/tamper/probe.c) prints "ok", "ok exit=N" or
# "errno=NAME" for one exec, mapping, module load or securityfs write. The
# same files are on the verified root (the overlay), on tmpfs and on the
# unverified ext4 disk /dev/vdb (see make_unverified_disk).
probe=/usr/libexec/lsm-diff/probe
data=/usr/share/lsm-diff
cp $probe $data/libtamper.so $data/tamper.ko /tmp/diff/exec/
mkdir -p /tmp/diff/exec/firmware
cp $data/firmware/tamper.fw /tmp/diff/exec/firmware/
mkdir -p /tmp/diff/usb
usb_ready=no
if [ -b /dev/vdb ] && mount -t ext4 -o ro /dev/vdb /tmp/diff/usb; then
	usb_ready=yes
fi
echo "diff-check setup-unverified-disk: mounted=$usb_ready"
check probe-exec-verified-root $probe exec $probe noop
check probe-exec-tmpfs $probe exec /tmp/diff/exec/probe noop
check probe-exec-usb $probe exec /tmp/diff/usb/probe noop
for place in verified-root:$data tmpfs:/tmp/diff/exec usb:/tmp/diff/usb; do
	name=${place%%:*}
	folder=${place#*:}
	check "mmap-exec-$name" $probe mmap-exec $folder/libtamper.so
	check "mprotect-exec-$name" $probe mprotect-exec $folder/libtamper.so
	check "finit-module-$name" $probe finit-module $folder/tamper.ko
done
check mmap-exec-anonymous $probe anon-exec
check init-module-usb $probe init-module /tmp/diff/usb/tamper.ko

# Firmware: the loader tries <path parameter>/<name> first, then
# /lib/firmware, which the root does not have, so the request's errno is
# the last path's. The loader's log line shows the errno of the first path.
firmware_path=/sys/module/firmware_class/parameters/path
firmware_trigger=/sys/devices/virtual/misc/test_firmware/trigger_request
for place in verified-root:$data/firmware tmpfs:/tmp/diff/exec/firmware usb:/tmp/diff/usb/firmware; do
	name=${place%%:*}
	folder=${place#*:}
	check "firmware-path-$name" $probe write-text $firmware_path $folder
	check "firmware-$name" $probe write-text $firmware_trigger tamper.fw
	echo "diff-check firmware-$name-log: $(dmesg | grep -o "loading $folder/tamper.fw failed with error -[0-9]*" | tail -n 1)"
done

# Enforce toggling: the only deliberate difference (DELIBERATE_DIFFERENCES
# in lsm_boot.rs). The C IPE switches to permissive mode, the Rust IPE's
# enforce lock rejects both writes. Enforcement is on again afterwards.
check enforce-before-toggle cat $ipe/enforce
check enforce-write-0 $probe write-text $ipe/enforce 0
check enforce-after-write-0 cat $ipe/enforce
check exec-tmpfs-after-write-0 $probe exec /tmp/diff/exec/probe noop
check enforce-write-1 $probe write-text $ipe/enforce 1
check enforce-after-toggle cat $ipe/enforce
check exec-tmpfs-after-toggle $probe exec /tmp/diff/exec/probe noop

printf 'policy_name=diff policy_version=9.0.0\nDEFAULT action=ALLOW\n' > /tmp/diff/unsigned.pol
check new-policy-unsigned sh -c "cat /tmp/diff/unsigned.pol > $ipe/new_policy"
check new-policy-empty sh -c "printf '' > $ipe/new_policy"
check new-policy-garbage sh -c "printf 'garbage' > $ipe/new_policy"

for dir in $ipe/policies/*; do
	name=$(basename "$dir")
	check "read-$name-name" cat "$dir/name"
	check "read-$name-version" cat "$dir/version"
	check "read-$name-active" cat "$dir/active"
	check "read-$name-pkcs7-bytes" sh -c "cat $dir/pkcs7 | wc -c"
	while read -r line; do
		echo "diff-check policy-text-$name: $line"
	done < "$dir/policy"
	check "write-$name-active-0" sh -c "echo 0 > $dir/active"
	check "write-$name-active-bad" sh -c "echo maybe > $dir/active"
	check "write-$name-update-garbage" sh -c "printf 'garbage' > $dir/update"
	check "write-$name-delete-0" sh -c "echo 0 > $dir/delete"
done
# Signed policies from /usr/share/lsm-diff (see write_signed_policies).
signed=/usr/share/lsm-diff
release=$ipe/policies/applbuild-qemu-x86_64
# The kernel needs each message in one write(); busybox cat copies these
# small files (far below its buffer size) in one.
load() {
	cat "$1" > "$2"
}
check update-release-equal load $signed/release-equal.p7s $release/update
check update-release-lower load $signed/release-lower.p7s $release/update
check update-release-other-name load $signed/low.p7s $release/update
check new-policy-low load $signed/low.p7s $ipe/new_policy
check new-policy-low-again load $signed/low.p7s $ipe/new_policy
check activate-low sh -c "echo 1 > $ipe/policies/diff-low/active"
check new-policy-high load $signed/high.p7s $ipe/new_policy
check activate-high sh -c "echo 1 > $ipe/policies/diff-high/active"
check activate-high-again sh -c "echo 1 > $ipe/policies/diff-high/active"
check exec-tmpfs-under-high /tmp/diff/exec/busybox true
check update-high-higher load $signed/high-next.p7s $ipe/policies/diff-high/update
check read-high-version cat $ipe/policies/diff-high/version
check activate-release-lower sh -c "echo 1 > $release/active"
check delete-low sh -c "echo 1 > $ipe/policies/diff-low/delete"
check read-enforce cat $ipe/enforce
check read-success-audit cat $ipe/success_audit
check write-success-audit-bad sh -c "echo maybe > $ipe/success_audit"
check write-success-audit-1 sh -c "echo 1 > $ipe/success_audit"
check exec-verified-root-audited /bin/busybox true
check write-success-audit-0 sh -c "echo 0 > $ipe/success_audit"
check delete-boot-policy sh -c "echo 1 > $ipe/policies/applbuild-boot/delete"
check list-policies sh -c "ls $ipe/policies | tr '\n' ' '"
for dir in $ipe/policies/*; do
	check "delete-$(basename "$dir")" sh -c "echo 1 > $dir/delete"
done
check modes sh -c "ls -l $ipe $ipe/policies/* | awk '{print \$1, \$NF}' | tr '\n' ' '"
echo "diff-check done"
"#;

/// Writes manifests/firewall.toml with absolute overlay paths and, last,
/// an overlay whose `/etc/appliance-test.sh` contains `script_text`. The
/// overlay also gets the signed policies and the probe files (see
/// [`write_probe_files`]) under /usr/libexec/lsm-diff and /usr/share/lsm-diff.
fn write_manifest(work: &Path, script_text: &str) -> PathBuf {
    let overlay = work.join("overlay");
    write_signed_policies(&overlay.join("usr/share/lsm-diff"));
    write_probe_files(&overlay.join("usr/libexec/lsm-diff"), &overlay.join("usr/share/lsm-diff"));
    let script = overlay.join("etc/appliance-test.sh");
    fs::create_dir_all(script.parent().expect("etc folder")).expect("create the overlay");
    fs::write(&script, script_text).expect("write the test script");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("make the test script executable");

    let source = repo().join("manifests/firewall.toml");
    let base = source.parent().expect("manifests folder");
    let mut manifest: toml::Table = fs::read_to_string(&source).expect("read the manifest").parse().expect("parse the manifest");
    let mut overlays: Vec<toml::Value> = manifest["overlays"]
        .as_array()
        .expect("overlays is an array")
        .iter()
        .map(|path| toml::Value::String(base.join(path.as_str().expect("overlay path")).display().to_string()))
        .collect();
    overlays.push(toml::Value::String(overlay.display().to_string()));
    manifest.insert("overlays".into(), toml::Value::Array(overlays));
    let path = work.join("manifest.toml");
    fs::write(&path, toml::to_string(&manifest).expect("serialise the manifest")).expect("write the manifest");
    path
}

/// Compiles the tamper probe (static) and the shared library of
/// builder/tests/data/tamper into `bin` and `data`, and writes `tamper.ko`
/// and `firmware/tamper.fw` of random bytes into `data`. IPE decides on a
/// module or firmware file when the kernel reads it, before anything parses
/// it, so random bytes serve as both.
fn write_probe_files(bin: &Path, data: &Path) {
    let sources = repo().join("builder/tests/data/tamper");
    fs::create_dir_all(bin).expect("create the probe folder");
    fs::create_dir_all(data.join("firmware")).expect("create the firmware folder");
    let gcc = |args: &[&str], source: &str, output: &Path| {
        run(Command::new("gcc").args(["-O2", "-Wall", "-Wextra", "-Werror"]).args(args).arg("-o").arg(output).arg(sources.join(source)));
    };
    gcc(&["-static"], "probe.c", &bin.join("probe"));
    gcc(&["-shared", "-fPIC"], "libtamper.c", &data.join("libtamper.so"));
    for (file, size) in [("tamper.ko", 8192), ("firmware/tamper.fw", 4096)] {
        let mut bytes = vec![0u8; size];
        fs::File::open("/dev/urandom").and_then(|mut random| random.read_exact(&mut bytes)).expect("read /dev/urandom");
        fs::write(data.join(file), bytes).unwrap_or_else(|e| panic!("write {file}: {e}"));
    }
}

/// Makes an ext4 image, never dm-verity protected, with the overlay's probe
/// files at the layout the matrix script expects on /dev/vdb: `probe`,
/// `libtamper.so`, `tamper.ko` and `firmware/tamper.fw`.
fn make_unverified_disk(work: &Path) -> PathBuf {
    let overlay = work.join("overlay");
    let content = work.join("unverified-disk");
    fs::create_dir_all(content.join("firmware")).expect("create the disk content folder");
    for (source, target) in [
        ("usr/libexec/lsm-diff/probe", "probe"),
        ("usr/share/lsm-diff/libtamper.so", "libtamper.so"),
        ("usr/share/lsm-diff/tamper.ko", "tamper.ko"),
        ("usr/share/lsm-diff/firmware/tamper.fw", "firmware/tamper.fw"),
    ] {
        fs::copy(overlay.join(source), content.join(target)).unwrap_or_else(|e| panic!("copy {source} to the unverified disk: {e}"));
    }
    let image = work.join("unverified.ext4");
    run(Command::new("mke2fs").args(["-q", "-F", "-t", "ext4", "-L", "lsm-diff-usb", "-d"]).arg(&content).arg(&image).arg("16M"));
    image
}

/// Policies the matrix script loads, as (file stem, name, version, rules).
const SIGNED_POLICIES: [(&str, &str, &str, &str); 5] = [
    ("release-equal", "applbuild-qemu-x86_64", "1.0.0", "DEFAULT action=DENY\n"),
    ("release-lower", "applbuild-qemu-x86_64", "0.9.0", "DEFAULT action=DENY\n"),
    ("low", "diff-low", "0.5.0", "DEFAULT action=DENY\n"),
    ("high", "diff-high", "2.0.0", "DEFAULT action=ALLOW\n"),
    ("high-next", "diff-high", "2.0.1", "DEFAULT action=ALLOW\nop=EXECUTE boot_verified=TRUE action=DENY\n"),
];

/// Signs each of [`SIGNED_POLICIES`] with keys/test as the kernel expects
/// (attached PKCS#7, no signed attributes) into `<dir>/<stem>.p7s`.
fn write_signed_policies(dir: &Path) {
    fs::create_dir_all(dir).expect("create the policy folder");
    let keys = repo().join("keys/test");
    for (stem, name, version, rules) in SIGNED_POLICIES {
        let text = dir.join(format!("{stem}.pol"));
        fs::write(&text, format!("policy_name={name} policy_version={version}\n{rules}")).expect("write a policy");
        run(Command::new("openssl")
            .args(["smime", "-sign", "-nodetach", "-binary", "-noattr", "-outform", "der", "-md", "sha256"])
            .arg("-signer")
            .arg(keys.join("cert.pem"))
            .arg("-inkey")
            .arg(keys.join("key.pem"))
            .arg("-in")
            .arg(&text)
            .arg("-out")
            .arg(dir.join(format!("{stem}.p7s"))));
    }
}

/// Writes boards/qemu-x86_64.toml with absolute paths, `lsm`, the test
/// keys, `manifest` and the `extra_fragments` after the board's own.
fn write_board(work: &Path, manifest: &Path, lsm: &str, extra_fragments: &[PathBuf]) -> PathBuf {
    let source = repo().join("boards/qemu-x86_64.toml");
    let boards = source.parent().expect("boards folder");
    let mut board: toml::Table = fs::read_to_string(&source).expect("read the board").parse().expect("parse the board");
    board.insert("manifest".into(), manifest.display().to_string().into());
    let kernel = board["kernel"].as_table_mut().expect("[kernel]");
    let mut fragments: Vec<toml::Value> = kernel["config"].as_array().expect("kernel.config").iter().map(|f| boards.join(f.as_str().expect("fragment")).display().to_string().into()).collect();
    fragments.extend(extra_fragments.iter().map(|path| toml::Value::String(path.display().to_string())));
    kernel.insert("config".into(), toml::Value::Array(fragments));
    kernel.insert("lsm".into(), lsm.into());
    let keys = board["keys"].as_table_mut().expect("[keys]");
    keys.insert("dir".into(), repo().join("keys/test").display().to_string().into());
    keys.insert("create_if_missing".into(), false.into());
    let path = work.join(format!("board-{lsm}.toml"));
    fs::write(&path, toml::to_string(&board).expect("serialise the board")).expect("write the board");
    path
}

/// A booted image: its console, its root hash and the SHA-256 of its
/// signed release policy, both in upper-case hex.
struct Boot {
    console: String,
    root_hash: String,
    policy_digest: String,
}

/// Builds the image of `board` into `<work>/out-<label>`, with `init` as
/// the initramfs's /init when given, and boots it with `extra_disks` as
/// further drives (/dev/vdb onwards). Returns the console and panics unless
/// the appliance reached its ready line.
fn build_and_boot(work: &Path, board: &Path, label: &str, init: Option<&Path>, extra_disks: &[&Path]) -> Boot {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let out = work.join(format!("out-{label}"));
    let mut image = applbuild();
    image.arg("image").arg(board).arg("--out").arg(&out).env("SOURCE_DATE_EPOCH", "1764806400");
    if let Some(init) = init {
        image.arg("--init").arg(init);
    }
    run(&mut image);

    let disk = out.join("qemu-x86_64/1.0.0/disk.raw");
    let mut command = applbuild();
    command.arg("run").arg("--test").arg(&disk).arg("--timeout").arg(BOOT_TIMEOUT_SECS.to_string());
    for extra in extra_disks {
        command.arg("--disk").arg(extra);
    }
    let output = command.output().expect("run applbuild run --test");
    let console = String::from_utf8_lossy(&output.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in console.lines().filter(|line| line.contains("lsm-check") || line.contains("diff-check") || line.contains("initramfs-case") || line.contains("ipe:")) {
        println!("{line}");
    }
    assert!(output.status.success(), "applbuild run --test failed ({}):\n{console}", output.status);
    assert!(stdout.contains("appliance ready:"), "no ready line:\n{console}");
    let root_hash = fs::read_to_string(out.join("qemu-x86_64/1.0.0/roothash")).expect("read roothash").trim().to_uppercase();
    let digest = run(Command::new("sha256sum").arg(out.join("qemu-x86_64/1.0.0/policy.p7s")));
    let policy_digest = digest.split_whitespace().next().unwrap_or_default().to_uppercase();
    Boot { console, root_hash, policy_digest }
}

/// Counts the rows of a vector table, without comments and blank lines.
fn table_rows(path: &Path) -> usize {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines().filter(|line| !line.trim().is_empty() && !line.starts_with('#')).count()
}

#[test]
#[ignore = "builds and boots an image: needs root, the kernel cache and qemu; run by ci/test.sh"]
fn kernel_selftest_passes_all_vectors() {
    let temp = tempfile::tempdir().expect("temporary folder");
    let work = temp.path();
    let fragment = work.join("selftest.config");
    fs::write(&fragment, "CONFIG_SECURITY_IPE_RUST_SELFTEST=y\n").expect("write the self test fragment");
    let board = write_board(work, &repo().join("manifests/firewall.toml"), "ipe-rust", &[fragment]);
    let console = build_and_boot(work, &board, "selftest", None, &[]).console;

    let vectors = repo().join("lsm/ipe/tests/data");
    let parse_total = table_rows(&vectors.join("parse/expected.tsv"));
    let eval_total = table_rows(&vectors.join("eval/cases.tsv"));
    assert!(parse_total > 0, "no parse vectors in {}", vectors.display());
    assert!(eval_total > 0, "no evaluation cases in {}", vectors.display());
    let parse_line = format!("ipe: selftest: parse vectors: {parse_total} of {parse_total} passed");
    let eval_line = format!("ipe: selftest: eval cases: {eval_total} of {eval_total} passed");
    assert!(console.contains(&parse_line), "expected `{parse_line}`:\n{console}");
    assert!(console.contains(&eval_line), "expected `{eval_line}`:\n{console}");
}

#[test]
#[ignore = "builds and boots an image: needs root, the kernel cache and qemu; run by ci/test.sh"]
fn rust_lsm_boots_and_enforces() {
    let temp = tempfile::tempdir().expect("temporary folder");
    let work = temp.path();
    let manifest = write_manifest(work, CHECK_SCRIPT);
    let board = write_board(work, &manifest, "ipe-rust", &[]);
    let console = build_and_boot(work, &board, "check", None, &[]).console;
    let has = |text: &str| console.contains(text);

    assert!(has(INIT_LINE), "no Rust IPE init line:\n{console}");
    assert!(has(BOOT_POLICY_LINE), "the boot policy was not activated:\n{console}");
    assert!(has("lsm-check done"), "the check script did not finish:\n{console}");

    let lsm_line = console.lines().find(|line| line.contains("lsm-check lsm: ")).unwrap_or_else(|| panic!("no lsm line:\n{console}"));
    assert!(lsm_line.split(": ").nth(1).unwrap_or("").split(',').any(|name| name.trim() == "ipe"), "ipe is not in /sys/kernel/security/lsm: {lsm_line}");
    assert!(has("lsm-check enforce: 1"), "IPE does not enforce:\n{console}");
    assert!(has("lsm-check policy: applbuild-qemu-x86_64 1.0.0 active=1"), "the release policy is not active:\n{console}");
    assert!(has("lsm-check policy: applbuild-boot 0.0.0 active=0"), "the boot policy is missing or still active:\n{console}");
    assert!(has("lsm-check enforce-off: failed"), "the enforce lock let enforcement be switched off:\n{console}");
    assert!(has("lsm-check enforce-after: 1"), "enforcement is off after the rejected write:\n{console}");
}

/// Builds and boots the board with `lsm`, module and firmware loading
/// (boards/kernel/test-loaders.config), the matrix script and
/// `unverified_disk`; returns the `diff-check` lines with boot-specific
/// values masked.
fn observe(work: &Path, manifest: &Path, lsm: &str, unverified_disk: &Path) -> Vec<String> {
    let loaders = repo().join("boards/kernel/test-loaders.config");
    let board = write_board(work, manifest, lsm, &[loaders]);
    let boot = build_and_boot(work, &board, lsm, None, &[unverified_disk]);
    assert!(boot.console.contains("diff-check done"), "{lsm}: the matrix script did not finish:\n{}", boot.console);
    let lines: Vec<String> = boot
        .console
        .lines()
        .filter_map(|line| line.find("diff-check ").map(|start| normalise(&line[start..])))
        .map(|line| line.replace(&boot.root_hash, "<root hash>").replace(&boot.root_hash.to_lowercase(), "<root hash>"))
        .map(|line| line.replace(&boot.policy_digest, "<release policy digest>"))
        .collect();
    sort_audit_groups(lines)
}

/// Sorts and deduplicates each run of audit lines of one check. With
/// success_audit on, the script's own pipeline (dmesg, grep) execs while
/// dmesg reads the log, so which of those identical records make it into
/// the output, and in what order, varies from boot to boot.
fn sort_audit_groups(lines: Vec<String>) -> Vec<String> {
    let mut sorted = Vec::new();
    let mut group: Vec<String> = Vec::new();
    for line in lines {
        if line.contains(" audit: ") {
            group.push(line);
            continue;
        }
        group.sort();
        group.dedup();
        sorted.append(&mut group);
        sorted.push(line);
    }
    group.sort();
    group.dedup();
    sorted.append(&mut group);
    sorted
}

/// Removes what differs between any two boots: audit timestamps and
/// serial numbers, and pids.
fn normalise(line: &str) -> String {
    let mut words = Vec::new();
    for word in line.split(' ') {
        if word.starts_with("audit(") {
            words.push("audit(…)");
        } else if word.starts_with("pid=") {
            words.push("pid=…");
        } else {
            words.push(word);
        }
    }
    words.join(" ")
}

/// Matrix cases whose lines (result and audit records) may differ between
/// the C IPE and the Rust IPE by design. The board's `[ipe] enforce = true`
/// turns on `SECURITY_IPE_RUST_ENFORCE_LOCK`, so every write to `enforce`
/// fails with EPERM and enforcement stays on. The C IPE of Linux 6.12
/// accepts the writes. [`assert_enforce_toggle`] still checks both sides.
const DELIBERATE_DIFFERENCES: [&str; 4] = ["enforce-write-0", "enforce-after-write-0", "exec-tmpfs-after-write-0", "enforce-write-1"];

/// Splits the `diff-check` lines into (case, lines) in script order. The
/// case is the word after `diff-check`, without its colon, so the audit
/// lines of a check belong to it.
fn group_by_case(lines: &[String]) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for line in lines {
        let case = line.split(' ').nth(1).unwrap_or("").trim_end_matches(':').to_string();
        match groups.last_mut() {
            Some((last, group)) if *last == case => group.push(line.clone()),
            _ => groups.push((case, vec![line.clone()])),
        }
    }
    groups
}

/// Returns the lines of `case`, or panics naming the LSM.
fn case_lines<'a>(groups: &'a [(String, Vec<String>)], case: &str, lsm: &str) -> &'a [String] {
    groups.iter().find(|(name, _)| name == case).map(|(_, lines)| lines.as_slice()).unwrap_or_else(|| panic!("{lsm}: no `diff-check {case}` line"))
}

/// Asserts what each kernel did in [`DELIBERATE_DIFFERENCES`]. The C IPE
/// switched to permissive mode, let the tmpfs exec run with an
/// `enforcing=0` record and accepted the write of 1. The Rust IPE rejected
/// both writes with EPERM and denied the exec.
fn assert_enforce_toggle(c_groups: &[(String, Vec<String>)], rust_groups: &[(String, Vec<String>)]) {
    let c_write = &case_lines(c_groups, "enforce-write-0", "C")[0];
    assert!(c_write.ends_with("status=0 output=ok"), "C: the write of 0 to enforce failed: {c_write}");
    let c_after = &case_lines(c_groups, "enforce-after-write-0", "C")[0];
    assert!(c_after.ends_with("output=0"), "C: enforce is not 0 after the write: {c_after}");
    let c_exec = case_lines(c_groups, "exec-tmpfs-after-write-0", "C");
    assert!(c_exec[0].ends_with("output=ok exit=0"), "C: the tmpfs exec did not run in permissive mode: {}", c_exec[0]);
    assert!(c_exec.iter().any(|line| line.contains("type=1420 ") && line.contains("enforcing=0")), "C: no enforcing=0 record for the tmpfs exec: {c_exec:#?}");
    let c_restore = &case_lines(c_groups, "enforce-write-1", "C")[0];
    assert!(c_restore.ends_with("status=0 output=ok"), "C: the write of 1 to enforce failed: {c_restore}");

    let rust_write = &case_lines(rust_groups, "enforce-write-0", "Rust")[0];
    assert!(rust_write.ends_with("status=1 output=errno=EPERM"), "Rust: the enforce lock did not reject the write of 0: {rust_write}");
    let rust_after = &case_lines(rust_groups, "enforce-after-write-0", "Rust")[0];
    assert!(rust_after.ends_with("output=1"), "Rust: enforce is not 1 after the rejected write: {rust_after}");
    let rust_exec = case_lines(rust_groups, "exec-tmpfs-after-write-0", "Rust");
    assert!(rust_exec[0].ends_with("output=errno=EACCES"), "Rust: the tmpfs exec was not denied: {}", rust_exec[0]);
    let rust_restore = &case_lines(rust_groups, "enforce-write-1", "Rust")[0];
    assert!(rust_restore.ends_with("status=1 output=errno=EPERM"), "Rust: the enforce lock did not reject the write of 1: {rust_restore}");
}

#[test]
#[ignore = "builds two kernels and boots both: needs root, the kernel cache and qemu; run by ci/test.sh"]
fn c_and_rust_ipe_observe_the_same() {
    let temp = tempfile::tempdir().expect("temporary folder");
    let work = temp.path();
    let manifest = write_manifest(work, MATRIX_SCRIPT);
    let unverified_disk = make_unverified_disk(work);
    let c_lines = observe(work, &manifest, "ipe", &unverified_disk);
    let rust_lines = observe(work, &manifest, "ipe-rust", &unverified_disk);
    for line in &rust_lines {
        println!("{line}");
    }

    assert!(c_lines.len() > 20, "too few observations from the C IPE:\n{}", c_lines.join("\n"));
    assert!(c_lines.iter().any(|line| line == "diff-check setup-unverified-disk: mounted=yes"), "the C boot did not mount the unverified disk:\n{}", c_lines.join("\n"));
    assert!(!c_lines.iter().any(|line| line.starts_with("diff-check firmware-path-") && !line.ends_with("output=ok")), "the C boot could not set the firmware path:\n{}", c_lines.join("\n"));

    let c_groups = group_by_case(&c_lines);
    let rust_groups = group_by_case(&rust_lines);
    assert_enforce_toggle(&c_groups, &rust_groups);

    let deliberate: BTreeSet<&str> = DELIBERATE_DIFFERENCES.into_iter().collect();
    let compared = |groups: &[(String, Vec<String>)]| -> Vec<String> {
        groups.iter().filter(|(case, _)| !deliberate.contains(case.as_str())).flat_map(|(_, lines)| lines.iter().cloned()).collect()
    };
    let c_compared = compared(&c_groups);
    let rust_compared = compared(&rust_groups);
    let mut differences = Vec::new();
    for index in 0..c_compared.len().max(rust_compared.len()) {
        let c_line = c_compared.get(index).map_or("(missing)", String::as_str);
        let rust_line = rust_compared.get(index).map_or("(missing)", String::as_str);
        if c_line != rust_line {
            differences.push(format!("C:    {c_line}\nRust: {rust_line}"));
        }
    }
    assert!(differences.is_empty(), "{} observations differ:\n{}", differences.len(), differences.join("\n"));
}

/// Result lines of builder/tests/data/lsm/initramfs_probe.c that both
/// kernels must print, in order. The boot policy lets boot_verified files,
/// the initramfs's among them, execute and be mapped executable. The
/// release policy has no boot_verified rule, so once it is active the same
/// operations on /init fail with EACCES.
const INITRAMFS_RESULTS: [&str; 13] = [
    "initramfs-case mount-proc: ok",
    "initramfs-case mount-sysfs: ok",
    "initramfs-case mount-devtmpfs: ok",
    "initramfs-case mount-securityfs: ok",
    "initramfs-case exec-boot-policy: ok",
    "initramfs-case mmap-exec-boot-policy: ok",
    "initramfs-case mprotect-exec-boot-policy: ok",
    "initramfs-case load-release-policy: ok",
    "initramfs-case activate-release-policy: ok",
    "initramfs-case exec-release-policy: errno=EACCES",
    "initramfs-case mmap-exec-release-policy: errno=EACCES",
    "initramfs-case mprotect-exec-release-policy: errno=EACCES",
    "appliance ready: probe done",
];

/// Audit records the probe must find for each kernel, as (type, text the
/// record contains): the policy load, the activation and one denial per
/// hook on /init. Further records pass if both kernels log them.
const INITRAMFS_AUDIT: [(&str, &str); 5] = [
    ("type=1422", "policy_name=\"applbuild-qemu-x86_64\" policy_version=1.0.0"),
    ("type=1421", "old_active_pol_name=\"applbuild-boot\""),
    ("type=1420", "ipe_hook=BPRM_CHECK enforcing=1 pid=… comm=\"init\" path=\"/init\" dev=\"rootfs\""),
    ("type=1420", "ipe_hook=MMAP enforcing=1 pid=… comm=\"init\" path=\"/init\" dev=\"rootfs\""),
    ("type=1420", "ipe_hook=MPROTECT enforcing=1 pid=… comm=\"init\" path=\"/init\" dev=\"rootfs\""),
];

/// Compiles the initramfs probe, builds the board with `lsm`, the default
/// kernel fragments and the probe as /init, boots it and returns the
/// probe's lines with boot-specific values masked.
fn observe_initramfs(work: &Path, lsm: &str) -> Vec<String> {
    let probe = work.join("initramfs-probe");
    let source = repo().join("builder/tests/data/lsm/initramfs_probe.c");
    run(Command::new("gcc").args(["-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o"]).arg(&probe).arg(&source));
    let board = write_board(work, &repo().join("manifests/firewall.toml"), lsm, &[]);
    let boot = build_and_boot(work, &board, &format!("initramfs-{lsm}"), Some(&probe), &[]);
    boot.console
        .lines()
        .filter_map(|line| line.find("initramfs-case ").or_else(|| line.find("appliance ready:")).map(|start| normalise(&line[start..])))
        .map(|line| line.replace(&boot.policy_digest, "<release policy digest>"))
        .collect()
}

#[test]
#[ignore = "builds two images and boots both: needs root, the kernel cache, gcc with a static glibc and qemu; run by ci/test.sh"]
fn initramfs_exec_matches_c_ipe() {
    let temp = tempfile::tempdir().expect("temporary folder");
    let work = temp.path();
    let c_lines = observe_initramfs(work, "ipe");
    let rust_lines = observe_initramfs(work, "ipe-rust");
    for line in &rust_lines {
        println!("{line}");
    }

    for (lsm, lines) in [("C", &c_lines), ("Rust", &rust_lines)] {
        let results: Vec<&str> = lines.iter().filter(|line| !line.starts_with("initramfs-case audit: ")).map(String::as_str).collect();
        assert_eq!(results, INITRAMFS_RESULTS, "{lsm}: unexpected probe results:\n{}", lines.join("\n"));
        let audit: Vec<&str> = lines.iter().filter_map(|line| line.strip_prefix("initramfs-case audit: ")).collect();
        for (record_type, text) in INITRAMFS_AUDIT {
            assert!(
                audit.iter().any(|record| record.starts_with(&format!("{record_type} ")) && record.contains(text)),
                "{lsm}: no {record_type} record with `{text}`:\n{}",
                audit.join("\n")
            );
        }
    }

    let mut differences = Vec::new();
    for index in 0..c_lines.len().max(rust_lines.len()) {
        let c_line = c_lines.get(index).map_or("(missing)", String::as_str);
        let rust_line = rust_lines.get(index).map_or("(missing)", String::as_str);
        if c_line != rust_line {
            differences.push(format!("C:    {c_line}\nRust: {rust_line}"));
        }
    }
    assert!(differences.is_empty(), "{} initramfs observations differ:\n{}", differences.len(), differences.join("\n"));
}

/// A boot policy the Rust LSM cannot parse stops the boot with a panic that
/// names the policy option, where upstream IPE only warns and runs with no
/// policy at all. The kernel for this test differs from the default one only
/// in its boot policy, given through `APPLBUILD_TEST_BOOT_POLICY_FILE`, so
/// a first run rebuilds the LSM folder and relinks (cached afterwards).
#[test]
#[ignore = "builds a kernel with a broken boot policy and boots it: needs root, the kernel cache and qemu; run by ci/test.sh"]
fn malformed_boot_policy_panics() {
    let work = tempfile::tempdir().expect("temporary folder");
    // A version with two parts is rejected with EBADMSG.
    let policy = work.path().join("broken-boot.pol");
    std::fs::write(&policy, "policy_name=broken-boot policy_version=1.2\nDEFAULT action=ALLOW\n").expect("write the policy");
    let out = work.path().join("out");
    let board = repo().join("boards/qemu-x86_64.toml");
    run(applbuild()
        .arg("image")
        .arg(&board)
        .arg("--keys")
        .arg(repo().join("keys/test"))
        .arg("--out")
        .arg(&out)
        .env("APPLBUILD_TEST_BOOT_POLICY_FILE", &policy));

    let output = applbuild()
        .args(["run", "--test", "--timeout", "180"])
        .arg(&board)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run applbuild run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "the boot must fail:\n{stderr}");
    let panic_line = stderr.lines().find(|line| line.contains("Kernel panic")).unwrap_or_else(|| panic!("no kernel panic on the console:\n{stderr}"));
    assert!(panic_line.contains("ipe: the boot policy"), "the panic does not name the boot policy: {panic_line}");
    assert!(panic_line.contains("failed to parse"), "the panic does not say the policy failed to parse: {panic_line}");
    assert!(!stderr.contains("appliance ready:"), "the appliance came up with a broken boot policy");
    assert!(!stderr.contains("applbuild-init:"), "the init ran although the boot policy failed to parse");
}
