//! Tests of `applbuild policy generate`, `sign`, `diff` and `deploy`. They
//! use the repository's default board with a temporary output folder and
//! made-up root hashes, so nothing is built.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use applbuild::policy_lifecycle::{self, GenerateRequest};
use applbuild::{keys, sign};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repository root")
}

fn board() -> PathBuf {
    repo().join("boards/qemu-x86_64.toml")
}

fn hash(digit: char) -> String {
    digit.to_string().repeat(64)
}

fn request(out: &Path, release: &str) -> GenerateRequest {
    GenerateRequest { board: board(), out: out.to_path_buf(), release: Some(release.into()), keep_previous: None, root_hashes: Vec::new(), output: None }
}

/// Writes OUT/qemu-x86_64/<release>/roothash as a build would.
fn fake_build(out: &Path, release: &str, root_hash: &str) {
    let dir = out.join("qemu-x86_64").join(release);
    fs::create_dir_all(&dir).expect("build folder");
    fs::write(dir.join("roothash"), root_hash).expect("write roothash");
}

fn copy_test_keys(dir: &Path) {
    fs::create_dir_all(dir).expect("key folder");
    for name in ["key.pem", "cert.pem"] {
        fs::copy(repo().join("keys/test").join(name), dir.join(name)).expect("copy test key");
    }
    fs::set_permissions(dir.join("key.pem"), fs::Permissions::from_mode(0o600)).expect("chmod key");
}

#[test]
fn generate_from_given_root_hashes() {
    let out = tempfile::tempdir().expect("temporary folder");
    let mut req = request(out.path(), "2.0.0");
    req.root_hashes = vec![hash('a'), hash('b'), hash('a')];
    let outcome = policy_lifecycle::generate(&req).expect("generate");
    assert_eq!(outcome.policy, out.path().join("qemu-x86_64/policy-2.0.0.pol"));
    assert_eq!(outcome.root_hashes, [hash('a'), hash('b')], "duplicates must be dropped");
    let text = fs::read_to_string(&outcome.policy).expect("read policy");
    assert!(text.starts_with("policy_name=applbuild-qemu-x86_64 policy_version=2.0.0\n"), "{text}");
    assert!(text.contains(&format!("op=EXECUTE dmverity_roothash=sha256:{}", hash('b'))), "{text}");
    let state: serde_json::Value = serde_json::from_slice(&fs::read(out.path().join("qemu-x86_64/policy-state.json")).expect("state")).expect("state JSON");
    assert_eq!(state["last_version"], "2.0.0");
}

#[test]
fn generate_rejects_lower_version() {
    let out = tempfile::tempdir().expect("temporary folder");
    let mut req = request(out.path(), "1.2.0");
    req.root_hashes = vec![hash('a')];
    policy_lifecycle::generate(&req).expect("first generate");
    req.release = Some("1.2.0".into());
    policy_lifecycle::generate(&req).expect("same version again");
    req.release = Some("1.1.9".into());
    let err = policy_lifecycle::generate(&req).expect_err("lower version accepted");
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("lower than the last generated policy version 1.2.0"), "{err}");
}

#[test]
fn generate_rejects_invalid_input() {
    let out = tempfile::tempdir().expect("temporary folder");
    for (release, hashes) in [("1.0", vec![hash('a')]), ("1.0.70000", vec![hash('a')]), ("1.0.0", vec!["ABCD".to_string()]), ("1.0.0", vec![hash('A')])] {
        let mut req = request(out.path(), release);
        req.root_hashes = hashes.clone();
        let result = policy_lifecycle::generate(&req);
        assert!(result.is_err(), "release {release} with {hashes:?} was accepted");
    }
    // No --roothash and no build of this release.
    let err = policy_lifecycle::generate(&request(out.path(), "1.0.0")).expect_err("missing build accepted");
    assert!(err.to_string().contains("has no built image"), "{err}");
}

#[test]
fn generate_keeps_previous_built_releases() {
    let out = tempfile::tempdir().expect("temporary folder");
    fake_build(out.path(), "1.0.0", &hash('1'));
    fake_build(out.path(), "1.1.0", &hash('2'));
    fake_build(out.path(), "1.10.0", &hash('4'));
    fake_build(out.path(), "1.2.0", &hash('3'));
    fs::create_dir_all(out.path().join("qemu-x86_64/not-a-release")).expect("folder");

    let mut req = request(out.path(), "1.2.0");
    req.keep_previous = Some(2);
    let outcome = policy_lifecycle::generate(&req).expect("generate");
    assert_eq!(outcome.root_hashes, [hash('3'), hash('2'), hash('1')], "1.10.0 is newer than 1.2.0 and must not be kept");

    req.keep_previous = Some(0);
    let outcome = policy_lifecycle::generate(&req).expect("generate");
    assert_eq!(outcome.root_hashes, [hash('3')]);
}

#[test]
fn sign_writes_verifiable_p7s() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let keys_dir = dir.path().join("keys");
    copy_test_keys(&keys_dir);
    let mut req = request(dir.path(), "1.0.0");
    req.root_hashes = vec![hash('c')];
    let outcome = policy_lifecycle::generate(&req).expect("generate");

    let signed = policy_lifecycle::sign_policy(&outcome.policy, &keys_dir).expect("sign");
    assert_eq!(signed, dir.path().join("qemu-x86_64/policy-1.0.0.pol.p7s"));
    let certificate = keys::load_certificate(&keys_dir).expect("certificate");
    let content = sign::verify_attached(&fs::read(&signed).expect("read p7s"), &certificate).expect("signature verifies");
    assert_eq!(content, fs::read(&outcome.policy).expect("read policy"));

    let broken = dir.path().join("broken.pol");
    fs::write(&broken, "not a policy\n").expect("write");
    assert!(policy_lifecycle::sign_policy(&broken, &keys_dir).is_err(), "an invalid policy was signed");
    assert!(!dir.path().join("broken.pol.p7s").exists());
}

#[test]
fn diff_reports_rules_defaults_and_header() {
    let old = "policy_name=p policy_version=1.0.0\nDEFAULT action=DENY\nDEFAULT op=EXECUTE action=DENY\nop=EXECUTE dmverity_roothash=sha256:aa action=ALLOW\nop=KMODULE dmverity_roothash=sha256:aa action=ALLOW\n";
    let new = "# comment\npolicy_name=p   policy_version=1.1.0\nDEFAULT action=DENY\nDEFAULT op=EXECUTE action=ALLOW\nop=EXECUTE   dmverity_roothash=sha256:aa action=ALLOW\nop=EXECUTE dmverity_roothash=sha256:bb action=ALLOW\n";
    let difference = policy_lifecycle::diff(&policy_lifecycle::parse_parts(old), &policy_lifecycle::parse_parts(new));
    assert_eq!(difference.header, [("policy_version".to_string(), "1.0.0".to_string(), "1.1.0".to_string())]);
    assert_eq!(difference.defaults, [("EXECUTE".to_string(), "DENY".to_string(), "ALLOW".to_string())]);
    assert_eq!(difference.rules_removed, ["op=KMODULE dmverity_roothash=sha256:aa action=ALLOW"]);
    assert_eq!(difference.rules_added, ["op=EXECUTE dmverity_roothash=sha256:bb action=ALLOW"]);
    assert!(!difference.order_changed);
    let lines = difference.lines();
    assert!(lines.contains(&"~ DEFAULT op=EXECUTE action: DENY -> ALLOW".to_string()), "{lines:?}");

    let same = policy_lifecycle::diff(&policy_lifecycle::parse_parts(old), &policy_lifecycle::parse_parts(old));
    assert!(same.is_empty());
}

#[test]
fn diff_notices_reordered_rules() {
    let old = "policy_name=p policy_version=1.0.0\nDEFAULT action=DENY\nop=EXECUTE a action=ALLOW\nop=EXECUTE b action=DENY\n";
    let new = "policy_name=p policy_version=1.0.0\nDEFAULT action=DENY\nop=EXECUTE b action=DENY\nop=EXECUTE a action=ALLOW\n";
    let difference = policy_lifecycle::diff(&policy_lifecycle::parse_parts(old), &policy_lifecycle::parse_parts(new));
    assert!(difference.order_changed);
    assert!(difference.rules_added.is_empty());
    assert!(difference.rules_removed.is_empty());
}

#[test]
fn deploy_plan_and_script() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let keys_dir = dir.path().join("keys");
    copy_test_keys(&keys_dir);
    let mut req = request(dir.path(), "1.3.0");
    req.root_hashes = vec![hash('d')];
    let outcome = policy_lifecycle::generate(&req).expect("generate");
    let signed = policy_lifecycle::sign_policy(&outcome.policy, &keys_dir).expect("sign");
    let size = fs::metadata(&signed).expect("stat").len();

    let plan = policy_lifecycle::deploy_plan(&signed, Some(&keys_dir.join("cert.pem")), "/run/p.p7s").expect("plan");
    assert_eq!(plan.policy_name, "applbuild-qemu-x86_64");
    assert_eq!(plan.policy_version, "1.3.0");
    assert!(plan.commands.contains(&format!("dd if=/run/p.p7s of=\"$target\" bs={size} count=1")), "{:?}", plan.commands);
    assert!(plan.commands.iter().any(|c| c.contains("/sys/kernel/security/ipe/new_policy") && c.contains("policies/applbuild-qemu-x86_64/update")));
    assert!(plan.commands.contains(&"echo 1 > /sys/kernel/security/ipe/policies/applbuild-qemu-x86_64/active".to_string()));

    let script = policy_lifecycle::deploy_script(&plan, &fs::read(&signed).expect("read"));
    let script_path = dir.path().join("deploy.sh");
    fs::write(&script_path, &script).expect("write script");
    let syntax = Command::new("sh").arg("-n").arg(&script_path).status().expect("run sh -n");
    assert!(syntax.success(), "the script has a syntax error:\n{script}");
    // The embedded Base64 decodes back to the signed policy.
    let start = script.find("<<'END_OF_POLICY'\n").expect("here-document") + "<<'END_OF_POLICY'\n".len();
    let end = script.find("END_OF_POLICY\n[").expect("end of here-document");
    let encoded: String = script[start..end].lines().collect();
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).expect("Base64");
    assert_eq!(decoded, fs::read(&signed).expect("read"));

    let other = dir.path().join("other");
    keys::init(&other, 2048, "other").expect("create other key");
    assert!(policy_lifecycle::deploy_plan(&signed, Some(&other.join("cert.pem")), "/run/p.p7s").is_err(), "a signature by another key was accepted");
}
