//! `applbuild image` with a rootfs directory or tarball as the source (the
//! path for Buildroot and Yocto users). These build a whole image, so they
//! need root, the host tools and a kernel (built on first use, then taken
//! from the cache); `ci/test.sh` runs them after the default build with
//! `cargo test -- --ignored`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repository root")
}

/// A minimal root tree: static busybox and an init script.
fn make_tree(dir: &Path) {
    fs::create_dir_all(dir.join("usr/bin")).expect("usr/bin");
    fs::copy("/bin/busybox", dir.join("usr/bin/busybox")).expect("copy /bin/busybox (install busybox-static)");
    fs::create_dir_all(dir.join("etc")).expect("etc");
    fs::write(dir.join("etc/hello.txt"), "from a directory source\n").expect("hello");
}

fn board(dir: &Path, source: &str) -> PathBuf {
    let kernel = repo().join("boards/kernel");
    let keys = dir.join("keys");
    fs::create_dir_all(&keys).expect("keys");
    for name in ["key.pem", "cert.pem"] {
        fs::copy(repo().join("keys/test").join(name), keys.join(name)).expect("copy test key");
    }
    fs::set_permissions(keys.join("key.pem"), fs::Permissions::from_mode(0o600)).expect("chmod");
    fs::write(dir.join("manifest.toml"), format!("name = \"custom\"\n\n[source]\n{source}\n")).expect("manifest");
    // The board's name and fragments equal the default board's, so the
    // kernel built for it is reused from the cache.
    let board = dir.join("board.toml");
    fs::write(
        &board,
        format!(
            "name = \"qemu-x86_64\"\narch = \"x86_64\"\nrelease = \"2.0.0\"\nmanifest = \"manifest.toml\"\n\n[kernel]\nconfig = [\"{}\", \"{}\"]\n\n[keys]\ndir = \"keys\"\n",
            kernel.join("common.config").display(),
            kernel.join("qemu-x86_64.config").display()
        ),
    )
    .expect("board");
    board
}

/// Builds with a relative `--out`, as a user in their project folder would.
fn build(board: &Path, out: &Path) -> serde_json::Value {
    let parent = out.parent().expect("out has a parent");
    let name = out.file_name().expect("out has a name");
    let output = Command::new(env!("CARGO_BIN_EXE_applbuild")).current_dir(parent).arg("image").arg(board).arg("--out").arg(name).output().expect("run applbuild");
    assert!(output.status.success(), "applbuild image failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let record = fs::read_to_string(out.join("qemu-x86_64/2.0.0/build.json")).expect("build.json");
    serde_json::from_str(&record).expect("build.json is JSON")
}

fn rootfs_paths(record: &serde_json::Value) -> Vec<String> {
    record["rootfs_files"].as_array().expect("rootfs_files").iter().map(|f| f["path"].as_str().unwrap_or_default().to_string()).collect()
}

#[test]
#[ignore = "builds a whole image: needs root, host tools and a kernel; run by ci/test.sh"]
fn directory_source_builds_image() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let tree = dir.path().join("tree");
    make_tree(&tree);
    let board = board(dir.path(), &format!("kind = \"directory\"\npath = \"{}\"", tree.display()));
    let record = build(&board, &dir.path().join("out"));
    let paths = rootfs_paths(&record);
    assert!(paths.contains(&"/usr/bin/busybox".to_string()), "{paths:?}");
    assert!(paths.contains(&"/etc/hello.txt".to_string()), "{paths:?}");
    assert_eq!(record["packages"].as_array().map(Vec::len), Some(0));
}

#[test]
#[ignore = "builds a whole image: needs root, host tools and a kernel; run by ci/test.sh"]
fn tarball_source_builds_image() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let tree = dir.path().join("tree");
    make_tree(&tree);
    let tarball = dir.path().join("rootfs.tar");
    let status = Command::new("tar").arg("-cf").arg(&tarball).arg("-C").arg(&tree).arg(".").status().expect("tar");
    assert!(status.success());
    let board = board(dir.path(), &format!("kind = \"tarball\"\npath = \"{}\"", tarball.display()));
    let record = build(&board, &dir.path().join("out"));
    let paths = rootfs_paths(&record);
    assert!(paths.contains(&"/usr/bin/busybox".to_string()), "{paths:?}");
    assert!(paths.contains(&"/etc/hello.txt".to_string()), "{paths:?}");
}
