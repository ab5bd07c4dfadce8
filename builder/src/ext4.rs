//! Ext4 stage: turns the staging tree into an ext4 image with e2fsprogs
//! (`mke2fs -d`), checks it with `e2fsck -fn` and reads it back with the
//! `ext4-view` crate to list every regular file.
//!
//! Reproducibility: the UUID and directory hash seed come from the caller
//! (derived from the build inputs), `E2FSPROGS_FAKE_TIME` fixes the
//! superblock times, and the rootfs stage has set mtime and atime. mke2fs
//! 1.47.0 still copies each inode's ctime from the staging tree, where it is
//! the time the file was written and cannot be set, so after mke2fs every
//! inode's ctime (and atime, which reading the tree may have moved) is
//! rewritten with one `debugfs -w -f` batch.

use crate::tool::{self, ToolError};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Filesystem block size in bytes; equal to the dm-verity data block size.
pub const BLOCK_SIZE: u64 = 4096;
/// Free space added on top of the content, in bytes.
const HEADROOM_BYTES: u64 = 16 << 20;
/// Bytes reserved per inode when sizing the image: mke2fs's 256-byte inode
/// plus directory entry and bitmap overhead, rounded up.
const INODE_OVERHEAD: u64 = 512;

/// Errors of the ext4 stage.
#[derive(Debug, thiserror::Error)]
pub enum Ext4Error {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("failed to {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("file name {0:?} in the root tree contains a double quote or a line break, which debugfs cannot address; rename it")]
    UnsupportedName(PathBuf),
    #[error("failed to read back the ext4 image {path}: {message}")]
    ReadBack { path: PathBuf, message: String },
    #[error("the root tree is too large: its size overflows")]
    Overflow,
}

impl Ext4Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Ext4Error::Tool(err) => err.exit_code(),
            Ext4Error::UnsupportedName(_) => 2,
            _ => 1,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Ext4Error::Tool(err) => err.hint(),
            _ => None,
        }
    }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Ext4Error + 'a {
    move |source| Ext4Error::Io { action, path: path.to_path_buf(), source }
}

/// One regular file of the image.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileEntry {
    pub path: String,
    /// Permission bits and file type, as in `st_mode`.
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
}

/// The ext4 image and what it holds.
#[derive(Debug, Clone)]
pub struct Ext4Output {
    pub image: PathBuf,
    pub size: u64,
    pub files: Vec<FileEntry>,
}

/// Filesystem identity, derived by the caller from the build inputs.
pub struct Ext4Params {
    pub uuid: [u8; 16],
    pub hash_seed: [u8; 16],
    pub epoch: u64,
    pub label: String,
}

/// Builds `image` from the tree in `dir`.
pub fn build(dir: &Path, image: &Path, params: &Ext4Params) -> Result<Ext4Output, Ext4Error> {
    tool::require(&[tool::MKE2FS, tool::E2FSCK, tool::DEBUGFS])?;
    let started = Instant::now();
    let (entries, paths) = scan(dir)?;
    let size = image_size(dir, entries)?;

    if image.exists() {
        fs::remove_file(image).map_err(io("replace", image))?;
    }
    let uuid = uuid_text(&params.uuid);
    let hash_seed = uuid_text(&params.hash_seed);
    let mut mke2fs = tool::command(tool::MKE2FS);
    mke2fs
        .env("E2FSPROGS_FAKE_TIME", fake_time(params.epoch))
        .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256", "-m", "0"])
        .args(["-O", "^has_journal"])
        .args(["-N", &(entries + 64).to_string()])
        .args(["-L", &params.label])
        .args(["-U", &uuid])
        .args(["-E", &format!("hash_seed={hash_seed},root_owner=0:0")])
        .arg("-d")
        .arg(dir)
        .arg(image)
        .arg((size / BLOCK_SIZE).to_string());
    tool::run(&mut mke2fs)?;

    normalise_ctimes(image, &paths, params.epoch)?;
    tool::run(tool::command(tool::E2FSCK).args(["-fn"]).arg(image))?;
    let files = list_files(image)?;

    tracing::info!(bytes = size, files = files.len(), seconds = started.elapsed().as_secs_f32(), "ext4: wrote {}", image.display());
    Ok(Ext4Output { image: image.to_path_buf(), size, files })
}

/// Formats 16 bytes as a canonical UUID string.
pub fn uuid_text(bytes: &[u8; 16]) -> String {
    let hex = hex::encode(bytes);
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// Walks the tree, returning the entry count and every path relative to it.
fn scan(dir: &Path) -> Result<(u64, Vec<String>), Ext4Error> {
    let mut paths = vec!["/".to_string()];
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        let full = dir.join(&relative);
        let mut children: Vec<_> = fs::read_dir(&full).map_err(io("read", &full))?.collect::<Result<_, _>>().map_err(io("read", &full))?;
        children.sort_by_key(|child| child.file_name());
        for child in children {
            let child_relative = relative.join(child.file_name());
            let text = child_relative.to_string_lossy().into_owned();
            if text.contains('"') || text.contains('\n') || text.contains('\r') {
                return Err(Ext4Error::UnsupportedName(child_relative));
            }
            paths.push(format!("/{text}"));
            let file_type = child.file_type().map_err(io("read", &child.path()))?;
            if file_type.is_dir() {
                stack.push(child_relative);
            }
        }
    }
    Ok((paths.len() as u64, paths))
}

/// Content size rounded to blocks, plus inode overhead and headroom,
/// rounded up to whole MiB.
fn image_size(dir: &Path, entries: u64) -> Result<u64, Ext4Error> {
    let mut total: u64 = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        for child in fs::read_dir(&path).map_err(io("read", &path))? {
            let child = child.map_err(io("read", &path))?;
            let meta = fs::symlink_metadata(child.path()).map_err(io("read", &child.path()))?;
            let blocks = meta.len().div_ceil(BLOCK_SIZE).max(1);
            total = total.checked_add(blocks.checked_mul(BLOCK_SIZE).ok_or(Ext4Error::Overflow)?).ok_or(Ext4Error::Overflow)?;
            if meta.is_dir() {
                stack.push(child.path());
            }
        }
    }
    let overhead = entries.checked_mul(INODE_OVERHEAD).ok_or(Ext4Error::Overflow)?;
    let raw = total
        .checked_add(total / 10)
        .and_then(|v| v.checked_add(overhead))
        .and_then(|v| v.checked_add(HEADROOM_BYTES))
        .ok_or(Ext4Error::Overflow)?;
    Ok(raw.div_ceil(1 << 20) * (1 << 20))
}

/// Returns the value of `E2FSPROGS_FAKE_TIME` for `epoch`. e2fsprogs
/// (1.47) reads 0 as "not set" and takes the current time, so epoch 0 (the
/// default when `SOURCE_DATE_EPOCH` is unset) becomes 1: the superblock
/// times are then 1970-01-01 00:00:01, and file times stay at `epoch`.
pub fn fake_time(epoch: u64) -> String {
    epoch.max(1).to_string()
}

/// Sets every inode's ctime and atime to `epoch` in one debugfs run.
fn normalise_ctimes(image: &Path, paths: &[String], epoch: u64) -> Result<(), Ext4Error> {
    let commands_path = image.with_extension("debugfs");
    let mut commands = fs::File::create(&commands_path).map_err(io("create", &commands_path))?;
    for path in paths.iter().chain(std::iter::once(&"/lost+found".to_string())) {
        // mke2fs reads every file and folder, so with relatime the kernel may
        // have moved their atime too.
        writeln!(commands, "sif \"{path}\" ctime @{epoch}\nsif \"{path}\" atime @{epoch}").map_err(io("write", &commands_path))?;
    }
    drop(commands);
    let output = tool::run(tool::command(tool::DEBUGFS).env("E2FSPROGS_FAKE_TIME", fake_time(epoch)).arg("-w").arg("-f").arg(&commands_path).arg(image))?;
    let _ = fs::remove_file(&commands_path);
    // debugfs exits 0 even when a command fails; its errors go to stderr.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let failures: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("debugfs ") && !l.starts_with("debugfs:") && !l.trim().is_empty()).collect();
    if !failures.is_empty() {
        return Err(Ext4Error::ReadBack { path: image.to_path_buf(), message: format!("debugfs could not set inode times: {}", failures.join("; ")) });
    }
    Ok(())
}

/// Lists every regular file of the ext4 image, sorted by path.
pub fn list_files(image: &Path) -> Result<Vec<FileEntry>, Ext4Error> {
    let read_back = |message: String| Ext4Error::ReadBack { path: image.to_path_buf(), message };
    let fs = ext4_view::Ext4::load_from_path(image).map_err(|e| read_back(e.to_string()))?;
    let mut files = Vec::new();
    let mut stack = vec![ext4_view::PathBuf::new("/")];
    while let Some(dir) = stack.pop() {
        for entry in fs.read_dir(&dir).map_err(|e| read_back(format!("{}: {e}", dir.display())))? {
            let entry = entry.map_err(|e| read_back(e.to_string()))?;
            let name = entry.file_name();
            if name.as_ref() == b"." || name.as_ref() == b".." {
                continue;
            }
            let path = entry.path();
            let meta = fs.symlink_metadata(&path).map_err(|e| read_back(format!("{}: {e}", path.display())))?;
            if meta.is_dir() {
                stack.push(path);
            } else if meta.file_type().is_regular_file() {
                let content = fs.read(&path).map_err(|e| read_back(format!("{}: {e}", path.display())))?;
                files.push(FileEntry {
                    path: path.display().to_string(),
                    mode: meta.mode(),
                    uid: meta.uid(),
                    gid: meta.gid(),
                    size: meta.len(),
                    sha256: hex::encode(Sha256::digest(&content)),
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}
