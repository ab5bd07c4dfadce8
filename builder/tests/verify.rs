//! Tests of `applbuild verify` and the readers it uses (FAT32, PE sections,
//! newc cpio, PKCS#7).
//!
//! Without root they run against a small appliance image assembled here
//! from the builder's own modules and the host's systemd-stub. The
//! `#[ignore]` tests build the real default board (root, the cached kernel,
//! about 40 s) and run from ci/test.sh with `-- --ignored`.

mod common;
use common::pseudo_random;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use applbuild::disk::{self, appliance_partitions, make_esp, verity_sig_json, write_image, ApplianceImage, FatVolume, PartitionContent, PartitionInput};
use applbuild::initramfs::{self, Cpio};
use applbuild::keys::{self, KeyPair};
use applbuild::{policy, sign, uki, verify, verity};

const HOST_STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
const MIB: u64 = 1 << 20;
const EPOCH: u64 = 1_700_000_000;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repository root")
}

/// The committed test key pairs, copied so their modes can be set to 0600.
fn test_keys(dir: &Path) -> KeyPair {
    common::copy_test_keys(dir);
    keys::load(dir).expect("load test keys")
}

fn host_stub() -> Option<Vec<u8>> {
    match fs::read(HOST_STUB) {
        Ok(stub) => Some(stub),
        Err(error) => {
            eprintln!("skipped: cannot read {HOST_STUB} ({error}); apt-get install systemd-boot-efi");
            None
        }
    }
}

/// A small appliance image made the way the pipeline makes one, in a
/// temporary folder with its certificate.
struct SmallImage {
    dir: tempfile::TempDir,
    disk: PathBuf,
    cert: PathBuf,
    root_hash: String,
}

fn small_image() -> Option<SmallImage> {
    let stub = host_stub()?;
    let dir = tempfile::tempdir().expect("temporary folder");
    let key = test_keys(&dir.path().join("keys"));

    let root_path = dir.path().join("root.img");
    fs::write(&root_path, pseudo_random(2 * MIB as usize, 3)).expect("write root");
    let verity_path = dir.path().join("verity.img");
    let info = verity::format(&root_path, &verity_path, &verity::VerityParams { salt: vec![7; 32], uuid: [9; 16] }).expect("verity format");
    let root_hash = info.root_hash_hex();

    let policy_text = policy::generate(&policy::PolicyInput { name: "applbuild-test", version: "1.0.0", root_hashes: vec![root_hash.clone()], require_signature: true });
    let policy_sig = sign::sign_attached(&key, policy_text.as_bytes()).expect("sign policy");
    let mut cpio = Cpio::new(EPOCH).expect("cpio");
    cpio.add_dir("dev", 0o755).expect("dev");
    cpio.add_file("init", 0o755, b"\x7fELF fake init").expect("init");
    cpio.add_file("policy.p7s", 0o644, &policy_sig).expect("policy");
    let initrd = cpio.finish();

    let root_uuid = disk::root_partition_uuid(&info.root_hash).expect("root uuid");
    let verity_uuid = disk::verity_partition_uuid(&info.root_hash).expect("verity uuid");
    let cmdline = format!("console=ttyS0 roothash={root_hash} root=PARTUUID={} applbuild.verity=PARTUUID={} applbuild.policy=applbuild-test applbuild.release=1.0.0", root_uuid.hyphenated(), verity_uuid.hyphenated());
    let kernel = pseudo_random(300_000, 5);
    let uki_bytes = uki::build(&stub, &[(".osrel", b"ID=applbuild\n"), (".cmdline", cmdline.as_bytes()), (".initrd", &initrd), (".linux", &kernel)]).expect("UKI");
    let esp = make_esp(&[("EFI/BOOT/BOOTX64.EFI", &uki_bytes)], 40 * MIB, 0x1234_5678, "ESP", EPOCH).expect("ESP");

    let root_sig = sign::sign_detached(&key, root_hash.as_bytes()).expect("sign root hash");
    let sig_json = verity_sig_json(&root_hash, &root_sig, &key.cert_sha256()).expect("signature JSON");
    let partitions = appliance_partitions(
        disk::Uuid::from_u128(0x1111_2222_3333_4444_5555_6666_7777_8888),
        ApplianceImage {
            root_hash: &info.root_hash,
            esp: PartitionInput { size: esp.len() as u64, content: PartitionContent::Bytes(esp) },
            root: PartitionInput { size: 2 * MIB, content: PartitionContent::File(root_path) },
            root_verity: PartitionInput { size: info.hash_size, content: PartitionContent::File(verity_path) },
            root_verity_sig: PartitionInput { size: 16384, content: PartitionContent::Bytes(sig_json) },
            state: None,
        },
    )
    .expect("partitions");
    let disk_path = dir.path().join("disk.raw");
    write_image(&disk_path, 48 * MIB, disk::Uuid::from_u128(1), &partitions).expect("write image");
    let cert = dir.path().join("keys/cert.pem");
    Some(SmallImage { dir, disk: disk_path, cert, root_hash })
}

fn failed_checks(report: &verify::Report) -> Vec<String> {
    report.lines().into_iter().filter(|line| line.starts_with("FAILED")).collect()
}

fn flip_bit(path: &Path, offset: u64) {
    let file = fs::OpenOptions::new().read(true).write(true).open(path).expect("open image");
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset).expect("read byte");
    byte[0] ^= 0x10;
    file.write_all_at(&byte, offset).expect("write byte");
}

/// Offsets in a partition to flip: first byte, middle, last byte, and the
/// superblock fields the kernel never reads.
fn flip_offsets(size: u64) -> Vec<u64> {
    vec![0, 16, 100, 600, size / 2, size - 1]
}

#[test]
fn small_image_passes_every_check() {
    let Some(image) = small_image() else { return };
    let report = verify::verify(&image.disk, Some(&image.cert)).expect("verify runs");
    assert!(report.passed(), "failed: {:?}", failed_checks(&report));
    assert_eq!(report.root_hash.as_deref(), Some(image.root_hash.as_str()));
    let names: Vec<&str> = report.checks.iter().map(|check| check.name).collect();
    for expected in ["gpt", "partition types", "esp", "uki sections", "initramfs", "root hash signature", "partition uuids", "verity tree", "verity padding", "uki command line", "policy signature", "policy pins root hash"] {
        assert!(names.contains(&expected), "no {expected:?} check in {names:?}");
    }
}

#[test]
fn flipped_bit_in_root_or_hash_is_found() {
    let Some(image) = small_image() else { return };
    let layout = disk::read_layout(&image.disk).expect("layout");
    for type_guid in [disk::ROOT_X86_64, disk::ROOT_VERITY_X86_64] {
        let entry = layout.partitions.iter().find(|p| p.type_guid == type_guid).expect("partition");
        for relative in flip_offsets(entry.size()) {
            // The superblock UUID (bytes 16..32) is covered only by build.json, tested below.
            if type_guid == disk::ROOT_VERITY_X86_64 && relative == 16 {
                continue;
            }
            let offset = entry.offset() + relative;
            flip_bit(&image.disk, offset);
            let report = verify::verify(&image.disk, Some(&image.cert)).expect("verify runs");
            flip_bit(&image.disk, offset);
            assert!(!report.passed(), "bit flip at partition #{} byte {relative} was not found", entry.number);
        }
    }
    let report = verify::verify(&image.disk, Some(&image.cert)).expect("verify runs");
    assert!(report.passed(), "restored image fails: {:?}", failed_checks(&report));
}

#[test]
fn flipped_superblock_uuid_needs_build_json() {
    let Some(image) = small_image() else { return };
    let record = serde_json::json!({ "verity": { "salt": hex::encode([7u8; 32]), "uuid": hex::encode([9u8; 16]), "data_blocks": 512 } });
    fs::write(image.dir.path().join("build.json"), record.to_string()).expect("write build.json");
    let layout = disk::read_layout(&image.disk).expect("layout");
    let hash = layout.partitions.iter().find(|p| p.type_guid == disk::ROOT_VERITY_X86_64).expect("hash partition");
    let report = verify::verify(&image.disk, Some(&image.cert)).expect("verify runs");
    assert!(report.passed(), "failed: {:?}", failed_checks(&report));

    flip_bit(&image.disk, hash.offset() + 20);
    let report = verify::verify(&image.disk, Some(&image.cert)).expect("verify runs");
    let failed = failed_checks(&report);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains("superblock uuid"), "{failed:?}");
}

#[test]
fn flipped_bit_elsewhere_is_found() {
    let Some(image) = small_image() else { return };
    let layout = disk::read_layout(&image.disk).expect("layout");
    let esp = layout.partitions.iter().find(|p| p.type_guid == disk::ESP).expect("ESP");
    let signature = layout.partitions.iter().find(|p| p.type_guid == disk::ROOT_VERITY_SIG_X86_64).expect("signature partition");
    // The signature JSON, the backup GPT header and the UKI (which starts at about 0.65 MiB into the ESP).
    for offset in [signature.offset() + 40, layout.disk_size - 512 + 20, esp.offset() + 800_000] {
        flip_bit(&image.disk, offset);
        let report = verify::verify(&image.disk, Some(&image.cert)).expect("verify runs");
        flip_bit(&image.disk, offset);
        assert!(!report.passed(), "bit flip at disk byte {offset} was not found");
    }
}

#[test]
fn other_certificate_fails_signatures() {
    let Some(image) = small_image() else { return };
    let other = image.dir.path().join("other");
    keys::init(&other, 2048, "other release key").expect("create other key");
    let report = verify::verify(&image.disk, Some(&other.join("cert.pem"))).expect("verify runs");
    let failed = failed_checks(&report);
    assert!(failed.iter().any(|line| line.contains("root hash signature")), "{failed:?}");
    assert!(failed.iter().any(|line| line.contains("policy signature")), "{failed:?}");
}

#[test]
fn cli_exit_codes_and_json() {
    let Some(image) = small_image() else { return };
    let binary = env!("CARGO_BIN_EXE_applbuild");
    let output = Command::new(binary).arg("verify").arg(&image.disk).arg("--cert").arg(&image.cert).output().expect("run applbuild");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.lines().all(|line| line.starts_with("ok: ")), "{stdout}");

    let layout = disk::read_layout(&image.disk).expect("layout");
    let root = layout.partitions.iter().find(|p| p.type_guid == disk::ROOT_X86_64).expect("root");
    flip_bit(&image.disk, root.offset() + 5000);
    let output = Command::new(binary).args(["--json", "verify"]).arg(&image.disk).arg("--cert").arg(&image.cert).output().expect("run applbuild");
    assert_eq!(output.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON output");
    assert_eq!(json["ok"], false);
    let failed: Vec<&serde_json::Value> = json["report"]["checks"].as_array().expect("checks").iter().filter(|c| c["ok"] == false).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["name"], "verity tree");
    assert!(failed[0]["message"].as_str().unwrap_or_default().contains("data block 1 "), "{failed:?}");
}

#[test]
fn fat_reader_reads_written_files() {
    let big = pseudo_random(1_000_000, 1);
    let files: [(&str, &[u8]); 4] = [("EFI/BOOT/BOOTX64.EFI", &big), ("EFI/LINUX/A.EFI", b"a"), ("LOADER/EMPTY.CFG", b""), ("README.TXT", b"hello")];
    let esp = make_esp(&files, 40 * MIB, 1, "ESP", EPOCH).expect("ESP");
    let volume = FatVolume::open(&esp).expect("open volume");
    for (path, data) in files {
        assert_eq!(volume.read_file(path).expect(path), data, "{path}");
    }
    assert_eq!(volume.read_file("efi/boot/bootx64.efi").expect("lower case"), big);
    assert!(matches!(volume.read_file("EFI/BOOT/MISSING.EFI"), Err(disk::FatReadError::NotFound { .. })));
    assert!(matches!(volume.read_file("EFI/BOOT"), Err(disk::FatReadError::WrongType { .. })));
    assert!(matches!(volume.read_file("README.TXT/X"), Err(disk::FatReadError::WrongType { .. })));
}

#[test]
fn fat_reader_rejects_damaged_volumes() {
    let esp = make_esp(&[("EFI/BOOT/BOOTX64.EFI", b"uki")], 40 * MIB, 1, "ESP", EPOCH).expect("ESP");
    let cases: [(&str, usize); 3] = [("boot signature", 510), ("backup boot sector", 6 * 512 + 3), ("second FAT", 32 * 512 + 8)];
    for (what, offset) in cases {
        let mut damaged = esp.clone();
        damaged[offset] ^= 0xff;
        assert!(matches!(FatVolume::open(&damaged), Err(disk::FatReadError::Invalid(_))), "{what} damage was accepted");
    }
    assert!(FatVolume::open(&esp[..400]).is_err());
}

#[test]
fn fat_reader_detects_cluster_loop() {
    let esp = make_esp(&[("A.BIN", &pseudo_random(5000, 2))], 40 * MIB, 1, "", EPOCH).expect("ESP");
    let volume = FatVolume::open(&esp).expect("open");
    assert_eq!(volume.read_file("A.BIN").expect("read").len(), 5000);
    // A.BIN takes clusters 3.. (root is 2). Point cluster 4 back to 3 in both FATs.
    let mut looped = esp.clone();
    let fat_sectors = u32::from_le_bytes([esp[36], esp[37], esp[38], esp[39]]) as usize;
    for copy in 0..2 {
        let entry = (32 + copy * fat_sectors) * 512 + 4 * 4;
        looped[entry..entry + 4].copy_from_slice(&3u32.to_le_bytes());
    }
    let volume = FatVolume::open(&looped).expect("open");
    assert!(volume.read_file("A.BIN").is_err(), "a looping or short chain was accepted");
}

#[test]
fn cpio_reader_round_trips_writer() {
    let mut cpio = Cpio::new(EPOCH).expect("cpio");
    cpio.add_dir("dev", 0o755).expect("dir");
    cpio.add_char_dev("dev/console", 0o600, 5, 1).expect("dev");
    cpio.add_file("init", 0o755, &pseudo_random(1001, 4)).expect("file");
    cpio.add_file("policy.p7s", 0o644, b"").expect("empty file");
    let archive = cpio.finish();
    let entries = initramfs::read_archive(&archive).expect("read archive");
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["dev", "dev/console", "init", "policy.p7s"]);
    assert_eq!(entries[2].data, pseudo_random(1001, 4));
    assert_eq!(entries[2].mode, 0o100_755);
    assert!(entries[2].is_file());
    assert!(!entries[1].is_file());
    assert!(entries[3].data.is_empty());
}

#[test]
fn cpio_reader_rejects_malformed() {
    let mut cpio = Cpio::new(EPOCH).expect("cpio");
    cpio.add_file("init", 0o755, b"12345").expect("file");
    let archive = cpio.finish();
    let mut bad_magic = archive.clone();
    bad_magic[0] = b'1';
    let mut bad_hex = archive.clone();
    bad_hex[6 + 6 * 8] = b'G';
    let no_trailer = archive[..archive.len() - 120].to_vec();
    let mut huge_size = archive.clone();
    huge_size[6 + 6 * 8..6 + 7 * 8].copy_from_slice(b"7FFFFFFF");
    for (what, bytes) in [("magic", bad_magic), ("hex", bad_hex), ("trailer", no_trailer), ("size", huge_size)] {
        assert!(matches!(initramfs::read_archive(&bytes), Err(initramfs::CpioError::Malformed { .. })), "{what} damage was accepted");
    }
}

#[test]
fn uki_reader_returns_built_sections() {
    let Some(stub) = host_stub() else { return };
    let kernel = pseudo_random(100_003, 9);
    let built = uki::build(&stub, &[(".osrel", b"ID=x\n"), (".cmdline", b"quiet"), (".initrd", b"cpio"), (".linux", &kernel)]).expect("UKI");
    let sections = uki::read_sections(&built).expect("read sections");
    let find = |name: &str| sections.iter().find(|s| s.name == name).map(|s| s.data.clone()).expect(name);
    assert_eq!(find(".osrel"), b"ID=x\n");
    assert_eq!(find(".cmdline"), b"quiet");
    assert_eq!(find(".initrd"), b"cpio");
    let linux = find(".linux");
    assert_eq!(&linux[..kernel.len()], &kernel[..]);
    assert!(linux[kernel.len()..].iter().all(|&b| b == 0), ".linux padding is not zero");
    assert!(sections.iter().any(|s| s.name == ".text"), "stub sections are missing");

    let mut changed = built.clone();
    let last = changed.len() - 1000;
    changed[last] ^= 1;
    assert!(matches!(uki::read_sections(&changed), Err(uki::UkiError::ChecksumMismatch { .. })));
}

#[test]
fn pkcs7_verifiers_accept_own_signatures() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let key = test_keys(dir.path());
    let certificate = keys::load_certificate(&dir.path().join("cert.pem")).expect("certificate");
    let content = b"5b6c90856d7b5f6ad15117c0a2f5a5ea168c74e6361094493b69c18ef25e2e1a";

    let detached = sign::sign_detached(&key, content).expect("sign");
    sign::verify_detached(&detached, content, &certificate).expect("detached verifies");
    let mut other_content = content.to_vec();
    other_content[0] = b'6';
    assert!(matches!(sign::verify_detached(&detached, &other_content, &certificate), Err(sign::SignError::BadSignature { .. })));

    let attached = sign::sign_attached(&key, content).expect("sign");
    assert_eq!(sign::verify_attached(&attached, &certificate).expect("attached verifies"), content);
    assert!(sign::verify_detached(&attached, content, &certificate).is_err(), "attached accepted as detached");
    assert!(sign::verify_attached(&detached, &certificate).is_err(), "detached accepted as attached");
    let embedded = sign::embedded_certificate(&attached).expect("parse").expect("certificate embedded");
    assert_eq!(embedded, certificate);

    // Flip one bit inside the RSA signature at the end of the DER.
    let mut damaged = attached.clone();
    let last = damaged.len() - 10;
    damaged[last] ^= 1;
    assert!(matches!(sign::verify_attached(&damaged, &certificate), Err(sign::SignError::BadSignature { .. })));
}

#[test]
fn pkcs7_verifier_accepts_openssl_signature() {
    let dir = tempfile::tempdir().expect("temporary folder");
    test_keys(dir.path());
    let content_path = dir.path().join("content");
    fs::write(&content_path, b"policy text").expect("write content");
    let signature_path = dir.path().join("content.p7s");
    let status = Command::new("openssl")
        .args(["smime", "-sign", "-nodetach", "-binary", "-noattr", "-outform", "der", "-md", "sha256", "-in"])
        .arg(&content_path)
        .arg("-out")
        .arg(&signature_path)
        .arg("-signer")
        .arg(dir.path().join("cert.pem"))
        .arg("-inkey")
        .arg(dir.path().join("key.pem"))
        .status();
    let Ok(status) = status else {
        eprintln!("skipped: openssl not installed");
        return;
    };
    assert!(status.success(), "openssl smime -sign failed");
    let certificate = keys::load_certificate(dir.path()).expect("certificate");
    let signature = fs::read(&signature_path).expect("read signature");
    assert_eq!(sign::verify_attached(&signature, &certificate).expect("verifies"), b"policy text");
}

// ---------------------------------------------------------------------------
// The real default board
// ---------------------------------------------------------------------------

/// The default board built once per test run with the test keys and
/// `[secure_boot] sign = true`.
struct BuiltImage {
    _work: tempfile::TempDir,
    /// The board copy it was built from.
    board: PathBuf,
    /// The key folder, a copy of keys/test.
    keys: PathBuf,
    /// The output folder OUT/qemu-x86_64/1.0.0.
    dir: PathBuf,
}

fn built_image() -> &'static BuiltImage {
    static BUILT: OnceLock<BuiltImage> = OnceLock::new();
    BUILT.get_or_init(|| {
        let work = tempfile::tempdir().expect("temporary folder");
        let keys_dir = work.path().join("keys");
        common::copy_test_keys(&keys_dir);
        let board = work.path().join("board.toml");
        common::write_default_board(&board, &keys_dir, true);
        let output = Command::new(env!("CARGO_BIN_EXE_applbuild"))
            .current_dir(repo())
            .env("SOURCE_DATE_EPOCH", "1764806400")
            .arg("image")
            .arg(&board)
            .arg("--out")
            .arg(work.path().join("signed"))
            .output()
            .expect("run applbuild image");
        assert!(output.status.success(), "applbuild image failed: {}", String::from_utf8_lossy(&output.stderr));
        let dir = work.path().join("signed/qemu-x86_64/1.0.0");
        BuiltImage { _work: work, board, keys: keys_dir, dir }
    })
}

/// Copies the output folder of the built image, keeping disk.raw sparse.
fn copy_output(from: &Path, to: &Path) {
    let status = Command::new("cp").args(["-r", "--sparse=always"]).arg(from).arg(to).status().expect("run cp");
    assert!(status.success(), "cp failed");
}

#[test]
#[ignore = "builds the default board: needs root and the cached kernel (about 40 s)"]
fn built_image_passes_and_detects_flips() {
    let built = &built_image().dir;
    let cert = repo().join("keys/test/cert.pem");
    let report = verify::verify_with(built, Some(&cert), Some(&repo().join("keys/test/db.cert.pem"))).expect("verify runs");
    assert!(report.passed(), "failed: {:?}", failed_checks(&report));
    assert!(report.checks.iter().any(|c| c.name == "build.json" && c.ok), "build.json was not compared");
    assert!(report.checks.iter().any(|c| c.name == "secure boot signature" && c.ok), "the UKI's Authenticode signature was not checked");

    let work = tempfile::tempdir().expect("temporary folder");
    let copy = work.path().join("copy");
    copy_output(built, &copy);
    let disk_path = copy.join("disk.raw");
    let layout = disk::read_layout(&disk_path).expect("layout");
    for type_guid in [disk::ROOT_X86_64, disk::ROOT_VERITY_X86_64] {
        let entry = layout.partitions.iter().find(|p| p.type_guid == type_guid).expect("partition");
        for relative in flip_offsets(entry.size()) {
            let offset = entry.offset() + relative;
            flip_bit(&disk_path, offset);
            let report = verify::verify(&copy, Some(&cert)).expect("verify runs");
            flip_bit(&disk_path, offset);
            assert!(!report.passed(), "bit flip at partition #{} byte {relative} was not found", entry.number);
        }
    }
}

#[test]
#[ignore = "builds the default board twice: needs root and the cached kernel (about 80 s)"]
fn unsigned_then_sign_matches_signed_build() {
    let built = built_image();
    let signed = &built.dir;
    let work = tempfile::tempdir().expect("temporary folder");
    let keys_dir = &built.keys;
    let binary = env!("CARGO_BIN_EXE_applbuild");
    let output = Command::new(binary)
        .current_dir(repo())
        .env("SOURCE_DATE_EPOCH", "1764806400")
        .args(["image", "--unsigned"])
        .arg(&built.board)
        .arg("--out")
        .arg(work.path().join("unsigned"))
        .output()
        .expect("run applbuild image --unsigned");
    assert!(output.status.success(), "applbuild image --unsigned failed: {}", String::from_utf8_lossy(&output.stderr));
    let unsigned = work.path().join("unsigned/qemu-x86_64/1.0.0");
    let report = verify::verify_with(&unsigned, Some(&keys_dir.join("cert.pem")), Some(&keys_dir.join("db.cert.pem"))).expect("verify runs");
    assert!(!report.passed(), "an unsigned image passed verify");
    let secure_boot = report.checks.iter().find(|c| c.name == "secure boot signature").expect("secure boot check");
    assert!(!secure_boot.ok, "an unsigned UKI passed: {}", secure_boot.message);
    assert!(secure_boot.message.contains("no Authenticode signature"), "{}", secure_boot.message);

    let output = Command::new(binary).arg("sign").arg(&unsigned).arg("--key").arg(keys_dir).output().expect("run applbuild sign");
    assert!(output.status.success(), "applbuild sign failed: {}", String::from_utf8_lossy(&output.stderr));
    for name in ["disk.raw", "uki.efi", "roothash.p7s", "policy.p7s", "policy.pol", "roothash", "cmdline", "sbom.spdx.json"] {
        let status = Command::new("cmp").arg(signed.join(name)).arg(unsigned.join(name)).status().expect("run cmp");
        assert!(status.success(), "{name} differs from the one-step signed build");
    }
    assert!(!unsigned.join("signing-inputs").exists(), "signing-inputs/ was left behind");
    let report = verify::verify_with(&unsigned, Some(&keys_dir.join("cert.pem")), Some(&keys_dir.join("db.cert.pem"))).expect("verify runs");
    assert!(report.passed(), "the signed image failed verify: {:?}", failed_checks(&report));
    let record: serde_json::Value = serde_json::from_slice(&fs::read(unsigned.join("build.json")).expect("read build.json")).expect("build.json");
    assert_eq!(record["unsigned"], false);

    let output = Command::new(binary).arg("sign").arg(&unsigned).arg("--key").arg(keys_dir).output().expect("run applbuild sign");
    assert_eq!(output.status.code(), Some(2), "signing twice was not rejected");
}
