//! `applbuild image` on malformed boards and manifests: each gives a clear
//! error with a hint, exit code 2, and leaves nothing in the output folder.
//! The cases run the real binary; the unknown-package case runs mmdebstrap
//! against deb.debian.org.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repository root")
}

/// A board and manifest in a temporary folder, valid until a case breaks them.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temporary folder");
        let repo = repo();
        let keys = dir.path().join("keys");
        fs::create_dir(&keys).expect("keys folder");
        for name in ["key.pem", "cert.pem"] {
            fs::copy(repo.join("keys/test").join(name), keys.join(name)).expect("copy test key");
        }
        fs::set_permissions(keys.join("key.pem"), fs::Permissions::from_mode(0o600)).expect("chmod key");
        fs::create_dir(dir.path().join("overlay")).expect("overlay folder");
        let fixture = Fixture { dir };
        fixture.write_board(&fixture.board_text());
        fixture.write_manifest(&fixture.manifest_text());
        fixture
    }

    fn board_text(&self) -> String {
        let kernel = repo().join("boards/kernel");
        format!(
            "name = \"qemu-x86_64\"\narch = \"x86_64\"\nrelease = \"1.0.0\"\nmanifest = \"manifest.toml\"\n\n[kernel]\nconfig = [\"{}\", \"{}\"]\n\n[disk]\nsize = \"512MiB\"\nesp_size = \"64MiB\"\n\n[keys]\ndir = \"keys\"\n",
            kernel.join("common.config").display(),
            kernel.join("qemu-x86_64.config").display()
        )
    }

    fn manifest_text(&self) -> String {
        "name = \"firewall\"\noverlays = [\"overlay\"]\n\n[source]\nkind = \"debian\"\npackages = [\"busybox-static\", \"nftables\"]\n".to_string()
    }

    fn write_board(&self, text: &str) {
        fs::write(self.board(), text).expect("write board");
    }

    fn write_manifest(&self, text: &str) {
        fs::write(self.dir.path().join("manifest.toml"), text).expect("write manifest");
    }

    fn board(&self) -> PathBuf {
        self.dir.path().join("board.toml")
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Runs `applbuild image` and returns (exit code, stderr).
    fn image(&self, board: &Path) -> (i32, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_applbuild"))
            .arg("image")
            .arg(board)
            .arg("--out")
            .arg(self.out())
            .env("RUST_LOG", "warn")
            .output()
            .expect("run applbuild");
        (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// Asserts exit code 2, an error line containing every `expected` part, a
/// hint, and no output folder.
fn assert_config_error(fixture: &Fixture, board: &Path, expected: &[&str]) {
    let (code, stderr) = fixture.image(board);
    println!("{stderr}");
    assert_eq!(code, 2, "exit code for:\n{stderr}");
    let error_line = stderr.lines().find(|line| line.starts_with("applbuild: error: ")).unwrap_or_else(|| panic!("no error line in:\n{stderr}"));
    for part in expected {
        assert!(error_line.contains(part), "error line {error_line:?} lacks {part:?}");
    }
    assert!(stderr.lines().any(|line| line.starts_with("hint: ")), "no hint line in:\n{stderr}");
    assert!(!fixture.out().exists(), "{} was created", fixture.out().display());
}

fn replace_in_board(fixture: &Fixture, from: &str, to: &str) {
    let text = fixture.board_text();
    assert!(text.contains(from), "fixture board lacks {from:?}");
    fixture.write_board(&text.replacen(from, to, 1));
}

#[test]
fn missing_board_file() {
    let fixture = Fixture::new();
    let missing = fixture.dir.path().join("nope.toml");
    let (code, stderr) = fixture.image(&missing);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("nope.toml"), "{stderr}");
    assert!(stderr.contains("No such file"), "{stderr}");
    assert!(!fixture.out().exists());
}

#[test]
fn unknown_key_names_closest() {
    let fixture = Fixture::new();
    replace_in_board(&fixture, "esp_size", "esp_szie");
    let (code, stderr) = fixture.image(&fixture.board());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("board.toml:11:1"), "position missing: {stderr}");
    assert!(stderr.contains("esp_szie"), "{stderr}");
    assert!(stderr.contains("esp_size"), "{stderr}");
    assert!(!fixture.out().exists());
}

#[test]
fn bad_size() {
    let fixture = Fixture::new();
    replace_in_board(&fixture, "size = \"512MiB\"", "size = \"512XB\"");
    assert_config_error(&fixture, &fixture.board(), &["board.toml:10:8", "512XB"]);
}

#[test]
fn wrong_type() {
    let fixture = Fixture::new();
    replace_in_board(&fixture, "size = \"512MiB\"", "size = true");
    let (code, stderr) = fixture.image(&fixture.board());
    assert_eq!(code, 2, "{stderr}");
    // The message itself states the expected form, so no hint line follows.
    assert!(stderr.contains("board.toml:10:8"), "{stderr}");
    assert!(stderr.contains("expected a size"), "{stderr}");
    assert!(stderr.contains("found boolean"), "{stderr}");
    assert!(!fixture.out().exists());
}

#[test]
fn bad_release() {
    let fixture = Fixture::new();
    replace_in_board(&fixture, "release = \"1.0.0\"", "release = \"1.0\"");
    assert_config_error(&fixture, &fixture.board(), &["board.toml:3:", "1.0"]);
}

#[test]
fn unknown_lsm() {
    let fixture = Fixture::new();
    replace_in_board(&fixture, "[kernel]\n", "[kernel]\nlsm = \"selinux\"\n");
    assert_config_error(&fixture, &fixture.board(), &["board.toml:7:7", "selinux"]);
}

#[test]
fn toml_syntax_error() {
    let fixture = Fixture::new();
    replace_in_board(&fixture, "arch = \"x86_64\"", "arch = \"x86_64");
    let (code, stderr) = fixture.image(&fixture.board());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("board.toml:2:"), "{stderr}");
    assert!(!fixture.out().exists());
}

#[test]
fn missing_manifest_file() {
    let fixture = Fixture::new();
    replace_in_board(&fixture, "manifest = \"manifest.toml\"", "manifest = \"other.toml\"");
    assert_config_error(&fixture, &fixture.board(), &["board.toml:4:", "other.toml"]);
}

#[test]
fn missing_key_directory() {
    let fixture = Fixture::new();
    replace_in_board(&fixture, "dir = \"keys\"", "dir = \"no-keys\"");
    assert_config_error(&fixture, &fixture.board(), &["no-keys"]);
}

#[test]
fn private_key_readable_by_others() {
    let fixture = Fixture::new();
    let key = fixture.dir.path().join("keys/key.pem");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).expect("chmod key");
    let (code, stderr) = fixture.image(&fixture.board());
    println!("{stderr}");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("0644"), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert!(!fixture.out().exists());
}

#[test]
fn missing_overlay_folder() {
    let fixture = Fixture::new();
    fixture.write_manifest(&fixture.manifest_text().replace("overlays = [\"overlay\"]", "overlays = [\"gone\"]"));
    assert_config_error(&fixture, &fixture.board(), &["manifest.toml:2:", "gone"]);
}

#[test]
fn invalid_package_name() {
    let fixture = Fixture::new();
    fixture.write_manifest(&fixture.manifest_text().replace("\"nftables\"", "\"Bad_Name!\""));
    assert_config_error(&fixture, &fixture.board(), &["manifest.toml:6:", "Bad_Name!"]);
}

#[test]
fn package_that_does_not_exist() {
    if !Path::new("/usr/bin/mmdebstrap").exists() || !nix_is_root() {
        eprintln!("skipped: needs root and mmdebstrap (CI installs it and runs as root)");
        return;
    }
    let fixture = Fixture::new();
    fixture.write_manifest(&fixture.manifest_text().replace("\"nftables\"", "\"applbuild-no-such-package\""));
    assert_config_error(&fixture, &fixture.board(), &["applbuild-no-such-package", "does not exist"]);
}

#[test]
fn disk_too_small_for_partitions() {
    if !Path::new("/usr/bin/mmdebstrap").exists() || !nix_is_root() {
        eprintln!("skipped: needs root and mmdebstrap (CI installs it and runs as root)");
        return;
    }
    let fixture = Fixture::new();
    replace_in_board(&fixture, "size = \"512MiB\"", "size = \"80MiB\"");
    assert_config_error(&fixture, &fixture.board(), &["disk.size 80 MiB is too small"]);
}

fn nix_is_root() -> bool {
    fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

#[test]
fn secure_boot_without_db_key() {
    let fixture = Fixture::new();
    fixture.write_board(&format!("{}\n[secure_boot]\nsign = true\n", fixture.board_text()));
    let keys = fixture.dir.path().join("keys");
    assert_config_error(&fixture, &fixture.board(), &["[secure_boot] sign = true", &keys.display().to_string(), "db.key.pem is missing"]);
    let (_, stderr) = fixture.image(&fixture.board());
    let hint = stderr.lines().find(|line| line.starts_with("hint: ")).unwrap_or_default();
    assert!(hint.contains(&format!("applbuild keys init --db-only {}", keys.display())), "{hint}");
}

/// A build killed by a signal leaves `.work-<release>-<pid>` behind; the
/// next build of the board removes it once that process is gone.
#[test]
fn stale_work_folder_is_removed() {
    let fixture = Fixture::new();
    let pid_max: u64 = fs::read_to_string("/proc/sys/kernel/pid_max").expect("read pid_max").trim().parse().expect("pid_max");
    let stale = fixture.out().join("qemu-x86_64").join(format!(".work-1.0.0-{}", pid_max + 1));
    fs::create_dir_all(stale.join("staging")).expect("create the stale work folder");
    fs::write(stale.join("staging/root.ext4"), b"left over").expect("write a left-over file");
    // A tarball that tar cannot read makes the build fail after it created
    // its own work folder.
    fs::write(fixture.dir.path().join("base.tar"), b"not a tar archive").expect("write the tarball");
    fixture.write_manifest("name = \"firewall\"\n\n[source]\nkind = \"tarball\"\npath = \"base.tar\"\n");

    let (code, stderr) = fixture.image(&fixture.board());

    assert_ne!(code, 0, "the build of a broken tarball succeeded:\n{stderr}");
    assert!(!stale.exists(), "{} is still there", stale.display());
    let left: Vec<_> = fs::read_dir(fixture.out().join("qemu-x86_64")).map(|entries| entries.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "work folders left behind: {left:?}");
}

/// `--keys` replaces the board's `[keys] dir`, which then need not exist,
/// as for a release board whose keys are kept off the build machine.
#[test]
fn keys_option_overrides_missing_board_key_folder() {
    let fixture = Fixture::new();
    replace_in_board(&fixture, "dir = \"keys\"", "dir = \"release-keys\"");
    let cache_key = |keys: Option<&Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_applbuild"));
        command.arg("cache-key");
        if let Some(keys) = keys {
            command.arg("--keys").arg(keys);
        }
        command.arg(fixture.board()).env("APPLBUILD_CACHE", fixture.dir.path().join("cache")).output().expect("run applbuild")
    };

    let with_keys = cache_key(Some(&fixture.dir.path().join("keys")));
    let stdout = String::from_utf8_lossy(&with_keys.stdout);
    assert!(with_keys.status.success(), "cache-key --keys failed:\n{}", String::from_utf8_lossy(&with_keys.stderr));
    assert!(stdout.contains("board=qemu-x86_64"), "{stdout}");

    let without = cache_key(None);
    assert_eq!(without.status.code(), Some(2), "without --keys the missing key folder must be an error");
}
