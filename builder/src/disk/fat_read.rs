//! Read-only FAT32 reader, enough to find and read a file on the EFI System
//! Partition that [`super::make_esp`] writes, or on any FAT32 volume with
//! 8.3 names.
//!
//! [`FatVolume::open`] checks the boot sector (signature, sector and cluster
//! sizes, the FAT32 cluster count), that the backup boot sector equals the
//! boot sector, and that all FAT copies are identical. [`FatVolume::read_file`]
//! walks the directories by short name, follows the cluster chains with a
//! loop guard and checks that each chain is as long as the file size needs.
//! Long-name entries are skipped, so files must be found by their short name.

use thiserror::Error;

/// Boot sector field offsets (fatgen103, "BPB structure").
const BPB_BYTES_PER_SECTOR: usize = 11;
const BPB_SECTORS_PER_CLUSTER: usize = 13;
const BPB_RESERVED_SECTORS: usize = 14;
const BPB_FAT_COUNT: usize = 16;
const BPB_ROOT_ENTRIES: usize = 17;
const BPB_TOTAL_SECTORS_16: usize = 19;
const BPB_TOTAL_SECTORS_32: usize = 32;
const BPB_FAT_SIZE_32: usize = 36;
const BPB_ROOT_CLUSTER: usize = 44;
const BPB_BACKUP_BOOT_SECTOR: usize = 50;
const BOOT_SIGNATURE_OFFSET: usize = 510;

/// Minimum cluster count of FAT32; fewer clusters make a FAT12 or FAT16 volume.
const FAT32_MIN_CLUSTERS: u64 = 65_525;
/// FAT entry values at or above this end a chain; 0x0FFFFFF7 marks a bad cluster.
const FAT_BAD_CLUSTER: u32 = 0x0FFF_FFF7;
const FAT_ENTRY_MASK: u32 = 0x0FFF_FFFF;

const DIR_ENTRY_SIZE: usize = 32;
const DIR_END: u8 = 0x00;
const DIR_DELETED: u8 = 0xE5;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
/// Attribute value of a long-name entry (read-only, hidden, system, volume id).
const ATTR_LONG_NAME: u8 = 0x0F;

/// Errors from reading a FAT32 volume.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FatReadError {
    /// The boot sector, FATs or a directory do not form a valid FAT32 volume.
    #[error("invalid FAT32 volume: {0}")]
    Invalid(String),

    /// A path component does not exist.
    #[error("{path:?} not found on the FAT32 volume")]
    NotFound {
        /// The path looked up.
        path: String,
    },

    /// A component names a file where a directory is needed, or the reverse.
    #[error("{path:?} on the FAT32 volume is a {found}, expected a {expected}")]
    WrongType {
        /// The path looked up.
        path: String,
        /// Kind of the entry found.
        found: &'static str,
        /// Kind of entry the lookup needs.
        expected: &'static str,
    },
}

/// A FAT32 volume in memory, checked by [`FatVolume::open`].
#[derive(Debug)]
pub struct FatVolume<'a> {
    bytes: &'a [u8],
    bytes_per_sector: u64,
    sectors_per_cluster: u64,
    fat_offset: u64,
    data_offset: u64,
    cluster_count: u64,
    root_cluster: u32,
}

/// A directory entry with the fields the reader uses.
struct DirEntry {
    attributes: u8,
    first_cluster: u32,
    size: u32,
}

impl<'a> FatVolume<'a> {
    /// Checks the boot sector, its backup and the FAT copies of `bytes`.
    pub fn open(bytes: &'a [u8]) -> Result<Self, FatReadError> {
        let invalid = |reason: String| FatReadError::Invalid(reason);
        if bytes.len() < 512 {
            return Err(invalid(format!("the volume is {} bytes, smaller than one boot sector", bytes.len())));
        }
        if bytes[BOOT_SIGNATURE_OFFSET..BOOT_SIGNATURE_OFFSET + 2] != [0x55, 0xAA] {
            return Err(invalid("the boot sector has no 0x55AA signature".into()));
        }
        let u16_at = |offset: usize| u64::from(u16::from_le_bytes([bytes[offset], bytes[offset + 1]]));
        let u32_at = |offset: usize| u32::from_le_bytes([bytes[offset], bytes[offset + 1], bytes[offset + 2], bytes[offset + 3]]);

        let bytes_per_sector = u16_at(BPB_BYTES_PER_SECTOR);
        if !(512..=4096).contains(&bytes_per_sector) || !bytes_per_sector.is_power_of_two() {
            return Err(invalid(format!("{bytes_per_sector} bytes per sector; expected 512, 1024, 2048 or 4096")));
        }
        let sectors_per_cluster = u64::from(bytes[BPB_SECTORS_PER_CLUSTER]);
        if sectors_per_cluster == 0 || !sectors_per_cluster.is_power_of_two() {
            return Err(invalid(format!("{sectors_per_cluster} sectors per cluster is not a power of two")));
        }
        let reserved_sectors = u16_at(BPB_RESERVED_SECTORS);
        let fat_count = u64::from(bytes[BPB_FAT_COUNT]);
        let fat_sectors = u64::from(u32_at(BPB_FAT_SIZE_32));
        let total_sectors = u64::from(u32_at(BPB_TOTAL_SECTORS_32));
        if u16_at(BPB_ROOT_ENTRIES) != 0 || u16_at(BPB_TOTAL_SECTORS_16) != 0 || fat_sectors == 0 {
            return Err(invalid("the BIOS parameter block is a FAT12 or FAT16 one".into()));
        }
        if reserved_sectors == 0 || fat_count == 0 {
            return Err(invalid(format!("{reserved_sectors} reserved sectors and {fat_count} FATs; both must be at least 1")));
        }
        let volume_len = total_sectors * bytes_per_sector;
        if volume_len > bytes.len() as u64 {
            return Err(invalid(format!("the boot sector gives {volume_len} bytes, but the partition has {}", bytes.len())));
        }
        let data_sector = reserved_sectors + fat_count * fat_sectors;
        let cluster_count = total_sectors.checked_sub(data_sector).ok_or_else(|| invalid("the FATs end past the volume".into()))? / sectors_per_cluster;
        if cluster_count < FAT32_MIN_CLUSTERS {
            return Err(invalid(format!("{cluster_count} clusters is below the FAT32 minimum of {FAT32_MIN_CLUSTERS}")));
        }
        if (cluster_count + 2) * 4 > fat_sectors * bytes_per_sector {
            return Err(invalid(format!("a FAT of {fat_sectors} sectors cannot map {cluster_count} clusters")));
        }

        let backup_sector = u16_at(BPB_BACKUP_BOOT_SECTOR);
        if backup_sector != 0 && backup_sector < reserved_sectors {
            let start = (backup_sector * bytes_per_sector) as usize;
            if bytes[start..start + 512] != bytes[..512] {
                return Err(invalid(format!("the backup boot sector {backup_sector} differs from the boot sector")));
            }
        }
        let fat_offset = reserved_sectors * bytes_per_sector;
        let fat_len = (fat_sectors * bytes_per_sector) as usize;
        let first_fat = &bytes[fat_offset as usize..fat_offset as usize + fat_len];
        for copy in 1..fat_count {
            let start = (fat_offset + copy * fat_sectors * bytes_per_sector) as usize;
            if bytes[start..start + fat_len] != *first_fat {
                return Err(invalid(format!("FAT copy {} differs from the first FAT", copy + 1)));
            }
        }

        let volume = FatVolume {
            bytes,
            bytes_per_sector,
            sectors_per_cluster,
            fat_offset,
            data_offset: data_sector * bytes_per_sector,
            cluster_count,
            root_cluster: u32_at(BPB_ROOT_CLUSTER),
        };
        volume.check_cluster(volume.root_cluster, "the root directory")?;
        Ok(volume)
    }

    /// Reads the file at `path`, such as `EFI/BOOT/BOOTX64.EFI`. Components
    /// are matched against 8.3 short names without regard to case.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, FatReadError> {
        let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let Some((file_name, directories)) = components.split_last() else {
            return Err(FatReadError::NotFound { path: path.to_owned() });
        };

        let mut directory = self.root_cluster;
        for component in directories {
            let entry = self.find(directory, component, path)?;
            if entry.attributes & ATTR_DIRECTORY == 0 {
                return Err(FatReadError::WrongType { path: path.to_owned(), found: "file", expected: "directory" });
            }
            directory = entry.first_cluster;
        }

        let entry = self.find(directory, file_name, path)?;
        if entry.attributes & ATTR_DIRECTORY != 0 {
            return Err(FatReadError::WrongType { path: path.to_owned(), found: "directory", expected: "file" });
        }
        let size = entry.size as usize;
        if size == 0 {
            return Ok(Vec::new());
        }

        let mut data = self.read_chain(entry.first_cluster, path)?;
        if data.len() < size {
            return Err(FatReadError::Invalid(format!("{path:?} is {size} bytes, but its cluster chain holds only {}", data.len())));
        }
        let cluster_size = self.cluster_size() as usize;
        if data.len() - size >= cluster_size {
            return Err(FatReadError::Invalid(format!("{path:?} is {size} bytes, but its cluster chain has {} bytes, a cluster or more too many", data.len())));
        }
        data.truncate(size);
        Ok(data)
    }

    /// Returns the length in bytes from the start of the volume to the end
    /// of its highest allocated cluster (a non-zero FAT entry), or to the
    /// start of the data area when no cluster is allocated. Everything past
    /// it is free space whose content the file system never reads.
    pub fn used_len(&self) -> u64 {
        let highest = (2..self.cluster_count + 2).rev().find(|&cluster| u32::try_from(cluster).is_ok_and(|cluster| self.fat_entry(cluster) != 0));
        match highest {
            Some(cluster) => self.data_offset + (cluster - 1) * self.cluster_size(),
            None => self.data_offset,
        }
    }

    fn cluster_size(&self) -> u64 {
        self.sectors_per_cluster * self.bytes_per_sector
    }

    fn check_cluster(&self, cluster: u32, subject: &str) -> Result<(), FatReadError> {
        if cluster < 2 || u64::from(cluster) >= self.cluster_count + 2 {
            return Err(FatReadError::Invalid(format!("{subject} starts at cluster {cluster}, outside 2..{}", self.cluster_count + 2)));
        }
        Ok(())
    }

    fn fat_entry(&self, cluster: u32) -> u32 {
        let offset = (self.fat_offset + u64::from(cluster) * 4) as usize;
        u32::from_le_bytes([self.bytes[offset], self.bytes[offset + 1], self.bytes[offset + 2], self.bytes[offset + 3]]) & FAT_ENTRY_MASK
    }

    /// Concatenates the clusters of the chain that starts at `first`.
    fn read_chain(&self, first: u32, subject: &str) -> Result<Vec<u8>, FatReadError> {
        self.check_cluster(first, subject)?;
        let cluster_size = self.cluster_size();
        let mut data = Vec::new();
        let mut cluster = first;
        for _ in 0..self.cluster_count {
            let offset = (self.data_offset + u64::from(cluster - 2) * cluster_size) as usize;
            let bytes = self.bytes.get(offset..offset + cluster_size as usize).ok_or_else(|| FatReadError::Invalid(format!("cluster {cluster} of {subject:?} lies past the end of the volume")))?;
            data.extend_from_slice(bytes);
            let next = self.fat_entry(cluster);
            if next >= FAT_BAD_CLUSTER {
                if next == FAT_BAD_CLUSTER {
                    return Err(FatReadError::Invalid(format!("the chain of {subject:?} reaches bad cluster marker after cluster {cluster}")));
                }
                return Ok(data);
            }
            self.check_cluster(next, subject)?;
            cluster = next;
        }
        Err(FatReadError::Invalid(format!("the cluster chain of {subject:?} loops")))
    }

    /// Finds `name` in the directory whose chain starts at `cluster`.
    fn find(&self, cluster: u32, name: &str, path: &str) -> Result<DirEntry, FatReadError> {
        let expected_name = short_name(name).ok_or_else(|| FatReadError::NotFound { path: path.to_owned() })?;
        let directory = self.read_chain(cluster, path)?;
        for raw in directory.chunks_exact(DIR_ENTRY_SIZE) {
            match raw[0] {
                DIR_END => break,
                DIR_DELETED => continue,
                _ => {}
            }
            let attributes = raw[11];
            if attributes & ATTR_LONG_NAME == ATTR_LONG_NAME || attributes & ATTR_VOLUME_ID != 0 {
                continue;
            }
            let mut entry_name = [0u8; 11];
            entry_name.copy_from_slice(&raw[..11]);
            if entry_name != expected_name {
                continue;
            }
            let high = u32::from(u16::from_le_bytes([raw[20], raw[21]]));
            let low = u32::from(u16::from_le_bytes([raw[26], raw[27]]));
            return Ok(DirEntry {
                attributes,
                first_cluster: (high << 16) | low,
                size: u32::from_le_bytes([raw[28], raw[29], raw[30], raw[31]]),
            });
        }
        Err(FatReadError::NotFound { path: path.to_owned() })
    }
}

/// Encodes `name` as an upper-case 11-byte 8.3 name, or `None` when it has
/// no 8.3 form.
fn short_name(name: &str) -> Option<[u8; 11]> {
    let upper = name.to_ascii_uppercase();
    let (base, extension) = upper.split_once('.').unwrap_or((&upper, ""));
    if base.is_empty() || base.len() > 8 || extension.len() > 3 || extension.contains('.') {
        return None;
    }
    let mut encoded = [b' '; 11];
    encoded[..base.len()].copy_from_slice(base.as_bytes());
    encoded[8..8 + extension.len()].copy_from_slice(extension.as_bytes());
    Some(encoded)
}
