//! The error type of board and manifest loading.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::size::{Bytes, SizeError, EXPECTED_FORM};

/// Exit status for usage and configuration errors.
pub const EXIT_CONFIG: i32 = 2;

/// A board or manifest file that failed to load, with the position of the
/// offending key or value.
///
/// `Display` prints `FILE:LINE:COL: message`, or `FILE: message` when no
/// position applies, then a second line `hint: …` when a fix is known. The
/// whole text is in `Display`, including any OS error, so `source()` returns
/// `None` and a printer that walks the error chain shows it once.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {kind}{}", hint_line(kind))]
pub struct ConfigError {
    /// File and position that the message refers to.
    pub location: Location,
    /// The problem.
    pub kind: Box<ErrorKind>,
}

impl ConfigError {
    /// Returns the process exit status for this error: always 2, the status
    /// for usage and configuration errors.
    pub fn exit_code(&self) -> i32 {
        EXIT_CONFIG
    }

    /// Returns the suggested fix, if one is known.
    pub fn hint(&self) -> Option<String> {
        self.kind.hint()
    }
}

fn hint_line(kind: &ErrorKind) -> String {
    match kind.hint() {
        Some(hint) => format!("\nhint: {hint}"),
        None => String::new(),
    }
}

/// A file and an optional 1-based line and column, counted in characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The board or manifest file, as given to `load` or resolved from a board.
    pub file: PathBuf,
    /// Line and column, both starting at 1. `None` when the error concerns
    /// the whole file, or a table that the file does not contain.
    pub position: Option<(usize, usize)>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{}:{line}:{column}", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

/// Problems found in a board or manifest file.
///
/// `key` fields hold the dotted key, such as `disk.esp_size`, and `value`
/// fields the rejected value as written.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The file could not be read.
    #[error("cannot read the file: {error}")]
    Read {
        /// The OS error.
        error: io::Error,
    },

    /// The file contains bytes that are not UTF-8, which TOML requires.
    #[error("the file is not valid UTF-8")]
    NotUtf8,

    /// The TOML parser rejected the file.
    #[error("invalid TOML: {message}")]
    Syntax {
        /// The parser's message.
        message: String,
    },

    /// A key that the table does not define.
    #[error("unknown key `{key}` in {table}")]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The table, such as `[disk]` or `the top level`.
        table: String,
        /// The valid key closest in spelling, if it is close enough.
        suggestion: Option<&'static str>,
        /// Another table of the same file format that defines this key.
        other_table: Option<String>,
        /// Every key valid in this table.
        valid: Vec<&'static str>,
    },

    /// A required key is absent.
    #[error("missing required key `{key}`")]
    MissingKey {
        /// The dotted key.
        key: String,
        /// The suggested addition, such as ``add `config = …` to [kernel], with an array of path strings``.
        fix: String,
    },

    /// A value of the wrong TOML type.
    #[error("wrong type for `{key}`: expected {expected}, found {found}")]
    WrongType {
        /// The dotted key.
        key: String,
        /// The expected value.
        expected: String,
        /// The TOML type found, such as `integer`.
        found: &'static str,
    },

    /// A size string that does not parse.
    #[error("invalid size `{value}` for `{key}`: {reason}")]
    InvalidSize {
        /// The dotted key.
        key: String,
        /// The size as written.
        value: String,
        /// The parse failure.
        reason: SizeError,
    },

    /// A release number that is not X.Y.Z.
    #[error("invalid release `{value}` for `{key}`")]
    InvalidRelease {
        /// The dotted key.
        key: String,
        /// The release as written.
        value: String,
    },

    /// A string outside a fixed set of choices, such as an unknown `lsm`.
    #[error("unsupported value `{value}` for `{key}`")]
    UnknownChoice {
        /// The dotted key.
        key: String,
        /// The value as written.
        value: String,
        /// The accepted values.
        choices: &'static [&'static str],
    },

    /// A value that has the right type but is not acceptable.
    #[error("invalid value `{value}` for `{key}`: expected {expected}")]
    InvalidValue {
        /// The dotted key.
        key: String,
        /// The value as written.
        value: String,
        /// The accepted form.
        expected: String,
    },

    /// A key that is valid in the table but not with the chosen variant, such
    /// as `path` with `kind = "debian"`.
    #[error("`{key}` does not apply to {condition}")]
    KeyNotApplicable {
        /// The dotted key.
        key: String,
        /// The choice in effect, such as `` `kind = "debian"` ``.
        condition: String,
        /// The choices that use this key.
        used_by: String,
    },

    /// A referenced file or folder does not exist.
    #[error("{role} not found: {}", path.display())]
    FileNotFound {
        /// The dotted key.
        key: String,
        /// Role of the path, such as `kernel config fragment`.
        role: &'static str,
        /// The path after resolution.
        path: PathBuf,
    },

    /// A referenced path exists but is the wrong kind of file.
    #[error("{role} {} is not {expected}", path.display())]
    WrongFileType {
        /// The dotted key.
        key: String,
        /// Role of the path.
        role: &'static str,
        /// The path after resolution.
        path: PathBuf,
        /// `a directory` or `a regular file`.
        expected: &'static str,
    },

    /// A referenced file or folder exists but cannot be read.
    #[error("cannot read {role} {}: {error}", path.display())]
    Unreadable {
        /// The dotted key.
        key: String,
        /// Role of the path.
        role: &'static str,
        /// The path after resolution.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },

    /// The key folder does not exist and the board does not ask to create it.
    #[error("key directory not found: {}", path.display())]
    KeyDirMissing {
        /// The folder after resolution.
        path: PathBuf,
    },

    /// A package name that Debian would not accept.
    #[error("invalid Debian package name `{name}`")]
    InvalidPackageName {
        /// The name as written.
        name: String,
    },

    /// The same entry listed twice in an array.
    #[error("duplicate {item} `{value}` in `{key}`, first listed at line {}, column {}", first.0, first.1)]
    Duplicate {
        /// The dotted key of the array.
        key: String,
        /// Kind of entry, such as `package`.
        item: &'static str,
        /// The repeated entry.
        value: String,
        /// Line and column of the first occurrence.
        first: (usize, usize),
    },

    /// An EFI system partition too small for FAT32.
    #[error("esp_size {esp_size} is too small for FAT32: the minimum is {minimum}")]
    EspTooSmall {
        /// The configured size.
        esp_size: Bytes,
        /// The smallest accepted size.
        minimum: Bytes,
    },

    /// An EFI system partition at least as large as the disk.
    #[error("esp_size {esp_size} is not smaller than the disk size {size}")]
    EspTooLarge {
        /// The configured ESP size.
        esp_size: Bytes,
        /// The configured disk size.
        size: Bytes,
    },

    /// The ESP and the state partition together fill the disk.
    #[error("esp_size {esp_size} plus state {state} leave no space for the root partition on a {size} disk")]
    NoRootSpace {
        /// The configured ESP size.
        esp_size: Bytes,
        /// The configured state partition size.
        state: Bytes,
        /// The configured disk size.
        size: Bytes,
    },

    /// A root hash that is not 64 hexadecimal digits.
    #[error("invalid root hash `{value}` in `{key}`: expected 64 hexadecimal digits")]
    InvalidRootHash {
        /// The dotted key.
        key: String,
        /// The value as written.
        value: String,
    },

    /// A bug in applbuild, such as a settings table that disagrees with the
    /// code that reads it.
    #[error("internal error: {message}")]
    Internal {
        /// Description of the bug.
        message: String,
    },
}

impl ErrorKind {
    /// Returns the suggested fix, if one is known.
    pub fn hint(&self) -> Option<String> {
        match self {
            ErrorKind::UnknownKey { suggestion: Some(close), .. } => Some(format!("did you mean `{close}`?")),
            ErrorKind::UnknownKey { key, other_table: Some(table), .. } => {
                Some(format!("`{key}` belongs in {table}"))
            }
            ErrorKind::UnknownKey { table, valid, .. } => Some(format!("valid keys in {table}: {}", valid.join(", "))),
            ErrorKind::MissingKey { fix, .. } => Some(fix.clone()),
            ErrorKind::InvalidSize { .. } => Some(format!("write {EXPECTED_FORM}")),
            ErrorKind::InvalidRelease { .. } => Some(
                "write the release as X.Y.Z, three whole numbers from 0 to 65535 without leading zeros, such as \"1.0.0\""
                    .to_owned(),
            ),
            ErrorKind::UnknownChoice { choices, .. } => Some(format!("use {}", quoted_list(choices, "or"))),
            ErrorKind::KeyNotApplicable { used_by, .. } => Some(format!("remove it, or use it with {used_by}")),
            ErrorKind::FileNotFound { .. } => {
                Some("relative paths are resolved from the folder of the file that contains them".to_owned())
            }
            ErrorKind::Unreadable { .. } => Some("give the user running applbuild read access to it".to_owned()),
            ErrorKind::KeyDirMissing { path } => Some(format!(
                "create keys with `applbuild keys init {}`, or set `create_if_missing = true` in [keys] for development keys",
                path.display()
            )),
            ErrorKind::InvalidPackageName { name } if name.contains(['=', '/', ':']) => Some(
                "list package names only: versions, releases and architectures cannot be given here".to_owned(),
            ),
            ErrorKind::InvalidPackageName { .. } => Some(
                "a package name has at least two characters: lowercase letters, digits, '+', '-' and '.', \
                 starting with a letter or digit"
                    .to_owned(),
            ),
            ErrorKind::Duplicate { .. } => Some("remove one of them".to_owned()),
            ErrorKind::EspTooSmall { .. } => Some(
                "FAT32 needs at least 65,525 clusters, which take about 32.5MiB with 512-byte clusters and both FATs, \
                 so use 40MiB or more"
                    .to_owned(),
            ),
            ErrorKind::EspTooLarge { .. } | ErrorKind::NoRootSpace { .. } => {
                Some("increase `disk.size`, or reduce `esp_size` or `state`".to_owned())
            }
            ErrorKind::InvalidRootHash { .. } => {
                Some("copy the hash from the `roothash` file in that release's output folder".to_owned())
            }
            ErrorKind::Internal { .. } => Some("this is a bug in applbuild, please report it".to_owned()),
            ErrorKind::Read { .. }
            | ErrorKind::NotUtf8
            | ErrorKind::Syntax { .. }
            | ErrorKind::WrongType { .. }
            | ErrorKind::InvalidValue { .. }
            | ErrorKind::WrongFileType { .. } => None,
        }
    }
}

/// Formats `["a", "b", "c"]` as `"a", "b" or "c"`.
pub(crate) fn quoted_list(items: &[&str], conjunction: &str) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("\"{item}\"")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} {conjunction} {last}", rest.join(", ")),
    }
}
