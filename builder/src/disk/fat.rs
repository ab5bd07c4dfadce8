//! FAT32 writer for the EFI System Partition.
//!
//! # Layout
//!
//! Microsoft "FAT: General Overview of On-Disk Format" (fatgen103, 2000) defines
//! the format. The volume written here has 512-byte sectors and:
//!
//! | Sector | Contents |
//! |---|---|
//! | 0 | boot sector with the BIOS parameter block (BPB) |
//! | 1 | FSInfo: free cluster count and next free cluster hint |
//! | 6, 7 | backup copies of sectors 0 and 1 |
//! | 32 | first FAT, then the second FAT of the same size |
//! | after the FATs | data area; cluster 2 is its first cluster and holds the root directory |
//!
//! A FAT entry is a 32-bit value whose low 28 bits give the next cluster of a
//! chain, or 0x0FFFFFFF at the end of a chain. Entries 0 and 1 are reserved.
//! A volume is FAT32 only with at least 65,525 clusters, so [`make_esp`] rejects
//! smaller sizes instead of writing FAT16.
//!
//! Clusters are one sector, doubled only while the cluster count would exceed
//! the FAT32 maximum. Directories and files take consecutive clusters in
//! depth-first order of the paths given, the root directory first. Every
//! subdirectory starts with `.` and `..` entries. Names are 8.3 short names in
//! upper case without long-name entries. All timestamps are `epoch`, clamped to
//! the FAT date range 1980..=2107, and interpreted as UTC. The same inputs
//! therefore always give the same bytes.

use thiserror::Error;

/// Bytes per sector. Only 512 is written.
const SECTOR_SIZE: u32 = 512;
/// Reserved sectors before the first FAT, the FAT32 value that format tools use.
const RESERVED_SECTORS: u32 = 32;
/// Number of FAT copies.
const FAT_COUNT: u32 = 2;
/// Sector numbers of FSInfo and of the backup boot sector.
const FSINFO_SECTOR: u32 = 1;
const BACKUP_BOOT_SECTOR: u32 = 6;
/// Cluster that holds the root directory.
const ROOT_CLUSTER: u32 = 2;
/// Bytes per FAT entry.
const FAT_ENTRY_SIZE: u32 = 4;
/// Minimum cluster count of a FAT32 volume; fewer clusters make it FAT16.
const FAT32_MIN_CLUSTERS: u32 = 65_525;
/// Maximum cluster count of a FAT32 volume, so that the highest cluster number
/// stays below the 0x0FFFFFF7 bad-cluster marker.
const FAT32_MAX_CLUSTERS: u32 = 0x0FFF_FFF5;
/// Largest sectors-per-cluster value tried; 64 sectors are 32 KiB clusters.
const MAX_SECTORS_PER_CLUSTER: u32 = 64;
/// Smallest volume in sectors: reserved sectors, two FATs of 512 sectors for
/// 65,527 entries, and 65,525 one-sector clusters.
const MIN_SECTORS: u32 = RESERVED_SECTORS + FAT_COUNT * 512 + FAT32_MIN_CLUSTERS;

/// FAT entry values: end of chain, and the two reserved entries for media
/// type 0xF8 with the "clean unmount" and "no I/O error" bits set.
const FAT_END_OF_CHAIN: u32 = 0x0FFF_FFFF;
const FAT_ENTRY_0: u32 = 0x0FFF_FFF8;
const FAT_ENTRY_1: u32 = 0x0FFF_FFFF;

/// Boot sector values.
const JUMP_INSTRUCTION: [u8; 3] = [0xEB, 0x58, 0x90];
/// OEM name; fatgen103 recommends this value as the most compatible.
const OEM_NAME: &[u8; 8] = b"MSWIN4.1";
/// Media descriptor for fixed disks.
const MEDIA_FIXED_DISK: u8 = 0xF8;
/// Geometry hints for the BPB; UEFI and Linux ignore them.
const SECTORS_PER_TRACK: u16 = 63;
const HEAD_COUNT: u16 = 255;
const DRIVE_NUMBER_HARD_DISK: u8 = 0x80;
const EXTENDED_BOOT_SIGNATURE: u8 = 0x29;
const FILE_SYSTEM_TYPE: &[u8; 8] = b"FAT32   ";
const NO_VOLUME_LABEL: &[u8; 11] = b"NO NAME    ";
/// Boot code that halts the CPU: `cli; hlt; jmp $-1`, at the jump target
/// 0x5A, in case a BIOS ever boots this partition.
const BOOT_CODE_OFFSET: usize = 0x5A;
const HALT_LOOP: [u8; 4] = [0xFA, 0xF4, 0xEB, 0xFD];
const BOOT_SIGNATURE: [u8; 2] = [0x55, 0xAA];

/// FSInfo signatures and field offsets.
const FSINFO_LEAD_SIGNATURE: u32 = 0x4161_5252;
const FSINFO_STRUCT_SIGNATURE: u32 = 0x6141_7272;
const FSINFO_TRAIL_SIGNATURE: u32 = 0xAA55_0000;
const FSINFO_NO_HINT: u32 = 0xFFFF_FFFF;

/// Directory entry size and attribute bits.
const DIR_ENTRY_SIZE: u32 = 32;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_ARCHIVE: u8 = 0x20;
const DOT_NAME: &[u8; 11] = b".          ";
const DOT_DOT_NAME: &[u8; 11] = b"..         ";

/// Characters allowed in 8.3 names besides A-Z and 0-9 (fatgen103, "Directory
/// Structure").
const SHORT_NAME_SPECIAL: &[u8] = b"!#$%&'()-@^_`{}~";

/// Unix times of 1980-01-01T00:00:00Z and 2107-12-31T23:59:58Z, the range of
/// FAT timestamps.
const FAT_EPOCH_MIN: u64 = 315_532_800;
const FAT_EPOCH_MAX: u64 = 4_354_819_198;

/// Errors from building a FAT32 file system.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FatError {
    /// The size is not a whole number of 512-byte sectors.
    #[error("invalid ESP size {size} bytes: use a multiple of 512 bytes")]
    SizeNotSectorMultiple {
        /// The rejected size.
        size: u64,
    },

    /// The size gives fewer than 65,525 clusters, which would make FAT16.
    #[error(
        "ESP size {size} bytes is below the FAT32 minimum of {min} bytes \
         (65,525 clusters); use at least 33 MiB, 64 MiB is common"
    )]
    TooSmall {
        /// The rejected size.
        size: u64,
        /// The minimum size in bytes.
        min: u64,
    },

    /// The size exceeds what 32-bit sector counts express.
    #[error("ESP size {size} bytes exceeds the FAT32 limit of 2 TiB with 512-byte sectors")]
    TooLarge {
        /// The rejected size.
        size: u64,
    },

    /// A path is empty, absolute or has empty components.
    #[error("invalid ESP path {path:?}: use a relative path such as \"EFI/BOOT/BOOTX64.EFI\"")]
    InvalidPath {
        /// The rejected path.
        path: String,
    },

    /// A path component is not an upper-case 8.3 name.
    #[error(
        "invalid name {component:?} in ESP path {path:?}: use an upper-case 8.3 name \
         (1 to 8 characters, optionally a dot and 1 to 3 more) of A-Z, 0-9 and !#$%&'()-@^_`{{}}~"
    )]
    InvalidName {
        /// The full path.
        path: String,
        /// The rejected component.
        component: String,
    },

    /// A path is given twice, or names both a file and a directory.
    #[error("conflicting ESP path {path:?}: it is given twice or is both a file and a directory")]
    ConflictingPath {
        /// The path.
        path: String,
    },

    /// A file is too large for the 32-bit size field.
    #[error("ESP file {path:?} is {size} bytes, but FAT32 stores files below 4 GiB")]
    FileTooLarge {
        /// The path.
        path: String,
        /// The size in bytes.
        size: usize,
    },

    /// The files do not fit in the volume.
    #[error(
        "ESP of {size} bytes is too small for its contents: they need {needed} \
         clusters of {cluster_size} bytes, but only {available} exist; enlarge the ESP"
    )]
    NoSpace {
        /// The volume size in bytes.
        size: u64,
        /// Clusters needed.
        needed: u64,
        /// Clusters available.
        available: u32,
        /// Cluster size in bytes.
        cluster_size: u32,
    },

    /// The volume label is not valid.
    #[error("invalid volume label {label:?}: use at most 11 upper-case characters of A-Z, 0-9, space and !#$%&'()-@^_`{{}}~")]
    InvalidLabel {
        /// The rejected label.
        label: String,
    },
}

/// Sizes of the volume's regions.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    total_sectors: u32,
    sectors_per_cluster: u32,
    fat_sectors: u32,
    cluster_count: u32,
}

impl Geometry {
    fn cluster_size(&self) -> u32 {
        self.sectors_per_cluster * SECTOR_SIZE
    }

    fn data_start_sector(&self) -> u32 {
        RESERVED_SECTORS + FAT_COUNT * self.fat_sectors
    }

    fn cluster_offset(&self, cluster: u32) -> usize {
        let sector = u64::from(self.data_start_sector())
            + u64::from(cluster - ROOT_CLUSTER) * u64::from(self.sectors_per_cluster);
        // The caller allocates only clusters inside the volume, which is a Vec.
        (sector * u64::from(SECTOR_SIZE)) as usize
    }
}

/// One file or directory of the tree.
#[derive(Debug)]
struct Node<'a> {
    name: [u8; 11],
    kind: NodeKind<'a>,
    first_cluster: u32,
    cluster_count: u32,
}

#[derive(Debug)]
enum NodeKind<'a> {
    Directory { children: Vec<usize> },
    File { data: &'a [u8] },
}

/// Creates a FAT32 file system image of `size` bytes that contains `files`,
/// given as `(path, contents)` such as `("EFI/BOOT/BOOTX64.EFI", &uki)`.
/// Directories are created from the paths.
///
/// `volume_id` is the serial number in the boot sector, `label` the volume
/// label (empty for none) and `epoch` the time in seconds since 1970 stored in
/// every timestamp.
///
/// The image is built in memory, so this takes `size` bytes of RAM.
///
/// # Errors
///
/// Returns a [`FatError`] when:
/// * the size is not a multiple of 512 bytes, is below the FAT32 minimum
///   (about 33 MiB) or above 2 TiB;
/// * a path or the label is not a valid upper-case 8.3 name, or paths conflict;
/// * the files do not fit.
pub fn make_esp(
    files: &[(&str, &[u8])],
    size: u64,
    volume_id: u32,
    label: &str,
    epoch: u64,
) -> Result<Vec<u8>, FatError> {
    let geometry = plan_geometry(size)?;
    let label_bytes = encode_label(label)?;
    let mut nodes = build_tree(files)?;
    let used = allocate(&mut nodes, geometry, !label.is_empty(), size)?;

    tracing::debug!(
        sectors = geometry.total_sectors,
        sectors_per_cluster = geometry.sectors_per_cluster,
        fat_sectors = geometry.fat_sectors,
        clusters = geometry.cluster_count,
        used_clusters = used,
        "planned FAT32 file system"
    );
    let image_len = usize::try_from(size).map_err(|_| FatError::TooLarge { size })?;
    let mut image = vec![0u8; image_len];
    let timestamp = FatTimestamp::from_unix(epoch);
    write_boot_sectors(&mut image, geometry, volume_id, &label_bytes, used);
    write_fats(&mut image, geometry, &nodes);
    write_nodes(
        &mut image,
        geometry,
        &nodes,
        (!label.is_empty()).then_some(&label_bytes),
        timestamp,
    );
    Ok(image)
}

/// Chooses sectors per cluster and the FAT size for a volume of `size` bytes.
fn plan_geometry(size: u64) -> Result<Geometry, FatError> {
    if !size.is_multiple_of(u64::from(SECTOR_SIZE)) {
        return Err(FatError::SizeNotSectorMultiple { size });
    }
    let total_sectors =
        u32::try_from(size / u64::from(SECTOR_SIZE)).map_err(|_| FatError::TooLarge { size })?;
    let too_small = FatError::TooSmall {
        size,
        min: u64::from(MIN_SECTORS) * u64::from(SECTOR_SIZE),
    };
    if total_sectors < MIN_SECTORS {
        return Err(too_small);
    }

    let mut sectors_per_cluster = 1;
    while sectors_per_cluster <= MAX_SECTORS_PER_CLUSTER {
        let geometry =
            fit_fat(total_sectors, sectors_per_cluster).ok_or(FatError::TooLarge { size })?;
        if geometry.cluster_count < FAT32_MIN_CLUSTERS {
            return Err(too_small);
        }
        if geometry.cluster_count <= FAT32_MAX_CLUSTERS {
            return Ok(geometry);
        }
        sectors_per_cluster *= 2;
    }
    Err(FatError::TooLarge { size })
}

/// Finds the smallest FAT that has an entry for every cluster left after the
/// FATs. A larger FAT leaves fewer clusters, so "the FAT is big enough" holds
/// for every size from some minimum on, and a binary search finds it.
fn fit_fat(total_sectors: u32, sectors_per_cluster: u32) -> Option<Geometry> {
    let total = u64::from(total_sectors);
    let clusters_for = |fat_sectors: u64| {
        total.saturating_sub(u64::from(RESERVED_SECTORS) + u64::from(FAT_COUNT) * fat_sectors)
            / u64::from(sectors_per_cluster)
    };
    let fat_is_big_enough = |fat_sectors: u64| {
        let entries = clusters_for(fat_sectors) + u64::from(ROOT_CLUSTER);
        (entries * u64::from(FAT_ENTRY_SIZE)).div_ceil(u64::from(SECTOR_SIZE)) <= fat_sectors
    };

    let (mut low, mut high) = (1, total);
    while low < high {
        let middle = low + (high - low) / 2;
        if fat_is_big_enough(middle) {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    let fat_sectors = low;
    total.checked_sub(u64::from(RESERVED_SECTORS) + u64::from(FAT_COUNT) * fat_sectors)?;
    Some(Geometry {
        total_sectors,
        sectors_per_cluster,
        fat_sectors: u32::try_from(fat_sectors).ok()?,
        cluster_count: u32::try_from(clusters_for(fat_sectors)).ok()?,
    })
}

/// Builds the directory tree from the paths; node 0 is the root directory.
fn build_tree<'a>(files: &[(&str, &'a [u8])]) -> Result<Vec<Node<'a>>, FatError> {
    let mut nodes = vec![Node {
        name: [b' '; 11],
        kind: NodeKind::Directory {
            children: Vec::new(),
        },
        first_cluster: 0,
        cluster_count: 0,
    }];

    for &(path, data) in files {
        let components: Vec<&str> = path.split('/').collect();
        if path.is_empty() || components.iter().any(|c| c.is_empty()) {
            return Err(FatError::InvalidPath {
                path: path.to_owned(),
            });
        }
        if u32::try_from(data.len()).is_err() {
            return Err(FatError::FileTooLarge {
                path: path.to_owned(),
                size: data.len(),
            });
        }

        let mut parent = 0;
        for (depth, component) in components.iter().enumerate() {
            let name = encode_short_name(component).ok_or_else(|| FatError::InvalidName {
                path: path.to_owned(),
                component: (*component).to_owned(),
            })?;
            let is_last = depth + 1 == components.len();
            let conflict = || FatError::ConflictingPath {
                path: path.to_owned(),
            };
            let existing = child_named(&nodes, parent, &name);
            parent = match (existing, is_last) {
                (Some(_), true) => return Err(conflict()),
                (Some(index), false) => match nodes[index].kind {
                    NodeKind::Directory { .. } => index,
                    NodeKind::File { .. } => return Err(conflict()),
                },
                (None, true) => add_child(&mut nodes, parent, name, NodeKind::File { data }),
                (None, false) => add_child(
                    &mut nodes,
                    parent,
                    name,
                    NodeKind::Directory {
                        children: Vec::new(),
                    },
                ),
            };
        }
    }
    Ok(nodes)
}

fn child_named(nodes: &[Node<'_>], parent: usize, name: &[u8; 11]) -> Option<usize> {
    match &nodes[parent].kind {
        NodeKind::Directory { children } => children
            .iter()
            .copied()
            .find(|&child| &nodes[child].name == name),
        NodeKind::File { .. } => None,
    }
}

fn add_child<'a>(
    nodes: &mut Vec<Node<'a>>,
    parent: usize,
    name: [u8; 11],
    kind: NodeKind<'a>,
) -> usize {
    let index = nodes.len();
    nodes.push(Node {
        name,
        kind,
        first_cluster: 0,
        cluster_count: 0,
    });
    if let NodeKind::Directory { children } = &mut nodes[parent].kind {
        children.push(index);
    }
    index
}

/// Assigns consecutive clusters in depth-first order, root first, and returns
/// the number of clusters used.
fn allocate(
    nodes: &mut [Node<'_>],
    geometry: Geometry,
    has_label: bool,
    size: u64,
) -> Result<u32, FatError> {
    let cluster_size = u64::from(geometry.cluster_size());
    let mut order = Vec::with_capacity(nodes.len());
    depth_first(nodes, 0, &mut order);

    let mut counts = Vec::with_capacity(order.len());
    for &index in &order {
        let bytes = match &nodes[index].kind {
            NodeKind::Directory { children } => {
                let special_entries = if index == 0 { u64::from(has_label) } else { 2 };
                (children.len() as u64 + special_entries) * u64::from(DIR_ENTRY_SIZE)
            }
            NodeKind::File { data } => data.len() as u64,
        };
        // Directories always own a cluster; only empty files have none.
        let is_directory = matches!(nodes[index].kind, NodeKind::Directory { .. });
        counts.push(bytes.div_ceil(cluster_size).max(u64::from(is_directory)));
    }

    let needed: u64 = counts.iter().sum();
    let used = u32::try_from(needed)
        .ok()
        .filter(|&used| used <= geometry.cluster_count)
        .ok_or(FatError::NoSpace {
            size,
            needed,
            available: geometry.cluster_count,
            cluster_size: geometry.cluster_size(),
        })?;

    // Every count and their sum fit in u32 now, and so does each cluster number
    // (at most cluster_count + 1).
    let mut next_cluster = ROOT_CLUSTER;
    for (index, count) in order.into_iter().zip(counts) {
        let count = count as u32;
        if count > 0 {
            nodes[index].first_cluster = next_cluster;
            nodes[index].cluster_count = count;
        }
        next_cluster += count;
    }
    Ok(used)
}

fn depth_first(nodes: &[Node<'_>], index: usize, order: &mut Vec<usize>) {
    order.push(index);
    if let NodeKind::Directory { children } = &nodes[index].kind {
        for &child in children {
            depth_first(nodes, child, order);
        }
    }
}

fn write_boot_sectors(
    image: &mut [u8],
    geometry: Geometry,
    volume_id: u32,
    label: &[u8; 11],
    used_clusters: u32,
) {
    let mut boot = [0u8; SECTOR_SIZE as usize];
    boot[0..3].copy_from_slice(&JUMP_INSTRUCTION);
    boot[3..11].copy_from_slice(OEM_NAME);
    boot[11..13].copy_from_slice(&(SECTOR_SIZE as u16).to_le_bytes());
    boot[13] = geometry.sectors_per_cluster as u8;
    boot[14..16].copy_from_slice(&(RESERVED_SECTORS as u16).to_le_bytes());
    boot[16] = FAT_COUNT as u8;
    // Root entry count, 16-bit sector count and 16-bit FAT size are 0 on FAT32.
    boot[21] = MEDIA_FIXED_DISK;
    boot[24..26].copy_from_slice(&SECTORS_PER_TRACK.to_le_bytes());
    boot[26..28].copy_from_slice(&HEAD_COUNT.to_le_bytes());
    // Hidden sectors stay 0: the partition offset is not known here, and
    // UEFI and Linux do not read the field.
    boot[32..36].copy_from_slice(&geometry.total_sectors.to_le_bytes());
    boot[36..40].copy_from_slice(&geometry.fat_sectors.to_le_bytes());
    // Flags 0 (FATs mirrored) and version 0.0 at 40..44.
    boot[44..48].copy_from_slice(&ROOT_CLUSTER.to_le_bytes());
    boot[48..50].copy_from_slice(&(FSINFO_SECTOR as u16).to_le_bytes());
    boot[50..52].copy_from_slice(&(BACKUP_BOOT_SECTOR as u16).to_le_bytes());
    boot[64] = DRIVE_NUMBER_HARD_DISK;
    boot[66] = EXTENDED_BOOT_SIGNATURE;
    boot[67..71].copy_from_slice(&volume_id.to_le_bytes());
    boot[71..82].copy_from_slice(label);
    boot[82..90].copy_from_slice(FILE_SYSTEM_TYPE);
    boot[BOOT_CODE_OFFSET..BOOT_CODE_OFFSET + HALT_LOOP.len()].copy_from_slice(&HALT_LOOP);
    boot[510..512].copy_from_slice(&BOOT_SIGNATURE);

    let free_clusters = geometry.cluster_count - used_clusters;
    let next_free = if free_clusters == 0 {
        FSINFO_NO_HINT
    } else {
        ROOT_CLUSTER + used_clusters
    };
    let mut fsinfo = [0u8; SECTOR_SIZE as usize];
    fsinfo[0..4].copy_from_slice(&FSINFO_LEAD_SIGNATURE.to_le_bytes());
    fsinfo[484..488].copy_from_slice(&FSINFO_STRUCT_SIGNATURE.to_le_bytes());
    fsinfo[488..492].copy_from_slice(&free_clusters.to_le_bytes());
    fsinfo[492..496].copy_from_slice(&next_free.to_le_bytes());
    fsinfo[508..512].copy_from_slice(&FSINFO_TRAIL_SIGNATURE.to_le_bytes());

    for (sector, contents) in [
        (0, &boot),
        (FSINFO_SECTOR, &fsinfo),
        (BACKUP_BOOT_SECTOR, &boot),
        (BACKUP_BOOT_SECTOR + FSINFO_SECTOR, &fsinfo),
    ] {
        let offset = (sector * SECTOR_SIZE) as usize;
        image[offset..offset + SECTOR_SIZE as usize].copy_from_slice(contents);
    }
}

fn write_fats(image: &mut [u8], geometry: Geometry, nodes: &[Node<'_>]) {
    let mut fat = vec![0u8; (geometry.fat_sectors * SECTOR_SIZE) as usize];
    let mut set = |cluster: u32, value: u32| {
        let offset = (cluster * FAT_ENTRY_SIZE) as usize;
        fat[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    };
    set(0, FAT_ENTRY_0);
    set(1, FAT_ENTRY_1);
    for node in nodes.iter().filter(|node| node.cluster_count > 0) {
        let last = node.first_cluster + node.cluster_count - 1;
        for cluster in node.first_cluster..last {
            set(cluster, cluster + 1);
        }
        set(last, FAT_END_OF_CHAIN);
    }

    for copy in 0..FAT_COUNT {
        let offset = ((RESERVED_SECTORS + copy * geometry.fat_sectors) * SECTOR_SIZE) as usize;
        image[offset..offset + fat.len()].copy_from_slice(&fat);
    }
}

fn write_nodes(
    image: &mut [u8],
    geometry: Geometry,
    nodes: &[Node<'_>],
    label: Option<&[u8; 11]>,
    timestamp: FatTimestamp,
) {
    for (index, node) in nodes.iter().enumerate() {
        let offset = geometry.cluster_offset(node.first_cluster.max(ROOT_CLUSTER));
        match &node.kind {
            NodeKind::File { data } => {
                if node.cluster_count > 0 {
                    image[offset..offset + data.len()].copy_from_slice(data);
                }
            }
            NodeKind::Directory { children } => {
                let mut entries = Vec::new();
                if index == 0 {
                    if let Some(label) = label {
                        entries.push(encode_entry(label, ATTR_VOLUME_ID, 0, 0, timestamp));
                    }
                } else {
                    let parent_cluster = parent_cluster(nodes, index);
                    entries.push(encode_entry(
                        DOT_NAME,
                        ATTR_DIRECTORY,
                        node.first_cluster,
                        0,
                        timestamp,
                    ));
                    entries.push(encode_entry(
                        DOT_DOT_NAME,
                        ATTR_DIRECTORY,
                        parent_cluster,
                        0,
                        timestamp,
                    ));
                }
                for &child in children {
                    let child = &nodes[child];
                    let (attributes, size) = match &child.kind {
                        NodeKind::Directory { .. } => (ATTR_DIRECTORY, 0),
                        // build_tree checked that the size fits in 32 bits.
                        NodeKind::File { data } => (ATTR_ARCHIVE, data.len() as u32),
                    };
                    entries.push(encode_entry(
                        &child.name,
                        attributes,
                        child.first_cluster,
                        size,
                        timestamp,
                    ));
                }
                for (position, entry) in entries.iter().enumerate() {
                    let start = offset + position * DIR_ENTRY_SIZE as usize;
                    image[start..start + DIR_ENTRY_SIZE as usize].copy_from_slice(entry);
                }
            }
        }
    }
}

/// Returns the cluster that a `..` entry of directory `index` names: the
/// parent's first cluster, or 0 when the parent is the root directory.
fn parent_cluster(nodes: &[Node<'_>], index: usize) -> u32 {
    let parent = nodes.iter().position(|node| match &node.kind {
        NodeKind::Directory { children } => children.contains(&index),
        NodeKind::File { .. } => false,
    });
    match parent {
        Some(0) | None => 0,
        Some(parent) => nodes[parent].first_cluster,
    }
}

fn encode_entry(
    name: &[u8; 11],
    attributes: u8,
    cluster: u32,
    size: u32,
    timestamp: FatTimestamp,
) -> [u8; 32] {
    let mut entry = [0u8; DIR_ENTRY_SIZE as usize];
    entry[0..11].copy_from_slice(name);
    entry[11] = attributes;
    entry[13] = timestamp.hundredths;
    entry[14..16].copy_from_slice(&timestamp.time.to_le_bytes());
    entry[16..18].copy_from_slice(&timestamp.date.to_le_bytes());
    entry[18..20].copy_from_slice(&timestamp.date.to_le_bytes());
    entry[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    entry[22..24].copy_from_slice(&timestamp.time.to_le_bytes());
    entry[24..26].copy_from_slice(&timestamp.date.to_le_bytes());
    entry[26..28].copy_from_slice(&((cluster & 0xFFFF) as u16).to_le_bytes());
    entry[28..32].copy_from_slice(&size.to_le_bytes());
    entry
}

/// Encodes an upper-case 8.3 name into the 11-byte directory form, or returns
/// `None` if `name` is not one.
fn encode_short_name(name: &str) -> Option<[u8; 11]> {
    let (base, extension) = match name.split_once('.') {
        Some((base, extension)) => (base, Some(extension)),
        None => (name, None),
    };
    let valid_part = |part: &str, max: usize| {
        !part.is_empty() && part.len() <= max && part.bytes().all(is_short_name_char)
    };
    if !valid_part(base, 8) || extension.is_some_and(|extension| !valid_part(extension, 3)) {
        return None;
    }

    let mut encoded = [b' '; 11];
    encoded[..base.len()].copy_from_slice(base.as_bytes());
    if let Some(extension) = extension {
        encoded[8..8 + extension.len()].copy_from_slice(extension.as_bytes());
    }
    Some(encoded)
}

fn is_short_name_char(byte: u8) -> bool {
    byte.is_ascii_uppercase() || byte.is_ascii_digit() || SHORT_NAME_SPECIAL.contains(&byte)
}

fn encode_label(label: &str) -> Result<[u8; 11], FatError> {
    if label.is_empty() {
        return Ok(*NO_VOLUME_LABEL);
    }
    let valid = label.len() <= 11
        && !label.starts_with(' ')
        && label
            .bytes()
            .all(|byte| byte == b' ' || is_short_name_char(byte));
    if !valid {
        return Err(FatError::InvalidLabel {
            label: label.to_owned(),
        });
    }
    let mut encoded = [b' '; 11];
    encoded[..label.len()].copy_from_slice(label.as_bytes());
    Ok(encoded)
}

/// A FAT date, time and hundredths of a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FatTimestamp {
    /// Bits 15-9: years since 1980, 8-5: month, 4-0: day.
    date: u16,
    /// Bits 15-11: hours, 10-5: minutes, 4-0: seconds divided by 2.
    time: u16,
    /// Creation time refinement in 10 ms units, 0..=199, carrying the odd second.
    hundredths: u8,
}

impl FatTimestamp {
    /// Converts Unix seconds (UTC) to a FAT timestamp, clamped to 1980..=2107.
    fn from_unix(epoch: u64) -> Self {
        let seconds = epoch.clamp(FAT_EPOCH_MIN, FAT_EPOCH_MAX);
        let days = seconds / 86_400;
        let second_of_day = seconds % 86_400;
        let (year, month, day) = civil_from_days(days);
        let hour = second_of_day / 3600;
        let minute = second_of_day % 3600 / 60;
        let second = second_of_day % 60;
        // The clamp keeps year - 1980 within 0..=127, so every field fits its bits.
        Self {
            date: (((year - 1980) << 9) | (month << 5) | day) as u16,
            time: ((hour << 11) | (minute << 5) | (second / 2)) as u16,
            hundredths: ((second % 2) * 100) as u8,
        }
    }
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day),
/// counting in 400-year eras that start on March 1st so leap days fall last.
pub(crate) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    const DAYS_PER_ERA: u64 = 146_097;
    // Days from 0000-03-01 to 1970-01-01.
    const UNIX_EPOCH_SHIFT: u64 = 719_468;

    let shifted = days + UNIX_EPOCH_SHIFT;
    let era = shifted / DAYS_PER_ERA;
    let day_of_era = shifted % DAYS_PER_ERA;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_of_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        // 2000-02-29 is day 11016, 2024-12-31 is day 20088.
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_088), (2024, 12, 31));
    }

    #[test]
    fn timestamp_clamps_to_fat_range() {
        let earliest = FatTimestamp::from_unix(0);
        assert_eq!(earliest.date, (1 << 5) | 1);
        assert_eq!(earliest.time, 0);
        let latest = FatTimestamp::from_unix(u64::MAX);
        assert_eq!(latest.date, (127 << 9) | (12 << 5) | 31);
        assert_eq!(latest.time, (23 << 11) | (59 << 5) | 29);
    }

    #[test]
    fn timestamp_keeps_odd_second() {
        // 2023-11-14T22:13:21Z
        let stamp = FatTimestamp::from_unix(1_700_000_001);
        assert_eq!(stamp.date, ((2023 - 1980) << 9) | (11 << 5) | 14);
        assert_eq!(stamp.time, (22 << 11) | (13 << 5) | 10);
        assert_eq!(stamp.hundredths, 100);
    }

    #[test]
    fn short_names() {
        assert_eq!(encode_short_name("BOOTX64.EFI"), Some(*b"BOOTX64 EFI"));
        assert_eq!(encode_short_name("EFI"), Some(*b"EFI        "));
        for invalid in [
            "",
            "bootx64.efi",
            "TOOLONGNAME",
            "A.EFIX",
            ".EFI",
            "A.",
            "A B",
            "A.B.C",
        ] {
            assert_eq!(encode_short_name(invalid), None, "{invalid:?}");
        }
    }

    #[test]
    fn minimum_size_is_fat32() {
        let geometry = plan_geometry(u64::from(MIN_SECTORS) * 512).expect("minimum size is valid");
        assert!(geometry.cluster_count >= FAT32_MIN_CLUSTERS);
        assert!(plan_geometry(u64::from(MIN_SECTORS - 1) * 512).is_err());
    }
}
