//! `applbuild flash`, `disk.bmap` and `disk.qcow2`.
//!
//! Without root: flashing a small synthetic image (made with the library's
//! disk writer) into regular files, and the bad-input exits.
//!
//! Ignored (root, loop devices and a full `applbuild image` build with the
//! test keys, run by ci/test.sh): `bmaptool copy` with our bmap, flashing a
//! larger loop device checked by `sgdisk -v`, `applbuild verify` and
//! `veritysetup verify`, the refusals, and the qcow2 output.

mod common;

use applbuild::bmap::Bmap;
use applbuild::disk::{self, appliance_partitions, make_esp, write_image, ApplianceImage, PartitionContent, PartitionInput};
use applbuild::{pipeline, verity};
use common::{applbuild, pseudo_random, repo, run};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

const MIB: u64 = 1 << 20;

/// A small GPT image with ESP, root, verity, signature and state
/// partitions, and its disk.bmap, in a temporary folder.
struct SmallImage {
    dir: tempfile::TempDir,
    disk: PathBuf,
}

fn small_image() -> SmallImage {
    let dir = tempfile::tempdir().expect("temporary folder");
    let root_path = dir.path().join("root.img");
    fs::write(&root_path, pseudo_random(2 * MIB as usize, 3)).expect("write root");
    let verity_path = dir.path().join("verity.img");
    let info = verity::format(&root_path, &verity_path, &verity::VerityParams { salt: vec![7; 32], uuid: [9; 16] }).expect("verity format");
    let esp = make_esp(&[("EFI/BOOT/BOOTX64.EFI", &pseudo_random(300_000, 5))], 40 * MIB, 0x1234_5678, "ESP", 0).expect("ESP");
    let partitions = appliance_partitions(
        disk::Uuid::from_u128(0x1111_2222_3333_4444_5555_6666_7777_8888),
        ApplianceImage {
            root_hash: &info.root_hash,
            esp: PartitionInput { size: esp.len() as u64, content: PartitionContent::Bytes(esp) },
            root: PartitionInput { size: 2 * MIB, content: PartitionContent::File(root_path) },
            root_verity: PartitionInput { size: info.hash_size, content: PartitionContent::File(verity_path) },
            root_verity_sig: PartitionInput { size: 16384, content: PartitionContent::Bytes(vec![b'{'; 100]) },
            state: Some(PartitionInput { size: 4 * MIB, content: PartitionContent::Zero }),
        },
    )
    .expect("partitions");
    let disk_path = dir.path().join("disk.raw");
    let layout = write_image(&disk_path, 56 * MIB, disk::Uuid::from_u128(1), &partitions).expect("write image");
    pipeline::write_bmap(&disk_path, &layout).expect("write bmap");
    SmallImage { dir, disk: disk_path }
}

fn flash(args: &[&Path], extra: &[&str]) -> Output {
    let mut command = applbuild();
    command.arg("flash").args(args).args(extra).stdin(Stdio::null());
    command.output().expect("run applbuild flash")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn sha256_file(path: &Path) -> String {
    applbuild::digest::sha256_file(path).expect("hash file")
}

/// Asserts that every mapped range of `bmap` reads the same in `target` as in `image`.
fn assert_mapped_equal(image: &Path, target: &Path, bmap: &Bmap) {
    let image_file = File::open(image).expect("open image");
    let target_file = File::open(target).expect("open target");
    let mut buffer = vec![0u8; 4 << 20];
    for range in &bmap.ranges {
        let bytes = bmap.bytes_of(range);
        let image_digest = applbuild::bmap::sha256_range(&image_file, bytes.clone(), &mut buffer).expect("read image");
        assert_eq!(image_digest, range.sha256, "bmap checksum of {bytes:?} does not match the image");
        let target_digest = applbuild::bmap::sha256_range(&target_file, bytes.clone(), &mut buffer).expect("read target");
        assert_eq!(target_digest, range.sha256, "target bytes {bytes:?} differ from the image");
    }
}

fn sgdisk_verify(target: &Path) -> String {
    let output = Command::new("sgdisk").arg("-v").arg(target).output().expect("run sgdisk");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "sgdisk -v {} failed:\n{text}{}", target.display(), stderr(&output));
    assert!(text.contains("No problems found"), "sgdisk -v {}:\n{text}{}", target.display(), stderr(&output));
    text
}

#[test]
fn bmap_maps_tables_partitions_and_used_esp_only() {
    let image = small_image();
    let bmap = Bmap::read(&image.disk.with_extension("bmap")).expect("read bmap");
    let layout = disk::read_layout(&image.disk).expect("layout");
    let mapped = |offset: u64| bmap.ranges.iter().any(|range| bmap.bytes_of(range).contains(&offset));
    assert!(mapped(0), "the primary GPT is not mapped");
    assert!(mapped(layout.disk_size - 1), "the backup GPT is not mapped");
    let esp = &layout.partitions[0];
    assert!(mapped(esp.offset()), "the ESP's start is not mapped");
    assert!(!mapped(esp.offset() + esp.size() - 1), "the ESP's free tail is mapped");
    for entry in &layout.partitions[1..] {
        assert!(mapped(entry.offset()), "the start of partition {} is not mapped", entry.name);
        assert!(mapped(entry.offset() + entry.size() - 1), "the end of partition {} is not mapped", entry.name);
    }
    assert!(!mapped(esp.offset() - 1), "the gap before the ESP is mapped");
    assert_mapped_equal(&image.disk, &image.disk, &bmap);
}

#[test]
fn flash_into_new_file_and_larger_file() {
    let image = small_image();
    let bmap = Bmap::read(&image.disk.with_extension("bmap")).expect("read bmap");
    let new_file = image.dir.path().join("new.img");
    let output = flash(&[&image.disk, &new_file], &["--force-file", "--yes"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(fs::metadata(&new_file).expect("target").len(), bmap.image_size);
    assert_mapped_equal(&image.disk, &new_file, &bmap);
    sgdisk_verify(&new_file);

    // A larger file: its old bytes stay where nothing is mapped, and the
    // backup table moves to its end.
    let larger = image.dir.path().join("larger.img");
    let size = bmap.image_size + 24 * MIB + 4096;
    fs::write(&larger, vec![0xA5u8; size as usize]).expect("fill target");
    let output = flash(&[&image.disk, &larger], &["--force-file", "--yes"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(fs::metadata(&larger).expect("target").len(), size);
    let layout = disk::read_layout(&larger).expect("GPT of the larger file");
    assert_eq!(layout, disk::relocate(&disk::read_layout(&image.disk).expect("image layout"), size).expect("relocate"));
    sgdisk_verify(&larger);
    let file = File::open(&larger).expect("open");
    let mut old_backup = [0u8; 512];
    file.read_exact_at(&mut old_backup, bmap.image_size - 512).expect("read");
    assert_eq!(old_backup, [0u8; 512], "the image's backup header was left in the middle of the target");
    let mut gap = [0u8; 16];
    file.read_exact_at(&mut gap, MIB - 16).expect("read");
    assert_eq!(gap, [0xA5u8; 16], "an unmapped gap was written");
}

#[test]
fn bad_inputs_exit_2_and_write_nothing() {
    let image = small_image();
    let target = image.dir.path().join("target.img");
    fs::write(&target, b"keep").expect("write target");
    let no_bmap_dir = tempfile::tempdir().expect("temp dir");
    let lone = no_bmap_dir.path().join("disk.raw");
    fs::copy(&image.disk, &lone).expect("copy image");
    let damaged = image.dir.path().join("damaged.bmap");
    let text = fs::read_to_string(image.disk.with_extension("bmap")).expect("read bmap");
    fs::write(&damaged, text.replacen("<Range chksum=\"", "<Range chksum=\"0", 1)).expect("write bmap");
    let other_bmap = image.dir.path().join("other.bmap");
    let other_image = image.dir.path().join("other.raw");
    fs::write(&other_image, vec![1u8; 8192]).expect("write image");
    fs::write(&other_bmap, Bmap::create(&other_image, std::slice::from_ref(&(0..8192))).expect("bmap").to_xml()).expect("write bmap");
    let truncated = image.dir.path().join("short.raw");
    fs::write(&truncated, vec![0u8; 4096 + 1]).expect("write image");
    let missing_bmap = image.dir.path().join("missing.bmap");
    let missing_image = image.dir.path().join("missing.raw");

    let cases: Vec<(Vec<&Path>, Vec<&str>, &str)> = vec![
        (vec![&image.disk, &target], vec!["--yes"], "it is a regular file, not a block device"),
        (vec![&image.disk, Path::new("/nonexistent/disk")], vec!["--yes"], "it does not exist"),
        (vec![&image.disk, Path::new("/dev/null")], vec!["--yes", "--force-file"], "neither a block device nor a regular file"),
        (vec![&image.disk, &image.disk], vec!["--yes", "--force-file"], "it is the image itself"),
        (vec![&image.disk, &target], vec!["--force-file"], "standard input is not a terminal"),
        (vec![&lone, &target], vec!["--yes", "--force-file"], "no bmap file"),
        (vec![&image.disk, &target], vec!["--yes", "--force-file", "--bmap", damaged.to_str().expect("utf-8")], "BmapFileChecksum is"),
        (vec![&truncated, &target], vec!["--yes", "--force-file", "--no-bmap"], "not a whole number of 512-byte sectors"),
        (vec![&image.disk, &target], vec!["--yes", "--force-file", "--bmap", other_bmap.to_str().expect("utf-8")], "is for an image of 8192 bytes"),
        (vec![&image.disk, &target], vec!["--yes", "--force-file", "--bmap", missing_bmap.to_str().expect("utf-8")], "given with --bmap does not exist"),
        (vec![&image.disk, &target], vec!["--yes", "--force-file", "--bmap", image.dir.path().to_str().expect("utf-8")], "given with --bmap is not a regular file"),
        (vec![&missing_image, &target], vec!["--yes", "--force-file"], "cannot read the image"),
        (vec![&image.disk, Path::new("/nonexistent/disk.img")], vec!["--yes", "--force-file"], "its folder /nonexistent does not exist"),
        (vec![&image.disk, image.dir.path()], vec!["--yes", "--force-file"], "it is a directory, not a block device"),
    ];
    for (args, extra, expected) in cases {
        let output = flash(&args, &extra);
        assert_eq!(output.status.code(), Some(2), "{args:?} {extra:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(expected), "{args:?} {extra:?}: {:?} lacks {expected:?}", stderr(&output));
        assert_eq!(fs::read(&target).expect("target"), b"keep", "{args:?} {extra:?} wrote to the target");
        // Every missing or misplaced path the user gave comes with a fix.
        if expected.contains("exist") || expected.contains("directory") || expected.contains("not a regular file") || expected.contains("cannot read") {
            assert!(stderr(&output).contains("\nhint: "), "{args:?} {extra:?}: no hint in {:?}", stderr(&output));
        }
    }
}

/// Returns bmap XML with the checksum of range `index` replaced and the
/// file checksum recomputed, so only the range checksum is wrong.
fn with_wrong_range_checksum(text: &str, bmap: &Bmap, index: usize) -> String {
    let changed = text.replacen(&hex::encode(bmap.ranges[index].sha256), &"1".repeat(64), 1);
    let start = changed.find("<BmapFileChecksum> ").expect("checksum element") + "<BmapFileChecksum> ".len();
    let mut zeroed = changed.clone();
    zeroed.replace_range(start..start + 64, &"0".repeat(64));
    let mut resealed = zeroed.clone();
    resealed.replace_range(start..start + 64, &hex::encode(Sha256::digest(zeroed.as_bytes())));
    resealed
}

/// Flashes `image` with `bmap_path` to `target` and asserts the mismatch
/// exit, that range `index` is named and that the target is unchanged.
fn assert_mismatch_rejected(image: &Path, bmap_path: &Path, target: &Path, extra: &[&str], index: usize) {
    let bmap = Bmap::read(bmap_path).expect("read bmap");
    let bytes = bmap.bytes_of(&bmap.ranges[index]);
    let before = sha256_file(target);
    let mut args = vec!["--yes", "--bmap", bmap_path.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    let output = flash(&[image, target], &args);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("do not match"), "{text}");
    assert!(text.contains(&format!("bytes {}..{} (range {} of {}", bytes.start, bytes.end, index + 1, bmap.ranges.len())), "{text}");
    assert!(text.contains("Nothing was written"), "{text}");
    assert!(text.contains("hint: "), "no hint: {text}");
    assert!(text.contains("disk.bmap"), "the message does not name disk.bmap: {text}");
    assert_eq!(sha256_file(target), before, "the target was written");
}

#[test]
fn image_bmap_mismatch_writes_nothing() {
    let image = small_image();
    let bmap_path = image.disk.with_extension("bmap");
    let bmap = Bmap::read(&bmap_path).expect("read bmap");
    let target = image.dir.path().join("target.img");
    fs::write(&target, vec![0xA5u8; 60 * MIB as usize]).expect("fill target");

    // A wrong checksum on the last range, behind a valid file checksum.
    let last = bmap.ranges.len() - 1;
    let wrong = image.dir.path().join("wrong.bmap");
    fs::write(&wrong, with_wrong_range_checksum(&fs::read_to_string(&bmap_path).expect("read bmap"), &bmap, last)).expect("write bmap");
    assert_mismatch_rejected(&image.disk, &wrong, &target, &["--force-file"], last);

    // The image changed inside its root partition after the bmap was made.
    let layout = disk::read_layout(&image.disk).expect("layout");
    let root = &layout.partitions[1];
    File::options().write(true).open(&image.disk).expect("open").write_all_at(b"tampered", root.offset() + 4096).expect("write");
    let index = bmap.ranges.iter().position(|range| bmap.bytes_of(range).contains(&(root.offset() + 4096))).expect("root range");
    assert_mismatch_rejected(&image.disk, &bmap_path, &target, &["--force-file"], index);
}

#[test]
fn no_bmap_writes_every_block() {
    let image = small_image();
    let target = image.dir.path().join("target.img");
    fs::write(&target, vec![0xFFu8; 60 * MIB as usize]).expect("fill");
    let output = flash(&[&image.disk, &target], &["--yes", "--force-file", "--no-bmap"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let image_bytes = fs::read(&image.disk).expect("image");
    let target_bytes = fs::read(&target).expect("target");
    // Everything but the GPT head and tail, which moved, is the image.
    let head = 34 * 512;
    let tail = image_bytes.len() - 33 * 512;
    assert_eq!(&target_bytes[head..tail], &image_bytes[head..tail]);
    sgdisk_verify(&target);
}

// ---------------------------------------------------------------------
// Root, loop devices and a real image build.

/// Returns the default board, built once with the test keys and --qcow2.
fn built_image() -> &'static Path {
    static BUILD: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, dir) = BUILD.get_or_init(|| {
        let out = tempfile::tempdir().expect("temp dir");
        let repo = repo();
        // git keeps no modes but the executable bit; signing refuses a readable key.
        run(Command::new("chmod").arg("600").arg(repo.join("keys/test/key.pem")));
        run(applbuild().current_dir(&repo).args(["image", "boards/qemu-x86_64.toml", "--keys", "keys/test", "--qcow2", "--out"]).arg(out.path()));
        let dir = out.path().join("qemu-x86_64/1.0.0");
        (out, dir)
    });
    dir
}

/// A loop device, detached on drop.
struct Loop(PathBuf);

impl Loop {
    fn attach(file: &Path, partscan: bool) -> Loop {
        let mut command = Command::new("losetup");
        command.args(["--find", "--show"]);
        if partscan {
            command.arg("--partscan");
        }
        let path = run(command.arg(file)).trim().to_owned();
        assert!(path.starts_with("/dev/loop"), "losetup printed {path:?}");
        let device = Loop(PathBuf::from(path));
        if partscan {
            device.add_partitions();
        }
        device
    }

    /// Tells the kernel the partitions in the device's table. A kernel
    /// without a GPT parser (no CONFIG_EFI_PARTITION) ignores --partscan,
    /// so partx reads the table and adds them with BLKPG.
    fn add_partitions(&self) {
        run(Command::new("partx").arg("-u").arg(&self.0));
    }

    fn partition(&self, number: u32) -> PathBuf {
        PathBuf::from(format!("{}p{number}", self.0.display()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// A read-only mount, unmounted on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Waits for udev-less partition nodes to appear.
fn wait_for(path: &Path) {
    for _ in 0..50 {
        if path.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{} did not appear", path.display());
}

/// Creates a sparse file of `size` bytes filled with 0xA5 in its first
/// MiB, so a write there shows.
fn backing_file(dir: &Path, name: &str, size: u64) -> PathBuf {
    let path = dir.join(name);
    let file = File::create(&path).expect("create backing file");
    file.set_len(size).expect("size backing file");
    file.write_all_at(&vec![0xA5u8; MIB as usize], 0).expect("fill");
    path
}

#[test]
#[ignore = "needs root, loop devices, bmaptool and a full image build"]
fn bmaptool_copy_accepts_our_bmap() {
    let dir = built_image();
    let raw = dir.join("disk.raw");
    let bmap_path = dir.join("disk.bmap");
    let bmap = Bmap::read(&bmap_path).expect("read bmap");
    let mapped_fraction = bmap.mapped_bytes() as f64 / bmap.image_size as f64;
    eprintln!("disk.bmap maps {} of {} bytes in {} ranges", bmap.mapped_bytes(), bmap.image_size, bmap.ranges.len());
    assert!(mapped_fraction < 0.9, "the bmap maps {mapped_fraction:.2} of the image");

    let work = tempfile::tempdir().expect("temp dir");
    let file_target = work.path().join("copy.img");
    run(Command::new("bmaptool").args(["copy", "--bmap"]).arg(&bmap_path).arg(&raw).arg(&file_target));
    assert_mapped_equal(&raw, &file_target, &bmap);

    let device = Loop::attach(&backing_file(work.path(), "loop.img", bmap.image_size + 8 * MIB), false);
    run(Command::new("bmaptool").args(["copy", "--bmap"]).arg(&bmap_path).arg(&raw).arg(&device.0));
    assert_mapped_equal(&raw, &device.0, &bmap);

    // bmaptool checks our range checksums: a changed one, with the file
    // checksum fixed up, makes it fail.
    let text = fs::read_to_string(&bmap_path).expect("read bmap");
    let bad_bmap = work.path().join("bad.bmap");
    fs::write(&bad_bmap, with_wrong_range_checksum(&text, &bmap, 0)).expect("write bad bmap");
    let output = Command::new("bmaptool").args(["copy", "--bmap"]).arg(&bad_bmap).arg(&raw).arg(work.path().join("bad.img")).output().expect("run bmaptool");
    assert!(!output.status.success(), "bmaptool accepted a wrong range checksum: {}", stderr(&output));
    assert!(stderr(&output).contains("checksum mismatch"), "bmaptool failed for another reason: {}", stderr(&output));
}

#[test]
#[ignore = "needs root, loop devices, sgdisk, veritysetup and a full image build"]
fn flash_to_larger_loop_device_passes_sgdisk_and_verity() {
    let dir = built_image();
    let raw = dir.join("disk.raw");
    let image_size = fs::metadata(&raw).expect("image").len();
    let work = tempfile::tempdir().expect("temp dir");
    let device_size = image_size + 100 * MIB;
    let device = Loop::attach(&backing_file(work.path(), "loop.img", device_size), false);

    let output = flash(&[&raw, &device.0], &["--yes"]);
    assert!(output.status.success(), "{}", stderr(&output));
    eprintln!("{}", String::from_utf8_lossy(&output.stdout).trim());
    sgdisk_verify(&device.0);
    let mut last = [0u8; 8];
    File::open(&device.0).expect("open").read_exact_at(&mut last, device_size - 512).expect("read");
    assert_eq!(&last, b"EFI PART", "no backup header at the device end");
    let layout = disk::read_layout(&device.0).expect("device GPT");
    assert_eq!(layout.disk_size, device_size);

    run(applbuild().arg("verify").arg(&device.0).arg("--cert").arg(repo().join("keys/test/cert.pem")));
    device.add_partitions();
    let (root, hash) = (device.partition(2), device.partition(3));
    wait_for(&root);
    wait_for(&hash);
    let root_hash = fs::read_to_string(dir.join("roothash")).expect("roothash");
    run(Command::new("veritysetup").arg("verify").arg(&root).arg(&hash).arg(root_hash.trim()));
}

#[test]
#[ignore = "needs root, loop devices and a full image build"]
fn refused_targets_exit_2_and_stay_unchanged() {
    let dir = built_image();
    let raw = dir.join("disk.raw");
    let image_size = fs::metadata(&raw).expect("image").len();
    let work = tempfile::tempdir().expect("temp dir");

    // Smaller device.
    let small_file = backing_file(work.path(), "small.img", image_size - MIB);
    let before = sha256_file(&small_file);
    {
        let small = Loop::attach(&small_file, false);
        let output = flash(&[&raw, &small.0], &["--yes"]);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(stderr(&output).contains("fewer than the image's"), "{}", stderr(&output));
    }
    assert_eq!(sha256_file(&small_file), before, "the smaller device was written");

    // No --yes and standard input not a terminal.
    let big_file = backing_file(work.path(), "big.img", image_size + MIB);
    let before = sha256_file(&big_file);
    {
        let big = Loop::attach(&big_file, false);
        let output = flash(&[&raw, &big.0], &[]);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(stderr(&output).contains("standard input is not a terminal"), "{}", stderr(&output));
    }
    assert_eq!(sha256_file(&big_file), before, "the unconfirmed device was written");

    // A bmap whose last range checksum is wrong behind a valid file
    // checksum: the check before writing rejects it.
    let bmap = Bmap::read(&dir.join("disk.bmap")).expect("read bmap");
    let wrong = work.path().join("wrong.bmap");
    fs::write(&wrong, with_wrong_range_checksum(&fs::read_to_string(dir.join("disk.bmap")).expect("read bmap"), &bmap, bmap.ranges.len() - 1)).expect("write bmap");
    {
        let big = Loop::attach(&big_file, false);
        assert_mismatch_rejected(&raw, &wrong, &big.0, &[], bmap.ranges.len() - 1);
    }
    assert_eq!(sha256_file(&big_file), before, "the device was written despite the mismatched bmap");

    // A mounted partition: a copy of the image whose state partition (5, ext4) is mounted.
    let copy = work.path().join("mounted.img");
    run(Command::new("cp").arg("--sparse=always").arg(&raw).arg(&copy));
    let before = sha256_file(&copy);
    {
        let device = Loop::attach(&copy, true);
        let state = device.partition(5);
        wait_for(&state);
        let mount_point = work.path().join("mnt");
        fs::create_dir(&mount_point).expect("mount point");
        run(Command::new("mount").args(["-o", "ro,noload"]).arg(&state).arg(&mount_point));
        let _mount = Mount(mount_point.clone());
        let output = flash(&[&raw, &device.0], &["--yes"]);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(stderr(&output).contains(&format!("is mounted on {}", mount_point.display())), "{}", stderr(&output));
    }
    assert_eq!(sha256_file(&copy), before, "the device with a mounted partition was written");

    // A device in use as swap.
    let swap_file = backing_file(work.path(), "swap.img", image_size + MIB);
    {
        let device = Loop::attach(&swap_file, false);
        run(Command::new("mkswap").arg(&device.0));
        let before = sha256_file(&swap_file);
        let swapon = Command::new("swapon").arg(&device.0).status().expect("run swapon");
        if swapon.success() {
            let output = flash(&[&raw, &device.0], &["--yes"]);
            let _ = Command::new("swapoff").arg(&device.0).status();
            assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
            assert!(stderr(&output).contains("in use as swap"), "{}", stderr(&output));
            assert_eq!(sha256_file(&swap_file), before, "the swap device was written");
        } else {
            eprintln!("swapon failed on this host; the swap refusal is untested here");
        }
    }
}

#[test]
#[ignore = "needs root and the host's root file system on a block device"]
fn root_disk_is_refused() {
    // Without --yes and with standard input not a terminal, a broken root
    // check would still stop at the confirmation, so this cannot write.
    let source = run(Command::new("findmnt").args(["-n", "-o", "SOURCE", "/"])).trim().to_owned();
    let disk = run(Command::new("lsblk").args(["-n", "-d", "-o", "PKNAME"]).arg(&source)).trim().to_owned();
    let disk = if disk.is_empty() { source.clone() } else { format!("/dev/{disk}") };
    assert!(Path::new(&disk).exists(), "root disk {disk} (from {source}) not found");
    let image = small_image();
    let output = flash(&[&image.disk, Path::new(&disk)], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("holds the running system's root file system"), "{disk}: {}", stderr(&output));
}

#[test]
#[ignore = "needs qemu-img and a full image build"]
fn qcow2_is_the_raw_disk_and_reproducible() {
    let dir = built_image();
    let raw = dir.join("disk.raw");
    let qcow2 = dir.join("disk.qcow2");
    run(Command::new("qemu-img").arg("check").arg(&qcow2));
    let compare = run(Command::new("qemu-img").args(["compare", "-f", "raw", "-F", "qcow2"]).arg(&raw).arg(&qcow2));
    assert!(compare.contains("Images are identical"), "{compare}");

    let work = tempfile::tempdir().expect("temp dir");
    let again = work.path().join("again.qcow2");
    pipeline::convert_qcow2(&raw, &again).expect("convert again");
    assert_eq!(sha256_file(&again), sha256_file(&qcow2), "two conversions of the same disk.raw differ");

    let record: serde_json::Value = serde_json::from_slice(&fs::read(dir.join("build.json")).expect("build.json")).expect("JSON");
    for name in ["disk.qcow2", "disk.bmap", "disk.raw"] {
        assert_eq!(record["outputs"][name].as_str(), Some(sha256_file(&dir.join(name)).as_str()), "build.json digest of {name}");
    }
}

#[test]
#[ignore = "needs QEMU, OVMF and a full image build"]
fn qcow2_boots_to_the_ready_line() {
    let qcow2 = built_image().join("disk.qcow2");
    let ready = run(applbuild().args(["run", "--test"]).arg(&qcow2));
    assert!(ready.contains("appliance ready:"), "{ready}");
}
