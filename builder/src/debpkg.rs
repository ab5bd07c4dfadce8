//! Facts about the Debian packages of a root tree, for the SBOM. Each
//! package has the control fields and SHA-256 of its `.deb` and the
//! download address from the archive index. Its copyright file is read
//! from the freshly unpacked tree, before the rootfs stage removes
//! `/usr/share/doc`.

use crate::deb822;
use crate::rootfs::RootfsError;
use crate::tool;
use std::ffi::OsString;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// One installed Debian binary package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// Source package name: the `Source:` field, else the binary name.
    pub source: String,
    /// Source package version: the version in parentheses of `Source:`,
    /// else the binary version.
    pub source_version: String,
    /// The `Maintainer:` field, `Name <address>`.
    pub maintainer: String,
    /// Lowercase hex SHA-256 of the `.deb` file.
    pub sha256: String,
    /// Mirror address of the `.deb`, when the archive index lists a file
    /// with the same name, version, architecture and SHA-256.
    pub download_location: Option<String>,
    /// Text of `/usr/share/doc/<name>/copyright`, when the package has one.
    pub copyright: Option<String>,
}

/// Splits a `Source:` field (`name` or `name (version)`) into name and
/// version, with `binary_version` when it has none.
pub fn source_name_version(field: Option<&str>, binary_name: &str, binary_version: &str) -> (String, String) {
    let field = field.map(str::trim).unwrap_or_default();
    if field.is_empty() {
        return (binary_name.to_string(), binary_version.to_string());
    }
    match field.split_once('(') {
        Some((name, version)) => (name.trim().to_string(), version.trim_end().trim_end_matches(')').trim().to_string()),
        None => (field.to_string(), binary_version.to_string()),
    }
}

/// Reads the facts of every `.deb` named in `files` (file names in
/// `debs_dir`). `tree` is the unpacked root, `index` the output of
/// `apt-cache show` for those packages and `mirror` the archive address.
/// The result is sorted by package name and architecture.
pub fn collect(debs_dir: &Path, files: &[String], tree: &Path, index: &str, mirror: &str) -> Result<Vec<DebPackage>, RootfsError> {
    let index = deb822::parse(index);
    let mut packages = Vec::new();
    for file in files {
        let deb = debs_dir.join(file);
        let output = tool::run(tool::command(tool::DPKG_DEB).arg("--field").arg(&deb))?;
        let control = deb822::parse(&String::from_utf8_lossy(&output.stdout)).into_iter().next().unwrap_or_default();
        let field = |name: &'static str| control.first_line(name).filter(|value| !value.is_empty()).map(str::to_string).ok_or_else(|| RootfsError::Control { deb: deb.clone(), field: name });
        let name = field("Package")?;
        let version = field("Version")?;
        let architecture = field("Architecture")?;
        let maintainer = control.first_line("Maintainer").unwrap_or_default().to_string();
        let (source, source_version) = source_name_version(control.first_line("Source"), &name, &version);
        let sha256 = crate::digest::sha256_file(&deb).map_err(|source| RootfsError::Io { action: "read", path: deb.clone(), source })?;
        let download_location = download_location(&index, &name, &version, &architecture, &sha256, mirror);
        let copyright = resolve_in_root(tree, &Path::new("usr/share/doc").join(&name).join("copyright")).and_then(|path| fs::read_to_string(path).ok());
        packages.push(DebPackage { name, version, architecture, source, source_version, maintainer, sha256, download_location, copyright });
    }
    packages.sort_by(|a, b| (&a.name, &a.architecture, &a.version).cmp(&(&b.name, &b.architecture, &b.version)));
    Ok(packages)
}

/// Finds the package in the archive index and returns the mirror address
/// of its file, if the index lists the same SHA-256.
fn download_location(index: &[deb822::Paragraph], name: &str, version: &str, architecture: &str, sha256: &str, mirror: &str) -> Option<String> {
    let entry = index.iter().find(|entry| entry.first_line("Package") == Some(name) && entry.first_line("Version") == Some(version) && entry.first_line("Architecture") == Some(architecture));
    let Some(entry) = entry else {
        tracing::debug!("rootfs: {name} {version} is not in the archive index; its download location is unknown");
        return None;
    };
    let filename = entry.first_line("Filename")?;
    if entry.first_line("SHA256") != Some(sha256) {
        tracing::warn!("rootfs: the cached {name} {version} ({architecture}) differs from the archive's: SHA-256 {sha256}, index {}", entry.first_line("SHA256").unwrap_or("missing"));
        return None;
    }
    Some(format!("{}/{}", mirror.trim_end_matches('/'), filename.trim_start_matches('/')))
}

/// Maximum number of symbolic links followed when resolving a path.
const MAX_LINKS: usize = 16;

/// Resolves `relative` inside `root` as if `root` were `/`: symbolic links
/// (`/usr/share/doc/libgcc-s1 -> gcc-14-base`) are followed within the
/// tree, an absolute target starts again at `root`, and `..` stops at
/// `root`. Returns `None` when a component is missing or there are more
/// than [`MAX_LINKS`] links.
pub fn resolve_in_root(root: &Path, relative: &Path) -> Option<PathBuf> {
    let mut pending: Vec<OsString> = relative.components().rev().filter_map(component_name).collect();
    let mut current = PathBuf::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            current.pop();
            continue;
        }
        let candidate = current.join(&part);
        let full = root.join(&candidate);
        let meta = fs::symlink_metadata(&full).ok()?;
        if !meta.file_type().is_symlink() {
            current = candidate;
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return None;
        }
        let target = fs::read_link(&full).ok()?;
        if target.is_absolute() {
            current = PathBuf::new();
        }
        pending.extend(target.components().rev().filter_map(component_name));
    }
    Some(root.join(current))
}

/// Returns a path component as a name, `..` included, skipping `/` and `.`.
fn component_name(component: Component<'_>) -> Option<OsString> {
    match component {
        Component::Normal(name) => Some(name.to_os_string()),
        Component::ParentDir => Some("..".into()),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn source_field_gives_name_and_version() {
        assert_eq!(source_name_version(Some("busybox (1:1.37.0-6)"), "busybox-static", "1:1.37.0-6+b9"), ("busybox".into(), "1:1.37.0-6".into()));
        assert_eq!(source_name_version(Some("gcc-14"), "libgcc-s1", "14.2.0-19"), ("gcc-14".into(), "14.2.0-19".into()));
        assert_eq!(source_name_version(None, "nftables", "1.1.3-1"), ("nftables".into(), "1.1.3-1".into()));
        assert_eq!(source_name_version(Some(""), "nftables", "1.1.3-1"), ("nftables".into(), "1.1.3-1".into()));
    }

    #[test]
    fn links_resolve_inside_the_root() {
        let root = tempfile::tempdir().expect("temporary folder");
        let doc = root.path().join("usr/share/doc");
        fs::create_dir_all(doc.join("gcc-14-base")).expect("create doc");
        fs::write(doc.join("gcc-14-base/copyright"), "gcc").expect("write");
        symlink("gcc-14-base", doc.join("libgcc-s1")).expect("relative link");
        symlink("/usr/share/doc/gcc-14-base", doc.join("absolute")).expect("absolute link");
        symlink("../../../../../../etc", doc.join("escape")).expect("escaping link");
        symlink("loop", doc.join("loop")).expect("looping link");

        let resolved = resolve_in_root(root.path(), Path::new("usr/share/doc/libgcc-s1/copyright"));
        assert_eq!(resolved, Some(doc.join("gcc-14-base/copyright")));
        let resolved = resolve_in_root(root.path(), Path::new("/usr/share/doc/absolute/copyright"));
        assert_eq!(resolved, Some(doc.join("gcc-14-base/copyright")), "an absolute target starts at the root, not at the host's /");
        assert_eq!(resolve_in_root(root.path(), Path::new("usr/share/doc/escape/passwd")), None, "`..` stops at the root, which has no etc");
        assert_eq!(resolve_in_root(root.path(), Path::new("usr/share/doc/loop/copyright")), None);
        assert_eq!(resolve_in_root(root.path(), Path::new("usr/share/doc/missing/copyright")), None);
    }

    #[test]
    fn index_entry_with_matching_digest_gives_the_address() {
        let index = deb822::parse("Package: nftables\nVersion: 1.1.3-1\nArchitecture: amd64\nFilename: pool/main/n/nftables/nftables_1.1.3-1_amd64.deb\nSHA256: abc\n");
        let location = download_location(&index, "nftables", "1.1.3-1", "amd64", "abc", "http://deb.debian.org/debian/");
        assert_eq!(location.as_deref(), Some("http://deb.debian.org/debian/pool/main/n/nftables/nftables_1.1.3-1_amd64.deb"));
        assert_eq!(download_location(&index, "nftables", "1.1.3-1", "amd64", "def", "http://mirror"), None, "another SHA-256 is another file");
        assert_eq!(download_location(&index, "nftables", "1.1.3-2", "amd64", "abc", "http://mirror"), None);
    }
}
