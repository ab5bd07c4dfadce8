//! Disk image stage: a GPT disk with an EFI System Partition, the verity
//! protected root, its hash tree and signature, and an optional state
//! partition.
//!
//! Partition types, names and UUIDs follow the UAPI Group's Discoverable
//! Partitions Specification (DPS), so systemd tools and the initramfs find the
//! partitions by type:
//!
//! * the root partition's UUID is the first 128 bits of the verity root hash,
//!   and the verity partition's UUID the last 128 bits. The hash bytes are
//!   the UUID in its canonical text order, with no version bits forced. GPT
//!   stores the first three UUID fields little-endian, which the `gpt`
//!   submodule handles;
//! * DPS does not derive the signature partition's UUID. This module uses the
//!   first 16 bytes of SHA-256 over the type GUID (16 bytes in text order)
//!   followed by the raw root hash ([`derive_uuid`]), like systemd PR #39709
//!   proposes, so images stay reproducible;
//! * the ESP and state partition UUIDs are derived the same way from the disk
//!   GUID, so they do not change between releases of the same disk;
//! * root, verity and signature partitions carry GPT attribute bit 60
//!   (read-only).
//!
//! The signature partition holds compact JSON with the keys `rootHash`,
//! `certificateFingerprint` and `signature`, NUL-padded to a multiple of 4096
//! bytes ([`verity_sig_json`]).
//!
//! [`write_image`] writes the image sparsely: it sets the file length, then
//! writes only the 4096-byte blocks of partition contents that are not zero.
//!
//! [`mapped_ranges`] names the bytes of the image that a flasher must write
//! (the block map of `disk.bmap`): the protective MBR and both GPT copies,
//! every partition in full, except an EFI System Partition with a FAT32
//! volume, which is mapped up to the end of its highest allocated cluster.
//! The gaps between partitions are not mapped.

mod fat;
mod fat_read;
mod gpt;

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;
pub use uuid::Uuid;

pub use fat::{make_esp, FatError};
pub(crate) use fat::civil_from_days;
pub use fat_read::{FatReadError, FatVolume};
pub use gpt::{read_layout, relocate, GptError, Layout, PartitionEntry, PARTITION_ALIGNMENT, SECTOR_SIZE};
pub(crate) use gpt::encode as encode_table;

/// DPS partition type of an x86-64 root file system.
pub const ROOT_X86_64: Uuid = Uuid::from_u128(0x4f68bce3_e8cd_4db1_96e7_fbcaf984b709);
/// DPS partition type of the dm-verity hash tree of an x86-64 root.
pub const ROOT_VERITY_X86_64: Uuid = Uuid::from_u128(0x2c7357ed_ebd2_46d9_aec1_23d437ec2bf5);
/// DPS partition type of the root hash signature of an x86-64 root.
pub const ROOT_VERITY_SIG_X86_64: Uuid = Uuid::from_u128(0x41092b05_9fc8_4523_994f_2def0408b176);
/// EFI System Partition type (UEFI specification).
pub const ESP: Uuid = Uuid::from_u128(0xc12a7328_f81f_11d2_ba4b_00a0c93ec93b);
/// Generic Linux data partition type, used for the writable state partition.
pub const LINUX_DATA: Uuid = Uuid::from_u128(0x0fc63daf_8483_4772_8e79_3d69d8477de4);

/// GPT attribute bit 60: mount read-only (DPS).
pub const ATTR_READ_ONLY: u64 = 1 << 60;
/// GPT attribute bit 59: grow the file system to the partition size (DPS).
pub const ATTR_GROW_FILE_SYSTEM: u64 = 1 << 59;
/// GPT attribute bit 63: exclude from automatic discovery (DPS).
pub const ATTR_NO_AUTO: u64 = 1 << 63;

/// Name of the EFI System Partition written by [`appliance_partitions`].
pub const NAME_ESP: &str = "esp";
/// Name of the root partition.
pub const NAME_ROOT: &str = "root-x86-64";
/// Name of the root's dm-verity hash partition.
pub const NAME_ROOT_VERITY: &str = "root-x86-64-verity";
/// Name of the root hash signature partition.
pub const NAME_ROOT_VERITY_SIG: &str = "root-x86-64-verity-sig";
/// Name of the writable state partition.
pub const NAME_STATE: &str = "state";

/// Block size that the signature JSON is padded to, as DPS requires.
const VERITY_SIG_ALIGNMENT: usize = 4096;
/// Minimum root hash length: the two UUID halves must not overlap.
const ROOT_HASH_MIN_BYTES: usize = 32;
/// Length of a UUID in bytes.
const UUID_BYTES: usize = 16;
/// Block size for skipping zeros while writing, and the read buffer size.
const SPARSE_BLOCK: usize = 4096;
const COPY_BUFFER: usize = 1024 * 1024;

/// Errors from the disk image stage.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DiskError {
    /// The root hash is too short to give two distinct partition UUIDs.
    #[error(
        "invalid root hash of {len} bytes: DPS UUIDs need at least 32 bytes (a SHA-256 root hash)"
    )]
    InvalidRootHash {
        /// The hash length in bytes.
        len: usize,
    },

    /// The root hash text is not lower-case hexadecimal.
    #[error("invalid root hash {value:?}: use the lower-case hexadecimal string that veritysetup prints")]
    InvalidRootHashHex {
        /// The rejected text.
        value: String,
    },

    /// Serializing the signature JSON failed.
    #[error("failed to encode the verity signature JSON (please report this bug): {0}")]
    SignatureJson(#[source] serde_json::Error),

    /// Planning the partition table failed.
    #[error(transparent)]
    Table(#[from] GptError),

    /// The size of a content file could not be read.
    #[error("failed to read the size of {path} for partition {name:?}: {source}")]
    InspectContent {
        /// The partition name.
        name: String,
        /// The content file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A partition's content is larger than the partition.
    #[error(
        "content of partition {name:?} is {content_size} bytes, but the partition has \
         {partition_size} bytes; enlarge the partition"
    )]
    ContentTooLarge {
        /// The partition name.
        name: String,
        /// The content size in bytes.
        content_size: u64,
        /// The partition size in bytes.
        partition_size: u64,
    },

    /// The image file could not be created.
    #[error("failed to create disk image {path}: {source}")]
    Create {
        /// The image path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The image file could not be extended to the disk size.
    #[error("failed to set disk image {path} to {size} bytes: {source}")]
    SetLength {
        /// The image path.
        path: PathBuf,
        /// The requested size.
        size: u64,
        /// The I/O error.
        source: std::io::Error,
    },

    /// Writing the partition table failed.
    #[error("failed to write the partition table to {path}: {source}")]
    WriteTable {
        /// The image path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// Reading a content file failed.
    #[error("failed to read {path} for partition {name:?}: {source}")]
    ReadContent {
        /// The partition name.
        name: String,
        /// The content file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// Reading a partition back from the image failed.
    #[error("failed to read partition {name:?} from {path}: {source}")]
    ReadImage {
        /// The image path.
        path: PathBuf,
        /// The partition name.
        name: String,
        /// The I/O error.
        source: std::io::Error,
    },

    /// Writing a partition's content failed.
    #[error("failed to write partition {name:?} to {path}: {source}")]
    WriteContent {
        /// The partition name.
        name: String,
        /// The image path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Contents written into a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionContent {
    /// The bytes of a file, copied from the start of the partition.
    File(PathBuf),
    /// These bytes, copied from the start of the partition.
    Bytes(Vec<u8>),
    /// Nothing: the partition reads as zeros.
    Zero,
}

/// One partition of the image. The rest of the partition after its content
/// reads as zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    /// GPT partition name, at most 36 UTF-16 code units.
    pub name: String,
    /// Partition type GUID, such as [`ROOT_X86_64`].
    pub type_guid: Uuid,
    /// Unique partition GUID (PARTUUID).
    pub uuid: Uuid,
    /// Size in bytes, a non-zero multiple of 4096.
    pub size: u64,
    /// GPT attribute bits, such as [`ATTR_READ_ONLY`].
    pub attributes: u64,
    /// Contents written into the partition.
    pub content: PartitionContent,
}

/// Size and content of one partition of [`ApplianceImage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInput {
    /// Size in bytes, a non-zero multiple of 4096.
    pub size: u64,
    /// Contents written into the partition.
    pub content: PartitionContent,
}

/// The partitions of an appliance disk, in disk order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplianceImage<'a> {
    /// Raw dm-verity root hash (32 bytes for SHA-256).
    pub root_hash: &'a [u8],
    /// EFI System Partition, normally from [`make_esp`].
    pub esp: PartitionInput,
    /// Root file system (dm-verity data device).
    pub root: PartitionInput,
    /// dm-verity hash tree of the root.
    pub root_verity: PartitionInput,
    /// Root hash signature JSON from [`verity_sig_json`].
    pub root_verity_sig: PartitionInput,
    /// Optional writable state partition.
    pub state: Option<PartitionInput>,
}

/// Returns the DPS root partition UUID: the first 16 bytes of the root hash.
///
/// # Errors
///
/// [`DiskError::InvalidRootHash`] if the hash is shorter than 32 bytes.
pub fn root_partition_uuid(root_hash: &[u8]) -> Result<Uuid, DiskError> {
    let hash = check_root_hash(root_hash)?;
    Ok(uuid_from_slice(&hash[..UUID_BYTES]))
}

/// Returns the DPS verity partition UUID: the last 16 bytes of the root hash.
///
/// # Errors
///
/// [`DiskError::InvalidRootHash`] if the hash is shorter than 32 bytes.
pub fn verity_partition_uuid(root_hash: &[u8]) -> Result<Uuid, DiskError> {
    let hash = check_root_hash(root_hash)?;
    Ok(uuid_from_slice(&hash[hash.len() - UUID_BYTES..]))
}

/// Returns the verity signature partition UUID, derived from the root hash
/// with [`derive_uuid`] and the signature partition type.
///
/// # Errors
///
/// [`DiskError::InvalidRootHash`] if the hash is shorter than 32 bytes.
pub fn verity_sig_partition_uuid(root_hash: &[u8]) -> Result<Uuid, DiskError> {
    let hash = check_root_hash(root_hash)?;
    Ok(derive_uuid(ROOT_VERITY_SIG_X86_64, hash))
}

/// Derives a UUID as the first 16 bytes of SHA-256 over the partition type
/// GUID (16 bytes in text order) followed by `seed`. No version or variant
/// bits are forced.
pub fn derive_uuid(type_guid: Uuid, seed: &[u8]) -> Uuid {
    let digest = Sha256::new()
        .chain_update(type_guid.as_bytes())
        .chain_update(seed)
        .finalize();
    uuid_from_slice(&digest[..UUID_BYTES])
}

/// Builds the content of the verity signature partition: compact JSON
/// `{"rootHash":…,"certificateFingerprint":…,"signature":…}` with the DER
/// PKCS#7 signature in Base64, NUL-padded to a multiple of 4096 bytes.
///
/// `root_hash_hex` is the lower-case hex string that the signature covers and
/// `cert_sha256` the SHA-256 of the signer certificate's DER.
///
/// # Errors
///
/// [`DiskError::InvalidRootHashHex`] if the hash text is empty, of odd length
/// or not lower-case hexadecimal.
pub fn verity_sig_json(
    root_hash_hex: &str,
    signature_der: &[u8],
    cert_sha256: &[u8; 32],
) -> Result<Vec<u8>, DiskError> {
    let valid = !root_hash_hex.is_empty()
        && root_hash_hex.len().is_multiple_of(2)
        && root_hash_hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !valid {
        return Err(DiskError::InvalidRootHashHex {
            value: root_hash_hex.to_owned(),
        });
    }

    // Field order is the key order of the JSON, the order systemd-repart writes.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct VeritySignature {
        root_hash: String,
        certificate_fingerprint: String,
        signature: String,
    }
    let document = VeritySignature {
        root_hash: root_hash_hex.to_owned(),
        certificate_fingerprint: hex::encode(cert_sha256),
        signature: base64::engine::general_purpose::STANDARD.encode(signature_der),
    };
    let mut json = serde_json::to_vec(&document).map_err(DiskError::SignatureJson)?;
    json.resize(json.len().next_multiple_of(VERITY_SIG_ALIGNMENT), 0);
    Ok(json)
}

/// Returns the partitions of an appliance disk in the order ESP, root, root
/// verity, root verity signature and state, with DPS types, names, derived
/// UUIDs and the read-only attribute on the three verity partitions.
///
/// # Errors
///
/// [`DiskError::InvalidRootHash`] if the root hash is shorter than 32 bytes.
pub fn appliance_partitions(
    disk_guid: Uuid,
    image: ApplianceImage<'_>,
) -> Result<Vec<PartitionSpec>, DiskError> {
    let root_hash = image.root_hash;
    let spec = |name: &str, type_guid, uuid, attributes, input: PartitionInput| PartitionSpec {
        name: name.to_owned(),
        type_guid,
        uuid,
        size: input.size,
        attributes,
        content: input.content,
    };

    let mut partitions = vec![
        spec(
            NAME_ESP,
            ESP,
            derive_uuid(ESP, disk_guid.as_bytes()),
            0,
            image.esp,
        ),
        spec(
            NAME_ROOT,
            ROOT_X86_64,
            root_partition_uuid(root_hash)?,
            ATTR_READ_ONLY,
            image.root,
        ),
        spec(
            NAME_ROOT_VERITY,
            ROOT_VERITY_X86_64,
            verity_partition_uuid(root_hash)?,
            ATTR_READ_ONLY,
            image.root_verity,
        ),
        spec(
            NAME_ROOT_VERITY_SIG,
            ROOT_VERITY_SIG_X86_64,
            verity_sig_partition_uuid(root_hash)?,
            ATTR_READ_ONLY,
            image.root_verity_sig,
        ),
    ];
    if let Some(state) = image.state {
        partitions.push(spec(
            NAME_STATE,
            LINUX_DATA,
            derive_uuid(LINUX_DATA, disk_guid.as_bytes()),
            0,
            state,
        ));
    }
    Ok(partitions)
}

/// Writes a GPT disk image of `disk_size` bytes to `out` and returns its layout.
///
/// Partitions are placed in the order given, each on a 1 MiB boundary, with
/// 512-byte sectors. The file is replaced if it exists, and only non-zero
/// 4096-byte blocks of the contents are written, so the file is sparse on file
/// systems that support holes.
///
/// # Errors
///
/// Returns a [`DiskError`] when:
/// * the disk size is not a multiple of 512 bytes, or a partition size not a
///   multiple of 4096 bytes;
/// * the partitions do not fit, or a name, type or GUID is invalid or repeated;
/// * a content is larger than its partition;
/// * reading or writing a file fails. A failed write can leave a partial
///   image at `out`.
pub fn write_image(
    out: &Path,
    disk_size: u64,
    disk_guid: Uuid,
    partitions: &[PartitionSpec],
) -> Result<Layout, DiskError> {
    let requests: Vec<gpt::EntryRequest<'_>> = partitions
        .iter()
        .map(|p| gpt::EntryRequest {
            name: &p.name,
            type_guid: p.type_guid,
            uuid: p.uuid,
            size: p.size,
            attributes: p.attributes,
        })
        .collect();
    let layout = gpt::plan(disk_size, disk_guid, &requests)?;
    for partition in partitions {
        check_content_size(partition)?;
    }

    let file = create_image(out, disk_size)?;
    let table = gpt::encode(&layout);
    let write_table = |source| DiskError::WriteTable {
        path: out.to_owned(),
        source,
    };
    file.write_all_at(&table.head, 0).map_err(write_table)?;
    file.write_all_at(&table.tail, table.tail_offset)
        .map_err(write_table)?;

    for (partition, entry) in partitions.iter().zip(&layout.partitions) {
        tracing::debug!(
            name = %entry.name,
            offset = entry.offset(),
            size = entry.size(),
            uuid = %entry.uuid,
            "writing partition"
        );
        write_content(&file, out, partition, entry.offset())?;
    }
    tracing::info!(path = %out.display(), size = disk_size, partitions = layout.partitions.len(), "wrote disk image");
    Ok(layout)
}

/// Returns the byte ranges of the disk image at `image`, whose table
/// is `layout`, that hold data, in disk order.
///
/// The ranges are: the protective MBR, primary header and entry array; each
/// partition in full, except that an EFI System Partition holding a FAT32
/// volume ends at its highest allocated cluster ([`FatVolume::used_len`]);
/// the backup entry array and header. Partitions are mapped in full even
/// where they read as zeros, because dm-verity needs every byte of the
/// root, its hash tree and signature, and the state partition's ext4
/// counts on its unwritten inode tables and journal reading as zeros.
///
/// # Errors
///
/// [`DiskError::ReadImage`] when the ESP cannot be read from the image.
pub fn mapped_ranges(image: &Path, layout: &Layout) -> Result<Vec<Range<u64>>, DiskError> {
    let mut ranges = Vec::with_capacity(layout.partitions.len() + 2);
    ranges.push(0..layout.first_usable_lba * SECTOR_SIZE);
    for entry in &layout.partitions {
        let len = match entry.type_guid {
            ESP => esp_used_len(image, entry)?.unwrap_or(entry.size()),
            _ => entry.size(),
        };
        ranges.push(entry.offset()..entry.offset() + len.min(entry.size()));
    }
    ranges.push((layout.last_usable_lba + 1) * SECTOR_SIZE..layout.disk_size);
    Ok(ranges)
}

/// Reads the ESP and returns its used length, or `None` when it does not
/// hold a FAT32 volume (then all of it counts).
fn esp_used_len(image: &Path, entry: &PartitionEntry) -> Result<Option<u64>, DiskError> {
    let error = |source| DiskError::ReadImage { path: image.to_owned(), name: entry.name.clone(), source };
    let len = usize::try_from(entry.size()).map_err(|_| error(ErrorKind::OutOfMemory.into()))?;
    let mut bytes = vec![0u8; len];
    File::open(image).and_then(|file| file.read_exact_at(&mut bytes, entry.offset())).map_err(error)?;
    Ok(FatVolume::open(&bytes).ok().map(|volume| volume.used_len()))
}

fn check_root_hash(root_hash: &[u8]) -> Result<&[u8], DiskError> {
    if root_hash.len() < ROOT_HASH_MIN_BYTES {
        return Err(DiskError::InvalidRootHash {
            len: root_hash.len(),
        });
    }
    Ok(root_hash)
}

/// Builds a UUID from exactly 16 bytes in text order; callers slice 16 bytes.
fn uuid_from_slice(bytes: &[u8]) -> Uuid {
    let mut array = [0u8; UUID_BYTES];
    array.copy_from_slice(bytes);
    Uuid::from_bytes(array)
}

fn check_content_size(partition: &PartitionSpec) -> Result<(), DiskError> {
    let content_size = match &partition.content {
        PartitionContent::File(path) => std::fs::metadata(path)
            .map_err(|source| DiskError::InspectContent {
                name: partition.name.clone(),
                path: path.clone(),
                source,
            })?
            .len(),
        PartitionContent::Bytes(bytes) => bytes.len() as u64,
        PartitionContent::Zero => 0,
    };
    if content_size > partition.size {
        return Err(DiskError::ContentTooLarge {
            name: partition.name.clone(),
            content_size,
            partition_size: partition.size,
        });
    }
    Ok(())
}

fn create_image(out: &Path, disk_size: u64) -> Result<File, DiskError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(out)
        .map_err(|source| DiskError::Create {
            path: out.to_owned(),
            source,
        })?;
    file.set_len(disk_size)
        .map_err(|source| DiskError::SetLength {
            path: out.to_owned(),
            size: disk_size,
            source,
        })?;
    Ok(file)
}

/// Copies a partition's content to `offset`, skipping zero blocks.
fn write_content(
    file: &File,
    out: &Path,
    partition: &PartitionSpec,
    offset: u64,
) -> Result<(), DiskError> {
    let write_error = |source| DiskError::WriteContent {
        name: partition.name.clone(),
        path: out.to_owned(),
        source,
    };
    match &partition.content {
        PartitionContent::Zero => Ok(()),
        PartitionContent::Bytes(bytes) => write_sparse(file, offset, bytes).map_err(write_error),
        PartitionContent::File(path) => {
            let read_error = |source| DiskError::ReadContent {
                name: partition.name.clone(),
                path: path.clone(),
                source,
            };
            let mut source = File::open(path).map_err(read_error)?;
            let mut buffer = vec![0u8; COPY_BUFFER];
            let mut written: u64 = 0;
            loop {
                let filled = fill_buffer(&mut source, &mut buffer).map_err(read_error)?;
                if filled == 0 {
                    return Ok(());
                }
                // The file may have grown since check_content_size.
                let content_size = written + filled as u64;
                if content_size > partition.size {
                    return Err(DiskError::ContentTooLarge {
                        name: partition.name.clone(),
                        content_size,
                        partition_size: partition.size,
                    });
                }
                write_sparse(file, offset + written, &buffer[..filled]).map_err(write_error)?;
                written = content_size;
            }
        }
    }
}

/// Reads until `buffer` is full or the end of the file, and returns the count.
fn fill_buffer(source: &mut File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match source.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// Writes the non-zero [`SPARSE_BLOCK`]-sized blocks of `data` at `offset`,
/// joining adjacent ones into one write. The file must read as zeros there.
fn write_sparse(file: &File, offset: u64, data: &[u8]) -> std::io::Result<()> {
    let mut run_start: Option<usize> = None;
    for (index, block) in data.chunks(SPARSE_BLOCK).enumerate() {
        let start = index * SPARSE_BLOCK;
        let is_zero = block.iter().all(|&b| b == 0);
        match (is_zero, run_start) {
            (false, None) => run_start = Some(start),
            (true, Some(run)) => {
                file.write_all_at(&data[run..start], offset + run as u64)?;
                run_start = None;
            }
            _ => {}
        }
    }
    if let Some(run) = run_start {
        file.write_all_at(&data[run..], offset + run as u64)?;
    }
    Ok(())
}
