//! `applbuild policy lint` and `applbuild policy explain`, run as the built binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use applbuild::policy::{generate, PolicyInput};

const HASH: &str = "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn applbuild(args: &[&str]) -> Run {
    let Output { status, stdout, stderr } = Command::new(env!("CARGO_BIN_EXE_applbuild")).args(args).env("RUST_LOG", "off").output().expect("applbuild runs");
    Run { code: status.code().unwrap_or(-1), stdout: String::from_utf8_lossy(&stdout).into_owned(), stderr: String::from_utf8_lossy(&stderr).into_owned() }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write policy file");
    path
}

fn release_policy() -> String {
    let mut text = String::from("policy_name=release policy_version=1.0.0\nDEFAULT action=DENY\n");
    for op in ["EXECUTE", "FIRMWARE", "KMODULE", "KEXEC_IMAGE", "KEXEC_INITRAMFS", "POLICY", "X509_CERT"] {
        text.push_str(&format!("DEFAULT op={op} action=DENY\n"));
    }
    text.push_str(&format!("op=EXECUTE dmverity_roothash=sha256:{HASH} dmverity_signature=TRUE action=ALLOW\n"));
    text.push_str(&format!("op=EXECUTE dmverity_roothash=sha256:{HASH} action=DENY\n"));
    text
}

#[test]
fn lint_accepts_clean_policy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(dir.path(), "release.pol", &release_policy());
    let run = applbuild(&["policy", "lint", path.to_str().expect("utf-8 path")]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert_eq!(run.stdout, format!("{}: ok\n", path.display()));
}

#[test]
fn lint_accepts_generated_release_policy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = generate(&PolicyInput { name: "applbuild-qemu", version: "1.0.0", root_hashes: vec![HASH.to_string(), "ab".repeat(32)], require_signature: true });
    let path = write(dir.path(), "generated.pol", &text);
    let run = applbuild(&["policy", "lint", path.to_str().expect("utf-8 path")]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert_eq!(run.stdout, format!("{}: ok\n", path.display()), "the generated policy has warnings");
}

#[test]
fn lint_reports_rejection_with_errno() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        ("op.pol", "policy_name=a policy_version=1.2.3\nDEFAULT action=ALLOW\nop=execute action=DENY\n", "3:1: error: invalid operation `op=execute`; expected `op=` followed by EXECUTE, FIRMWARE, KMODULE, KEXEC_IMAGE, KEXEC_INITRAMFS, POLICY or X509_CERT", "EBADMSG"),
        ("hex.pol", "policy_name=a policy_version=1.2.3\nDEFAULT action=ALLOW\nop=EXECUTE fsverity_digest=sha256:abc action=DENY\n", "3:38: error: the digest has an odd number of hex digits `fsverity_digest=sha256:abc`; expected an even number of hex digits after the `:`", "EINVAL"),
        ("version.pol", "policy_name=a policy_version=1.70000.0\nDEFAULT action=ALLOW\n", "1:32: error: version component is above 65535 `70000`; expected a decimal number from 0 to 65535", "ERANGE"),
    ];
    for (name, text, message, errno) in cases {
        let path = write(dir.path(), name, text);
        let run = applbuild(&["policy", "lint", path.to_str().expect("utf-8 path")]);
        assert_eq!(run.code, 1, "{name}: stderr: {}", run.stderr);
        assert_eq!(run.stdout, format!("{0}:{message}\n{0}: kernel would reject: {errno}\n", path.display()), "{name}");
        assert!(run.stderr.contains("applbuild: error: the kernel would reject 1 of the policy files"), "{name}: stderr: {}", run.stderr);
    }
}

#[test]
fn lint_prints_warnings_and_continues() {
    let dir = tempfile::tempdir().expect("temp dir");
    let warned = write(dir.path(), "warned.pol", "policy_name=w policy_version=1.0.0\nDEFAULT action=DENY\nDEFAULT op=EXECUTE action=DENY\nop=EXECUTE dmverity_signature=TRUE action=ALLOW\n");
    let broken = write(dir.path(), "broken.pol", "policy_name=b policy_version=1.0.0\n");
    let run = applbuild(&["policy", "lint", warned.to_str().expect("utf-8 path"), broken.to_str().expect("utf-8 path")]);
    assert_eq!(run.code, 1, "stderr: {}", run.stderr);
    let warned_name = warned.display().to_string();
    assert!(run.stdout.contains(&format!("{warned_name}:1:1: warning: op=FIRMWARE has no DEFAULT line, so the global default decides it\n")), "{}", run.stdout);
    assert!(
        run.stdout.contains(&format!("{warned_name}:4:12: warning: dmverity_signature=TRUE without dmverity_roothash trusts every dm-verity volume signed by a trusted key, old releases included\n")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(&format!("{warned_name}: ok\n")), "{}", run.stdout);
    assert!(run.stdout.ends_with(&format!("{}: kernel would reject: EBADMSG\n", broken.display())), "{}", run.stdout);
}

#[test]
fn lint_boot_policy_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut text = String::from("policy_name=boot policy_version=0.0.0\nDEFAULT action=DENY\n");
    for op in ["EXECUTE", "FIRMWARE", "KMODULE", "KEXEC_IMAGE", "KEXEC_INITRAMFS", "POLICY", "X509_CERT"] {
        text.push_str(&format!("DEFAULT op={op} action=DENY\n"));
    }
    text.push_str("op=EXECUTE boot_verified=TRUE action=ALLOW\n");
    let path = write(dir.path(), "boot.pol", &text);
    let as_release = applbuild(&["policy", "lint", path.to_str().expect("utf-8 path")]);
    assert!(as_release.stdout.contains(":10:12: warning: boot_verified=TRUE trusts every file on the initramfs"), "{}", as_release.stdout);
    let as_boot = applbuild(&["policy", "lint", "--boot-policy", path.to_str().expect("utf-8 path")]);
    assert_eq!(as_boot.stdout, format!("{}: ok\n", path.display()));
}

#[test]
fn lint_missing_file_fails() {
    let run = applbuild(&["policy", "lint", "/nonexistent/policy.pol"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("applbuild: error: failed to read /nonexistent/policy.pol"), "{}", run.stderr);
}

fn explain(policy: &Path, args: &[&str]) -> Run {
    let mut all = vec!["policy", "explain", policy.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    applbuild(&all)
}

#[test]
fn explain_names_deciding_rule() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(dir.path(), "release.pol", &release_policy());
    let name = path.display();
    let hash = format!("sha256:{HASH}");

    let signed = explain(&path, &["--op", "EXECUTE", "--roothash", &hash, "--signed"]);
    assert_eq!(signed.code, 0, "stderr: {}", signed.stderr);
    assert_eq!(signed.stdout, format!("{name}:10: op=EXECUTE dmverity_roothash=sha256:{} dmverity_signature=TRUE action=ALLOW\ndecision: ALLOW (the first matching rule)\n", HASH.to_uppercase()));

    let unsigned = explain(&path, &["--op", "EXECUTE", "--roothash", &hash]);
    assert_eq!(unsigned.stdout, format!("{name}:11: op=EXECUTE dmverity_roothash=sha256:{} action=DENY\ndecision: DENY (the first matching rule)\n", HASH.to_uppercase()));

    let other = explain(&path, &["--op", "EXECUTE", "--roothash", &format!("sha256:{}", "00".repeat(32)), "--signed"]);
    assert_eq!(other.stdout, format!("{name}:3: DEFAULT op=EXECUTE action=DENY\ndecision: DENY (no rule matched; the operation's default)\n"));

    let module = explain(&path, &["--op", "KMODULE", "--no-file"]);
    assert_eq!(module.stdout, format!("{name}:5: DEFAULT op=KMODULE action=DENY\ndecision: DENY (no rule matched; the operation's default)\n"));

    let unknown = explain(&path, &["--op", "UNKNOWN"]);
    assert_eq!(unknown.stdout, format!("{name}:2: DEFAULT action=DENY\ndecision: DENY (the operation is unknown; the global default)\n"));
}

#[test]
fn explain_global_default_and_boot_verified() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(dir.path(), "boot.pol", "policy_name=boot policy_version=0.0.0\nDEFAULT action=DENY\nop=EXECUTE boot_verified=TRUE action=ALLOW\n");
    let name = path.display();
    let boot = explain(&path, &["--op", "EXECUTE", "--boot-verified"]);
    assert_eq!(boot.stdout, format!("{name}:3: op=EXECUTE boot_verified=TRUE action=ALLOW\ndecision: ALLOW (the first matching rule)\n"));
    let root = explain(&path, &["--op", "EXECUTE", "--fsverity", "sha256:abcd", "--fsverity-signed"]);
    assert_eq!(root.stdout, format!("{name}:2: DEFAULT action=DENY\ndecision: DENY (no rule matched and the operation has no default; the global default)\n"));
}

#[test]
fn explain_rejects_invalid_input() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(dir.path(), "release.pol", &release_policy());

    let operation = explain(&path, &["--op", "execute"]);
    assert_eq!(operation.code, 2);
    assert!(operation.stderr.contains("applbuild: error: invalid operation \"execute\"\nhint: use one of EXECUTE, FIRMWARE"), "{}", operation.stderr);

    let digest = explain(&path, &["--op", "EXECUTE", "--roothash", "3a7b"]);
    assert_eq!(digest.code, 2);
    assert!(digest.stderr.contains("invalid --roothash value \"3a7b\""), "{}", digest.stderr);

    let signed = explain(&path, &["--op", "EXECUTE", "--signed"]);
    assert_eq!(signed.code, 2);
    assert!(signed.stderr.contains("--signed needs --roothash"), "{}", signed.stderr);

    let broken = write(dir.path(), "broken.pol", "policy_name=b policy_version=1.0\nDEFAULT action=DENY\n");
    let run = explain(&broken, &["--op", "EXECUTE"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(&format!("applbuild: error: {}:1:15: the version has fewer than three components `policy_version=1.0`", broken.display())),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("(kernel would reject: EBADMSG)"), "{}", run.stderr);
}
