//! The manifest file: what goes into a root filesystem. It names a base
//! (Debian packages, a tarball or a directory), overlay folders, file modes
//! and owners, paths to remove, the host name and the firewall's open ports.
//!
//! [`SECTIONS`] declares every key with its type, default and help. Loading
//! checks types, values and referenced files, and reports the first problem
//! as a [`ConfigError`] at `file:line:col`.

use std::path::{Path, PathBuf};

use toml::de::DeValue;

use crate::config::{
    self, ConfigError, DefaultValue, Document, ErrorKind, Item, Located, Section, Setting,
    SettingKind, Table,
};

/// Paths removed when a manifest has no `remove` key: documentation, locales,
/// package lists and caches that an appliance never reads, and old logs.
pub const DEFAULT_REMOVE: &[&str] = &[
    "/usr/share/doc",
    "/usr/share/man",
    "/usr/share/info",
    "/usr/share/locale",
    "/usr/share/lintian",
    "/var/lib/apt/lists",
    "/var/cache/apt",
    "/var/cache/debconf/config.dat-old",
    "/var/cache/debconf/templates.dat-old",
    "/var/log/*",
];

/// [`DEFAULT_REMOVE`] as a TOML literal, for the settings table. A unit test
/// checks that both lists agree.
const DEFAULT_REMOVE_TOML: &str = "[\"/usr/share/doc\", \"/usr/share/man\", \"/usr/share/info\", \
    \"/usr/share/locale\", \"/usr/share/lintian\", \"/var/lib/apt/lists\", \"/var/cache/apt\", \
    \"/var/cache/debconf/config.dat-old\", \"/var/cache/debconf/templates.dat-old\", \"/var/log/*\"]";

/// Highest user or group id accepted. `chown(2)` reads 4294967295 as
/// "leave unchanged", so it cannot be an owner.
const MAX_ID: u64 = u32::MAX as u64 - 1;

const TOP: &[Setting] = &[
    Setting {
        key: "name",
        kind: SettingKind::String,
        default: DefaultValue::Required,
        help: "Manifest name, also the default host name. \
               1 to 64 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit.",
    },
    Setting {
        key: "hostname",
        kind: SettingKind::String,
        default: DefaultValue::Absent("the manifest `name`"),
        help: "Host name written to `/etc/hostname`: labels of 1 to 63 letters, digits or '-', \
               separated by dots, at most 253 characters (RFC 1123).",
    },
    Setting {
        key: "overlays",
        kind: SettingKind::PathList,
        default: DefaultValue::Toml("[]"),
        help: "Folders copied over the base root filesystem in order, relative to this manifest. \
               Each must be a readable directory.",
    },
    Setting {
        key: "remove",
        kind: SettingKind::StringList,
        default: DefaultValue::Toml(DEFAULT_REMOVE_TOML),
        help: "Absolute paths removed from the image after the overlays are copied. A path ending in `/*` \
               removes the folder's contents and keeps the folder. No other wildcards are supported. \
               Setting this key replaces the default list.",
    },
    Setting {
        key: "source",
        kind: SettingKind::Table,
        default: DefaultValue::Required,
        help: "The base root filesystem.",
    },
    Setting {
        key: "files",
        kind: SettingKind::TableArray,
        default: DefaultValue::Absent("no entries"),
        help: "Modes and owners set on paths in the image.",
    },
    Setting {
        key: "firewall",
        kind: SettingKind::Table,
        default: DefaultValue::Absent("all defaults"),
        help: "Inbound traffic that the nftables firewall accepts.",
    },
    Setting {
        key: "interfaces",
        kind: SettingKind::TableArray,
        default: DefaultValue::Absent("DHCP on the first network card"),
        help: "Network cards with static addresses. Without any, the appliance asks DHCP for an address \
               on its first card.",
    },
    Setting {
        key: "forward",
        kind: SettingKind::TableArray,
        default: DefaultValue::Absent("no routing"),
        help: "Traffic the appliance routes from one interface to another. With at least one entry, \
               IPv4 and IPv6 forwarding are switched on at boot; the firewall drops every other forwarded packet.",
    },
];

const INTERFACES: &[Setting] = &[
    Setting {
        key: "name",
        kind: SettingKind::String,
        default: DefaultValue::Required,
        help: "Kernel name of the card, such as `eth0`: 1 to 15 ASCII letters, digits, '.', '_' or '-'. \
               The kernel numbers cards in PCI order, so `eth0` is the first card found.",
    },
    Setting {
        key: "address",
        kind: SettingKind::String,
        default: DefaultValue::Required,
        help: "Address and prefix length, such as `\"192.168.1.1/24\"` or `\"fd00::1/64\"`.",
    },
];

/// Protocols of a `[[forward]]` rule, in the order of the choice.
const PROTOCOLS: &[&str] = &["tcp", "udp", "icmp"];

const FORWARD: &[Setting] = &[
    Setting {
        key: "from",
        kind: SettingKind::String,
        default: DefaultValue::Required,
        help: "Interface the packets arrive on. It must be listed in `[[interfaces]]`.",
    },
    Setting {
        key: "to",
        kind: SettingKind::String,
        default: DefaultValue::Required,
        help: "Interface the packets leave on. It must be listed in `[[interfaces]]` and differ from `from`.",
    },
    Setting {
        key: "protocol",
        kind: SettingKind::Choice(PROTOCOLS),
        default: DefaultValue::Required,
        help: "`\"tcp\"` or `\"udp\"` with `ports`, or `\"icmp\"` (ICMP and ICMPv6, without `ports`). \
               Replies to accepted packets pass back by connection tracking.",
    },
    Setting {
        key: "ports",
        kind: SettingKind::PortList,
        default: DefaultValue::Absent("required with tcp and udp"),
        help: "Destination ports, each from 1 to 65535 and listed once.",
    },
];

/// Source kinds, in the order of the `kind` choice.
const KIND_DEBIAN: &str = "debian";
const KIND_TARBALL: &str = "tarball";
const KIND_DIRECTORY: &str = "directory";

const SOURCE: &[Setting] = &[
    Setting {
        key: "kind",
        kind: SettingKind::Choice(&[KIND_DEBIAN, KIND_TARBALL, KIND_DIRECTORY]),
        default: DefaultValue::Required,
        help: "Where the base comes from: Debian packages, a tar archive (for example from Buildroot or Yocto), \
               or a directory tree.",
    },
    Setting {
        key: "suite",
        kind: SettingKind::String,
        default: DefaultValue::Toml("\"trixie\""),
        help: "Only with `kind = \"debian\"`: the Debian suite or codename to install from.",
    },
    Setting {
        key: "mirror",
        kind: SettingKind::String,
        default: DefaultValue::Toml("\"http://deb.debian.org/debian\""),
        help: "Only with `kind = \"debian\"`: the Debian mirror, an `http://`, `https://` or `file://` URL.",
    },
    Setting {
        key: "packages",
        kind: SettingKind::StringList,
        default: DefaultValue::Absent("required with `kind = \"debian\"`"),
        help: "Only with `kind = \"debian\"`: names of the packages to install. Their dependencies are \
               added, and no maintainer scripts run. At least one name, each listed once.",
    },
    Setting {
        key: "path",
        kind: SettingKind::Path,
        default: DefaultValue::Absent("required with `kind = \"tarball\"` or `\"directory\"`"),
        help: "Only with `kind = \"tarball\"` or `\"directory\"`: the archive file or the folder, \
               relative to this manifest.",
    },
];

const FILES: &[Setting] = &[
    Setting {
        key: "path",
        kind: SettingKind::String,
        default: DefaultValue::Required,
        help: "Absolute path inside the image. It must exist after the overlays are copied and `remove` is applied.",
    },
    Setting {
        key: "mode",
        kind: SettingKind::Mode,
        default: DefaultValue::Required,
        help: "Permission bits as an octal string such as `\"0755\"` (3 or 4 digits, at most `\"7777\"`), \
               or a TOML octal integer such as `0o755`.",
    },
    Setting {
        key: "uid",
        kind: SettingKind::Integer,
        default: DefaultValue::Toml("0"),
        help: "Owner user id, from 0 to 4294967294.",
    },
    Setting {
        key: "gid",
        kind: SettingKind::Integer,
        default: DefaultValue::Toml("0"),
        help: "Owner group id, from 0 to 4294967294.",
    },
];

const FIREWALL: &[Setting] = &[
    Setting {
        key: "allow_tcp",
        kind: SettingKind::PortList,
        default: DefaultValue::Toml("[22]"),
        help: "TCP ports open to inbound connections. Each port from 1 to 65535, listed once.",
    },
    Setting {
        key: "allow_udp",
        kind: SettingKind::PortList,
        default: DefaultValue::Toml("[]"),
        help: "UDP ports open to inbound packets. Each port from 1 to 65535, listed once.",
    },
    Setting {
        key: "allow_icmp",
        kind: SettingKind::Boolean,
        default: DefaultValue::Toml("true"),
        help: "Whether ICMP and ICMPv6 packets are accepted.",
    },
];

/// The settings table of the manifest file: the top level first, then one
/// section per table.
pub const SECTIONS: &[Section] = &[
    Section {
        name: "",
        array: false,
        help: "Keys before the first table header.",
        settings: TOP,
    },
    Section {
        name: "source",
        array: false,
        help: "The base root filesystem. `kind` decides which other keys apply.",
        settings: SOURCE,
    },
    Section {
        name: "files",
        array: true,
        help: "One `[[files]]` table per path whose mode and owner the builder sets. \
               Each path may appear once.",
        settings: FILES,
    },
    Section {
        name: "firewall",
        array: false,
        help:
            "The firewall drops inbound traffic except replies, loopback and what these keys allow.",
        settings: FIREWALL,
    },
    Section {
        name: "interfaces",
        array: true,
        help: "One `[[interfaces]]` table per network card with a static address. Each name may appear once.",
        settings: INTERFACES,
    },
    Section {
        name: "forward",
        array: true,
        help: "One `[[forward]]` table per kind of traffic routed between two interfaces.",
        settings: FORWARD,
    },
];

/// A loaded and validated manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The manifest file, as given to [`load`].
    pub path: PathBuf,
    /// Manifest name.
    pub name: String,
    /// The base root filesystem.
    pub source: RootfsSource,
    /// Overlay folders in copy order, resolved against the manifest's folder.
    /// Each exists and is a readable directory.
    pub overlays: Vec<PathBuf>,
    /// Modes and owners to set, in file order, one entry per path.
    pub files: Vec<FileAttr>,
    /// Absolute paths to remove. An entry ending in `/*` empties a folder.
    pub remove: Vec<String>,
    /// Ports the firewall opens.
    pub firewall: Firewall,
    /// Host name, a valid RFC 1123 name.
    pub hostname: String,
    /// Cards with static addresses, in file order; empty for DHCP.
    pub interfaces: Vec<Interface>,
    /// Routed traffic, in file order.
    pub forward: Vec<ForwardRule>,
}

/// A network card with a static address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Kernel interface name.
    pub name: String,
    /// Address with prefix length, as written (already validated).
    pub address: String,
}

/// Traffic routed from one interface to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardRule {
    pub from: String,
    pub to: String,
    /// `tcp`, `udp` or `icmp`.
    pub protocol: &'static str,
    /// Destination ports; empty for ICMP.
    pub ports: Vec<u16>,
}

/// Origin of the base root filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootfsSource {
    /// Debian packages and their dependencies.
    Debian {
        /// Suite or codename, such as `trixie`.
        suite: String,
        /// Mirror URL.
        mirror: String,
        /// Package names, valid by Debian Policy and each listed once.
        packages: Vec<String>,
    },
    /// A tar archive, resolved against the manifest's folder. It exists and
    /// is a readable file.
    Tarball {
        /// The archive.
        path: PathBuf,
    },
    /// A directory tree, resolved against the manifest's folder. It exists
    /// and is a readable directory.
    Directory {
        /// The folder.
        path: PathBuf,
    },
}

/// Mode and owner for one path in the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileAttr {
    /// Absolute path inside the image, without `.` or `..` components.
    pub path: String,
    /// Permission bits, at most `0o7777`.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
}

/// Inbound traffic the firewall accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firewall {
    /// Open TCP ports, each listed once.
    pub allow_tcp: Vec<u16>,
    /// Open UDP ports, each listed once.
    pub allow_udp: Vec<u16>,
    /// Whether ICMP and ICMPv6 are accepted.
    pub allow_icmp: bool,
}

/// Loads and validates a manifest file.
///
/// Relative paths in the file are resolved against the file's folder. Overlay
/// folders, a tarball or a source directory must exist and be readable.
///
/// # Errors
///
/// Returns a [`ConfigError`] for the first problem found. Problems include an
/// unreadable file, invalid TOML, an unknown or missing key, and a value of
/// the wrong type or form. They also include a key that does not apply to the
/// source kind, an invalid or repeated package name, and a referenced file
/// that is missing or unreadable.
pub fn load(path: &Path) -> Result<Manifest, ConfigError> {
    let doc = Document::read(path)?;
    let root = doc.parse()?;
    let top = Table::root(&doc, SECTIONS, &root)?;

    let name_item = top.get("name")?;
    let name = name_item.string()?;
    if !config::is_valid_name(&name.value) {
        return Err(name_item.error(ErrorKind::InvalidValue {
            key: name.key,
            value: name.value,
            expected: config::NAME_FORM.to_owned(),
        }));
    }
    let hostname = read_hostname(&top, &name_item)?;
    let source = read_source(&doc, &top.table("source")?)?;
    let overlays = read_overlays(&doc, &top.get("overlays")?)?;
    let remove = read_remove(&doc, &top.get("remove")?)?;
    let files = read_files(&doc, &top.tables("files")?)?;
    let firewall = read_firewall(&doc, &top.table("firewall")?)?;
    let interfaces = read_interfaces(&doc, &top.tables("interfaces")?)?;
    let forward = read_forward(&doc, &top.tables("forward")?, &interfaces)?;

    Ok(Manifest {
        path: path.to_path_buf(),
        name: name.value,
        source,
        overlays,
        files,
        remove,
        firewall,
        hostname,
        interfaces,
        forward,
    })
}

/// Reads `hostname`, or takes the manifest name. A manifest name that is
/// not a valid host name is reported at the `name` key.
fn read_hostname(top: &Table<'_>, name_item: &Item<'_>) -> Result<String, ConfigError> {
    if let Some(item) = top.get_optional("hostname")? {
        let hostname = item.string()?.value;
        if !is_valid_hostname(&hostname) {
            return Err(item.error(ErrorKind::InvalidValue {
                key: item.key().to_owned(),
                value: hostname,
                expected: HOSTNAME_FORM.to_owned(),
            }));
        }
        return Ok(hostname);
    }

    let name = name_item.string()?.value;
    if !is_valid_hostname(&name) {
        return Err(name_item.error(ErrorKind::InvalidValue {
            key: "hostname".to_owned(),
            value: name,
            expected: format!(
                "{HOSTNAME_FORM}. The manifest name is the default host name, so set `hostname` to use another"
            ),
        }));
    }
    Ok(name)
}

const HOSTNAME_FORM: &str =
    "a host name: dot-separated labels of 1 to 63 ASCII letters, digits or '-', not starting or ending with '-'";

/// Returns whether `name` is a host name by RFC 1123: labels of 1 to 63
/// letters, digits or '-' that neither start nor end with '-', separated by
/// dots, at most 253 characters in total.
fn is_valid_hostname(name: &str) -> bool {
    let valid_label = |label: &str| {
        (1..=63).contains(&label.len())
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    name.len() <= 253 && name.split('.').all(valid_label)
}

fn read_source(doc: &Document, table: &Table<'_>) -> Result<RootfsSource, ConfigError> {
    let kind = table.get("kind")?.choice()?;
    let (applicable, other_kinds): (&[&str], &str) = match kind.value {
        KIND_DEBIAN => (
            &["kind", "suite", "mirror", "packages"],
            "`kind = \"tarball\"` or `kind = \"directory\"`",
        ),
        _ => (&["kind", "path"], "`kind = \"debian\"`"),
    };
    for (key, span) in table.present_keys() {
        if !applicable.contains(&key) {
            return Err(doc.error(
                Some(span),
                ErrorKind::KeyNotApplicable {
                    key: table.dotted(key),
                    condition: format!("`kind = \"{}\"`", kind.value),
                    used_by: other_kinds.to_owned(),
                },
            ));
        }
    }

    match kind.value {
        KIND_DEBIAN => read_debian(doc, table),
        KIND_TARBALL => {
            let path = source_path(table)?;
            doc.check_file(&path, "tarball")?;
            Ok(RootfsSource::Tarball { path: path.value })
        }
        KIND_DIRECTORY => {
            let path = source_path(table)?;
            doc.check_dir(&path, "source directory")?;
            Ok(RootfsSource::Directory { path: path.value })
        }
        other => Err(doc.internal(format!("source kind `{other}` has no variant"))),
    }
}

fn source_path(table: &Table<'_>) -> Result<Located<PathBuf>, ConfigError> {
    match table.get_optional("path")? {
        Some(item) => item.path(),
        None => Err(table.missing_key("path")),
    }
}

fn read_debian(doc: &Document, table: &Table<'_>) -> Result<RootfsSource, ConfigError> {
    let suite_item = table.get("suite")?;
    let suite = suite_item.string()?.value;
    if !is_valid_suite(&suite) {
        return Err(suite_item.error(ErrorKind::InvalidValue {
            key: suite_item.key().to_owned(),
            value: suite,
            expected: "a Debian suite or codename such as \"trixie\": lowercase letters, digits, '.' and '-'"
                .to_owned(),
        }));
    }

    let mirror_item = table.get("mirror")?;
    let mirror = mirror_item.string()?.value;
    if !is_valid_mirror(&mirror) {
        return Err(mirror_item.error(ErrorKind::InvalidValue {
            key: mirror_item.key().to_owned(),
            value: mirror.escape_debug().to_string(),
            expected: "an http://, https:// or file:// URL without spaces, such as \"http://deb.debian.org/debian\""
                .to_owned(),
        }));
    }

    let Some(packages_item) = table.get_optional("packages")? else {
        return Err(table.missing_key("packages"));
    };
    let packages = packages_item.strings()?;
    if packages.is_empty() {
        return Err(packages_item.error(ErrorKind::InvalidValue {
            key: packages_item.key().to_owned(),
            value: "[]".to_owned(),
            expected: "at least one package name".to_owned(),
        }));
    }
    for package in &packages {
        if !is_valid_package_name(&package.value) {
            return Err(doc.error(
                package.span.clone(),
                ErrorKind::InvalidPackageName {
                    name: package.value.clone(),
                },
            ));
        }
    }
    if let Some((first, again)) = config::first_duplicate(&packages) {
        return Err(doc.duplicate("package", first, again, String::clone));
    }

    let packages = packages.into_iter().map(|package| package.value).collect();
    Ok(RootfsSource::Debian {
        suite,
        mirror,
        packages,
    })
}

/// Returns whether `name` is a Debian package name: at least two characters
/// of lowercase letters, digits, '+', '-' and '.', starting with a letter or
/// digit. The Debian Policy Manual sets this rule in section 5.6.1 "Source",
/// and section 5.6.7 "Package" applies it to binary packages.
fn is_valid_package_name(name: &str) -> bool {
    let starts_well = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let allowed = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
    name.len() >= 2 && starts_well && allowed
}

fn is_valid_suite(suite: &str) -> bool {
    let starts_well = suite
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let allowed = suite
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-'));
    starts_well && allowed && suite.len() <= 64
}

fn is_valid_mirror(mirror: &str) -> bool {
    let rest = ["http://", "https://", "file://"]
        .iter()
        .find_map(|scheme| mirror.strip_prefix(scheme));
    let clean = mirror.chars().all(|c| c.is_ascii_graphic());
    rest.is_some_and(|rest| !rest.is_empty()) && clean
}

fn read_overlays(doc: &Document, item: &Item<'_>) -> Result<Vec<PathBuf>, ConfigError> {
    let overlays = item.paths()?;
    if let Some((first, again)) = config::first_duplicate(&overlays) {
        return Err(doc.duplicate("overlay directory", first, again, |path| {
            path.display().to_string()
        }));
    }
    for overlay in &overlays {
        doc.check_dir(overlay, "overlay directory")?;
    }
    Ok(overlays.into_iter().map(|overlay| overlay.value).collect())
}

fn read_remove(doc: &Document, item: &Item<'_>) -> Result<Vec<String>, ConfigError> {
    let entries = item.strings()?;
    for entry in &entries {
        let target = entry.value.strip_suffix("/*").unwrap_or(&entry.value);
        let has_wildcard = target.contains(['*', '?', '[']);
        if !is_clean_absolute_path(target) || target == "/" || has_wildcard {
            return Err(doc.error(
                entry.span.clone(),
                ErrorKind::InvalidValue {
                    key: entry.key.clone(),
                    value: entry.value.escape_debug().to_string(),
                    expected: "an absolute path below / without `.` or `..` components, optionally ending in `/*` \
                               to empty a folder (no other wildcards)"
                        .to_owned(),
                },
            ));
        }
    }
    if let Some((first, again)) = config::first_duplicate(&entries) {
        return Err(doc.duplicate("path", first, again, String::clone));
    }
    Ok(entries.into_iter().map(|entry| entry.value).collect())
}

/// Returns whether `path` starts with '/' and has no empty, `.` or `..`
/// components and no NUL or control characters. `/` itself passes.
fn is_clean_absolute_path(path: &str) -> bool {
    let Some(relative) = path.strip_prefix('/') else {
        return false;
    };
    if path.chars().any(|c| c.is_control()) {
        return false;
    }
    relative.is_empty()
        || relative
            .split('/')
            .all(|part| !matches!(part, "" | "." | ".."))
}

fn read_files(doc: &Document, tables: &[Table<'_>]) -> Result<Vec<FileAttr>, ConfigError> {
    let mut paths: Vec<Located<String>> = Vec::new();
    let mut files = Vec::new();
    for table in tables {
        let path_item = table.get("path")?;
        let path = path_item.string()?;
        if !is_clean_absolute_path(&path.value) {
            return Err(path_item.error(ErrorKind::InvalidValue {
                key: path.key,
                value: path.value.escape_debug().to_string(),
                expected: "an absolute path inside the image without `.` or `..` components"
                    .to_owned(),
            }));
        }

        let mode = read_mode(&table.get("mode")?)?;
        let uid = read_id(doc, &table.get("uid")?)?;
        let gid = read_id(doc, &table.get("gid")?)?;

        files.push(FileAttr {
            path: path.value.clone(),
            mode,
            uid,
            gid,
        });
        paths.push(path);
    }

    if let Some((first, again)) = config::first_duplicate(&paths) {
        return Err(doc.duplicate("path", first, again, String::clone));
    }
    Ok(files)
}

fn read_mode(item: &Item<'_>) -> Result<u32, ConfigError> {
    item.expect_kind(&[SettingKind::Mode])?;
    let invalid = |value: String, expected: &str| {
        item.error(ErrorKind::InvalidValue {
            key: item.key().to_owned(),
            value,
            expected: expected.to_owned(),
        })
    };
    const STRING_FORM: &str = "3 or 4 octal digits such as \"0755\", at most \"7777\"";

    match item.value() {
        DeValue::String(text) => {
            let digits_ok = (3..=4).contains(&text.len()) && text.chars().all(|c| c.is_digit(8));
            match u32::from_str_radix(text, 8) {
                Ok(mode) if digits_ok && mode <= 0o7777 => Ok(mode),
                _ => Err(invalid(text.escape_debug().to_string(), STRING_FORM)),
            }
        }
        DeValue::Integer(int) if int.radix() == 8 => {
            let range = 0..=0o7777;
            let mode = config::integer_in(int, &range).and_then(|mode| u32::try_from(mode).ok());
            mode.ok_or_else(|| {
                invalid(
                    config::integer_text(int),
                    "an octal integer from 0o0 to 0o7777",
                )
            })
        }
        DeValue::Integer(int) => {
            let written = config::integer_text(int);
            let expected = format!(
                "a quoted octal string such as \"0755\" or an octal integer such as 0o755, \
                 because TOML reads {written} as a decimal number"
            );
            Err(invalid(written, &expected))
        }
        _ => Err(item.wrong_type()),
    }
}

fn read_id(doc: &Document, item: &Item<'_>) -> Result<u32, ConfigError> {
    let id = item.integer(0..=MAX_ID)?.value;
    u32::try_from(id).map_err(|_| doc.internal(format!("id {id} passed a range check for u32")))
}

fn read_firewall(doc: &Document, table: &Table<'_>) -> Result<Firewall, ConfigError> {
    let allow_tcp = read_ports(doc, &table.get("allow_tcp")?, "TCP port")?;
    let allow_udp = read_ports(doc, &table.get("allow_udp")?, "UDP port")?;
    let allow_icmp = table.get("allow_icmp")?.boolean()?.value;
    Ok(Firewall {
        allow_tcp,
        allow_udp,
        allow_icmp,
    })
}

fn read_interfaces(doc: &Document, tables: &[Table<'_>]) -> Result<Vec<Interface>, ConfigError> {
    let mut names: Vec<Located<String>> = Vec::new();
    let mut interfaces = Vec::new();
    for table in tables {
        let name_item = table.get("name")?;
        let name = name_item.string()?;
        if !is_valid_interface_name(&name.value) {
            return Err(name_item.error(ErrorKind::InvalidValue {
                key: name.key,
                value: name.value.escape_debug().to_string(),
                expected: "1 to 15 ASCII letters, digits, '.', '_' or '-', not `.` or `..`".to_owned(),
            }));
        }
        let address_item = table.get("address")?;
        let address = address_item.string()?;
        if !is_valid_cidr(&address.value) {
            return Err(address_item.error(ErrorKind::InvalidValue {
                key: address.key,
                value: address.value.escape_debug().to_string(),
                expected: "an IPv4 or IPv6 address with a prefix length, such as \"192.168.1.1/24\" or \"fd00::1/64\""
                    .to_owned(),
            }));
        }
        interfaces.push(Interface { name: name.value.clone(), address: address.value });
        names.push(name);
    }
    if let Some((first, again)) = config::first_duplicate(&names) {
        return Err(doc.duplicate("interface name", first, again, String::clone));
    }
    Ok(interfaces)
}

fn read_forward(doc: &Document, tables: &[Table<'_>], interfaces: &[Interface]) -> Result<Vec<ForwardRule>, ConfigError> {
    let declared: Vec<&str> = interfaces.iter().map(|i| i.name.as_str()).collect();
    let mut rules = Vec::new();
    for table in tables {
        let mut ends = Vec::new();
        for key in ["from", "to"] {
            let item = table.get(key)?;
            let name = item.string()?;
            if !declared.contains(&name.value.as_str()) {
                let expected = if declared.is_empty() {
                    "the name of an interface listed in [[interfaces]] (the manifest lists none)".to_owned()
                } else {
                    format!("one of the interfaces in [[interfaces]]: {}", declared.join(", "))
                };
                return Err(item.error(ErrorKind::InvalidValue { key: name.key, value: name.value, expected }));
            }
            ends.push((item, name.value));
        }
        let (to_item, to) = ends.pop().ok_or_else(|| doc.internal("a forward rule lost its ends".to_owned()))?;
        let (_, from) = ends.pop().ok_or_else(|| doc.internal("a forward rule lost its ends".to_owned()))?;
        if from == to {
            return Err(to_item.error(ErrorKind::InvalidValue {
                key: to_item.key().to_owned(),
                value: to,
                expected: "an interface other than `from`".to_owned(),
            }));
        }
        let protocol = table.get("protocol")?.choice()?.value;
        let ports_item = table.get_optional("ports")?;
        let ports = match (protocol, ports_item) {
            ("icmp", Some(item)) => {
                return Err(item.error(ErrorKind::KeyNotApplicable {
                    key: item.key().to_owned(),
                    condition: "`protocol = \"icmp\"`".to_owned(),
                    used_by: "`protocol = \"tcp\"` or `\"udp\"`".to_owned(),
                }))
            }
            ("icmp", None) => Vec::new(),
            (_, Some(item)) => {
                let ports = item.ports()?;
                if ports.is_empty() {
                    return Err(item.error(ErrorKind::InvalidValue {
                        key: item.key().to_owned(),
                        value: "[]".to_owned(),
                        expected: "at least one port from 1 to 65535".to_owned(),
                    }));
                }
                if let Some((first, again)) = config::first_duplicate(&ports) {
                    return Err(doc.duplicate("port", first, again, u16::to_string));
                }
                ports.into_iter().map(|port| port.value).collect()
            }
            (_, None) => return Err(table.missing_key("ports")),
        };
        rules.push(ForwardRule { from, to, protocol, ports });
    }
    Ok(rules)
}

/// Linux interface names: at most 15 bytes (IFNAMSIZ - 1), no '/', ':',
/// or white space; this is stricter and keeps to a portable set.
fn is_valid_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn is_valid_cidr(text: &str) -> bool {
    let Some((address, prefix)) = text.split_once('/') else { return false };
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) || (prefix.len() > 1 && prefix.starts_with('0')) {
        return false;
    }
    let Ok(prefix) = prefix.parse::<u8>() else { return false };
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => (1..=32).contains(&prefix),
        Ok(std::net::IpAddr::V6(_)) => (1..=128).contains(&prefix),
        Err(_) => false,
    }
}

fn read_ports(
    doc: &Document,
    item: &Item<'_>,
    label: &'static str,
) -> Result<Vec<u16>, ConfigError> {
    let ports = item.ports()?;
    if let Some((first, again)) = config::first_duplicate(&ports) {
        return Err(doc.duplicate(label, first, again, u16::to_string));
    }
    Ok(ports.into_iter().map(|port| port.value).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_remove_literal_matches_list() {
        let value = DeValue::parse(DEFAULT_REMOVE_TOML).map(|value| value.into_inner());
        let Ok(DeValue::Array(items)) = value else {
            panic!("DEFAULT_REMOVE_TOML is not a TOML array");
        };
        let parsed: Vec<&str> = items
            .iter()
            .filter_map(|item| item.get_ref().as_str())
            .collect();
        assert_eq!(parsed, DEFAULT_REMOVE);
    }

    #[test]
    fn package_names_follow_debian_policy() {
        for name in [
            "nftables",
            "busybox-static",
            "libstdc++6",
            "g++",
            "python3.13",
            "0ad",
        ] {
            assert!(is_valid_package_name(name), "{name}");
        }
        for name in [
            "",
            "a",
            "Nftables",
            "-x",
            "+x",
            ".x",
            "nft_ables",
            "nftables=1.0",
            "nftables:amd64",
        ] {
            assert!(!is_valid_package_name(name), "{name}");
        }
    }

    #[test]
    fn hostnames_follow_rfc_1123() {
        for name in ["firewall", "fw-1", "a.b.c", "1host", &"a".repeat(63)] {
            assert!(is_valid_hostname(name), "{name}");
        }
        for name in ["", "-fw", "fw-", "fw_1", "a..b", ".a", &"a".repeat(64)] {
            assert!(!is_valid_hostname(name), "{name}");
        }
    }

    #[test]
    fn clean_absolute_paths() {
        for path in ["/", "/etc/hostname", "/usr/bin/x"] {
            assert!(is_clean_absolute_path(path), "{path}");
        }
        for path in [
            "",
            "etc",
            "/etc/",
            "//etc",
            "/etc/../root",
            "/./etc",
            "/a\nb",
            "/a\0b",
        ] {
            assert!(!is_clean_absolute_path(path), "{path:?}");
        }
    }

    #[test]
    fn mirrors_need_a_url_scheme() {
        assert!(is_valid_mirror("http://deb.debian.org/debian"));
        assert!(is_valid_mirror("file:///srv/mirror"));
        assert!(!is_valid_mirror("deb.debian.org/debian"));
        assert!(!is_valid_mirror("http://"));
        assert!(!is_valid_mirror("http://a b"));
    }
}
