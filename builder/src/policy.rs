//! Policy stage: generates the release IPE policy and parses it back with
//! the `ipe` crate (Linux 6.12's grammar and errnos) before it is signed.
//!
//! The release policy pins this release's dm-verity root hash (and, where
//! the board asks, a verified root-hash signature) for every operation that
//! loads code or data into the kernel, sets an explicit default for every
//! operation, and has no `boot_verified` rule: once the init activates it,
//! files from the initramfs stop counting as trusted.

use ipe::grammar::OPERATIONS;

/// What goes into a release policy.
pub struct PolicyInput<'a> {
    /// The policy name; also the securityfs directory name.
    pub name: &'a str,
    /// Release version `X.Y.Z`, which becomes `policy_version`.
    pub version: &'a str,
    /// Root hashes (lowercase hex) allowed, this release first.
    pub root_hashes: Vec<String>,
    /// Whether rules also require a kernel-verified root-hash signature.
    pub require_signature: bool,
}

/// Renders the release policy text.
pub fn generate(input: &PolicyInput) -> String {
    let mut text = String::new();
    text.push_str(&format!("policy_name={} policy_version={}\n", input.name, input.version));
    text.push_str("DEFAULT action=DENY\n");
    for op in OPERATIONS.iter().map(|entry| entry.name) {
        text.push_str(&format!("DEFAULT op={op} action=DENY\n"));
    }
    let signature = if input.require_signature { " dmverity_signature=TRUE" } else { "" };
    for op in OPERATIONS.iter().map(|entry| entry.name) {
        for hash in &input.root_hashes {
            text.push_str(&format!("op={op} dmverity_roothash=sha256:{hash}{signature} action=ALLOW\n"));
        }
    }
    text
}

/// A policy the kernel would reject: the `ipe` parser's error, with the
/// errno Linux 6.12 would return and where the parser stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} (kernel would reject: {errno})", errno = .0.errno)]
pub struct PolicyError(pub Box<ipe::ParseError>);

impl PolicyError {
    /// Wraps a parse error (boxed, because it carries a token excerpt).
    pub fn new(error: ipe::ParseError) -> PolicyError {
        PolicyError(Box::new(error))
    }

    /// The errno name the kernel would return, such as `EBADMSG`.
    pub fn errno(&self) -> &'static str {
        self.0.errno.name()
    }
}

/// Parses `text` with the `ipe` crate, the same parser the kernel LSM
/// runs, so a policy Linux 6.12 would reject never leaves the builder.
pub fn check(text: &[u8]) -> Result<(), PolicyError> {
    ipe::Policy::parse(text).map(|_| ()).map_err(PolicyError::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> PolicyInput<'static> {
        PolicyInput { name: "applbuild-test", version: "1.2.3", root_hashes: vec!["ab".repeat(32)], require_signature: true }
    }

    #[test]
    fn generated_policy_passes_check() {
        let text = generate(&input());
        assert_eq!(check(text.as_bytes()), Ok(()));
        assert!(text.starts_with("policy_name=applbuild-test policy_version=1.2.3\n"));
        assert!(!text.contains("boot_verified"));
        assert!(text.contains(&format!("op=EXECUTE dmverity_roothash=sha256:{} dmverity_signature=TRUE action=ALLOW", "ab".repeat(32))));
        for op in OPERATIONS.iter().map(|entry| entry.name) {
            assert!(text.contains(&format!("DEFAULT op={op} action=DENY")), "missing default for {op}");
        }
    }

    #[test]
    fn check_matches_kernel_errnos() {
        let cases: &[(&str, &str)] = &[
            ("", "EBADMSG"),
            ("policy_name=a policy_version=255.0\nDEFAULT action=ALLOW", "EBADMSG"),
            ("policy_name=a policy_version=111.0.0.0\nDEFAULT action=ALLOW", "EBADMSG"),
            ("policy_name=a policy_version=-1236.0.0\nDEFAULT action=ALLOW", "EINVAL"),
            ("policy_name=a policy_version=999999.0.0\nDEFAULT action=ALLOW", "ERANGE"),
            ("policy_name=a policy_version=0.0.\nDEFAULT action=ALLOW", "EINVAL"),
            ("policy_name=a#b policy_version=1.2.3\nDEFAULT action=ALLOW", "EBADMSG"),
            ("policy_name=a policy_version=1.2.3", "EBADMSG"),
            ("policy_name=a policy_version=1.2.3\nDEFAULT action=ALLOW\nDEFAULT action=DENY", "EBADMSG"),
            ("policy_name=a policy_version=1.2.3\nDEFAULT action=ALLOW\nop=execute action=ALLOW", "EBADMSG"),
            ("policy_name=a policy_version=1.2.3\nDEFAULT action=ALLOW\nop=EXECUTE dmverity_roothash=abcd action=ALLOW", "EBADMSG"),
            ("policy_name=a policy_version=1.2.3\nDEFAULT action=ALLOW\nop=EXECUTE dmverity_roothash=sha256:abc action=ALLOW", "EINVAL"),
            ("policy_name=a policy_version=1.2.3\nDEFAULT action=ALLOW\nop=EXECUTE dmverity_signature=abc action=ALLOW", "EBADMSG"),
            ("policy_name=a policy_version=1.2.3\nDEFAULT op=EXECUTE action=DENY", "EBADMSG"),
            ("policy_name=a policy_version=1.2.3\nDEFAULT op=EXECUTE boot_verified=TRUE action=DENY", "EBADMSG"),
        ];
        for (text, errno) in cases {
            let result = check(text.as_bytes());
            assert_eq!(result.as_ref().map_err(PolicyError::errno), Err(*errno), "policy {text:?} gave {result:?}");
        }
    }

    #[test]
    fn check_accepts_lexical_variants() {
        let text = b"# comment\r\npolicy_name=a\tpolicy_version=+1.02.3   \r\n\tDEFAULT action=ALLOW # trailing\nop=EXECUTE action=DENY\0garbage after NUL";
        assert_eq!(check(text), Ok(()));
    }
}
