//! Tests of the GPT, ESP and verity signature writers against sgdisk,
//! dosfstools, mtools and systemd-dissect.

mod common;
use common::pseudo_random;

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use applbuild::disk::{
    self, appliance_partitions, make_esp, read_layout, verity_sig_json, write_image,
    ApplianceImage, DiskError, FatError, GptError, PartitionContent, PartitionInput, PartitionSpec,
    Uuid,
};
use sha2::{Digest, Sha256};

const MIB: u64 = 1024 * 1024;
const EPOCH: u64 = 1_700_000_000;
const VOLUME_ID: u32 = 0x1234_5678;
const DISK_GUID: Uuid = Uuid::from_u128(0x5d3c7a10_9e51_4c1b_8f0e_2b6a4c9d7e31);
/// Root hash from the specification example: its halves give the root and
/// verity partition UUIDs.
const ROOT_HASH_HEX: &str = "c46e46b6bc50ac0d37b3b14b50821bab705944fbd6f87293eb7da884e7e13f02";

/// Returns whether every tool is installed, printing a skip message if not.
fn tools_available(tools: &[(&str, &str)]) -> bool {
    for (tool, package) in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|output| output.status.success());
        if !found {
            eprintln!("skipped: {tool} not installed (apt-get install {package})");
            return false;
        }
    }
    true
}

/// Runs a command and returns its stdout, failing the test on a non-zero exit.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?} failed with {}:\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn read_range(image: &Path, offset: u64, len: u64) -> Vec<u8> {
    let mut buffer = vec![0u8; len as usize];
    File::open(image)
        .expect("open image")
        .read_exact_at(&mut buffer, offset)
        .expect("read range");
    buffer
}

fn sha256_file(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).expect("read file")).to_vec()
}

/// Partitions of the sample image, with contents from files in `dir`.
struct Sample {
    dir: tempfile::TempDir,
    boot_efi: Vec<u8>,
    partitions: Vec<PartitionSpec>,
    disk_size: u64,
}

fn sample() -> Sample {
    let dir = tempfile::tempdir().expect("temp dir");
    let boot_efi = pseudo_random(20_000_000, 11);
    let esp = make_esp(
        &[("EFI/BOOT/BOOTX64.EFI", &boot_efi)],
        64 * MIB,
        VOLUME_ID,
        "ESP",
        EPOCH,
    )
    .expect("make ESP");

    let root_path = dir.path().join("root.img");
    let mut root = pseudo_random(3 * MIB as usize, 12);
    root[MIB as usize..2 * MIB as usize].fill(0); // a hole in the middle
    std::fs::write(&root_path, &root).expect("write root");
    let verity_path = dir.path().join("verity.img");
    std::fs::write(&verity_path, pseudo_random(40_960, 13)).expect("write verity");
    let signature = verity_sig_json(ROOT_HASH_HEX, &pseudo_random(1500, 14), &[0xab; 32])
        .expect("signature JSON");

    let root_hash = hex_decode(ROOT_HASH_HEX);
    let partitions = appliance_partitions(
        DISK_GUID,
        ApplianceImage {
            root_hash: &root_hash,
            esp: PartitionInput {
                size: 64 * MIB,
                content: PartitionContent::Bytes(esp),
            },
            root: PartitionInput {
                size: 8 * MIB,
                content: PartitionContent::File(root_path),
            },
            root_verity: PartitionInput {
                size: 64 * 1024,
                content: PartitionContent::File(verity_path),
            },
            root_verity_sig: PartitionInput {
                size: 16 * 1024,
                content: PartitionContent::Bytes(signature),
            },
            state: Some(PartitionInput {
                size: 16 * MIB,
                content: PartitionContent::Zero,
            }),
        },
    )
    .expect("appliance partitions");

    Sample {
        dir,
        boot_efi,
        partitions,
        disk_size: 100 * MIB,
    }
}

fn write_sample(sample: &Sample, name: &str) -> (PathBuf, disk::Layout) {
    let path = sample.dir.path().join(name);
    let layout =
        write_image(&path, sample.disk_size, DISK_GUID, &sample.partitions).expect("write image");
    (path, layout)
}

#[test]
fn layout_round_trips_through_reader() {
    let sample = sample();
    let (image, written) = write_sample(&sample, "disk.raw");
    let read = read_layout(&image).expect("read layout");
    assert_eq!(read, written);

    let names: Vec<&str> = read.partitions.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "esp",
            "root-x86-64",
            "root-x86-64-verity",
            "root-x86-64-verity-sig",
            "state"
        ]
    );
    for (entry, spec) in read.partitions.iter().zip(&sample.partitions) {
        assert_eq!(
            entry.offset() % MIB,
            0,
            "{} is not 1 MiB aligned",
            entry.name
        );
        assert_eq!(entry.size(), spec.size, "size of {}", entry.name);
        assert_eq!(
            (entry.type_guid, entry.uuid, entry.attributes),
            (spec.type_guid, spec.uuid, spec.attributes)
        );
    }
    assert_eq!(read.disk_guid, DISK_GUID);
    assert_eq!(read.first_usable_lba, 34);
    assert_eq!(read.last_usable_lba, 100 * MIB / 512 - 34);
}

#[test]
fn contents_land_at_partition_offsets() {
    let sample = sample();
    let (image, layout) = write_sample(&sample, "disk.raw");
    for (entry, spec) in layout.partitions.iter().zip(&sample.partitions) {
        let expected = match &spec.content {
            PartitionContent::File(path) => std::fs::read(path).expect("content file"),
            PartitionContent::Bytes(bytes) => bytes.clone(),
            PartitionContent::Zero => Vec::new(),
        };
        let mut padded = expected.clone();
        padded.resize(entry.size() as usize, 0);
        assert!(
            read_range(&image, entry.offset(), entry.size()) == padded,
            "content of {}",
            entry.name
        );
    }
}

#[test]
fn derived_uuids_match_root_hash_halves() {
    let root_hash = hex_decode(ROOT_HASH_HEX);
    let root = disk::root_partition_uuid(&root_hash).expect("root UUID");
    let verity = disk::verity_partition_uuid(&root_hash).expect("verity UUID");
    assert_eq!(root.to_string(), "c46e46b6-bc50-ac0d-37b3-b14b50821bab");
    assert_eq!(verity.to_string(), "705944fb-d6f8-7293-eb7d-a884e7e13f02");

    // GPT stores the first three fields little-endian.
    let sample = sample();
    let (image, layout) = write_sample(&sample, "disk.raw");
    let root_entry = read_range(&image, 2 * 512 + 128, 128);
    assert_eq!(layout.partitions[1].uuid, root);
    assert_eq!(
        root_entry[16..32],
        hex_decode("b6466ec450bc0dac37b3b14b50821bab")
    );

    let signature_uuid = disk::verity_sig_partition_uuid(&root_hash).expect("signature UUID");
    let mut hasher = Sha256::new();
    hasher.update(disk::ROOT_VERITY_SIG_X86_64.as_bytes());
    hasher.update(&root_hash);
    assert_eq!(signature_uuid.as_bytes()[..], hasher.finalize()[..16]);

    let short = disk::root_partition_uuid(&root_hash[..31]);
    assert!(matches!(short, Err(DiskError::InvalidRootHash { len: 31 })));
}

#[test]
fn sgdisk_verifies_and_shows_guids() {
    if !tools_available(&[("sgdisk", "gdisk")]) {
        return;
    }
    let sample = sample();
    let (image, _) = write_sample(&sample, "disk.raw");
    let image_arg = image.to_str().expect("utf-8 path");

    let verify = run("sgdisk", &["-v", image_arg]);
    assert!(
        verify.contains("No problems found."),
        "sgdisk -v:\n{verify}"
    );
    assert!(
        !verify.to_lowercase().contains("warning"),
        "sgdisk -v:\n{verify}"
    );

    let expected = [
        (
            "1",
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            None,
            "0000000000000000",
            "esp",
        ),
        (
            "2",
            "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
            Some("C46E46B6-BC50-AC0D-37B3-B14B50821BAB"),
            "1000000000000000",
            "root-x86-64",
        ),
        (
            "3",
            "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5",
            Some("705944FB-D6F8-7293-EB7D-A884E7E13F02"),
            "1000000000000000",
            "root-x86-64-verity",
        ),
        (
            "4",
            "41092B05-9FC8-4523-994F-2DEF0408B176",
            None,
            "1000000000000000",
            "root-x86-64-verity-sig",
        ),
        (
            "5",
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
            None,
            "0000000000000000",
            "state",
        ),
    ];
    for (number, type_guid, unique_guid, attributes, name) in expected {
        let info = run("sgdisk", &["-i", number, image_arg]);
        assert!(
            info.contains(&format!("Partition GUID code: {type_guid}")),
            "sgdisk -i {number}:\n{info}"
        );
        if let Some(unique_guid) = unique_guid {
            assert!(
                info.contains(&format!("Partition unique GUID: {unique_guid}")),
                "sgdisk -i {number}:\n{info}"
            );
        }
        assert!(
            info.contains(&format!("Attribute flags: {attributes}")),
            "sgdisk -i {number}:\n{info}"
        );
        assert!(
            info.contains(&format!("Partition name: '{name}'")),
            "sgdisk -i {number}:\n{info}"
        );
    }

    let disk_info = run("sgdisk", &["-p", image_arg]);
    assert!(
        disk_info.contains(&format!(
            "Disk identifier (GUID): {}",
            DISK_GUID.to_string().to_uppercase()
        )),
        "sgdisk -p:\n{disk_info}"
    );
}

#[test]
fn esp_passes_fsck_and_mtools() {
    if !tools_available(&[
        ("fsck.vfat", "dosfstools"),
        ("mcopy", "mtools"),
        ("mdir", "mtools"),
    ]) {
        return;
    }
    let sample = sample();
    let (image, layout) = write_sample(&sample, "disk.raw");
    let esp = &layout.partitions[0];
    let esp_path = sample.dir.path().join("esp.img");
    std::fs::write(&esp_path, read_range(&image, esp.offset(), esp.size())).expect("extract ESP");
    let esp_arg = esp_path.to_str().expect("utf-8 path");

    let fsck = run("fsck.vfat", &["-n", esp_arg]);
    let lines: Vec<&str> = fsck.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "fsck.vfat -n printed more than its banner and summary:\n{fsck}"
    );
    assert!(lines[0].starts_with("fsck.fat "), "fsck.vfat -n:\n{fsck}");

    let verbose = run("fsck.vfat", &["-n", "-v", esp_arg]);
    assert!(verbose.contains("32 bit entries"), "not FAT32:\n{verbose}");

    let listing = run("mdir", &["-i", esp_arg, "::/EFI/BOOT"]);
    assert!(
        listing.contains("BOOTX64  EFI  20000000"),
        "mdir:\n{listing}"
    );

    // mtools reads the partition in place through the @@offset suffix, too.
    let copy = sample.dir.path().join("BOOTX64.EFI");
    let in_place = format!("{}@@{}", image.display(), esp.offset());
    run(
        "mcopy",
        &[
            "-n",
            "-i",
            &in_place,
            "::/EFI/BOOT/BOOTX64.EFI",
            copy.to_str().expect("utf-8 path"),
        ],
    );
    assert!(
        std::fs::read(&copy).expect("copied file") == sample.boot_efi,
        "BOOTX64.EFI differs after mcopy"
    );
}

#[test]
fn esp_with_many_files_passes_fsck() {
    if !tools_available(&[("fsck.vfat", "dosfstools"), ("mcopy", "mtools")]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    // 40 entries fill three 512-byte directory clusters; an empty file has no cluster.
    let names: Vec<String> = (0..40).map(|i| format!("MANY/FILE{i:02}.BIN")).collect();
    let contents: Vec<Vec<u8>> = (0..40)
        .map(|i| pseudo_random(i * 700 + 1, i as u64))
        .collect();
    let mut files: Vec<(&str, &[u8])> = names
        .iter()
        .map(String::as_str)
        .zip(contents.iter().map(Vec::as_slice))
        .collect();
    files.push(("EFI/BOOT/BOOTX64.EFI", b"MZ tiny"));
    files.push(("EFI/LINUX/EMPTY.EFI", b""));
    files.push(("README.TXT", b"root file\n"));

    // The smallest FAT32 volume, rounded up to 4 KiB.
    let size = 66_584 * 512;
    let esp = make_esp(&files, size, VOLUME_ID, "", EPOCH).expect("make ESP");
    let esp_path = dir.path().join("esp.img");
    std::fs::write(&esp_path, &esp).expect("write ESP");
    let esp_arg = esp_path.to_str().expect("utf-8 path");

    let fsck = run("fsck.vfat", &["-n", esp_arg]);
    assert_eq!(fsck.lines().count(), 2, "fsck.vfat -n:\n{fsck}");
    for (name, content) in files {
        let copy = dir.path().join("copy");
        run(
            "mcopy",
            &[
                "-n",
                "-o",
                "-i",
                esp_arg,
                &format!("::/{name}"),
                copy.to_str().expect("utf-8 path"),
            ],
        );
        assert!(
            std::fs::read(&copy).expect("copied file") == content,
            "{name} differs after mcopy"
        );
    }
}

#[test]
fn esp_is_deterministic() {
    let files: [(&str, &[u8]); 1] = [("EFI/BOOT/BOOTX64.EFI", b"MZ")];
    let first = make_esp(&files, 40 * MIB, VOLUME_ID, "ESP", EPOCH).expect("first ESP");
    let second = make_esp(&files, 40 * MIB, VOLUME_ID, "ESP", EPOCH).expect("second ESP");
    assert!(first == second, "two ESPs from the same input differ");
}

#[test]
fn image_is_reproducible_and_sparse() {
    let sample = sample();
    let (first, _) = write_sample(&sample, "first.raw");
    let (second, _) = write_sample(&sample, "second.raw");
    assert_eq!(sha256_file(&first), sha256_file(&second));

    let metadata = std::fs::metadata(&first).expect("image metadata");
    assert_eq!(metadata.len(), sample.disk_size);
    let allocated = metadata.blocks() * 512;
    println!(
        "apparent size {} bytes, allocated {allocated} bytes",
        metadata.len()
    );
    assert!(
        allocated < metadata.len() / 2,
        "image is not sparse: {allocated} bytes allocated"
    );
}

#[test]
fn verity_sig_json_is_compact_and_padded() {
    let signature = [0x30u8, 0x82, 0x01, 0x00, 0xff];
    let content = verity_sig_json(ROOT_HASH_HEX, &signature, &[0x01; 32]).expect("signature JSON");
    assert_eq!(content.len(), 4096);
    let end = content.iter().position(|&b| b == 0).expect("NUL padding");
    assert!(content[end..].iter().all(|&b| b == 0));
    let text = std::str::from_utf8(&content[..end]).expect("utf-8 JSON");
    let expected = format!(
        "{{\"rootHash\":\"{ROOT_HASH_HEX}\",\"certificateFingerprint\":\"{}\",\"signature\":\"MIIBAP8=\"}}",
        "01".repeat(32)
    );
    assert_eq!(text, expected);

    for invalid in ["", "abc", "C46E46B6", "c46e46b6\n", "zz"] {
        let error =
            verity_sig_json(invalid, &signature, &[0; 32]).expect_err("invalid hex accepted");
        assert!(
            matches!(error, DiskError::InvalidRootHashHex { .. }),
            "{invalid:?}: {error:?}"
        );
    }
}

#[test]
fn invalid_inputs_are_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("bad.raw");
    let partition = |name: &str, uuid: u128, size: u64| PartitionSpec {
        name: name.to_owned(),
        type_guid: disk::LINUX_DATA,
        uuid: Uuid::from_u128(uuid),
        size,
        attributes: 0,
        content: PartitionContent::Zero,
    };
    let mut too_much_content = partition("data", 1, 4096);
    too_much_content.content = PartitionContent::Bytes(vec![1; 8192]);
    let mut missing_file = partition("data", 1, 4096);
    missing_file.content = PartitionContent::File(dir.path().join("missing.img"));
    let mut nil_type = partition("data", 1, 4096);
    nil_type.type_guid = Uuid::nil();

    let cases: Vec<(&str, Result<disk::Layout, DiskError>)> = vec![
        (
            "partition bigger than disk",
            write_image(&out, 16 * MIB, DISK_GUID, &[partition("data", 1, 16 * MIB)]),
        ),
        (
            "size not multiple of 4096",
            write_image(&out, 16 * MIB, DISK_GUID, &[partition("data", 1, 5000)]),
        ),
        (
            "disk size not sector multiple",
            write_image(&out, 16 * MIB + 1, DISK_GUID, &[]),
        ),
        (
            "name too long",
            write_image(
                &out,
                16 * MIB,
                DISK_GUID,
                &[partition(&"n".repeat(37), 1, 4096)],
            ),
        ),
        (
            "duplicate partition GUID",
            write_image(
                &out,
                16 * MIB,
                DISK_GUID,
                &[partition("a", 1, 4096), partition("b", 1, 4096)],
            ),
        ),
        (
            "partition GUID equals disk GUID",
            write_image(
                &out,
                16 * MIB,
                Uuid::from_u128(1),
                &[partition("a", 1, 4096)],
            ),
        ),
        (
            "nil type GUID",
            write_image(&out, 16 * MIB, DISK_GUID, &[nil_type]),
        ),
        (
            "content bigger than partition",
            write_image(&out, 16 * MIB, DISK_GUID, &[too_much_content]),
        ),
        (
            "missing content file",
            write_image(&out, 16 * MIB, DISK_GUID, &[missing_file]),
        ),
        (
            "output in missing folder",
            write_image(
                &dir.path().join("no/such/dir.raw"),
                16 * MIB,
                DISK_GUID,
                &[],
            ),
        ),
    ];
    for (case, result) in cases {
        let error = result.err().unwrap_or_else(|| panic!("{case}: accepted"));
        println!("{case}: {error}");
        let expected_variant = match case {
            "partition bigger than disk" => matches!(
                error,
                DiskError::Table(GptError::PartitionDoesNotFit { .. })
            ),
            "size not multiple of 4096" => matches!(
                error,
                DiskError::Table(GptError::InvalidPartitionSize { .. })
            ),
            "disk size not sector multiple" => {
                matches!(error, DiskError::Table(GptError::InvalidDiskSize { .. }))
            }
            "name too long" => matches!(error, DiskError::Table(GptError::InvalidName { .. })),
            "nil type GUID" => matches!(error, DiskError::Table(GptError::NilType { .. })),
            "content bigger than partition" => matches!(error, DiskError::ContentTooLarge { .. }),
            "missing content file" => matches!(error, DiskError::InspectContent { .. }),
            "output in missing folder" => matches!(error, DiskError::Create { .. }),
            _ => matches!(error, DiskError::Table(GptError::DuplicateGuid { .. })),
        };
        assert!(expected_variant, "{case}: unexpected error {error:?}");
    }

    let esp_cases: [(&str, Result<Vec<u8>, FatError>); 6] = [
        (
            "ESP too small",
            make_esp(&[], 32 * MIB, VOLUME_ID, "", EPOCH),
        ),
        (
            "ESP size not sector multiple",
            make_esp(&[], 64 * MIB + 100, VOLUME_ID, "", EPOCH),
        ),
        (
            "lower-case name",
            make_esp(
                &[("efi/boot/bootx64.efi", b"MZ")],
                40 * MIB,
                VOLUME_ID,
                "",
                EPOCH,
            ),
        ),
        (
            "long name",
            make_esp(
                &[("EFI/BOOT/BOOTX64LONG.EFI", b"MZ")],
                40 * MIB,
                VOLUME_ID,
                "",
                EPOCH,
            ),
        ),
        (
            "file under a file",
            make_esp(
                &[("A.EFI", b"MZ"), ("A.EFI/B.EFI", b"MZ")],
                40 * MIB,
                VOLUME_ID,
                "",
                EPOCH,
            ),
        ),
        (
            "lower-case label",
            make_esp(&[], 40 * MIB, VOLUME_ID, "esp", EPOCH),
        ),
    ];
    for (case, result) in esp_cases {
        let error = result.err().unwrap_or_else(|| panic!("{case}: accepted"));
        println!("{case}: {error}");
    }
    let full = pseudo_random(40 * MIB as usize, 5);
    let error = make_esp(&[("BIG.BIN", &full)], 40 * MIB, VOLUME_ID, "", EPOCH)
        .expect_err("oversized content");
    println!("content bigger than ESP: {error}");
    assert!(matches!(error, FatError::NoSpace { .. }));
    let error = make_esp(&[], 32 * MIB, VOLUME_ID, "", EPOCH).expect_err("32 MiB ESP");
    assert!(matches!(
        error,
        FatError::TooSmall {
            min: 34_089_472,
            ..
        }
    ));
}

#[test]
fn reader_rejects_damaged_tables() {
    let sample = sample();
    let (image, layout) = write_sample(&sample, "disk.raw");
    let last_lba = layout.disk_size / 512 - 1;
    let damage = [
        ("primary header CRC", 512 + 16),
        ("primary entry array", 2 * 512 + 40),
        ("backup header CRC", last_lba * 512 + 16),
        ("backup entry array", (last_lba - 32) * 512 + 40),
        ("protective MBR signature", 510),
    ];
    for (case, offset) in damage {
        let damaged = sample.dir.path().join("damaged.raw");
        std::fs::copy(&image, &damaged).expect("copy image");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&damaged)
            .expect("open copy");
        let original = read_range(&image, offset, 1)[0];
        file.write_all_at(&[original ^ 0xff], offset)
            .expect("damage byte");
        let error = read_layout(&damaged).expect_err(case);
        println!("{case}: {error}");
    }
}

/// Builds an image with a real ext4 root, its dm-verity tree and a signature
/// from the test key, and checks that systemd-dissect pairs the partitions.
/// Needs root, because systemd-dissect attaches the image to a loop device.
#[test]
fn systemd_dissect_finds_signed_verity_root() {
    let tools = [
        ("mkfs.ext4", "e2fsprogs"),
        ("veritysetup", "cryptsetup-bin"),
        ("openssl", "openssl"),
        ("systemd-dissect", "systemd-container"),
    ];
    if !tools_available(&tools) {
        return;
    }
    if !run("id", &["-u"]).trim().eq("0") {
        eprintln!("skipped: systemd-dissect needs root to attach loop devices");
        return;
    }
    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys/test");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| {
        dir.path()
            .join(name)
            .to_str()
            .expect("utf-8 path")
            .to_owned()
    };

    std::fs::create_dir_all(dir.path().join("tree/etc")).expect("create tree");
    std::fs::write(dir.path().join("tree/etc/os-release"), "ID=appliance\n").expect("write tree");
    let fs_uuid = "8a4e1c2b-1111-2222-3333-444455556666";
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-b",
            "4096",
            "-d",
            &path("tree"),
            "-U",
            fs_uuid,
            "-E",
            &format!("hash_seed={fs_uuid},root_owner=0:0"),
            &path("root.img"),
            "16M",
        ],
    );
    let salt = format!("{:064x}", 7);
    let format = run(
        "veritysetup",
        &[
            "format",
            &format!("--salt={salt}"),
            &path("root.img"),
            &path("verity.img"),
        ],
    );
    let root_hash_hex = format
        .lines()
        .find_map(|line| line.strip_prefix("Root hash:"))
        .expect("veritysetup prints the root hash")
        .trim()
        .to_owned();
    std::fs::write(path("roothash.txt"), &root_hash_hex).expect("write root hash");
    let key = keys.join("key.pem");
    let cert = keys.join("cert.pem");
    run(
        "openssl",
        &[
            "smime",
            "-sign",
            "-nocerts",
            "-noattr",
            "-binary",
            "-in",
            &path("roothash.txt"),
            "-inkey",
            key.to_str().expect("utf-8 path"),
            "-signer",
            cert.to_str().expect("utf-8 path"),
            "-outform",
            "der",
            "-out",
            &path("sig.der"),
        ],
    );
    run(
        "openssl",
        &[
            "x509",
            "-in",
            cert.to_str().expect("utf-8 path"),
            "-outform",
            "der",
            "-out",
            &path("cert.der"),
        ],
    );

    let certificate_sha256: [u8; 32] =
        Sha256::digest(std::fs::read(path("cert.der")).expect("cert")).into();
    let signature = std::fs::read(path("sig.der")).expect("signature");
    let sig_json =
        verity_sig_json(&root_hash_hex, &signature, &certificate_sha256).expect("signature JSON");
    let esp = make_esp(
        &[("EFI/BOOT/BOOTX64.EFI", b"MZ")],
        64 * MIB,
        VOLUME_ID,
        "ESP",
        EPOCH,
    )
    .expect("make ESP");
    let verity_size = std::fs::metadata(path("verity.img"))
        .expect("verity size")
        .len()
        .next_multiple_of(4096);
    let root_hash = hex_decode(&root_hash_hex);
    let partitions = appliance_partitions(
        DISK_GUID,
        ApplianceImage {
            root_hash: &root_hash,
            esp: PartitionInput {
                size: 64 * MIB,
                content: PartitionContent::Bytes(esp),
            },
            root: PartitionInput {
                size: 16 * MIB,
                content: PartitionContent::File(path("root.img").into()),
            },
            root_verity: PartitionInput {
                size: verity_size,
                content: PartitionContent::File(path("verity.img").into()),
            },
            root_verity_sig: PartitionInput {
                size: 16 * 1024,
                content: PartitionContent::Bytes(sig_json),
            },
            state: None,
        },
    )
    .expect("appliance partitions");
    let image = path("disk.raw");
    write_image(Path::new(&image), 96 * MIB, DISK_GUID, &partitions).expect("write image");

    // veritysetup itself accepts the partitions of the written image.
    let layout = read_layout(Path::new(&image)).expect("read layout");
    let (root, verity) = (&layout.partitions[1], &layout.partitions[2]);
    let root_part = path("root-part.img");
    let verity_part = path("verity-part.img");
    std::fs::write(
        &root_part,
        read_range(Path::new(&image), root.offset(), root.size()),
    )
    .expect("extract root");
    std::fs::write(
        &verity_part,
        read_range(Path::new(&image), verity.offset(), verity.size()),
    )
    .expect("extract verity");
    run(
        "veritysetup",
        &["verify", &root_part, &verity_part, &root_hash_hex],
    );

    let json = run("systemd-dissect", &["--json=short", &image]);
    println!("systemd-dissect --json=short: {json}");
    let report: serde_json::Value = serde_json::from_str(&json).expect("systemd-dissect JSON");
    let mounts = report["mounts"].as_array().expect("mounts array");
    let find = |designator: &str| {
        mounts
            .iter()
            .find(|m| m["designator"] == designator)
            .unwrap_or_else(|| panic!("systemd-dissect found no {designator} partition:\n{json}"))
    };
    let root_uuid = disk::root_partition_uuid(&root_hash)
        .expect("root UUID")
        .to_string();
    let verity_uuid = disk::verity_partition_uuid(&root_hash)
        .expect("verity UUID")
        .to_string();
    assert_eq!(find("root")["partition_uuid"], root_uuid.as_str());
    assert_eq!(find("root")["verity"], "signed");
    assert_eq!(find("root")["fstype"], "ext4");
    assert_eq!(find("root-verity")["partition_uuid"], verity_uuid.as_str());
    assert_eq!(find("root-verity-sig")["fstype"], "verity_hash_signature");
    assert_eq!(find("esp")["fstype"], "vfat");
}
