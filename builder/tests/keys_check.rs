//! Tests of `applbuild keys check`: each problem of a key folder gives its
//! own failed check, and the command exits 1.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use applbuild::keys::{self, KeyCheck};

fn repo_keys() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys/test")
}

fn copy_test_keys(dir: &Path) {
    fs::create_dir_all(dir).expect("key folder");
    for name in ["key.pem", "cert.pem"] {
        fs::copy(repo_keys().join(name), dir.join(name)).expect("copy test key");
    }
    set_mode(&dir.join("key.pem"), 0o600);
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn find<'a>(checks: &'a [KeyCheck], name: &str) -> &'a KeyCheck {
    checks.iter().find(|check| check.name == name).unwrap_or_else(|| panic!("no {name:?} check in {checks:?}"))
}

fn failed(checks: &[KeyCheck]) -> Vec<&'static str> {
    checks.iter().filter(|check| !check.ok).map(|check| check.name).collect()
}

#[test]
fn test_keys_pass() {
    let dir = tempfile::tempdir().expect("temporary folder");
    copy_test_keys(dir.path());
    let checks = keys::check(dir.path(), SystemTime::now());
    assert_eq!(failed(&checks), Vec::<&str>::new(), "{checks:?}");
    assert_eq!(checks.len(), 7, "{checks:?}");
    assert!(find(&checks, "key size").message.contains("3072"));
}

#[test]
fn group_readable_key_fails_with_hint() {
    let dir = tempfile::tempdir().expect("temporary folder");
    copy_test_keys(dir.path());
    set_mode(&dir.path().join("key.pem"), 0o640);
    let checks = keys::check(dir.path(), SystemTime::now());
    assert_eq!(failed(&checks), ["key file mode"], "{checks:?}");
    let message = &find(&checks, "key file mode").message;
    assert!(message.contains("0640"), "{message}");
    assert!(message.contains("chmod 600"), "{message}");
}

#[test]
fn other_certificate_fails_match() {
    let dir = tempfile::tempdir().expect("temporary folder");
    copy_test_keys(dir.path());
    let other = dir.path().join("other");
    keys::init(&other, 2048, "other").expect("create other key");
    fs::copy(other.join("cert.pem"), dir.path().join("cert.pem")).expect("replace certificate");
    let checks = keys::check(dir.path(), SystemTime::now());
    assert_eq!(failed(&checks), ["key matches certificate"], "{checks:?}");
}

#[test]
fn validity_dates_are_checked() {
    let dir = tempfile::tempdir().expect("temporary folder");
    copy_test_keys(dir.path());
    let before = keys::check(dir.path(), UNIX_EPOCH + Duration::from_secs(1_000_000_000));
    assert_eq!(failed(&before), ["validity"], "{before:?}");
    assert!(find(&before, "validity").message.contains("not valid before"));
    // The test certificate is valid for 100 years from 2026.
    let after = keys::check(dir.path(), UNIX_EPOCH + Duration::from_secs(5_000_000_000));
    assert_eq!(failed(&after), ["validity"], "{after:?}");
    assert!(find(&after, "validity").message.contains("expired"));
}

#[test]
fn small_key_fails_size() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let key = dir.path().join("key.pem");
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:1024", "-nodes", "-days", "30", "-subj", "/CN=small", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(dir.path().join("cert.pem"))
        .output();
    let Ok(made) = made else {
        eprintln!("skipped: openssl not installed");
        return;
    };
    assert!(made.status.success(), "openssl req failed: {}", String::from_utf8_lossy(&made.stderr));
    set_mode(&key, 0o600);
    let checks = keys::check(dir.path(), SystemTime::now());
    assert_eq!(failed(&checks), ["key size"], "{checks:?}");
    assert!(find(&checks, "key size").message.contains("1024"));
}

#[test]
fn missing_files_fail_without_panic() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let checks = keys::check(dir.path(), SystemTime::now());
    assert_eq!(failed(&checks), ["key file mode", "private key", "certificate"], "{checks:?}");
}

#[test]
fn cli_exit_codes() {
    let dir = tempfile::tempdir().expect("temporary folder");
    copy_test_keys(dir.path());
    let binary = env!("CARGO_BIN_EXE_applbuild");
    let output = Command::new(binary).args(["keys", "check"]).arg(dir.path()).output().expect("run applbuild");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().filter(|line| line.starts_with("ok: ")).count(), 7, "{stdout}");

    set_mode(&dir.path().join("key.pem"), 0o644);
    let output = Command::new(binary).args(["--json", "keys", "check"]).arg(dir.path()).output().expect("run applbuild");
    assert_eq!(output.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON output");
    assert_eq!(json["ok"], false);
}

/// Copies the test db key pair next to the release pair.
fn copy_test_db_keys(dir: &Path) {
    for name in [keys::DB_KEY_FILE, keys::DB_CERT_FILE] {
        fs::copy(repo_keys().join(name), dir.join(name)).expect("copy test db key");
    }
    set_mode(&dir.join(keys::DB_KEY_FILE), 0o600);
}

#[test]
fn db_pair_checked_when_present() {
    let dir = tempfile::tempdir().expect("temporary folder");
    copy_test_keys(dir.path());
    copy_test_db_keys(dir.path());
    let checks = keys::check(dir.path(), SystemTime::now());
    assert_eq!(failed(&checks), Vec::<&str>::new(), "{checks:?}");
    assert_eq!(checks.len(), 14, "{checks:?}");
    assert_eq!(checks.iter().filter(|check| check.key == "db").count(), 7, "{checks:?}");

    set_mode(&dir.path().join(keys::DB_KEY_FILE), 0o644);
    let checks = keys::check(dir.path(), SystemTime::now());
    let failures: Vec<&KeyCheck> = checks.iter().filter(|check| !check.ok).collect();
    assert_eq!(failures.len(), 1, "{checks:?}");
    assert_eq!((failures[0].key, failures[0].name), ("db", "key file mode"));
    assert!(failures[0].message.contains("db.key.pem"), "{}", failures[0].message);
}

#[test]
fn db_certificate_of_other_key_fails_match() {
    let dir = tempfile::tempdir().expect("temporary folder");
    copy_test_keys(dir.path());
    copy_test_db_keys(dir.path());
    fs::copy(repo_keys().join("cert.pem"), dir.path().join(keys::DB_CERT_FILE)).expect("replace db.cert.pem");
    let checks = keys::check(dir.path(), SystemTime::now());
    let failures: Vec<(&str, &str)> = checks.iter().filter(|check| !check.ok).map(|check| (check.key, check.name)).collect();
    assert_eq!(failures, [("db", "key matches certificate")], "{checks:?}");
}

#[test]
fn init_rejects_existing_db_files() {
    let dir = tempfile::tempdir().expect("temporary folder");
    copy_test_db_keys(dir.path());
    let output = Command::new(env!("CARGO_BIN_EXE_applbuild")).args(["keys", "init", "--bits", "2048"]).arg(dir.path()).output().expect("run applbuild keys init");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("db.key.pem already exists"), "{stderr}");
    assert!(!dir.path().join("key.pem").exists(), "keys init created key.pem before failing");
}
