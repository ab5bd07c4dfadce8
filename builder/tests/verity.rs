//! Compares `applbuild::verity` with the real `veritysetup` (cryptsetup-bin)
//! and with libcryptsetup through `libcryptsetup-rs`: hash images must be
//! byte-identical, root hashes equal, and each side must accept the other's
//! output and reject corrupted files.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use applbuild::verity::{self, VerityError, VerityParams, BLOCK_SIZE};
use libcryptsetup_rs::consts::flags::CryptVerity;
use libcryptsetup_rs::consts::vals::EncryptionFormat;
use libcryptsetup_rs::{CryptInit, CryptParamsVerity, CryptParamsVerityRef, Either};
use tempfile::TempDir;

const BLOCK: usize = BLOCK_SIZE as usize;
const UUID: [u8; 16] = [
    0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0,
];
const UUID_TEXT: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

/// One comparison case: data length in bytes and salt.
struct Case {
    name: &'static str,
    len: usize,
    salt: Vec<u8>,
}

fn salt32() -> Vec<u8> {
    (0u8..32)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect()
}

fn cases() -> Vec<Case> {
    let case = |name, len| Case {
        name,
        len,
        salt: salt32(),
    };
    vec![
        case("1 block", BLOCK),
        case("2 blocks", 2 * BLOCK),
        case("127 blocks", 127 * BLOCK),
        case("128 blocks", 128 * BLOCK),
        case("129 blocks", 129 * BLOCK),
        case("300 blocks", 300 * BLOCK),
        case("5 blocks and 1234 bytes", 5 * BLOCK + 1234),
        case("1 byte", 1),
        // 40 MiB plus 3 blocks: two levels, the leaf level 81 blocks long.
        case("40 MiB", (40 << 20) + 3 * BLOCK),
        Case {
            name: "129 blocks, empty salt",
            len: 129 * BLOCK,
            salt: Vec::new(),
        },
        Case {
            name: "129 blocks, 256-byte salt",
            len: 129 * BLOCK,
            salt: (0..=255).collect(),
        },
    ]
}

/// Deterministic pseudo-random bytes (xorshift64*), seeded by `seed`.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn params(salt: &[u8]) -> VerityParams {
    VerityParams {
        salt: salt.to_vec(),
        uuid: UUID,
    }
}

fn salt_arg(salt: &[u8]) -> String {
    if salt.is_empty() {
        "--salt=-".to_string()
    } else {
        format!("--salt={}", hex::encode(salt))
    }
}

/// Runs veritysetup with `args`, failing the test with an install hint when
/// the program is missing.
fn veritysetup(args: &[&str]) -> Output {
    match Command::new("veritysetup").args(args).output() {
        Ok(output) => output,
        Err(err) => panic!(
            "failed to run veritysetup ({err}): install cryptsetup-bin (apt-get install cryptsetup-bin)"
        ),
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// Formats `data` with `veritysetup format` into `hash` and returns the root
/// hash it prints.
fn veritysetup_format(data: &Path, hash: &Path, salt: &[u8]) -> [u8; 32] {
    let output = veritysetup(&[
        "format",
        &salt_arg(salt),
        &format!("--uuid={UUID_TEXT}"),
        path_str(data),
        path_str(hash),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "veritysetup format failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find(|line| line.starts_with("Root hash:"))
        .unwrap_or_else(|| panic!("no root hash line in veritysetup output: {stdout}"));
    let hex_root = line.trim_start_matches("Root hash:").trim();
    hex::decode(hex_root).unwrap().try_into().unwrap()
}

fn veritysetup_verify(data: &Path, hash: &Path, root: &[u8; 32]) -> Output {
    veritysetup(&["verify", path_str(data), path_str(hash), &hex::encode(root)])
}

/// Data file with our hash image next to it, formatted by `verity::format`.
struct Formatted {
    _dir: TempDir,
    data: PathBuf,
    hash: PathBuf,
    info: verity::VerityInfo,
}

fn format_ours(len: usize, salt: &[u8], seed: u64) -> Formatted {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data.img");
    let hash = dir.path().join("hash.img");
    fs::write(&data, pseudo_random(len, seed)).unwrap();
    let info = verity::format(&data, &hash, &params(salt)).unwrap();
    Formatted {
        _dir: dir,
        data,
        hash,
        info,
    }
}

fn flip_bit(path: &Path, offset: usize, bit: u8) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= 1 << bit;
    fs::write(path, bytes).unwrap();
}

#[test]
fn format_matches_veritysetup() {
    for (seed, case) in cases().into_iter().enumerate() {
        let name = case.name;
        let ours = format_ours(case.len, &case.salt, seed as u64 + 1);
        let padded_len = case.len.div_ceil(BLOCK) * BLOCK;
        assert_eq!(
            fs::metadata(&ours.data).unwrap().len(),
            padded_len as u64,
            "{name}: data padded to whole blocks"
        );
        assert_eq!(
            ours.info.data_blocks,
            (padded_len / BLOCK) as u64,
            "{name}: data blocks"
        );

        // veritysetup formats the same data file, which `format` padded.
        let theirs_hash = ours.data.with_file_name("theirs.hash");
        let root = veritysetup_format(&ours.data, &theirs_hash, &case.salt);
        let our_image = fs::read(&ours.hash).unwrap();
        let their_image = fs::read(&theirs_hash).unwrap();
        assert_eq!(ours.info.root_hash, root, "{name}: root hash");
        assert_eq!(
            our_image.len(),
            their_image.len(),
            "{name}: hash image size"
        );
        assert!(
            our_image == their_image,
            "{name}: hash image bytes differ from veritysetup's"
        );
        assert_eq!(
            ours.info.hash_size,
            our_image.len() as u64,
            "{name}: reported hash size"
        );

        let output = veritysetup_verify(&ours.data, &ours.hash, &ours.info.root_hash);
        assert!(
            output.status.success(),
            "{name}: veritysetup verify rejected our image: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let verified = verity::verify(&ours.data, &theirs_hash, &root).unwrap();
        assert_eq!(
            verified, ours.info,
            "{name}: our verify of veritysetup's image"
        );
    }
}

#[test]
fn format_matches_libcryptsetup() {
    // libcryptsetup-rs without its `mutex` feature must be called from a
    // single thread, so every case runs inside this one test.
    for (seed, case) in cases().into_iter().enumerate() {
        let name = case.name;
        let ours = format_ours(case.len, &case.salt, seed as u64 + 100);
        let lib_hash = ours.data.with_file_name("libcryptsetup.hash");
        fs::File::create(&lib_hash).unwrap();

        let params = CryptParamsVerity {
            hash_name: "sha256".to_string(),
            data_device: ours.data.clone(),
            hash_device: Some(lib_hash.clone()),
            fec_device: None,
            salt: case.salt.clone(),
            hash_type: 1,
            data_block_size: 4096,
            hash_block_size: 4096,
            data_size: ours.info.data_blocks,
            hash_area_offset: 0,
            fec_area_offset: 0,
            fec_roots: 0,
            flags: CryptVerity::CREATE_HASH,
        };
        let mut params_ref: CryptParamsVerityRef = (&params).try_into().unwrap();
        // The UUID type comes from the `uuid` crate, which this test reaches
        // only through libcryptsetup-rs, so parse() infers it.
        let uuid = UUID_TEXT.parse().unwrap();
        let mut device = CryptInit::init(&lib_hash).unwrap();
        device
            .context_handle()
            .format(
                EncryptionFormat::Verity,
                ("", ""),
                Some(uuid),
                Either::Right(0),
                Some(&mut params_ref),
            )
            .unwrap_or_else(|err| panic!("{name}: libcryptsetup format failed: {err}"));
        let mut root = [0u8; 32];
        let (_, root_len) = device
            .volume_key_handle()
            .get(None, &mut root, None)
            .unwrap();
        drop(device);

        assert_eq!(root_len, 32, "{name}: root hash size");
        assert_eq!(ours.info.root_hash, root, "{name}: root hash");
        assert!(
            fs::read(&ours.hash).unwrap() == fs::read(&lib_hash).unwrap(),
            "{name}: hash image bytes differ from libcryptsetup's"
        );
    }
}

#[test]
fn read_superblock_returns_format_params() {
    let ours = format_ours(300 * BLOCK, &salt32(), 7);
    let superblock = verity::read_superblock(&ours.hash).unwrap();
    assert_eq!(superblock.uuid, UUID);
    assert_eq!(superblock.salt, salt32());
    assert_eq!(superblock.data_blocks, 300);
    assert_eq!(
        superblock.geometry().unwrap().hash_size(),
        ours.info.hash_size
    );
    assert_eq!(ours.info.uuid_string(), UUID_TEXT);
}

#[test]
fn format_rejects_empty_data() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("empty.img");
    let hash = dir.path().join("hash.img");
    fs::write(&data, b"").unwrap();

    let err = verity::format(&data, &hash, &params(&salt32())).unwrap_err();
    assert!(
        matches!(&err, VerityError::EmptyData { path } if path == &data),
        "got {err:?}"
    );
    assert!(
        err.to_string().contains("empty.img"),
        "message names the file: {err}"
    );
    assert!(!hash.exists(), "no hash file is written for empty data");
}

#[test]
fn format_rejects_missing_data() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("missing.img");
    let err = verity::format(&data, &dir.path().join("hash.img"), &params(&[])).unwrap_err();
    assert!(matches!(err, VerityError::OpenData { .. }), "got {err:?}");
}

#[test]
fn format_rejects_long_salt() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data.img");
    fs::write(&data, [1u8; 10]).unwrap();
    let err = verity::format(&data, &dir.path().join("hash.img"), &params(&[0; 257])).unwrap_err();
    assert!(
        matches!(err, VerityError::SaltTooLong { len: 257 }),
        "got {err:?}"
    );
    assert_eq!(
        fs::metadata(&data).unwrap().len(),
        10,
        "data is not padded when the salt is invalid"
    );
}

#[test]
fn format_rejects_hash_path_equal_to_data() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data.img");
    fs::write(&data, [1u8; 5000]).unwrap();
    let err =
        verity::format(&data, &dir.path().join(".").join("data.img"), &params(&[])).unwrap_err();
    assert!(matches!(err, VerityError::SameFile { .. }), "got {err:?}");
    assert_eq!(
        fs::read(&data).unwrap(),
        vec![1u8; 5000],
        "data is left untouched"
    );
}

#[test]
fn verify_names_flipped_data_block() {
    let ours = format_ours(300 * BLOCK, &salt32(), 11);
    flip_bit(&ours.data, 137 * BLOCK + 4000, 3);

    let err = verity::verify(&ours.data, &ours.hash, &ours.info.root_hash).unwrap_err();
    assert!(
        matches!(err, VerityError::DataBlockMismatch { index: 137, .. }),
        "got {err:?}"
    );
    assert!(
        err.to_string().contains("data block 137"),
        "message names the block: {err}"
    );
    let output = veritysetup_verify(&ours.data, &ours.hash, &ours.info.root_hash);
    assert!(
        !output.status.success(),
        "veritysetup verify accepted a flipped data bit"
    );
}

#[test]
fn verify_names_flipped_leaf_hash_block() {
    // 300 blocks: superblock, top level in block 1, leaf level in blocks 2-4.
    let ours = format_ours(300 * BLOCK, &salt32(), 12);
    flip_bit(&ours.hash, 3 * BLOCK + 64, 0);

    let err = verity::verify(&ours.data, &ours.hash, &ours.info.root_hash).unwrap_err();
    assert!(
        matches!(
            err,
            VerityError::HashBlockMismatch {
                level: 0,
                index: 1,
                hash_block: 3,
                ..
            }
        ),
        "got {err:?}"
    );
    assert!(
        err.to_string().contains("hash block 3"),
        "message names the block: {err}"
    );
    let output = veritysetup_verify(&ours.data, &ours.hash, &ours.info.root_hash);
    assert!(
        !output.status.success(),
        "veritysetup verify accepted a flipped leaf hash bit"
    );
}

#[test]
fn verify_names_flipped_top_hash_block() {
    let ours = format_ours(300 * BLOCK, &salt32(), 13);
    // A bit in the zero tail of the top block, past its three digests.
    flip_bit(&ours.hash, BLOCK + 200, 7);

    let err = verity::verify(&ours.data, &ours.hash, &ours.info.root_hash).unwrap_err();
    assert!(
        matches!(
            err,
            VerityError::HashBlockMismatch {
                level: 1,
                index: 0,
                hash_block: 1,
                ..
            }
        ),
        "got {err:?}"
    );
    let output = veritysetup_verify(&ours.data, &ours.hash, &ours.info.root_hash);
    assert!(
        !output.status.success(),
        "veritysetup verify accepted a flipped top hash bit"
    );
}

#[test]
fn verify_rejects_wrong_root_hash() {
    let ours = format_ours(129 * BLOCK, &salt32(), 14);
    let mut wrong = ours.info.root_hash;
    wrong[31] ^= 1;

    let err = verity::verify(&ours.data, &ours.hash, &wrong).unwrap_err();
    assert!(
        matches!(err, VerityError::RootHashMismatch { expected, actual, .. } if expected == wrong && actual == ours.info.root_hash),
        "got {err:?}"
    );
    let output = veritysetup_verify(&ours.data, &ours.hash, &wrong);
    assert!(
        !output.status.success(),
        "veritysetup verify accepted a wrong root hash"
    );
}

#[test]
fn verify_rejects_truncated_files() {
    let ours = format_ours(300 * BLOCK, &salt32(), 15);
    let root = ours.info.root_hash;

    let short_hash = ours.hash.with_file_name("short.hash");
    fs::write(&short_hash, &fs::read(&ours.hash).unwrap()[..4 * BLOCK]).unwrap();
    let err = verity::verify(&ours.data, &short_hash, &root).unwrap_err();
    assert!(
        matches!(
            err,
            VerityError::HashTruncated {
                expected: 20480,
                actual: 16384,
                ..
            }
        ),
        "got {err:?}"
    );

    let short_data = ours.data.with_file_name("short.img");
    fs::write(&short_data, &fs::read(&ours.data).unwrap()[..299 * BLOCK]).unwrap();
    let err = verity::verify(&short_data, &ours.hash, &root).unwrap_err();
    assert!(
        matches!(err, VerityError::DataTruncated { .. }),
        "got {err:?}"
    );

    let not_verity = ours.hash.with_file_name("zeros.hash");
    fs::write(&not_verity, vec![0u8; 20480]).unwrap();
    let err = verity::verify(&ours.data, &not_verity, &root).unwrap_err();
    assert!(
        matches!(err, VerityError::InvalidSuperblock { .. }),
        "got {err:?}"
    );
}
