// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Parse errors: the errno Linux 6.12's IPE returns for a rejected policy,
//! plus the line, column, token and expected form that the kernel cannot
//! report.

use core::fmt;

use crate::grammar::Operation;

/// The errno the kernel returns when it rejects a policy text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Errno {
    /// `EBADMSG` (74): any syntax or structure fault.
    BadMessage,
    /// `EINVAL` (22): a version component or a digest's hex digits are not numbers.
    InvalidArgument,
    /// `ERANGE` (34): a version component above 65535.
    OutOfRange,
    /// `ENOMEM` (12): the caller's [`Storage`](crate::Storage) is smaller
    /// than [`measure`](crate::measure) reported; the kernel returns the same
    /// errno when an allocation fails.
    OutOfMemory,
}

impl Errno {
    /// The Linux errno number.
    pub const fn number(self) -> i32 {
        match self {
            Errno::BadMessage => 74,
            Errno::InvalidArgument => 22,
            Errno::OutOfRange => 34,
            Errno::OutOfMemory => 12,
        }
    }

    /// The symbolic name, such as `EBADMSG`.
    pub const fn name(self) -> &'static str {
        match self {
            Errno::BadMessage => "EBADMSG",
            Errno::InvalidArgument => "EINVAL",
            Errno::OutOfRange => "ERANGE",
            Errno::OutOfMemory => "ENOMEM",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Fault in a policy text, one variant per rejection the kernel makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// No header: the text is empty, or only comments and blank lines remain
    /// after NUL truncation.
    EmptyPolicy,
    /// A header token is not `policy_name=…` or `policy_version=…`, or the two are swapped.
    InvalidHeaderToken,
    /// The header has a third token.
    ExtraHeaderToken,
    /// The header lacks `policy_version=…`.
    MissingHeaderToken,
    /// The version has more than three components.
    TooManyVersionParts,
    /// The version has fewer than three components.
    TooFewVersionParts,
    /// A version component is not a decimal number (`kstrtou16` returns EINVAL).
    VersionNotNumber,
    /// A version component is above 65535.
    VersionOutOfRange,
    /// The last token of a rule or default line is not an action.
    MissingAction,
    /// The token where an operation belongs is not `op=<OPERATION>`.
    InvalidOperation,
    /// A line has an action but no operation and is not a `DEFAULT` line.
    MissingOperation,
    /// A property key is unknown.
    UnknownProperty,
    /// A boolean property's value is not `TRUE` or `FALSE`.
    InvalidBoolean,
    /// A digest property has nothing after `=`.
    MissingDigest,
    /// A digest value has no `:` between the algorithm and the hex digits.
    DigestWithoutAlgorithm,
    /// A digest has an odd number of hex digits.
    OddHexLength,
    /// A digest has a character that is not a hex digit.
    InvalidHexDigit,
    /// A `DEFAULT` line has a property.
    DefaultWithProperty,
    /// A second `DEFAULT action=…` line; the first is on `first_line`.
    DuplicateGlobalDefault {
        /// Line of the first global default.
        first_line: u32,
    },
    /// A second `DEFAULT op=… action=…` line for one operation.
    DuplicateOperationDefault {
        /// The operation.
        operation: Operation,
        /// Line of the first default for it.
        first_line: u32,
    },
    /// No global default and this operation (the first such in table order) has no default.
    MissingDefault {
        /// The operation without a default.
        operation: Operation,
    },
    /// The caller's storage is too small for the policy.
    StorageTooSmall,
}

impl ErrorKind {
    /// The errno Linux 6.12 returns for this fault.
    pub const fn errno(self) -> Errno {
        match self {
            ErrorKind::VersionNotNumber | ErrorKind::OddHexLength | ErrorKind::InvalidHexDigit => Errno::InvalidArgument,
            ErrorKind::VersionOutOfRange => Errno::OutOfRange,
            ErrorKind::StorageTooSmall => Errno::OutOfMemory,
            _ => Errno::BadMessage,
        }
    }

    /// The form that was expected at the error's position.
    pub const fn expected(self) -> &'static str {
        match self {
            ErrorKind::EmptyPolicy | ErrorKind::InvalidHeaderToken | ErrorKind::ExtraHeaderToken | ErrorKind::MissingHeaderToken => {
                "a header `policy_name=NAME policy_version=MAJOR.MINOR.REVISION`"
            }
            ErrorKind::TooManyVersionParts | ErrorKind::TooFewVersionParts => "three version components `MAJOR.MINOR.REVISION`",
            ErrorKind::VersionNotNumber | ErrorKind::VersionOutOfRange => "a decimal number from 0 to 65535",
            ErrorKind::MissingAction => "`action=ALLOW` or `action=DENY` as the last token",
            ErrorKind::InvalidOperation | ErrorKind::MissingOperation => {
                "`op=` followed by EXECUTE, FIRMWARE, KMODULE, KEXEC_IMAGE, KEXEC_INITRAMFS, POLICY or X509_CERT"
            }
            ErrorKind::UnknownProperty => {
                "a property: boot_verified=, dmverity_roothash=, dmverity_signature=, fsverity_digest= or fsverity_signature="
            }
            ErrorKind::InvalidBoolean => "TRUE or FALSE (upper case)",
            ErrorKind::MissingDigest | ErrorKind::DigestWithoutAlgorithm => "a digest `ALGORITHM:HEX`, such as sha256:0123…",
            ErrorKind::OddHexLength | ErrorKind::InvalidHexDigit => "an even number of hex digits after the `:`",
            ErrorKind::DefaultWithProperty => "`DEFAULT action=…` or `DEFAULT op=… action=…` without properties",
            ErrorKind::DuplicateGlobalDefault { .. } => "one global `DEFAULT action=…` line at most",
            ErrorKind::DuplicateOperationDefault { .. } => "one `DEFAULT op=… action=…` line per operation at most",
            ErrorKind::MissingDefault { .. } => "a global `DEFAULT action=…` line, or a `DEFAULT op=… action=…` line for every operation",
            ErrorKind::StorageTooSmall => "storage at least as large as `measure` reports",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::EmptyPolicy => f.write_str("the policy has no header"),
            ErrorKind::InvalidHeaderToken => f.write_str("invalid header token"),
            ErrorKind::ExtraHeaderToken => f.write_str("extra token after the header"),
            ErrorKind::MissingHeaderToken => f.write_str("the header has no policy_version"),
            ErrorKind::TooManyVersionParts => f.write_str("the version has more than three components"),
            ErrorKind::TooFewVersionParts => f.write_str("the version has fewer than three components"),
            ErrorKind::VersionNotNumber => f.write_str("version component is not a decimal number"),
            ErrorKind::VersionOutOfRange => f.write_str("version component is above 65535"),
            ErrorKind::MissingAction => f.write_str("the line does not end with an action"),
            ErrorKind::InvalidOperation => f.write_str("invalid operation"),
            ErrorKind::MissingOperation => f.write_str("the rule has no operation"),
            ErrorKind::UnknownProperty => f.write_str("unknown property"),
            ErrorKind::InvalidBoolean => f.write_str("invalid boolean value"),
            ErrorKind::MissingDigest => f.write_str("the digest property has no value"),
            ErrorKind::DigestWithoutAlgorithm => f.write_str("the digest has no `:` after its algorithm name"),
            ErrorKind::OddHexLength => f.write_str("the digest has an odd number of hex digits"),
            ErrorKind::InvalidHexDigit => f.write_str("the digest has a character that is not a hex digit"),
            ErrorKind::DefaultWithProperty => f.write_str("a DEFAULT line has a property"),
            ErrorKind::DuplicateGlobalDefault { first_line } => write!(f, "second global DEFAULT (the first is on line {first_line})"),
            ErrorKind::DuplicateOperationDefault { operation, first_line } => {
                write!(f, "second DEFAULT for op={} (the first is on line {first_line})", operation.name())
            }
            ErrorKind::MissingDefault { operation } => write!(f, "no global DEFAULT and no DEFAULT for op={}", operation.name()),
            ErrorKind::StorageTooSmall => f.write_str("the policy storage is too small"),
        }
    }
}

/// Maximum number of token bytes a [`ParseError`] keeps.
pub const TOKEN_EXCERPT_LEN: usize = 64;

/// A copy of the first bytes of the offending token, so an error outlives the text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenExcerpt {
    bytes: [u8; TOKEN_EXCERPT_LEN],
    len: usize,
    truncated: bool,
}

impl TokenExcerpt {
    /// An empty excerpt, for errors that have no token.
    pub const EMPTY: TokenExcerpt = TokenExcerpt { bytes: [0; TOKEN_EXCERPT_LEN], len: 0, truncated: false };

    pub(crate) fn new(token: &[u8]) -> TokenExcerpt {
        let mut excerpt = TokenExcerpt::EMPTY;
        let len = token.len().min(TOKEN_EXCERPT_LEN);
        if let (Some(target), Some(source)) = (excerpt.bytes.get_mut(..len), token.get(..len)) {
            target.copy_from_slice(source);
            excerpt.len = len;
        }
        excerpt.truncated = token.len() > TOKEN_EXCERPT_LEN;
        excerpt
    }

    /// The kept bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }

    /// Whether the token was longer than [`TOKEN_EXCERPT_LEN`] bytes.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
}

impl fmt::Debug for TokenExcerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", crate::print::Escaped(self.as_bytes()))
    }
}

/// A policy the kernel would reject: the errno it would return, where the
/// parser stopped and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The errno Linux 6.12 returns for this text.
    pub errno: Errno,
    /// The fault.
    pub kind: ErrorKind,
    /// 1-based line; a CR LF pair ends one line.
    pub line: u32,
    /// 1-based byte column of the offending token or character.
    pub column: u32,
    /// The offending token, empty when the error is about the whole policy.
    pub token: TokenExcerpt,
    /// The form that was expected there.
    pub expected: &'static str,
}

impl ParseError {
    pub(crate) fn new(kind: ErrorKind, line: u32, column: u32, token: &[u8]) -> ParseError {
        ParseError { errno: kind.errno(), kind, line, column, token: TokenExcerpt::new(token), expected: kind.expected() }
    }
}

impl fmt::Display for ParseError {
    /// Writes `LINE:COL: MESSAGE \`TOKEN\`; expected FORM`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.kind)?;
        if !self.token.as_bytes().is_empty() {
            write!(f, " `{}`", crate::print::Escaped(self.token.as_bytes()))?;
            if self.token.is_truncated() {
                f.write_str("…")?;
            }
        }
        write!(f, "; expected {}", self.expected)
    }
}
