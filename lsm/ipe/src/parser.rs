// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! The policy parser, in two passes over the same code: [`measure`] counts
//! what a policy needs, then [`parse_into`] fills caller-provided
//! [`Storage`] and builds the digest index.
//!
//! It accepts and rejects exactly what Linux 6.12's `ipe_parse_policy`
//! does, with the same errno. It checks tokens in the kernel's order: left
//! to right, then the last token of a line as the action. So a line with two
//! faults reports the one the kernel hits first.

use core::cmp::Ordering;

use crate::error::{ErrorKind, ParseError};
use crate::grammar::{
    Action, Operation, ValueSyntax, ACTION_PREFIX, DEFAULT_KEYWORD, DIGEST_SEPARATOR, FALSE_LITERAL, OPERATION_COUNT,
    OPERATION_PREFIX, POLICY_NAME_PREFIX, POLICY_VERSION_PREFIX, PROPERTIES, TRUE_LITERAL,
};
use crate::lexer::{truncate_at_nul, Line, Lines, Token};
use crate::policy::{Counts, DefaultAction, DigestRef, IndexEntry, PolicyHeader, PolicyRef, Property, Rule, Span, Storage, Value, Version};

/// Counts the storage [`parse_into`] needs for `text`.
///
/// The counts of an invalid policy cover the part before the error, which
/// is enough for `parse_into` to reach and report that error.
pub fn measure(text: &[u8]) -> Counts {
    let mut sink = CountingSink::default();
    let _ = parse_text(text, &mut sink);
    sink.counts
}

/// Parses `text` into `storage` and returns the policy.
///
/// `storage` must be at least as large as [`measure`] reports for `text`.
/// Rules are stored grouped by operation, in file order within each
/// operation; the digest index is sorted here.
///
/// # Errors
///
/// A [`ParseError`] with the errno Linux 6.12 returns for this text
/// (EBADMSG, EINVAL or ERANGE), or ENOMEM ([`ErrorKind::StorageTooSmall`])
/// when `storage` is smaller than `measure` reports.
pub fn parse_into<'a>(text: &'a [u8], storage: &'a mut Storage<'_>) -> Result<PolicyRef<'a>, ParseError> {
    parse_measured(text, &measure(text), storage)
}

/// [`parse_into`] with the counts [`measure`] returned for `text`, to save
/// a pass when the caller measured already.
pub(crate) fn parse_measured<'a>(text: &'a [u8], counts: &Counts, storage: &'a mut Storage<'_>) -> Result<PolicyRef<'a>, ParseError> {
    let Storage { rules, properties, digest_bytes, index, plain_rules } = storage;
    let too_small = || ParseError::new(ErrorKind::StorageTooSmall, 1, 1, &[]);
    let rules = rules.get_mut(..counts.rules).ok_or_else(too_small)?;
    let properties = properties.get_mut(..counts.properties).ok_or_else(too_small)?;
    let digest_bytes = digest_bytes.get_mut(..counts.digest_bytes).ok_or_else(too_small)?;
    let index = index.get_mut(..counts.indexed_rules).ok_or_else(too_small)?;
    let plain_rules = plain_rules.get_mut(..counts.plain_rules).ok_or_else(too_small)?;

    let mut rule_ranges = [Span::EMPTY; OPERATION_COUNT];
    let mut start = 0usize;
    for (range, &count) in rule_ranges.iter_mut().zip(counts.rules_per_operation.iter()) {
        *range = Span { start, len: 0 };
        start = start.saturating_add(count);
    }
    let mut sink = FillingSink { rules, properties, digest_bytes, rule_ranges, property_count: 0, digest_count: 0 };
    let mut header = parse_text(text, &mut sink)?;
    header.rule_ranges = sink.rule_ranges;

    let FillingSink { rules, properties, digest_bytes, .. } = sink;
    let (index_ranges, plain_ranges) = build_index(rules, properties, &header.rule_ranges, index, plain_rules).ok_or_else(too_small)?;
    header.index_ranges = index_ranges;
    header.plain_ranges = plain_ranges;
    let text = truncate_at_nul(text);
    for range in &index_ranges {
        let entries = range.start.checked_add(range.len).and_then(|end| index.get_mut(range.start..end)).unwrap_or(&mut []);
        entries.sort_unstable_by(|a, b| compare_entries(text, properties, digest_bytes, a, b));
    }

    Ok(PolicyRef { text, header, rules, properties, digest_bytes, index, plain_rules })
}

/// Orders index entries by (property key, algorithm, digest bytes, rule).
pub(crate) fn compare_entries(text: &[u8], properties: &[Property], digest_bytes: &[u8], a: &IndexEntry, b: &IndexEntry) -> Ordering {
    let key = |entry: &IndexEntry| {
        let property = usize::try_from(entry.property).ok().and_then(|i| properties.get(i));
        let digest = property.and_then(Property::digest).unwrap_or_default();
        (property.map(|p| p.key), digest.algorithm.of(text), digest.bytes.of(digest_bytes))
    };
    key(a).cmp(&key(b)).then(a.rule.cmp(&b.rule))
}

/// Splits each operation's rules into the digest index and the plain list.
fn build_index(
    rules: &[Rule],
    properties: &[Property],
    rule_ranges: &[Span; OPERATION_COUNT],
    index: &mut [IndexEntry],
    plain_rules: &mut [u32],
) -> Option<([Span; OPERATION_COUNT], [Span; OPERATION_COUNT])> {
    let mut index_ranges = [Span::EMPTY; OPERATION_COUNT];
    let mut plain_ranges = [Span::EMPTY; OPERATION_COUNT];
    let mut index_count = 0usize;
    let mut plain_count = 0usize;
    for ((rule_range, index_range), plain_range) in rule_ranges.iter().zip(index_ranges.iter_mut()).zip(plain_ranges.iter_mut()) {
        *index_range = Span { start: index_count, len: 0 };
        *plain_range = Span { start: plain_count, len: 0 };
        let end = rule_range.start.checked_add(rule_range.len)?;
        for rule_index in rule_range.start..end {
            let rule = rules.get(rule_index)?;
            let rule_number = u32::try_from(rule_index).ok()?;
            let own = rule.properties.start.checked_add(rule.properties.len).and_then(|end| properties.get(rule.properties.start..end))?;
            match own.iter().position(|property| property.digest().is_some()) {
                Some(offset) => {
                    let property = u32::try_from(rule.properties.start.checked_add(offset)?).ok()?;
                    *index.get_mut(index_count)? = IndexEntry { rule: rule_number, property };
                    index_count = index_count.checked_add(1)?;
                    index_range.len = index_range.len.checked_add(1)?;
                }
                None => {
                    *plain_rules.get_mut(plain_count)? = rule_number;
                    plain_count = plain_count.checked_add(1)?;
                    plain_range.len = plain_range.len.checked_add(1)?;
                }
            }
        }
    }
    Some((index_ranges, plain_ranges))
}

/// Destination of a parse pass: counters, or the caller's storage.
trait Sink {
    /// Number of properties stored so far.
    fn property_count(&self) -> usize;
    /// Stores a property.
    fn property(&mut self, property: Property) -> Result<(), ()>;
    /// Stores the decoded bytes of validated hex digits and returns where they are.
    fn digest(&mut self, hex: &[u8]) -> Result<Span, ()>;
    /// Stores a rule. `has_digest` is true when it goes into the digest index.
    fn rule(&mut self, rule: Rule, has_digest: bool) -> Result<(), ()>;
}

#[derive(Default)]
struct CountingSink {
    counts: Counts,
}

impl Sink for CountingSink {
    fn property_count(&self) -> usize {
        self.counts.properties
    }

    fn property(&mut self, _property: Property) -> Result<(), ()> {
        self.counts.properties = self.counts.properties.checked_add(1).ok_or(())?;
        Ok(())
    }

    fn digest(&mut self, hex: &[u8]) -> Result<Span, ()> {
        let len = hex.len().checked_div(2).ok_or(())?;
        let span = Span { start: self.counts.digest_bytes, len };
        self.counts.digest_bytes = self.counts.digest_bytes.checked_add(len).ok_or(())?;
        Ok(span)
    }

    fn rule(&mut self, rule: Rule, has_digest: bool) -> Result<(), ()> {
        let counts = &mut self.counts;
        counts.rules = counts.rules.checked_add(1).ok_or(())?;
        let per_operation = counts.rules_per_operation.get_mut(rule.operation.index()).ok_or(())?;
        *per_operation = per_operation.checked_add(1).ok_or(())?;
        let bucket = if has_digest { &mut counts.indexed_rules } else { &mut counts.plain_rules };
        *bucket = bucket.checked_add(1).ok_or(())?;
        Ok(())
    }
}

struct FillingSink<'s> {
    rules: &'s mut [Rule],
    properties: &'s mut [Property],
    digest_bytes: &'s mut [u8],
    /// Start of each operation's rules; `len` grows as rules arrive.
    rule_ranges: [Span; OPERATION_COUNT],
    property_count: usize,
    digest_count: usize,
}

impl Sink for FillingSink<'_> {
    fn property_count(&self) -> usize {
        self.property_count
    }

    fn property(&mut self, property: Property) -> Result<(), ()> {
        *self.properties.get_mut(self.property_count).ok_or(())? = property;
        self.property_count = self.property_count.checked_add(1).ok_or(())?;
        Ok(())
    }

    fn digest(&mut self, hex: &[u8]) -> Result<Span, ()> {
        let start = self.digest_count;
        for pair in hex.chunks_exact(2) {
            let (Some(&high), Some(&low)) = (pair.first(), pair.get(1)) else { return Err(()) };
            let byte = hex_value(high).ok_or(())?.checked_mul(16).and_then(|h| h.checked_add(hex_value(low)?)).ok_or(())?;
            *self.digest_bytes.get_mut(self.digest_count).ok_or(())? = byte;
            self.digest_count = self.digest_count.checked_add(1).ok_or(())?;
        }
        Ok(Span { start, len: self.digest_count.checked_sub(start).ok_or(())? })
    }

    fn rule(&mut self, rule: Rule, _has_digest: bool) -> Result<(), ()> {
        let range = self.rule_ranges.get_mut(rule.operation.index()).ok_or(())?;
        let slot = range.start.checked_add(range.len).ok_or(())?;
        *self.rules.get_mut(slot).ok_or(())? = rule;
        range.len = range.len.checked_add(1).ok_or(())?;
        Ok(())
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => digit.checked_sub(b'0'),
        b'a'..=b'f' => digit.checked_sub(b'a').and_then(|v| v.checked_add(10)),
        b'A'..=b'F' => digit.checked_sub(b'A').and_then(|v| v.checked_add(10)),
        _ => None,
    }
}

fn storage_error(line: u32) -> ParseError {
    ParseError::new(ErrorKind::StorageTooSmall, line, 1, &[])
}

fn token_error(kind: ErrorKind, line: &Line<'_>, token: &Token<'_>) -> ParseError {
    ParseError::new(kind, line.number, token.column, token.bytes)
}

/// Defaults seen so far while parsing.
struct Defaults {
    global: Option<DefaultAction>,
    per_operation: [Option<DefaultAction>; OPERATION_COUNT],
}

/// Parses the whole text; both passes run this routine.
fn parse_text<S: Sink>(text: &[u8], sink: &mut S) -> Result<PolicyHeader, ParseError> {
    let text = truncate_at_nul(text);
    let mut header: Option<PolicyHeader> = None;
    let mut defaults = Defaults { global: None, per_operation: [None; OPERATION_COUNT] };
    for line in Lines::new(text) {
        match header {
            None => header = Some(parse_header(&line)?),
            Some(_) => parse_rule_line(&line, sink, &mut defaults)?,
        }
    }

    let Some(mut header) = header else {
        return Err(ParseError::new(ErrorKind::EmptyPolicy, 1, 1, &[]));
    };
    if defaults.global.is_none() {
        if let Some(missing) = Operation::ALL.iter().zip(defaults.per_operation.iter()).find(|(_, default)| default.is_none()) {
            return Err(ParseError::new(ErrorKind::MissingDefault { operation: *missing.0 }, header.line, 1, &[]));
        }
    }
    header.global_default = defaults.global;
    header.operation_defaults = defaults.per_operation;
    Ok(header)
}

/// Parses `policy_name=NAME policy_version=X.Y.Z`.
fn parse_header(line: &Line<'_>) -> Result<PolicyHeader, ParseError> {
    let mut name = None;
    let mut version = None;
    let mut position = 0usize;
    for token in line.tokens() {
        if position >= 2 {
            return Err(token_error(ErrorKind::ExtraHeaderToken, line, &token));
        }
        // The kernel tries the patterns in this order; `%s` needs at least one byte.
        let matched = if token.bytes.len() > POLICY_NAME_PREFIX.len() && token.bytes.starts_with(POLICY_NAME_PREFIX.as_bytes()) {
            0
        } else if token.bytes.len() > POLICY_VERSION_PREFIX.len() && token.bytes.starts_with(POLICY_VERSION_PREFIX.as_bytes()) {
            1
        } else {
            2
        };
        if matched != position {
            return Err(token_error(ErrorKind::InvalidHeaderToken, line, &token));
        }
        if matched == 0 {
            name = Some(Span { start: token.offset.saturating_add(POLICY_NAME_PREFIX.len()), len: token.bytes.len().saturating_sub(POLICY_NAME_PREFIX.len()) });
        } else {
            version = Some(parse_version(line, &token)?);
        }
        position = position.saturating_add(1);
    }

    match (name, version) {
        (Some(name), Some(version)) => Ok(PolicyHeader {
            name,
            version,
            line: line.number,
            global_default: None,
            operation_defaults: [None; OPERATION_COUNT],
            rule_ranges: [Span::EMPTY; OPERATION_COUNT],
            index_ranges: [Span::EMPTY; OPERATION_COUNT],
            plain_ranges: [Span::EMPTY; OPERATION_COUNT],
        }),
        _ => {
            let column = u32::try_from(line.bytes.len().saturating_add(1)).unwrap_or(u32::MAX);
            Err(ParseError::new(ErrorKind::MissingHeaderToken, line.number, column, &[]))
        }
    }
}

/// Parses the value of `policy_version=` as the kernel's `parse_version` does.
fn parse_version(line: &Line<'_>, token: &Token<'_>) -> Result<Version, ParseError> {
    let value = token.bytes.get(POLICY_VERSION_PREFIX.len()..).unwrap_or(&[]);
    let mut components = [0u16; 3];
    let mut count = 0usize;
    let mut offset = POLICY_VERSION_PREFIX.len();
    for part in value.split(|&byte| byte == b'.') {
        let column = token.column.saturating_add(u32::try_from(offset).unwrap_or(u32::MAX));
        let error = |kind| ParseError::new(kind, line.number, column, part);
        let slot = components.get_mut(count).ok_or_else(|| error(ErrorKind::TooManyVersionParts))?;
        *slot = parse_u16(part).map_err(error)?;
        count = count.saturating_add(1);
        offset = offset.saturating_add(part.len()).saturating_add(1);
    }
    if count != 3 {
        return Err(token_error(ErrorKind::TooFewVersionParts, line, token));
    }
    let [major, minor, revision] = components;
    Ok(Version { major, minor, revision })
}

/// Converts a decimal number as the kernel's `kstrtou16(s, 10, …)` does. It
/// takes an optional leading `+`, then digits only. A u64 overflow or a value
/// above 65535 gives ERANGE, and anything else that is not a number gives EINVAL.
fn parse_u16(text: &[u8]) -> Result<u16, ErrorKind> {
    let digits = text.strip_prefix(b"+").unwrap_or(text);
    let mut value: Option<u64> = Some(0);
    let mut consumed = 0usize;
    for &byte in digits.iter().take_while(|byte| byte.is_ascii_digit()) {
        value = value.and_then(|v| v.checked_mul(10)).and_then(|v| v.checked_add(u64::from(byte.wrapping_sub(b'0'))));
        consumed = consumed.saturating_add(1);
    }
    let Some(value) = value else { return Err(ErrorKind::VersionOutOfRange) };
    if consumed == 0 || consumed != digits.len() {
        return Err(ErrorKind::VersionNotNumber);
    }
    u16::try_from(value).map_err(|_| ErrorKind::VersionOutOfRange)
}

/// Parses a rule line or a DEFAULT line.
fn parse_rule_line<S: Sink>(line: &Line<'_>, sink: &mut S, defaults: &mut Defaults) -> Result<(), ParseError> {
    let mut tokens = line.tokens().peekable();
    let mut is_default = false;
    let mut is_first = true;
    let mut operation: Option<Operation> = None;
    let mut first_property: Option<Token<'_>> = None;
    let mut has_digest = false;
    let properties_start = sink.property_count();
    let mut action: Option<(Action, Token<'_>)> = None;
    let mut first_token: Option<Token<'_>> = None;

    while let Some(token) = tokens.next() {
        if first_token.is_none() {
            first_token = Some(token);
        }
        if tokens.peek().is_none() {
            let parsed = token.bytes.strip_prefix(ACTION_PREFIX.as_bytes()).and_then(Action::from_name);
            let parsed = parsed.ok_or_else(|| token_error(ErrorKind::MissingAction, line, &token))?;
            action = Some((parsed, token));
            break;
        }
        if is_first && token.bytes == DEFAULT_KEYWORD.as_bytes() {
            is_default = true;
        } else if operation.is_none() {
            let parsed = token.bytes.strip_prefix(OPERATION_PREFIX.as_bytes()).and_then(Operation::from_name);
            operation = Some(parsed.ok_or_else(|| token_error(ErrorKind::InvalidOperation, line, &token))?);
        } else {
            let property = parse_property(line, &token, sink)?;
            has_digest |= property.digest().is_some();
            sink.property(property).map_err(|()| storage_error(line.number))?;
            if first_property.is_none() {
                first_property = Some(token);
            }
        }
        is_first = false;
    }

    let Some((action, action_token)) = action else { return Ok(()) };
    let this_default = DefaultAction { action, line: line.number };
    if is_default {
        let keyword = first_token.unwrap_or(action_token);
        if let Some(property) = first_property {
            return Err(token_error(ErrorKind::DefaultWithProperty, line, &property));
        }
        let slot = match operation {
            None => &mut defaults.global,
            Some(operation) => defaults.per_operation.get_mut(operation.index()).ok_or_else(|| storage_error(line.number))?,
        };
        if let Some(first) = slot {
            let kind = match operation {
                None => ErrorKind::DuplicateGlobalDefault { first_line: first.line },
                Some(operation) => ErrorKind::DuplicateOperationDefault { operation, first_line: first.line },
            };
            return Err(token_error(kind, line, &keyword));
        }
        *slot = Some(this_default);
        return Ok(());
    }
    let Some(operation) = operation else {
        return Err(token_error(ErrorKind::MissingOperation, line, &action_token));
    };
    let count = sink.property_count().saturating_sub(properties_start);
    let rule = Rule { operation, action, properties: Span { start: properties_start, len: count }, line: line.number };
    sink.rule(rule, has_digest).map_err(|()| storage_error(line.number))
}

/// Parses one property token and stores its digest bytes.
fn parse_property<S: Sink>(line: &Line<'_>, token: &Token<'_>, sink: &mut S) -> Result<Property, ParseError> {
    let entry = PROPERTIES.iter().find(|entry| {
        token.bytes.starts_with(entry.name.as_bytes()) && token.bytes.get(entry.name.len()) == Some(&b'=')
    });
    let Some(entry) = entry else {
        return Err(token_error(ErrorKind::UnknownProperty, line, token));
    };
    let value_offset = entry.name.len().saturating_add(1);
    let value = token.bytes.get(value_offset..).unwrap_or(&[]);
    let value = match entry.syntax {
        ValueSyntax::Boolean if value == TRUE_LITERAL.as_bytes() => Value::Boolean(true),
        ValueSyntax::Boolean if value == FALSE_LITERAL.as_bytes() => Value::Boolean(false),
        ValueSyntax::Boolean => return Err(token_error(ErrorKind::InvalidBoolean, line, token)),
        ValueSyntax::Digest => Value::Digest(parse_digest(line, token, value_offset, sink)?),
    };
    Ok(Property { key: entry.key, value, column: token.column })
}

/// Parses `ALG:HEX` as the kernel's `ipe_digest_parse` does: split at the
/// first `:`, any algorithm name (even empty), an even number of hex digits
/// in either case (even none).
fn parse_digest<S: Sink>(line: &Line<'_>, token: &Token<'_>, value_offset: usize, sink: &mut S) -> Result<DigestRef, ParseError> {
    let value = token.bytes.get(value_offset..).unwrap_or(&[]);
    if value.is_empty() {
        return Err(token_error(ErrorKind::MissingDigest, line, token));
    }
    let Some(colon) = value.iter().position(|&byte| byte == DIGEST_SEPARATOR) else {
        return Err(token_error(ErrorKind::DigestWithoutAlgorithm, line, token));
    };
    let hex = value.get(colon.saturating_add(1)..).unwrap_or(&[]);
    let hex_column = |index: usize| {
        let offset = value_offset.saturating_add(colon).saturating_add(1).saturating_add(index);
        token.column.saturating_add(u32::try_from(offset).unwrap_or(u32::MAX))
    };
    // The kernel decodes pairs left to right, so the first bad character
    // wins; an odd length pairs the last digit with the terminating NUL.
    if let Some(bad) = hex.iter().position(|&byte| !byte.is_ascii_hexdigit()) {
        return Err(ParseError::new(ErrorKind::InvalidHexDigit, line.number, hex_column(bad), token.bytes));
    }
    if hex.len() % 2 != 0 {
        return Err(ParseError::new(ErrorKind::OddHexLength, line.number, hex_column(hex.len()), token.bytes));
    }
    let bytes = sink.digest(hex).map_err(|()| storage_error(line.number))?;
    let algorithm = Span { start: token.offset.saturating_add(value_offset), len: colon };
    Ok(DigestRef { algorithm, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Errno;

    #[test]
    fn kstrtou16_edge_cases() {
        assert_eq!(parse_u16(b"65535"), Ok(65535));
        assert_eq!(parse_u16(b"+007"), Ok(7));
        assert_eq!(parse_u16(b"65536"), Err(ErrorKind::VersionOutOfRange));
        assert_eq!(parse_u16(b"99999999999999999999999x"), Err(ErrorKind::VersionOutOfRange));
        assert_eq!(parse_u16(b"70000x"), Err(ErrorKind::VersionNotNumber));
        assert_eq!(parse_u16(b""), Err(ErrorKind::VersionNotNumber));
        assert_eq!(parse_u16(b"+"), Err(ErrorKind::VersionNotNumber));
        assert_eq!(parse_u16(b"-1"), Err(ErrorKind::VersionNotNumber));
        assert_eq!(parse_u16(b"0x10"), Err(ErrorKind::VersionNotNumber));
    }

    #[test]
    fn storage_too_small_is_enomem() {
        let text = b"policy_name=a policy_version=1.2.3\nDEFAULT action=ALLOW\nop=EXECUTE boot_verified=TRUE action=DENY\n";
        let mut rules = [Rule::EMPTY; 0];
        let mut storage = Storage { rules: &mut rules, properties: &mut [], digest_bytes: &mut [], index: &mut [], plain_rules: &mut [] };
        let error = parse_into(text, &mut storage).err();
        assert_eq!(error.map(|e| e.errno), Some(Errno::OutOfMemory));
    }
}
