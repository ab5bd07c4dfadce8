// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Evaluation: which rule or default decides an event, with Linux 6.12's
//! semantics. Within the event's operation the first rule (in file order)
//! whose properties are all true wins; otherwise the operation's default,
//! otherwise the global default. A property whose provider is not compiled
//! in is false for both `TRUE` and `FALSE`.
//!
//! [`evaluate`] uses the digest index. A rule that names a digest can only
//! match an event with that digest, so it checks only the rules keyed by the
//! event's dm-verity root hash or fs-verity digest (found by binary search)
//! and the rules without a digest. The smallest matching rule index wins,
//! which is the rule the file-order scan of [`evaluate_linear`] finds.

use core::cmp::Ordering;

use crate::grammar::{Action, Hook, Operation, PropertyKey, Provider};
use crate::policy::{IndexEntry, PolicyRef, Property, Rule, Value};

/// The property providers compiled into the kernel (`CONFIG_IPE_PROP_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Providers {
    /// `CONFIG_IPE_PROP_DM_VERITY`: `dmverity_roothash`.
    pub dm_verity: bool,
    /// `CONFIG_IPE_PROP_DM_VERITY_SIGNATURE`: `dmverity_signature`.
    pub dm_verity_signature: bool,
    /// `CONFIG_IPE_PROP_FS_VERITY`: `fsverity_digest`.
    pub fs_verity: bool,
    /// `CONFIG_IPE_PROP_FS_VERITY_BUILTIN_SIG`: `fsverity_signature`.
    pub fs_verity_builtin_signature: bool,
}

impl Providers {
    /// Every provider compiled in.
    pub const ALL: Providers = Providers { dm_verity: true, dm_verity_signature: true, fs_verity: true, fs_verity_builtin_signature: true };

    /// Whether `provider` is compiled in.
    pub fn has(&self, provider: Provider) -> bool {
        match provider {
            Provider::Always => true,
            Provider::DmVerity => self.dm_verity,
            Provider::DmVeritySignature => self.dm_verity_signature,
            Provider::FsVerity => self.fs_verity,
            Provider::FsVerityBuiltinSignature => self.fs_verity_builtin_signature,
        }
    }
}

impl Default for Providers {
    fn default() -> Providers {
        Providers::ALL
    }
}

/// The dm-verity device backing a file, as dm-verity reported it to the LSM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmVerity<'e> {
    /// The kernel crypto algorithm name, such as `sha256`.
    pub algorithm: &'e [u8],
    /// The binary root hash.
    pub root_hash: &'e [u8],
    /// Whether the kernel verified a root hash signature for the device.
    pub signature_verified: bool,
}

/// A file's fs-verity state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsVerity<'e> {
    /// The fs-verity algorithm name, such as `sha256`.
    pub algorithm: &'e [u8],
    /// The fs-verity file digest (as `fsverity digest` prints it, decoded).
    pub digest: &'e [u8],
    /// Whether a built-in signature was verified against the `.fs-verity` keyring.
    pub builtin_signature_verified: bool,
}

/// The properties of the file an event is about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileProperties<'e> {
    /// The file's mount superblock is the rootfs unpacked from the initramfs.
    pub initramfs: bool,
    /// The backing dm-verity device, if any.
    pub dm_verity: Option<DmVerity<'e>>,
    /// fs-verity, if enabled on the file.
    pub fs_verity: Option<FsVerity<'e>>,
}

/// One access IPE decides on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'e> {
    /// The operation, or `None` for a kernel read or load id IPE does not map.
    pub operation: Option<Operation>,
    /// The hook that produced the event (audit only).
    pub hook: Hook,
    /// The file, or `None` for anonymous memory and `kernel_load_data`.
    pub file: Option<FileProperties<'e>>,
}

/// The rule or default that decided an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The rule at this index of [`PolicyRef::rules`].
    Rule(usize),
    /// The operation's `DEFAULT op=… action=…`.
    OperationDefault(Operation),
    /// The global `DEFAULT action=…`.
    GlobalDefault,
    /// An unmapped operation in a policy without a global default: the
    /// kernel WARNs and allows.
    UnknownOperationWithoutDefault,
    /// No policy is active: the kernel allows and writes no audit record.
    NoActivePolicy,
}

/// The outcome of an evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Allow or deny.
    pub action: Action,
    /// The rule or default that decided.
    pub source: Source,
}

impl Decision {
    /// Whether the hook returns `-EACCES`: a denial while enforcing. In
    /// permissive mode everything is allowed but denials are still audited.
    pub fn blocks(&self, enforcing: bool) -> bool {
        enforcing && self.action == Action::Deny
    }

    /// Whether the kernel writes an AUDIT_IPE_ACCESS (1420) record.
    pub fn is_audited(&self, success_audit: bool) -> bool {
        self.source != Source::NoActivePolicy && (self.action == Action::Deny || success_audit)
    }
}

/// Evaluates `event` against the active policy, if any.
pub fn evaluate_active(policy: Option<&PolicyRef<'_>>, event: &Event<'_>, providers: Providers) -> Decision {
    match policy {
        Some(policy) => evaluate(policy, event, providers),
        None => Decision { action: Action::Allow, source: Source::NoActivePolicy },
    }
}

/// Evaluates `event` with the digest index, in O(log n) in the number of
/// digest rules plus the number of rules without a digest.
pub fn evaluate(policy: &PolicyRef<'_>, event: &Event<'_>, providers: Providers) -> Decision {
    let Some(operation) = event.operation else { return unknown_operation(policy) };

    let mut best: Option<usize> = None;
    for &rule_index in policy.plain_rules_for(operation) {
        let rule_index = usize::try_from(rule_index).unwrap_or(usize::MAX);
        if policy.rule(rule_index).is_some_and(|rule| rule_matches(policy, rule, event, providers)) {
            best = Some(rule_index);
            break;
        }
    }

    if let Some(file) = event.file {
        let index = policy.index_for(operation);
        if let Some(dm_verity) = file.dm_verity {
            let key = (PropertyKey::DmVerityRootHash, dm_verity.algorithm, dm_verity.root_hash);
            best = first_indexed_match(policy, index, key, event, providers, best);
        }
        if let Some(fs_verity) = file.fs_verity {
            let key = (PropertyKey::FsVerityDigest, fs_verity.algorithm, fs_verity.digest);
            best = first_indexed_match(policy, index, key, event, providers, best);
        }
    }

    finish(policy, operation, best)
}

/// Evaluates `event` by scanning the operation's rules in file order, as
/// the kernel does. The reference for [`evaluate`].
pub fn evaluate_linear(policy: &PolicyRef<'_>, event: &Event<'_>, providers: Providers) -> Decision {
    let Some(operation) = event.operation else { return unknown_operation(policy) };
    let first = policy.first_rule(operation);
    let found = policy.rules_for(operation).iter().position(|rule| rule_matches(policy, rule, event, providers));
    finish(policy, operation, found.map(|offset| first.saturating_add(offset)))
}

fn unknown_operation(policy: &PolicyRef<'_>) -> Decision {
    match policy.global_default() {
        Some(action) => Decision { action, source: Source::GlobalDefault },
        None => Decision { action: Action::Allow, source: Source::UnknownOperationWithoutDefault },
    }
}

fn finish(policy: &PolicyRef<'_>, operation: Operation, rule_index: Option<usize>) -> Decision {
    if let Some(rule) = rule_index.and_then(|index| policy.rule(index).map(|rule| (index, rule))) {
        return Decision { action: rule.1.action, source: Source::Rule(rule.0) };
    }
    if let Some(action) = policy.operation_default(operation) {
        return Decision { action, source: Source::OperationDefault(operation) };
    }
    // The parser guarantees a global default when an operation has none;
    // deny rather than panic if a hand-built policy breaks that.
    let action = policy.global_default().unwrap_or(Action::Deny);
    Decision { action, source: Source::GlobalDefault }
}

/// Finds, among index entries with `key`, the first rule that fully
/// matches and precedes `best`.
fn first_indexed_match(
    policy: &PolicyRef<'_>,
    index: &[IndexEntry],
    key: (PropertyKey, &[u8], &[u8]),
    event: &Event<'_>,
    providers: Providers,
    best: Option<usize>,
) -> Option<usize> {
    let start = index.partition_point(|entry| compare_key(policy, entry, key) == Ordering::Less);
    for entry in index.get(start..).unwrap_or(&[]) {
        if compare_key(policy, entry, key) != Ordering::Equal {
            break;
        }
        let rule_index = usize::try_from(entry.rule).unwrap_or(usize::MAX);
        if best.is_some_and(|best| best <= rule_index) {
            break;
        }
        if policy.rule(rule_index).is_some_and(|rule| rule_matches(policy, rule, event, providers)) {
            return Some(rule_index);
        }
    }
    best
}

fn compare_key(policy: &PolicyRef<'_>, entry: &IndexEntry, key: (PropertyKey, &[u8], &[u8])) -> Ordering {
    let property = usize::try_from(entry.property).ok().and_then(|i| policy.properties().get(i));
    let digest = property.and_then(Property::digest).unwrap_or_default();
    let entry_key = (property.map(|p| p.key), policy.algorithm(&digest), policy.digest_bytes(&digest));
    entry_key.cmp(&(Some(key.0), key.1, key.2))
}

/// Whether every property of `rule` is true for `event`.
pub fn rule_matches(policy: &PolicyRef<'_>, rule: &Rule, event: &Event<'_>, providers: Providers) -> bool {
    policy.properties_of(rule).iter().all(|property| property_matches(policy, property, event, providers))
}

/// Whether one property is true for `event`.
pub fn property_matches(policy: &PolicyRef<'_>, property: &Property, event: &Event<'_>, providers: Providers) -> bool {
    if !providers.has(property.key.entry().provider) {
        return false;
    }
    let file = event.file.as_ref();
    match (property.key, property.value) {
        (PropertyKey::BootVerified, Value::Boolean(expected)) => file.is_some_and(|f| f.initramfs) == expected,
        (PropertyKey::DmVeritySignature, Value::Boolean(expected)) => {
            file.and_then(|f| f.dm_verity).is_some_and(|d| d.signature_verified) == expected
        }
        (PropertyKey::FsVeritySignature, Value::Boolean(expected)) => {
            file.and_then(|f| f.fs_verity).is_some_and(|v| v.builtin_signature_verified) == expected
        }
        (PropertyKey::DmVerityRootHash, Value::Digest(digest)) => file.and_then(|f| f.dm_verity).is_some_and(|d| {
            d.algorithm == policy.algorithm(&digest) && d.root_hash == policy.digest_bytes(&digest)
        }),
        (PropertyKey::FsVerityDigest, Value::Digest(digest)) => file.and_then(|f| f.fs_verity).is_some_and(|v| {
            v.algorithm == policy.algorithm(&digest) && v.digest == policy.digest_bytes(&digest)
        }),
        // The parser never pairs a key with the other value kind.
        _ => false,
    }
}
