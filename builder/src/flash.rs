//! `applbuild flash IMAGE DEVICE`: writes a disk image to a block device,
//! only the blocks its bmap file maps, then reads them back.
//!
//! # Steps
//!
//! 1. Load the image's GPT and its block map (`disk.bmap` beside
//!    `disk.raw`, see [`crate::bmap`]); without one, `--no-bmap` maps every
//!    block.
//! 2. Refuse a target that is not a block device, unless `--force-file`
//!    is given and it is a regular file. Refuse a block device that holds
//!    the running system's root file system, is mounted (itself or a
//!    partition), is used as swap or held by device-mapper or md
//!    (`holders` in sysfs). Refuse logical sectors other than 512 bytes and
//!    a device smaller than the image. All refusals happen before the
//!    target is opened for writing.
//! 3. Ask for confirmation on the terminal unless `--yes`.
//! 4. Open the device with `O_EXCL`, so the kernel refuses while it is
//!    mounted or opened exclusively elsewhere, and write the mapped ranges.
//!    On a larger target the GPT is moved as `sgdisk -e` does
//!    ([`crate::disk::relocate`]): the MBR, primary header and backup table
//!    are written for the target's size, and the image's backup table
//!    sectors are written as zeros instead. Then fsync.
//! 5. Read every written range back (with `O_DIRECT` on block devices, so
//!    the page cache cannot serve the reads) and compare its SHA-256 with the bmap's,
//!    or with the bytes written where the GPT was moved; then read and check
//!    the target's GPT.
//!
//! Before step 3, every mapped range of the image is hashed and compared
//! with the bmap, so an image and a bmap that do not belong together are
//! rejected before anything is written. The ranges are checked again while
//! they are written, which catches an image changed during the flash.

use crate::bmap::{self, Bmap};
use crate::disk::{self, GptError, Layout, SECTOR_SIZE};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, IsTerminal, Write};
use std::ops::Range;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;
use thiserror::Error;

/// Bytes written or read per I/O call.
const CHUNK: usize = 4 << 20;
/// Range size when `--no-bmap` maps the whole image, so that a read-back
/// mismatch names a small area.
const NO_BMAP_RANGE: u64 = 16 << 20;
/// Buffer alignment for `O_DIRECT` reads: a page, a multiple of every
/// logical block size.
const DIRECT_ALIGN: usize = 4096;
/// Bytes of the backup entry array and header at the end of a GPT disk.
const BACKUP_TABLE_BYTES: u64 = 33 * SECTOR_SIZE;
/// Nesting limit when following device-mapper slaves.
const MAX_STACK_DEPTH: usize = 16;

/// Errors of `applbuild flash`.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FlashError {
    /// The target is not safe or not possible to write; nothing was written.
    #[error("refusing to write {target}: {reason}")]
    Refused {
        /// The target path.
        target: PathBuf,
        /// Why, with the value that decided it.
        reason: String,
        /// How to proceed, if there is a way.
        hint: Option<String>,
    },

    /// The image or bmap given cannot be flashed.
    #[error("{message}")]
    BadInput {
        /// Description of the problem, naming the file.
        message: String,
        /// How to fix it.
        hint: Option<String>,
    },

    /// The bmap file is invalid.
    #[error(transparent)]
    Bmap(#[from] bmap::BmapError),

    /// An I/O call failed.
    #[error("failed to {action} {path}: {source}")]
    Io {
        /// The action that failed.
        action: &'static str,
        /// The file or device.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// Before writing: a range of the image does not match the bmap's
    /// checksum; nothing was written.
    #[error("the image {image} and the bmap {bmap} do not match: the image's bytes {start}..{end} (range {index} of {total}, the first that differs) do not have the bmap's checksum; one of the two is the wrong file, or the image changed after its bmap was made. Nothing was written to the target")]
    ImageBmapMismatch {
        /// The image path.
        image: PathBuf,
        /// The bmap path.
        bmap: PathBuf,
        /// Start of the first bad range in bytes.
        start: u64,
        /// End of the first bad range in bytes (exclusive).
        end: u64,
        /// Number of the first bad range, counting from 1.
        index: usize,
        /// Number of ranges in the bmap.
        total: usize,
    },

    /// While writing: the image bytes of a range no longer match the bmap's
    /// checksum, although they did in the check before writing.
    #[error("{image}: bytes {start}..{end} no longer match the bmap checksum; the image changed while it was being written, so the target now holds a damaged image")]
    ImageMismatch {
        /// The image path.
        image: PathBuf,
        /// Start of the range in bytes.
        start: u64,
        /// End of the range in bytes (exclusive).
        end: u64,
    },

    /// A range read back from the target differs from what was written.
    #[error("read-back of {target} failed: bytes {start}..{end} differ from what was written ({bad} of {total} ranges bad, the first at byte offset {start}); the device is faulty or was written by something else meanwhile")]
    ReadBack {
        /// The target path.
        target: PathBuf,
        /// Start of the first bad range in bytes.
        start: u64,
        /// End of the first bad range in bytes (exclusive).
        end: u64,
        /// Number of bad ranges.
        bad: usize,
        /// Number of ranges checked.
        total: usize,
    },

    /// The GPT read back from the target is invalid or not the expected one.
    #[error("the partition table read back from {target} is wrong: {reason}")]
    TableReadBack {
        /// The target path.
        target: PathBuf,
        /// What differs.
        reason: String,
    },
}

impl FlashError {
    /// 2 for refused targets and bad input, 1 for failures while writing or verifying.
    pub fn exit_code(&self) -> i32 {
        match self {
            FlashError::Refused { .. } | FlashError::BadInput { .. } | FlashError::ImageBmapMismatch { .. } => 2,
            FlashError::Bmap(error) => error.exit_code(),
            _ => 1,
        }
    }

    /// Returns a fix, where one is known.
    pub fn hint(&self) -> Option<String> {
        match self {
            FlashError::Refused { hint, .. } | FlashError::BadInput { hint, .. } => hint.clone(),
            FlashError::ImageBmapMismatch { .. } => Some("flash the disk.raw together with the disk.bmap written beside it by the same build (--bmap FILE), or write every block with --no-bmap".into()),
            FlashError::ReadBack { .. } => Some("flash again; if a range fails again, replace the device".into()),
            _ => None,
        }
    }
}

/// Options of `applbuild flash`.
#[derive(Debug, Clone)]
pub struct FlashOptions {
    /// The disk image (`disk.raw`).
    pub image: PathBuf,
    /// The block device, or a regular file with `force_file`.
    pub target: PathBuf,
    /// The bmap file; default: the image path with extension `.bmap`.
    pub bmap: Option<PathBuf>,
    /// Write every block of the image; no bmap is read.
    pub no_bmap: bool,
    /// Allow a regular file as target (created when missing).
    pub force_file: bool,
    /// Do not ask for confirmation.
    pub yes: bool,
}

/// Summary of a finished flash, printed as JSON with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct FlashSummary {
    pub image: PathBuf,
    pub target: PathBuf,
    pub image_size: u64,
    pub target_size: u64,
    /// Bytes written, including the moved GPT.
    pub written_bytes: u64,
    /// Ranges written and read back.
    pub ranges: usize,
    /// Whether the backup GPT was moved to the end of a larger target.
    pub relocated_gpt: bool,
    pub seconds: f64,
}

/// Host paths the target checks read; tests point them at fixtures.
#[derive(Debug, Clone)]
pub struct HostPaths {
    /// sysfs mount, normally `/sys`.
    pub sys: PathBuf,
    /// Normally `/proc/self/mountinfo`.
    pub mountinfo: PathBuf,
    /// Normally `/proc/swaps`.
    pub swaps: PathBuf,
    /// The running system's root directory, normally `/`.
    pub root: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths { sys: "/sys".into(), mountinfo: "/proc/self/mountinfo".into(), swaps: "/proc/swaps".into(), root: "/".into() }
    }
}

/// A block device number as major and minor.
pub type DevNumber = (u32, u32);

/// Splits a Linux `dev_t` into major and minor, as glibc's `gnu_dev_major`
/// and `gnu_dev_minor` do.
pub fn dev_number(rdev: u64) -> DevNumber {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    // Both fit: the formula yields at most 32 significant bits each.
    (major as u32, minor as u32)
}

/// The target as inspected before writing.
enum Target {
    Block(BlockDevice),
    /// A regular file; `None` size when it does not exist yet.
    File { size: Option<u64> },
}

/// A block device and its sysfs attributes.
struct BlockDevice {
    /// Kernel name, e.g. `sda` or `loop0`.
    name: String,
    /// The device and its partitions, with their numbers.
    members: Vec<(String, DevNumber)>,
    /// Name of the whole disk (the device itself or its parent).
    whole_disk: String,
    /// Canonical sysfs folder of the device.
    sysfs: PathBuf,
}

/// Flashes `options.image` to `options.target`.
///
/// # Errors
///
/// [`FlashError::Refused`] and [`FlashError::BadInput`] before anything is
/// written; I/O, mismatch and read-back errors after.
pub fn flash(options: &FlashOptions) -> Result<FlashSummary, crate::error::Error> {
    Ok(flash_with(options, &HostPaths::default())?)
}

/// [`flash`] with the host paths given.
pub fn flash_with(options: &FlashOptions, host: &HostPaths) -> Result<FlashSummary, FlashError> {
    let started = Instant::now();
    let image = &options.image;
    let image_size = image_size(image)?;
    let layout = disk::read_layout(image).map_err(|error| FlashError::BadInput {
        message: format!("{}: not a GPT disk image that applbuild can flash: {error}", image.display()),
        hint: Some("give the disk.raw of an applbuild build".into()),
    })?;
    let bmap = load_bmap(options, image_size)?;

    let target = inspect_target(options, image, host)?;
    if let Target::Block(device) = &target {
        check_block_device(&options.target, device, host, image_size)?;
    }
    if let Some(loaded) = &bmap {
        check_image_ranges(image, loaded)?;
    }
    if !options.yes {
        confirm(options, &target, host, image_size, bmap.as_ref().map(|loaded| &loaded.bmap))?;
    }

    let file = open_target(&options.target, &target, image_size)?;
    let target_size = file_size(&file, &options.target)?;
    let overlays = gpt_overlays(image, &layout, image_size, target_size, &options.target)?;
    let mut segments = match bmap.as_ref().map(|loaded| &loaded.bmap) {
        Some(bmap) => bmap.ranges.iter().map(|range| Segment { range: bmap.bytes_of(range), expected: Some(range.sha256), written: [0; 32] }).collect(),
        None => whole_image_segments(image_size),
    };
    add_uncovered(&mut segments, &overlays);
    tracing::info!(image = %image.display(), target = %options.target.display(), ranges = segments.len(), bytes = segments.iter().map(|s| s.range.end - s.range.start).sum::<u64>(), relocate_gpt = !overlays.is_empty(), "flash: writing");

    let written_bytes = write_segments(image, image_size, &file, &options.target, &mut segments, &overlays)?;
    drop(file);
    read_back(&options.target, matches!(target, Target::Block(_)), &segments)?;
    check_table(&options.target, &layout, target_size)?;

    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(seconds, written_bytes, "flash: wrote and verified {}", options.target.display());
    Ok(FlashSummary { image: image.clone(), target: options.target.clone(), image_size, target_size, written_bytes, ranges: segments.len(), relocated_gpt: !overlays.is_empty(), seconds })
}

fn image_size(image: &Path) -> Result<u64, FlashError> {
    let metadata = std::fs::metadata(image).map_err(|source| FlashError::BadInput {
        message: format!("cannot read the image {}: {source}", image.display()),
        hint: Some("give the disk.raw of a build, e.g. out/<board>/<release>/disk.raw".into()),
    })?;
    if !metadata.is_file() {
        return Err(FlashError::BadInput { message: format!("the image {} is not a regular file", image.display()), hint: None });
    }
    if !metadata.len().is_multiple_of(SECTOR_SIZE) {
        return Err(FlashError::BadInput { message: format!("the image {} is {} bytes, not a whole number of 512-byte sectors", image.display(), metadata.len()), hint: None });
    }
    Ok(metadata.len())
}

/// A bmap and the file it was read from.
struct LoadedBmap {
    bmap: Bmap,
    path: PathBuf,
}

/// Loads the bmap (`--bmap`, or the image path with extension `.bmap`),
/// or returns `None` for `--no-bmap`.
fn load_bmap(options: &FlashOptions, image_size: u64) -> Result<Option<LoadedBmap>, FlashError> {
    if options.no_bmap {
        return Ok(None);
    }
    let path = options.bmap.clone().unwrap_or_else(|| options.image.with_extension("bmap"));
    if !path.is_file() {
        let message = match (&options.bmap, path.exists()) {
            (None, _) => format!("no bmap file {} beside the image {}", path.display(), options.image.display()),
            (Some(_), false) => format!("the bmap file {} given with --bmap does not exist", path.display()),
            (Some(_), true) => format!("the bmap file {} given with --bmap is not a regular file", path.display()),
        };
        return Err(FlashError::BadInput { message, hint: Some("give the disk.bmap of the same build as the image with --bmap FILE, or write every block with --no-bmap (slower)".into()) });
    }
    let bmap = Bmap::read(&path)?;
    if bmap.image_size != image_size {
        return Err(FlashError::BadInput {
            message: format!("{} is for an image of {} bytes, but {} has {image_size} bytes", path.display(), bmap.image_size, options.image.display()),
            hint: Some("use the disk.bmap of the same build as the image".into()),
        });
    }
    Ok(Some(LoadedBmap { bmap, path }))
}

/// Hashes every mapped range of the image and compares it with the bmap
/// before the target is opened, so an image and a bmap of different builds
/// leave the target untouched.
fn check_image_ranges(image: &Path, loaded: &LoadedBmap) -> Result<(), FlashError> {
    let LoadedBmap { bmap, path } = loaded;
    let file = File::open(image).map_err(|source| FlashError::Io { action: "open", path: image.to_owned(), source })?;
    let progress = crate::progress::bytes("check image", bmap.mapped_bytes());
    let mut buffer = vec![0u8; CHUNK];
    for (index, range) in bmap.ranges.iter().enumerate() {
        let bytes = bmap.bytes_of(range);
        let digest = bmap::sha256_range(&file, bytes.clone(), &mut buffer).map_err(|source| FlashError::Io { action: "read", path: image.to_owned(), source })?;
        if digest != range.sha256 {
            progress.abandon();
            return Err(FlashError::ImageBmapMismatch { image: image.to_owned(), bmap: path.clone(), start: bytes.start, end: bytes.end, index: index + 1, total: bmap.ranges.len() });
        }
        progress.inc(bytes.end - bytes.start);
    }
    progress.finish_and_clear();
    Ok(())
}

/// Decides what kind of target `options.target` is and refuses the kinds
/// that are never written.
fn inspect_target(options: &FlashOptions, image: &Path, host: &HostPaths) -> Result<Target, FlashError> {
    let path = &options.target;
    let refused = |reason: String, hint: Option<&str>| FlashError::Refused { target: path.clone(), reason, hint: hint.map(str::to_owned) };
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && options.force_file => {
            let parent = path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(refused(format!("its folder {} does not exist", parent.display()), Some("create the folder first, or name a file in an existing folder")));
            }
            return Ok(Target::File { size: None });
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(refused("it does not exist".into(), Some("name a block device such as /dev/sdX, or pass --force-file to create an image file"))),
        Err(source) => return Err(FlashError::Io { action: "inspect", path: path.clone(), source }),
    };
    let file_type = metadata.file_type();
    if file_type.is_block_device() {
        return block_device(path, dev_number(metadata.rdev()), host).map(Target::Block);
    }
    if file_type.is_dir() {
        return Err(refused("it is a directory, not a block device".into(), Some("name a block device such as /dev/sdX, or with --force-file a file path such as DIR/disk.img")));
    }
    if !file_type.is_file() {
        return Err(refused("it is neither a block device nor a regular file".into(), None));
    }
    if !options.force_file {
        return Err(refused("it is a regular file, not a block device".into(), Some("pass --force-file to write the image into this file")));
    }
    if let Ok(image_metadata) = std::fs::metadata(image) {
        if image_metadata.dev() == metadata.dev() && image_metadata.ino() == metadata.ino() {
            return Err(refused("it is the image itself".into(), None));
        }
    }
    Ok(Target::File { size: Some(metadata.len()) })
}

fn block_device(path: &Path, dev: DevNumber, host: &HostPaths) -> Result<BlockDevice, FlashError> {
    let link = host.sys.join(format!("dev/block/{}:{}", dev.0, dev.1));
    let sysfs = link.canonicalize().map_err(|source| FlashError::Io { action: "find the sysfs entry of", path: path.to_owned(), source })?;
    let name = file_name(&sysfs);
    let disk_dir = whole_disk_dir(&sysfs);
    let mut members = vec![(name.clone(), dev)];
    if disk_dir == sysfs {
        members.extend(partitions_of(&sysfs));
    }
    Ok(BlockDevice { name, members, whole_disk: file_name(&disk_dir), sysfs })
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Returns the folder of the whole disk: the parent of a partition.
fn whole_disk_dir(sysfs: &Path) -> PathBuf {
    match sysfs.parent() {
        Some(parent) if sysfs.join("partition").exists() => parent.to_path_buf(),
        _ => sysfs.to_path_buf(),
    }
}

/// Lists the partitions of the disk at `disk_dir` with their numbers.
fn partitions_of(disk_dir: &Path) -> Vec<(String, DevNumber)> {
    let Ok(entries) = std::fs::read_dir(disk_dir) else { return Vec::new() };
    let mut partitions: Vec<(String, DevNumber)> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|dir| dir.join("partition").exists())
        .filter_map(|dir| read_dev(&dir).map(|dev| (file_name(&dir), dev)))
        .collect();
    partitions.sort();
    partitions
}

/// Reads a sysfs `dev` file ("8:1").
fn read_dev(dir: &Path) -> Option<DevNumber> {
    parse_dev(std::fs::read_to_string(dir.join("dev")).ok()?.trim())
}

fn parse_dev(text: &str) -> Option<DevNumber> {
    let (major, minor) = text.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Refuses a block device that is in use or too small.
fn check_block_device(path: &Path, device: &BlockDevice, host: &HostPaths, image_size: u64) -> Result<(), FlashError> {
    let refused = |reason: String, hint: Option<String>| FlashError::Refused { target: path.to_owned(), reason, hint };
    let roots = root_disks(host);
    if roots.contains(&device.whole_disk) {
        return Err(refused(format!("disk {} holds the running system's root file system", device.whole_disk), Some("flash from another system, or to another disk".into())));
    }
    let numbers: Vec<DevNumber> = device.members.iter().map(|(_, dev)| *dev).collect();
    if let Some((source, mount_point)) = mounted(host, &numbers) {
        return Err(refused(format!("{source} is mounted on {mount_point}"), Some(format!("unmount it first: umount {mount_point}"))));
    }
    if let Some(swap) = swap_in_use(host, &numbers) {
        return Err(refused(format!("{swap} is in use as swap"), Some(format!("swapoff {swap}"))));
    }
    let holders = holders(&host.sys, device);
    if !holders.is_empty() {
        return Err(refused(format!("it is held by {} (device-mapper, md or another stacked device)", holders.join(", ")), Some("close or stop the holding devices first (dmsetup remove, cryptsetup close, mdadm --stop)".into())));
    }
    let sector = std::fs::read_to_string(device.sysfs.join("queue/logical_block_size")).or_else(|_| std::fs::read_to_string(whole_disk_dir(&device.sysfs).join("queue/logical_block_size")));
    if let Ok(sector) = sector {
        if sector.trim() != "512" {
            return Err(refused(format!("its logical sector size is {} bytes, but the image's GPT is laid out for 512-byte sectors", sector.trim()), None));
        }
    }
    let size = sysfs_size(&device.sysfs).unwrap_or(0);
    if size < image_size {
        return Err(refused(format!("it has {size} bytes, fewer than the image's {image_size} bytes"), Some("use a larger device".into())));
    }
    Ok(())
}

/// Size of a block device from sysfs (`size` counts 512-byte sectors).
fn sysfs_size(sysfs: &Path) -> Option<u64> {
    std::fs::read_to_string(sysfs.join("size")).ok()?.trim().parse::<u64>().ok()?.checked_mul(SECTOR_SIZE)
}

/// Names of the whole disks under the running system's root file system,
/// following device-mapper slaves down to the disks.
fn root_disks(host: &HostPaths) -> Vec<String> {
    let mut starts = Vec::new();
    if let Ok(metadata) = std::fs::metadata(&host.root) {
        starts.push(dev_number(metadata.dev()));
    }
    let mountinfo = std::fs::read_to_string(&host.mountinfo).unwrap_or_default();
    for mount in mountinfo.lines().filter_map(parse_mountinfo) {
        if mount.mount_point == "/" {
            starts.extend(mount.dev);
            if let Some(rdev) = device_number_of(&mount.source) {
                starts.push(rdev);
            }
        }
    }
    let mut disks = Vec::new();
    for dev in starts {
        if let Ok(dir) = host.sys.join(format!("dev/block/{}:{}", dev.0, dev.1)).canonicalize() {
            collect_disks(&host.sys, &dir, 0, &mut disks);
        }
    }
    if disks.is_empty() {
        tracing::warn!("failed to find the disk of the root file system; only the mount and holder checks apply");
    }
    disks
}

fn collect_disks(sys: &Path, dir: &Path, depth: usize, disks: &mut Vec<String>) {
    let slaves: Vec<PathBuf> = std::fs::read_dir(dir.join("slaves")).map(|entries| entries.flatten().map(|entry| entry.path()).collect()).unwrap_or_default();
    if slaves.is_empty() || depth >= MAX_STACK_DEPTH {
        let disk = file_name(&whole_disk_dir(dir));
        if !disks.contains(&disk) {
            disks.push(disk);
        }
        return;
    }
    for slave in slaves {
        if let Ok(slave_dir) = sys.join("class/block").join(file_name(&slave)).canonicalize() {
            collect_disks(sys, &slave_dir, depth + 1, disks);
        }
    }
}

/// Returns the `rdev` of `path` when it is a block device.
fn device_number_of(path: &str) -> Option<DevNumber> {
    let metadata = std::fs::metadata(path).ok()?;
    metadata.file_type().is_block_device().then(|| dev_number(metadata.rdev()))
}

/// The fields of a `/proc/self/mountinfo` line the checks use.
#[derive(Debug, PartialEq, Eq)]
struct Mount {
    dev: Option<DevNumber>,
    mount_point: String,
    source: String,
}

/// Parses a mountinfo line: field 3 is `major:minor`, field 5 the mount
/// point, and the field after the ` - ` separator and the type the source.
fn parse_mountinfo(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let fields: Vec<&str> = before.split(' ').collect();
    let source = after.split(' ').nth(1).unwrap_or("");
    Some(Mount { dev: parse_dev(fields.get(2)?), mount_point: unescape_octal(fields.get(4)?), source: unescape_octal(source) })
}

/// Undoes the `\040`-style escapes of mountinfo and /proc/swaps.
fn unescape_octal(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes.get(index + 1..index + 4).filter(|digits| bytes[index] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match octal {
            Some(digits) => {
                let value = digits.iter().fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
                out.push(value as u8);
                index += 4;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Returns the first mount whose device is one of `numbers`, as (source, mount point).
fn mounted(host: &HostPaths, numbers: &[DevNumber]) -> Option<(String, String)> {
    let mountinfo = std::fs::read_to_string(&host.mountinfo).unwrap_or_default();
    mountinfo.lines().filter_map(parse_mountinfo).find_map(|mount| {
        let by_number = mount.dev.is_some_and(|dev| numbers.contains(&dev));
        // Some file systems (btrfs) show an anonymous number; the source names the device.
        let by_source = mount.source.starts_with('/') && device_number_of(&mount.source).is_some_and(|dev| numbers.contains(&dev));
        (by_number || by_source).then_some((mount.source, mount.mount_point))
    })
}

/// Returns the first active swap area on one of `numbers`.
fn swap_in_use(host: &HostPaths, numbers: &[DevNumber]) -> Option<String> {
    let swaps = std::fs::read_to_string(&host.swaps).unwrap_or_default();
    swaps.lines().skip(1).filter_map(|line| line.split_whitespace().next()).map(unescape_octal).find(|name| device_number_of(name).is_some_and(|dev| numbers.contains(&dev)))
}

/// Holders of the device or its partitions, e.g. `dm-0 (held loop0p2)`.
fn holders(sys: &Path, device: &BlockDevice) -> Vec<String> {
    let mut found = Vec::new();
    for (name, _) in &device.members {
        let dir = sys.join("class/block").join(name).join("holders");
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let holder = entry.file_name().to_string_lossy().into_owned();
            let dm_name = std::fs::read_to_string(sys.join("class/block").join(&holder).join("dm/name")).map(|n| format!(" = {}", n.trim())).unwrap_or_default();
            found.push(format!("{holder}{dm_name} on {name}"));
        }
    }
    found.sort();
    found
}

/// Asks on the terminal; fails when standard input is not a terminal.
fn confirm(options: &FlashOptions, target: &Target, host: &HostPaths, image_size: u64, bmap: Option<&Bmap>) -> Result<(), FlashError> {
    let path = &options.target;
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(FlashError::Refused {
            target: path.clone(),
            reason: "standard input is not a terminal, so the write cannot be confirmed".into(),
            hint: Some("pass --yes to write without asking".into()),
        });
    }
    let description = match target {
        Target::Block(device) => format!("{} ({}, {})", path.display(), describe_device(&host.sys, device), human_size(sysfs_size(&device.sysfs).unwrap_or(0))),
        Target::File { size: Some(size) } => format!("{} (regular file, {})", path.display(), human_size(*size)),
        Target::File { size: None } => format!("{} (new regular file)", path.display()),
    };
    let mapped = bmap.map(|bmap| format!(", {} mapped", human_size(bmap.mapped_bytes()))).unwrap_or_default();
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "Write {} ({}{mapped}) to {description}?\nEverything on it is lost. Type \"yes\" to continue: ", options.image.display(), human_size(image_size));
    let _ = stderr.flush();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer).map_err(|source| FlashError::Io { action: "read the answer from", path: "standard input".into(), source })?;
    if answer.trim() != "yes" {
        return Err(FlashError::Refused { target: path.clone(), reason: format!("not confirmed (answer {:?}, expected \"yes\"); nothing was written", answer.trim()), hint: None });
    }
    Ok(())
}

/// Model and vendor from sysfs, or the backing file of a loop device.
fn describe_device(sys: &Path, device: &BlockDevice) -> String {
    let disk_dir = sys.join("class/block").join(&device.whole_disk);
    let read = |name: &str| std::fs::read_to_string(disk_dir.join(name)).map(|text| text.trim().to_owned()).unwrap_or_default();
    let backing = read("loop/backing_file");
    if !backing.is_empty() {
        return format!("loop device backed by {backing}");
    }
    let model = [read("device/vendor"), read("device/model")].into_iter().filter(|part| !part.is_empty()).collect::<Vec<_>>().join(" ");
    let kind = if device.name == device.whole_disk { String::new() } else { format!("partition of {}, ", device.whole_disk) };
    if model.is_empty() { format!("{kind}model unknown") } else { format!("{kind}{model}") }
}

/// Formats bytes with a binary unit, e.g. `512.0 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} bytes") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// Opens the target for writing: block devices with `O_EXCL`, files
/// created when missing and extended to the image size when shorter.
fn open_target(path: &Path, target: &Target, image_size: u64) -> Result<File, FlashError> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    match target {
        Target::Block(_) => {
            options.custom_flags(libc::O_EXCL);
        }
        Target::File { .. } => {
            options.create(true);
        }
    }
    let file = options.open(path).map_err(|source| match source.raw_os_error() {
        Some(libc::EBUSY) => FlashError::Refused { target: path.to_owned(), reason: "the kernel reports it busy (mounted, or opened exclusively by another program)".into(), hint: None },
        _ => FlashError::Io { action: "open", path: path.to_owned(), source },
    })?;
    if let Target::File { size } = target {
        if size.unwrap_or(0) < image_size {
            file.set_len(image_size).map_err(|source| FlashError::Io { action: "extend", path: path.to_owned(), source })?;
        }
    }
    Ok(file)
}

fn file_size(file: &File, path: &Path) -> Result<u64, FlashError> {
    use std::io::Seek;
    let mut handle = file;
    handle.seek(std::io::SeekFrom::End(0)).map_err(|source| FlashError::Io { action: "measure", path: path.to_owned(), source })
}

/// Bytes placed over the image's bytes, at target offsets.
struct Overlay {
    offset: u64,
    bytes: Vec<u8>,
}

impl Overlay {
    fn range(&self) -> Range<u64> {
        self.offset..self.offset + self.bytes.len() as u64
    }
}

/// Returns the writes that move the GPT to the end of a larger target: the new MBR,
/// primary header and entries, zeros over the image's backup table, and the
/// new backup table. Empty when the target has the image's size.
fn gpt_overlays(image: &Path, layout: &Layout, image_size: u64, target_size: u64, target: &Path) -> Result<Vec<Overlay>, FlashError> {
    if target_size == image_size {
        return Ok(Vec::new());
    }
    let moved = disk::relocate(layout, target_size).map_err(|error| FlashError::Refused { target: target.to_owned(), reason: format!("cannot move the GPT to its end: {error}"), hint: None })?;
    // Re-encoding must reproduce the image's own table, or moving it would
    // change more than its position.
    let original = disk::encode_table(layout);
    let file = File::open(image).map_err(|source| FlashError::Io { action: "open", path: image.to_owned(), source })?;
    let read = |offset: u64, len: usize| -> Result<Vec<u8>, FlashError> {
        let mut bytes = vec![0u8; len];
        file.read_exact_at(&mut bytes, offset).map_err(|source| FlashError::Io { action: "read", path: image.to_owned(), source })?;
        Ok(bytes)
    };
    if read(0, original.head.len())? != original.head || read(original.tail_offset, original.tail.len())? != original.tail {
        return Err(FlashError::BadInput {
            message: format!("{}: its GPT is not in the form applbuild writes (128 entries, generic MBR), so it cannot be moved to the end of the {target_size}-byte target", image.display()),
            hint: Some("flash to a target of exactly the image's size, then move the table with sgdisk -e".into()),
        });
    }
    let table = disk::encode_table(&moved);
    Ok(vec![
        Overlay { offset: 0, bytes: table.head },
        Overlay { offset: image_size - BACKUP_TABLE_BYTES, bytes: vec![0u8; BACKUP_TABLE_BYTES as usize] },
        Overlay { offset: table.tail_offset, bytes: table.tail },
    ])
}

/// One range to write and read back.
struct Segment {
    range: Range<u64>,
    /// The bmap's SHA-256 of the image bytes, when there is a bmap.
    expected: Option<[u8; 32]>,
    /// SHA-256 of the bytes written.
    written: [u8; 32],
}

fn whole_image_segments(image_size: u64) -> Vec<Segment> {
    (0..image_size.div_ceil(NO_BMAP_RANGE)).map(|index| Segment { range: index * NO_BMAP_RANGE..((index + 1) * NO_BMAP_RANGE).min(image_size), expected: None, written: [0; 32] }).collect()
}

/// Adds the parts of the overlays that no segment covers as segments of
/// their own, keeping the segments sorted.
fn add_uncovered(segments: &mut Vec<Segment>, overlays: &[Overlay]) {
    for overlay in overlays {
        let mut pieces = vec![overlay.range()];
        for segment in segments.iter() {
            pieces = pieces.into_iter().flat_map(|piece| subtract(piece, &segment.range)).collect();
        }
        segments.extend(pieces.into_iter().map(|range| Segment { range, expected: None, written: [0; 32] }));
    }
    segments.sort_by_key(|segment| segment.range.start);
}

/// `range` without `cut`: zero, one or two pieces.
fn subtract(range: Range<u64>, cut: &Range<u64>) -> Vec<Range<u64>> {
    if cut.end <= range.start || cut.start >= range.end {
        return vec![range];
    }
    [range.start..cut.start, cut.end..range.end].into_iter().filter(|piece| piece.start < piece.end).collect()
}

/// Writes every segment: image bytes (zeros past the image end) with the
/// overlays on top. Checks the image bytes against the bmap, records the
/// SHA-256 of what was written, then syncs. Returns the bytes written.
fn write_segments(image: &Path, image_size: u64, file: &File, target: &Path, segments: &mut [Segment], overlays: &[Overlay]) -> Result<u64, FlashError> {
    let source = File::open(image).map_err(|source| FlashError::Io { action: "open", path: image.to_owned(), source })?;
    let total: u64 = segments.iter().map(|segment| segment.range.end - segment.range.start).sum();
    let progress = crate::progress::bytes("flash", total);
    let mut buffer = vec![0u8; CHUNK];
    for segment in segments.iter_mut() {
        let mut image_hash = Sha256::new();
        let mut written_hash = Sha256::new();
        let mut offset = segment.range.start;
        while offset < segment.range.end {
            let len = (segment.range.end - offset).min(CHUNK as u64) as usize;
            let chunk = &mut buffer[..len];
            let from_image = image_size.saturating_sub(offset).min(len as u64) as usize;
            source.read_exact_at(&mut chunk[..from_image], offset).map_err(|source| FlashError::Io { action: "read", path: image.to_owned(), source })?;
            chunk[from_image..].fill(0);
            image_hash.update(&chunk[..from_image]);
            apply_overlays(chunk, offset, overlays);
            written_hash.update(&*chunk);
            file.write_all_at(chunk, offset).map_err(|source| FlashError::Io { action: "write", path: target.to_owned(), source })?;
            offset += len as u64;
            progress.inc(len as u64);
        }
        if segment.expected.is_some_and(|expected| <[u8; 32]>::from(image_hash.finalize()) != expected) {
            progress.abandon();
            return Err(FlashError::ImageMismatch { image: image.to_owned(), start: segment.range.start, end: segment.range.end });
        }
        segment.written = written_hash.finalize().into();
    }
    progress.set_message("syncing");
    file.sync_all().map_err(|source| FlashError::Io { action: "sync", path: target.to_owned(), source })?;
    progress.finish_and_clear();
    Ok(total)
}

/// Copies the parts of the overlays that fall into `chunk` (at `offset`).
fn apply_overlays(chunk: &mut [u8], offset: u64, overlays: &[Overlay]) {
    let chunk_end = offset + chunk.len() as u64;
    for overlay in overlays {
        let range = overlay.range();
        let start = range.start.max(offset);
        let end = range.end.min(chunk_end);
        if start < end {
            let (from, to) = ((start - overlay.offset) as usize, (end - overlay.offset) as usize);
            chunk[(start - offset) as usize..(end - offset) as usize].copy_from_slice(&overlay.bytes[from..to]);
        }
    }
}

/// Reads every segment back from the target and compares digests.
fn read_back(target: &Path, block_device: bool, segments: &[Segment]) -> Result<(), FlashError> {
    let mut options = OpenOptions::new();
    options.read(true);
    if block_device {
        options.custom_flags(libc::O_DIRECT);
    }
    let file = options.open(target).map_err(|source| FlashError::Io { action: "open for read-back", path: target.to_owned(), source })?;
    let total: u64 = segments.iter().map(|segment| segment.range.end - segment.range.start).sum();
    let progress = crate::progress::bytes("verify", total);
    let mut storage = vec![0u8; CHUNK + DIRECT_ALIGN];
    let align = storage.as_ptr().align_offset(DIRECT_ALIGN).min(DIRECT_ALIGN);
    let buffer = &mut storage[align..align + CHUNK];
    let bad: Vec<&Segment> = segments
        .iter()
        .map(|segment| {
            let digest = bmap::sha256_range(&file, segment.range.clone(), buffer);
            progress.inc(segment.range.end - segment.range.start);
            digest.map(|digest| (segment, digest))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| FlashError::Io { action: "read back", path: target.to_owned(), source })?
        .into_iter()
        .filter(|(segment, digest)| *digest != segment.written)
        .map(|(segment, _)| segment)
        .collect();
    progress.finish_and_clear();
    match bad.first() {
        Some(first) => Err(FlashError::ReadBack { target: target.to_owned(), start: first.range.start, end: first.range.end, bad: bad.len(), total: segments.len() }),
        None => Ok(()),
    }
}

/// Reads the target's GPT and compares it with the image's, moved to the
/// target's size.
fn check_table(target: &Path, layout: &Layout, target_size: u64) -> Result<(), FlashError> {
    let expected = disk::relocate(layout, target_size).map_err(|error: GptError| FlashError::TableReadBack { target: target.to_owned(), reason: error.to_string() })?;
    let found = disk::read_layout(target).map_err(|error| FlashError::TableReadBack { target: target.to_owned(), reason: error.to_string() })?;
    if found != expected {
        return Err(FlashError::TableReadBack {
            target: target.to_owned(),
            reason: format!("expected a disk of {} bytes with last usable LBA {} and {} partitions, found {} bytes, LBA {} and {} partitions", expected.disk_size, expected.last_usable_lba, expected.partitions.len(), found.disk_size, found.last_usable_lba, found.partitions.len()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_number_matches_glibc() {
        // makedev(8, 1) and makedev(259, 0x10001) as glibc encodes them:
        // minor bits 8 and up move to bit 20.
        assert_eq!(dev_number(0x801), (8, 1));
        assert_eq!(dev_number(0x1001_0301), (259, 0x10001));
    }

    #[test]
    fn mountinfo_lines_parse() {
        let line = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard";
        assert_eq!(parse_mountinfo(line), Some(Mount { dev: Some((254, 0)), mount_point: "/".into(), source: "/dev/vda".into() }));
        let spaced = "40 27 7:1 / /mnt/with\\040space rw - ext4 /dev/loop0p1 rw";
        assert_eq!(parse_mountinfo(spaced).map(|m| m.mount_point), Some("/mnt/with space".into()));
        assert_eq!(parse_mountinfo("garbage"), None);
    }

    #[test]
    fn subtract_leaves_the_uncovered_pieces() {
        assert_eq!(subtract(0..10, &(3..5)), vec![0..3, 5..10]);
        assert_eq!(subtract(0..10, &(0..10)), Vec::<Range<u64>>::new());
        assert_eq!(subtract(0..10, &(10..20)), vec![0..10]);
        assert_eq!(subtract(5..10, &(0..7)), vec![7..10]);
    }

    #[test]
    fn overlays_land_at_their_offsets() {
        let overlays = [Overlay { offset: 2, bytes: vec![1, 1, 1] }, Overlay { offset: 9, bytes: vec![2, 2] }];
        let mut chunk = [0u8; 6];
        apply_overlays(&mut chunk, 4, &overlays);
        assert_eq!(chunk, [1, 0, 0, 0, 0, 2]);
    }

    /// Builds a fake sysfs: `vda` with partition `vda2`, and `dm-0` on `vda2`.
    fn fake_sysfs(root: &Path) {
        let mk = |path: &str| std::fs::create_dir_all(root.join(path)).expect("mkdir");
        let write = |path: &str, text: &str| std::fs::write(root.join(path), text).expect("write");
        mk("devices/virtual/vda/vda2");
        mk("devices/virtual/dm-0/slaves");
        mk("devices/virtual/vda/holders");
        mk("devices/virtual/vda/vda2/holders");
        mk("dev/block");
        mk("class/block");
        write("devices/virtual/vda/dev", "254:0\n");
        write("devices/virtual/vda/vda2/dev", "254:2\n");
        write("devices/virtual/vda/vda2/partition", "2\n");
        write("devices/virtual/dm-0/dev", "253:0\n");
        write("devices/virtual/vda/vda2/holders/dm-0", "");
        let link = |from: &str, to: &str| std::os::unix::fs::symlink(root.join(to), root.join(from)).expect("symlink");
        link("dev/block/254:0", "devices/virtual/vda");
        link("dev/block/254:2", "devices/virtual/vda/vda2");
        link("dev/block/253:0", "devices/virtual/dm-0");
        link("class/block/vda", "devices/virtual/vda");
        link("class/block/vda2", "devices/virtual/vda/vda2");
        link("class/block/dm-0", "devices/virtual/dm-0");
        link("devices/virtual/dm-0/slaves/vda2", "devices/virtual/vda/vda2");
    }

    #[test]
    fn root_on_dm_resolves_to_disk() {
        let dir = tempfile::tempdir().expect("temp dir");
        fake_sysfs(dir.path());
        let mountinfo = dir.path().join("mountinfo");
        std::fs::write(&mountinfo, "27 1 253:0 / / rw - ext4 /dev/mapper/root rw\n").expect("write");
        // The root path is a folder of the test, so only mountinfo names 253:0.
        let host = HostPaths { sys: dir.path().to_owned(), mountinfo, swaps: dir.path().join("swaps"), root: dir.path().join("none") };
        assert_eq!(root_disks(&host), vec!["vda".to_owned()]);
    }

    #[test]
    fn whole_disk_lists_partitions_and_their_holders() {
        let dir = tempfile::tempdir().expect("temp dir");
        fake_sysfs(dir.path());
        let device = block_device(Path::new("/dev/vda"), (254, 0), &HostPaths { sys: dir.path().to_owned(), ..HostPaths::default() }).expect("device");
        assert_eq!(device.whole_disk, "vda");
        assert_eq!(device.members, vec![("vda".to_owned(), (254, 0)), ("vda2".to_owned(), (254, 2))]);
        assert_eq!(holders(dir.path(), &device), vec!["dm-0 on vda2".to_owned()]);
        let partition = block_device(Path::new("/dev/vda2"), (254, 2), &HostPaths { sys: dir.path().to_owned(), ..HostPaths::default() }).expect("partition");
        assert_eq!(partition.whole_disk, "vda");
        assert_eq!(partition.members.len(), 1);
    }

    #[test]
    fn read_back_names_the_first_bad_range() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("target");
        std::fs::write(&path, vec![7u8; 3 * 4096]).expect("write");
        let digest = |bytes: &[u8]| -> [u8; 32] { Sha256::digest(bytes).into() };
        let good = digest(&[7u8; 4096]);
        let segments: Vec<Segment> = (0..3).map(|i| Segment { range: i * 4096..(i + 1) * 4096, expected: None, written: good }).collect();
        read_back(&path, false, &segments).expect("unchanged target reads back");
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all_at(&[0], 4096 + 100).expect("corrupt");
        file.write_all_at(&[0], 2 * 4096).expect("corrupt");
        let error = read_back(&path, false, &segments).expect_err("corrupted");
        assert!(matches!(error, FlashError::ReadBack { start: 4096, end: 8192, bad: 2, total: 3, .. }), "{error}");
        assert!(error.to_string().contains("first at byte offset 4096"), "{error}");
    }
}
