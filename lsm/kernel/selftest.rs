// SPDX-License-Identifier: GPL-2.0-only

//! Boot-time self test (`CONFIG_SECURITY_IPE_RUST_SELFTEST`): runs the
//! policy engine's table-driven vectors from `lsm/ipe/tests/data` inside
//! the kernel, with kernel allocation, and prints the pass counts.
//!
//! `selftest_data.rs` is written by `lay-in.sh` from the vector tables;
//! the policy texts are embedded with `include_bytes!`.

use crate::selftest_data::{EVAL_CASES, EVAL_POLICIES, PARSE_VECTORS};
use crate::{eval, grammar, KernelPolicy, ParseFailure};

/// Maximum digest length of a test case, in bytes (SHA-512).
const MAX_DIGEST: usize = 64;

/// Runs every vector and prints one line per failure and a summary line.
pub(crate) fn run() {
    let (parse_passed, parse_total) = run_parse_vectors();
    kernel::pr_info!("selftest: parse vectors: {} of {} passed\n", parse_passed, parse_total);
    let (eval_passed, eval_total) = run_eval_cases();
    kernel::pr_info!("selftest: eval cases: {} of {} passed\n", eval_passed, eval_total);
}

fn run_parse_vectors() -> (usize, usize) {
    let mut passed = 0usize;
    for (file, text, expected, position) in PARSE_VECTORS {
        let (result, line, column) = match KernelPolicy::parse_detailed(text) {
            Ok(_) => ("ok", 0, 0),
            Err(ParseFailure::Invalid(error)) => (error.errno.name(), error.line, error.column),
            Err(ParseFailure::OutOfMemory) => ("ENOMEM", 0, 0),
        };
        let position_matches = *expected == "ok" || position_matches(position.as_bytes(), line, column);
        if result == *expected && position_matches {
            passed = passed.saturating_add(1);
        } else {
            kernel::pr_err!("selftest: parse {}: expected {} at {}, got {} at {}:{}\n", file, expected, position, result, line, column);
        }
    }
    (passed, PARSE_VECTORS.len())
}

fn position_matches(expected: &[u8], line: u32, column: u32) -> bool {
    let mut parts = expected.split(|&byte| byte == b':');
    let expected_line = parts.next().and_then(parse_decimal);
    let expected_column = parts.next().and_then(parse_decimal);
    expected_line == Some(line) && expected_column == Some(column)
}

fn parse_decimal(text: &[u8]) -> Option<u32> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u32, |value, &byte| {
        let digit = u32::from(byte.checked_sub(b'0').filter(|digit| *digit <= 9)?);
        value.checked_mul(10)?.checked_add(digit)
    })
}

fn run_eval_cases() -> (usize, usize) {
    let mut passed = 0usize;
    let mut total = 0usize;
    for row in EVAL_CASES.split(|&byte| byte == b'\n') {
        if row.is_empty() || row.first() == Some(&b'#') {
            continue;
        }
        total = total.saturating_add(1);
        if run_eval_case(row) {
            passed = passed.saturating_add(1);
        } else {
            kernel::pr_err!("selftest: eval case failed: {}\n", kernel::str::BStr::from_bytes(row));
        }
    }
    (passed, total)
}

/// A file of a test case, with digests decoded into fixed buffers.
struct FileSpec {
    initramfs: bool,
    dm_verity: Option<([u8; MAX_DIGEST], usize, bool)>,
    fs_verity: Option<([u8; MAX_DIGEST], usize, bool)>,
}

/// Runs one `policy operation file providers expected case` row.
fn run_eval_case(row: &[u8]) -> bool {
    let mut fields = row.split(|&byte| byte == b'\t');
    let (Some(policy_file), Some(operation), Some(file), Some(providers), Some(expected)) =
        (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return false;
    };

    let policy = if policy_file == b"-" {
        None
    } else {
        let Some((_, text)) = EVAL_POLICIES.iter().find(|(name, _)| name.as_bytes() == policy_file) else {
            return false;
        };
        match KernelPolicy::parse(text) {
            Ok(policy) => Some(policy),
            Err(_) => return false,
        }
    };
    let operation = if operation == b"UNKNOWN" {
        None
    } else {
        match grammar::Operation::from_name(operation) {
            Some(operation) => Some(operation),
            None => return false,
        }
    };
    let Some(spec) = parse_file_spec(file) else {
        return false;
    };
    let Some(providers) = parse_providers(providers) else {
        return false;
    };

    // The digests stay in `spec`; the event borrows them.
    let (dmv_text, fsv_text) = (digest_algorithm(file, b"dmv="), digest_algorithm(file, b"fsv="));
    let file_properties = spec.as_ref().map(|spec| eval::FileProperties {
        initramfs: spec.initramfs,
        dm_verity: spec.dm_verity.as_ref().map(|(bytes, len, signed)| eval::DmVerity {
            algorithm: dmv_text,
            root_hash: bytes.get(..*len).unwrap_or(&[]),
            signature_verified: *signed,
        }),
        fs_verity: spec.fs_verity.as_ref().map(|(bytes, len, signed)| eval::FsVerity {
            algorithm: fsv_text,
            digest: bytes.get(..*len).unwrap_or(&[]),
            builtin_signature_verified: *signed,
        }),
    });
    let hook = if file_properties.is_some() { grammar::Hook::BprmCheck } else { grammar::Hook::KernelLoad };
    let event = eval::Event { operation, hook, file: file_properties };

    let policy_ref = policy.as_ref().map(KernelPolicy::as_ref);
    let decision = eval::evaluate_active(policy_ref.as_ref(), &event, providers);
    if let Some(policy_ref) = &policy_ref {
        if eval::evaluate_linear(policy_ref, &event, providers) != decision {
            return false;
        }
    }
    describe_matches(policy_ref.as_ref(), &decision, expected)
}

/// Returns the algorithm text after `key` (`dmv=ALG:HEX`), or an empty slice.
fn digest_algorithm<'a>(spec: &'a [u8], key: &[u8]) -> &'a [u8] {
    spec.split(|&byte| byte == b',')
        .find_map(|part| part.strip_prefix(key))
        .and_then(|digest| digest.split(|&byte| byte == b':').next())
        .unwrap_or(&[])
}

/// Parses `file,initramfs,dmv=ALG:HEX,dmvsig,fsv=ALG:HEX,fsvsig` or `-`;
/// the outer `None` means a malformed spec.
fn parse_file_spec(spec: &[u8]) -> Option<Option<FileSpec>> {
    if spec == b"-" {
        return Some(None);
    }
    let mut file = FileSpec { initramfs: false, dm_verity: None, fs_verity: None };
    for part in spec.split(|&byte| byte == b',') {
        if let Some(digest) = part.strip_prefix(b"dmv=") {
            file.dm_verity = Some(decode_digest(digest)?);
        } else if let Some(digest) = part.strip_prefix(b"fsv=") {
            file.fs_verity = Some(decode_digest(digest)?);
        } else {
            match part {
                b"file" => {}
                b"initramfs" => file.initramfs = true,
                b"dmvsig" => file.dm_verity.as_mut()?.2 = true,
                b"fsvsig" => file.fs_verity.as_mut()?.2 = true,
                _ => return None,
            }
        }
    }
    Some(Some(file))
}

/// Decodes the hex digits of `ALG:HEX` into (bytes, length, unsigned).
fn decode_digest(digest: &[u8]) -> Option<([u8; MAX_DIGEST], usize, bool)> {
    let separator = digest.iter().position(|&byte| byte == b':')?;
    let hex = digest.get(separator.checked_add(1)?..)?;
    let mut bytes = [0u8; MAX_DIGEST];
    let len = hex.len() / 2;
    if hex.len() % 2 != 0 || len > MAX_DIGEST {
        return None;
    }
    // A plain index loop: `chunks` and `zip` bring core code paths that
    // end in a panic, which objtool reports as falling through.
    let mut index = 0usize;
    while index < len {
        let offset = index.checked_mul(2)?;
        let high = hex_value(*hex.get(offset)?)?;
        let low = hex_value(*hex.get(offset.checked_add(1)?)?)?;
        *bytes.get_mut(index)? = high.checked_mul(16)?.checked_add(low)?;
        index = index.checked_add(1)?;
    }
    Some((bytes, len, false))
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => byte.checked_sub(b'0'),
        b'a'..=b'f' => byte.checked_sub(b'a')?.checked_add(10),
        b'A'..=b'F' => byte.checked_sub(b'A')?.checked_add(10),
        _ => None,
    }
}

fn parse_providers(spec: &[u8]) -> Option<eval::Providers> {
    let mut providers = eval::Providers::ALL;
    for part in spec.split(|&byte| byte == b',') {
        match part {
            b"all" => {}
            b"-dmv" => providers.dm_verity = false,
            b"-dmvsig" => providers.dm_verity_signature = false,
            b"-fsv" => providers.fs_verity = false,
            b"-fsvsig" => providers.fs_verity_builtin_signature = false,
            _ => return None,
        }
    }
    Some(providers)
}

/// Compares a decision with the table's `ACTION SOURCE` text, where a rule
/// is named by its line (`ALLOW rule:5`).
fn describe_matches(policy: Option<&crate::policy::PolicyRef<'_>>, decision: &eval::Decision, expected: &[u8]) -> bool {
    let mut parts = expected.split(|&byte| byte == b' ');
    let (Some(action), Some(source)) = (parts.next(), parts.next()) else {
        return false;
    };
    if action != decision.action.name().as_bytes() {
        return false;
    }
    match decision.source {
        eval::Source::Rule(index) => {
            let line = policy.and_then(|policy| policy.rule(index)).map(|rule| rule.line);
            source.strip_prefix(b"rule:").and_then(parse_decimal).is_some_and(|expected| Some(expected) == line)
        }
        eval::Source::OperationDefault(_) => source == b"opdefault",
        eval::Source::GlobalDefault => source == b"global",
        eval::Source::UnknownOperationWithoutDefault => source == b"unknown-no-default",
        eval::Source::NoActivePolicy => source == b"no-policy",
    }
}
