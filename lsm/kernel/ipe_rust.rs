// SPDX-License-Identifier: GPL-2.0-only

//! IPE with decisions made in Rust: the `extern "C"` functions the C shim
//! calls to parse policies and decide events with the `lsm/ipe` engine.
//!
//! The engine's sources are compiled unchanged as modules of this crate
//! (`engine_lib.rs`, written by `lay-in.sh` from the engine's `lib.rs`).
//! A parsed policy lives in kvmalloc'ed vectors owned by [`KernelPolicy`].
//! C keeps it as an opaque pointer and frees it through
//! [`ipe_rust_policy_free`] after an RCU grace period.

use kernel::alloc::{flags::GFP_KERNEL, KBox, KVVec};
use kernel::ffi::c_int;

/// Prefix of this object's `pr_*!` messages; the `module!` macro, which
/// usually defines it, is not used by built-in objects.
const __LOG_PREFIX: &[u8] = b"ipe\0";

include!("engine_lib.rs");

#[cfg(CONFIG_SECURITY_IPE_RUST_SELFTEST)]
mod selftest;
#[cfg(CONFIG_SECURITY_IPE_RUST_SELFTEST)]
#[allow(dead_code)]
mod selftest_data;

const ENOENT: c_int = 2;
const ENOMEM: c_int = 12;
const EINVAL: c_int = 22;

/// Algorithm name given to the engine for a file on a signed dm-verity
/// device, or with fs-verity, whose digest the kernel did not report.
/// Policy text is cut at its first NUL byte, so no digest property matches it.
const NO_DIGEST_ALGORITHM: &[u8] = b"\0";

/// Failure to turn a policy text into a [`KernelPolicy`].
pub(crate) enum ParseFailure {
    /// A kernel allocation failed.
    OutOfMemory,
    /// The engine rejected the text.
    Invalid(error::ParseError),
}

/// A parsed policy: the text (up to its first NUL byte) and the engine's
/// storage, sized by `measure`.
pub struct KernelPolicy {
    text: KVVec<u8>,
    header: policy::PolicyHeader,
    rules: KVVec<policy::Rule>,
    properties: KVVec<policy::Property>,
    digest_bytes: KVVec<u8>,
    index: KVVec<policy::IndexEntry>,
    plain_rules: KVVec<u32>,
}

impl KernelPolicy {
    /// Parses `text`; returns a negative errno as the C IPE of Linux 6.12
    /// would for the same text.
    fn parse(text: &[u8]) -> Result<KernelPolicy, c_int> {
        KernelPolicy::parse_detailed(text).map_err(|failure| match failure {
            ParseFailure::OutOfMemory => -ENOMEM,
            ParseFailure::Invalid(error) => -error.errno.number(),
        })
    }

    /// Parses `text`, keeping the engine's error with its line and column.
    fn parse_detailed(text: &[u8]) -> Result<KernelPolicy, ParseFailure> {
        let text = lexer::truncate_at_nul(text);
        let counts = parser::measure(text);

        let mut owned_text = KVVec::with_capacity(text.len(), GFP_KERNEL).map_err(|_| ParseFailure::OutOfMemory)?;
        owned_text.extend_from_slice(text, GFP_KERNEL).map_err(|_| ParseFailure::OutOfMemory)?;
        let mut rules = KVVec::from_elem(policy::Rule::EMPTY, counts.rules, GFP_KERNEL).map_err(|_| ParseFailure::OutOfMemory)?;
        let mut properties = KVVec::from_elem(policy::Property::EMPTY, counts.properties, GFP_KERNEL).map_err(|_| ParseFailure::OutOfMemory)?;
        let mut digest_bytes = KVVec::from_elem(0u8, counts.digest_bytes, GFP_KERNEL).map_err(|_| ParseFailure::OutOfMemory)?;
        let mut index = KVVec::from_elem(policy::IndexEntry::default(), counts.indexed_rules, GFP_KERNEL).map_err(|_| ParseFailure::OutOfMemory)?;
        let mut plain_rules = KVVec::from_elem(0u32, counts.plain_rules, GFP_KERNEL).map_err(|_| ParseFailure::OutOfMemory)?;

        let header = {
            let mut storage = policy::Storage {
                rules: rules.as_mut_slice(),
                properties: properties.as_mut_slice(),
                digest_bytes: digest_bytes.as_mut_slice(),
                index: index.as_mut_slice(),
                plain_rules: plain_rules.as_mut_slice(),
            };
            let parsed = parser::parse_into(owned_text.as_slice(), &mut storage).map_err(ParseFailure::Invalid)?;
            *parsed.header()
        };

        Ok(KernelPolicy { text: owned_text, header, rules, properties, digest_bytes, index, plain_rules })
    }

    /// Borrows this policy as the engine's [`policy::PolicyRef`].
    fn as_ref(&self) -> policy::PolicyRef<'_> {
        policy::PolicyRef {
            text: self.text.as_slice(),
            header: self.header,
            rules: self.rules.as_slice(),
            properties: self.properties.as_slice(),
            digest_bytes: self.digest_bytes.as_slice(),
            index: self.index.as_slice(),
            plain_rules: self.plain_rules.as_slice(),
        }
    }
}

/// Header facts returned by [`ipe_rust_policy_parse`] (`struct ipe_rust_policy_info`).
#[repr(C)]
pub struct PolicyInfo {
    name: *const u8,
    name_len: usize,
    version: [u16; 3],
}

/// The facts of one event (`struct ipe_rust_event`).
#[repr(C)]
pub struct EventFacts {
    op: u32,
    hook: u32,
    providers: u32,
    has_file: bool,
    initramfs: bool,
    has_bdev: bool,
    dmv_signed: bool,
    has_inode: bool,
    fsv_enabled: bool,
    fsv_signed: bool,
    dmv_alg: *const u8,
    dmv_alg_len: usize,
    dmv_digest: *const u8,
    dmv_digest_len: usize,
    fsv_alg: *const u8,
    fsv_alg_len: usize,
    fsv_digest: *const u8,
    fsv_digest_len: usize,
}

/// The outcome of [`ipe_rust_evaluate`] (`struct ipe_rust_decision`).
#[repr(C)]
pub struct DecisionOut {
    action: u32,
    match_kind: u32,
    rule: u32,
}

/// One rule's operation, action and property count (`struct ipe_rust_rule_info`).
#[repr(C)]
pub struct RuleInfo {
    op: u32,
    action: u32,
    property_count: u32,
}

/// One property of a rule (`struct ipe_rust_property_info`).
#[repr(C)]
pub struct PropertyInfo {
    kind: u32,
    alg: *const u8,
    alg_len: usize,
    digest: *const u8,
    digest_len: usize,
}

// Values of `enum ipe_match`, `enum ipe_action_type` and the provider bits in ipe.h.
const MATCH_RULE: u32 = 0;
const MATCH_TABLE: u32 = 1;
const MATCH_GLOBAL: u32 = 2;
const PROVIDER_DM_VERITY: u32 = 1 << 0;
const PROVIDER_DM_VERITY_SIG: u32 = 1 << 1;
const PROVIDER_FS_VERITY: u32 = 1 << 2;
const PROVIDER_FS_VERITY_SIG: u32 = 1 << 3;

fn action_number(action: grammar::Action) -> u32 {
    match action {
        grammar::Action::Allow => 0,
        grammar::Action::Deny => 1,
    }
}

/// Maps `enum ipe_hook_type` to the engine's hook (audit only).
fn hook_from_number(hook: u32) -> grammar::Hook {
    match hook {
        1 => grammar::Hook::Mmap,
        2 => grammar::Hook::Mprotect,
        3 => grammar::Hook::KernelRead,
        4 => grammar::Hook::KernelLoad,
        _ => grammar::Hook::BprmCheck,
    }
}

/// Returns the bytes of a C buffer, or an empty slice for NULL.
///
/// # Safety
///
/// `data` must be NULL or point to `len` readable bytes that stay valid
/// and unchanged for `'a`.
unsafe fn bytes_from_c<'a>(data: *const u8, len: usize) -> &'a [u8] {
    if data.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: non-NULL, and the caller guarantees `len` readable bytes for `'a`.
    unsafe { core::slice::from_raw_parts(data, len) }
}

/// Builds the engine's event from the facts eval.c collected.
///
/// # Safety
///
/// The digest and algorithm pointers of `facts` must satisfy
/// [`bytes_from_c`] for `'a`.
unsafe fn event_from_facts<'a>(facts: &'a EventFacts) -> eval::Event<'a> {
    let operation = usize::try_from(facts.op).ok().and_then(|op| grammar::Operation::ALL.get(op).copied());
    let hook = hook_from_number(facts.hook);
    if !facts.has_file {
        return eval::Event { operation, hook, file: None };
    }

    // As in the C IPE, a block device that is neither signed nor has a
    // root hash behaves like no dm-verity device at all.
    let dm_verity = if facts.has_bdev && (facts.dmv_signed || !facts.dmv_alg.is_null()) {
        // SAFETY: the caller guarantees the pointers are valid for `'a`.
        let (algorithm, root_hash) = unsafe {
            if facts.dmv_alg.is_null() {
                (NO_DIGEST_ALGORITHM, &[][..])
            } else {
                (bytes_from_c(facts.dmv_alg, facts.dmv_alg_len), bytes_from_c(facts.dmv_digest, facts.dmv_digest_len))
            }
        };
        Some(eval::DmVerity { algorithm, root_hash, signature_verified: facts.dmv_signed })
    } else {
        None
    };

    let fs_verity = if facts.has_inode && facts.fsv_enabled {
        // SAFETY: the caller guarantees the pointers are valid for `'a`.
        let (algorithm, digest) = unsafe {
            if facts.fsv_alg.is_null() {
                (NO_DIGEST_ALGORITHM, &[][..])
            } else {
                (bytes_from_c(facts.fsv_alg, facts.fsv_alg_len), bytes_from_c(facts.fsv_digest, facts.fsv_digest_len))
            }
        };
        Some(eval::FsVerity { algorithm, digest, builtin_signature_verified: facts.fsv_signed })
    } else {
        None
    };

    let file = eval::FileProperties { initramfs: facts.initramfs, dm_verity, fs_verity };
    eval::Event { operation, hook, file: Some(file) }
}

fn providers_from_bits(bits: u32) -> eval::Providers {
    eval::Providers {
        dm_verity: bits & PROVIDER_DM_VERITY != 0,
        dm_verity_signature: bits & PROVIDER_DM_VERITY_SIG != 0,
        fs_verity: bits & PROVIDER_FS_VERITY != 0,
        fs_verity_builtin_signature: bits & PROVIDER_FS_VERITY_SIG != 0,
    }
}

/// Prints the init line naming this implementation and its version.
#[no_mangle]
pub extern "C" fn ipe_rust_log_version() {
    kernel::pr_info!("Integrity Policy Enforcement, Rust implementation {} (policy engine in Rust)\n", ENGINE_VERSION);
}

/// Runs the engine's test vectors and prints the pass counts.
#[cfg(CONFIG_SECURITY_IPE_RUST_SELFTEST)]
#[no_mangle]
pub extern "C" fn ipe_rust_selftest() {
    selftest::run();
}

/// Parses a policy text and stores an owned policy in `*out`.
///
/// Returns 0, or the negative errno Linux 6.12's IPE returns for the text
/// (-EBADMSG, -EINVAL, -ERANGE), or -ENOMEM.
///
/// # Safety
///
/// `text` must point to `len` readable bytes; `out` and `info` must be
/// valid for writes. The name in `*info` points into `*out` and lives
/// until [`ipe_rust_policy_free`].
#[no_mangle]
pub unsafe extern "C" fn ipe_rust_policy_parse(text: *const u8, len: usize, out: *mut *mut KernelPolicy, info: *mut PolicyInfo) -> c_int {
    if out.is_null() || info.is_null() {
        return -EINVAL;
    }
    // SAFETY: the caller guarantees `len` readable bytes at `text`.
    let text = unsafe { bytes_from_c(text, len) };
    let parsed = match KernelPolicy::parse(text) {
        Ok(parsed) => parsed,
        Err(errno) => return errno,
    };
    let parsed = match KBox::new(parsed, GFP_KERNEL) {
        Ok(parsed) => parsed,
        Err(_) => return -ENOMEM,
    };

    // The name points into the text vector's heap buffer, which stays in
    // place when the box is turned into a raw pointer.
    let (name, version) = {
        let policy = parsed.as_ref();
        (policy.name(), policy.version())
    };
    let info_value = PolicyInfo { name: name.as_ptr(), name_len: name.len(), version: [version.major, version.minor, version.revision] };
    let raw = KBox::into_raw(parsed);
    // SAFETY: the caller guarantees `info` and `out` are valid for writes.
    unsafe {
        info.write(info_value);
        out.write(raw);
    }
    0
}

/// Frees a policy from [`ipe_rust_policy_parse`]; NULL is ignored.
///
/// # Safety
///
/// `policy` must be NULL or a pointer from [`ipe_rust_policy_parse`] that
/// no reader uses any more (after an RCU grace period if it was active).
#[no_mangle]
pub unsafe extern "C" fn ipe_rust_policy_free(policy: *mut KernelPolicy) {
    if policy.is_null() {
        return;
    }
    // SAFETY: the pointer came from `KBox::into_raw` and is freed once.
    drop(unsafe { KBox::from_raw(policy) });
}

/// Decides an event. Returns 0 with `*decision` set, or -ENOENT for an
/// operation IPE does not map in a policy without a global default (the C
/// shim then warns and allows, as the C IPE does).
///
/// # Safety
///
/// `policy` must come from [`ipe_rust_policy_parse`] and stay alive for
/// the call; `event` must be valid for reads with pointers as described in
/// ipe.h; `decision` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ipe_rust_evaluate(policy: *const KernelPolicy, event: *const EventFacts, decision: *mut DecisionOut) -> c_int {
    if policy.is_null() || event.is_null() || decision.is_null() {
        return -EINVAL;
    }
    // SAFETY: the caller guarantees `policy` is alive and `event` readable.
    let (policy, facts) = unsafe { (&*policy, &*event) };
    // SAFETY: the caller guarantees the pointers inside `facts`.
    let event = unsafe { event_from_facts(facts) };
    let result = eval::evaluate(&policy.as_ref(), &event, providers_from_bits(facts.providers));

    let (match_kind, rule) = match result.source {
        eval::Source::Rule(index) => (MATCH_RULE, u32::try_from(index).unwrap_or(u32::MAX)),
        eval::Source::OperationDefault(_) => (MATCH_TABLE, 0),
        eval::Source::GlobalDefault => (MATCH_GLOBAL, 0),
        eval::Source::UnknownOperationWithoutDefault | eval::Source::NoActivePolicy => return -ENOENT,
    };
    // SAFETY: the caller guarantees `decision` is valid for writes.
    unsafe { decision.write(DecisionOut { action: action_number(result.action), match_kind, rule }) };
    0
}

/// Returns a rule's operation, action and property count for the audit
/// record, or -ENOENT for an index out of range.
///
/// # Safety
///
/// `policy` must come from [`ipe_rust_policy_parse`] and stay alive for
/// the call; `info` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ipe_rust_rule_info(policy: *const KernelPolicy, rule: u32, info: *mut RuleInfo) -> c_int {
    if policy.is_null() || info.is_null() {
        return -EINVAL;
    }
    // SAFETY: the caller guarantees `policy` is alive.
    let policy = unsafe { &*policy }.as_ref();
    let Some(found) = usize::try_from(rule).ok().and_then(|index| policy.rule(index)) else {
        return -ENOENT;
    };
    let property_count = u32::try_from(policy.properties_of(found).len()).unwrap_or(u32::MAX);
    let op = u32::try_from(found.operation.index()).unwrap_or(u32::MAX);
    // SAFETY: the caller guarantees `info` is valid for writes.
    unsafe { info.write(RuleInfo { op, action: action_number(found.action), property_count }) };
    0
}

/// Returns property `index` of `rule` as an `enum ipe_prop_type` value,
/// with the algorithm name and digest bytes for digest properties.
///
/// # Safety
///
/// `policy` must come from [`ipe_rust_policy_parse`] and stay alive while
/// C uses the returned pointers; `info` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ipe_rust_rule_property(policy: *const KernelPolicy, rule: u32, index: u32, info: *mut PropertyInfo) -> c_int {
    if policy.is_null() || info.is_null() {
        return -EINVAL;
    }
    // SAFETY: the caller guarantees `policy` is alive.
    let policy = unsafe { &*policy }.as_ref();
    let Some(found) = usize::try_from(rule).ok().and_then(|rule| policy.rule(rule)) else {
        return -ENOENT;
    };
    let Some(property) = usize::try_from(index).ok().and_then(|index| policy.properties_of(found).get(index)) else {
        return -ENOENT;
    };

    let mut out = PropertyInfo { kind: 0, alg: core::ptr::null(), alg_len: 0, digest: core::ptr::null(), digest_len: 0 };
    out.kind = match (property.key, property.value) {
        (grammar::PropertyKey::BootVerified, policy::Value::Boolean(value)) => u32::from(value),
        (grammar::PropertyKey::DmVeritySignature, policy::Value::Boolean(value)) => 3 + u32::from(value),
        (grammar::PropertyKey::FsVeritySignature, policy::Value::Boolean(value)) => 6 + u32::from(value),
        (key, policy::Value::Digest(digest)) => {
            let algorithm = policy.algorithm(&digest);
            let bytes = policy.digest_bytes(&digest);
            out.alg = algorithm.as_ptr();
            out.alg_len = algorithm.len();
            out.digest = bytes.as_ptr();
            out.digest_len = bytes.len();
            if key == grammar::PropertyKey::FsVerityDigest {
                5
            } else {
                2
            }
        }
        _ => return -EINVAL,
    };
    // SAFETY: the caller guarantees `info` is valid for writes.
    unsafe { info.write(out) };
    0
}
