//! The ext4 stage with real e2fsprogs: reproducible images from trees
//! written at different times, a clean `e2fsck -fn`, and a read-back file
//! list that matches the tree.

use applbuild::ext4::{self, Ext4Params};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

const EPOCH: u64 = 1_700_000_000;

fn params() -> Ext4Params {
    Ext4Params { uuid: [0x11; 16], hash_seed: [0x22; 16], epoch: EPOCH, label: "root".into() }
}

/// Writes a small tree and sets mtime and atime to EPOCH, as the rootfs
/// stage does; ctimes are whatever the clock says.
fn make_tree(dir: &Path) {
    fs::create_dir_all(dir.join("usr/bin")).unwrap();
    fs::create_dir_all(dir.join("etc/init.d")).unwrap();
    fs::write(dir.join("usr/bin/tool"), vec![0x7f; 10_000]).unwrap();
    fs::set_permissions(dir.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.join("etc/hostname"), "box\n").unwrap();
    fs::write(dir.join("etc/init.d/rcS"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(dir.join("etc/init.d/rcS"), fs::Permissions::from_mode(0o750)).unwrap();
    for i in 0..200 {
        fs::write(dir.join("etc").join(format!("file{i:03}")), format!("{i}\n")).unwrap();
    }
    symlink("usr/bin", dir.join("bin")).unwrap();
    let status = Command::new("find").arg(dir).args(["-exec", "touch", "-h", "-d", &format!("@{EPOCH}"), "{}", "+"]).status().unwrap();
    assert!(status.success());
}

/// Builds an image from a fresh tree in a temporary folder kept alive by
/// the returned handle.
fn build_tree_image() -> (tempfile::TempDir, ext4::Ext4Output) {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    make_tree(&tree);
    let output = ext4::build(&tree, &work.path().join("root.ext4"), &params()).unwrap();
    (work, output)
}

fn require_e2fsprogs() -> bool {
    let found = ["/usr/sbin/mke2fs", "/sbin/mke2fs"].iter().any(|p| Path::new(p).exists());
    if !found {
        eprintln!("skipped: mke2fs is missing; install e2fsprogs (CI installs it)");
    }
    found
}

#[test]
fn ext4_image_is_reproducible() {
    if !require_e2fsprogs() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let first_tree = work.path().join("a");
    make_tree(&first_tree);
    // A second tree written more than a second later gets other ctimes.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second_tree = work.path().join("b");
    make_tree(&second_tree);

    let first = ext4::build(&first_tree, &work.path().join("a.ext4"), &params()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = ext4::build(&second_tree, &work.path().join("b.ext4"), &params()).unwrap();

    assert_eq!(first.size, second.size);
    let a = fs::read(&first.image).unwrap();
    let b = fs::read(&second.image).unwrap();
    assert!(a == b, "the two ext4 images differ");
}

/// Epoch 0 is the default when SOURCE_DATE_EPOCH is unset. e2fsprogs reads
/// E2FSPROGS_FAKE_TIME=0 as unset and stamps the current time, which made
/// such builds differ.
#[test]
fn ext4_epoch_zero_is_reproducible() {
    if !require_e2fsprogs() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    make_tree(&tree);
    let zero = Ext4Params { epoch: 0, ..params() };

    let first = ext4::build(&tree, &work.path().join("a.ext4"), &zero).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = ext4::build(&tree, &work.path().join("b.ext4"), &zero).unwrap();

    let a = fs::read(&first.image).unwrap();
    let b = fs::read(&second.image).unwrap();
    assert!(a == b, "two ext4 images built with epoch 0 differ");
}

#[test]
fn ext4_read_back_lists_regular_files() {
    if !require_e2fsprogs() {
        return;
    }
    let (work, output) = build_tree_image();
    let tree = work.path().join("tree");

    assert_eq!(output.files.len(), 203, "three named files and 200 numbered ones");
    let tool = output.files.iter().find(|f| f.path == "/usr/bin/tool").expect("/usr/bin/tool listed");
    assert_eq!(tool.mode & 0o7777, 0o755);
    assert_eq!(tool.size, 10_000);
    let expected_sha = Command::new("sha256sum").arg(tree.join("usr/bin/tool")).output().unwrap();
    assert_eq!(tool.sha256, String::from_utf8_lossy(&expected_sha.stdout).split_whitespace().next().unwrap());
    let rcs = output.files.iter().find(|f| f.path == "/etc/init.d/rcS").expect("rcS listed");
    assert_eq!(rcs.mode & 0o7777, 0o750);
    assert!(!output.files.iter().any(|f| f.path == "/bin"), "symbolic links are not regular files");
    let sorted = output.files.windows(2).all(|w| w[0].path < w[1].path);
    assert!(sorted, "files are sorted by path");

    let fsck = Command::new("e2fsck").arg("-fn").arg(&output.image).output().unwrap();
    assert!(fsck.status.success(), "e2fsck -fn: {}", String::from_utf8_lossy(&fsck.stdout));
}

#[test]
fn ext4_inode_times_are_epoch() {
    if !require_e2fsprogs() {
        return;
    }
    let (_work, output) = build_tree_image();
    let stat = Command::new("debugfs").arg("-R").arg("stat /etc/hostname").arg(&output.image).output().unwrap();
    let text = String::from_utf8_lossy(&stat.stdout);
    let expected = format!("0x{EPOCH:08x}");
    for field in ["ctime:", "atime:", "mtime:"] {
        let line = text.lines().find(|l| l.trim_start().starts_with(field)).unwrap_or_else(|| panic!("no {field} in {text}"));
        assert!(line.contains(&expected), "{field} is not {expected}: {line}");
    }
}
