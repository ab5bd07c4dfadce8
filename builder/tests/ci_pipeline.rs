//! The CI pipeline scripts of `ci/pipeline/`, run in job order on a
//! temporary user repository, and the kernel cache sharing across a board
//! matrix.
//!
//! The user repository holds copies of `boards/`, `manifests/` and the
//! release certificate (the committed test certificate, in
//! `keys/release/cert.pem`), and links this source tree as `applbuild/`,
//! the place the templates expect the git submodule. The private key only
//! reaches the scripts through `APPLBUILD_SIGNING_KEY`, as a CI secret would.
//!
//! The ignored tests use the real applbuild cache (`~/.cache/applbuild` or
//! `APPLBUILD_CACHE`): its kernel for the test certificate is the one
//! `ci/test.sh` builds anyway, so a temporary cache would cost another
//! kernel build (6 to 15 minutes). They never run `cache-trim.sh` on it.
//! The tests without `#[ignore]` use an empty temporary cache.

mod common;

use common::repo;
use std::borrow::BorrowMut;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary user repository with `boards/qemu-x86_64.toml` signing for
/// `keys/release`, which holds only the certificate.
struct UserRepo {
    dir: tempfile::TempDir,
}

impl UserRepo {
    fn new() -> UserRepo {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        copy_tree(&repo().join("boards/kernel"), &root.join("boards/kernel"));
        copy_tree(&repo().join("manifests"), &root.join("manifests"));
        let board = fs::read_to_string(repo().join("boards/qemu-x86_64.toml")).unwrap();
        let board = board.replace("dir = \"../keys/dev\"", "dir = \"../keys/release\"").replace("create_if_missing = true", "create_if_missing = false");
        fs::write(root.join("boards/qemu-x86_64.toml"), board).unwrap();
        fs::create_dir_all(root.join("keys/release")).unwrap();
        fs::copy(repo().join("keys/test/cert.pem"), root.join("keys/release/cert.pem")).unwrap();
        symlink(repo(), root.join("applbuild")).unwrap();
        let repo_dir = UserRepo { dir };
        git(repo_dir.path(), &["init", "-q"]);
        git(repo_dir.path(), &["add", "-A"]);
        git(repo_dir.path(), &["-c", "user.name=CI test", "-c", "user.email=ci@example.invalid", "commit", "-q", "-m", "boards"]);
        repo_dir
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a copy of the default board named `name`, with its own
    /// manifest whose host name is `name`, and `extra_fragment` appended to
    /// its kernel config fragments.
    fn add_board(&self, name: &str, extra_fragment: Option<&str>) {
        let root = self.path();
        let manifest = fs::read_to_string(root.join("manifests/firewall.toml")).unwrap().replace("hostname = \"firewall\"", &format!("hostname = \"{name}\""));
        fs::write(root.join(format!("manifests/{name}.toml")), manifest).unwrap();
        let mut board = fs::read_to_string(root.join("boards/qemu-x86_64.toml")).unwrap();
        board = board.replace("name = \"qemu-x86_64\"", &format!("name = \"{name}\"")).replace("../manifests/firewall.toml", &format!("../manifests/{name}.toml"));
        if let Some(fragment) = extra_fragment {
            board = board.replace("\"kernel/qemu-x86_64.config\"]", &format!("\"kernel/qemu-x86_64.config\", \"{fragment}\"]"));
            assert!(board.contains(fragment), "the config line of the board changed");
        }
        fs::write(root.join(format!("boards/{name}.toml")), board).unwrap();
    }

    /// Returns a command running `applbuild/ci/pipeline/SCRIPT` in the repository
    /// with the binary under test and no signing secrets.
    fn script(&self, script: &str) -> Command {
        let mut command = Command::new(self.path().join("applbuild/ci/pipeline").join(script));
        command.current_dir(self.path()).env("APPLBUILD", env!("CARGO_BIN_EXE_applbuild")).env("APPLBUILD_KEYS", "keys/release").env_remove("APPLBUILD_SIGNING_KEY").env_remove("APPLBUILD_PKCS11_URI").env_remove("APPLBUILD_DB_SIGNING_KEY").env_remove("APPLBUILD_DB_PKCS11_URI").env_remove("APPLBUILD_RELEASE");
        command
    }
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap();
        }
    }
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git").current_dir(dir).args(args).status().unwrap();
    assert!(status.success(), "git {args:?} failed");
}

/// Runs `command` and returns its output, printing both streams so that a
/// failing test shows the scripts' messages.
fn output_of(mut command: impl BorrowMut<Command>) -> Output {
    let command = command.borrow_mut();
    // Program and arguments only: the environment may hold the signing key.
    let shown = format!("{} {}", command.get_program().to_string_lossy(), command.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
    let output = command.output().unwrap_or_else(|e| panic!("failed to start {shown}: {e}"));
    eprintln!("$ {shown}\n{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    output
}

/// Runs `command`, asserts success, and returns its stdout.
fn success(mut command: impl BorrowMut<Command>) -> String {
    let command = command.borrow_mut();
    let output = output_of(&mut *command);
    assert!(output.status.success(), "{:?} failed with {}", command.get_program(), output.status);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `command` and asserts that it exits with `code`; returns stderr.
fn fails_with(mut command: impl BorrowMut<Command>, code: i32) -> String {
    let command = command.borrow_mut();
    let output = output_of(&mut *command);
    assert_eq!(output.status.code(), Some(code), "exit code of {:?}", command.get_program());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Returns the value of `name=value` in `lines`.
fn value<'a>(lines: &'a str, name: &str) -> Option<&'a str> {
    lines.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
}

fn cache_key(user: &UserRepo, board: &str, cache: &Path) -> String {
    let mut command = common::applbuild();
    command.current_dir(user.path()).env("APPLBUILD_CACHE", cache).args(["cache-key", &format!("boards/{board}.toml"), "--keys", "keys/release"]);
    success(&mut command)
}

#[test]
fn cache_key_shared_by_renamed_board() {
    let user = UserRepo::new();
    user.add_board("edge-a", None);
    user.add_board("edge-loaders", Some("kernel/test-loaders.config"));
    let cache = tempfile::tempdir().unwrap();

    let first = cache_key(&user, "qemu-x86_64", cache.path());
    let renamed = cache_key(&user, "edge-a", cache.path());
    let extra_fragment = cache_key(&user, "edge-loaders", cache.path());

    assert_eq!(value(&renamed, "board"), Some("edge-a"));
    assert_eq!(value(&first, "kernel-inputs"), value(&renamed, "kernel-inputs"));
    assert_ne!(value(&first, "kernel-inputs"), value(&extra_fragment, "kernel-inputs"));
    assert_eq!(value(&first, "toolchain"), value(&extra_fragment, "toolchain"));
    assert_eq!(value(&first, "debs"), value(&renamed, "debs"));
    // Without a build root the kernel source version, and so the entry, is unknown.
    assert_eq!(value(&first, "kernel"), None);
    assert!(!cache.path().join("toolchain").exists(), "cache-key must not make the build root");
}

#[test]
fn cache_key_changes_with_certificate_and_enforce() {
    let user = UserRepo::new();
    let cache = tempfile::tempdir().unwrap();
    let before = cache_key(&user, "qemu-x86_64", cache.path());

    let board_path = user.path().join("boards/qemu-x86_64.toml");
    let board = fs::read_to_string(&board_path).unwrap();
    fs::write(&board_path, board.replace("enforce = true", "enforce = false")).unwrap();
    let permissive = cache_key(&user, "qemu-x86_64", cache.path());
    fs::write(&board_path, board).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let mut openssl = Command::new("openssl");
    openssl.args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=other", "-days", "1", "-keyout"]).arg(keys.path().join("key.pem")).arg("-out").arg(user.path().join("keys/release/cert.pem"));
    success(&mut openssl);
    let other_cert = cache_key(&user, "qemu-x86_64", cache.path());

    assert_ne!(value(&before, "kernel-inputs"), value(&permissive, "kernel-inputs"));
    assert_ne!(value(&before, "kernel-inputs"), value(&other_cert, "kernel-inputs"));
}

#[test]
fn scripts_reject_missing_inputs() {
    let user = UserRepo::new();

    let stderr = fails_with(user.script("build.sh").arg("no-such-board"), 2);
    assert!(stderr.contains("boards/no-such-board.toml not found"), "{stderr}");
    let stderr = fails_with(user.script("sign.sh"), 2);
    assert!(stderr.contains("usage: sign.sh BOARD"), "{stderr}");
    let stderr = fails_with(user.script("cache-trim.sh").env_remove("APPLBUILD_CACHE"), 2);
    assert!(stderr.contains("APPLBUILD_CACHE is unset"), "{stderr}");
}

/// Runs the pipeline's jobs in the order of the templates: cache keys, kernels,
/// unsigned build, signing from the secret, offline verification, boot
/// test, publishing with SHA256SUMS, and two release jobs.
#[test]
#[ignore = "needs root and the kernel build root; builds an image (about 30 s with the kernel cached)"]
fn sign_job_signs_uki_for_secure_boot() {
    let user = UserRepo::new();
    let root = user.path();
    let board = fs::read_to_string(root.join("boards/qemu-x86_64.toml")).unwrap();
    assert!(board.contains("[secure_boot]\nsign = false"), "the default board's [secure_boot] table changed");
    fs::write(root.join("boards/qemu-x86_64.toml"), board.replace("[secure_boot]\nsign = false", "[secure_boot]\nsign = true")).unwrap();
    fs::copy(repo().join("keys/test/db.cert.pem"), root.join("keys/release/db.cert.pem")).unwrap();
    success(user.script("build.sh").arg("qemu-x86_64"));
    let key_pem = fs::read_to_string(repo().join("keys/test/key.pem")).unwrap();
    let db_key_pem = fs::read_to_string(repo().join("keys/test/db.key.pem")).unwrap();

    let stderr = fails_with(user.script("sign.sh").arg("qemu-x86_64").env("APPLBUILD_SIGNING_KEY", &key_pem), 2);
    assert!(stderr.contains("APPLBUILD_DB_SIGNING_KEY"), "signing a Secure Boot board without the db key must name its secret: {stderr}");

    let key_tmp = tempfile::tempdir().unwrap();
    let signed = output_of(
        user.script("sign.sh").arg("qemu-x86_64").env("APPLBUILD_SIGNING_KEY", &key_pem).env("APPLBUILD_DB_SIGNING_KEY", &db_key_pem).env("TMPDIR", key_tmp.path()),
    );
    assert!(signed.status.success(), "sign.sh with both keys failed");
    let printed = format!("{}{}", String::from_utf8_lossy(&signed.stdout), String::from_utf8_lossy(&signed.stderr));
    assert!(!printed.contains("PRIVATE KEY"), "sign.sh printed a key");
    assert_eq!(fs::read_dir(key_tmp.path()).unwrap().count(), 0, "sign.sh left its key folder behind");
    let report = success(user.script("verify.sh").arg("qemu-x86_64"));
    assert!(report.contains("secure boot signature"), "verify.sh did not check the UKI signature:\n{report}");
    assert!(!report.contains("FAILED"), "{report}");
}

#[test]
#[ignore = "needs root, the kernel build root and QEMU; builds and boots an image (about 2 minutes with the kernel cached)"]
fn pipeline_jobs_in_order() {
    let user = UserRepo::new();
    let scratch = tempfile::tempdir().unwrap();
    let key_pem = fs::read_to_string(repo().join("keys/test/key.pem")).unwrap();

    // Setup: packages are installed by .ci/run before this test runs.
    let version = success(user.script("setup.sh").env("APPLBUILD_SKIP_PACKAGES", "1"));
    assert!(version.starts_with("applbuild "), "{version}");

    // The kernels job.
    let keys = success(user.script("cache-key.sh").arg("--kernels"));
    assert_eq!(value(&keys, "boards"), Some("[\"qemu-x86_64\"]"));
    assert!(value(&keys, "toolchain").unwrap().starts_with("applbuild-toolchain-trixie-"), "{keys}");
    assert!(value(&keys, "debs").unwrap().starts_with("applbuild-debs-"), "{keys}");
    assert!(value(&keys, "kernels").unwrap().starts_with("applbuild-kernels-"), "{keys}");
    let kernels = success(user.script("kernels.sh"));
    assert!(kernels.starts_with("boards/qemu-x86_64.toml ipe-rust-"), "{kernels}");

    // The build job: an unsigned image.
    let summary = success(user.script("build.sh").arg("qemu-x86_64"));
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["kernel_cached"], true, "{summary}");
    let output = user.path().join("out/qemu-x86_64/1.0.0");
    assert!(output.join("signing-inputs").is_dir());
    assert!(!output.join("roothash.p7s").exists());

    // The sign job: no secret, then the key from the secret.
    let stderr = fails_with(user.script("sign.sh").arg("qemu-x86_64"), 2);
    assert!(stderr.contains("APPLBUILD_SIGNING_KEY"), "{stderr}");
    let key_tmp = scratch.path().join("tmp");
    fs::create_dir(&key_tmp).unwrap();
    let signed = output_of(user.script("sign.sh").arg("qemu-x86_64").env("APPLBUILD_SIGNING_KEY", &key_pem).env("TMPDIR", &key_tmp));
    assert!(signed.status.success(), "sign.sh failed");
    let printed = format!("{}{}", String::from_utf8_lossy(&signed.stdout), String::from_utf8_lossy(&signed.stderr));
    assert!(!printed.contains("PRIVATE KEY"), "sign.sh printed the key");
    assert_eq!(fs::read_dir(&key_tmp).unwrap().count(), 0, "sign.sh left its key folder behind");
    assert!(output.join("roothash.p7s").is_file());
    assert!(!output.join("signing-inputs").exists());

    let report = success(user.script("verify.sh").arg("qemu-x86_64"));
    assert!(!report.contains("FAILED"), "{report}");
    assert!(report.contains("ok: root hash signature"), "{report}");
    let ready = success(user.script("boot-test.sh").arg("qemu-x86_64"));
    assert!(ready.contains("appliance ready: release 1.0.0"), "{ready}");

    // Publishing: every output file, with a SHA256SUMS that sha256sum -c accepts.
    let published = success(user.script("publish.sh").arg("images"));
    assert_eq!(published.trim(), "images/qemu-x86_64/1.0.0");
    let release_dir = user.path().join("images/qemu-x86_64/1.0.0");
    let sums = fs::read_to_string(release_dir.join("SHA256SUMS")).unwrap();
    let mut listed: Vec<&str> = sums.lines().map(|line| line.split_once("  ").unwrap().1).collect();
    listed.sort();
    let mut expected: Vec<String> = fs::read_dir(&output).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    success(Command::new("sha256sum").current_dir(&release_dir).args(["-c", "SHA256SUMS"]));
    fails_with(user.script("publish.sh").arg("images"), 2);

    // The first release job: no earlier policy in releases/.
    let stderr = fails_with(user.script("release.sh").arg("qemu-x86_64").env("APPLBUILD_OUT", "images"), 2);
    assert!(stderr.contains("APPLBUILD_SIGNING_KEY"), "{stderr}");
    let first = release(&user, &key_pem, None);
    assert_eq!(first, user.path().join("release/qemu-x86_64/1.0.0"));
    let changelog = fs::read_to_string(first.join("CHANGELOG-policy.md")).unwrap();
    assert!(changelog.contains("First released policy"), "{changelog}");
    check_signed_policy(&first, "1.0.0");

    // Commit it, as docs/ci.md describes, and release the next version. The
    // committed policy stands for an older build: its root hash is replaced.
    let releases = user.path().join("releases/qemu-x86_64");
    fs::create_dir_all(&releases).unwrap();
    let root_hash = fs::read_to_string(output.join("roothash")).unwrap();
    let old_hash = "a".repeat(64);
    let old_policy = fs::read_to_string(first.join("policy-1.0.0.pol")).unwrap().replace(&root_hash, &old_hash);
    fs::write(releases.join("policy-1.0.0.pol"), old_policy).unwrap();
    let stderr = fails_with(user.script("release.sh").arg("qemu-x86_64").env("APPLBUILD_OUT", "images").env("APPLBUILD_SIGNING_KEY", &key_pem).env("APPLBUILD_RELEASE_OUT", scratch.path().join("again")), 2);
    assert!(stderr.contains("is not newer than the last released policy"), "{stderr}");
    let next = release(&user, &key_pem, Some("v1.0.1"));
    let changelog = fs::read_to_string(next.join("CHANGELOG-policy.md")).unwrap();
    assert!(changelog.contains("Changes from policy 1.0.0"), "{changelog}");
    assert!(changelog.contains("~ policy_version: 1.0.0 -> 1.0.1"), "{changelog}");
    assert!(changelog.contains(&format!("+ op=EXECUTE dmverity_roothash=sha256:{root_hash}")), "{changelog}");
    check_signed_policy(&next, "1.0.1");
    // This build first, then the kept root hash of the previous release.
    let policy = fs::read_to_string(next.join("policy-1.0.1.pol")).unwrap();
    let this_build = policy.find(&root_hash).unwrap();
    let kept = policy.find(&old_hash).unwrap();
    assert!(this_build < kept, "{policy}");
}

/// Runs release.sh for the default board on the published images and
/// returns its output folder after checking its SHA256SUMS.
fn release(user: &UserRepo, key_pem: &str, tag: Option<&str>) -> PathBuf {
    let mut command = user.script("release.sh");
    command.arg("qemu-x86_64").env("APPLBUILD_OUT", "images").env("APPLBUILD_SIGNING_KEY", key_pem);
    if let Some(tag) = tag {
        command.env("APPLBUILD_RELEASE", tag);
    }
    let dir = user.path().join(success(&mut command).trim());
    success(Command::new("sha256sum").current_dir(&dir).args(["-c", "SHA256SUMS"]));
    dir
}

/// Checks that `dir` has the policy of `version`, its signature by the
/// test certificate with the policy as content, and the deploy script.
fn check_signed_policy(dir: &Path, version: &str) {
    let policy = dir.join(format!("policy-{version}.pol"));
    let text = fs::read_to_string(&policy).unwrap();
    assert!(text.starts_with(&format!("policy_name=applbuild-qemu-x86_64 policy_version={version}")), "{text}");
    let content = dir.join("verified.txt");
    let mut openssl = Command::new("openssl");
    openssl.args(["smime", "-verify", "-binary", "-inform", "der", "-purpose", "any", "-in"]).arg(dir.join(format!("policy-{version}.pol.p7s"))).arg("-CAfile").arg(repo().join("keys/test/cert.pem")).arg("-out").arg(&content);
    success(&mut openssl);
    assert_eq!(fs::read_to_string(&content).unwrap(), text);
    fs::remove_file(content).unwrap();
    assert!(dir.join(format!("deploy-policy-{version}.sh")).is_file());
}

#[test]
#[ignore = "needs root and the kernel build root; builds the default board twice (about 1.5 minutes with the kernel cached)"]
fn reproducible_job_compares_two_builds() {
    let user = UserRepo::new();

    let report = success(user.script("reproducible.sh").arg("qemu-x86_64"));

    assert!(report.starts_with("identical: "), "{report}");
}

/// Checks that boards differing only in name and manifest share one kernel,
/// which the second board's build takes from the cache. An extra fragment
/// gives another kernel.
#[test]
#[ignore = "needs root and the kernel build root; builds one image (about 1 minute with the kernel cached)"]
fn kernel_shared_across_board_matrix() {
    let user = UserRepo::new();
    user.add_board("edge-a", None);
    user.add_board("edge-loaders", Some("kernel/test-loaders.config"));

    let print_key = |board: &str| {
        let mut command = common::applbuild();
        command.current_dir(user.path()).args(["kernel", "--print-key", &format!("boards/{board}.toml"), "--keys", "keys/release"]);
        success(&mut command)
    };
    let first = print_key("qemu-x86_64");
    let renamed = print_key("edge-a");
    let extra_fragment = print_key("edge-loaders");
    let key = |line: &str| line.split(' ').next().unwrap().to_string();
    assert_eq!(key(&first), key(&renamed));
    assert_ne!(key(&first), key(&extra_fragment));

    // Ensure the shared kernel exists (built by ci/test.sh's default board build).
    let single = output_of(user.script("kernels.sh").arg("qemu-x86_64"));
    assert!(single.status.success(), "kernels.sh qemu-x86_64 failed with {}", single.status);
    let summary = String::from_utf8_lossy(&single.stderr);
    assert!(summary.contains("kernels.sh: 1 board, 0 kernels built"), "{summary}");
    let kernels = success(user.script("kernels.sh").arg("qemu-x86_64").arg("edge-a"));
    let entry = first.split(' ').nth(1).unwrap().rsplit('/').next().unwrap().to_string();
    assert_eq!(kernels, format!("boards/qemu-x86_64.toml {entry} cached\nboards/edge-a.toml {entry} cached\n"));

    let built = output_of(user.script("build.sh").arg("edge-a"));
    assert!(built.status.success(), "build.sh edge-a failed");
    let log = String::from_utf8_lossy(&built.stderr);
    assert!(log.contains("kernel: using the cached build"), "{log}");
    assert!(!log.contains("kernel: building"), "{log}");
    let summary: serde_json::Value = serde_json::from_slice(&built.stdout).unwrap();
    assert_eq!(summary["kernel_cached"], true);
    assert_eq!(summary["board"], "edge-a");
}

/// cache-trim.sh on a cache laid out like applbuild's: a build root with
/// only its completion marker and dpkg status, kernel entries in use and
/// not, and an old build root.
#[test]
fn cache_trim_keeps_entries_in_use() {
    let user = UserRepo::new();
    let cache = tempfile::tempdir().unwrap();
    let keys = cache_key(&user, "qemu-x86_64", cache.path());
    let toolchain = cache.path().join("toolchain").join(value(&keys, "toolchain").unwrap());
    fs::create_dir_all(toolchain.join("var/lib/dpkg")).unwrap();
    fs::write(toolchain.join(".applbuild-complete"), "").unwrap();
    fs::write(toolchain.join("var/lib/dpkg/status"), "Package: linux-source-6.12\nVersion: 6.12.99-1\n").unwrap();
    fs::create_dir_all(toolchain.join("build/out/qemu-x86_64-ipe-rust")).unwrap();
    let old_toolchain = cache.path().join("toolchain/trixie-0000000000000000");
    fs::create_dir_all(&old_toolchain).unwrap();
    let entry = value(&cache_key(&user, "qemu-x86_64", cache.path()), "kernel").unwrap().to_string();
    let kernel = cache.path().join("kernel");
    for name in [entry.as_str(), "ipe-rust-0000000000000000"] {
        fs::create_dir_all(kernel.join(name)).unwrap();
        fs::write(kernel.join(format!("{name}.log")), "log").unwrap();
    }

    let report = success(user.script("cache-trim.sh").env("APPLBUILD_CACHE", cache.path()));

    assert!(toolchain.join("var/lib/dpkg/status").is_file(), "{report}");
    assert!(!toolchain.join("build").exists(), "{report}");
    assert!(!old_toolchain.exists(), "{report}");
    assert!(kernel.join(&entry).is_dir(), "{report}");
    assert!(kernel.join(format!("{entry}.log")).is_file(), "{report}");
    assert!(!kernel.join("ipe-rust-0000000000000000").exists(), "{report}");
    assert!(!kernel.join("ipe-rust-0000000000000000.log").exists(), "{report}");
}
