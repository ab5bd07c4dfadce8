//! The veritysetup (cryptsetup) superblock at byte 0 of the hash device.
//!
//! The layout is cryptsetup's `struct verity_sb`, 512 bytes with little-endian
//! integers. A test checks it against the output of `veritysetup format`.
//!
//! | offset | field |
//! | --- | --- |
//! | 0 | signature, 8 bytes |
//! | 8 | version, u32 |
//! | 12 | hash_type, u32 |
//! | 16 | uuid, 16 bytes |
//! | 32 | algorithm, 32 bytes, NUL-terminated |
//! | 64 | data_block_size, u32 |
//! | 68 | hash_block_size, u32 |
//! | 72 | data_blocks, u64 |
//! | 80 | salt_size, u16 |
//! | 82 | padding, 6 bytes |
//! | 88 | salt, 256 bytes |
//! | 344 | padding, 168 bytes |
//!
//! The kernel never reads this superblock; the init reads it only to build the table
//! line. A forged superblock can at worst make the table load fail or make reads fail,
//! because the kernel checks the root hash signature and every block against the tree.

use crate::bytes;

pub const SIZE: usize = 512;
const SIGNATURE: &[u8; 8] = b"verity\0\0";
const MAX_SALT_SIZE: u16 = 256;
/// The geometry applbuild writes (`veritysetup format` defaults): 4 KiB data and hash
/// blocks and sha256. The init accepts only this so that any other image fails early.
pub const BLOCK_SIZE: u32 = 4096;
pub const ALGORITHM: &str = "sha256";
const DIGEST_SIZE: u64 = 32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// 1 is the normal format (salt prepended); 0 is the Chrome OS format.
    pub hash_type: u32,
    /// Not checked, because any value is valid: veritysetup writes a random or given UUID.
    pub uuid: [u8; 16],
    pub algorithm: String,
    pub data_block_size: u32,
    pub hash_block_size: u32,
    pub data_blocks: u64,
    pub salt: Vec<u8>,
}

/// Parses and checks the first 512 bytes of the hash device.
pub fn parse(block: &[u8]) -> Result<Superblock, String> {
    let block = block
        .get(..SIZE)
        .ok_or_else(|| format!("verity superblock needs {SIZE} bytes, got {}", block.len()))?;
    let short = || "verity superblock truncated".to_string();

    if block.get(0..8) != Some(SIGNATURE.as_slice()) {
        return Err("no \"verity\" superblock signature at offset 0".to_string());
    }
    let version = bytes::le_u32(block, 8).ok_or_else(short)?;
    if version != 1 {
        return Err(format!("unsupported verity superblock version {version}, expected 1"));
    }
    let hash_type = bytes::le_u32(block, 12).ok_or_else(short)?;
    if hash_type != 1 {
        return Err(format!("unsupported verity hash type {hash_type}, expected 1"));
    }
    let uuid = bytes::array(block, 16).ok_or_else(short)?;

    let algorithm_field = bytes::slice(block, 32, 32).ok_or_else(short)?;
    let name_len = algorithm_field.iter().position(|&b| b == 0).unwrap_or(algorithm_field.len());
    let (name, tail) = algorithm_field.split_at(name_len);
    if !bytes::all_zero(tail) || name_len == algorithm_field.len() {
        return Err("verity hash algorithm field is not a NUL-terminated, zero-padded name".to_string());
    }
    let algorithm = String::from_utf8_lossy(name).into_owned();
    if algorithm != ALGORITHM {
        return Err(format!("unsupported verity hash algorithm {algorithm:?}, expected {ALGORITHM:?}"));
    }

    let data_block_size = bytes::le_u32(block, 64).ok_or_else(short)?;
    let hash_block_size = bytes::le_u32(block, 68).ok_or_else(short)?;
    if data_block_size != BLOCK_SIZE || hash_block_size != BLOCK_SIZE {
        return Err(format!(
            "unsupported verity block sizes {data_block_size}/{hash_block_size} (data/hash), expected {BLOCK_SIZE}/{BLOCK_SIZE}"
        ));
    }
    let data_blocks = bytes::le_u64(block, 72).ok_or_else(short)?;
    if data_blocks == 0 {
        return Err("verity superblock has 0 data blocks".to_string());
    }

    let salt_size = bytes::le_u16(block, 80).ok_or_else(short)?;
    if salt_size > MAX_SALT_SIZE {
        return Err(format!("verity salt size {salt_size} exceeds {MAX_SALT_SIZE}"));
    }
    if !bytes::all_zero(bytes::slice(block, 82, 6).ok_or_else(short)?) {
        return Err("verity superblock padding at offset 82 is not zero".to_string());
    }
    let salt_field = bytes::slice(block, 88, usize::from(MAX_SALT_SIZE)).ok_or_else(short)?;
    let (salt, salt_tail) = salt_field.split_at(usize::from(salt_size));
    if !bytes::all_zero(salt_tail) {
        return Err(format!("verity salt field has non-zero bytes after the {salt_size}-byte salt"));
    }
    if !bytes::all_zero(bytes::slice(block, 344, 168).ok_or_else(short)?) {
        return Err("verity superblock padding at offset 344 is not zero".to_string());
    }

    Ok(Superblock {
        hash_type,
        uuid,
        algorithm,
        data_block_size,
        hash_block_size,
        data_blocks,
        salt: salt.to_vec(),
    })
}

impl Superblock {
    /// Formats the salt for the table line: lower-case hex, or `-` when empty.
    pub fn salt_hex(&self) -> String {
        if self.salt.is_empty() {
            "-".to_string()
        } else {
            bytes::to_hex(&self.salt)
        }
    }

    /// Returns the first hash block of the tree, in hash-block units. It is the block
    /// after the 512-byte superblock at offset 0.
    pub fn hash_start_block(&self) -> u64 {
        (SIZE as u64).div_ceil(u64::from(self.hash_block_size))
    }

    /// Bytes of the data device that the tree covers.
    pub fn data_bytes(&self) -> Option<u64> {
        self.data_blocks.checked_mul(u64::from(self.data_block_size))
    }

    /// Bytes the hash device needs: the superblock block plus every tree level.
    pub fn hash_device_bytes(&self) -> Option<u64> {
        let per_block = u64::from(self.hash_block_size) / DIGEST_SIZE;
        let mut level_blocks = self.data_blocks;
        let mut tree_blocks = 0u64;
        // One data block needs no tree: its digest is the root hash.
        while level_blocks > 1 {
            level_blocks = level_blocks.div_ceil(per_block);
            tree_blocks = tree_blocks.checked_add(level_blocks)?;
        }
        self.hash_start_block()
            .checked_add(tree_blocks)?
            .checked_mul(u64::from(self.hash_block_size))
    }

    /// Checks that the data and hash partitions are large enough for this superblock,
    /// so that a mismatch is reported here and not as a kernel table error.
    pub fn check_fits(&self, data_partition_bytes: u64, hash_partition_bytes: u64) -> Result<(), String> {
        let data_bytes = self.data_bytes().ok_or_else(|| "verity data size overflows".to_string())?;
        if data_bytes > data_partition_bytes {
            return Err(format!(
                "the superblock covers {} data blocks ({data_bytes} bytes) but the root partition has {data_partition_bytes} bytes",
                self.data_blocks
            ));
        }
        let hash_bytes = self.hash_device_bytes().ok_or_else(|| "verity hash size overflows".to_string())?;
        if hash_bytes > hash_partition_bytes {
            return Err(format!(
                "the hash tree needs {hash_bytes} bytes but the root-verity partition has {hash_partition_bytes} bytes"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn superblock_bytes(data_blocks: u64, salt: &[u8]) -> Vec<u8> {
        let mut block = vec![0u8; SIZE];
        block[0..8].copy_from_slice(SIGNATURE);
        block[8..12].copy_from_slice(&1u32.to_le_bytes());
        block[12..16].copy_from_slice(&1u32.to_le_bytes());
        block[16..32].copy_from_slice(&[0xaa; 16]);
        block[32..38].copy_from_slice(b"sha256");
        block[64..68].copy_from_slice(&4096u32.to_le_bytes());
        block[68..72].copy_from_slice(&4096u32.to_le_bytes());
        block[72..80].copy_from_slice(&data_blocks.to_le_bytes());
        block[80..82].copy_from_slice(&(salt.len() as u16).to_le_bytes());
        block[88..88 + salt.len()].copy_from_slice(salt);
        block
    }

    #[test]
    fn parse_valid_superblock() {
        let sb = parse(&superblock_bytes(300, &[0x11; 32])).unwrap();
        assert_eq!(sb.data_blocks, 300);
        assert_eq!(sb.uuid, [0xaa; 16]);
        assert_eq!(sb.salt_hex(), "11".repeat(32));
        assert_eq!(sb.hash_start_block(), 1);
        // 300 blocks need 3 leaf blocks and one top block, after the superblock block.
        assert_eq!(sb.hash_device_bytes(), Some(5 * 4096));
    }

    #[test]
    fn empty_salt_is_dash() {
        assert_eq!(parse(&superblock_bytes(1, &[])).unwrap().salt_hex(), "-");
    }

    #[test]
    fn tree_size_matches_geometry_rules() {
        let cases = [(1, 1), (2, 2), (128, 2), (129, 4), (128 * 128, 2 + 128), (128 * 128 + 1, 1 + 1 + 2 + 129)];
        for (data_blocks, hash_blocks) in cases {
            let sb = parse(&superblock_bytes(data_blocks, &[])).unwrap();
            assert_eq!(sb.hash_device_bytes(), Some(hash_blocks * 4096), "{data_blocks} data blocks");
        }
    }

    #[test]
    fn check_fits_reports_small_partitions() {
        let sb = parse(&superblock_bytes(300, &[])).unwrap();
        assert!(sb.check_fits(300 * 4096, 5 * 4096).is_ok());
        let error = sb.check_fits(299 * 4096, 5 * 4096).unwrap_err();
        assert!(error.contains("root partition has"), "{error}");
        let error = sb.check_fits(300 * 4096, 4 * 4096).unwrap_err();
        assert!(error.contains("root-verity partition has"), "{error}");
    }

    #[test]
    fn rejects_each_bad_field() {
        let good = superblock_bytes(300, &[0x11; 32]);
        type Corruption = fn(&mut Vec<u8>);
        let cases: [(&str, Corruption); 12] = [
            ("signature", |b| b[0] = b'V'),
            ("version", |b| b[8] = 2),
            ("hash type", |b| b[12] = 0),
            ("algorithm", |b| b[32..38].copy_from_slice(b"sha512")),
            ("algorithm", |b| b[32..64].fill(b'a')),
            ("algorithm field", |b| b[40] = 1),
            ("block sizes", |b| b[65] = 0x08),
            ("block sizes", |b| b[69] = 0x02),
            ("0 data blocks", |b| b[72..80].fill(0)),
            ("salt size", |b| b[80..82].copy_from_slice(&257u16.to_le_bytes())),
            ("offset 82", |b| b[83] = 1),
            ("after the 32-byte salt", |b| b[88 + 40] = 1),
        ];
        for (expected, corrupt) in cases {
            let mut block = good.clone();
            corrupt(&mut block);
            let error = parse(&block).unwrap_err();
            assert!(error.contains(expected), "expected {expected:?} in {error:?}");
        }
        let mut block = good.clone();
        block[500] = 1;
        assert!(parse(&block).unwrap_err().contains("offset 344"));
        assert!(parse(&good[..511]).is_err());
    }

    #[test]
    fn parse_veritysetup_superblock() {
        let dir = std::env::temp_dir().join(format!("applbuild-init-verity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data = dir.join("data.img");
        let hash = dir.join("hash.img");
        std::fs::File::create(&data).unwrap().set_len(300 * 4096).unwrap();
        std::fs::File::create(&hash).unwrap();
        let salt = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let output = std::process::Command::new("veritysetup")
            .args(["format", "--salt", salt, "--uuid", "12345678-9abc-def0-1234-56789abcdef0"])
            .arg(&data)
            .arg(&hash)
            .output()
            .expect("cannot run veritysetup (install cryptsetup-bin)");
        assert!(output.status.success(), "veritysetup failed: {}", String::from_utf8_lossy(&output.stderr));

        let hash_bytes = std::fs::read(&hash).unwrap();
        let sb = parse(&hash_bytes).unwrap();
        assert_eq!(sb.data_blocks, 300);
        assert_eq!(sb.salt_hex(), salt);
        assert_eq!(crate::bytes::to_hex(&sb.uuid), "123456789abcdef0123456789abcdef0");
        assert_eq!(sb.hash_start_block(), 1);
        assert_eq!(sb.hash_device_bytes(), Some(hash_bytes.len() as u64));
        sb.check_fits(300 * 4096, hash_bytes.len() as u64).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
