//! The boot steps, in order, from the early mounts to `execv("/sbin/init")`.

use std::convert::Infallible;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::time::Duration;

use crate::cmdline::{self, BootParams, RootHash};
use crate::disk::{self, BootDisk};
use crate::dm::{self, VerityTable};
use crate::sig::{self, SignatureRecord};
use crate::sys::{self, NodeKind};
use crate::verity_sb::{self, Superblock};
use crate::{errno, ipe, say, Failure};

const POLICY_FILE: &str = "/policy.p7s";
const NEW_ROOT: &str = "/newroot";
const DM_NAME: &str = "root";
const DM_NODE: &str = "/dev/mapper/root";
const DM_MISC_DEV: &str = "/sys/class/misc/device-mapper/dev";
/// Most of a root-verity-sig partition that is read. systemd-repart assumes 16 KiB;
/// bytes past this limit are not checked.
const MAX_SIGNATURE_PARTITION_READ: u64 = 1 << 20;

struct EarlyMount {
    fstype: &'static str,
    target: &'static str,
    flags: libc::c_ulong,
    data: Option<&'static str>,
}

/// The kernel filesystems the init needs. /dev, /proc, /sys and /run are moved into
/// the new root at the end; securityfs moves along with /sys.
const EARLY_MOUNTS: [EarlyMount; 5] = [
    EarlyMount { fstype: "devtmpfs", target: "/dev", flags: libc::MS_NOSUID, data: Some("mode=0755") },
    EarlyMount { fstype: "proc", target: "/proc", flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, data: None },
    EarlyMount { fstype: "sysfs", target: "/sys", flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, data: None },
    EarlyMount {
        fstype: "securityfs",
        target: "/sys/kernel/security",
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: None,
    },
    EarlyMount { fstype: "tmpfs", target: "/run", flags: libc::MS_NOSUID | libc::MS_NODEV, data: Some("mode=0755") },
];

const MOVED_MOUNTS: [&str; 4] = ["/dev", "/proc", "/sys", "/run"];

/// Runs every step. Returns only on failure, because success ends in execv.
pub fn run() -> Result<Infallible, Failure> {
    mount_early_filesystems()?;
    attach_console();

    let params = read_cmdline()?;
    say(&format!(
        "waiting up to {} s for root PARTUUID {} and root-verity PARTUUID {}",
        params.timeout_secs, params.uuids.root, params.uuids.verity
    ));
    let boot_disk = disk::wait_for_boot_disk(&params.uuids, Duration::from_secs(params.timeout_secs.into()))?;
    say(&format!(
        "found /dev/{}: root {}, root-verity {}",
        boot_disk.disk.name, boot_disk.root.device.name, boot_disk.verity.device.name
    ));

    let signature = read_signature(&boot_disk, &params.root_hash)?;
    let superblock = read_superblock(&boot_disk)?;
    let (major, minor) = open_verity_device(&boot_disk, &superblock, &signature, &params.root_hash)?;
    say(&format!("the kernel accepted the root hash signature; dm-verity device {DM_NAME} is {major}:{minor}"));

    mount_root(major, minor)?;
    ipe::load_and_activate(POLICY_FILE, &params.policy_name)?;
    say(&format!("activated IPE policy {}", params.policy_name));

    say(&format!("switching to the verified root {}", params.root_hash.short()));
    switch_root()
}

fn mount_early_filesystems() -> Result<(), Failure> {
    for mount in &EARLY_MOUNTS {
        sys::mount(mount.fstype, mount.target, Some(mount.fstype), mount.flags, mount.data).map_err(|e| {
            Failure::new(format!("cannot mount {} on {}", mount.fstype, mount.target), errno::describe(&e))
        })?;
    }
    Ok(())
}

/// Opens /dev/console as standard input, output and error when the kernel could not
/// (it does so before starting /init only if the initramfs has /dev/console).
fn attach_console() {
    if (0..=2).all(sys::fd_is_open) {
        return;
    }
    if let Ok(console) = OpenOptions::new().read(true).write(true).open("/dev/console") {
        // Nothing can report this failure: without a console there is no output.
        let _ = sys::attach_stdio(&console);
    }
}

fn read_cmdline() -> Result<BootParams, Failure> {
    let text = fs::read_to_string("/proc/cmdline")
        .map_err(|e| Failure::new("cannot read the kernel command line", format!("/proc/cmdline: {}", errno::describe(&e))))?;
    cmdline::parse(&text).map_err(|detail| Failure::new("invalid kernel command line", detail))
}

/// Returns the record of the first root-verity-sig partition whose `rootHash` equals
/// the command line root hash. A disk may carry one per release (A/B updates).
fn read_signature(boot_disk: &BootDisk, root_hash: &RootHash) -> Result<SignatureRecord, Failure> {
    let mut rejected = Vec::new();
    for partition in &boot_disk.signatures {
        let len = partition.size_bytes.min(MAX_SIGNATURE_PARTITION_READ) as usize;
        let data = disk::read_device(&partition.device.node, 0, len)
            .map_err(|detail| Failure::new("cannot read the root-verity-sig partition", detail))?;
        match sig::parse_partition(&data) {
            Ok(record) if record.root_hash == root_hash.hex => return Ok(record),
            Ok(record) => rejected.push(format!("{} has rootHash {}", partition.device.name, shorten(&record.root_hash, 64))),
            Err(e) => rejected.push(format!("{}: {e}", partition.device.name)),
        }
    }
    Err(Failure::new(
        "no root-verity-sig partition matches roothash",
        format!("roothash={}, {}", root_hash.hex, rejected.join("; ")),
    ))
}

fn read_superblock(boot_disk: &BootDisk) -> Result<Superblock, Failure> {
    let verity = &boot_disk.verity;
    let what = || format!("invalid verity superblock on {}", verity.device.node);
    let block = disk::read_device(&verity.device.node, 0, verity_sb::SIZE).map_err(|detail| Failure::new(what(), detail))?;
    let superblock = verity_sb::parse(&block).map_err(|detail| Failure::new(what(), detail))?;
    superblock
        .check_fits(boot_disk.root.size_bytes, verity.size_bytes)
        .map_err(|detail| Failure::new(what(), detail))?;
    Ok(superblock)
}

/// Creates the dm-verity device `root` with the signature in a `user` key, and returns
/// its device number. The kernel verifies the signature while it loads the table.
fn open_verity_device(
    boot_disk: &BootDisk,
    superblock: &Superblock,
    signature: &SignatureRecord,
    root_hash: &RootHash,
) -> Result<(u32, u32), Failure> {
    let control = open_dm_control()?;
    dm::check_version(&control).map_err(dm_failure)?;

    let key_description = format!("applbuild:root-{}", root_hash.hex.get(..16).unwrap_or(&root_hash.hex));
    let table = VerityTable {
        data_dev: (boot_disk.root.device.major, boot_disk.root.device.minor),
        hash_dev: (boot_disk.verity.device.major, boot_disk.verity.device.minor),
        data_block_size: superblock.data_block_size,
        hash_block_size: superblock.hash_block_size,
        data_blocks: superblock.data_blocks,
        hash_start_block: superblock.hash_start_block(),
        algorithm: superblock.algorithm.clone(),
        root_hash_hex: root_hash.hex.clone(),
        salt_hex: superblock.salt_hex(),
        signature_key_description: key_description.clone(),
    };
    let sectors = table
        .sectors()
        .ok_or_else(|| Failure::new("invalid verity superblock", "the data size overflows"))?;

    // The kernel looks the key up in the keyrings of the thread that loads the table.
    let key = sys::add_user_key(&key_description, &signature.signature).map_err(|e| {
        Failure::new("cannot add the root hash signature key", format!("add_key user {key_description}: {}", errno::describe(&e)))
    })?;
    let loaded = dm::create_device(&control, DM_NAME)
        .and_then(|_| dm::load_table(&control, DM_NAME, "verity", sectors, &table.params()));
    let unlinked = sys::unlink_thread_key(key);
    loaded.map_err(dm_failure)?;
    unlinked.map_err(|e| {
        Failure::new("cannot unlink the root hash signature key", format!("keyctl unlink {key_description}: {}", errno::describe(&e)))
    })?;

    dm::resume(&control, DM_NAME).map_err(dm_failure)
}

fn open_dm_control() -> Result<File, Failure> {
    let what = "device-mapper is not available";
    let (major, minor) = disk::read_dev_number(DM_MISC_DEV).map_err(|detail| {
        Failure::new(what, format!("{detail} (the kernel needs CONFIG_BLK_DEV_DM=y; this init loads no modules)"))
    })?;
    match fs::create_dir("/dev/mapper") {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Failure::new(what, format!("cannot create /dev/mapper: {}", errno::describe(&e)))),
    }
    disk::ensure_node(dm::CONTROL_PATH, NodeKind::Char, major, minor).map_err(|detail| Failure::new(what, detail))?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(dm::CONTROL_PATH)
        .map_err(|e| Failure::new(what, format!("cannot open {}: {}", dm::CONTROL_PATH, errno::describe(&e))))
}

fn dm_failure(failure: dm::DmError) -> Failure {
    let hint = match (failure.command, failure.error.raw_os_error()) {
        ("DM_TABLE_LOAD", Some(libc::EKEYREJECTED)) => {
            " (the signature does not match the root hash, or its signer is not trusted)"
        }
        ("DM_TABLE_LOAD", Some(libc::ENOKEY)) => {
            " (no trusted key for the signer in the kernel keyrings, or the signature key was not found)"
        }
        ("DM_TABLE_LOAD", Some(libc::EBADMSG)) => " (the signature is not a valid detached PKCS#7 message)",
        ("DM_TABLE_LOAD", Some(libc::E2BIG)) => " (the root-verity partition is too small for the hash tree)",
        ("DM_TABLE_LOAD", Some(libc::EINVAL)) => {
            " (the kernel rejected the verity table: the kernel log names the reason; \
             CONFIG_DM_VERITY and CONFIG_DM_VERITY_VERIFY_ROOTHASH_SIG must be built in)"
        }
        _ => "",
    };
    Failure::new(
        format!("device-mapper {} failed for {DM_NAME}", failure.command),
        format!("{}{hint}", errno::describe(&failure.error)),
    )
}

fn mount_root(major: u32, minor: u32) -> Result<(), Failure> {
    disk::ensure_node(DM_NODE, NodeKind::Block, major, minor)
        .map_err(|detail| Failure::new("cannot create the root device node", detail))?;
    sys::mount(DM_NODE, NEW_ROOT, Some("ext4"), libc::MS_RDONLY, None).map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::EIO) => " (dm-verity rejected a block: the root partition does not match the root hash)",
            Some(libc::EINVAL) => " (the device does not hold a valid ext4 filesystem)",
            Some(libc::ENODEV) => " (the kernel has no ext4 support)",
            _ => "",
        };
        Failure::new(format!("cannot mount {DM_NODE} (ext4, read-only) on {NEW_ROOT}"), format!("{}{hint}", errno::describe(&e)))
    })
}

/// Moves the kernel filesystems into the new root, makes it `/`, and executes its
/// `/sbin/init`. Creates nothing in the new root, which is read-only.
fn switch_root() -> Result<Infallible, Failure> {
    for mount in MOVED_MOUNTS {
        let target = format!("{NEW_ROOT}{mount}");
        let is_dir = fs::symlink_metadata(&target).map(|m| m.is_dir()).unwrap_or(false);
        if !is_dir {
            return Err(Failure::new(
                "cannot switch to the verified root",
                format!("{mount} is not a directory in the root filesystem, so the {mount} mount cannot move there"),
            ));
        }
    }
    for mount in MOVED_MOUNTS {
        let target = format!("{NEW_ROOT}{mount}");
        sys::mount(mount, &target, None, libc::MS_MOVE, None)
            .map_err(|e| Failure::new(format!("cannot move {mount} to {target}"), errno::describe(&e)))?;
    }
    std::env::set_current_dir(NEW_ROOT)
        .map_err(|e| Failure::new(format!("cannot change directory to {NEW_ROOT}"), errno::describe(&e)))?;
    sys::mount(".", "/", None, libc::MS_MOVE, None)
        .map_err(|e| Failure::new(format!("cannot move {NEW_ROOT} to /"), errno::describe(&e)))?;
    std::os::unix::fs::chroot(".").map_err(|e| Failure::new("chroot to the verified root failed", errno::describe(&e)))?;
    std::env::set_current_dir("/").map_err(|e| Failure::new("cannot change directory to /", errno::describe(&e)))?;

    let error = sys::execv(c"/sbin/init");
    let hint = match error.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => " (IPE denied execution, or the file is not executable)",
        Some(libc::ENOENT) => " (the root filesystem has no /sbin/init)",
        _ => "",
    };
    Err(Failure::new("cannot execute /sbin/init", format!("{}{hint}", errno::describe(&error))))
}

/// Cuts `text` to `max` characters for a console line, marking the cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}
