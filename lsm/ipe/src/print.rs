// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! The canonical policy text: header, global default, operation defaults,
//! then each operation's rules in file order, one rule per line as the
//! kernel prints rules in audit records (digests as `ALG:HEX` with upper
//! case hex). Parsing the printed text gives an equal policy.

use core::fmt;
use core::fmt::Write as _;

use crate::grammar::{Operation, PropertyKey, ACTION_PREFIX, DEFAULT_KEYWORD, FALSE_LITERAL, OPERATION_PREFIX, POLICY_NAME_PREFIX, POLICY_VERSION_PREFIX, TRUE_LITERAL};
use crate::policy::{PolicyRef, Property, Rule, Value};

/// A byte sink. Policy names and algorithm names may hold any byte except
/// separators, so the printer writes bytes, not `str`.
pub trait ByteWrite {
    /// Appends `bytes`.
    ///
    /// # Errors
    ///
    /// [`fmt::Error`] when the sink is full or fails.
    fn write_bytes(&mut self, bytes: &[u8]) -> fmt::Result;
}

/// Writes bytes into a fixed buffer, failing when it is full.
#[derive(Debug)]
pub struct SliceWriter<'b> {
    buffer: &'b mut [u8],
    len: usize,
}

impl<'b> SliceWriter<'b> {
    /// Starts writing at the beginning of `buffer`.
    pub fn new(buffer: &'b mut [u8]) -> SliceWriter<'b> {
        SliceWriter { buffer, len: 0 }
    }

    /// The bytes written so far.
    pub fn written(&self) -> &[u8] {
        self.buffer.get(..self.len).unwrap_or(&[])
    }
}

impl ByteWrite for SliceWriter<'_> {
    fn write_bytes(&mut self, bytes: &[u8]) -> fmt::Result {
        let end = self.len.checked_add(bytes.len()).ok_or(fmt::Error)?;
        self.buffer.get_mut(self.len..end).ok_or(fmt::Error)?.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
}

#[cfg(feature = "alloc")]
impl ByteWrite for alloc::vec::Vec<u8> {
    fn write_bytes(&mut self, bytes: &[u8]) -> fmt::Result {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// Adapts a [`fmt::Write`] as a [`ByteWrite`]: valid UTF-8 passes through,
/// other bytes are written as `\xNN`.
pub struct TextWriter<'w, W: fmt::Write>(pub &'w mut W);

impl<W: fmt::Write> ByteWrite for TextWriter<'_, W> {
    fn write_bytes(&mut self, bytes: &[u8]) -> fmt::Result {
        write!(self.0, "{}", Escaped(bytes))
    }
}

/// Displays bytes as text: valid UTF-8 as is, other bytes as `\xNN`.
pub struct Escaped<'b>(pub &'b [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A loop over `from_utf8` rather than `utf8_chunks`, which needs
        // Rust 1.79 while Linux 6.12 supports building with 1.78.
        let mut rest = self.0;
        while !rest.is_empty() {
            let (valid_len, invalid_len) = match core::str::from_utf8(rest) {
                Ok(_) => (rest.len(), 0),
                Err(error) => (error.valid_up_to(), error.error_len().unwrap_or(usize::MAX)),
            };
            let valid = rest.get(..valid_len).unwrap_or(&[]);
            f.write_str(core::str::from_utf8(valid).unwrap_or(""))?;
            let after = rest.get(valid_len..).unwrap_or(&[]);
            let invalid = after.get(..invalid_len).unwrap_or(after);
            for byte in invalid {
                write!(f, "\\x{byte:02X}")?;
            }
            rest = after.get(invalid.len()..).unwrap_or(&[]);
        }
        Ok(())
    }
}

/// How a digest's algorithm name is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestStyle {
    /// Policy text: `sha256:HEX`.
    Policy,
    /// Audit record: the algorithm as an audit untrusted string (quoted, or
    /// hex when it has special characters), then `:HEX`.
    Audit,
}

fn write_upper_hex<W: ByteWrite + ?Sized>(out: &mut W, bytes: &[u8]) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in bytes {
        let high = DIGITS.get(usize::from(byte >> 4)).copied().unwrap_or(b'0');
        let low = DIGITS.get(usize::from(byte & 0x0f)).copied().unwrap_or(b'0');
        out.write_bytes(&[high, low])?;
    }
    Ok(())
}

/// Writes `bytes` as the kernel's `audit_log_untrustedstring` does: in
/// double quotes, or as upper case hex without quotes when a byte is `"`,
/// below 0x21 or above 0x7e.
pub fn write_untrusted<W: ByteWrite + ?Sized>(out: &mut W, bytes: &[u8]) -> fmt::Result {
    if bytes.iter().any(|&byte| byte == b'"' || !(0x21..=0x7e).contains(&byte)) {
        write_upper_hex(out, bytes)
    } else {
        out.write_bytes(b"\"")?;
        out.write_bytes(bytes)?;
        out.write_bytes(b"\"")
    }
}

/// Writes one property token.
pub fn write_property<W: ByteWrite + ?Sized>(out: &mut W, policy: &PolicyRef<'_>, property: &Property, style: DigestStyle) -> fmt::Result {
    out.write_bytes(property.key.name().as_bytes())?;
    out.write_bytes(b"=")?;
    match property.value {
        Value::Boolean(value) => out.write_bytes(if value { TRUE_LITERAL } else { FALSE_LITERAL }.as_bytes()),
        Value::Digest(digest) => {
            match style {
                DigestStyle::Policy => out.write_bytes(policy.algorithm(&digest))?,
                DigestStyle::Audit => write_untrusted(out, policy.algorithm(&digest))?,
            }
            out.write_bytes(b":")?;
            write_upper_hex(out, policy.digest_bytes(&digest))
        }
    }
}

/// Writes a rule as `op=OP PROPERTY… action=ACTION`, without a line end.
pub fn write_rule<W: ByteWrite + ?Sized>(out: &mut W, policy: &PolicyRef<'_>, rule: &Rule, style: DigestStyle) -> fmt::Result {
    out.write_bytes(OPERATION_PREFIX.as_bytes())?;
    out.write_bytes(rule.operation.name().as_bytes())?;
    out.write_bytes(b" ")?;
    for property in policy.properties_of(rule) {
        write_property(out, policy, property, style)?;
        out.write_bytes(b" ")?;
    }
    out.write_bytes(ACTION_PREFIX.as_bytes())?;
    out.write_bytes(rule.action.name().as_bytes())
}

/// Writes the canonical text of `policy`, each line ending in LF.
///
/// # Errors
///
/// [`fmt::Error`] when `out` fails.
pub fn write_policy<W: ByteWrite + ?Sized>(out: &mut W, policy: &PolicyRef<'_>) -> fmt::Result {
    out.write_bytes(POLICY_NAME_PREFIX.as_bytes())?;
    out.write_bytes(policy.name())?;
    out.write_bytes(b" ")?;
    out.write_bytes(POLICY_VERSION_PREFIX.as_bytes())?;
    let version = policy.version();
    write!(TextSink(out), "{}.{}.{}", version.major, version.minor, version.revision)?;
    out.write_bytes(b"\n")?;

    if let Some(action) = policy.global_default() {
        writeln!(TextSink(out), "{DEFAULT_KEYWORD} {ACTION_PREFIX}{}", action.name())?;
    }
    for operation in Operation::ALL {
        if let Some(action) = policy.operation_default(operation) {
            writeln!(TextSink(out), "{DEFAULT_KEYWORD} {OPERATION_PREFIX}{} {ACTION_PREFIX}{}", operation.name(), action.name())?;
        }
    }
    for rule in policy.rules() {
        write_rule(out, policy, rule, DigestStyle::Policy)?;
        out.write_bytes(b"\n")?;
    }
    Ok(())
}

/// Lets `write!` format into a [`ByteWrite`].
struct TextSink<'w, W: ByteWrite + ?Sized>(&'w mut W);

impl<W: ByteWrite + ?Sized> fmt::Write for TextSink<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0.write_bytes(text.as_bytes())
    }
}

/// Displays a rule in policy syntax, escaping non-UTF-8 bytes as `\xNN`.
pub struct DisplayRule<'p, 'a> {
    /// The policy the rule belongs to.
    pub policy: &'p PolicyRef<'a>,
    /// The rule.
    pub rule: &'p Rule,
}

impl fmt::Display for DisplayRule<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_rule(&mut TextWriter(f), self.policy, self.rule, DigestStyle::Policy)
    }
}

/// Whether a property key takes a digest (used by lint and printer callers).
pub fn is_digest_key(key: PropertyKey) -> bool {
    matches!(key, PropertyKey::DmVerityRootHash | PropertyKey::FsVerityDigest)
}
