//! GUID Partition Table writer and reader.
//!
//! # Layout
//!
//! With 512-byte sectors and N sectors on the disk (UEFI specification,
//! chapter 5 "GUID Partition Table (GPT) Disk Layout"):
//!
//! | LBA | Contents |
//! |---|---|
//! | 0 | protective MBR: one record of type 0xEE from LBA 1 to the end (at most 2^32 - 1 sectors) |
//! | 1 | primary header |
//! | 2..=33 | primary partition entry array: 128 entries of 128 bytes |
//! | N-33..=N-2 | backup partition entry array |
//! | N-1 | backup header |
//!
//! Header fields, little-endian, by byte offset:
//!
//! | Offset | Field |
//! |---|---|
//! | 0 | signature `EFI PART` |
//! | 8 | revision, 1.0 |
//! | 12 | header size, 92 |
//! | 16 | CRC32 of the header, computed with this field set to 0 |
//! | 24, 32 | LBA of this header and of the other copy |
//! | 40, 48 | first and last usable LBA |
//! | 56 | disk GUID |
//! | 72 | LBA of this copy's entry array |
//! | 80, 84 | entry count and entry size |
//! | 88 | CRC32 of the entry array |
//!
//! Entry fields by byte offset: type GUID at 0, unique partition GUID at 16,
//! first LBA at 32, last LBA (inclusive) at 40, attribute bits at 48, and the
//! name as up to 36 UTF-16LE code units at 56. GUIDs are stored mixed-endian.
//! The first three fields are little-endian and the last eight bytes keep
//! their text order ([`Uuid::to_bytes_le`]).
//!
//! [`plan`] places partitions in the order given, each starting on a 1 MiB
//! boundary, and [`encode`] and [`read_layout`] are exact inverses, so a
//! written table reads back as the same [`Layout`].

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use thiserror::Error;
use uuid::Uuid;

/// Logical sector size in bytes. Only 512-byte sectors are supported.
pub const SECTOR_SIZE: u64 = 512;

/// Partition start alignment in bytes, the common 1 MiB boundary that suits
/// every erase block and RAID stripe size in use.
pub const PARTITION_ALIGNMENT: u64 = 1024 * 1024;

/// Granularity of partition sizes in bytes, the file system and verity block
/// size used by the pipeline.
pub const PARTITION_SIZE_GRANULARITY: u64 = 4096;

/// Header signature, revision 1.0 and the size of the defined header fields.
const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";
const GPT_REVISION: u32 = 0x0001_0000;
const GPT_HEADER_SIZE: u32 = 92;

/// Entry count and size written by this module; 128 entries of 128 bytes is
/// the UEFI minimum array of 16 KiB.
const ENTRY_COUNT: u32 = 128;
const ENTRY_SIZE: u32 = 128;
/// Sectors of one entry array: 128 * 128 / 512.
const ENTRY_ARRAY_SECTORS: u64 = (ENTRY_COUNT as u64 * ENTRY_SIZE as u64) / SECTOR_SIZE;
/// Maximum entry array size accepted when reading, to bound memory.
const MAX_ENTRY_ARRAY_BYTES: u64 = 1024 * 1024;

/// Maximum partition name length in UTF-16 code units.
const NAME_UNITS: usize = 36;

/// Protective MBR: offset of the first partition record, the GPT protective
/// type, the start CHS value that the UEFI specification prescribes and the
/// boot signature.
const MBR_RECORD_OFFSET: usize = 446;
const MBR_TYPE_GPT_PROTECTIVE: u8 = 0xEE;
const MBR_START_CHS: [u8; 3] = [0x00, 0x02, 0x00];
const MBR_SIGNATURE: [u8; 2] = [0x55, 0xAA];
const MBR_SIGNATURE_OFFSET: usize = 510;
/// CHS geometry used to express the last sector in the protective record,
/// and the value for sectors beyond cylinder 1023.
const CHS_HEADS: u64 = 255;
const CHS_SECTORS_PER_TRACK: u64 = 63;
const CHS_MAX_CYLINDER: u64 = 1023;
const CHS_UNREPRESENTABLE: [u8; 3] = [0xFF, 0xFF, 0xFF];

/// Sectors before the first usable LBA: MBR, header and entry array.
const PRIMARY_SECTORS: u64 = 2 + ENTRY_ARRAY_SECTORS;
/// Sectors after the last usable LBA: entry array and header.
const BACKUP_SECTORS: u64 = ENTRY_ARRAY_SECTORS + 1;

/// Errors from planning, writing or reading a GUID Partition Table.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GptError {
    /// The disk size is not a whole number of sectors or too small for GPT.
    #[error(
        "invalid disk size {size} bytes: use a multiple of 512 bytes and at least {min} bytes"
    )]
    InvalidDiskSize {
        /// The rejected size in bytes.
        size: u64,
        /// The smallest size that holds both tables.
        min: u64,
    },

    /// More partitions than the entry array holds.
    #[error("too many partitions ({count}): the partition table holds {ENTRY_COUNT}")]
    TooManyPartitions {
        /// The number of partitions requested.
        count: usize,
    },

    /// A partition size is zero or not a multiple of 4096 bytes.
    #[error(
        "invalid size {size} bytes for partition {name:?}: use a non-zero multiple of 4096 bytes"
    )]
    InvalidPartitionSize {
        /// The partition name.
        name: String,
        /// The rejected size in bytes.
        size: u64,
    },

    /// A partition does not fit between the tables.
    #[error(
        "partition {name:?} ({size} bytes at offset {offset}) does not fit: the last \
         usable byte of the {disk_size}-byte disk is at {last_usable}; enlarge the disk \
         or shrink the partitions"
    )]
    PartitionDoesNotFit {
        /// The partition name.
        name: String,
        /// The partition size in bytes.
        size: u64,
        /// The partition's start offset in bytes.
        offset: u64,
        /// The disk size in bytes.
        disk_size: u64,
        /// Offset of the last usable byte.
        last_usable: u64,
    },

    /// A partition name is longer than 36 UTF-16 code units or contains NUL.
    #[error("invalid partition name {name:?}: use at most 36 UTF-16 code units and no NUL")]
    InvalidName {
        /// The rejected name.
        name: String,
    },

    /// A partition has the nil type GUID, which marks unused entries.
    #[error("partition {name:?} has the nil type GUID, which marks an unused entry")]
    NilType {
        /// The partition name.
        name: String,
    },

    /// Two partitions, or a partition and the disk, share a unique GUID.
    #[error(
        "duplicate GUID {uuid} on partition {name:?}: disk and partition GUIDs must be unique"
    )]
    DuplicateGuid {
        /// The partition name.
        name: String,
        /// The repeated GUID.
        uuid: Uuid,
    },

    /// A size computation overflowed.
    #[error(
        "size overflow while placing partition {name:?}: the requested sizes exceed 2^64 bytes"
    )]
    Overflow {
        /// The partition being placed.
        name: String,
    },

    /// The image file could not be opened or measured.
    #[error("failed to open disk image {path}: {source}")]
    Open {
        /// The image path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// Reading part of the image failed.
    #[error("failed to read {structure} from disk image {path}: {source}")]
    Read {
        /// The image path.
        path: PathBuf,
        /// The structure being read.
        structure: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The protective MBR is missing or is not a GPT protective MBR.
    #[error("invalid protective MBR in {path}: {reason}")]
    InvalidMbr {
        /// The image path.
        path: PathBuf,
        /// Description of the failed check.
        reason: &'static str,
    },

    /// A GPT header fails a check.
    #[error("invalid {copy} GPT header in {path}: {reason}")]
    InvalidHeader {
        /// The image path.
        path: PathBuf,
        /// `primary` or `backup`.
        copy: &'static str,
        /// Description of the failed check.
        reason: String,
    },

    /// The primary and backup headers or entry arrays disagree.
    #[error("primary and backup GPT in {path} disagree on {field}")]
    Mismatch {
        /// The image path.
        path: PathBuf,
        /// The field that differs.
        field: &'static str,
    },

    /// A partition entry fails a check.
    #[error("invalid partition entry {number} in {path}: {reason}")]
    InvalidEntry {
        /// The image path.
        path: PathBuf,
        /// The 1-based entry number.
        number: u32,
        /// Description of the failed check.
        reason: String,
    },
}

/// A partition to place: the fields of one entry except its position.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryRequest<'a> {
    pub name: &'a str,
    pub type_guid: Uuid,
    pub uuid: Uuid,
    pub size: u64,
    pub attributes: u64,
}

/// A partition table as written or read: disk geometry and the used entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Disk size in bytes.
    pub disk_size: u64,
    /// Disk GUID from the header.
    pub disk_guid: Uuid,
    /// First sector that partitions may use.
    pub first_usable_lba: u64,
    /// Last sector that partitions may use (inclusive).
    pub last_usable_lba: u64,
    /// Used entries in table order.
    pub partitions: Vec<PartitionEntry>,
}

/// One used partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionEntry {
    /// 1-based entry number, as in `/dev/sda1` or `sgdisk -i 1`.
    pub number: u32,
    /// Partition name.
    pub name: String,
    /// Partition type GUID.
    pub type_guid: Uuid,
    /// Unique partition GUID (the PARTUUID).
    pub uuid: Uuid,
    /// First sector.
    pub first_lba: u64,
    /// Last sector (inclusive).
    pub last_lba: u64,
    /// Attribute bits, such as bit 60 for read-only.
    pub attributes: u64,
}

impl PartitionEntry {
    /// Returns the byte offset of the partition on the disk.
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR_SIZE
    }

    /// Returns the partition size in bytes.
    pub fn size(&self) -> u64 {
        (self.last_lba - self.first_lba + 1) * SECTOR_SIZE
    }
}

/// The encoded table: bytes for the start and for the end of the disk.
pub(crate) struct EncodedTable {
    /// Protective MBR, primary header and primary entry array, written at offset 0.
    pub head: Vec<u8>,
    /// Backup entry array and backup header.
    pub tail: Vec<u8>,
    /// Byte offset of `tail`.
    pub tail_offset: u64,
}

/// Places partitions in the given order, each on a 1 MiB boundary, and
/// validates sizes, names and GUIDs.
pub(crate) fn plan(
    disk_size: u64,
    disk_guid: Uuid,
    requests: &[EntryRequest<'_>],
) -> Result<Layout, GptError> {
    let min_size = (PRIMARY_SECTORS + BACKUP_SECTORS + 1) * SECTOR_SIZE;
    if !disk_size.is_multiple_of(SECTOR_SIZE) || disk_size < min_size {
        return Err(GptError::InvalidDiskSize {
            size: disk_size,
            min: min_size,
        });
    }
    if requests.len() > ENTRY_COUNT as usize {
        return Err(GptError::TooManyPartitions {
            count: requests.len(),
        });
    }
    let sectors = disk_size / SECTOR_SIZE;
    let first_usable_lba = PRIMARY_SECTORS;
    let last_usable_lba = sectors - BACKUP_SECTORS - 1;

    let mut seen_guids = vec![disk_guid];
    let mut partitions = Vec::with_capacity(requests.len());
    let mut next_offset = PARTITION_ALIGNMENT;
    for (index, request) in requests.iter().enumerate() {
        validate_request(request, &mut seen_guids)?;
        let overflow = || GptError::Overflow {
            name: request.name.to_owned(),
        };
        let offset = next_offset;
        let end = offset.checked_add(request.size).ok_or_else(overflow)?;
        let last_usable_byte = (last_usable_lba + 1) * SECTOR_SIZE - 1;
        if end - 1 > last_usable_byte {
            return Err(GptError::PartitionDoesNotFit {
                name: request.name.to_owned(),
                size: request.size,
                offset,
                disk_size,
                last_usable: last_usable_byte,
            });
        }
        partitions.push(PartitionEntry {
            number: u32::try_from(index + 1).map_err(|_| overflow())?,
            name: request.name.to_owned(),
            type_guid: request.type_guid,
            uuid: request.uuid,
            first_lba: offset / SECTOR_SIZE,
            last_lba: end / SECTOR_SIZE - 1,
            attributes: request.attributes,
        });
        next_offset = end
            .checked_next_multiple_of(PARTITION_ALIGNMENT)
            .ok_or_else(overflow)?;
    }

    Ok(Layout {
        disk_size,
        disk_guid,
        first_usable_lba,
        last_usable_lba,
        partitions,
    })
}

fn validate_request(
    request: &EntryRequest<'_>,
    seen_guids: &mut Vec<Uuid>,
) -> Result<(), GptError> {
    if request.size == 0 || !request.size.is_multiple_of(PARTITION_SIZE_GRANULARITY) {
        return Err(GptError::InvalidPartitionSize {
            name: request.name.to_owned(),
            size: request.size,
        });
    }
    if request.name.encode_utf16().count() > NAME_UNITS || request.name.contains('\0') {
        return Err(GptError::InvalidName {
            name: request.name.to_owned(),
        });
    }
    if request.type_guid.is_nil() {
        return Err(GptError::NilType {
            name: request.name.to_owned(),
        });
    }
    if seen_guids.contains(&request.uuid) || request.uuid.is_nil() {
        return Err(GptError::DuplicateGuid {
            name: request.name.to_owned(),
            uuid: request.uuid,
        });
    }
    seen_guids.push(request.uuid);
    Ok(())
}

/// Encodes the protective MBR and both tables of a planned layout.
pub(crate) fn encode(layout: &Layout) -> EncodedTable {
    let sectors = layout.disk_size / SECTOR_SIZE;
    let last_lba = sectors - 1;
    let backup_entries_lba = last_lba - ENTRY_ARRAY_SECTORS;

    let entries = encode_entries(&layout.partitions);
    let entries_crc = crc32fast::hash(&entries);
    let header = |own_lba: u64, other_lba: u64, entries_lba: u64| {
        encode_header(layout, own_lba, other_lba, entries_lba, entries_crc)
    };

    let mut head = Vec::with_capacity((PRIMARY_SECTORS * SECTOR_SIZE) as usize);
    head.extend_from_slice(&encode_protective_mbr(sectors));
    head.extend_from_slice(&header(1, last_lba, 2));
    head.extend_from_slice(&entries);

    let mut tail = Vec::with_capacity((BACKUP_SECTORS * SECTOR_SIZE) as usize);
    tail.extend_from_slice(&entries);
    tail.extend_from_slice(&header(last_lba, 1, backup_entries_lba));

    EncodedTable {
        head,
        tail,
        tail_offset: backup_entries_lba * SECTOR_SIZE,
    }
}

fn encode_protective_mbr(sectors: u64) -> [u8; SECTOR_SIZE as usize] {
    let mut mbr = [0u8; SECTOR_SIZE as usize];
    // The record covers the whole disk, or 2^32 - 1 sectors if it is larger.
    let protected_sectors = u32::try_from(sectors - 1).unwrap_or(u32::MAX);
    let record = &mut mbr[MBR_RECORD_OFFSET..MBR_RECORD_OFFSET + 16];
    record[1..4].copy_from_slice(&MBR_START_CHS);
    record[4] = MBR_TYPE_GPT_PROTECTIVE;
    record[5..8].copy_from_slice(&chs_of(sectors - 1));
    record[8..12].copy_from_slice(&1u32.to_le_bytes());
    record[12..16].copy_from_slice(&protected_sectors.to_le_bytes());
    mbr[MBR_SIGNATURE_OFFSET..].copy_from_slice(&MBR_SIGNATURE);
    mbr
}

/// Encodes an LBA as the 3-byte MBR CHS value (head, sector with cylinder
/// bits 8-9, cylinder bits 0-7), or 0xFFFFFF when it does not fit.
fn chs_of(lba: u64) -> [u8; 3] {
    let cylinder = lba / (CHS_HEADS * CHS_SECTORS_PER_TRACK);
    if cylinder > CHS_MAX_CYLINDER {
        return CHS_UNREPRESENTABLE;
    }
    let head = (lba / CHS_SECTORS_PER_TRACK) % CHS_HEADS;
    let sector = lba % CHS_SECTORS_PER_TRACK + 1;
    // Each value is masked or bounded to fit its byte.
    [
        head as u8,
        (sector as u8) | (((cylinder >> 2) & 0xC0) as u8),
        (cylinder & 0xFF) as u8,
    ]
}

fn encode_header(
    layout: &Layout,
    own_lba: u64,
    other_lba: u64,
    entries_lba: u64,
    entries_crc: u32,
) -> [u8; SECTOR_SIZE as usize] {
    let mut header = [0u8; SECTOR_SIZE as usize];
    header[0..8].copy_from_slice(GPT_SIGNATURE);
    header[8..12].copy_from_slice(&GPT_REVISION.to_le_bytes());
    header[12..16].copy_from_slice(&GPT_HEADER_SIZE.to_le_bytes());
    header[24..32].copy_from_slice(&own_lba.to_le_bytes());
    header[32..40].copy_from_slice(&other_lba.to_le_bytes());
    header[40..48].copy_from_slice(&layout.first_usable_lba.to_le_bytes());
    header[48..56].copy_from_slice(&layout.last_usable_lba.to_le_bytes());
    header[56..72].copy_from_slice(&layout.disk_guid.to_bytes_le());
    header[72..80].copy_from_slice(&entries_lba.to_le_bytes());
    header[80..84].copy_from_slice(&ENTRY_COUNT.to_le_bytes());
    header[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
    header[88..92].copy_from_slice(&entries_crc.to_le_bytes());
    let crc = crc32fast::hash(&header[..GPT_HEADER_SIZE as usize]);
    header[16..20].copy_from_slice(&crc.to_le_bytes());
    header
}

fn encode_entries(partitions: &[PartitionEntry]) -> Vec<u8> {
    let mut entries = vec![0u8; (ENTRY_COUNT * ENTRY_SIZE) as usize];
    for (partition, entry) in partitions
        .iter()
        .zip(entries.chunks_mut(ENTRY_SIZE as usize))
    {
        entry[0..16].copy_from_slice(&partition.type_guid.to_bytes_le());
        entry[16..32].copy_from_slice(&partition.uuid.to_bytes_le());
        entry[32..40].copy_from_slice(&partition.first_lba.to_le_bytes());
        entry[40..48].copy_from_slice(&partition.last_lba.to_le_bytes());
        entry[48..56].copy_from_slice(&partition.attributes.to_le_bytes());
        for (unit, slot) in partition
            .name
            .encode_utf16()
            .zip(entry[56..128].chunks_mut(2))
        {
            slot.copy_from_slice(&unit.to_le_bytes());
        }
    }
    entries
}

/// Returns `layout` moved to a disk of `disk_size` bytes, as `sgdisk -e`
/// does after an image is written to a larger disk: the backup header and
/// entry array go to the new end of the disk and the last usable LBA
/// follows them. Partitions, GUIDs and the first usable LBA are kept;
/// [`encode`] of the result also gives a protective MBR that covers the
/// whole new disk.
///
/// # Errors
///
/// [`GptError::InvalidDiskSize`] when `disk_size` is not a multiple of 512
/// or is smaller than the layout's disk.
pub fn relocate(layout: &Layout, disk_size: u64) -> Result<Layout, GptError> {
    if !disk_size.is_multiple_of(SECTOR_SIZE) || disk_size < layout.disk_size {
        return Err(GptError::InvalidDiskSize {
            size: disk_size,
            min: layout.disk_size,
        });
    }
    Ok(Layout {
        disk_size,
        last_usable_lba: disk_size / SECTOR_SIZE - BACKUP_SECTORS - 1,
        ..layout.clone()
    })
}

/// Reads and checks the partition table of a disk image.
///
/// Both headers must be valid with matching CRCs, describe the same disk and
/// point to identical entry arrays, and the used entries must lie inside the
/// usable area without overlapping. Only 512-byte sectors are read.
///
/// # Errors
///
/// Returns a [`GptError`] naming the image and the failed check.
pub fn read_layout(image: &Path) -> Result<Layout, GptError> {
    let mut file = File::open(image).map_err(|source| GptError::Open {
        path: image.to_owned(),
        source,
    })?;
    // Seeking to the end measures block devices too, whose metadata length is 0.
    let disk_size = file
        .seek(SeekFrom::End(0))
        .map_err(|source| GptError::Open {
            path: image.to_owned(),
            source,
        })?;
    let min_size = (PRIMARY_SECTORS + BACKUP_SECTORS + 1) * SECTOR_SIZE;
    if !disk_size.is_multiple_of(SECTOR_SIZE) || disk_size < min_size {
        return Err(GptError::InvalidDiskSize {
            size: disk_size,
            min: min_size,
        });
    }
    let mut reader = Reader {
        file: &mut file,
        path: image,
    };
    let last_lba = disk_size / SECTOR_SIZE - 1;

    let mbr = reader.read_at(0, SECTOR_SIZE, "protective MBR")?;
    check_protective_mbr(&mbr, image)?;

    let primary = reader.read_header(1, "primary")?;
    check_header_position(&primary, 1, last_lba, "primary", image)?;
    let backup = reader.read_header(last_lba, "backup")?;
    check_header_position(&backup, last_lba, 1, "backup", image)?;

    let primary_entries = reader.read_entries(&primary, "primary")?;
    let backup_entries = reader.read_entries(&backup, "backup")?;
    compare_headers(&primary, &backup, image)?;
    if primary_entries != backup_entries {
        return Err(GptError::Mismatch {
            path: image.to_owned(),
            field: "partition entries",
        });
    }

    let partitions = decode_entries(&primary_entries, &primary, image)?;
    Ok(Layout {
        disk_size,
        disk_guid: primary.disk_guid,
        first_usable_lba: primary.first_usable_lba,
        last_usable_lba: primary.last_usable_lba,
        partitions,
    })
}

/// The header fields that [`read_layout`] checks and uses.
#[derive(Debug)]
struct Header {
    own_lba: u64,
    other_lba: u64,
    first_usable_lba: u64,
    last_usable_lba: u64,
    disk_guid: Uuid,
    entries_lba: u64,
    entry_count: u32,
    entry_size: u32,
    entries_crc: u32,
}

struct Reader<'a> {
    file: &'a mut File,
    path: &'a Path,
}

impl Reader<'_> {
    fn read_at(
        &mut self,
        offset: u64,
        len: u64,
        structure: &'static str,
    ) -> Result<Vec<u8>, GptError> {
        let error = |source| GptError::Read {
            path: self.path.to_owned(),
            structure,
            source,
        };
        let mut buffer = vec![
            0u8;
            usize::try_from(len)
                .map_err(|_| error(std::io::ErrorKind::OutOfMemory.into()))?
        ];
        self.file.seek(SeekFrom::Start(offset)).map_err(error)?;
        self.file.read_exact(&mut buffer).map_err(error)?;
        Ok(buffer)
    }

    fn read_header(&mut self, lba: u64, copy: &'static str) -> Result<Header, GptError> {
        let sector = self.read_at(lba * SECTOR_SIZE, SECTOR_SIZE, "GPT header")?;
        parse_header(&sector, copy, self.path)
    }

    fn read_entries(&mut self, header: &Header, copy: &'static str) -> Result<Vec<u8>, GptError> {
        let len = u64::from(header.entry_count) * u64::from(header.entry_size);
        let entries = self.read_at(
            header.entries_lba * SECTOR_SIZE,
            len,
            "partition entry array",
        )?;
        if crc32fast::hash(&entries) != header.entries_crc {
            return Err(GptError::InvalidHeader {
                path: self.path.to_owned(),
                copy,
                reason: "partition entry array CRC32 does not match".to_owned(),
            });
        }
        Ok(entries)
    }
}

fn check_protective_mbr(mbr: &[u8], path: &Path) -> Result<(), GptError> {
    let invalid = |reason| GptError::InvalidMbr {
        path: path.to_owned(),
        reason,
    };
    if mbr[MBR_SIGNATURE_OFFSET..] != MBR_SIGNATURE {
        return Err(invalid("boot signature 0x55AA missing"));
    }
    let record = &mbr[MBR_RECORD_OFFSET..MBR_RECORD_OFFSET + 16];
    if record[4] != MBR_TYPE_GPT_PROTECTIVE {
        return Err(invalid("first partition record is not of type 0xEE"));
    }
    if record[8..12] != 1u32.to_le_bytes() {
        return Err(invalid("protective partition does not start at LBA 1"));
    }
    Ok(())
}

fn parse_header(sector: &[u8], copy: &'static str, path: &Path) -> Result<Header, GptError> {
    let invalid = |reason: String| GptError::InvalidHeader {
        path: path.to_owned(),
        copy,
        reason,
    };
    if &sector[0..8] != GPT_SIGNATURE {
        return Err(invalid("signature \"EFI PART\" missing".to_owned()));
    }
    let revision = le_u32(&sector[8..12]);
    if revision != GPT_REVISION {
        return Err(invalid(format!(
            "unsupported revision {revision:#x}, expected 1.0"
        )));
    }
    let header_size = le_u32(&sector[12..16]);
    if header_size < GPT_HEADER_SIZE || u64::from(header_size) > SECTOR_SIZE {
        return Err(invalid(format!(
            "header size {header_size} outside 92..=512"
        )));
    }
    let stored_crc = le_u32(&sector[16..20]);
    let mut copy = sector[..header_size as usize].to_vec();
    copy[16..20].fill(0);
    if crc32fast::hash(&copy) != stored_crc {
        return Err(invalid("header CRC32 does not match".to_owned()));
    }

    let header = Header {
        own_lba: le_u64(&sector[24..32]),
        other_lba: le_u64(&sector[32..40]),
        first_usable_lba: le_u64(&sector[40..48]),
        last_usable_lba: le_u64(&sector[48..56]),
        disk_guid: guid_from_le(&sector[56..72]),
        entries_lba: le_u64(&sector[72..80]),
        entry_count: le_u32(&sector[80..84]),
        entry_size: le_u32(&sector[84..88]),
        entries_crc: le_u32(&sector[88..92]),
    };
    if header.entry_size < ENTRY_SIZE || !header.entry_size.is_multiple_of(ENTRY_SIZE) {
        return Err(invalid(format!(
            "entry size {} is not a multiple of 128",
            header.entry_size
        )));
    }
    let array_bytes = u64::from(header.entry_count) * u64::from(header.entry_size);
    if array_bytes > MAX_ENTRY_ARRAY_BYTES {
        return Err(invalid(format!(
            "entry array of {array_bytes} bytes exceeds the 1 MiB this reader accepts"
        )));
    }
    Ok(header)
}

fn check_header_position(
    header: &Header,
    own_lba: u64,
    other_lba: u64,
    copy: &'static str,
    path: &Path,
) -> Result<(), GptError> {
    let invalid = |reason: String| GptError::InvalidHeader {
        path: path.to_owned(),
        copy,
        reason,
    };
    if header.own_lba != own_lba || header.other_lba != other_lba {
        return Err(invalid(format!(
            "header says it is at LBA {} with its copy at LBA {}, expected {own_lba} and {other_lba}",
            header.own_lba, header.other_lba
        )));
    }
    let array_sectors =
        (u64::from(header.entry_count) * u64::from(header.entry_size)).div_ceil(SECTOR_SIZE);
    let last_lba = own_lba.max(other_lba);
    let array_end = header.entries_lba.saturating_add(array_sectors);
    let array_clear =
        array_end <= header.first_usable_lba || header.entries_lba > header.last_usable_lba;
    if header.entries_lba < 2 || array_end > last_lba || !array_clear {
        return Err(invalid(format!(
            "entry array at LBA {} overlaps the header or usable area",
            header.entries_lba
        )));
    }
    if header.first_usable_lba > header.last_usable_lba || header.last_usable_lba >= last_lba {
        return Err(invalid(format!(
            "usable area {}..={} is empty or extends past the disk",
            header.first_usable_lba, header.last_usable_lba
        )));
    }
    Ok(())
}

fn compare_headers(primary: &Header, backup: &Header, path: &Path) -> Result<(), GptError> {
    let fields = [
        (
            "first usable LBA",
            primary.first_usable_lba == backup.first_usable_lba,
        ),
        (
            "last usable LBA",
            primary.last_usable_lba == backup.last_usable_lba,
        ),
        ("disk GUID", primary.disk_guid == backup.disk_guid),
        ("entry count", primary.entry_count == backup.entry_count),
        ("entry size", primary.entry_size == backup.entry_size),
        (
            "entry array CRC32",
            primary.entries_crc == backup.entries_crc,
        ),
    ];
    match fields.iter().find(|(_, equal)| !equal) {
        Some((field, _)) => Err(GptError::Mismatch {
            path: path.to_owned(),
            field,
        }),
        None => Ok(()),
    }
}

fn decode_entries(
    entries: &[u8],
    header: &Header,
    path: &Path,
) -> Result<Vec<PartitionEntry>, GptError> {
    let mut partitions: Vec<PartitionEntry> = Vec::new();
    for (index, entry) in entries.chunks(header.entry_size as usize).enumerate() {
        let type_guid = guid_from_le(&entry[0..16]);
        if type_guid.is_nil() {
            continue;
        }
        // The entry count is at most 1 MiB / 128 = 8192 here, so this fits.
        let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let invalid = |reason: String| GptError::InvalidEntry {
            path: path.to_owned(),
            number,
            reason,
        };
        let partition = PartitionEntry {
            number,
            name: decode_name(&entry[56..128])
                .map_err(|()| invalid("name is not valid UTF-16".to_owned()))?,
            type_guid,
            uuid: guid_from_le(&entry[16..32]),
            first_lba: le_u64(&entry[32..40]),
            last_lba: le_u64(&entry[40..48]),
            attributes: le_u64(&entry[48..56]),
        };
        if partition.first_lba > partition.last_lba
            || partition.first_lba < header.first_usable_lba
            || partition.last_lba > header.last_usable_lba
        {
            return Err(invalid(format!(
                "sectors {}..={} are outside the usable area {}..={}",
                partition.first_lba,
                partition.last_lba,
                header.first_usable_lba,
                header.last_usable_lba
            )));
        }
        if let Some(other) = partitions.iter().find(|other| {
            partition.first_lba <= other.last_lba && other.first_lba <= partition.last_lba
        }) {
            return Err(invalid(format!("overlaps partition {}", other.number)));
        }
        partitions.push(partition);
    }
    Ok(partitions)
}

fn decode_name(bytes: &[u8]) -> Result<String, ()> {
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .take_while(|&unit| unit != 0)
        .collect();
    String::from_utf16(&units).map_err(|_| ())
}

fn guid_from_le(bytes: &[u8]) -> Uuid {
    let mut array = [0u8; 16];
    array.copy_from_slice(bytes);
    Uuid::from_bytes_le(array)
}

fn le_u32(bytes: &[u8]) -> u32 {
    let mut array = [0u8; 4];
    array.copy_from_slice(bytes);
    u32::from_le_bytes(array)
}

fn le_u64(bytes: &[u8]) -> u64 {
    let mut array = [0u8; 8];
    array.copy_from_slice(bytes);
    u64::from_le_bytes(array)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str, uuid: u128, size: u64) -> EntryRequest<'_> {
        EntryRequest { name, type_guid: Uuid::from_u128(0x0fc63daf_8483_4772_8e79_3d69d8477de4), uuid: Uuid::from_u128(uuid), size, attributes: 0 }
    }

    #[test]
    fn relocated_table_reads_back_at_the_new_end() {
        let small = 4 * PARTITION_ALIGNMENT;
        let large = 9 * PARTITION_ALIGNMENT + 7 * SECTOR_SIZE;
        let layout = plan(small, Uuid::from_u128(1), &[request("a", 2, 4096), request("b", 3, PARTITION_ALIGNMENT)]).expect("plan");
        let moved = relocate(&layout, large).expect("relocate");
        assert_eq!(moved.partitions, layout.partitions);
        assert_eq!(moved.first_usable_lba, layout.first_usable_lba);
        assert_eq!(moved.last_usable_lba, large / SECTOR_SIZE - 34);

        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("disk");
        let file = std::fs::File::create(&path).expect("create");
        file.set_len(large).expect("size");
        let table = encode(&moved);
        use std::os::unix::fs::FileExt;
        file.write_all_at(&table.head, 0).expect("head");
        file.write_all_at(&table.tail, table.tail_offset).expect("tail");
        assert_eq!(table.tail_offset + table.tail.len() as u64, large);
        assert_eq!(read_layout(&path).expect("read back"), moved);
        // The protective MBR covers the larger disk.
        let sectors = u32::from_le_bytes(table.head[MBR_RECORD_OFFSET + 12..MBR_RECORD_OFFSET + 16].try_into().expect("4 bytes"));
        assert_eq!(u64::from(sectors), large / SECTOR_SIZE - 1);
    }

    #[test]
    fn relocate_rejects_smaller_or_ragged_sizes() {
        let layout = plan(4 * PARTITION_ALIGNMENT, Uuid::from_u128(1), &[request("a", 2, 4096)]).expect("plan");
        assert!(matches!(relocate(&layout, 3 * PARTITION_ALIGNMENT), Err(GptError::InvalidDiskSize { .. })));
        assert!(matches!(relocate(&layout, 8 * PARTITION_ALIGNMENT + 1), Err(GptError::InvalidDiskSize { .. })));
        assert_eq!(relocate(&layout, 4 * PARTITION_ALIGNMENT).expect("same size"), layout);
    }

    #[test]
    fn chs_of_small_and_large_disks() {
        assert_eq!(chs_of(0), [0, 1, 0]);
        // LBA 16065 (255 * 63) is cylinder 1, head 0, sector 1.
        assert_eq!(chs_of(16065), [0, 1, 1]);
        assert_eq!(chs_of(1024 * 255 * 63), CHS_UNREPRESENTABLE);
    }

    #[test]
    fn guid_is_stored_mixed_endian() {
        let uuid = Uuid::parse_str("c46e46b6-bc50-ac0d-37b3-b14b50821bab").expect("valid GUID");
        let stored: [u8; 16] = [
            0xb6, 0x46, 0x6e, 0xc4, 0x50, 0xbc, 0x0d, 0xac, 0x37, 0xb3, 0xb1, 0x4b, 0x50, 0x82,
            0x1b, 0xab,
        ];
        assert_eq!(uuid.to_bytes_le(), stored);
        assert_eq!(guid_from_le(&stored), uuid);
    }
}
