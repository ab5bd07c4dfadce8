//! Finding the boot disk: scanning `/sys/block`, reading each disk's GPT through its
//! device node, and mapping GPT partition numbers to kernel block devices.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::time::{Duration, Instant};

use crate::errno;
use crate::gpt::{self, Entry, VerityLayout, WantedUuids};
use crate::sys::{self, NodeKind};
use crate::Failure;

const SYS_BLOCK: &str = "/sys/block";
/// Disks that cannot hold the boot GPT: loop devices, RAM disks, device-mapper
/// devices and compressed RAM swap.
const SKIPPED_PREFIXES: [&str; 4] = ["loop", "ram", "dm-", "zram"];
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Sector sizes tried for the GPT header at LBA 1, in order.
const SECTOR_SIZES: [u32; 2] = [512, 4096];
/// sysfs reports partition start and size in 512-byte units whatever the sector size.
const SYSFS_SECTOR: u64 = 512;

/// A kernel block device and the node this init reads it through.
#[derive(Clone, Debug)]
pub struct BlockDevice {
    /// Name in sysfs, such as `vda` or `vda2`.
    pub name: String,
    pub major: u32,
    pub minor: u32,
    pub node: String,
}

#[derive(Clone, Debug)]
pub struct Partition {
    pub device: BlockDevice,
    pub size_bytes: u64,
}

/// The disk that contains the root, root-verity and root-verity-sig partitions.
#[derive(Clone, Debug)]
pub struct BootDisk {
    pub disk: BlockDevice,
    pub root: Partition,
    pub verity: Partition,
    pub signatures: Vec<Partition>,
}

/// Result of checking one disk in one scan.
enum Scan {
    Found(BootDisk),
    /// Not the boot disk, or not ready yet. The text is the reason, shown in the timeout message.
    Skipped(String),
}

/// Polls `/sys/block` every 100 ms until a disk contains the partitions that `wanted`
/// names, or `timeout` passes.
///
/// Disks without either derived UUID are skipped. On a disk with one of them, a
/// malformed layout is an immediate failure, because waiting cannot fix it.
pub fn wait_for_boot_disk(wanted: &WantedUuids, timeout: Duration) -> Result<BootDisk, Failure> {
    let start = Instant::now();
    loop {
        let names = list_disks().map_err(|e| Failure::new("cannot list disks", format!("{SYS_BLOCK}: {}", errno::describe(&e))))?;
        let mut skipped = Vec::new();
        for name in names {
            match scan_disk(&name, wanted) {
                Ok(Scan::Found(boot_disk)) => return Ok(boot_disk),
                Ok(Scan::Skipped(reason)) => skipped.push(format!("{name}: {reason}")),
                Err(detail) => return Err(Failure::new(format!("invalid partition layout on /dev/{name}"), detail)),
            }
        }
        if start.elapsed() >= timeout {
            let disks = if skipped.is_empty() { "no disks found".to_string() } else { skipped.join("; ") };
            return Err(Failure::new(
                "boot disk not found",
                format!(
                    "no partition with PARTUUID {} (root) on any disk after {} s ({disks})",
                    wanted.root,
                    timeout.as_secs()
                ),
            ));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn list_disks() -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(SYS_BLOCK)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !SKIPPED_PREFIXES.iter().any(|prefix| name.starts_with(prefix)) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Checks one disk. `Err` means the disk has a derived UUID but a broken layout.
fn scan_disk(name: &str, wanted: &WantedUuids) -> Result<Scan, String> {
    let sys_dir = format!("{SYS_BLOCK}/{name}");
    let (major, minor) = match read_dev_number(&format!("{sys_dir}/dev")) {
        Ok(number) => number,
        Err(reason) => return Ok(Scan::Skipped(reason)),
    };
    match read_sysfs_u64(&format!("{sys_dir}/size")) {
        Ok(0) => return Ok(Scan::Skipped("no medium".to_string())),
        Ok(_) => {}
        Err(reason) => return Ok(Scan::Skipped(reason)),
    }
    let disk = match ensure_node(&node_path(name), NodeKind::Block, major, minor) {
        Ok(node) => BlockDevice { name: name.to_string(), major, minor, node },
        Err(reason) => return Ok(Scan::Skipped(reason)),
    };

    let (header, entries) = match read_gpt(&disk.node) {
        Ok(gpt) => gpt,
        Err(reason) => return Ok(Scan::Skipped(reason)),
    };
    let Some(layout) = gpt::find_verity_layout(&entries, wanted)? else {
        return Ok(Scan::Skipped("no partition with the derived UUIDs".to_string()));
    };
    map_partitions(&disk, &sys_dir, &header, layout)
}

/// Resolves the GPT entries of `layout` to the kernel's partition devices.
fn map_partitions(disk: &BlockDevice, sys_dir: &str, header: &gpt::Header, layout: VerityLayout) -> Result<Scan, String> {
    let numbers = partition_numbers(sys_dir).map_err(|e| format!("cannot list partitions in {sys_dir}: {e}"))?;
    let resolve = |entry: Entry| -> Result<Option<Partition>, String> {
        let Some(part_name) = numbers.get(&entry.number) else {
            return Ok(None);
        };
        partition_device(disk, sys_dir, part_name, header, entry).map(Some)
    };

    let wanted_numbers: Vec<u32> = [&layout.root, &layout.verity]
        .into_iter()
        .chain(&layout.signatures)
        .map(|e| e.number)
        .collect();
    let (Some(root), Some(verity)) = (resolve(layout.root)?, resolve(layout.verity)?) else {
        return Ok(Scan::Skipped(format!("waiting for the kernel to add partitions {wanted_numbers:?}")));
    };
    let mut signatures = Vec::new();
    for entry in layout.signatures {
        match resolve(entry)? {
            Some(partition) => signatures.push(partition),
            None => return Ok(Scan::Skipped(format!("waiting for the kernel to add partitions {wanted_numbers:?}"))),
        }
    }
    Ok(Scan::Found(BootDisk { disk: disk.clone(), root, verity, signatures }))
}

/// Returns the partition number to sysfs name map of a disk, from each
/// `<disk>/<partition>/partition` file.
fn partition_numbers(sys_dir: &str) -> io::Result<BTreeMap<u32, String>> {
    let mut numbers = BTreeMap::new();
    for entry in fs::read_dir(sys_dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Ok(number) = read_sysfs_u64(&format!("{sys_dir}/{name}/partition")) {
            if let Ok(number) = u32::try_from(number) {
                numbers.insert(number, name);
            }
        }
    }
    Ok(numbers)
}

/// Opens the kernel's view of one partition and checks that it spans exactly the
/// sectors of its GPT entry, so that the node read later is the partition parsed here.
fn partition_device(disk: &BlockDevice, sys_dir: &str, part_name: &str, header: &gpt::Header, entry: Entry) -> Result<Partition, String> {
    let part_dir = format!("{sys_dir}/{part_name}");
    let (major, minor) = read_dev_number(&format!("{part_dir}/dev"))?;
    let start = read_sysfs_u64(&format!("{part_dir}/start"))?;
    let size = read_sysfs_u64(&format!("{part_dir}/size"))?;

    let scale = u64::from(header.sector_size) / SYSFS_SECTOR;
    let expected_start = entry.first_lba.checked_mul(scale);
    let expected_size = entry.sectors().checked_mul(scale);
    if expected_start != Some(start) || expected_size != Some(size) {
        return Err(format!(
            "kernel partition {part_name} spans 512-byte sectors {start}+{size}, but GPT entry {} of /dev/{} spans LBA {}..={} of {} bytes",
            entry.number, disk.name, entry.first_lba, entry.last_lba, header.sector_size
        ));
    }
    let node = ensure_node(&node_path(part_name), NodeKind::Block, major, minor)?;
    let size_bytes = size
        .checked_mul(SYSFS_SECTOR)
        .ok_or_else(|| format!("{part_dir}/size is out of range"))?;
    Ok(Partition { device: BlockDevice { name: part_name.to_string(), major, minor, node }, size_bytes })
}

/// Reads and checks the primary GPT, trying 512-byte then 4096-byte sectors.
fn read_gpt(node: &str) -> Result<(gpt::Header, Vec<Entry>), String> {
    let file = File::open(node).map_err(|e| format!("cannot open {node}: {}", errno::describe(&e)))?;
    let mut last_error = String::new();
    for sector_size in SECTOR_SIZES {
        let sector = match read_exact_at(&file, u64::from(sector_size), sector_size as usize) {
            Ok(sector) => sector,
            Err(e) => {
                last_error = format!("cannot read LBA 1 of {sector_size} bytes: {}", errno::describe(&e));
                continue;
            }
        };
        if sector.get(..8) != Some(gpt::SIGNATURE.as_slice()) {
            last_error = "no GPT".to_string();
            continue;
        }
        let header = gpt::parse_header(&sector, sector_size)?;
        let offset = header.entries_offset().ok_or_else(|| "GPT entry array offset out of range".to_string())?;
        let len = usize::try_from(header.entries_len()).map_err(|_| "GPT entry array too large".to_string())?;
        let array = read_exact_at(&file, offset, len)
            .map_err(|e| format!("cannot read the GPT entry array: {}", errno::describe(&e)))?;
        let entries = gpt::parse_entries(&header, &array)?;
        return Ok((header, entries));
    }
    Err(last_error)
}

fn read_exact_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buffer = vec![0u8; len];
    file.read_exact_at(&mut buffer, offset)?;
    Ok(buffer)
}

/// Reads `len` bytes at `offset` of a device node.
pub fn read_device(node: &str, offset: u64, len: usize) -> Result<Vec<u8>, String> {
    let file = File::open(node).map_err(|e| format!("cannot open {node}: {}", errno::describe(&e)))?;
    read_exact_at(&file, offset, len).map_err(|e| format!("cannot read {len} bytes at offset {offset} of {node}: {}", errno::describe(&e)))
}

/// Returns the `/dev` path of a sysfs block device name. sysfs writes `/` in names as `!`.
fn node_path(name: &str) -> String {
    format!("/dev/{}", name.replace('!', "/"))
}

/// Returns `path` after making sure it is a device node for (major, minor), creating it
/// when devtmpfs has not yet.
pub fn ensure_node(path: &str, kind: NodeKind, major: u32, minor: u32) -> Result<String, String> {
    let check = |metadata: fs::Metadata| -> Result<String, String> {
        let file_type = metadata.file_type();
        let kind_matches = match kind {
            NodeKind::Block => file_type.is_block_device(),
            NodeKind::Char => file_type.is_char_device(),
        };
        if kind_matches && metadata.rdev() == libc::makedev(major, minor) {
            Ok(path.to_string())
        } else {
            Err(format!("{path} exists but is not the {kind:?} device {major}:{minor}"))
        }
    };
    match fs::symlink_metadata(path) {
        Ok(metadata) => check(metadata),
        Err(e) if e.kind() == io::ErrorKind::NotFound => match sys::mknod(path, kind, major, minor) {
            Ok(()) => Ok(path.to_string()),
            // devtmpfs created the node between the two calls.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                check(fs::symlink_metadata(path).map_err(|e| format!("{path}: {}", errno::describe(&e)))?)
            }
            Err(e) => Err(format!("cannot create device node {path} ({major}:{minor}): {}", errno::describe(&e))),
        },
        Err(e) => Err(format!("{path}: {}", errno::describe(&e))),
    }
}

/// Reads a sysfs `dev` file (`major:minor`).
pub fn read_dev_number(path: &str) -> Result<(u32, u32), String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {}", errno::describe(&e)))?;
    parse_dev_number(&text).ok_or_else(|| format!("invalid device number {:?} in {path}", text.trim()))
}

pub fn parse_dev_number(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim_end_matches('\n').split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn read_sysfs_u64(path: &str) -> Result<u64, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {}", errno::describe(&e)))?;
    text.trim_end_matches('\n')
        .parse()
        .map_err(|_| format!("invalid number {:?} in {path}", text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_number_parsing() {
        assert_eq!(parse_dev_number("8:0\n"), Some((8, 0)));
        assert_eq!(parse_dev_number("259:12"), Some((259, 12)));
        assert_eq!(parse_dev_number("8-0"), None);
        assert_eq!(parse_dev_number("8:x"), None);
        assert_eq!(parse_dev_number(" 8:0"), None);
    }

    #[test]
    fn node_path_maps_bang() {
        assert_eq!(node_path("vda2"), "/dev/vda2");
        assert_eq!(node_path("cciss!c0d0"), "/dev/cciss/c0d0");
    }

    #[test]
    fn read_gpt_4096_image_file() {
        let wanted = WantedUuids::from_root_hash(&gpt::tests::example_root_hash());
        let dir = std::env::temp_dir().join(format!("applbuild-init-gpt-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("disk.img");
        let mut image = gpt::tests::build_gpt(
            4096,
            &[gpt::tests::TestPartition { type_guid: gpt::ROOT_X86_64, unique_guid: wanted.root, first_lba: 10, last_lba: 20 }],
        );
        image.resize(1 << 20, 0);
        fs::write(&path, &image).unwrap();
        let (header, entries) = read_gpt(path.to_str().unwrap()).unwrap();
        assert_eq!(header.sector_size, 4096);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].unique_guid, wanted.root);

        fs::write(&path, vec![0u8; 16384]).unwrap();
        assert_eq!(read_gpt(path.to_str().unwrap()).unwrap_err(), "no GPT");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Runs a tool and fails the test with its output when it fails.
    fn run_tool(program: &str, args: &[&str]) {
        let output = std::process::Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} (install gdisk and cryptsetup-bin): {e}"));
        assert!(output.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }

    #[test]
    fn read_gpt_of_sgdisk_image() {
        let wanted = WantedUuids::from_root_hash(&gpt::tests::example_root_hash());
        let dir = std::env::temp_dir().join(format!("applbuild-init-sgdisk-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("disk.img");
        File::create(&path).unwrap().set_len(64 << 20).unwrap();
        let image = path.to_str().unwrap();
        let root_uuid = wanted.root.to_string();
        let verity_uuid = wanted.verity.to_string();
        let sig_uuid = "0b6e1e6c-7b55-4a39-9c0e-3a1f0e4d2a11";
        run_tool(
            "sgdisk",
            &[
                "--new=1:2048:+8M",
                "--typecode=1:c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
                "--new=2:0:+32M",
                &format!("--typecode=2:{}", gpt::ROOT_X86_64),
                &format!("--partition-guid=2:{root_uuid}"),
                "--new=3:0:+4M",
                &format!("--typecode=3:{}", gpt::ROOT_VERITY_X86_64),
                &format!("--partition-guid=3:{verity_uuid}"),
                "--new=4:0:+16K",
                &format!("--typecode=4:{}", gpt::ROOT_VERITY_SIG_X86_64),
                &format!("--partition-guid=4:{sig_uuid}"),
                image,
            ],
        );

        let (header, entries) = read_gpt(image).unwrap();
        assert_eq!(header.sector_size, 512);
        assert_eq!(header.entry_count, 128);
        assert_eq!(entries.len(), 4);
        let layout = gpt::find_verity_layout(&entries, &wanted).unwrap().unwrap();
        assert_eq!(layout.root.number, 2);
        assert_eq!(layout.root.first_lba, 2048 + 8 * 2048);
        assert_eq!(layout.root.sectors(), 32 * 2048);
        assert_eq!(layout.verity.number, 3);
        assert_eq!(layout.verity.sectors(), 4 * 2048);
        assert_eq!(layout.signatures.len(), 1);
        assert_eq!(layout.signatures[0].unique_guid.to_string(), sig_uuid);

        // Another root hash must not select this disk.
        let other = WantedUuids::from_root_hash(&[0x42; 32]);
        assert_eq!(gpt::find_verity_layout(&entries, &other), Ok(None));

        // A flipped byte in the entry array must fail its CRC.
        let mut bytes = fs::read(&path).unwrap();
        bytes[2 * 512 + 128 + 20] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let error = read_gpt(image).unwrap_err();
        assert!(error.contains("entry array CRC32 mismatch"), "{error}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
