//! `applbuild cache-key`: the names of a board's cache entries, computed
//! without building anything, so that a CI system can restore and save
//! its caches under keys that change exactly when their inputs change.
//!
//! - `toolchain`: the Debian build root (`toolchain/<name>`), named after
//!   its package list. Known without the build root.
//! - `kernel-inputs`: every kernel input except the kernel source version
//!   (the board's fragments, the certificate, the LSM and its sources, the
//!   enforce setting, the boot policy, the build script, the build root's
//!   name). Known without the build root.
//! - `kernel`: the kernel cache entry (`kernel/<lsm>-<key>`). Its key also
//!   covers the linux-source version installed in the build root, so it is
//!   only known once the build root exists (restored from a CI cache or
//!   made by `applbuild kernel --print-key`).
//! - `debs`: the package downloads of the board's manifest.
//!
//! Nothing here reads the board name into a key: boards that differ only
//! in name, manifest or disk layout get the same kernel keys.

use crate::board;
use crate::cache::Cache;
use crate::error::Error;
use crate::{kernel, keys, manifest, rootfs};
use serde::Serialize;
use std::path::Path;

/// The cache keys of one board, printed by `applbuild cache-key`.
#[derive(Debug, Clone, Serialize)]
pub struct CacheKeys {
    /// The board's name, as in `out/<board>/<release>/`.
    pub board: String,
    pub release: String,
    /// The build root folder name under `toolchain/`.
    pub toolchain: String,
    /// Hash of the kernel inputs other than the kernel source version.
    pub kernel_inputs: String,
    /// The kernel entry folder name under `kernel/`; `None` while the build root is missing.
    pub kernel: Option<String>,
    /// Whether that kernel entry is complete in the cache.
    pub kernel_cached: bool,
    /// `<suite>-<hash>` of the manifest's package list; `None` for a tarball or directory source.
    pub debs: Option<String>,
}

impl CacheKeys {
    /// `name=value` lines, the form GitHub's `$GITHUB_OUTPUT` and GitLab's
    /// dotenv reports read. A key that is not known is left out.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!("board={}", self.board), format!("release={}", self.release), format!("toolchain={}", self.toolchain), format!("kernel-inputs={}", self.kernel_inputs)];
        if let Some(kernel) = &self.kernel {
            lines.push(format!("kernel={kernel}"));
            lines.push(format!("kernel-cached={}", self.kernel_cached));
        }
        if let Some(debs) = &self.debs {
            lines.push(format!("debs={debs}"));
        }
        lines
    }
}

/// Computes the cache keys of the board file at `board_path`, with the
/// certificate of `keys_dir` (default: the board's `[keys] dir`). Only the
/// certificate is read, never the private key.
///
/// # Errors
///
/// The board, its manifest, a kernel fragment or the certificate cannot be
/// read or is invalid.
pub fn cache_keys(board_path: &Path, keys_dir: Option<&Path>, cache: &Cache) -> Result<CacheKeys, Error> {
    let board = board::load_with_keys(board_path, keys_dir)?;
    let manifest = manifest::load(&board.manifest)?;
    let cert_pem = keys::certificate_pem(keys_dir.unwrap_or(&board.keys.dir))?;

    let kernel = kernel::keys(&board, cert_pem.as_bytes(), cache)?;

    Ok(CacheKeys {
        board: board.name.clone(),
        release: board.release.to_string(),
        toolchain: kernel::toolchain_name(),
        kernel_inputs: kernel.inputs,
        kernel: kernel.entry,
        kernel_cached: kernel.cached,
        debs: rootfs::debs_key(&manifest),
    })
}
