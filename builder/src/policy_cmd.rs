//! `applbuild policy lint` and `applbuild policy explain`: check policy
//! files with the kernel's parser and replay an access against a policy.
//! Both use the `ipe` crate, the engine the kernel LSM runs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ipe::lint::{lint, LintOptions};
use ipe::print::{DisplayRule, Escaped};
use ipe::{evaluate, Action, DmVerity, Event, FileProperties, FsVerity, Hook, Operation, Policy, Providers, Source};

use crate::error::Error;
use crate::policy::PolicyError;

/// The result of `policy lint`: the text to print and how many files the
/// kernel would reject.
#[derive(Debug, Default)]
pub struct LintReport {
    /// `FILE:LINE:COL: error: …` and `warning: …` lines, then one
    /// `FILE: ok` or `FILE: kernel would reject: ERRNO` line per file.
    pub output: String,
    /// Number of files the kernel would reject.
    pub rejected: usize,
}

/// Lints each policy file: a parse error the kernel would reject it for,
/// or the lint warnings of an accepted policy.
///
/// # Errors
///
/// [`Error::Io`] when a file cannot be read.
pub fn lint_files(files: &[PathBuf], options: LintOptions) -> Result<LintReport, Error> {
    let mut report = LintReport::default();
    for path in files {
        let text = std::fs::read(path).map_err(|source| Error::io("read", path, source))?;
        let name = path.display();
        match Policy::parse(&text) {
            Ok(policy) => {
                lint(&policy.as_ref(), options, &mut |warning| {
                    let _ = writeln!(report.output, "{name}:{}:{}: warning: {}", warning.line, warning.column, warning.kind);
                });
                let _ = writeln!(report.output, "{name}: ok");
            }
            Err(error) => {
                let _ = writeln!(report.output, "{name}:{}", error_line(&error));
                let _ = writeln!(report.output, "{name}: kernel would reject: {}", error.errno);
                report.rejected += 1;
            }
        }
    }
    Ok(report)
}

/// Formats a parse error as `LINE:COL: error: MESSAGE`, the form lint prints after `FILE:`.
fn error_line(error: &ipe::ParseError) -> String {
    let mut message = format!("{}", error.kind);
    if !error.token.as_bytes().is_empty() {
        let _ = write!(message, " `{}`", Escaped(error.token.as_bytes()));
    }
    format!("{}:{}: error: {message}; expected {}", error.line, error.column, error.expected)
}

/// The access `policy explain` replays.
#[derive(Debug, Clone, Default)]
pub struct ExplainRequest {
    /// Operation name, such as `EXECUTE`.
    pub operation: String,
    /// dm-verity root hash as `ALG:HEX`.
    pub roothash: Option<String>,
    /// The kernel verified the root hash signature.
    pub signed: bool,
    /// fs-verity digest as `ALG:HEX`.
    pub fsverity: Option<String>,
    /// A built-in fs-verity signature was verified.
    pub fsverity_signed: bool,
    /// The file is on the initramfs superblock.
    pub boot_verified: bool,
    /// The event has no file (anonymous memory, `kernel_load_data`).
    pub no_file: bool,
}

/// Replays an access against a policy file and describes the rule or
/// default that decides it and the decision.
///
/// # Errors
///
/// [`Error::Io`] when the file cannot be read, [`Error::PolicyFile`] when
/// the kernel would reject it, [`Error::Usage`] for an invalid request.
pub fn explain(path: &Path, request: &ExplainRequest) -> Result<String, Error> {
    let operation = parse_operation(&request.operation)?;
    let roothash = request.roothash.as_deref().map(|value| parse_digest("--roothash", value)).transpose()?;
    let fsverity = request.fsverity.as_deref().map(|value| parse_digest("--fsverity", value)).transpose()?;
    if request.signed && roothash.is_none() {
        return Err(usage("--signed needs --roothash", "a root hash signature belongs to a dm-verity device; add --roothash ALG:HEX"));
    }
    if request.fsverity_signed && fsverity.is_none() {
        return Err(usage("--fsverity-signed needs --fsverity", "add --fsverity ALG:HEX"));
    }
    if request.no_file && (roothash.is_some() || fsverity.is_some() || request.boot_verified) {
        return Err(usage("--no-file cannot be combined with file properties", "drop --no-file or the --roothash, --fsverity and --boot-verified options"));
    }

    let text = std::fs::read(path).map_err(|source| Error::io("read", path, source))?;
    let policy = Policy::parse(&text).map_err(|error| Error::PolicyFile { path: path.to_path_buf(), source: PolicyError::new(error) })?;
    let policy = policy.as_ref();
    let file = (!request.no_file).then(|| FileProperties {
        initramfs: request.boot_verified,
        dm_verity: roothash.as_ref().map(|(algorithm, hash)| DmVerity { algorithm: algorithm.as_bytes(), root_hash: hash, signature_verified: request.signed }),
        fs_verity: fsverity.as_ref().map(|(algorithm, digest)| FsVerity { algorithm: algorithm.as_bytes(), digest, builtin_signature_verified: request.fsverity_signed }),
    });
    let hook = if file.is_some() { Hook::BprmCheck } else { Hook::KernelLoad };
    let decision = evaluate(&policy, &Event { operation, hook, file }, Providers::ALL);

    let name = path.display();
    let action = match decision.action {
        Action::Allow => "ALLOW",
        Action::Deny => "DENY",
    };
    let header = policy.header();
    let (line, rule_text, source) = match decision.source {
        Source::Rule(index) => match policy.rule(index) {
            Some(rule) => (rule.line, DisplayRule { policy: &policy, rule }.to_string(), "the first matching rule"),
            None => return Err(Error::Internal(format!("evaluation returned rule {index}, which the policy does not have"))),
        },
        Source::OperationDefault(operation) => {
            let line = header.operation_defaults.get(operation.index()).copied().flatten().map_or(0, |default| default.line);
            (line, format!("DEFAULT op={} action={action}", operation.name()), "no rule matched; the operation's default")
        }
        Source::GlobalDefault => {
            let line = header.global_default.map_or(0, |default| default.line);
            let reason = if operation.is_some() { "no rule matched and the operation has no default; the global default" } else { "the operation is unknown; the global default" };
            (line, format!("DEFAULT action={action}"), reason)
        }
        Source::UnknownOperationWithoutDefault | Source::NoActivePolicy => {
            return Ok(format!("{name}: no rule or default applies; the kernel warns and allows\ndecision: ALLOW"));
        }
    };
    Ok(format!("{name}:{line}: {rule_text}\ndecision: {action} ({source})"))
}

fn usage(message: &str, hint: &str) -> Error {
    Error::Usage { message: message.to_string(), hint: Some(hint.to_string()) }
}

/// Parses an operation name; `UNKNOWN` stands for an operation IPE does not map.
fn parse_operation(name: &str) -> Result<Option<Operation>, Error> {
    if name == ipe::grammar::UNKNOWN_OPERATION_NAME {
        return Ok(None);
    }
    match Operation::from_name(name.as_bytes()) {
        Some(operation) => Ok(Some(operation)),
        None => {
            let names: Vec<&str> = ipe::grammar::OPERATIONS.iter().map(|entry| entry.name).collect();
            Err(usage(&format!("invalid operation {name:?}"), &format!("use one of {} or UNKNOWN", names.join(", "))))
        }
    }
}

/// Parses `ALG:HEX` into the algorithm name and the digest bytes.
fn parse_digest(option: &str, value: &str) -> Result<(String, Vec<u8>), Error> {
    let invalid = || usage(&format!("invalid {option} value {value:?}"), "expected ALG:HEX with an even number of hex digits, such as sha256:3a7b…");
    let (algorithm, hex_digits) = value.split_once(':').ok_or_else(invalid)?;
    let bytes = hex::decode(hex_digits).map_err(|_| invalid())?;
    if algorithm.is_empty() || bytes.is_empty() {
        return Err(invalid());
    }
    Ok((algorithm.to_string(), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_line_names_token_and_expected_form() {
        let error = Policy::parse(b"policy_name=a policy_version=1.2.3\nDEFAULT action=ALLOW\nop=execute action=DENY\n").expect_err("invalid");
        assert_eq!(
            error_line(&error),
            "3:1: error: invalid operation `op=execute`; expected `op=` followed by EXECUTE, FIRMWARE, KMODULE, KEXEC_IMAGE, KEXEC_INITRAMFS, POLICY or X509_CERT"
        );
    }

    #[test]
    fn digest_option_rejects_malformed_values() {
        for value in ["sha256", "sha256:abc", "sha256:zz", ":abcd", "sha256:"] {
            assert!(parse_digest("--roothash", value).is_err(), "{value} was accepted");
        }
        assert_eq!(parse_digest("--roothash", "sha256:ABcd").ok(), Some(("sha256".to_string(), vec![0xab, 0xcd])));
    }
}
