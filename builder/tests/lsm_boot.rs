//! Boots the default board with the Rust IPE LSM (`lsm = "ipe-rust"`) and
//! checks from the serial console that it registered as `ipe`, activated
//! the boot policy, let the init activate the release policy and enforces
//! with the enforce lock. A second boot uses a test kernel with
//! `CONFIG_SECURITY_IPE_RUST_SELFTEST`, which runs the policy engine's
//! vectors (lsm/ipe/tests/data) at boot, and checks that all of them pass.
//!
//! The image gets one extra overlay file, `/etc/appliance-test.sh`, which
//! the appliance's rcS runs before the ready line; it prints `lsm-check`
//! lines. Needs root, the kernel cache or the Debian build root
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

/// Writes manifests/firewall.toml with absolute overlay paths and the check
/// script's overlay last.
fn write_manifest(work: &Path) -> PathBuf {
    let overlay = work.join("overlay");
    let script = overlay.join("etc/appliance-test.sh");
    fs::create_dir_all(script.parent().expect("etc folder")).expect("create the overlay");
    fs::write(&script, CHECK_SCRIPT).expect("write the check script");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("make the check script executable");

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

/// Writes boards/qemu-x86_64.toml with absolute paths, the Rust LSM, the
/// test keys, `manifest` and the `extra_fragments` after the board's own.
fn write_board(work: &Path, manifest: &Path, extra_fragments: &[PathBuf]) -> PathBuf {
    let source = repo().join("boards/qemu-x86_64.toml");
    let boards = source.parent().expect("boards folder");
    let mut board: toml::Table = fs::read_to_string(&source).expect("read the board").parse().expect("parse the board");
    board.insert("manifest".into(), manifest.display().to_string().into());
    let kernel = board["kernel"].as_table_mut().expect("[kernel]");
    let mut fragments: Vec<toml::Value> = kernel["config"].as_array().expect("kernel.config").iter().map(|f| boards.join(f.as_str().expect("fragment")).display().to_string().into()).collect();
    fragments.extend(extra_fragments.iter().map(|path| toml::Value::String(path.display().to_string())));
    kernel.insert("config".into(), toml::Value::Array(fragments));
    kernel.insert("lsm".into(), "ipe-rust".into());
    let keys = board["keys"].as_table_mut().expect("[keys]");
    keys.insert("dir".into(), repo().join("keys/test").display().to_string().into());
    keys.insert("create_if_missing".into(), false.into());
    let path = work.join("board.toml");
    fs::write(&path, toml::to_string(&board).expect("serialise the board")).expect("write the board");
    path
}

/// Builds the image of `board` into `<work>/out`, boots it and returns the
/// console; panics unless the appliance reached its ready line.
fn build_and_boot(work: &Path, board: &Path) -> String {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let out = work.join("out");
    run(applbuild().arg("image").arg(board).arg("--out").arg(&out).env("SOURCE_DATE_EPOCH", "1764806400"));

    let disk = out.join("qemu-x86_64/1.0.0/disk.raw");
    let output = applbuild().arg("run").arg("--test").arg(&disk).arg("--timeout").arg(BOOT_TIMEOUT_SECS.to_string()).output().expect("run applbuild run --test");
    let console = String::from_utf8_lossy(&output.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in console.lines().filter(|line| line.contains("lsm-check") || line.contains("ipe:")) {
        println!("{line}");
    }
    assert!(output.status.success(), "applbuild run --test failed ({}):\n{console}", output.status);
    assert!(stdout.contains("appliance ready:"), "no ready line:\n{console}");
    console
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
    let board = write_board(work, &repo().join("manifests/firewall.toml"), &[fragment]);
    let console = build_and_boot(work, &board);

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
    let manifest = write_manifest(work);
    let board = write_board(work, &manifest, &[]);
    let console = build_and_boot(work, &board);
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
