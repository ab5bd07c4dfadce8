// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Lexical processing, as Linux 6.12's `ipe_parse_policy` does it. The text
//! ends at the first NUL byte, and every CR and every LF ends a line. A `#`
//! starts a comment anywhere in a line, trailing `isspace()` characters are
//! dropped, and only SPACE and TAB separate tokens.
//!
//! The kernel turns a CR LF pair into two line ends; the empty line between
//! them is skipped, so counting the pair as one line end (as editors do)
//! changes only the line numbers this crate reports, not what is parsed.

use crate::grammar::COMMENT;

/// A token: its bytes, its absolute offset in the text, and its 1-based column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token<'t> {
    /// The token's bytes.
    pub bytes: &'t [u8],
    /// Byte offset of the token's first byte in the whole text.
    pub offset: usize,
    /// 1-based byte column in its line.
    pub column: u32,
}

/// A non-empty line after comment removal and trailing-space trimming.
#[derive(Clone, Copy, Debug)]
pub struct Line<'t> {
    /// The line's bytes without comment and trailing spaces.
    pub bytes: &'t [u8],
    /// Byte offset of the line's first byte in the whole text.
    pub offset: usize,
    /// 1-based line number.
    pub number: u32,
}

/// Cuts `text` at its first NUL byte, as the kernel's C-string handling does.
pub fn truncate_at_nul(text: &[u8]) -> &[u8] {
    match text.iter().position(|&byte| byte == 0) {
        Some(end) => text.get(..end).unwrap_or(text),
        None => text,
    }
}

/// Whether C `isspace()` is true for `byte` in the kernel's ctype table
/// (SPACE, TAB, LF, VT, FF, CR).
pub fn is_c_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Whether `byte` separates tokens (SPACE and TAB only).
pub fn is_separator(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// Iterates over the non-empty lines of a NUL-truncated text.
#[derive(Clone, Debug)]
pub struct Lines<'t> {
    text: &'t [u8],
    position: usize,
    number: u32,
    done: bool,
}

impl<'t> Lines<'t> {
    /// Starts at the beginning of `text`, which must already be NUL-truncated.
    pub fn new(text: &'t [u8]) -> Lines<'t> {
        Lines { text, position: 0, number: 0, done: false }
    }
}

impl<'t> Iterator for Lines<'t> {
    type Item = Line<'t>;

    fn next(&mut self) -> Option<Line<'t>> {
        while !self.done {
            let rest = self.text.get(self.position..).unwrap_or(&[]);
            let length = rest.iter().position(|&byte| byte == b'\n' || byte == b'\r');
            let start = self.position;
            let raw = match length {
                Some(length) => {
                    let ends_with_crlf = rest.get(length) == Some(&b'\r') && rest.get(length.saturating_add(1)) == Some(&b'\n');
                    let terminator = if ends_with_crlf { 2 } else { 1 };
                    self.position = self.position.saturating_add(length).saturating_add(terminator);
                    rest.get(..length).unwrap_or(&[])
                }
                None => {
                    self.done = true;
                    rest
                }
            };
            self.number = self.number.saturating_add(1);

            let without_comment = match raw.iter().position(|&byte| byte == COMMENT) {
                Some(hash) => raw.get(..hash).unwrap_or(raw),
                None => raw,
            };
            let trimmed_len = without_comment.iter().rposition(|&byte| !is_c_space(byte)).map_or(0, |last| last.saturating_add(1));
            let bytes = without_comment.get(..trimmed_len).unwrap_or(&[]);
            if !bytes.is_empty() {
                return Some(Line { bytes, offset: start, number: self.number });
            }
        }
        None
    }
}

impl<'t> Line<'t> {
    /// The line's tokens: runs of bytes between SPACE and TAB characters.
    pub fn tokens(&self) -> Tokens<'t> {
        Tokens { line: *self, position: 0 }
    }
}

/// Iterates over the tokens of one line.
#[derive(Clone, Debug)]
pub struct Tokens<'t> {
    line: Line<'t>,
    position: usize,
}

impl<'t> Iterator for Tokens<'t> {
    type Item = Token<'t>;

    fn next(&mut self) -> Option<Token<'t>> {
        let rest = self.line.bytes.get(self.position..)?;
        let skip = rest.iter().position(|&byte| !is_separator(byte))?;
        let start = self.position.saturating_add(skip);
        let from_start = self.line.bytes.get(start..)?;
        let length = from_start.iter().position(|&byte| is_separator(byte)).unwrap_or(from_start.len());
        self.position = start.saturating_add(length);
        Some(Token {
            bytes: from_start.get(..length)?,
            offset: self.line.offset.saturating_add(start),
            column: u32::try_from(start.saturating_add(1)).unwrap_or(u32::MAX),
        })
    }
}
