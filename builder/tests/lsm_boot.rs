//! Boots the default board with the Rust IPE LSM (`lsm = "ipe-rust"`) and
//! checks from the serial console that it registered as `ipe`, activated
//! the boot policy, let the init activate the release policy and enforces
//! with the enforce lock. A second boot uses a test kernel with
//! `CONFIG_SECURITY_IPE_RUST_SELFTEST`, which runs the policy engine's
//! vectors (lsm/ipe/tests/data) at boot, and checks that all of them pass.
//!
//! The differential test builds the board once with the upstream C IPE
//! (`lsm = "ipe"`) and once with the Rust IPE from the same inputs, and
//! boots both. An operation matrix script records exit codes and error
//! messages of execs and securityfs writes, the files of the IPE tree and
//! the IPE audit records the kernel logged. The test compares the two
//! records line by line. The script never writes to `enforce`, because the
//! Rust IPE's enforce lock rejects that by design. Pids, audit serial
//! numbers and timestamps, and the root hash are masked before comparing.
//!
//! Each image gets one extra overlay file, `/etc/appliance-test.sh`, which
//! the appliance's rcS runs before the ready line; it prints `lsm-check`
//! or `diff-check` lines. Needs root, the kernel cache or the Debian build root
//! (~/.cache/applbuild), qemu-system-x86_64 with OVMF and keys/test.
//! `ci/test.sh` runs it with `cargo test --test lsm_boot -- --ignored`.

use std::fs;
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

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repository root")
}

fn applbuild() -> Command {
    Command::new(env!("CARGO_BIN_EXE_applbuild"))
}

/// Runs a command and returns its stdout; panics with stderr on failure.
fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("failed to start {command:?}: {e}"));
    assert!(output.status.success(), "{command:?} failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Writes manifests/firewall.toml with absolute overlay paths and, last,
/// an overlay whose `/etc/appliance-test.sh` contains `script_text`.
fn write_manifest(work: &Path, script_text: &str) -> PathBuf {
    let overlay = work.join("overlay");
    write_signed_policies(&overlay.join("usr/share/lsm-diff"));
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

/// Builds the image of `board` into `<work>/out-<label>`, boots it and
/// returns the console; panics unless the appliance reached its ready line.
fn build_and_boot(work: &Path, board: &Path, label: &str) -> Boot {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let out = work.join(format!("out-{label}"));
    run(applbuild().arg("image").arg(board).arg("--out").arg(&out).env("SOURCE_DATE_EPOCH", "1764806400"));

    let disk = out.join("qemu-x86_64/1.0.0/disk.raw");
    let output = applbuild().arg("run").arg("--test").arg(&disk).arg("--timeout").arg(BOOT_TIMEOUT_SECS.to_string()).output().expect("run applbuild run --test");
    let console = String::from_utf8_lossy(&output.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in console.lines().filter(|line| line.contains("lsm-check") || line.contains("diff-check") || line.contains("ipe:")) {
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
    let console = build_and_boot(work, &board, "selftest").console;

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
    let console = build_and_boot(work, &board, "check").console;
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

/// Builds and boots the board with `lsm` and the matrix script; returns
/// the `diff-check` lines with boot-specific values masked.
fn observe(work: &Path, manifest: &Path, lsm: &str) -> Vec<String> {
    let board = write_board(work, manifest, lsm, &[]);
    let boot = build_and_boot(work, &board, lsm);
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

#[test]
#[ignore = "builds two kernels and boots both: needs root, the kernel cache and qemu; run by ci/test.sh"]
fn c_and_rust_ipe_observe_the_same() {
    let temp = tempfile::tempdir().expect("temporary folder");
    let work = temp.path();
    let manifest = write_manifest(work, MATRIX_SCRIPT);
    let c_lines = observe(work, &manifest, "ipe");
    let rust_lines = observe(work, &manifest, "ipe-rust");
    for line in &rust_lines {
        println!("{line}");
    }

    assert!(c_lines.len() > 20, "too few observations from the C IPE:\n{}", c_lines.join("\n"));
    let mut differences = Vec::new();
    for index in 0..c_lines.len().max(rust_lines.len()) {
        let c_line = c_lines.get(index).map_or("(missing)", String::as_str);
        let rust_line = rust_lines.get(index).map_or("(missing)", String::as_str);
        if c_line != rust_line {
            differences.push(format!("C:    {c_line}\nRust: {rust_line}"));
        }
    }
    assert!(differences.is_empty(), "{} observations differ:\n{}", differences.len(), differences.join("\n"));
}
