// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! The parsed policy: rules grouped by operation in file order, their
//! properties, decoded digests and the digest index, all in caller-provided
//! slices. Names and algorithm names stay in the policy text and are
//! referred to by [`Span`].

use crate::grammar::{Action, Operation, PropertyKey, OPERATION_COUNT};

/// A byte range in the policy text or in the digest byte storage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// Offset of the first byte.
    pub start: usize,
    /// Number of bytes.
    pub len: usize,
}

impl Span {
    /// An empty span at offset 0.
    pub const EMPTY: Span = Span { start: 0, len: 0 };

    /// The bytes of `data` this span covers, or an empty slice when it lies outside.
    pub fn of<'d>(&self, data: &'d [u8]) -> &'d [u8] {
        self.start.checked_add(self.len).and_then(|end| data.get(self.start..end)).unwrap_or(&[])
    }
}

/// A policy version: major, minor, revision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// First component.
    pub major: u16,
    /// Second component.
    pub minor: u16,
    /// Third component.
    pub revision: u16,
}

/// A digest in a rule: the algorithm name (a span of the policy text) and
/// the decoded bytes (a span of the digest storage).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DigestRef {
    /// The algorithm name, before the first `:`.
    pub algorithm: Span,
    /// The decoded digest bytes.
    pub bytes: Span,
}

/// A property value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    /// `TRUE` or `FALSE`.
    Boolean(bool),
    /// `ALG:HEX`.
    Digest(DigestRef),
}

/// One property of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Property {
    /// The key.
    pub key: PropertyKey,
    /// The value.
    pub value: Value,
    /// 1-based column of the property token in its line.
    pub column: u32,
}

impl Property {
    /// A placeholder to fill storage slices with before parsing.
    pub const EMPTY: Property = Property { key: PropertyKey::BootVerified, value: Value::Boolean(false), column: 0 };

    /// The digest, for `dmverity_roothash` and `fsverity_digest`.
    pub fn digest(&self) -> Option<DigestRef> {
        match self.value {
            Value::Digest(digest) => Some(digest),
            Value::Boolean(_) => None,
        }
    }
}

impl Default for Property {
    fn default() -> Property {
        Property::EMPTY
    }
}

/// One rule: an operation, properties that must all be true, and an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The operation the rule applies to.
    pub operation: Operation,
    /// The decision when the rule matches.
    pub action: Action,
    /// The rule's properties, as a range of [`PolicyRef::properties`], in file order.
    pub properties: Span,
    /// 1-based line of the rule in the policy text.
    pub line: u32,
}

impl Rule {
    /// A placeholder to fill storage slices with before parsing.
    pub const EMPTY: Rule = Rule { operation: Operation::Execute, action: Action::Deny, properties: Span::EMPTY, line: 0 };
}

impl Default for Rule {
    fn default() -> Rule {
        Rule::EMPTY
    }
}

/// An entry of the digest index: a rule that names a digest, keyed by its
/// first digest property. The rule can only match an event whose digest of
/// that kind equals this key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexEntry {
    /// Index of the rule in [`PolicyRef::rules`].
    pub rule: u32,
    /// Index of the keying property in [`PolicyRef::properties`].
    pub property: u32,
}

/// A default action and the line that set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultAction {
    /// The action.
    pub action: Action,
    /// 1-based line of the `DEFAULT` line.
    pub line: u32,
}

/// Sizes [`parse_into`](crate::parse_into) needs, as counted by
/// [`measure`](crate::measure).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Rules (default lines excluded).
    pub rules: usize,
    /// Rules per operation, in [`Operation::ALL`] order.
    pub rules_per_operation: [usize; OPERATION_COUNT],
    /// Properties of all rules.
    pub properties: usize,
    /// Decoded digest bytes of all rules.
    pub digest_bytes: usize,
    /// Rules with at least one digest property (the digest index's length).
    pub indexed_rules: usize,
    /// Rules without a digest property.
    pub plain_rules: usize,
}

/// Caller-provided storage for one parsed policy. Each slice must be at
/// least as long as the matching field of [`Counts`]; longer is fine.
#[derive(Debug)]
pub struct Storage<'s> {
    /// At least [`Counts::rules`] entries.
    pub rules: &'s mut [Rule],
    /// At least [`Counts::properties`] entries.
    pub properties: &'s mut [Property],
    /// At least [`Counts::digest_bytes`] bytes.
    pub digest_bytes: &'s mut [u8],
    /// At least [`Counts::indexed_rules`] entries.
    pub index: &'s mut [IndexEntry],
    /// At least [`Counts::plain_rules`] entries.
    pub plain_rules: &'s mut [u32],
}

/// Everything about a parsed policy that is not in a slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyHeader {
    /// `policy_name`, a span of the policy text.
    pub name: Span,
    /// `policy_version`.
    pub version: Version,
    /// Line of the header.
    pub line: u32,
    /// `DEFAULT action=…`, if present.
    pub global_default: Option<DefaultAction>,
    /// `DEFAULT op=… action=…` per operation.
    pub operation_defaults: [Option<DefaultAction>; OPERATION_COUNT],
    /// Range of [`PolicyRef::rules`] per operation.
    pub rule_ranges: [Span; OPERATION_COUNT],
    /// Range of the digest index per operation (see [`PolicyRef::index_for`]).
    pub index_ranges: [Span; OPERATION_COUNT],
    /// Range of the digest-free rule list per operation (see [`PolicyRef::plain_rules_for`]).
    pub plain_ranges: [Span; OPERATION_COUNT],
}

/// A parsed policy borrowing its text and storage.
#[derive(Clone, Copy, Debug)]
pub struct PolicyRef<'a> {
    pub(crate) text: &'a [u8],
    pub(crate) header: PolicyHeader,
    pub(crate) rules: &'a [Rule],
    pub(crate) properties: &'a [Property],
    pub(crate) digest_bytes: &'a [u8],
    pub(crate) index: &'a [IndexEntry],
    pub(crate) plain_rules: &'a [u32],
}

impl<'a> PolicyRef<'a> {
    /// The policy text it was parsed from (up to the first NUL byte).
    pub fn text(&self) -> &'a [u8] {
        self.text
    }

    /// The header and defaults.
    pub fn header(&self) -> &PolicyHeader {
        &self.header
    }

    /// `policy_name`: any bytes except NUL, SPACE, TAB, CR, LF and `#`.
    pub fn name(&self) -> &'a [u8] {
        self.header.name.of(self.text)
    }

    /// `policy_version`.
    pub fn version(&self) -> Version {
        self.header.version
    }

    /// The global default action.
    pub fn global_default(&self) -> Option<Action> {
        self.header.global_default.map(|default| default.action)
    }

    /// The operation's own default action.
    pub fn operation_default(&self, operation: Operation) -> Option<Action> {
        self.header.operation_defaults.get(operation.index()).copied().flatten().map(|default| default.action)
    }

    /// All rules, grouped by operation in [`Operation::ALL`] order, in file order within an operation.
    pub fn rules(&self) -> &'a [Rule] {
        self.rules
    }

    /// The rules of one operation in file order; the first index is [`PolicyRef::first_rule`].
    pub fn rules_for(&self, operation: Operation) -> &'a [Rule] {
        self.span_of(self.rules, self.header.rule_ranges.get(operation.index()).copied())
    }

    /// Index in [`PolicyRef::rules`] of the operation's first rule.
    pub fn first_rule(&self, operation: Operation) -> usize {
        self.header.rule_ranges.get(operation.index()).map_or(0, |range| range.start)
    }

    /// The rule at `index` of [`PolicyRef::rules`].
    pub fn rule(&self, index: usize) -> Option<&'a Rule> {
        self.rules.get(index)
    }

    /// All properties of all rules.
    pub fn properties(&self) -> &'a [Property] {
        self.properties
    }

    /// The properties of one rule, in file order.
    pub fn properties_of(&self, rule: &Rule) -> &'a [Property] {
        self.span_of(self.properties, Some(rule.properties))
    }

    /// The algorithm name of a digest.
    pub fn algorithm(&self, digest: &DigestRef) -> &'a [u8] {
        digest.algorithm.of(self.text)
    }

    /// The decoded bytes of a digest.
    pub fn digest_bytes(&self, digest: &DigestRef) -> &'a [u8] {
        digest.bytes.of(self.digest_bytes)
    }

    /// The digest index of one operation, sorted by (property key, algorithm, digest, rule).
    pub fn index_for(&self, operation: Operation) -> &'a [IndexEntry] {
        self.span_of(self.index, self.header.index_ranges.get(operation.index()).copied())
    }

    /// The rules of one operation without a digest property, as indexes of [`PolicyRef::rules`] in file order.
    pub fn plain_rules_for(&self, operation: Operation) -> &'a [u32] {
        self.span_of(self.plain_rules, self.header.plain_ranges.get(operation.index()).copied())
    }

    fn span_of<T>(&self, data: &'a [T], span: Option<Span>) -> &'a [T] {
        span.and_then(|span| span.start.checked_add(span.len).and_then(|end| data.get(span.start..end))).unwrap_or(&[])
    }

    /// Compares two properties by meaning: key and value, ignoring position.
    pub fn same_property(&self, left: &Property, other: &PolicyRef<'_>, right: &Property) -> bool {
        if left.key != right.key {
            return false;
        }
        match (left.value, right.value) {
            (Value::Boolean(a), Value::Boolean(b)) => a == b,
            (Value::Digest(a), Value::Digest(b)) => {
                self.algorithm(&a) == other.algorithm(&b) && self.digest_bytes(&a) == other.digest_bytes(&b)
            }
            _ => false,
        }
    }

    /// Compares two rules by meaning: operation, action and properties in order.
    pub fn same_rule(&self, left: &Rule, other: &PolicyRef<'_>, right: &Rule) -> bool {
        let left_properties = self.properties_of(left);
        let right_properties = other.properties_of(right);
        left.operation == right.operation
            && left.action == right.action
            && left_properties.len() == right_properties.len()
            && left_properties.iter().zip(right_properties).all(|(a, b)| self.same_property(a, other, b))
    }
}

/// Policies are equal when they mean the same: name, version, defaults, and
/// each operation's rules in order. Line numbers, comments, spacing, hex
/// case and the interleaving of operations do not count.
impl PartialEq for PolicyRef<'_> {
    fn eq(&self, other: &PolicyRef<'_>) -> bool {
        if self.name() != other.name() || self.version() != other.version() || self.global_default() != other.global_default() {
            return false;
        }
        Operation::ALL.iter().all(|&operation| {
            let left = self.rules_for(operation);
            let right = other.rules_for(operation);
            self.operation_default(operation) == other.operation_default(operation)
                && left.len() == right.len()
                && left.iter().zip(right).all(|(a, b)| self.same_rule(a, other, b))
        })
    }
}
