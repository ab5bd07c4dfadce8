// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! The policy grammar as data: every keyword of Linux 6.12's IPE policy
//! language is defined once here. The parser matches tokens against these
//! tables, and the printer, the audit text and the lint messages print from
//! them, so a new operation or property is one row per table.

/// An IPE operation: the kind of access a rule or default applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// `op=EXECUTE`: exec, executable mmap and mprotect.
    Execute,
    /// `op=FIRMWARE`: firmware read by the kernel.
    Firmware,
    /// `op=KMODULE`: kernel module load.
    KernelModule,
    /// `op=KEXEC_IMAGE`: kexec kernel image.
    KexecImage,
    /// `op=KEXEC_INITRAMFS`: kexec initramfs.
    KexecInitramfs,
    /// `op=POLICY`: policy files read by the kernel (IMA and others, not IPE itself).
    Policy,
    /// `op=X509_CERT`: certificates read by IMA or EVM.
    X509Cert,
}

/// Number of operations; a policy without a global default needs one
/// `DEFAULT op=…` line for each.
pub const OPERATION_COUNT: usize = 7;

/// One row of the operation table.
#[derive(Clone, Copy, Debug)]
pub struct OperationEntry {
    /// The operation.
    pub operation: Operation,
    /// Its name after `op=`, also the audit name.
    pub name: &'static str,
}

/// The operation table, in the kernel's enum order (which is also the order
/// of this crate's per-operation arrays).
pub const OPERATIONS: [OperationEntry; OPERATION_COUNT] = [
    OperationEntry { operation: Operation::Execute, name: "EXECUTE" },
    OperationEntry { operation: Operation::Firmware, name: "FIRMWARE" },
    OperationEntry { operation: Operation::KernelModule, name: "KMODULE" },
    OperationEntry { operation: Operation::KexecImage, name: "KEXEC_IMAGE" },
    OperationEntry { operation: Operation::KexecInitramfs, name: "KEXEC_INITRAMFS" },
    OperationEntry { operation: Operation::Policy, name: "POLICY" },
    OperationEntry { operation: Operation::X509Cert, name: "X509_CERT" },
];

/// The audit name of an event whose operation IPE does not map.
pub const UNKNOWN_OPERATION_NAME: &str = "UNKNOWN";

impl Operation {
    /// Every operation, in table order.
    pub const ALL: [Operation; OPERATION_COUNT] = [
        Operation::Execute,
        Operation::Firmware,
        Operation::KernelModule,
        Operation::KexecImage,
        Operation::KexecInitramfs,
        Operation::Policy,
        Operation::X509Cert,
    ];

    /// Position in [`OPERATIONS`] and in per-operation arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The name used after `op=` and in audit records, such as `EXECUTE`.
    pub fn name(self) -> &'static str {
        OPERATIONS.iter().find(|entry| entry.operation == self).map_or(UNKNOWN_OPERATION_NAME, |entry| entry.name)
    }

    /// Looks up an operation by its name (without `op=`); names are case-sensitive.
    pub fn from_name(name: &[u8]) -> Option<Operation> {
        OPERATIONS.iter().find(|entry| entry.name.as_bytes() == name).map(|entry| entry.operation)
    }
}

/// The decision a rule or default gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// `action=ALLOW`
    Allow,
    /// `action=DENY`
    Deny,
}

/// The action table: each action with its name after `action=`.
pub const ACTIONS: [(Action, &str); 2] = [(Action::Allow, "ALLOW"), (Action::Deny, "DENY")];

impl Action {
    /// The name used after `action=`.
    pub fn name(self) -> &'static str {
        match self {
            Action::Allow => "ALLOW",
            Action::Deny => "DENY",
        }
    }

    /// Looks up an action by its name (without `action=`).
    pub fn from_name(name: &[u8]) -> Option<Action> {
        ACTIONS.iter().find(|(_, text)| text.as_bytes() == name).map(|(action, _)| *action)
    }
}

/// The key of a rule property.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PropertyKey {
    /// `boot_verified=TRUE|FALSE`: the file is on the superblock unpacked from the initramfs.
    BootVerified,
    /// `dmverity_roothash=ALG:HEX`: the file's block device is dm-verity with this root hash.
    DmVerityRootHash,
    /// `dmverity_signature=TRUE|FALSE`: the dm-verity root hash signature was verified by the kernel.
    DmVeritySignature,
    /// `fsverity_digest=ALG:HEX`: the file has fs-verity with this file digest.
    FsVerityDigest,
    /// `fsverity_signature=TRUE|FALSE`: the file has a verified fs-verity built-in signature.
    FsVeritySignature,
}

/// What follows `key=` in a property token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueSyntax {
    /// Exactly `TRUE` or `FALSE`.
    Boolean,
    /// `ALG:HEX`, split at the first `:`.
    Digest,
}

/// The kernel config option that provides a property. When the provider is
/// not compiled in, the parser still accepts the property but it evaluates
/// false for both `TRUE` and `FALSE` (and never matches a digest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// Always compiled in (`boot_verified`).
    Always,
    /// `CONFIG_IPE_PROP_DM_VERITY`
    DmVerity,
    /// `CONFIG_IPE_PROP_DM_VERITY_SIGNATURE`
    DmVeritySignature,
    /// `CONFIG_IPE_PROP_FS_VERITY`
    FsVerity,
    /// `CONFIG_IPE_PROP_FS_VERITY_BUILTIN_SIG`
    FsVerityBuiltinSignature,
}

/// One row of the property table.
#[derive(Clone, Copy, Debug)]
pub struct PropertyEntry {
    /// The property key.
    pub key: PropertyKey,
    /// The text before `=`.
    pub name: &'static str,
    /// The value syntax after `=`.
    pub syntax: ValueSyntax,
    /// The config option that provides it.
    pub provider: Provider,
}

/// The property table, in the kernel's order.
pub const PROPERTIES: [PropertyEntry; 5] = [
    PropertyEntry { key: PropertyKey::BootVerified, name: "boot_verified", syntax: ValueSyntax::Boolean, provider: Provider::Always },
    PropertyEntry { key: PropertyKey::DmVerityRootHash, name: "dmverity_roothash", syntax: ValueSyntax::Digest, provider: Provider::DmVerity },
    PropertyEntry { key: PropertyKey::DmVeritySignature, name: "dmverity_signature", syntax: ValueSyntax::Boolean, provider: Provider::DmVeritySignature },
    PropertyEntry { key: PropertyKey::FsVerityDigest, name: "fsverity_digest", syntax: ValueSyntax::Digest, provider: Provider::FsVerity },
    PropertyEntry { key: PropertyKey::FsVeritySignature, name: "fsverity_signature", syntax: ValueSyntax::Boolean, provider: Provider::FsVerityBuiltinSignature },
];

impl PropertyKey {
    /// This key's row of [`PROPERTIES`].
    pub fn entry(self) -> PropertyEntry {
        let fallback = PROPERTIES[0];
        PROPERTIES.iter().copied().find(|entry| entry.key == self).unwrap_or(fallback)
    }

    /// The text before `=`, such as `dmverity_roothash`.
    pub fn name(self) -> &'static str {
        self.entry().name
    }
}

/// Literal for a true boolean property value.
pub const TRUE_LITERAL: &str = "TRUE";
/// Literal for a false boolean property value.
pub const FALSE_LITERAL: &str = "FALSE";
/// Prefix of an operation token.
pub const OPERATION_PREFIX: &str = "op=";
/// Prefix of an action token.
pub const ACTION_PREFIX: &str = "action=";
/// First token of a default line.
pub const DEFAULT_KEYWORD: &str = "DEFAULT";
/// Prefix of the header's first token.
pub const POLICY_NAME_PREFIX: &str = "policy_name=";
/// Prefix of the header's second token.
pub const POLICY_VERSION_PREFIX: &str = "policy_version=";
/// Starts a comment that runs to the end of the line, anywhere in a line.
pub const COMMENT: u8 = b'#';
/// Separates the algorithm name from the hex digits of a digest value.
pub const DIGEST_SEPARATOR: u8 = b':';

/// The LSM hook that produced an event; only the audit record uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// `bprm_check_security`
    BprmCheck,
    /// `bprm_creds_for_exec` with `AT_EXECVE_CHECK` (kernels after 6.12).
    BprmCredsForExec,
    /// `mmap_file` with `PROT_EXEC`.
    Mmap,
    /// `file_mprotect` adding `PROT_EXEC`.
    Mprotect,
    /// `kernel_read_file`.
    KernelRead,
    /// `kernel_load_data` (never has a file).
    KernelLoad,
}

/// The hook table: each hook with its `ipe_hook=` audit name.
pub const HOOKS: [(Hook, &str); 6] = [
    (Hook::BprmCheck, "BPRM_CHECK"),
    (Hook::BprmCredsForExec, "BPRM_CREDS_FOR_EXEC"),
    (Hook::Mmap, "MMAP"),
    (Hook::Mprotect, "MPROTECT"),
    (Hook::KernelRead, "KERNEL_READ"),
    (Hook::KernelLoad, "KERNEL_LOAD"),
];

impl Hook {
    /// The `ipe_hook=` audit name.
    pub fn name(self) -> &'static str {
        HOOKS.iter().find(|(hook, _)| *hook == self).map_or("?", |(_, name)| name)
    }

    /// Looks up a hook by its audit name.
    pub fn from_name(name: &[u8]) -> Option<Hook> {
        HOOKS.iter().find(|(_, text)| text.as_bytes() == name).map(|(hook, _)| *hook)
    }
}

/// Digest sizes in bytes of the hash algorithms dm-verity and fs-verity can
/// report, by the kernel's algorithm name. Lint uses it to flag digests that
/// can never match; the parser and evaluator do not (the kernel does not).
/// Source: the Linux crypto API names (crypto/*.c) and fs-verity's
/// `hash_algo_name[]`; the list may lag new algorithms.
pub const KNOWN_DIGEST_SIZES: [(&str, usize); 12] = [
    ("sha256", 32),
    ("sha384", 48),
    ("sha512", 64),
    ("sha224", 28),
    ("sha1", 20),
    ("sha3-256", 32),
    ("sha3-384", 48),
    ("sha3-512", 64),
    ("blake2b-512", 64),
    ("blake2s-256", 32),
    ("sm3", 32),
    ("rmd160", 20),
];

/// Returns the digest size in bytes for a known algorithm name.
pub fn digest_size(algorithm: &[u8]) -> Option<usize> {
    KNOWN_DIGEST_SIZES.iter().find(|(name, _)| name.as_bytes() == algorithm).map(|(_, size)| *size)
}
