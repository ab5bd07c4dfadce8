// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Warnings about policies the kernel accepts but that probably do not do
//! what their author meant. They flag rules that never decide, digests that
//! never match, operations left to the global default, and trust in the
//! initramfs or in any signed dm-verity volume.

use core::fmt;

use crate::grammar::{digest_size, Operation, PropertyKey};
use crate::policy::{PolicyRef, Property, Rule, Value};

/// Kind of lint finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarningKind {
    /// An earlier rule of the same operation has a subset of this rule's
    /// properties, so it matches first whenever this rule would match.
    ShadowedRule {
        /// Line of the earlier rule.
        by_line: u32,
    },
    /// A digest whose length differs from its algorithm's digest size never matches.
    DigestLengthMismatch {
        /// The algorithm's digest size in bytes.
        expected: usize,
        /// The digest's length in bytes.
        actual: usize,
    },
    /// The algorithm name is not one the kernel reports (names are case-sensitive).
    UnknownAlgorithm,
    /// A digest with no hex digits never matches.
    EmptyDigest,
    /// Two properties of one rule cannot both be true, so the rule never matches.
    ContradictoryProperties {
        /// Column of the earlier, conflicting property.
        other_column: u32,
    },
    /// The operation has no `DEFAULT op=…` line, so the global default decides it.
    MissingOperationDefault {
        /// The operation.
        operation: Operation,
    },
    /// `boot_verified=TRUE` in a policy meant for after boot trusts every
    /// file on the initramfs, including files written there later.
    BootVerifiedAfterBoot,
    /// `dmverity_signature=TRUE` without `dmverity_roothash` trusts every
    /// dm-verity volume ever signed with a trusted key, old releases included.
    SignatureWithoutRootHash,
}

/// One lint finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line.
    pub line: u32,
    /// 1-based byte column.
    pub column: u32,
    /// The finding.
    pub kind: WarningKind,
}

impl fmt::Display for WarningKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WarningKind::ShadowedRule { by_line } => write!(f, "rule never decides: the rule on line {by_line} matches every event this rule matches"),
            WarningKind::DigestLengthMismatch { expected, actual } => {
                write!(f, "digest never matches: it has {actual} bytes, the algorithm produces {expected}")
            }
            WarningKind::UnknownAlgorithm => f.write_str("digest algorithm is not a kernel algorithm name (names are case-sensitive, such as sha256), so it never matches"),
            WarningKind::EmptyDigest => f.write_str("digest has no hex digits, so it never matches"),
            WarningKind::ContradictoryProperties { other_column } => {
                write!(f, "rule never matches: this property contradicts the one at column {other_column}")
            }
            WarningKind::MissingOperationDefault { operation } => {
                write!(f, "op={} has no DEFAULT line, so the global default decides it", operation.name())
            }
            WarningKind::BootVerifiedAfterBoot => {
                f.write_str("boot_verified=TRUE trusts every file on the initramfs, including files written there after boot")
            }
            WarningKind::SignatureWithoutRootHash => f.write_str(
                "dmverity_signature=TRUE without dmverity_roothash trusts every dm-verity volume signed by a trusted key, old releases included",
            ),
        }
    }
}

/// Lint settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LintOptions {
    /// The policy is activated after boot (a release policy), so
    /// `boot_verified=TRUE` is a warning. False for a boot policy.
    pub after_boot: bool,
}

impl Default for LintOptions {
    fn default() -> LintOptions {
        LintOptions { after_boot: true }
    }
}

/// Calls `report` for each warning about `policy`, in line order within each check.
///
/// NOTE: the shadowing check compares every pair of rules of an operation,
/// so it takes quadratic time (an estimate: about a second for 10,000 rules
/// of one operation).
pub fn lint(policy: &PolicyRef<'_>, options: LintOptions, report: &mut dyn FnMut(Warning)) {
    if policy.global_default().is_some() {
        for operation in Operation::ALL {
            if policy.operation_default(operation).is_none() {
                report(Warning { line: policy.header().line, column: 1, kind: WarningKind::MissingOperationDefault { operation } });
            }
        }
    }

    for rule in policy.rules() {
        lint_rule(policy, rule, options, report);
    }

    for operation in Operation::ALL {
        let rules = policy.rules_for(operation);
        for (position, later) in rules.iter().enumerate() {
            let earlier_rules = rules.get(..position).unwrap_or(&[]);
            if let Some(earlier) = earlier_rules.iter().find(|earlier| is_subset(policy, earlier, later)) {
                report(Warning { line: later.line, column: 1, kind: WarningKind::ShadowedRule { by_line: earlier.line } });
            }
        }
    }
}

fn lint_rule(policy: &PolicyRef<'_>, rule: &Rule, options: LintOptions, report: &mut dyn FnMut(Warning)) {
    let properties = policy.properties_of(rule);
    let warn = |property: &Property, kind| Warning { line: rule.line, column: property.column, kind };
    for (position, property) in properties.iter().enumerate() {
        match property.value {
            Value::Digest(digest) => {
                let algorithm = policy.algorithm(&digest);
                let actual = policy.digest_bytes(&digest).len();
                if actual == 0 {
                    report(warn(property, WarningKind::EmptyDigest));
                } else {
                    match digest_size(algorithm) {
                        Some(expected) if expected != actual => report(warn(property, WarningKind::DigestLengthMismatch { expected, actual })),
                        Some(_) => {}
                        None => report(warn(property, WarningKind::UnknownAlgorithm)),
                    }
                }
            }
            Value::Boolean(true) if property.key == PropertyKey::BootVerified && options.after_boot => {
                report(warn(property, WarningKind::BootVerifiedAfterBoot));
            }
            Value::Boolean(true) if property.key == PropertyKey::DmVeritySignature => {
                if !properties.iter().any(|p| p.key == PropertyKey::DmVerityRootHash) {
                    report(warn(property, WarningKind::SignatureWithoutRootHash));
                }
            }
            Value::Boolean(_) => {}
        }
        let earlier = properties.get(..position).unwrap_or(&[]);
        if let Some(conflict) = earlier.iter().find(|other| other.key == property.key && !policy.same_property(other, policy, property)) {
            report(warn(property, WarningKind::ContradictoryProperties { other_column: conflict.column }));
        }
    }
}

/// Whether every property of `earlier` also appears in `later`.
fn is_subset(policy: &PolicyRef<'_>, earlier: &Rule, later: &Rule) -> bool {
    let later_properties = policy.properties_of(later);
    policy.properties_of(earlier).iter().all(|needed| later_properties.iter().any(|have| policy.same_property(needed, policy, have)))
}

impl fmt::Display for Warning {
    /// Writes `LINE:COL: MESSAGE`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.kind)
    }
}
