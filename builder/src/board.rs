//! The board file: which kernel, disk layout, keys, IPE policy options and
//! QEMU settings one target uses, and which manifest fills its root
//! filesystem.
//!
//! [`SECTIONS`] declares every key with its type, default and help. Loading
//! checks types, values and referenced files, and reports the first problem
//! as a [`ConfigError`] at `file:line:col`. The manifest itself is only
//! checked to exist here; [`crate::manifest::load`] reads it.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::{
    self, ConfigError, DefaultValue, Document, ErrorKind, Item, Section, Setting, SettingKind,
    Table,
};
use crate::size::{Bytes, MIB};

/// The only kernel source supported so far: Debian's `linux-source-6.12`
/// package.
pub const KERNEL_SOURCE_DEBIAN_6_12: &str = "debian:linux-source-6.12";

/// Smallest EFI system partition accepted. A FAT volume with fewer than
/// 65,525 clusters is FAT12 or FAT16, not FAT32. With 512-byte clusters the
/// data area alone is about 32MiB, and the two FATs and the reserved sectors
/// add about 0.5MiB, so 40MiB leaves a margin.
pub const ESP_MIN_SIZE: Bytes = Bytes(40 * MIB);

/// Alignment of disk, partition and guest memory sizes. Partitions start on
/// 1MiB boundaries, and QEMU takes guest memory in MiB.
pub const SIZE_ALIGNMENT: u64 = MIB;

/// Maximum length of the board's part of the kernel command line. x86
/// kernels accept 2048 bytes including the final NUL (`COMMAND_LINE_SIZE`),
/// and the builder adds its own parameters to the board's.
/// NOTE: the 511 bytes left for the builder's parameters are an estimate.
pub const CMDLINE_MAX_LEN: usize = 1536;

const TOP: &[Setting] = &[
    Setting {
        key: "name",
        kind: SettingKind::String,
        default: DefaultValue::Required,
        help: "Board name. It names the output folder `out/<name>/<release>/`. It is not part of the kernel cache key, so boards with the same kernel inputs share one kernel. \
               1 to 64 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit.",
    },
    Setting {
        key: "arch",
        kind: SettingKind::Choice(&["x86_64"]),
        default: DefaultValue::Required,
        help: "CPU architecture of the target.",
    },
    Setting {
        key: "release",
        kind: SettingKind::Release,
        default: DefaultValue::Required,
        help: "Release number X.Y.Z, each part from 0 to 65535 without leading zeros. \
               It becomes the version of the release IPE policy.",
    },
    Setting {
        key: "manifest",
        kind: SettingKind::Path,
        default: DefaultValue::Required,
        help: "Manifest that describes the root filesystem, relative to this board file.",
    },
    Setting {
        key: "kernel",
        kind: SettingKind::Table,
        default: DefaultValue::Absent("all defaults"),
        help: "Kernel build settings.",
    },
    Setting {
        key: "disk",
        kind: SettingKind::Table,
        default: DefaultValue::Absent("all defaults"),
        help: "Disk image layout.",
    },
    Setting {
        key: "keys",
        kind: SettingKind::Table,
        default: DefaultValue::Absent("all defaults"),
        help: "Signing keys.",
    },
    Setting {
        key: "ipe",
        kind: SettingKind::Table,
        default: DefaultValue::Absent("all defaults"),
        help: "Options of the release IPE policy.",
    },
    Setting {
        key: "secure_boot",
        kind: SettingKind::Table,
        default: DefaultValue::Absent("all defaults"),
        help: "UEFI Secure Boot signing of the UKI.",
    },
    Setting {
        key: "qemu",
        kind: SettingKind::Table,
        default: DefaultValue::Absent("all defaults"),
        help: "Virtual machine used by `applbuild run`.",
    },
];

const KERNEL: &[Setting] = &[
    Setting {
        key: "source",
        kind: SettingKind::Choice(&[KERNEL_SOURCE_DEBIAN_6_12]),
        default: DefaultValue::Toml("\"debian:linux-source-6.12\""),
        help: "Kernel source tree. Only Debian's `linux-source-6.12` package is supported.",
    },
    Setting {
        key: "config",
        kind: SettingKind::PathList,
        default: DefaultValue::Required,
        help: "Kernel config fragments, relative to this board file. The builder starts from `make tinyconfig` \
               and merges them in order, so a later fragment overrides an earlier one. Each must be a readable file, \
               and at least one is required.",
    },
    Setting {
        key: "cmdline",
        kind: SettingKind::String,
        default: DefaultValue::Toml("\"console=ttyS0\""),
        help: "Kernel command line, stored in the UKI together with the parameters that the builder adds \
               for the verity root. At most 1536 bytes, printable ASCII. `ipe.enforce` is rejected here \
               because `[ipe] enforce` sets it.",
    },
    Setting {
        key: "lsm",
        kind: SettingKind::Choice(&["ipe", "ipe-rust"]),
        default: DefaultValue::Toml("\"ipe-rust\""),
        help: "IPE implementation built into the kernel: `\"ipe\"` is the upstream C LSM, `\"ipe-rust\"` the \
               Rust port from `lsm/`. Both register as LSM `ipe` and read the same policies.",
    },
];

const DISK: &[Setting] = &[
    Setting {
        key: "size",
        kind: SettingKind::Size,
        default: DefaultValue::Toml("\"512MiB\""),
        help: "Size of the whole disk image. A multiple of 1MiB, larger than `esp_size` plus `state`.",
    },
    Setting {
        key: "esp_size",
        kind: SettingKind::Size,
        default: DefaultValue::Toml("\"64MiB\""),
        help: "Size of the EFI system partition, formatted as FAT32. At least 40MiB, because FAT32 needs \
               at least 65,525 clusters, and a multiple of 1MiB.",
    },
    Setting {
        key: "state",
        kind: SettingKind::Size,
        default: DefaultValue::Absent("no state partition"),
        help: "Size of an optional writable state partition. It is mounted noexec, and the IPE policy denies \
               execution from it anyway. A multiple of 1MiB.",
    },
];

const KEYS: &[Setting] = &[
    Setting {
        key: "dir",
        kind: SettingKind::Path,
        default: DefaultValue::Toml("\"../keys/dev\""),
        help: "Folder with the release signing key and certificate, relative to this board file.",
    },
    Setting {
        key: "create_if_missing",
        kind: SettingKind::Boolean,
        default: DefaultValue::Toml("false"),
        help: "Whether the build creates a new key pair in `dir` when the folder does not exist. \
               Meant for development keys. With false, a missing folder is an error.",
    },
];

const IPE: &[Setting] = &[
    Setting {
        key: "enforce",
        kind: SettingKind::Boolean,
        default: DefaultValue::Toml("true"),
        help: "Whether IPE starts in enforce mode (`ipe.enforce=1` on the kernel command line). \
               With false it runs permissive: denials are audited but not enforced.",
    },
    Setting {
        key: "require_signature",
        kind: SettingKind::Boolean,
        default: DefaultValue::Toml("true"),
        help: "Whether each allow rule of the release policy also requires `dmverity_signature=TRUE`, \
               in addition to the pinned root hash.",
    },
    Setting {
        key: "previous_releases",
        kind: SettingKind::StringList,
        default: DefaultValue::Toml("[]"),
        help: "Root hashes (64 hexadecimal digits) of earlier releases that the release policy still allows, \
               for A/B updates.",
    },
];

const SECURE_BOOT: &[Setting] = &[Setting {
    key: "sign",
    kind: SettingKind::Boolean,
    default: DefaultValue::Toml("false"),
    help: "Whether the build signs the UKI (`EFI/BOOT/BOOTX64.EFI` and `uki.efi`) with Authenticode for UEFI \
           Secure Boot, with the db key `db.key.pem` of the key folder. Firmware that has `db.cert.pem` in its \
           `db` then boots the image. `applbuild keys init` creates the db key pair. See docs/secure-boot.md.",
}];

const QEMU: &[Setting] = &[
    Setting {
        key: "memory",
        kind: SettingKind::Size,
        default: DefaultValue::Toml("\"512MiB\""),
        help: "Guest memory. A multiple of 1MiB.",
    },
    Setting {
        key: "cpus",
        kind: SettingKind::Integer,
        default: DefaultValue::Toml("2"),
        help: "Number of guest CPUs, at least 1.",
    },
    Setting {
        key: "timeout_secs",
        kind: SettingKind::Integer,
        default: DefaultValue::Toml("600"),
        help: "Seconds that `applbuild run --test` waits for the guest's ready line before it fails. At least 1.",
    },
    Setting {
        key: "disk_bus",
        kind: SettingKind::Choice(DISK_BUSES),
        default: DefaultValue::Toml("\"virtio\""),
        help: "How the disk image is attached: `\"virtio\"` (virtio-blk), `\"nvme\"` (an NVMe controller) or \
               `\"ahci\"` (a SATA disk on the q35 AHCI controller). The kernel needs the matching driver.",
    },
    Setting {
        key: "nic_model",
        kind: SettingKind::Choice(NIC_MODELS),
        default: DefaultValue::Toml("\"virtio-net-pci\""),
        help: "QEMU model of the network cards: `\"virtio-net-pci\"` or `\"e1000e\"` (Intel 82574L, driver e1000e).",
    },
    Setting {
        key: "nics",
        kind: SettingKind::Integer,
        default: DefaultValue::Toml("1"),
        help: "Number of network cards, from 1 to 8, each on its own QEMU user-mode network. \
               Card N gets the MAC address 52:54:00:12:34:5N (N from 0). `applbuild run --nic-udp` replaces them.",
    },
];

/// Values of `[qemu] disk_bus`.
pub const DISK_BUSES: &[&str] = &["virtio", "nvme", "ahci"];
/// Values of `[qemu] nic_model`.
pub const NIC_MODELS: &[&str] = &["virtio-net-pci", "e1000e"];

/// The settings table of the board file: the top level first, then one
/// section per table.
pub const SECTIONS: &[Section] = &[
    Section {
        name: "",
        array: false,
        help: "Keys before the first table header.",
        settings: TOP,
    },
    Section { name: "kernel", array: false, help: "How the board's kernel is built.", settings: KERNEL },
    Section {
        name: "disk",
        array: false,
        help: "Sizes of the disk image and its partitions. Sizes are strings such as `\"512MiB\"` with \
               the binary units KiB, MiB, GiB or TiB, or integers counting bytes.",
        settings: DISK,
    },
    Section { name: "keys", array: false, help: "Where the release signing keys are kept.", settings: KEYS },
    Section {
        name: "ipe",
        array: false,
        help: "Options of the release IPE policy that the builder generates for each image.",
        settings: IPE,
    },
    Section {
        name: "secure_boot",
        array: false,
        help: "UEFI Secure Boot: whether the firmware's `db` key signs the UKI.",
        settings: SECURE_BOOT,
    },
    Section {
        name: "qemu",
        array: false,
        help: "The virtual machine that `applbuild run` starts.",
        settings: QEMU,
    },
];

/// A loaded and validated board file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Board {
    /// The board file, as given to [`load`].
    pub path: PathBuf,
    /// Board name, safe to use as a folder name.
    pub name: String,
    /// CPU architecture of the target.
    pub arch: Arch,
    /// Release number, also the release policy version.
    pub release: Release,
    /// Manifest file, resolved against the board file's folder. It exists
    /// and is a readable file.
    pub manifest: PathBuf,
    /// Kernel build settings.
    pub kernel: KernelSettings,
    /// Disk layout.
    pub disk: DiskSettings,
    /// Signing keys.
    pub keys: KeySettings,
    /// Release policy options.
    pub ipe: IpeSettings,
    /// UEFI Secure Boot signing.
    pub secure_boot: SecureBootSettings,
    /// Settings for `applbuild run`.
    pub qemu: QemuSettings,
}

/// CPU architecture of a board.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// 64-bit x86 with UEFI.
    X86_64,
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arch::X86_64 => f.write_str("x86_64"),
        }
    }
}

/// A release number `X.Y.Z`, in the range that IPE policy versions allow
/// (each part a 16-bit number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Release {
    /// First part.
    pub major: u16,
    /// Second part.
    pub minor: u16,
    /// Third part.
    pub patch: u16,
}

impl Release {
    /// Parses `X.Y.Z`: three decimal numbers from 0 to 65535 without leading
    /// zeros or signs. Returns `None` for any other text.
    pub fn parse(text: &str) -> Option<Release> {
        let mut parts = text.split('.');
        let major = parse_release_part(parts.next()?)?;
        let minor = parse_release_part(parts.next()?)?;
        let patch = parse_release_part(parts.next()?)?;
        if parts.next().is_some() {
            return None;
        }
        Some(Release {
            major,
            minor,
            patch,
        })
    }
}

fn parse_release_part(part: &str) -> Option<u16> {
    let digits_only = !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    let leading_zero = part.len() > 1 && part.starts_with('0');
    if !digits_only || leading_zero {
        return None;
    }
    part.parse().ok()
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Kernel build settings of a board.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSettings {
    /// Kernel source. Only [`KERNEL_SOURCE_DEBIAN_6_12`] is supported for now.
    pub source: String,
    /// Config fragments in merge order, resolved against the board file's
    /// folder. Each exists and is a readable file.
    pub config: Vec<PathBuf>,
    /// The board's part of the kernel command line.
    pub cmdline: String,
    /// IPE implementation built into the kernel.
    pub lsm: Lsm,
}

/// IPE implementation built into a board's kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lsm {
    /// The upstream C IPE LSM (`CONFIG_SECURITY_IPE`).
    Ipe,
    /// The Rust port from `lsm/` (`CONFIG_SECURITY_IPE_RUST`).
    IpeRust,
}

impl fmt::Display for Lsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lsm::Ipe => f.write_str("ipe"),
            Lsm::IpeRust => f.write_str("ipe-rust"),
        }
    }
}

/// Sizes of the disk image and its partitions, each a multiple of 1MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskSettings {
    /// Whole disk image.
    pub size: Bytes,
    /// EFI system partition, at least [`ESP_MIN_SIZE`].
    pub esp_size: Bytes,
    /// Writable state partition, if any.
    pub state: Option<Bytes>,
}

/// Location of the signing keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySettings {
    /// Key folder, resolved against the board file's folder. It exists and
    /// is a directory unless `create_if_missing` is set.
    pub dir: PathBuf,
    /// Whether the build creates development keys when `dir` is missing.
    pub create_if_missing: bool,
}

/// Options of the release IPE policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpeSettings {
    /// Whether IPE starts in enforce mode.
    pub enforce: bool,
    /// Whether allow rules also require `dmverity_signature=TRUE`.
    pub require_signature: bool,
    /// Root hashes of earlier releases still allowed, as 64 lowercase
    /// hexadecimal digits each.
    pub previous_releases: Vec<String>,
}

/// UEFI Secure Boot settings of a board.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecureBootSettings {
    /// Whether the UKI is signed with the key folder's db key.
    pub sign: bool,
}

/// The virtual machine of `applbuild run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QemuSettings {
    /// Guest memory, a multiple of 1MiB.
    pub memory: Bytes,
    /// Number of guest CPUs, at least 1.
    pub cpus: u32,
    /// Seconds `run --test` waits for the ready line, at least 1.
    pub timeout_secs: u64,
    /// One of [`DISK_BUSES`].
    pub disk_bus: &'static str,
    /// One of [`NIC_MODELS`].
    pub nic_model: &'static str,
    /// Number of network cards, 1 to 8.
    pub nics: u32,
}

/// Loads and validates a board file.
///
/// Relative paths in the file are resolved against the file's folder. The
/// manifest, the kernel config fragments and (unless `create_if_missing`)
/// the key folder must exist.
///
/// # Errors
///
/// Returns a [`ConfigError`] for the first problem found: an unreadable
/// file, invalid TOML, an unknown or missing key, a value of the wrong type
/// or form, a referenced file that is missing, or disk sizes that do not fit.
pub fn load(path: &Path) -> Result<Board, ConfigError> {
    load_with_keys(path, None)
}

/// Loads a board like [`load`], with `keys_dir` (a command's `--keys`)
/// taking the place of `[keys] dir`. The board's own key folder then need
/// not exist, so a board whose release keys live elsewhere can still be
/// built or inspected with other keys.
///
/// # Errors
///
/// As [`load`], except for a missing `[keys] dir`.
pub fn load_with_keys(path: &Path, keys_dir: Option<&Path>) -> Result<Board, ConfigError> {
    let doc = Document::read(path)?;
    let root = doc.parse()?;
    let top = Table::root(&doc, SECTIONS, &root)?;

    let name = read_name(&top.get("name")?)?;
    let arch = match top.get("arch")?.choice()?.value {
        "x86_64" => Arch::X86_64,
        other => return Err(doc.internal(format!("arch `{other}` has no variant"))),
    };
    let release = read_release(&top.get("release")?)?;
    let manifest = top.get("manifest")?.path()?;
    doc.check_file(&manifest, "manifest")?;

    Ok(Board {
        path: path.to_path_buf(),
        name,
        arch,
        release,
        manifest: manifest.value,
        kernel: read_kernel(&doc, &top.table("kernel")?)?,
        disk: read_disk(&top.table("disk")?)?,
        keys: match keys_dir {
            None => read_keys(&doc, &top.table("keys")?)?,
            Some(dir) => KeySettings { dir: dir.to_path_buf(), create_if_missing: false },
        },
        ipe: read_ipe(&doc, &top.table("ipe")?)?,
        secure_boot: SecureBootSettings { sign: top.table("secure_boot")?.get("sign")?.boolean()?.value },
        qemu: read_qemu(&doc, &top.table("qemu")?)?,
    })
}

fn read_name(item: &Item<'_>) -> Result<String, ConfigError> {
    let name = item.string()?;
    if !config::is_valid_name(&name.value) {
        return Err(item.error(ErrorKind::InvalidValue {
            key: name.key,
            value: name.value,
            expected: config::NAME_FORM.to_owned(),
        }));
    }
    Ok(name.value)
}

fn read_release(item: &Item<'_>) -> Result<Release, ConfigError> {
    let text = item.string()?;
    Release::parse(&text.value).ok_or_else(|| {
        item.error(ErrorKind::InvalidRelease {
            key: text.key,
            value: text.value,
        })
    })
}

fn read_kernel(doc: &Document, table: &Table<'_>) -> Result<KernelSettings, ConfigError> {
    let source = table.get("source")?.choice()?.value.to_owned();

    let config_item = table.get("config")?;
    let config = config_item.paths()?;
    if config.is_empty() {
        return Err(config_item.error(ErrorKind::InvalidValue {
            key: config_item.key().to_owned(),
            value: "[]".to_owned(),
            expected: "at least one kernel config fragment".to_owned(),
        }));
    }
    if let Some((first, again)) = config::first_duplicate(&config) {
        return Err(
            doc.duplicate("kernel config fragment", first, again, |path| {
                path.display().to_string()
            }),
        );
    }
    for fragment in &config {
        doc.check_file(fragment, "kernel config fragment")?;
    }

    let cmdline = read_cmdline(&table.get("cmdline")?)?;
    let lsm = match table.get("lsm")?.choice()?.value {
        "ipe" => Lsm::Ipe,
        "ipe-rust" => Lsm::IpeRust,
        other => return Err(doc.internal(format!("lsm `{other}` has no variant"))),
    };

    Ok(KernelSettings {
        source,
        config: config.into_iter().map(|path| path.value).collect(),
        cmdline,
        lsm,
    })
}

fn read_cmdline(item: &Item<'_>) -> Result<String, ConfigError> {
    let cmdline = item.string()?;
    let invalid = |expected: &str| {
        item.error(ErrorKind::InvalidValue {
            key: cmdline.key.clone(),
            value: cmdline.value.escape_debug().to_string(),
            expected: expected.to_owned(),
        })
    };

    if cmdline.value.len() > CMDLINE_MAX_LEN {
        return Err(invalid(&format!("at most {CMDLINE_MAX_LEN} bytes")));
    }
    if !cmdline
        .value
        .chars()
        .all(|c| c == ' ' || c.is_ascii_graphic())
    {
        return Err(invalid("printable ASCII characters and spaces"));
    }
    let sets_enforce = cmdline
        .value
        .split(' ')
        .any(|param| param == "ipe.enforce" || param.starts_with("ipe.enforce="));
    if sets_enforce {
        return Err(invalid(
            "no `ipe.enforce` parameter, because `[ipe] enforce` sets it",
        ));
    }
    Ok(cmdline.value)
}

fn read_disk(table: &Table<'_>) -> Result<DiskSettings, ConfigError> {
    let size_item = table.get("size")?;
    let size = aligned_size(&size_item)?;
    let esp_item = table.get("esp_size")?;
    let esp_size = aligned_size(&esp_item)?;
    let state = match table.get_optional("state")? {
        Some(item) => Some(aligned_size(&item)?),
        None => None,
    };

    if esp_size < ESP_MIN_SIZE {
        return Err(esp_item.error(ErrorKind::EspTooSmall {
            esp_size,
            minimum: ESP_MIN_SIZE,
        }));
    }
    if esp_size >= size {
        return Err(esp_item.error(ErrorKind::EspTooLarge { esp_size, size }));
    }
    if let Some(state) = state {
        let fills_disk = esp_size.checked_add(state).is_none_or(|used| used >= size);
        if fills_disk {
            return Err(size_item.error(ErrorKind::NoRootSpace {
                esp_size,
                state,
                size,
            }));
        }
    }

    Ok(DiskSettings {
        size,
        esp_size,
        state,
    })
}

/// Reads a size that must be a non-zero multiple of [`SIZE_ALIGNMENT`].
fn aligned_size(item: &Item<'_>) -> Result<Bytes, ConfigError> {
    let size = item.size()?.value;
    if !size.is_multiple_of(SIZE_ALIGNMENT) {
        return Err(item.error(ErrorKind::InvalidValue {
            key: item.key().to_owned(),
            value: size.to_string(),
            expected: "a multiple of 1MiB".to_owned(),
        }));
    }
    nonzero(item, size)
}

fn nonzero(item: &Item<'_>, size: Bytes) -> Result<Bytes, ConfigError> {
    if size == Bytes(0) {
        return Err(item.error(ErrorKind::InvalidValue {
            key: item.key().to_owned(),
            value: size.to_string(),
            expected: "a size larger than 0".to_owned(),
        }));
    }
    Ok(size)
}

fn read_keys(doc: &Document, table: &Table<'_>) -> Result<KeySettings, ConfigError> {
    let dir = table.get("dir")?.path()?;
    let create_if_missing = table.get("create_if_missing")?.boolean()?.value;

    match fs::metadata(&dir.value) {
        Err(error) if error.kind() == io::ErrorKind::NotFound && create_if_missing => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(doc.error(
                dir.span.clone(),
                ErrorKind::KeyDirMissing { path: dir.value },
            ));
        }
        _ => doc.check_dir(&dir, "key directory")?,
    }

    Ok(KeySettings {
        dir: dir.value,
        create_if_missing,
    })
}

fn read_ipe(doc: &Document, table: &Table<'_>) -> Result<IpeSettings, ConfigError> {
    let enforce = table.get("enforce")?.boolean()?.value;
    let require_signature = table.get("require_signature")?.boolean()?.value;

    let item = table.get("previous_releases")?;
    let mut hashes = item.strings()?;
    for hash in &mut hashes {
        let is_hex =
            hash.value.len() == 64 && hash.value.bytes().all(|byte| byte.is_ascii_hexdigit());
        if !is_hex {
            return Err(doc.error(
                hash.span.clone(),
                ErrorKind::InvalidRootHash {
                    key: hash.key.clone(),
                    value: hash.value.clone(),
                },
            ));
        }
        hash.value.make_ascii_lowercase();
    }
    if let Some((first, again)) = config::first_duplicate(&hashes) {
        return Err(doc.duplicate("root hash", first, again, String::clone));
    }

    let previous_releases = hashes.into_iter().map(|hash| hash.value).collect();
    Ok(IpeSettings {
        enforce,
        require_signature,
        previous_releases,
    })
}

fn read_qemu(doc: &Document, table: &Table<'_>) -> Result<QemuSettings, ConfigError> {
    let memory = aligned_size(&table.get("memory")?)?;
    let cpus = table.get("cpus")?.integer(1..=u64::from(u32::MAX))?.value;
    let timeout_secs = table.get("timeout_secs")?.integer(1..=u64::MAX)?.value;

    let cpus = u32::try_from(cpus)
        .map_err(|_| doc.internal(format!("cpus {cpus} passed a range check for u32")))?;
    let disk_bus = table.get("disk_bus")?.choice()?.value;
    let nic_model = table.get("nic_model")?.choice()?.value;
    let nics = table.get("nics")?.integer(1..=8)?.value;
    let nics = u32::try_from(nics)
        .map_err(|_| doc.internal(format!("nics {nics} passed a range check for u32")))?;
    Ok(QemuSettings {
        memory,
        cpus,
        timeout_secs,
        disk_bus,
        nic_model,
        nics,
    })
}
