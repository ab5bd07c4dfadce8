//! dm-verity hash trees, written byte-identical to `veritysetup format`
//! (cryptsetup 2.6.1) with its defaults: format 1, sha256, 4096-byte data and
//! hash blocks, a salt of at most 256 bytes and a superblock.
//!
//! Hash image layout (hash offset 0), as cryptsetup writes it in
//! `lib/verity/verity.c` and `lib/verity/verity_hash.c`, and as the kernel's
//! `drivers/md/dm-verity-target.c` reads the tree:
//!
//! * Block 0 contains the 512-byte veritysetup superblock, followed by zeros up to
//!   4096 bytes. The kernel never reads the superblock, so the table passes
//!   hash start block 1.
//! * From block 1 on come the tree levels, top level first and the leaf level
//!   last. Each level's blocks are in index order.
//! * The leaf level contains one digest per data block. Every higher level has
//!   one digest per block of the level below. A block contains 128 sha256
//!   digests back to back, and the unused tail of a level's last block is zero.
//! * A digest is `sha256(salt || block)` over the whole 4096-byte block,
//!   including zero padding. The root hash is the digest of the single top
//!   block.
//! * A file of exactly one data block has no tree: its root hash is the digest
//!   of that block and the hash image is the superblock block alone.
//!
//! Superblock fields by byte offset, integers little-endian, every other byte
//! zero:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | signature `verity\0\0` |
//! | 8 | 4 | superblock version, 1 |
//! | 12 | 4 | hash type (format), 1 |
//! | 16 | 16 | UUID in RFC 4122 byte order |
//! | 32 | 32 | algorithm name, NUL-terminated |
//! | 64 | 4 | data block size |
//! | 68 | 4 | hash block size |
//! | 72 | 8 | number of data blocks |
//! | 80 | 2 | salt size |
//! | 88 | 256 | salt |
//!
//! The in-memory core ([`Geometry`], [`HashTree`], [`Superblock`],
//! [`format_bytes`], [`verify_bytes`]) builds and checks trees. [`format`] and
//! [`verify`] stream files through the same code, reading the data in 8 MiB
//! chunks and hashing each chunk on all rayon threads. Memory use is two
//! 8 MiB read buffers plus the tree, about 1/128 of the data size. `verify`
//! keeps two trees in memory, the stored one and the rebuilt one.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

/// Data and hash block size in bytes.
pub const BLOCK_SIZE: u64 = 4096;
/// sha256 digest size in bytes.
pub const DIGEST_SIZE: usize = 32;
/// Digests in one hash block.
pub const DIGESTS_PER_BLOCK: u64 = BLOCK_SIZE / DIGEST_SIZE as u64;
/// Maximum salt size that the superblock can store.
pub const MAX_SALT_SIZE: usize = 256;
/// Size of the veritysetup superblock in bytes.
pub const SUPERBLOCK_SIZE: usize = 512;

const BLOCK_BYTES: usize = BLOCK_SIZE as usize;
const SIGNATURE: [u8; 8] = *b"verity\0\0";
const SUPERBLOCK_VERSION: u32 = 1;
const HASH_TYPE_NORMAL: u32 = 1;
const ALGORITHM: &str = "sha256";
/// Bytes read from the data file per step. A multiple of the block size.
const READ_CHUNK_BYTES: usize = 8 << 20;
/// Blocks handed to one rayon task at least, so the task overhead stays small
/// next to hashing 4096 bytes.
const MIN_BLOCKS_PER_TASK: usize = 64;

/// Input of [`format`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityParams {
    /// Salt prepended to every hashed block, at most 256 bytes. May be empty.
    pub salt: Vec<u8>,
    /// UUID stored in the superblock, in RFC 4122 byte order.
    pub uuid: [u8; 16],
}

/// Result of [`format`] and [`verify`]: what the kernel table and the
/// signature need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityInfo {
    pub root_hash: [u8; 32],
    pub salt: Vec<u8>,
    pub uuid: [u8; 16],
    /// Number of 4096-byte data blocks covered by the tree.
    pub data_blocks: u64,
    /// Size of the hash image in bytes, superblock block included.
    pub hash_size: u64,
}

impl VerityInfo {
    /// Formats the root hash as lower-case hex, the form the kernel table and
    /// the root hash signature use.
    pub fn root_hash_hex(&self) -> String {
        hex::encode(self.root_hash)
    }

    /// Formats the salt as lower-case hex, or `-` when it is empty, as the
    /// kernel table expects.
    pub fn salt_hex(&self) -> String {
        salt_to_table_hex(&self.salt)
    }

    /// Formats the UUID in its text form, as `veritysetup --uuid` takes it.
    pub fn uuid_string(&self) -> String {
        uuid_to_string(&self.uuid)
    }
}

/// Reasons a hash image's superblock is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SuperblockError {
    #[error("the superblock is truncated ({len} of 512 bytes)")]
    Truncated { len: usize },
    #[error("the signature is not \"verity\" (hash offset 0 is the only one supported)")]
    Signature,
    #[error("superblock version {0} is not supported (expected 1)")]
    Version(u32),
    #[error("hash type {0} is not supported (only format 1 is)")]
    HashType(u32),
    #[error("hash algorithm {0:?} is not supported (only sha256 is)")]
    Algorithm(String),
    #[error("block sizes {data}/{hash} are not supported (only 4096/4096 are)")]
    BlockSizes { data: u32, hash: u32 },
    #[error("salt size {0} exceeds the maximum of 256 bytes")]
    SaltSize(usize),
    #[error("the number of data blocks is 0")]
    NoDataBlocks,
    #[error("{0} data blocks do not fit in a 64-bit byte count")]
    TooManyDataBlocks(u64),
}

/// Errors of the in-memory core. The file functions report the same
/// conditions as [`VerityError`] with the file paths added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("salt is {len} bytes but at most 256 are allowed: use a shorter salt")]
    SaltTooLong { len: usize },
    #[error("data is empty: dm-verity needs at least one 4096-byte block")]
    EmptyData,
    #[error("{data_blocks} data blocks are too many for a hash tree in memory")]
    TooLarge { data_blocks: u64 },
    #[error("invalid superblock: {0}")]
    InvalidSuperblock(#[from] SuperblockError),
    #[error("hash image is {actual} bytes but the superblock needs {expected}")]
    HashTruncated { expected: u64, actual: u64 },
    #[error("data is {actual} bytes but the superblock covers {expected}")]
    DataTruncated { expected: u64, actual: u64 },
    #[error("data block {index} does not match its digest in the hash tree")]
    DataBlockMismatch { index: u64 },
    #[error("hash block {hash_block} (tree level {level}, block {index} of that level) does not match its digest")]
    HashBlockMismatch {
        level: usize,
        index: u64,
        hash_block: u64,
    },
    #[error("root hash {} was expected but the data and tree give {}", hex::encode(.expected), hex::encode(.actual))]
    RootHashMismatch {
        expected: [u8; 32],
        actual: [u8; 32],
    },
}

/// Errors of [`format`], [`verify`] and [`read_superblock`], one variant per
/// failing step.
#[derive(Debug, thiserror::Error)]
pub enum VerityError {
    #[error("salt is {len} bytes but at most 256 are allowed: use a shorter salt")]
    SaltTooLong { len: usize },
    #[error("data file {path} is empty: dm-verity needs at least one 4096-byte block, so check the step that wrote it")]
    EmptyData { path: PathBuf },
    #[error("data file {path} is too large ({size} bytes) for a hash tree")]
    DataTooLarge { path: PathBuf, size: u64 },
    #[error("failed to open data file {path}: {source} (check that it exists and is readable)")]
    OpenData { path: PathBuf, source: io::Error },
    #[error("failed to read the size of data file {path}: {source}")]
    StatData { path: PathBuf, source: io::Error },
    #[error("failed to pad data file {path} with zeros to {size} bytes: {source} (check free space and write permission)")]
    PadData {
        path: PathBuf,
        size: u64,
        source: io::Error,
    },
    #[error(
        "failed to read data file {path}: {source} (check that no other process truncates it)"
    )]
    ReadData { path: PathBuf, source: io::Error },
    #[error("data file {path} is {actual} bytes but the hash image covers {expected}: pass the data file that was formatted")]
    DataTruncated {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("hash file {path} is the data file: pass a separate path for the hash image")]
    SameFile { path: PathBuf },
    #[error("failed to create hash file {path}: {source} (check that its directory exists and is writable)")]
    CreateHash { path: PathBuf, source: io::Error },
    #[error("failed to write hash file {path}: {source} (check free space)")]
    WriteHash { path: PathBuf, source: io::Error },
    #[error("failed to open hash file {path}: {source} (check that it exists and is readable)")]
    OpenHash { path: PathBuf, source: io::Error },
    #[error("failed to read the size of hash file {path}: {source}")]
    StatHash { path: PathBuf, source: io::Error },
    #[error("failed to read hash file {path}: {source}")]
    ReadHash { path: PathBuf, source: io::Error },
    #[error("hash file {path} has an invalid veritysetup superblock: {source} (pass a hash image written by `format` or `veritysetup format`)")]
    InvalidSuperblock {
        path: PathBuf,
        source: SuperblockError,
    },
    #[error("hash file {path} is {actual} bytes but its superblock needs {expected}: the file is truncated, so format the data again")]
    HashTruncated {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("data block {index} of {path} does not match its digest in the hash tree: the data changed after format, so format it again")]
    DataBlockMismatch { path: PathBuf, index: u64 },
    #[error("hash block {hash_block} of {path} (tree level {level}, block {index} of that level) does not match its digest: the hash file is corrupt, so format the data again")]
    HashBlockMismatch {
        path: PathBuf,
        level: usize,
        index: u64,
        hash_block: u64,
    },
    #[error("root hash {} was expected but {data} and {hash} give {}: pass the root hash printed when this image was formatted", hex::encode(.expected), hex::encode(.actual))]
    RootHashMismatch {
        data: PathBuf,
        hash: PathBuf,
        expected: [u8; 32],
        actual: [u8; 32],
    },
}

impl TreeError {
    /// Converts a core error into the file-level error that names `data` or
    /// `hash`.
    fn with_paths(self, data: &Path, hash: &Path) -> VerityError {
        let data = data.to_path_buf();
        let hash = hash.to_path_buf();
        match self {
            TreeError::SaltTooLong { len } => VerityError::SaltTooLong { len },
            TreeError::EmptyData => VerityError::EmptyData { path: data },
            TreeError::TooLarge { data_blocks } => VerityError::DataTooLarge {
                path: data,
                size: data_blocks.saturating_mul(BLOCK_SIZE),
            },
            TreeError::InvalidSuperblock(source) => {
                VerityError::InvalidSuperblock { path: hash, source }
            }
            TreeError::HashTruncated { expected, actual } => VerityError::HashTruncated {
                path: hash,
                expected,
                actual,
            },
            TreeError::DataTruncated { expected, actual } => VerityError::DataTruncated {
                path: data,
                expected,
                actual,
            },
            TreeError::DataBlockMismatch { index } => {
                VerityError::DataBlockMismatch { path: data, index }
            }
            TreeError::HashBlockMismatch {
                level,
                index,
                hash_block,
            } => VerityError::HashBlockMismatch {
                path: hash,
                level,
                index,
                hash_block,
            },
            TreeError::RootHashMismatch { expected, actual } => VerityError::RootHashMismatch {
                data,
                hash,
                expected,
                actual,
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Geometry
// ---------------------------------------------------------------------------

/// Shape of the hash tree for a number of data blocks: how many blocks each
/// level has and where it sits in the hash image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    data_blocks: u64,
    /// Blocks per level, index 0 is the leaf level.
    level_blocks: Vec<u64>,
    /// Hash image block index of each level's first block.
    level_starts: Vec<u64>,
    hash_size: u64,
}

impl Geometry {
    /// Computes the tree shape for `data_blocks` blocks. Returns `None` for 0
    /// blocks, or when the data size, hash image size or tree size in memory
    /// does not fit in `u64` or `usize`.
    pub fn new(data_blocks: u64) -> Option<Self> {
        if data_blocks == 0 {
            return None;
        }
        data_blocks.checked_mul(BLOCK_SIZE)?;

        // Each level has one digest per block of the level below, until a
        // level fits in one block. One data block needs no level at all.
        let mut level_blocks = Vec::new();
        let mut below = data_blocks;
        while below > 1 {
            below = below.div_ceil(DIGESTS_PER_BLOCK);
            level_blocks.push(below);
        }

        // Levels are stored top first, right after the superblock block.
        let mut level_starts = vec![0; level_blocks.len()];
        let mut next_start: u64 = 1;
        for level in (0..level_blocks.len()).rev() {
            level_starts[level] = next_start;
            next_start = next_start.checked_add(level_blocks[level])?;
        }
        let hash_size = next_start.checked_mul(BLOCK_SIZE)?;
        usize::try_from(hash_size).ok()?;

        Some(Geometry {
            data_blocks,
            level_blocks,
            level_starts,
            hash_size,
        })
    }

    /// Number of data blocks.
    pub fn data_blocks(&self) -> u64 {
        self.data_blocks
    }

    /// Data size in bytes.
    pub fn data_size(&self) -> u64 {
        // `new` checked that this product fits.
        self.data_blocks * BLOCK_SIZE
    }

    /// Number of tree levels, 0 for a single data block.
    pub fn levels(&self) -> usize {
        self.level_blocks.len()
    }

    /// Number of blocks in `level` (0 is the leaf level), or `None` past the
    /// top level.
    pub fn level_blocks(&self, level: usize) -> Option<u64> {
        self.level_blocks.get(level).copied()
    }

    /// Hash image block index of the first block of `level`, or `None` past
    /// the top level.
    pub fn level_start(&self, level: usize) -> Option<u64> {
        self.level_starts.get(level).copied()
    }

    /// Number of tree blocks, the superblock block excluded.
    pub fn tree_blocks(&self) -> u64 {
        self.hash_size / BLOCK_SIZE - 1
    }

    /// Hash image size in bytes, superblock block included.
    pub fn hash_size(&self) -> u64 {
        self.hash_size
    }

    /// Byte length of `level` in memory.
    fn level_len(&self, level: usize) -> usize {
        // `new` checked that the whole hash image fits in usize.
        (self.level_blocks[level] * BLOCK_SIZE) as usize
    }

    /// Byte length of the buffer that receives the data block digests: the
    /// whole leaf level, or one digest when there is no tree.
    fn leaf_buffer_len(&self) -> usize {
        if self.levels() == 0 {
            DIGEST_SIZE
        } else {
            self.level_len(0)
        }
    }

    /// Byte range of `level` inside the tree area, which starts at hash image
    /// block 1.
    fn level_range(&self, level: usize) -> std::ops::Range<usize> {
        let start = ((self.level_starts[level] - 1) * BLOCK_SIZE) as usize;
        start..start + self.level_len(level)
    }
}

// ---------------------------------------------------------------------------
// Hashing
// ---------------------------------------------------------------------------

/// sha256 with the salt already absorbed, cloned for every block.
#[derive(Clone)]
struct SaltedHasher {
    salt: Vec<u8>,
    salted: Sha256,
}

impl SaltedHasher {
    fn new(salt: &[u8]) -> Self {
        let mut salted = Sha256::new();
        salted.update(salt);
        SaltedHasher {
            salt: salt.to_vec(),
            salted,
        }
    }

    fn digest(&self, block: &[u8]) -> [u8; 32] {
        let mut hasher = self.salted.clone();
        hasher.update(block);
        hasher.finalize().into()
    }

    /// Hashes each 4096-byte block of `blocks` into the matching 32-byte slot
    /// of `digests`, in parallel. `blocks` must be a whole number of blocks
    /// and `digests` exactly one slot per block.
    fn digest_blocks(&self, blocks: &[u8], digests: &mut [u8]) {
        blocks
            .par_chunks_exact(BLOCK_BYTES)
            .zip(digests.par_chunks_exact_mut(DIGEST_SIZE))
            .with_min_len(MIN_BLOCKS_PER_TASK)
            .for_each(|(block, slot)| slot.copy_from_slice(&self.digest(block)));
    }
}

// ---------------------------------------------------------------------------
// Hash tree
// ---------------------------------------------------------------------------

/// A complete hash tree in memory, built from the digests of the data blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashTree {
    geometry: Geometry,
    salt: Vec<u8>,
    /// Level bytes, index 0 is the leaf level. Empty for a single data block.
    levels: Vec<Vec<u8>>,
    root_hash: [u8; 32],
}

impl HashTree {
    /// Builds the tree for `data`, which is zero-padded to whole blocks.
    pub fn from_data(data: &[u8], salt: &[u8]) -> Result<Self, TreeError> {
        check_salt(salt)?;
        if data.is_empty() {
            return Err(TreeError::EmptyData);
        }
        let data_blocks = data.len().div_ceil(BLOCK_BYTES) as u64;
        let geometry = Geometry::new(data_blocks).ok_or(TreeError::TooLarge { data_blocks })?;
        let hasher = SaltedHasher::new(salt);
        let mut leaves = vec![0u8; geometry.leaf_buffer_len()];

        let whole_len = data.len() / BLOCK_BYTES * BLOCK_BYTES;
        let whole_digests = whole_len / BLOCK_BYTES * DIGEST_SIZE;
        hasher.digest_blocks(&data[..whole_len], &mut leaves[..whole_digests]);
        if whole_len < data.len() {
            let mut last = [0u8; BLOCK_BYTES];
            last[..data.len() - whole_len].copy_from_slice(&data[whole_len..]);
            leaves[whole_digests..whole_digests + DIGEST_SIZE]
                .copy_from_slice(&hasher.digest(&last));
        }
        Ok(Self::from_leaves(geometry, &hasher, leaves))
    }

    /// Builds the upper levels on top of `leaves`, which contains one digest per
    /// data block and is `geometry.leaf_buffer_len()` bytes long.
    fn from_leaves(geometry: Geometry, hasher: &SaltedHasher, leaves: Vec<u8>) -> Self {
        if geometry.levels() == 0 {
            let mut root_hash = [0u8; 32];
            root_hash.copy_from_slice(&leaves[..DIGEST_SIZE]);
            return HashTree {
                geometry,
                salt: hasher.salt.clone(),
                levels: Vec::new(),
                root_hash,
            };
        }

        let mut levels = vec![leaves];
        for level in 1..geometry.levels() {
            let below = &levels[level - 1];
            let digests_len = below.len() / BLOCK_BYTES * DIGEST_SIZE;
            let mut current = vec![0u8; geometry.level_len(level)];
            hasher.digest_blocks(below, &mut current[..digests_len]);
            levels.push(current);
        }
        let mut root_hash = [0u8; 32];
        if let Some(top) = levels.last() {
            root_hash = hasher.digest(top);
        }
        HashTree {
            geometry,
            salt: hasher.salt.clone(),
            levels,
            root_hash,
        }
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    pub fn root_hash(&self) -> [u8; 32] {
        self.root_hash
    }

    /// Bytes of `level` (0 is the leaf level), a whole number of blocks, or
    /// `None` past the top level.
    pub fn level(&self, level: usize) -> Option<&[u8]> {
        self.levels.get(level).map(Vec::as_slice)
    }

    /// Writes the tree area, top level first, as it follows the superblock
    /// block in the hash image.
    pub fn write_levels<W: Write>(&self, out: &mut W) -> io::Result<()> {
        for level in self.levels.iter().rev() {
            out.write_all(level)?;
        }
        Ok(())
    }

    /// Compares this tree, built from the data, with the tree area of a
    /// stored hash image made with the same salt (the bytes after the superblock block, at least
    /// `tree_blocks() * 4096` long) and with `expected_root`.
    ///
    /// The first mismatch is located the way the kernel would meet it. The
    /// stored tree is checked from `expected_root` down, so a corrupt hash
    /// block is named before the data blocks it covers. A data block is named
    /// only when the stored tree is intact but the data's digest differs.
    pub fn check(&self, stored_tree: &[u8], expected_root: &[u8; 32]) -> Result<(), TreeError> {
        let geometry = &self.geometry;
        let tree_len = geometry.hash_size() as usize - BLOCK_BYTES;
        if stored_tree.len() < tree_len {
            return Err(TreeError::HashTruncated {
                expected: geometry.hash_size(),
                actual: (stored_tree.len() + BLOCK_BYTES) as u64,
            });
        }
        let stored_tree = &stored_tree[..tree_len];

        let stored_matches = (0..geometry.levels())
            .all(|level| stored_tree[geometry.level_range(level)] == self.levels[level]);
        if stored_matches {
            if self.root_hash == *expected_root {
                return Ok(());
            }
            return Err(TreeError::RootHashMismatch {
                expected: *expected_root,
                actual: self.root_hash,
            });
        }

        // The stored tree differs from the data's tree, so some stored hash
        // block or some data block changed. Walk the stored tree top-down.
        let hasher = SaltedHasher::new(&self.salt);
        for level in (0..geometry.levels()).rev() {
            let blocks = &stored_tree[geometry.level_range(level)];
            let parent = (level + 1 < geometry.levels())
                .then(|| &stored_tree[geometry.level_range(level + 1)]);
            let bad = blocks
                .par_chunks_exact(BLOCK_BYTES)
                .enumerate()
                .position_first(|(index, block)| {
                    let expected = match parent {
                        Some(parent) => &parent[index * DIGEST_SIZE..(index + 1) * DIGEST_SIZE],
                        None => &expected_root[..],
                    };
                    hasher.digest(block) != expected
                });
            if let Some(index) = bad {
                let index = index as u64;
                let hash_block = geometry.level_starts[level] + index;
                return Err(TreeError::HashBlockMismatch {
                    level,
                    index,
                    hash_block,
                });
            }
        }

        // The stored tree is consistent with `expected_root`, so the data
        // changed. Name the first data block whose digest differs.
        let stored_leaves = &stored_tree[geometry.level_range(0)];
        let data_digests = &self.levels[0];
        let bad = (0..geometry.data_blocks() as usize)
            .into_par_iter()
            .position_first(|index| {
                let range = index * DIGEST_SIZE..(index + 1) * DIGEST_SIZE;
                stored_leaves[range.clone()] != data_digests[range]
            });
        match bad {
            Some(index) => Err(TreeError::DataBlockMismatch {
                index: index as u64,
            }),
            None => Err(TreeError::RootHashMismatch {
                expected: *expected_root,
                actual: self.root_hash,
            }),
        }
    }
}

fn check_salt(salt: &[u8]) -> Result<(), TreeError> {
    if salt.len() > MAX_SALT_SIZE {
        return Err(TreeError::SaltTooLong { len: salt.len() });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Superblock
// ---------------------------------------------------------------------------

/// Contents of a veritysetup superblock with format 1, sha256 and 4096-byte
/// blocks, the only kind this module writes and reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub uuid: [u8; 16],
    pub salt: Vec<u8>,
    pub data_blocks: u64,
}

impl Superblock {
    /// Encodes the 512-byte superblock. The salt must be at most 256 bytes.
    pub fn encode(&self) -> Result<[u8; SUPERBLOCK_SIZE], SuperblockError> {
        if self.salt.len() > MAX_SALT_SIZE {
            return Err(SuperblockError::SaltSize(self.salt.len()));
        }
        // At most 256, checked above.
        let salt_size = self.salt.len() as u16;
        let mut out = [0u8; SUPERBLOCK_SIZE];
        out[0..8].copy_from_slice(&SIGNATURE);
        out[8..12].copy_from_slice(&SUPERBLOCK_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&HASH_TYPE_NORMAL.to_le_bytes());
        out[16..32].copy_from_slice(&self.uuid);
        out[32..32 + ALGORITHM.len()].copy_from_slice(ALGORITHM.as_bytes());
        out[64..68].copy_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
        out[68..72].copy_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
        out[72..80].copy_from_slice(&self.data_blocks.to_le_bytes());
        out[80..82].copy_from_slice(&salt_size.to_le_bytes());
        out[88..88 + self.salt.len()].copy_from_slice(&self.salt);
        Ok(out)
    }

    /// Decodes and validates a superblock from the start of `bytes`. The
    /// checks follow cryptsetup's (signature, versions, block sizes, salt
    /// size), narrowed to the parameters this module supports. Like
    /// `veritysetup verify` 2.6.1, it ignores the padding bytes and accepts
    /// the algorithm name in any case.
    pub fn decode(bytes: &[u8]) -> Result<Self, SuperblockError> {
        let sb: &[u8; SUPERBLOCK_SIZE] = bytes
            .get(..SUPERBLOCK_SIZE)
            .and_then(|head| head.try_into().ok())
            .ok_or(SuperblockError::Truncated { len: bytes.len() })?;
        let u32_at = |offset: usize| {
            u32::from_le_bytes([sb[offset], sb[offset + 1], sb[offset + 2], sb[offset + 3]])
        };

        if sb[0..8] != SIGNATURE {
            return Err(SuperblockError::Signature);
        }
        let version = u32_at(8);
        if version != SUPERBLOCK_VERSION {
            return Err(SuperblockError::Version(version));
        }
        let hash_type = u32_at(12);
        if hash_type != HASH_TYPE_NORMAL {
            return Err(SuperblockError::HashType(hash_type));
        }
        let algorithm_field = &sb[32..64];
        let name_len = algorithm_field
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(algorithm_field.len());
        let algorithm = String::from_utf8_lossy(&algorithm_field[..name_len]).into_owned();
        if !algorithm.eq_ignore_ascii_case(ALGORITHM) {
            return Err(SuperblockError::Algorithm(algorithm));
        }
        let (data_block_size, hash_block_size) = (u32_at(64), u32_at(68));
        if u64::from(data_block_size) != BLOCK_SIZE || u64::from(hash_block_size) != BLOCK_SIZE {
            return Err(SuperblockError::BlockSizes {
                data: data_block_size,
                hash: hash_block_size,
            });
        }
        let mut data_blocks_bytes = [0u8; 8];
        data_blocks_bytes.copy_from_slice(&sb[72..80]);
        let data_blocks = u64::from_le_bytes(data_blocks_bytes);
        if data_blocks == 0 {
            return Err(SuperblockError::NoDataBlocks);
        }
        if data_blocks.checked_mul(BLOCK_SIZE).is_none() {
            return Err(SuperblockError::TooManyDataBlocks(data_blocks));
        }
        let salt_size = u16::from_le_bytes([sb[80], sb[81]]);
        if usize::from(salt_size) > MAX_SALT_SIZE {
            return Err(SuperblockError::SaltSize(usize::from(salt_size)));
        }

        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&sb[16..32]);
        let salt = sb[88..88 + usize::from(salt_size)].to_vec();
        Ok(Superblock {
            uuid,
            salt,
            data_blocks,
        })
    }

    /// Tree shape for this superblock's data blocks, or `None` when it does
    /// not fit in memory.
    pub fn geometry(&self) -> Option<Geometry> {
        Geometry::new(self.data_blocks)
    }
}

// ---------------------------------------------------------------------------
// In-memory format and verify
// ---------------------------------------------------------------------------

/// Builds the hash image for `data` in memory. A partial last block is hashed
/// as if padded with zeros, as [`format`] pads the file.
pub fn format_bytes(
    data: &[u8],
    params: &VerityParams,
) -> Result<(VerityInfo, Vec<u8>), TreeError> {
    let tree = HashTree::from_data(data, &params.salt)?;
    let superblock = Superblock {
        uuid: params.uuid,
        salt: params.salt.clone(),
        data_blocks: tree.geometry().data_blocks(),
    };
    let mut image = superblock_block(&superblock)?.to_vec();
    image.reserve(tree.geometry().hash_size() as usize - BLOCK_BYTES);
    for level in tree.levels.iter().rev() {
        image.extend_from_slice(level);
    }
    let info = tree_info(&tree, &superblock);
    Ok((info, image))
}

/// Checks `data` against the hash image `hash_image` and `root_hash` in
/// memory. Data beyond the blocks the superblock covers is ignored, as
/// `veritysetup verify` does.
pub fn verify_bytes(
    data: &[u8],
    hash_image: &[u8],
    root_hash: &[u8; 32],
) -> Result<VerityInfo, TreeError> {
    let superblock = Superblock::decode(hash_image)?;
    let geometry = superblock.geometry().ok_or(TreeError::TooLarge {
        data_blocks: superblock.data_blocks,
    })?;
    check_hash_len(&geometry, hash_image.len() as u64)?;
    if (data.len() as u64) < geometry.data_size() {
        return Err(TreeError::DataTruncated {
            expected: geometry.data_size(),
            actual: data.len() as u64,
        });
    }

    let data = &data[..geometry.data_size() as usize];
    let tree = HashTree::from_data(data, &superblock.salt)?;
    tree.check(&hash_image[BLOCK_BYTES..], root_hash)?;
    Ok(tree_info(&tree, &superblock))
}

fn check_hash_len(geometry: &Geometry, actual: u64) -> Result<(), TreeError> {
    if actual < geometry.hash_size() {
        return Err(TreeError::HashTruncated {
            expected: geometry.hash_size(),
            actual,
        });
    }
    Ok(())
}

/// Builds the first block of the hash image: the superblock followed by
/// zeros.
fn superblock_block(superblock: &Superblock) -> Result<[u8; BLOCK_BYTES], TreeError> {
    let encoded = superblock.encode().map_err(|_| TreeError::SaltTooLong {
        len: superblock.salt.len(),
    })?;
    let mut block = [0u8; BLOCK_BYTES];
    block[..SUPERBLOCK_SIZE].copy_from_slice(&encoded);
    Ok(block)
}

fn tree_info(tree: &HashTree, superblock: &Superblock) -> VerityInfo {
    VerityInfo {
        root_hash: tree.root_hash(),
        salt: superblock.salt.clone(),
        uuid: superblock.uuid,
        data_blocks: tree.geometry().data_blocks(),
        hash_size: tree.geometry().hash_size(),
    }
}

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

/// Pads `data` in place with zeros to a whole number of 4096-byte blocks
/// (rejecting an empty file), then writes the hash image to `hash`: the
/// veritysetup superblock at offset 0 and the tree from block 1. `hash` is
/// created or truncated.
///
/// Neither file is synced to disk, unlike veritysetup, which fsyncs the hash
/// file. On ext4 with `data=ordered` that fsync also waits for the writeback
/// of a freshly written data file, and the pipeline does not need the hash
/// image to survive a crash.
pub fn format(data: &Path, hash: &Path, params: &VerityParams) -> Result<VerityInfo, VerityError> {
    check_salt(&params.salt).map_err(|err| err.with_paths(data, hash))?;
    if is_same_file(data, hash) {
        return Err(VerityError::SameFile {
            path: hash.to_path_buf(),
        });
    }

    let geometry = pad_data_file(data)?;
    let mut file = File::open(data).map_err(|source| VerityError::OpenData {
        path: data.to_path_buf(),
        source,
    })?;
    let hasher = SaltedHasher::new(&params.salt);
    let leaves = hash_data_file(&mut file, data, &geometry, &hasher)?;
    let tree = HashTree::from_leaves(geometry, &hasher, leaves);

    let superblock = Superblock {
        uuid: params.uuid,
        salt: params.salt.clone(),
        data_blocks: tree.geometry().data_blocks(),
    };
    let first_block = superblock_block(&superblock).map_err(|err| err.with_paths(data, hash))?;
    let write_error = |source| VerityError::WriteHash {
        path: hash.to_path_buf(),
        source,
    };
    let mut out = File::create(hash).map_err(|source| VerityError::CreateHash {
        path: hash.to_path_buf(),
        source,
    })?;
    out.write_all(&first_block).map_err(write_error)?;
    tree.write_levels(&mut out).map_err(write_error)?;

    Ok(tree_info(&tree, &superblock))
}

/// Checks `data` against the hash image in `hash` and `root_hash`: reads the
/// superblock, rebuilds every level from the data with the code [`format`]
/// uses, compares it with the stored tree and compares the root. Errors name
/// the first mismatching data block or hash block. Data beyond the blocks the
/// superblock covers is ignored, as `veritysetup verify` does.
pub fn verify(data: &Path, hash: &Path, root_hash: &[u8; 32]) -> Result<VerityInfo, VerityError> {
    let (superblock, geometry, stored_tree) = read_hash_image(hash)?;

    let mut file = File::open(data).map_err(|source| VerityError::OpenData {
        path: data.to_path_buf(),
        source,
    })?;
    let data_len = file
        .metadata()
        .map_err(|source| VerityError::StatData {
            path: data.to_path_buf(),
            source,
        })?
        .len();
    if data_len < geometry.data_size() {
        return Err(VerityError::DataTruncated {
            path: data.to_path_buf(),
            expected: geometry.data_size(),
            actual: data_len,
        });
    }
    let hasher = SaltedHasher::new(&superblock.salt);
    let leaves = hash_data_file(&mut file, data, &geometry, &hasher)?;
    let tree = HashTree::from_leaves(geometry, &hasher, leaves);

    tree.check(&stored_tree, root_hash)
        .map_err(|err| err.with_paths(data, hash))?;
    Ok(tree_info(&tree, &superblock))
}

/// Reads and validates the superblock of the hash image in `hash`.
pub fn read_superblock(hash: &Path) -> Result<Superblock, VerityError> {
    let mut file = File::open(hash).map_err(|source| VerityError::OpenHash {
        path: hash.to_path_buf(),
        source,
    })?;
    read_superblock_from(&mut file, hash)
}

fn read_superblock_from(file: &mut File, hash: &Path) -> Result<Superblock, VerityError> {
    let mut bytes = Vec::with_capacity(SUPERBLOCK_SIZE);
    Read::by_ref(file)
        .take(SUPERBLOCK_SIZE as u64)
        .read_to_end(&mut bytes)
        .map_err(|source| VerityError::ReadHash {
            path: hash.to_path_buf(),
            source,
        })?;
    Superblock::decode(&bytes).map_err(|source| VerityError::InvalidSuperblock {
        path: hash.to_path_buf(),
        source,
    })
}

/// Reads the superblock and the tree area (everything after the superblock
/// block that the geometry covers) of the hash image in `hash`.
fn read_hash_image(hash: &Path) -> Result<(Superblock, Geometry, Vec<u8>), VerityError> {
    let path = || hash.to_path_buf();
    let mut file = File::open(hash).map_err(|source| VerityError::OpenHash {
        path: path(),
        source,
    })?;
    let hash_len = file
        .metadata()
        .map_err(|source| VerityError::StatHash {
            path: path(),
            source,
        })?
        .len();
    let superblock = read_superblock_from(&mut file, hash)?;
    let geometry = superblock
        .geometry()
        .ok_or_else(|| VerityError::InvalidSuperblock {
            path: path(),
            source: SuperblockError::TooManyDataBlocks(superblock.data_blocks),
        })?;
    if hash_len < geometry.hash_size() {
        return Err(VerityError::HashTruncated {
            path: path(),
            expected: geometry.hash_size(),
            actual: hash_len,
        });
    }

    // The rest of block 0 after the superblock is not part of the tree.
    let mut rest_of_first_block = vec![0u8; BLOCK_BYTES - SUPERBLOCK_SIZE];
    let mut stored_tree = vec![0u8; geometry.hash_size() as usize - BLOCK_BYTES];
    file.read_exact(&mut rest_of_first_block)
        .and_then(|()| file.read_exact(&mut stored_tree))
        .map_err(|source| VerityError::ReadHash {
            path: path(),
            source,
        })?;
    Ok((superblock, geometry, stored_tree))
}

/// Checks whether both paths exist and name the same file, which `format`
/// would otherwise truncate while creating the hash image.
fn is_same_file(data: &Path, hash: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(data), std::fs::metadata(hash)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Reads the size of `data`, rejects it when empty, extends it with zeros to
/// a whole number of blocks, and returns the tree shape for the padded size.
fn pad_data_file(data: &Path) -> Result<Geometry, VerityError> {
    let path = || data.to_path_buf();
    let len = std::fs::metadata(data)
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => VerityError::OpenData {
                path: path(),
                source,
            },
            _ => VerityError::StatData {
                path: path(),
                source,
            },
        })?
        .len();
    if len == 0 {
        return Err(VerityError::EmptyData { path: path() });
    }
    let too_large = || VerityError::DataTooLarge {
        path: path(),
        size: len,
    };
    let data_blocks = len.div_ceil(BLOCK_SIZE);
    let padded = data_blocks.checked_mul(BLOCK_SIZE).ok_or_else(too_large)?;
    let geometry = Geometry::new(data_blocks).ok_or_else(too_large)?;

    if padded != len {
        let file = OpenOptions::new()
            .write(true)
            .open(data)
            .map_err(|source| VerityError::OpenData {
                path: path(),
                source,
            })?;
        file.set_len(padded)
            .map_err(|source| VerityError::PadData {
                path: path(),
                size: padded,
                source,
            })?;
    }
    Ok(geometry)
}

/// Hashes the first `geometry.data_blocks()` blocks of `file` into a leaf
/// buffer for [`HashTree::from_leaves`].
///
/// The file is read in chunks of 8 MiB. While rayon hashes one chunk on all
/// threads, one rayon task reads the next chunk into a second buffer, so
/// reading and hashing overlap and memory stays at two chunks plus the tree.
fn hash_data_file(
    file: &mut File,
    path: &Path,
    geometry: &Geometry,
    hasher: &SaltedHasher,
) -> Result<Vec<u8>, VerityError> {
    let read_error = |source| VerityError::ReadData {
        path: path.to_path_buf(),
        source,
    };
    let mut leaves = vec![0u8; geometry.leaf_buffer_len()];
    let data_size = geometry.data_size();
    let chunk_len = |offset: u64| (data_size - offset).min(READ_CHUNK_BYTES as u64) as usize;

    let mut current = vec![0u8; chunk_len(0)];
    let mut next = Vec::with_capacity(current.len());
    file.read_exact(&mut current).map_err(read_error)?;
    let mut offset: u64 = 0;

    loop {
        let next_offset = offset + current.len() as u64;
        let next_len = chunk_len(next_offset);
        next.resize(next_len, 0);

        let digest_start = (offset / BLOCK_SIZE) as usize * DIGEST_SIZE;
        let digest_end = digest_start + current.len() / BLOCK_BYTES * DIGEST_SIZE;
        let digests = &mut leaves[digest_start..digest_end];
        let (read_result, ()) = rayon::join(
            || file.read_exact(&mut next),
            || hasher.digest_blocks(&current, digests),
        );
        read_result.map_err(read_error)?;

        if next_len == 0 {
            return Ok(leaves);
        }
        std::mem::swap(&mut current, &mut next);
        offset = next_offset;
    }
}

// ---------------------------------------------------------------------------
// Text forms
// ---------------------------------------------------------------------------

fn salt_to_table_hex(salt: &[u8]) -> String {
    if salt.is_empty() {
        "-".to_string()
    } else {
        hex::encode(salt)
    }
}

fn uuid_to_string(uuid: &[u8; 16]) -> String {
    let hex = hex::encode(uuid);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SPEC_UUID: [u8; 16] = [
        0x12, 0x34, 0x56, 0x78, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56,
        0x78,
    ];

    fn params(salt: &[u8]) -> VerityParams {
        VerityParams {
            salt: salt.to_vec(),
            uuid: SPEC_UUID,
        }
    }

    /// `blocks` blocks where block i is filled with the byte `i mod 251`.
    fn patterned_data(blocks: usize) -> Vec<u8> {
        (0..blocks)
            .flat_map(|i| std::iter::repeat_n((i % 251) as u8, BLOCK_BYTES))
            .collect()
    }

    fn sha256(parts: &[&[u8]]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        hasher.finalize().into()
    }

    // Values produced by veritysetup 2.6.1: 300 blocks of `i mod 251`, the
    // salt 00112233445566778899aabbccddeeff twice, this UUID.
    #[test]
    fn format_bytes_300_block_vector() {
        let salt = hex::decode("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
            .unwrap();
        let (info, image) = format_bytes(&patterned_data(300), &params(&salt)).unwrap();

        assert_eq!(
            info.root_hash_hex(),
            "8df1ec12b9e6bbc5d389c0dd2587b4103a6c73c56a917194ec5bfc22f1fab0d9"
        );
        assert_eq!(info.data_blocks, 300);
        assert_eq!(info.hash_size, 20480);
        assert_eq!(image.len(), 20480);
        assert_eq!(info.uuid_string(), "12345678-1234-5678-9abc-def012345678");
    }

    // veritysetup 2.6.1: one block of 0x5a bytes with salt abcd gives a root
    // equal to sha256(abcd || block) and a hash image of one block.
    #[test]
    fn format_bytes_single_block_vector() {
        let data = vec![0x5a; BLOCK_BYTES];
        let (info, image) = format_bytes(&data, &params(&[0xab, 0xcd])).unwrap();

        assert_eq!(
            info.root_hash_hex(),
            "c117c3af3d9cf668beaaeacc98d300bc7ac11e99240fa150f0931c1d24bb3b92"
        );
        assert_eq!(info.root_hash, sha256(&[&[0xab, 0xcd], &data]));
        assert_eq!(info.hash_size, BLOCK_SIZE);
        assert_eq!(image.len(), BLOCK_BYTES);
    }

    #[test]
    fn geometry_levels_and_starts() {
        let cases: &[(u64, &[u64])] = &[
            (1, &[]),
            (2, &[1]),
            (127, &[1]),
            (128, &[1]),
            (129, &[2, 1]),
            (300, &[3, 1]),
            (128 * 128, &[128, 1]),
            (128 * 128 + 1, &[129, 2, 1]),
        ];
        for &(data_blocks, expected) in cases {
            let geometry = Geometry::new(data_blocks).unwrap();
            let levels: Vec<u64> = (0..geometry.levels())
                .map(|l| geometry.level_blocks(l).unwrap())
                .collect();
            assert_eq!(levels, expected, "level sizes for {data_blocks} blocks");
            assert_eq!(geometry.tree_blocks(), expected.iter().sum::<u64>());
            assert_eq!(
                geometry.hash_size(),
                (1 + geometry.tree_blocks()) * BLOCK_SIZE
            );
        }

        // Top level right after the superblock block, leaves last.
        let geometry = Geometry::new(128 * 128 + 1).unwrap();
        assert_eq!(geometry.level_start(2), Some(1));
        assert_eq!(geometry.level_start(1), Some(2));
        assert_eq!(geometry.level_start(0), Some(4));
        assert_eq!(geometry.level_start(3), None);
    }

    #[test]
    fn geometry_rejects_zero_and_overflow() {
        assert_eq!(Geometry::new(0), None);
        assert_eq!(Geometry::new(u64::MAX), None);
        assert_eq!(Geometry::new(u64::MAX / BLOCK_SIZE + 1), None);
    }

    #[test]
    fn tree_levels_hash_salted_blocks() {
        let salt = [7u8; 5];
        let data = patterned_data(200);
        let tree = HashTree::from_data(&data, &salt).unwrap();

        let leaves = tree.level(0).unwrap();
        assert_eq!(leaves.len(), 2 * BLOCK_BYTES);
        for index in [0usize, 127, 128, 199] {
            let block = &data[index * BLOCK_BYTES..(index + 1) * BLOCK_BYTES];
            assert_eq!(
                &leaves[index * 32..(index + 1) * 32],
                &sha256(&[&salt, block]),
                "leaf {index}"
            );
        }
        assert!(
            leaves[200 * 32..].iter().all(|&b| b == 0),
            "leaf level tail is zero"
        );

        let top = tree.level(1).unwrap();
        assert_eq!(&top[..32], &sha256(&[&salt, &leaves[..BLOCK_BYTES]]));
        assert_eq!(&top[32..64], &sha256(&[&salt, &leaves[BLOCK_BYTES..]]));
        assert!(top[64..].iter().all(|&b| b == 0), "top block tail is zero");
        assert_eq!(tree.root_hash(), sha256(&[&salt, top]));
        assert_eq!(tree.level(2), None);
    }

    #[test]
    fn format_bytes_pads_partial_block() {
        let mut data = patterned_data(3);
        data.truncate(2 * BLOCK_BYTES + 100);
        let mut padded = data.clone();
        padded.resize(3 * BLOCK_BYTES, 0);

        let (info, image) = format_bytes(&data, &params(b"salt")).unwrap();
        let (padded_info, padded_image) = format_bytes(&padded, &params(b"salt")).unwrap();
        assert_eq!(info, padded_info);
        assert_eq!(image, padded_image);
        assert_eq!(info.data_blocks, 3);
    }

    #[test]
    fn format_bytes_rejects_bad_input() {
        assert_eq!(
            format_bytes(&[], &params(b"x")).unwrap_err(),
            TreeError::EmptyData
        );
        let long_salt = vec![1u8; 257];
        assert_eq!(
            format_bytes(&[1], &params(&long_salt)).unwrap_err(),
            TreeError::SaltTooLong { len: 257 }
        );
        assert!(format_bytes(&[1], &params(&[1u8; 256])).is_ok());
        assert!(format_bytes(&[1], &params(&[])).is_ok());
    }

    #[test]
    fn superblock_layout_matches_veritysetup() {
        let superblock = Superblock {
            uuid: SPEC_UUID,
            salt: vec![0xab, 0xcd],
            data_blocks: 300,
        };
        let bytes = superblock.encode().unwrap();

        assert_eq!(&bytes[0..8], b"verity\0\0");
        assert_eq!(&bytes[8..12], &1u32.to_le_bytes());
        assert_eq!(&bytes[12..16], &1u32.to_le_bytes());
        assert_eq!(&bytes[16..32], &SPEC_UUID);
        assert_eq!(&bytes[32..40], b"sha256\0\0");
        assert_eq!(&bytes[64..68], &4096u32.to_le_bytes());
        assert_eq!(&bytes[68..72], &4096u32.to_le_bytes());
        assert_eq!(&bytes[72..80], &300u64.to_le_bytes());
        assert_eq!(&bytes[80..82], &2u16.to_le_bytes());
        assert_eq!(&bytes[88..90], &[0xab, 0xcd]);
        assert!(bytes[90..].iter().all(|&b| b == 0));
        assert_eq!(Superblock::decode(&bytes).unwrap(), superblock);
    }

    #[test]
    fn superblock_decode_rejects_invalid_fields() {
        let valid = Superblock {
            uuid: SPEC_UUID,
            salt: vec![1; 32],
            data_blocks: 10,
        }
        .encode()
        .unwrap();
        let with = |offset: usize, patch: &[u8]| {
            let mut bytes = valid;
            bytes[offset..offset + patch.len()].copy_from_slice(patch);
            Superblock::decode(&bytes)
        };

        assert_eq!(
            Superblock::decode(&valid[..511]),
            Err(SuperblockError::Truncated { len: 511 })
        );
        assert_eq!(with(0, b"veritx"), Err(SuperblockError::Signature));
        assert_eq!(
            with(8, &2u32.to_le_bytes()),
            Err(SuperblockError::Version(2))
        );
        assert_eq!(
            with(12, &0u32.to_le_bytes()),
            Err(SuperblockError::HashType(0))
        );
        assert_eq!(
            with(32, b"sha1\0\0"),
            Err(SuperblockError::Algorithm("sha1".into()))
        );
        assert_eq!(
            with(64, &512u32.to_le_bytes()),
            Err(SuperblockError::BlockSizes {
                data: 512,
                hash: 4096
            })
        );
        assert_eq!(
            with(68, &1024u32.to_le_bytes()),
            Err(SuperblockError::BlockSizes {
                data: 4096,
                hash: 1024
            })
        );
        assert_eq!(
            with(72, &0u64.to_le_bytes()),
            Err(SuperblockError::NoDataBlocks)
        );
        assert_eq!(
            with(72, &u64::MAX.to_le_bytes()),
            Err(SuperblockError::TooManyDataBlocks(u64::MAX))
        );
        assert_eq!(
            with(80, &257u16.to_le_bytes()),
            Err(SuperblockError::SaltSize(257))
        );
        assert!(
            with(32, b"SHA256").is_ok(),
            "algorithm names are case-insensitive"
        );
        assert!(
            with(400, &[0xff]).is_ok(),
            "padding is ignored, as cryptsetup does"
        );
    }

    #[test]
    fn verify_bytes_accepts_formatted_image() {
        let data = patterned_data(300);
        let (info, image) = format_bytes(&data, &params(b"s")).unwrap();
        assert_eq!(
            verify_bytes(&data, &image, &info.root_hash),
            Ok(info.clone())
        );

        // Trailing bytes after the covered blocks are ignored.
        let mut longer = data.clone();
        longer.extend_from_slice(&[9; 100]);
        assert_eq!(verify_bytes(&longer, &image, &info.root_hash), Ok(info));
    }

    #[test]
    fn verify_bytes_names_wrong_root() {
        let data = patterned_data(3);
        let (info, image) = format_bytes(&data, &params(b"s")).unwrap();
        let wrong = [0u8; 32];
        assert_eq!(
            verify_bytes(&data, &image, &wrong),
            Err(TreeError::RootHashMismatch {
                expected: wrong,
                actual: info.root_hash
            })
        );
    }

    #[test]
    fn verify_bytes_single_block_mismatch_is_root() {
        let mut data = vec![0x5a; BLOCK_BYTES];
        let (info, image) = format_bytes(&data, &params(b"s")).unwrap();
        data[17] ^= 1;
        assert!(matches!(
            verify_bytes(&data, &image, &info.root_hash),
            Err(TreeError::RootHashMismatch { expected, .. }) if expected == info.root_hash
        ));
    }

    #[test]
    fn verify_bytes_rejects_truncated_inputs() {
        let data = patterned_data(300);
        let (info, image) = format_bytes(&data, &params(b"s")).unwrap();
        assert_eq!(
            verify_bytes(&data[..299 * BLOCK_BYTES], &image, &info.root_hash),
            Err(TreeError::DataTruncated {
                expected: 300 * BLOCK_SIZE,
                actual: 299 * BLOCK_SIZE
            })
        );
        assert_eq!(
            verify_bytes(&data, &image[..image.len() - 1], &info.root_hash),
            Err(TreeError::HashTruncated {
                expected: 20480,
                actual: 20479
            })
        );
    }

    #[test]
    fn verify_bytes_names_hash_block_in_each_level() {
        // 128 * 128 + 1 blocks give three levels of 1, 2 and 129 blocks.
        let data = patterned_data(128 * 128 + 1);
        let (info, image) = format_bytes(&data, &params(b"salt")).unwrap();
        let cases = [(2, 0, 1), (1, 1, 3), (0, 0, 4), (0, 128, 132)];
        for (level, index, hash_block) in cases {
            let mut corrupt = image.clone();
            corrupt[hash_block as usize * BLOCK_BYTES + 4095] ^= 0x80;
            assert_eq!(
                verify_bytes(&data, &corrupt, &info.root_hash),
                Err(TreeError::HashBlockMismatch {
                    level,
                    index,
                    hash_block
                }),
                "flip in hash block {hash_block}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn verify_bytes_names_flipped_data_block(
            blocks in 2usize..400,
            salt in proptest::collection::vec(any::<u8>(), 0..=256),
            flip in any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut data = patterned_data(blocks);
            let (info, image) = format_bytes(&data, &params(&salt)).unwrap();
            prop_assert_eq!(verify_bytes(&data, &image, &info.root_hash), Ok(info.clone()));

            let byte = flip.index(data.len());
            data[byte] ^= 1 << bit;
            let index = (byte / BLOCK_BYTES) as u64;
            prop_assert_eq!(verify_bytes(&data, &image, &info.root_hash), Err(TreeError::DataBlockMismatch { index }));
        }

        #[test]
        fn verify_bytes_names_flipped_hash_block(
            blocks in 2usize..1_200,
            flip in any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            let data = patterned_data(blocks);
            let (info, mut image) = format_bytes(&data, &params(b"salt")).unwrap();
            let geometry = Geometry::new(blocks as u64).unwrap();

            // Flip a bit anywhere in the tree area, digest slots and zero
            // tails alike.
            let byte = BLOCK_BYTES + flip.index(image.len() - BLOCK_BYTES);
            image[byte] ^= 1 << bit;
            let hash_block = (byte / BLOCK_BYTES) as u64;
            let level = (0..geometry.levels())
                .find(|&l| {
                    let start = geometry.level_start(l).unwrap();
                    (start..start + geometry.level_blocks(l).unwrap()).contains(&hash_block)
                })
                .unwrap();
            let index = hash_block - geometry.level_start(level).unwrap();
            prop_assert_eq!(
                verify_bytes(&data, &image, &info.root_hash),
                Err(TreeError::HashBlockMismatch { level, index, hash_block })
            );
        }
    }
}
