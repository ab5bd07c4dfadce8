//! Policy stage: generates the release IPE policy and checks it with the
//! same rules Linux 6.12's IPE parser applies before it is signed.
//!
//! The release policy pins this release's dm-verity root hash (and, where
//! the board asks, a verified root-hash signature) for every operation that
//! loads code or data into the kernel, sets an explicit default for every
//! operation, and has no `boot_verified` rule: once the init activates it,
//! files from the initramfs stop counting as trusted.

/// IPE operations, in the kernel's order.
pub const OPERATIONS: &[&str] = &["EXECUTE", "FIRMWARE", "KMODULE", "KEXEC_IMAGE", "KEXEC_INITRAMFS", "POLICY", "X509_CERT"];
const ACTIONS: &[&str] = &["ALLOW", "DENY"];
const BOOLEAN_PROPERTIES: &[&str] = &["boot_verified", "dmverity_signature", "fsverity_signature"];
const DIGEST_PROPERTIES: &[&str] = &["dmverity_roothash", "fsverity_digest"];

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
    for op in OPERATIONS {
        text.push_str(&format!("DEFAULT op={op} action=DENY\n"));
    }
    let signature = if input.require_signature { " dmverity_signature=TRUE" } else { "" };
    for op in OPERATIONS {
        for hash in &input.root_hashes {
            text.push_str(&format!("op={op} dmverity_roothash=sha256:{hash}{signature} action=ALLOW\n"));
        }
    }
    text
}

/// A policy the kernel would reject, with the errno it would return and
/// where the parser stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message} (kernel would reject: {errno})")]
pub struct PolicyError {
    pub line: usize,
    pub column: usize,
    pub errno: &'static str,
    pub message: String,
}

/// Checks `text` against the grammar and checks of Linux 6.12's IPE parser
/// (header, tokens, operations, actions, properties, digest syntax,
/// duplicate defaults, completeness).
///
/// NOTE: this is the builder's interim checker; the full parser with the
/// kernel's exact semantics lives in the `ipe` crate once it lands.
pub fn check(text: &[u8]) -> Result<(), PolicyError> {
    let text = match text.iter().position(|&b| b == 0) {
        Some(nul) => &text[..nul],
        None => text,
    };
    let mut header_seen = false;
    let mut global_default = false;
    let mut op_defaults = [false; 7];
    for (index, raw_line) in text.split(|&b| b == b'\n' || b == b'\r').enumerate() {
        let line_number = index + 1;
        let line = match raw_line.iter().position(|&b| b == b'#') {
            Some(hash) => &raw_line[..hash],
            None => raw_line,
        };
        let line = trim_end(line);
        if line.is_empty() {
            continue;
        }
        let tokens = tokens(line);
        let fail = |column: usize, errno: &'static str, message: String| PolicyError { line: line_number, column, errno, message };
        if !header_seen {
            check_header(&tokens).map_err(|(column, errno, message)| fail(column, errno, message))?;
            header_seen = true;
            continue;
        }
        check_rule(&tokens, &mut global_default, &mut op_defaults).map_err(|(column, errno, message)| fail(column, errno, message))?;
    }
    if !header_seen {
        return Err(PolicyError { line: 1, column: 1, errno: "EBADMSG", message: "the policy is empty; expected a header `policy_name=NAME policy_version=X.Y.Z`".into() });
    }
    if !global_default {
        if let Some(missing) = op_defaults.iter().position(|set| !set) {
            return Err(PolicyError { line: 1, column: 1, errno: "EBADMSG", message: format!("no global `DEFAULT action=…` and no `DEFAULT op={} action=…`; every operation needs a default", OPERATIONS[missing]) });
        }
    }
    Ok(())
}

type Failure = (usize, &'static str, String);

fn trim_end(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        end -= 1;
    }
    &line[..end]
}

/// Splits on spaces and tabs, keeping each token's 1-based column.
fn tokens(line: &[u8]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &b) in line.iter().chain(std::iter::once(&b' ')).enumerate() {
        let separator = b == b' ' || b == b'\t';
        match (separator, start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push((s + 1, String::from_utf8_lossy(&line[s..i]).into_owned()));
                start = None;
            }
            _ => {}
        }
    }
    out
}

fn check_header(tokens: &[(usize, String)]) -> Result<(), Failure> {
    let expected = "expected `policy_name=NAME policy_version=X.Y.Z`";
    if tokens.len() != 2 {
        let column = tokens.get(2).map(|t| t.0).unwrap_or(1);
        return Err((column, "EBADMSG", format!("the header has {} tokens; {expected}", tokens.len())));
    }
    let (name_col, name) = &tokens[0];
    match name.strip_prefix("policy_name=") {
        Some(value) if !value.is_empty() => {}
        _ => return Err((*name_col, "EBADMSG", format!("invalid header token {name:?}; {expected}"))),
    }
    let (version_col, version) = &tokens[1];
    let Some(value) = version.strip_prefix("policy_version=") else {
        return Err((*version_col, "EBADMSG", format!("invalid header token {version:?}; {expected}")));
    };
    let parts: Vec<&str> = value.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if i >= 3 {
            return Err((*version_col, "EBADMSG", format!("version {value:?} has more than three parts; expected X.Y.Z")));
        }
        let digits = part.strip_prefix('+').unwrap_or(part);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err((*version_col, "EINVAL", format!("version part {part:?} is not a decimal number")));
        }
        if digits.parse::<u16>().is_err() {
            return Err((*version_col, "ERANGE", format!("version part {part:?} is above 65535")));
        }
    }
    if parts.len() < 3 {
        return Err((*version_col, "EBADMSG", format!("version {value:?} has fewer than three parts; expected X.Y.Z")));
    }
    Ok(())
}

fn check_rule(tokens: &[(usize, String)], global_default: &mut bool, op_defaults: &mut [bool; 7]) -> Result<(), Failure> {
    let Some((action_col, action)) = tokens.last() else { return Ok(()) };
    match action.strip_prefix("action=") {
        Some(value) if ACTIONS.contains(&value) => {}
        _ => return Err((*action_col, "EBADMSG", format!("the last token {action:?} is not `action=ALLOW` or `action=DENY`"))),
    }
    let (first_col, first) = &tokens[0];
    if first == "DEFAULT" {
        return match tokens.len() {
            2 if *global_default => Err((*first_col, "EBADMSG", "a second global DEFAULT".into())),
            2 => {
                *global_default = true;
                Ok(())
            }
            3 => {
                let (op_col, op) = &tokens[1];
                let index = operation_index(op).ok_or((*op_col, "EBADMSG", format!("invalid operation {op:?}; expected op= one of {}", OPERATIONS.join(", "))))?;
                if op_defaults[index] {
                    return Err((*op_col, "EBADMSG", format!("a second DEFAULT for {op}")));
                }
                op_defaults[index] = true;
                Ok(())
            }
            _ => Err((tokens[2].0, "EBADMSG", "a DEFAULT line takes only an optional op= and an action".into())),
        };
    }
    if operation_index(first).is_none() {
        return Err((*first_col, "EBADMSG", format!("a rule must start with op=; got {first:?}")));
    }
    for (column, token) in &tokens[1..tokens.len() - 1] {
        check_property(token).map_err(|(errno, message)| (*column, errno, message))?;
    }
    Ok(())
}

fn operation_index(token: &str) -> Option<usize> {
    let op = token.strip_prefix("op=")?;
    OPERATIONS.iter().position(|candidate| *candidate == op)
}

fn check_property(token: &str) -> Result<(), (&'static str, String)> {
    let Some((key, value)) = token.split_once('=') else {
        return Err(("EBADMSG", format!("invalid property {token:?}")));
    };
    if BOOLEAN_PROPERTIES.contains(&key) {
        return match value {
            "TRUE" | "FALSE" => Ok(()),
            _ => Err(("EBADMSG", format!("{key} takes TRUE or FALSE, not {value:?}"))),
        };
    }
    if DIGEST_PROPERTIES.contains(&key) {
        if value.is_empty() {
            return Err(("EBADMSG", format!("{key} has no value; expected ALG:HEX")));
        }
        let Some((_, hex)) = value.split_once(':') else {
            return Err(("EBADMSG", format!("{key} value {value:?} has no `:`; expected ALG:HEX such as sha256:…")));
        };
        if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(("EINVAL", format!("{key} digest {hex:?} is not an even number of hex digits")));
        }
        return Ok(());
    }
    Err(("EBADMSG", format!("unknown property {key:?}")))
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
        for op in OPERATIONS {
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
            assert_eq!(result.as_ref().map_err(|e| e.errno), Err(*errno), "policy {text:?} gave {result:?}");
        }
    }

    #[test]
    fn check_accepts_lexical_variants() {
        let text = b"# comment\r\npolicy_name=a\tpolicy_version=+1.02.3   \r\n\tDEFAULT action=ALLOW # trailing\nop=EXECUTE action=DENY\0garbage after NUL";
        assert_eq!(check(text), Ok(()));
    }
}
