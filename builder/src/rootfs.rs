//! Rootfs stage: assembles the appliance's root tree in a staging folder.
//!
//! Sources: Debian packages unpacked by mmdebstrap's `extract` variant (no
//! maintainer scripts run, so the result depends only on the package files),
//! a tarball, or a directory. Then: merged-/usr links, busybox applet links,
//! the manifest's overlays, generated files (os-release, hostname, the
//! nftables ruleset), file modes and owners, removal of docs and caches, and
//! every timestamp set to `SOURCE_DATE_EPOCH`. For Debian sources it also
//! records the facts about each package that the SBOM needs (see
//! [`crate::debpkg`]), reading copyright files before the docs are removed.

use crate::cache::Cache;
use crate::debpkg::{self, DebPackage};
use crate::manifest::{Firewall, ForwardRule, Manifest, RootfsSource};
use crate::progress;
use crate::tool::{self, ToolError};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Errors of the rootfs stage.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("{manifest}: Debian package {package:?} does not exist in suite {suite}")]
    UnknownPackage { manifest: PathBuf, package: String, suite: String },
    #[error("failed to {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{manifest}: [[files]] path {path} does not exist in the root tree")]
    MissingFile { manifest: PathBuf, path: String },
    #[error("the root tree has no /sbin/init; add a package or overlay that provides it")]
    NoInit,
    #[error("{deb}: the control data has no {field} field; delete the file from the package cache so that it is downloaded again")]
    Control { deb: PathBuf, field: &'static str },
}

impl RootfsError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RootfsError::Tool(err) => err.exit_code(),
            RootfsError::UnknownPackage { .. } | RootfsError::MissingFile { .. } => 2,
            _ => 1,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            RootfsError::Tool(err) => err.hint(),
            RootfsError::UnknownPackage { package, suite, .. } => Some(format!("check the name with `apt-cache policy {package}` on a {suite} system or at https://packages.debian.org, and fix source.packages")),
            _ => None,
        }
    }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RootfsError + 'a {
    move |source| RootfsError::Io { action, path: path.to_path_buf(), source }
}

/// Output of the rootfs stage.
#[derive(Debug, Clone)]
pub struct RootfsOutput {
    /// The staging folder holding the tree.
    pub dir: PathBuf,
    /// Debian packages as `name version`, sorted; empty for other sources.
    pub packages: Vec<String>,
    /// The same packages with their SBOM facts, sorted by name.
    pub debs: Vec<DebPackage>,
}

/// Release facts written into the tree.
pub struct ReleaseInfo<'a> {
    pub board: &'a str,
    pub release: &'a str,
    pub epoch: u64,
}

/// Assembles the tree for `manifest` in `work/root` (`work` must exist and
/// not contain `root`).
pub fn build(manifest: &Manifest, release: &ReleaseInfo, cache: &Cache, work: &Path) -> Result<RootfsOutput, RootfsError> {
    let started = Instant::now();
    let dir = work.join("root");
    let debs = match &manifest.source {
        RootfsSource::Debian { suite, mirror, packages } => debian(manifest, suite, mirror, packages, cache, work, &dir)?,
        RootfsSource::Tarball { path } => {
            fs::create_dir_all(&dir).map_err(io("create", &dir))?;
            tool::run(tool::command(tool::TAR).arg("--numeric-owner").arg("-xpf").arg(path).arg("-C").arg(&dir))?;
            Vec::new()
        }
        RootfsSource::Directory { path } => {
            fs::create_dir_all(&dir).map_err(io("create", &dir))?;
            let mut source = path.clone().into_os_string();
            source.push("/.");
            tool::run(tool::command(tool::CP).arg("-a").arg(source).arg(&dir))?;
            Vec::new()
        }
    };

    // Applets go into /usr first, so the merged-/usr links also cover
    // folders such as /usr/sbin that only the applets create.
    busybox_links(&dir)?;
    merged_usr_links(&dir)?;
    reset_runtime_dirs(&dir)?;
    for overlay in &manifest.overlays {
        let mut source = overlay.clone().into_os_string();
        source.push("/.");
        tool::run(tool::command(tool::CP).arg("-r").arg("--preserve=mode,links").arg("--no-preserve=ownership").arg(source).arg(&dir))?;
    }
    write_generated(&dir, manifest, release)?;
    remove_paths(&dir, &manifest.remove)?;
    apply_file_attrs(&dir, manifest)?;
    if fs::symlink_metadata(dir.join("sbin/init")).is_err() {
        return Err(RootfsError::NoInit);
    }
    set_times(&dir, release.epoch)?;

    let mut packages: Vec<String> = debs.iter().map(|deb| format!("{} {}", deb.name, deb.version)).collect();
    packages.sort();
    tracing::info!(packages = packages.len(), seconds = started.elapsed().as_secs(), "rootfs: assembled {}", dir.display());
    Ok(RootfsOutput { dir, packages, debs })
}

/// Runs mmdebstrap's extract variant with the manifest's packages and their
/// dependencies, keeping downloaded .deb files in the cache, and returns
/// the facts about the installed packages.
fn debian(manifest: &Manifest, suite: &str, mirror: &str, packages: &[String], cache: &Cache, work: &Path, dir: &Path) -> Result<Vec<DebPackage>, RootfsError> {
    let debs = cache.dir("debs").join(suite);
    fs::create_dir_all(&debs).map_err(io("create", &debs))?;
    let list = work.join("packages.txt");
    let index = work.join("packages-index.txt");
    let bar = progress::spinner("rootfs");
    bar.set_message(format!("mmdebstrap {suite}: {}", packages.join(" ")));
    let mut cmd = tool::command(tool::MMDEBSTRAP);
    cmd.arg("--variant=extract")
        .arg("--mode=root")
        .arg("--format=directory")
        .arg(format!("--include={}", packages.join(",")))
        .arg("--skip=download/empty")
        .arg("--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/")
        .arg(format!("--setup-hook=sync-in {} /var/cache/apt/archives/", debs.display()))
        .arg(format!("--extract-hook=sync-out /var/cache/apt/archives {}", debs.display()))
        .arg(format!("--extract-hook=cd \"$1\"/var/cache/apt/archives && ls *.deb > {}", list.display()))
        // The archive index entries of these packages (file name in the
        // pool, SHA-256), read with the apt configuration of this run
        // because mmdebstrap removes the package lists at the end.
        .arg(format!("--extract-hook=APT_CONFIG=\"$MMDEBSTRAP_APT_CONFIG\" apt-cache show $(sed 's/_.*//' {} | sort -u) > {}", list.display(), index.display()))
        .arg(suite)
        .arg(dir)
        .arg(mirror);
    let result = tool::run(&mut cmd);
    bar.finish_and_clear();
    if let Err(ToolError::Failed { stderr_tail, .. }) = &result {
        for package in packages {
            if stderr_tail.contains(&format!("Unable to locate package {package}")) || stderr_tail.contains(&format!("Package '{package}' has no installation candidate")) {
                return Err(RootfsError::UnknownPackage { manifest: manifest.path.clone(), package: package.clone(), suite: suite.to_string() });
            }
        }
    }
    result?;

    // The cache contains every version ever downloaded, so the list names
    // exactly the files of this build.
    let text = fs::read_to_string(&list).map_err(io("read", &list))?;
    let files: Vec<String> = text.lines().map(str::trim).filter(|file| file.ends_with(".deb")).map(str::to_string).collect();
    let index_text = fs::read_to_string(&index).map_err(io("read", &index))?;
    debpkg::collect(&debs, &files, dir, &index_text, mirror)
}

/// The package-download cache key of `manifest`: `<suite>-<hash>` over the
/// suite, the mirror and the sorted package list, or `None` when the root
/// filesystem does not come from Debian packages. Downloads land in
/// `debs/<suite>/` of the cache, which keeps every version it ever got.
pub fn debs_key(manifest: &Manifest) -> Option<String> {
    let RootfsSource::Debian { suite, mirror, packages } = &manifest.source else {
        return None;
    };
    let mut sorted = packages.clone();
    sorted.sort();
    let mut key = crate::cache::KeyHasher::new("applbuild debs v1");
    key.add_str(suite).add_str(mirror);
    for package in &sorted {
        key.add_str(package);
    }
    Some(format!("{suite}-{}", key.short_hex()))
}

/// Adds the merged-/usr links (`/bin` → `usr/bin`, …) that package
/// extraction alone does not create.
fn merged_usr_links(dir: &Path) -> Result<(), RootfsError> {
    for name in ["bin", "sbin", "lib", "lib64"] {
        let link = dir.join(name);
        if fs::symlink_metadata(&link).is_err() && dir.join("usr").join(name).is_dir() {
            symlink(format!("usr/{name}"), &link).map_err(io("create the link", &link))?;
        }
    }
    Ok(())
}

/// Links every busybox applet that no package provides, from the applet
/// list the static busybox binary prints itself.
fn busybox_links(dir: &Path) -> Result<(), RootfsError> {
    let busybox = dir.join("usr/bin/busybox");
    if !busybox.is_file() {
        return Ok(());
    }
    let output = tool::run(std::process::Command::new(&busybox).arg("--list-full"))?;
    for applet in String::from_utf8_lossy(&output.stdout).lines() {
        let applet = applet.trim().trim_start_matches('/');
        if applet.is_empty() || applet.contains("..") {
            continue;
        }
        // Install into /usr so the merged-/usr links cover /bin and /sbin.
        let relative = if applet.starts_with("usr/") { applet.to_string() } else { format!("usr/{applet}") };
        let link = dir.join(&relative);
        if fs::symlink_metadata(&link).is_ok() || fs::symlink_metadata(dir.join(applet)).is_ok() {
            continue;
        }
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).map_err(io("create", parent))?;
        }
        symlink("/usr/bin/busybox", &link).map_err(io("create the link", &link))?;
    }
    Ok(())
}

/// Empties /dev, /proc, /sys, /run and /tmp: the appliance mounts kernel
/// filesystems and tmpfs there at boot.
fn reset_runtime_dirs(dir: &Path) -> Result<(), RootfsError> {
    for name in ["dev", "proc", "sys", "run", "tmp"] {
        let path = dir.join(name);
        if path.exists() {
            fs::remove_dir_all(&path).map_err(io("clear", &path))?;
        }
        fs::create_dir_all(&path).map_err(io("create", &path))?;
    }
    let tmp = dir.join("tmp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).map_err(io("set the mode of", &tmp))?;
    Ok(())
}

fn write_file(dir: &Path, relative: &str, content: &str, mode: u32) -> Result<(), RootfsError> {
    let path = dir.join(relative);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io("create", parent))?;
    }
    if fs::symlink_metadata(&path).is_ok() {
        fs::remove_file(&path).map_err(io("replace", &path))?;
    }
    fs::write(&path, content).map_err(io("write", &path))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io("set the mode of", &path))
}

/// Writes os-release, hostname and the firewall ruleset. The root hash is
/// not known yet (it depends on this tree), so the appliance reads it from
/// the kernel command line at run time.
fn write_generated(dir: &Path, manifest: &Manifest, release: &ReleaseInfo) -> Result<(), RootfsError> {
    let os_release = format!(
        "NAME=\"applbuild appliance\"\nID=applbuild\nVERSION_ID={}\nIMAGE_ID={}\nIMAGE_VERSION={}\nVARIANT_ID={}\n",
        release.release, release.board, release.release, manifest.name
    );
    write_file(dir, "usr/lib/os-release", &os_release, 0o644)?;
    let link = dir.join("etc/os-release");
    if fs::symlink_metadata(&link).is_ok() {
        fs::remove_file(&link).map_err(io("replace", &link))?;
    }
    symlink("../usr/lib/os-release", &link).map_err(io("create the link", &link))?;
    write_file(dir, "etc/hostname", &format!("{}\n", manifest.hostname), 0o644)?;
    write_file(dir, "etc/nftables.conf", &nftables_ruleset(&manifest.firewall, &manifest.forward), 0o644)?;
    write_file(dir, "etc/appliance/network", &network_config(manifest), 0o644)?;
    for stale in ["etc/resolv.conf", "etc/apt/sources.list", "etc/fstab"] {
        let path = dir.join(stale);
        if fs::symlink_metadata(&path).is_ok() {
            fs::remove_file(&path).map_err(io("remove", &path))?;
        }
    }
    symlink("/run/resolv.conf", dir.join("etc/resolv.conf")).map_err(io("create the link", &dir.join("etc/resolv.conf")))?;
    Ok(())
}

/// Renders `/etc/appliance/network`, which the start-up script reads: one
/// `address NAME CIDR` line per static interface (none means DHCP on the
/// first card), and `forward 1` when the appliance routes.
pub fn network_config(manifest: &Manifest) -> String {
    let mut text = String::from("# Generated by applbuild from the manifest's [[interfaces]] and [[forward]] tables.\n");
    for interface in &manifest.interfaces {
        text.push_str(&format!("address {} {}\n", interface.name, interface.address));
    }
    text.push_str(&format!("forward {}\n", u8::from(!manifest.forward.is_empty())));
    text
}

/// Renders the default ruleset: drop inbound and forwarded traffic except
/// established flows, loopback, the stated ports, (optionally) ICMP and the
/// manifest's forward rules.
pub fn nftables_ruleset(firewall: &Firewall, forward: &[ForwardRule]) -> String {
    let mut rules = String::from("#!/usr/sbin/nft -f\n# Generated by applbuild from the manifest's [firewall] table.\nflush ruleset\n\ntable inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t\tct state established,related accept\n\t\tct state invalid drop\n\t\tiif \"lo\" accept\n");
    if firewall.allow_icmp {
        rules.push_str("\t\t# ICMP (1) and ICMPv6 (58) by number: the image has no /etc/protocols.\n\t\tmeta l4proto { 1, 58 } accept\n");
    }
    if !firewall.allow_tcp.is_empty() {
        let ports: Vec<String> = firewall.allow_tcp.iter().map(|p| p.to_string()).collect();
        rules.push_str(&format!("\t\ttcp dport {{ {} }} accept\n", ports.join(", ")));
    }
    if !firewall.allow_udp.is_empty() {
        let ports: Vec<String> = firewall.allow_udp.iter().map(|p| p.to_string()).collect();
        rules.push_str(&format!("\t\tudp dport {{ {} }} accept\n", ports.join(", ")));
    }
    rules.push_str("\t}\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n");
    if !forward.is_empty() {
        rules.push_str("\t\tct state established,related accept\n\t\tct state invalid drop\n");
    }
    for rule in forward {
        let matched = match rule.protocol {
            "icmp" => "meta l4proto { 1, 58 }".to_owned(),
            protocol => {
                let ports: Vec<String> = rule.ports.iter().map(|p| p.to_string()).collect();
                format!("{protocol} dport {{ {} }}", ports.join(", "))
            }
        };
        rules.push_str(&format!("\t\tiifname \"{}\" oifname \"{}\" {matched} accept\n", rule.from, rule.to));
    }
    rules.push_str("\t}\n\tchain output {\n\t\ttype filter hook output priority filter; policy accept;\n\t}\n}\n");
    rules
}

/// Removes the manifest's paths; an entry may end in `/*` to empty a folder.
fn remove_paths(dir: &Path, remove: &[String]) -> Result<(), RootfsError> {
    for entry in remove {
        let relative = entry.trim_start_matches('/');
        if relative.is_empty() || relative.split('/').any(|part| part == "..") {
            continue;
        }
        if let Some(folder) = relative.strip_suffix("/*") {
            let path = dir.join(folder);
            if let Ok(children) = fs::read_dir(&path) {
                for child in children.flatten() {
                    remove_any(&child.path())?;
                }
            }
        } else {
            remove_any(&dir.join(relative))?;
        }
    }
    Ok(())
}

fn remove_any(path: &Path) -> Result<(), RootfsError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path).map_err(io("remove", path)),
        Ok(_) => fs::remove_file(path).map_err(io("remove", path)),
        Err(_) => Ok(()),
    }
}

fn apply_file_attrs(dir: &Path, manifest: &Manifest) -> Result<(), RootfsError> {
    for attr in &manifest.files {
        let relative = attr.path.trim_start_matches('/');
        let path = dir.join(relative);
        if fs::symlink_metadata(&path).is_err() {
            return Err(RootfsError::MissingFile { manifest: manifest.path.clone(), path: attr.path.clone() });
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(attr.mode)).map_err(io("set the mode of", &path))?;
        std::os::unix::fs::lchown(&path, Some(attr.uid), Some(attr.gid)).map_err(io("set the owner of", &path))?;
    }
    Ok(())
}

/// Sets mtime and atime of every entry, links included, to `epoch`.
fn set_times(dir: &Path, epoch: u64) -> Result<(), RootfsError> {
    let mut cmd = std::process::Command::new("find");
    cmd.arg(dir).args(["-depth", "-exec"]).arg(tool::find(tool::TOUCH.program).unwrap_or_else(|| "touch".into())).args(["-h", "-d"]).arg(format!("@{epoch}")).args(["{}", "+"]);
    tool::run(&mut cmd)?;
    Ok(())
}

/// Lists the tree's entries relative to its root, for logs and tests.
pub fn count_entries(dir: &Path) -> usize {
    fn walk(path: &Path, count: &mut usize) {
        if let Ok(children) = fs::read_dir(path) {
            for child in children.flatten() {
                *count += 1;
                if child.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    walk(&child.path(), count);
                }
            }
        }
    }
    let mut count = 0;
    walk(dir, &mut count);
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_forwards_only_stated_traffic() {
        let firewall = Firewall { allow_tcp: vec![], allow_udp: vec![], allow_icmp: true };
        let forward = [
            ForwardRule { from: "eth0".into(), to: "eth1".into(), protocol: "udp", ports: vec![5000, 5001] },
            ForwardRule { from: "eth1".into(), to: "eth0".into(), protocol: "icmp", ports: vec![] },
        ];
        let rules = nftables_ruleset(&firewall, &forward);
        let chain = rules.split("chain forward {").nth(1).and_then(|rest| rest.split('}').next()).unwrap_or("");
        assert!(chain.contains("policy drop;"), "{chain}");
        assert!(chain.contains("ct state established,related accept"), "{chain}");
        assert!(rules.contains("\t\tiifname \"eth0\" oifname \"eth1\" udp dport { 5000, 5001 } accept\n"), "{rules}");
        assert!(rules.contains("\t\tiifname \"eth1\" oifname \"eth0\" meta l4proto { 1, 58 } accept\n"), "{rules}");
    }

    #[test]
    fn ruleset_drops_inbound_except_stated_ports() {
        let firewall = Firewall { allow_tcp: vec![22, 443], allow_udp: vec![53], allow_icmp: false };
        let rules = nftables_ruleset(&firewall, &[]);
        assert!(rules.contains("type filter hook input priority filter; policy drop;"));
        assert!(rules.contains("type filter hook forward priority filter; policy drop;"));
        assert!(rules.contains("ct state established,related accept"));
        assert!(rules.contains("tcp dport { 22, 443 } accept"));
        assert!(rules.contains("udp dport { 53 } accept"));
        assert!(!rules.contains("l4proto"), "ICMP must not be allowed when allow_icmp is false");
    }
}
