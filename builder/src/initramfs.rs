//! Writer for the initramfs archive: an uncompressed cpio in the "newc" format.
//!
//! # Layout
//!
//! The Linux kernel unpacks this format at boot (source: the kernel's
//! `Documentation/driver-api/early-userspace/buffer-format.rst`). An archive is a
//! sequence of entries followed by a trailer entry named `TRAILER!!!`. Each entry
//! consists of:
//!
//! 1. a 110-byte ASCII header: the magic `070701`, then 13 fields of exactly 8
//!    hexadecimal digits each: `ino`, `mode`, `uid`, `gid`, `nlink`, `mtime`,
//!    `filesize`, `devmajor`, `devminor`, `rdevmajor`, `rdevminor`, `namesize`
//!    (including the terminating NUL) and `check` (always 0 in newc);
//! 2. the path name and one NUL byte, zero-padded so that header plus name end
//!    on a multiple of 4 bytes;
//! 3. the file data, zero-padded to a multiple of 4 bytes.
//!
//! # Determinism
//!
//! Entries appear in insertion order. Inode numbers count up from 1 in that
//! order, every entry has the same mtime, uid and gid are 0, directories have
//! `nlink` 2 and everything else 1. The `dev*` fields are 0. The same calls
//! therefore always give the same bytes.
//!
//! # Limits
//!
//! The newc fields are 32 bits wide, so a file must be smaller than 4 GiB and
//! the mtime must fit in a `u32` (until the year 2106). Hard links and symbolic
//! links are not supported.

use std::collections::BTreeMap;

use thiserror::Error;

/// Magic number at the start of every newc header.
const NEWC_MAGIC: &[u8; 6] = b"070701";

/// Size of a newc header: the 6-byte magic plus 13 fields of 8 hex digits.
const NEWC_HEADER_LEN: usize = 6 + 13 * 8;

/// Name of the entry that ends a cpio archive, and its `namesize` with the NUL.
const TRAILER_NAME: &str = "TRAILER!!!";
const TRAILER_NAME_SIZE: u32 = 11;

/// Alignment in bytes of headers and file data in a newc archive.
const NEWC_ALIGN: usize = 4;

/// Maximum path length including the NUL (Linux `PATH_MAX`). The kernel's
/// unpacker in `init/initramfs.c` silently skips entries with longer names.
const PATH_MAX: usize = 4096;

/// File type bits of `st_mode` (`S_IFMT` and friends in Linux `include/uapi/linux/stat.h`).
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;

/// Permission bits a caller may set: rwx for user, group and other plus setuid,
/// setgid and sticky.
const PERMISSION_MASK: u32 = 0o7777;

/// Errors from building a cpio archive.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CpioError {
    /// The archive mtime does not fit in the 32-bit newc field.
    #[error("invalid cpio mtime {epoch}: newc stores 32-bit timestamps, use a value below 2^32")]
    EpochOutOfRange {
        /// The rejected timestamp in seconds since 1970.
        epoch: u64,
    },

    /// The path is empty, absolute, or contains `.`, `..`, empty components
    /// or NUL.
    #[error(
        "invalid cpio path {path:?}: use a relative path such as \"dev/console\" \
         without \".\", \"..\", empty components or NUL bytes"
    )]
    InvalidPath {
        /// The rejected path.
        path: String,
    },

    /// The path is longer than the kernel's unpacker accepts.
    #[error(
        "cpio path of {len} bytes is too long: the kernel unpacks paths of at most 4095 bytes"
    )]
    PathTooLong {
        /// The path length in bytes.
        len: usize,
    },

    /// The mode contains bits other than permission bits.
    #[error("invalid mode {mode:#o} for cpio entry {path:?}: pass permission bits only (at most 0o7777)")]
    InvalidMode {
        /// The entry's path.
        path: String,
        /// The rejected mode.
        mode: u32,
    },

    /// An entry with the same path was added before.
    #[error("duplicate cpio entry {path:?}: every path may be added once")]
    DuplicatePath {
        /// The repeated path.
        path: String,
    },

    /// The parent directory of a path was not added before the path itself,
    /// or the parent is not a directory.
    #[error("parent {parent:?} of cpio entry {path:?} is not a directory added earlier: add the directory first")]
    MissingParent {
        /// The entry's path.
        path: String,
        /// The parent that is missing or is not a directory.
        parent: String,
    },

    /// The file is too large for the 32-bit newc size field.
    #[error("cpio entry {path:?} is {size} bytes, but newc stores sizes below 4 GiB")]
    FileTooLarge {
        /// The entry's path.
        path: String,
        /// The file size in bytes.
        size: usize,
    },

    /// An archive being read is not a valid uncompressed newc archive.
    #[error("invalid newc cpio archive at offset {offset}: {reason}")]
    Malformed {
        /// Byte offset of the entry or field that failed.
        offset: usize,
        /// What is wrong there.
        reason: String,
    },
}

/// One entry of a newc archive read by [`read_archive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpioEntry {
    /// Path as stored, without a leading `/` or the NUL.
    pub path: String,
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    /// File contents; empty for directories and device nodes.
    pub data: Vec<u8>,
}

impl CpioEntry {
    /// Reports whether the entry is a regular file.
    pub fn is_file(&self) -> bool {
        self.mode & 0o170_000 == S_IFREG
    }
}

/// Parses an uncompressed newc archive up to its `TRAILER!!!` entry, in the
/// format [`Cpio`] writes. Leading `./` or `/` in names is removed.
///
/// # Errors
///
/// [`CpioError::Malformed`] for a wrong magic, a field that is not 8 hex
/// digits, a name without its NUL, data past the end, or a missing trailer.
pub fn read_archive(archive: &[u8]) -> Result<Vec<CpioEntry>, CpioError> {
    let mut entries = Vec::new();
    let mut offset = 0;
    loop {
        let malformed = |offset: usize, reason: String| CpioError::Malformed { offset, reason };
        let header = archive.get(offset..offset + NEWC_HEADER_LEN).ok_or_else(|| malformed(offset, "the archive ends inside a header (no TRAILER!!! entry)".into()))?;
        if &header[..NEWC_MAGIC.len()] != NEWC_MAGIC {
            return Err(malformed(offset, format!("magic {:?} is not \"070701\"", String::from_utf8_lossy(&header[..NEWC_MAGIC.len()]))));
        }
        let field = |index: usize| -> Result<u32, CpioError> {
            let start = NEWC_MAGIC.len() + index * 8;
            let text = std::str::from_utf8(&header[start..start + 8]).ok().filter(|text| text.bytes().all(|b| b.is_ascii_hexdigit()));
            text.and_then(|text| u32::from_str_radix(text, 16).ok()).ok_or_else(|| malformed(offset + start, "a header field is not 8 hexadecimal digits".into()))
        };
        let mode = field(1)?;
        let file_size = field(6)? as usize;
        let name_size = field(11)? as usize;

        let name_start = offset + NEWC_HEADER_LEN;
        let name_bytes = archive.get(name_start..name_start + name_size).ok_or_else(|| malformed(name_start, "the name runs past the end of the archive".into()))?;
        let Some((0, name)) = name_bytes.split_last() else {
            return Err(malformed(name_start, "the name is empty or not NUL-terminated".into()));
        };
        let name = std::str::from_utf8(name).map_err(|_| malformed(name_start, "the name is not UTF-8".into()))?;
        let data_start = align_up(name_start + name_size);
        let data = archive.get(data_start..data_start + file_size).ok_or_else(|| malformed(data_start, format!("{name:?} has {file_size} bytes of data past the end of the archive")))?;
        if name == TRAILER_NAME {
            return Ok(entries);
        }
        let path = name.trim_start_matches("./").trim_start_matches('/').to_owned();
        entries.push(CpioEntry { path, mode, data: data.to_vec() });
        offset = align_up(data_start + file_size);
    }
}

fn align_up(offset: usize) -> usize {
    offset.next_multiple_of(NEWC_ALIGN)
}

/// Kind of an entry already in the archive, used to check parents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    Directory,
    Other,
}

/// Fields of one newc header that vary between entries.
struct Header<'a> {
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    file_size: u32,
    rdev_major: u32,
    rdev_minor: u32,
    name: &'a str,
    /// Length of `name` plus its NUL.
    name_size: u32,
}

/// Builder for a newc cpio archive.
///
/// ```
/// use applbuild::initramfs::Cpio;
///
/// let mut cpio = Cpio::new(1_700_000_000)?;
/// cpio.add_dir("dev", 0o755)?;
/// cpio.add_char_dev("dev/console", 0o600, 5, 1)?;
/// cpio.add_file("init", 0o755, b"#!/bin/sh\n")?;
/// let archive: Vec<u8> = cpio.finish();
/// assert!(archive.starts_with(b"070701"));
/// # Ok::<(), applbuild::initramfs::CpioError>(())
/// ```
#[derive(Debug)]
pub struct Cpio {
    out: Vec<u8>,
    mtime: u32,
    next_ino: u32,
    entries: BTreeMap<String, EntryKind>,
}

impl Cpio {
    /// Creates an empty archive whose entries all get `epoch` (seconds since
    /// 1970) as their mtime.
    ///
    /// # Errors
    ///
    /// [`CpioError::EpochOutOfRange`] if `epoch` does not fit in 32 bits.
    pub fn new(epoch: u64) -> Result<Self, CpioError> {
        let mtime = u32::try_from(epoch).map_err(|_| CpioError::EpochOutOfRange { epoch })?;
        Ok(Self {
            out: Vec::new(),
            mtime,
            next_ino: 1,
            entries: BTreeMap::new(),
        })
    }

    /// Appends a directory with permission bits `mode`.
    ///
    /// # Errors
    ///
    /// See [`Cpio::add_file`].
    pub fn add_dir(&mut self, path: &str, mode: u32) -> Result<&mut Self, CpioError> {
        self.add_entry(path, S_IFDIR, mode, 2, (0, 0), &[], EntryKind::Directory)
    }

    /// Appends a regular file with permission bits `mode` and contents `data`.
    ///
    /// # Errors
    ///
    /// The path must be relative and clean, added once, and its parent
    /// directory must have been added before. `mode` must contain permission
    /// bits only, and `data` must be smaller than 4 GiB.
    pub fn add_file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<&mut Self, CpioError> {
        self.add_entry(path, S_IFREG, mode, 1, (0, 0), data, EntryKind::Other)
    }

    /// Appends a character device node with permission bits `mode` and device
    /// number `major:minor` (for example 5:1 for `/dev/console`).
    ///
    /// # Errors
    ///
    /// See [`Cpio::add_file`].
    pub fn add_char_dev(
        &mut self,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<&mut Self, CpioError> {
        self.add_entry(
            path,
            S_IFCHR,
            mode,
            1,
            (major, minor),
            &[],
            EntryKind::Other,
        )
    }

    /// Appends the trailer and returns the archive bytes.
    pub fn finish(mut self) -> Vec<u8> {
        let trailer = Header {
            ino: 0,
            mode: 0,
            nlink: 1,
            mtime: 0,
            file_size: 0,
            rdev_major: 0,
            rdev_minor: 0,
            name: TRAILER_NAME,
            name_size: TRAILER_NAME_SIZE,
        };
        write_header(&mut self.out, &trailer);
        self.out
    }

    #[allow(clippy::too_many_arguments)]
    fn add_entry(
        &mut self,
        path: &str,
        file_type: u32,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
        kind: EntryKind,
    ) -> Result<&mut Self, CpioError> {
        self.validate_path(path)?;
        if mode & !PERMISSION_MASK != 0 {
            return Err(CpioError::InvalidMode {
                path: path.to_owned(),
                mode,
            });
        }
        let file_size = u32::try_from(data.len()).map_err(|_| CpioError::FileTooLarge {
            path: path.to_owned(),
            size: data.len(),
        })?;
        // validate_path keeps the name below PATH_MAX, so this conversion succeeds.
        let name_size = u32::try_from(path.len() + 1)
            .map_err(|_| CpioError::PathTooLong { len: path.len() })?;

        let header = Header {
            ino: self.next_ino,
            mode: file_type | mode,
            nlink,
            mtime: self.mtime,
            file_size,
            rdev_major: rdev.0,
            rdev_minor: rdev.1,
            name: path,
            name_size,
        };
        write_header(&mut self.out, &header);
        self.out.extend_from_slice(data);
        pad_to_alignment(&mut self.out);

        // Each entry takes at least 112 bytes, so 2^32 entries would need
        // about 480 GB of memory. wrapping_add only avoids a panic path.
        self.next_ino = self.next_ino.wrapping_add(1);
        self.entries.insert(path.to_owned(), kind);
        Ok(self)
    }

    fn validate_path(&self, path: &str) -> Result<(), CpioError> {
        if path.len() >= PATH_MAX {
            return Err(CpioError::PathTooLong { len: path.len() });
        }
        let invalid = path.is_empty()
            || path.starts_with('/')
            || path.contains('\0')
            || path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
            || path == TRAILER_NAME;
        if invalid {
            return Err(CpioError::InvalidPath {
                path: path.to_owned(),
            });
        }
        if self.entries.contains_key(path) {
            return Err(CpioError::DuplicatePath {
                path: path.to_owned(),
            });
        }

        // The kernel creates each entry with a plain open or mkdir, so the
        // parent must already exist when the entry is unpacked.
        if let Some((parent, _)) = path.rsplit_once('/') {
            if self.entries.get(parent) != Some(&EntryKind::Directory) {
                return Err(CpioError::MissingParent {
                    path: path.to_owned(),
                    parent: parent.to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// Appends a newc header and the NUL-terminated, padded name to `out`.
fn write_header(out: &mut Vec<u8>, header: &Header<'_>) {
    let fields = [
        header.ino,
        header.mode,
        0, // uid
        0, // gid
        header.nlink,
        header.mtime,
        header.file_size,
        0, // devmajor
        0, // devminor
        header.rdev_major,
        header.rdev_minor,
        header.name_size,
        0, // check
    ];

    out.reserve(NEWC_HEADER_LEN + header.name.len() + NEWC_ALIGN);
    out.extend_from_slice(NEWC_MAGIC);
    for field in fields {
        out.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    out.extend_from_slice(header.name.as_bytes());
    out.push(0);
    pad_to_alignment(out);
}

/// Appends zero bytes until the length of `out` is a multiple of [`NEWC_ALIGN`].
/// Every entry starts aligned, so aligning the whole buffer aligns the entry.
fn pad_to_alignment(out: &mut Vec<u8>) {
    let padding = (NEWC_ALIGN - out.len() % NEWC_ALIGN) % NEWC_ALIGN;
    out.resize(out.len() + padding, 0);
}
