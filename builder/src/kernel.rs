//! Kernel stage: builds the board's kernel (or takes it from the cache)
//! inside a Debian 13 build root, because kernel Rust needs rustc with
//! `rust-src`, bindgen and libclang versions that match Linux 6.12.
//!
//! The build root is made once with mmdebstrap and cached by its package
//! list. Each kernel is cached by the hash of everything that goes into it:
//! the build root key, the linux-source package version, the config
//! fragments, the release certificate, the boot policy, the LSM choice and
//! the build script. For `lsm = "ipe-rust"` the key also covers the sources
//! in `lsm/`. The root filesystem is never part of the key, so a new
//! release reuses the kernel.
//!
//! The C IPE builds from the pristine source tree (`/build/src` in the
//! root). The Rust IPE builds from a second tree (`/build/src-ipe-rust`)
//! into which `lsm/kernel/lay-in.sh` copies the LSM and the policy engine
//! before every build, so the two never share a tree.

use crate::board::{Board, Lsm};
use crate::cache::{Cache, KeyHasher};
use crate::progress;
use crate::tool::{self, ToolError};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

/// Debian suite of the build root.
pub const TOOLCHAIN_SUITE: &str = "trixie";
/// Mirror the build root is made from.
pub const TOOLCHAIN_MIRROR: &str = "http://deb.debian.org/debian";
/// Packages of the build root: the kernel's build dependencies, the Rust
/// toolchain that matches Linux 6.12, the kernel source and systemd-stub.
pub const TOOLCHAIN_PACKAGES: &[&str] = &[
    "build-essential", "bc", "bison", "flex", "libelf-dev", "libssl-dev", "cpio", "kmod", "python3",
    "xz-utils", "zstd", "rustc", "rust-src", "rustfmt", "bindgen", "libclang-dev", "clang", "llvm",
    "lld", "linux-source-6.12", "dwarves", "rsync", "file", "systemd-boot-efi",
];
/// The only kernel source form accepted so far.
pub const SOURCE_DEBIAN_6_12: &str = "debian:linux-source-6.12";
const SOURCE_TARBALL: &str = "/usr/src/linux-source-6.12.tar.xz";
const STUB_IN_ROOT: &str = "usr/lib/systemd/boot/efi/linuxx64.efi.stub";
const BUILD_SCRIPT: &str = include_str!("kernel/build-in-root.sh");
const LAY_IN_SCRIPT: &str = include_str!("kernel/lay-in-root.sh");
/// The Rust LSM's kernel integration and the policy engine, copied into the
/// build root for every `ipe-rust` build.
const LSM_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../lsm");
/// Folders of [`LSM_DIR`] copied into the build root; their files are all
/// part of the kernel cache key. The test vectors feed the kernel's
/// optional self test.
const LSM_SOURCE_FOLDERS: [&str; 4] = ["kernel", "ipe/src", "ipe/tests/data/parse", "ipe/tests/data/eval"];
/// The engine's manifest, for its version.
const LSM_ENGINE_MANIFEST: &str = "ipe/Cargo.toml";
const COMPLETE_MARKER: &str = ".applbuild-complete";
/// Source trees inside the build root: the pristine one for the C IPE and
/// the one the Rust IPE is laid into.
const SOURCE_DIR: &str = "/build/src";
const SOURCE_DIR_IPE_RUST: &str = "/build/src-ipe-rust";
/// Folder inside the build root that receives a copy of the `lsm/` sources.
const LSM_IN_ROOT: &str = "/build/lsm";

/// The fixed boot policy compiled into every kernel: only code from the
/// initramfs may execute until the init activates the release policy.
pub const BOOT_POLICY: &str = "policy_name=applbuild-boot policy_version=0.0.0\n\
DEFAULT action=DENY\n\
op=EXECUTE boot_verified=TRUE action=ALLOW\n";

/// Environment variable naming a file that replaces the boot policy. It
/// exists for tests of a boot policy that fails to parse, which stops the
/// Rust LSM's boot. Never set it for an image you ship.
pub const TEST_BOOT_POLICY_ENV: &str = "APPLBUILD_TEST_BOOT_POLICY_FILE";

/// Returns the boot policy text: [`BOOT_POLICY`], or the file named by
/// [`TEST_BOOT_POLICY_ENV`] when that is set.
fn boot_policy() -> Result<String, KernelError> {
    match std::env::var_os(TEST_BOOT_POLICY_ENV) {
        Some(path) => {
            let path = PathBuf::from(path);
            tracing::warn!("kernel: {TEST_BOOT_POLICY_ENV} is set: the boot policy comes from {}; this kernel is for tests only", path.display());
            fs::read_to_string(&path).map_err(io("read the test boot policy", &path))
        }
        None => Ok(BOOT_POLICY.to_string()),
    }
}

/// Errors of the kernel stage.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("unsupported kernel source {0:?}")]
    UnsupportedSource(String),
    #[error("the kernel build needs root (it runs mmdebstrap and chroot); run applbuild as root")]
    NotRoot,
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("failed to {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("the kernel build failed; the last lines of {log}:\n{tail}")]
    BuildFailed { log: PathBuf, tail: String },
    #[error("the final kernel .config lacks options the board requires: {}", .0.join(", "))]
    MissingOptions(Vec<String>),
    #[error("could not read the version of linux-source-6.12 in the build root {0}")]
    SourceVersion(PathBuf),
    #[error("the Rust IPE sources are missing: {0} not found")]
    LsmSourcesMissing(PathBuf),
}

impl KernelError {
    pub fn exit_code(&self) -> i32 {
        match self {
            KernelError::Tool(err) => err.exit_code(),
            KernelError::UnsupportedSource(_) | KernelError::NotRoot => 2,
            _ => 1,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            KernelError::Tool(err) => err.hint(),
            KernelError::UnsupportedSource(_) => Some(format!("set kernel.source = \"{SOURCE_DEBIAN_6_12}\"")),
            KernelError::MissingOptions(_) => Some("an option's dependencies are unmet or it conflicts with another (for example MODVERSIONS drops RUST); check the fragments".into()),
            KernelError::LsmSourcesMissing(_) => Some("run applbuild from a checkout that contains lsm/kernel and lsm/ipe, or set kernel.lsm = \"ipe\"".into()),
            _ => None,
        }
    }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> KernelError + 'a {
    move |source| KernelError::Io { action, path: path.to_path_buf(), source }
}

/// A built kernel in the cache.
#[derive(Debug, Clone)]
pub struct KernelOutput {
    pub bzimage: PathBuf,
    pub stub: PathBuf,
    pub config: PathBuf,
    pub key: String,
    pub cached: bool,
    /// Version of the linux-source-6.12 package in the build root.
    pub source_version: String,
    /// The LSM built in: `ipe` or `ipe-rust`.
    pub lsm: &'static str,
    /// The Debian package of the EFI stub in the build root.
    pub stub_package: StubPackage,
}

/// The Debian package that provides the EFI stub.
#[derive(Debug, Clone)]
pub struct StubPackage {
    pub name: &'static str,
    /// Installed version; `None` if the build root lacks the package.
    pub version: Option<String>,
    /// Text of the package's copyright file.
    pub copyright: Option<String>,
}

/// Returns the kernel for `board`, building it when the cache has none for
/// these inputs. `cert_pem` is the release certificate for the builtin
/// trusted keyring.
pub fn build(board: &Board, cert_pem: &[u8], cache: &Cache, no_cache: bool) -> Result<KernelOutput, KernelError> {
    let inputs = KernelInputs::read(board)?;

    let root = toolchain_root(cache)?;
    let source_version = source_version(&root)?;
    let lsm = lsm_name(board.kernel.lsm);
    let key = inputs.key(cert_pem, Some(&source_version));
    let KernelInputs { fragments, boot_policy, lsm_sources, .. } = inputs;
    let name = format!("{lsm}-{key}");
    let generated = generated_fragment(board.kernel.lsm, &name, board.ipe.enforce);
    let entry = cache.dir("kernel").join(&name);
    let output = KernelOutput {
        bzimage: entry.join("bzImage"),
        stub: entry.join("linuxx64.efi.stub"),
        config: entry.join("config"),
        key: key.clone(),
        cached: true,
        source_version: source_version.clone(),
        lsm,
        stub_package: stub_package(&root)?,
    };
    if !no_cache && entry.join(COMPLETE_MARKER).is_file() {
        tracing::info!(key = %key, "kernel: using the cached build {}", entry.display());
        return Ok(output);
    }

    if !is_root() {
        return Err(KernelError::NotRoot);
    }
    // The make output folder is per board and LSM, not per key, so a
    // changed fragment or LSM source rebuilds incrementally. Its lock lets
    // one applbuild process (a CI job, a test) build there at a time; it is
    // released when `_lock` is dropped at the end of this function.
    let out_name = format!("{}-{lsm}", board.name);
    let _lock = lock_build(&root, &out_name)?;
    if !no_cache && entry.join(COMPLETE_MARKER).is_file() {
        tracing::info!(key = %key, "kernel: another process built it meanwhile; using {}", entry.display());
        return Ok(output);
    }
    let started = Instant::now();
    let in_dir = root.join("build/in").join(&name);
    prepare_inputs(&in_dir, &fragments, &generated, cert_pem, &boot_policy)?;
    let log = cache.dir("kernel").join(format!("{name}.log"));
    let source_dir = match board.kernel.lsm {
        Lsm::Ipe => SOURCE_DIR,
        Lsm::IpeRust => {
            write_lsm_sources(&root.join(LSM_IN_ROOT.trim_start_matches('/')), &lsm_sources)?;
            let script = in_dir.join("lay-in.sh");
            fs::write(&script, LAY_IN_SCRIPT).map_err(io("write", &script))?;
            SOURCE_DIR_IPE_RUST
        }
    };
    run_build(&root, &name, &out_name, source_dir, board.kernel.lsm, &log)?;

    let out_dir = root.join("build/out").join(&out_name);
    check_config(&out_dir.join(".config"), &fragments, &generated)?;
    store(&root, &out_dir, &entry)?;
    let size = fs::metadata(&output.bzimage).map(|m| m.len()).unwrap_or(0);
    tracing::info!(key = %key, bytes = size, seconds = started.elapsed().as_secs(), "kernel: built {}", output.bzimage.display());
    Ok(KernelOutput { cached: false, ..output })
}

/// Inputs of a kernel besides the build root, read from the board,
/// the boot policy and the `lsm/` sources of this source tree.
struct KernelInputs {
    lsm: Lsm,
    enforce: bool,
    fragments: Vec<(String, Vec<u8>)>,
    boot_policy: String,
    lsm_sources: Vec<(String, Vec<u8>)>,
}

impl KernelInputs {
    fn read(board: &Board) -> Result<KernelInputs, KernelError> {
        if board.kernel.source != SOURCE_DEBIAN_6_12 {
            return Err(KernelError::UnsupportedSource(board.kernel.source.clone()));
        }
        let lsm_sources = match board.kernel.lsm {
            Lsm::Ipe => Vec::new(),
            Lsm::IpeRust => read_lsm_sources(Path::new(LSM_DIR))?,
        };
        Ok(KernelInputs { lsm: board.kernel.lsm, enforce: board.ipe.enforce, fragments: read_fragments(board)?, boot_policy: boot_policy()?, lsm_sources })
    }

    /// Computes the cache key. With the build root's kernel source version
    /// the key names the cache entry. Without it, the key covers every other
    /// input, so it can be computed before the build root exists.
    ///
    /// The key covers what goes into the kernel and nothing about the board
    /// itself, so boards with the same source, fragments, certificate, LSM
    /// and enforce setting share one cache entry. The generated fragment is
    /// hashed with a placeholder for its input folder, which is named after
    /// the key.
    fn key(&self, cert_pem: &[u8], source_version: Option<&str>) -> String {
        let mut key = KeyHasher::new(if source_version.is_some() { "applbuild kernel v2" } else { "applbuild kernel inputs v1" });
        key.add_str(&toolchain_key());
        if let Some(version) = source_version {
            key.add_str(version);
        }
        key.add_str(lsm_name(self.lsm));
        for (file_name, content) in &self.fragments {
            key.add_str(file_name).add(content);
        }
        key.add_str(&generated_fragment(self.lsm, "INPUTS", self.enforce));
        key.add(cert_pem).add_str(&self.boot_policy).add_str(BUILD_SCRIPT);
        if !self.lsm_sources.is_empty() {
            key.add_str(LAY_IN_SCRIPT);
            for (path, content) in &self.lsm_sources {
                key.add_str(path).add(content);
            }
        }
        key.short_hex()
    }
}

/// The kernel's cache keys, computed without building anything.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KernelKeys {
    /// Hash of every input except the kernel source version, which only
    /// the build root records.
    pub inputs: String,
    /// The cache entry's name (`<lsm>-<key>`), when the build root exists.
    pub entry: Option<String>,
    /// The key part of `entry`.
    #[serde(skip)]
    pub key: Option<String>,
    /// Whether that entry is complete in the cache.
    pub cached: bool,
}

/// Returns the kernel's cache keys for `board` without building or making
/// the build root. The entry name needs the build root, so it is `None`
/// until the build root exists.
pub fn keys(board: &Board, cert_pem: &[u8], cache: &Cache) -> Result<KernelKeys, KernelError> {
    let inputs = KernelInputs::read(board)?;

    let root = toolchain_dir(cache);
    let key = if root.join(COMPLETE_MARKER).is_file() { Some(inputs.key(cert_pem, Some(&source_version(&root)?))) } else { None };
    let entry = key.as_ref().map(|key| format!("{}-{key}", lsm_name(board.kernel.lsm)));
    let cached = entry.as_ref().is_some_and(|name| cache.dir("kernel").join(name).join(COMPLETE_MARKER).is_file());
    Ok(KernelKeys { inputs: inputs.key(cert_pem, None), entry, key, cached })
}

/// Returns the kernel's cache key and entry for `board` like [`keys`], but
/// first makes the build root when it is missing, so the entry is known.
pub fn plan(board: &Board, cert_pem: &[u8], cache: &Cache) -> Result<KernelKeys, KernelError> {
    toolchain_root(cache)?;
    keys(board, cert_pem, cache)
}

/// Returns the build root's folder name, `<suite>-<key of its package
/// list>`. The build root is made from these constants only, so the name
/// is known before it exists.
pub fn toolchain_name() -> String {
    format!("{TOOLCHAIN_SUITE}-{}", toolchain_key())
}

fn toolchain_dir(cache: &Cache) -> PathBuf {
    cache.dir("toolchain").join(toolchain_name())
}

fn lsm_name(lsm: Lsm) -> &'static str {
    match lsm {
        Lsm::Ipe => "ipe",
        Lsm::IpeRust => "ipe-rust",
    }
}

fn is_root() -> bool {
    fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

/// Reads the board's fragments, named by position so they merge in order.
fn read_fragments(board: &Board) -> Result<Vec<(String, Vec<u8>)>, KernelError> {
    let mut fragments = Vec::new();
    for (index, path) in board.kernel.config.iter().enumerate() {
        let content = fs::read(path).map_err(io("read the kernel config fragment", path))?;
        fragments.push((format!("{:02}-board.config", 10 + index), content));
    }
    Ok(fragments)
}

/// The options the builder sets itself: the LSM, the trusted certificate
/// and the boot policy, with paths as seen inside the build root. With
/// `enforce`, the Rust LSM also gets the enforce lock, so enforcing mode
/// cannot be switched off at run time.
fn generated_fragment(lsm: Lsm, name: &str, enforce: bool) -> String {
    let mut text = String::from("# Written by applbuild.\n");
    match lsm {
        Lsm::Ipe => {
            text.push_str("CONFIG_SECURITY_IPE=y\nCONFIG_IPE_PROP_DM_VERITY=y\nCONFIG_IPE_PROP_DM_VERITY_SIGNATURE=y\n");
            text.push_str("CONFIG_IPE_PROP_FS_VERITY=y\nCONFIG_IPE_PROP_FS_VERITY_BUILTIN_SIG=y\n");
            text.push_str(&format!("CONFIG_IPE_BOOT_POLICY=\"/build/in/{name}/boot_policy.pol\"\n"));
        }
        Lsm::IpeRust => {
            text.push_str("CONFIG_SECURITY_IPE_RUST=y\nCONFIG_IPE_RUST_PROP_DM_VERITY=y\nCONFIG_IPE_RUST_PROP_DM_VERITY_SIGNATURE=y\n");
            text.push_str("CONFIG_IPE_RUST_PROP_FS_VERITY=y\nCONFIG_IPE_RUST_PROP_FS_VERITY_BUILTIN_SIG=y\n");
            if enforce {
                text.push_str("CONFIG_SECURITY_IPE_RUST_ENFORCE_LOCK=y\n");
            }
            text.push_str(&format!("CONFIG_IPE_RUST_BOOT_POLICY=\"/build/in/{name}/boot_policy.pol\"\n"));
        }
    }
    text.push_str("CONFIG_LSM=\"ipe\"\n");
    text.push_str(&format!("CONFIG_SYSTEM_TRUSTED_KEYS=\"/build/in/{name}/cert.pem\"\n"));
    text
}

/// Reads every file of the [`LSM_SOURCE_FOLDERS`] and the engine manifest,
/// as (path relative to `lsm/`, content) sorted by path.
fn read_lsm_sources(lsm_dir: &Path) -> Result<Vec<(String, Vec<u8>)>, KernelError> {
    let mut sources = Vec::new();
    for folder in LSM_SOURCE_FOLDERS {
        let dir = lsm_dir.join(folder);
        if !dir.is_dir() {
            return Err(KernelError::LsmSourcesMissing(dir));
        }
        for entry in fs::read_dir(&dir).map_err(io("list", &dir))? {
            let path = entry.map_err(io("list", &dir))?.path();
            if !path.is_file() {
                continue;
            }
            let content = fs::read(&path).map_err(io("read", &path))?;
            let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            sources.push((format!("{folder}/{file_name}"), content));
        }
    }
    let manifest = lsm_dir.join(LSM_ENGINE_MANIFEST);
    let content = fs::read(&manifest).map_err(|_| KernelError::LsmSourcesMissing(manifest.clone()))?;
    sources.push((LSM_ENGINE_MANIFEST.to_string(), content));
    sources.sort();
    Ok(sources)
}

/// Replaces `dest` with the LSM sources, keeping their relative paths.
fn write_lsm_sources(dest: &Path, sources: &[(String, Vec<u8>)]) -> Result<(), KernelError> {
    if dest.exists() {
        fs::remove_dir_all(dest).map_err(io("clear", dest))?;
    }
    for (relative, content) in sources {
        let path = dest.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io("create", parent))?;
        }
        fs::write(&path, content).map_err(io("write", &path))?;
    }
    Ok(())
}

fn toolchain_key() -> String {
    let mut key = KeyHasher::new("applbuild toolchain v1");
    key.add_str(TOOLCHAIN_SUITE).add_str(TOOLCHAIN_MIRROR);
    for package in TOOLCHAIN_PACKAGES {
        key.add_str(package);
    }
    key.short_hex()
}

/// Takes an exclusive lock on the build folder `name`, waiting for another
/// process's build to finish first.
fn lock_build(root: &Path, name: &str) -> Result<fs::File, KernelError> {
    let dir = root.join("build/out");
    fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    let path = dir.join(format!("{name}.lock"));
    let file = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io("open", &path))?;
    if file.try_lock().is_err() {
        tracing::info!("kernel: waiting for another build of {name} to finish");
        file.lock().map_err(io("lock", &path))?;
    }
    Ok(file)
}

/// Returns the Debian build root, making it with mmdebstrap on first use.
pub fn toolchain_root(cache: &Cache) -> Result<PathBuf, KernelError> {
    let root = toolchain_dir(cache);
    if root.join(COMPLETE_MARKER).is_file() {
        return Ok(root);
    }
    if !is_root() {
        return Err(KernelError::NotRoot);
    }
    tool::require(&[tool::MMDEBSTRAP, tool::CHROOT, tool::MOUNT, tool::UMOUNT])?;
    let parent = cache.dir("toolchain");
    fs::create_dir_all(&parent).map_err(io("create", &parent))?;
    let partial = parent.join(format!("{}.partial", root.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
    if partial.exists() {
        fs::remove_dir_all(&partial).map_err(io("remove the unfinished build root", &partial))?;
    }
    let bar = progress::spinner("kernel");
    bar.set_message(format!("making the Debian {TOOLCHAIN_SUITE} build root (about 1 minute and 2 GB, once)"));
    tracing::info!("kernel: making the Debian {TOOLCHAIN_SUITE} build root in {}", root.display());
    let mut cmd = tool::command(tool::MMDEBSTRAP);
    cmd.arg("--variant=apt").arg(format!("--include={}", TOOLCHAIN_PACKAGES.join(","))).arg(TOOLCHAIN_SUITE).arg(&partial).arg(TOOLCHAIN_MIRROR);
    let result = tool::run(&mut cmd);
    bar.finish_and_clear();
    result?;
    fs::write(partial.join(COMPLETE_MARKER), b"").map_err(io("write", &partial))?;
    fs::rename(&partial, &root).map_err(io("rename the build root to", &root))?;
    Ok(root)
}

/// Reads the linux-source-6.12 version from the build root's dpkg status.
fn source_version(root: &Path) -> Result<String, KernelError> {
    package_version(root, "linux-source-6.12")?.ok_or_else(|| KernelError::SourceVersion(root.to_path_buf()))
}

/// Returns the version of installed package `name` from the dpkg status of
/// the build root, or `None` when it is not installed.
fn package_version(root: &Path, name: &str) -> Result<Option<String>, KernelError> {
    let status_path = root.join("var/lib/dpkg/status");
    let status = fs::read_to_string(&status_path).map_err(io("read", &status_path))?;
    let entry = crate::deb822::parse(&status).into_iter().find(|entry| entry.first_line("Package") == Some(name));
    Ok(entry.and_then(|entry| entry.first_line("Version").map(str::to_string)))
}

/// Package that provides the EFI stub, whose file is [`STUB_IN_ROOT`].
const STUB_PACKAGE: &str = "systemd-boot-efi";

/// Reads the version and copyright file of the stub's package in the build
/// root, for the SBOM.
fn stub_package(root: &Path) -> Result<StubPackage, KernelError> {
    let copyright = crate::debpkg::resolve_in_root(root, &Path::new("usr/share/doc").join(STUB_PACKAGE).join("copyright")).and_then(|path| fs::read_to_string(path).ok());
    Ok(StubPackage { name: STUB_PACKAGE, version: package_version(root, STUB_PACKAGE)?, copyright })
}

fn prepare_inputs(in_dir: &Path, fragments: &[(String, Vec<u8>)], generated: &str, cert_pem: &[u8], boot_policy: &str) -> Result<(), KernelError> {
    if in_dir.exists() {
        fs::remove_dir_all(in_dir).map_err(io("clear", in_dir))?;
    }
    fs::create_dir_all(in_dir).map_err(io("create", in_dir))?;
    for (name, content) in fragments {
        let path = in_dir.join(name);
        fs::write(&path, content).map_err(io("write", &path))?;
    }
    let files: [(&str, &[u8]); 3] = [("90-applbuild.config", generated.as_bytes()), ("cert.pem", cert_pem), ("boot_policy.pol", boot_policy.as_bytes())];
    for (name, content) in files {
        let path = in_dir.join(name);
        fs::write(&path, content).map_err(io("write", &path))?;
    }
    let script = in_dir.join("build.sh");
    fs::write(&script, BUILD_SCRIPT).map_err(io("write", &script))
}

/// Runs the build script through chroot with /proc mounted, showing the
/// number of compiled objects and writing the full output to `log`.
fn run_build(root: &Path, name: &str, out_name: &str, source_dir: &str, lsm: Lsm, log: &Path) -> Result<(), KernelError> {
    if let Some(parent) = log.parent() {
        fs::create_dir_all(parent).map_err(io("create", parent))?;
    }
    let proc_dir = root.join("proc");
    let mounted = mount_proc(&proc_dir)?;
    let result = run_build_mounted(root, name, out_name, source_dir, lsm, log);
    if mounted {
        let _ = tool::run(tool::command(tool::UMOUNT).arg(&proc_dir));
    }
    result
}

fn mount_proc(proc_dir: &Path) -> Result<bool, KernelError> {
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    let target = proc_dir.to_string_lossy();
    if mounts.lines().any(|line| line.split(' ').nth(1) == Some(target.as_ref())) {
        return Ok(false);
    }
    tool::run(tool::command(tool::MOUNT).args(["-t", "proc", "proc"]).arg(proc_dir))?;
    Ok(true)
}

fn run_build_mounted(root: &Path, name: &str, out_name: &str, source_dir: &str, lsm: Lsm, log: &Path) -> Result<(), KernelError> {
    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut log_file = fs::File::create(log).map_err(io("create", log))?;
    let bar = progress::spinner("kernel");
    bar.set_message("configuring");
    tracing::info!("kernel: building {name} in /build/out/{out_name} with {jobs} jobs (about 5 minutes on 2 cores); log: {}", log.display());

    let mut cmd = tool::command(tool::CHROOT);
    cmd.arg(root)
        .arg("/usr/bin/env")
        .arg("-i")
        .arg("PATH=/usr/sbin:/usr/bin:/sbin:/bin")
        .arg("HOME=/root")
        .arg(format!("SRC_TARBALL={SOURCE_TARBALL}"))
        .arg(format!("SRC_DIR={source_dir}"))
        .arg(format!("LSM_DIR={LSM_IN_ROOT}"))
        .arg(format!("IN_DIR=/build/in/{name}"))
        .arg(format!("OUT_DIR=/build/out/{out_name}"))
        .arg(format!("JOBS={jobs}"))
        // Fixed build metadata so the same inputs give the same kernel.
        .arg("KBUILD_BUILD_TIMESTAMP=1970-01-01 00:00:00 UTC")
        .arg("KBUILD_BUILD_USER=applbuild")
        .arg("KBUILD_BUILD_HOST=applbuild")
        .arg("/bin/sh");
    match lsm {
        Lsm::Ipe => cmd.arg(format!("/build/in/{name}/build.sh")),
        // lay-in.sh unpacks the tree when needed, lays the LSM in, then runs build.sh.
        Lsm::IpeRust => cmd.arg(format!("/build/in/{name}/lay-in.sh")),
    };
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    tracing::debug!(command = %tool::display(&cmd), "running");
    let mut child = cmd.spawn().map_err(|source| ToolError::Spawn { program: "chroot".into(), source })?;

    // Merge stderr into the same log through a thread; count objects from stdout.
    let stderr = child.stderr.take();
    let stderr_log = log.to_path_buf();
    let stderr_thread = std::thread::spawn(move || {
        let mut lines = Vec::new();
        if let Some(stderr) = stderr {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.push(line);
            }
        }
        (stderr_log, lines)
    });
    let mut compiled = 0u64;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = writeln!(log_file, "{line}");
            let trimmed = line.trim_start();
            if trimmed.starts_with("CC") || trimmed.starts_with("RUSTC") || trimmed.starts_with("AS") || trimmed.starts_with("LD") {
                compiled += 1;
                if compiled.is_multiple_of(20) {
                    bar.set_message(format!("{compiled} objects built: {trimmed}"));
                }
            } else if trimmed.starts_with("applbuild:") {
                bar.set_message(trimmed.to_string());
            }
        }
    }
    let status = child.wait().map_err(|source| ToolError::Spawn { program: "chroot".into(), source })?;
    let (_, err_lines) = stderr_thread.join().unwrap_or_else(|_| (PathBuf::new(), Vec::new()));
    for line in &err_lines {
        let _ = writeln!(log_file, "{line}");
    }
    bar.finish_and_clear();
    if !status.success() {
        let text = fs::read_to_string(log).unwrap_or_default();
        return Err(KernelError::BuildFailed { log: log.to_path_buf(), tail: tool::last_lines(&text, 20) });
    }
    Ok(())
}

/// Fails when an option set in any fragment is missing or different in the
/// final `.config` (olddefconfig drops options with unmet dependencies
/// without a word).
fn check_config(config_path: &Path, fragments: &[(String, Vec<u8>)], generated: &str) -> Result<(), KernelError> {
    let config = fs::read_to_string(config_path).map_err(io("read", config_path))?;
    let actual: std::collections::HashMap<&str, &str> = config.lines().filter(|l| l.starts_with("CONFIG_")).filter_map(|l| l.split_once('=')).collect();
    let mut missing = Vec::new();
    let mut wanted = String::new();
    for (_, content) in fragments {
        wanted.push_str(&String::from_utf8_lossy(content));
        wanted.push('\n');
    }
    wanted.push_str(generated);
    for line in wanted.lines() {
        let line = line.trim();
        if let Some((name, value)) = line.split_once('=') {
            if name.starts_with("CONFIG_") && actual.get(name) != Some(&value) {
                missing.push(format!("{name}={value}"));
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(KernelError::MissingOptions(missing))
    }
}

/// Copies the results into the cache entry through a temporary folder.
fn store(root: &Path, out_dir: &Path, entry: &Path) -> Result<(), KernelError> {
    let parent = entry.parent().unwrap_or(entry);
    fs::create_dir_all(parent).map_err(io("create", parent))?;
    let partial = entry.with_extension("partial");
    if partial.exists() {
        fs::remove_dir_all(&partial).map_err(io("clear", &partial))?;
    }
    fs::create_dir_all(&partial).map_err(io("create", &partial))?;
    let copies = [
        (out_dir.join("arch/x86/boot/bzImage"), partial.join("bzImage")),
        (out_dir.join(".config"), partial.join("config")),
        (root.join(STUB_IN_ROOT), partial.join("linuxx64.efi.stub")),
    ];
    for (from, to) in &copies {
        fs::copy(from, to).map_err(io("copy", from))?;
    }
    fs::write(partial.join(COMPLETE_MARKER), b"").map_err(io("write", &partial))?;
    if entry.exists() {
        fs::remove_dir_all(entry).map_err(io("replace", entry))?;
    }
    fs::rename(&partial, entry).map_err(io("rename", entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("config");
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn check_config_reports_dropped_options() {
        let dir = tempfile::tempdir().unwrap();
        let config = write(dir.path(), "CONFIG_64BIT=y\n# CONFIG_RUST is not set\nCONFIG_LSM=\"landlock\"\n");
        let fragments = vec![("10-board.config".to_string(), b"# comment\nCONFIG_64BIT=y\nCONFIG_RUST=y\n".to_vec())];
        let err = check_config(&config, &fragments, "CONFIG_LSM=\"ipe\"\n").unwrap_err();
        match err {
            KernelError::MissingOptions(missing) => assert_eq!(missing, vec!["CONFIG_RUST=y".to_string(), "CONFIG_LSM=\"ipe\"".to_string()]),
            other => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn check_config_accepts_complete_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = write(dir.path(), "CONFIG_64BIT=y\nCONFIG_RUST=y\nCONFIG_LSM=\"ipe\"\n");
        let fragments = vec![("10-board.config".to_string(), b"CONFIG_64BIT=y\nCONFIG_RUST=y\n".to_vec())];
        assert!(check_config(&config, &fragments, "CONFIG_LSM=\"ipe\"\n").is_ok());
    }

    #[test]
    fn generated_fragment_names_inputs_inside_root() {
        let text = generated_fragment(Lsm::Ipe, "qemu-x86_64-ipe", true);
        assert!(text.contains("CONFIG_SYSTEM_TRUSTED_KEYS=\"/build/in/qemu-x86_64-ipe/cert.pem\""));
        assert!(text.contains("CONFIG_IPE_BOOT_POLICY=\"/build/in/qemu-x86_64-ipe/boot_policy.pol\""));
        assert!(text.contains("CONFIG_LSM=\"ipe\""));
        assert!(text.contains("CONFIG_SECURITY_IPE=y"));
    }

    #[test]
    fn generated_fragment_for_rust_lsm() {
        let text = generated_fragment(Lsm::IpeRust, "qemu-x86_64-ipe-rust", true);
        assert!(text.contains("CONFIG_SECURITY_IPE_RUST=y"));
        assert!(text.contains("CONFIG_IPE_RUST_PROP_DM_VERITY_SIGNATURE=y"));
        assert!(text.contains("CONFIG_SECURITY_IPE_RUST_ENFORCE_LOCK=y"));
        assert!(text.contains("CONFIG_IPE_RUST_BOOT_POLICY=\"/build/in/qemu-x86_64-ipe-rust/boot_policy.pol\""));
        assert!(text.contains("CONFIG_LSM=\"ipe\""));
        assert!(!text.contains("CONFIG_SECURITY_IPE=y"));
        assert!(!text.contains("CONFIG_IPE_BOOT_POLICY"));
    }

    #[test]
    fn generated_fragment_permissive_has_no_lock() {
        let text = generated_fragment(Lsm::IpeRust, "qemu-x86_64-ipe-rust", false);
        assert!(!text.contains("ENFORCE_LOCK"));
    }

    #[test]
    fn lsm_sources_cover_glue_engine_and_vectors() {
        let sources = read_lsm_sources(Path::new(LSM_DIR)).unwrap();
        let paths: Vec<&str> = sources.iter().map(|(path, _)| path.as_str()).collect();
        for expected in ["kernel/lay-in.sh", "kernel/ipe_rust.rs", "kernel/ipe.c", "ipe/src/lib.rs", "ipe/Cargo.toml", "ipe/tests/data/parse/expected.tsv", "ipe/tests/data/eval/cases.tsv"] {
            assert!(paths.contains(&expected), "{expected} missing from {paths:?}");
        }
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
    }

    #[test]
    fn lsm_sources_missing_folder() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_lsm_sources(dir.path()).unwrap_err();
        assert!(matches!(err, KernelError::LsmSourcesMissing(ref path) if path.ends_with("kernel")), "{err}");
    }

    #[test]
    fn boot_policy_allows_only_boot_verified_execution() {
        assert!(crate::policy::check(BOOT_POLICY.as_bytes()).is_ok());
        let rules: Vec<&str> = BOOT_POLICY.lines().skip(1).collect();
        assert_eq!(rules, vec!["DEFAULT action=DENY", "op=EXECUTE boot_verified=TRUE action=ALLOW"]);
    }
}
