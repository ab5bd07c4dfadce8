// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Exact text checks: canonical printing, audit record fields, lint
//! warnings and error messages.

use ipe::audit::{write_access, write_config_change, write_policy_load, AccessContext, AuditFile, LoadRecordFormat, PolicySummary};
use ipe::lint::{lint, LintOptions, Warning, WarningKind};
use ipe::policy::Version;
use ipe::{evaluate, DmVerity, Event, FileProperties, Hook, Operation, Policy, Providers, Source};

const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn parse(text: &str) -> Policy {
    Policy::parse(text.as_bytes()).unwrap_or_else(|e| panic!("policy does not parse: {e}"))
}

#[test]
fn print_is_canonical() {
    let policy = parse(&format!(
        "# comment\npolicy_name=p  policy_version=+01.2.3\nop=KMODULE action=DENY\nDEFAULT op=EXECUTE action=DENY\nop=EXECUTE\tdmverity_roothash=sha256:{HASH} dmverity_signature=TRUE action=ALLOW\nDEFAULT action=ALLOW\n"
    ));
    let expected = format!(
        "policy_name=p policy_version=1.2.3\nDEFAULT action=ALLOW\nDEFAULT op=EXECUTE action=DENY\nop=EXECUTE dmverity_roothash=sha256:{} dmverity_signature=TRUE action=ALLOW\nop=KMODULE action=DENY\n",
        HASH.to_uppercase()
    );
    assert_eq!(String::from_utf8_lossy(&policy.to_text()), expected);
}

#[test]
fn print_keeps_non_utf8_name() {
    let policy = Policy::parse(b"policy_name=\xff\xef policy_version=0.0.0\nDEFAULT action=ALLOW\n").expect("valid policy");
    assert!(policy.to_text().starts_with(b"policy_name=\xff\xef policy_version=0.0.0\n"));
}

#[test]
fn audit_access_for_rule() {
    let policy = parse(&format!("policy_name=p policy_version=1.0.0\nDEFAULT action=DENY\nop=EXECUTE dmverity_roothash=sha256:{HASH} boot_verified=FALSE action=ALLOW\n"));
    let hash: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&HASH[2 * i..2 * i + 2], 16).expect("hex")).collect();
    let file = FileProperties { initramfs: false, dm_verity: Some(DmVerity { algorithm: b"sha256", root_hash: &hash, signature_verified: false }), fs_verity: None };
    let event = Event { operation: Some(Operation::Execute), hook: Hook::BprmCheck, file: Some(file) };
    let decision = evaluate(&policy.as_ref(), &event, Providers::ALL);
    assert_eq!(decision.source, Source::Rule(0));
    let context = AccessContext {
        operation: Some(Operation::Execute),
        hook: Hook::BprmCheck,
        enforcing: true,
        pid: 812,
        comm: b"app",
        file: Some(AuditFile { path: b"/usr/bin/app", device: b"dm-0", inode: 41 }),
    };
    let mut record = String::new();
    write_access(&mut record, &policy.as_ref(), &context, &decision).expect("write to String");
    let expected = format!(
        "ipe_op=EXECUTE ipe_hook=BPRM_CHECK enforcing=1 pid=812 comm=\"app\" path=\"/usr/bin/app\" dev=\"dm-0\" ino=41 rule=\"op=EXECUTE dmverity_roothash=\"sha256\":{} boot_verified=FALSE action=ALLOW\"",
        HASH.to_uppercase()
    );
    assert_eq!(record, expected);
}

#[test]
fn audit_access_for_defaults() {
    let policy = parse("policy_name=p policy_version=1.0.0\nDEFAULT action=ALLOW\nDEFAULT op=EXECUTE action=DENY\n");
    let event = Event { operation: Some(Operation::Execute), hook: Hook::Mmap, file: None };
    let decision = evaluate(&policy.as_ref(), &event, Providers::ALL);
    let context = AccessContext { operation: Some(Operation::Execute), hook: Hook::Mmap, enforcing: false, pid: 5, comm: b"a b", file: None };
    let mut record = String::new();
    write_access(&mut record, &policy.as_ref(), &context, &decision).expect("write to String");
    assert_eq!(record, "ipe_op=EXECUTE ipe_hook=MMAP enforcing=0 pid=5 comm=612062 path=? dev=? ino=? rule=\"DEFAULT op=EXECUTE action=DENY\"");

    let unknown = Event { operation: None, hook: Hook::KernelLoad, file: None };
    let decision = evaluate(&policy.as_ref(), &unknown, Providers::ALL);
    let context = AccessContext { operation: None, hook: Hook::KernelLoad, enforcing: true, pid: 1, comm: b"init", file: None };
    let mut record = String::new();
    write_access(&mut record, &policy.as_ref(), &context, &decision).expect("write to String");
    assert_eq!(record, "ipe_op=UNKNOWN ipe_hook=KERNEL_LOAD enforcing=1 pid=1 comm=\"init\" path=? dev=? ino=? rule=\"DEFAULT action=ALLOW\"");
}

#[test]
fn audit_config_change_and_load() {
    let empty_sha256 = [0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55];
    let boot = PolicySummary { name: b"boot", version: Version { major: 0, minor: 0, revision: 0 }, sha256: &empty_sha256 };
    let release = PolicySummary { name: b"release", version: Version { major: 1, minor: 2, revision: 3 }, sha256: &[0xab; 32] };
    let digest_hex = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
    let release_hex = "AB".repeat(32);

    let mut record = String::new();
    write_config_change(&mut record, None, &boot, 0, 1).expect("write to String");
    assert_eq!(record, format!("old_active_pol_name=? old_active_pol_version=? old_policy_digest=? new_active_pol_name=\"boot\" new_active_pol_version=0.0.0 new_policy_digest=sha256:{digest_hex} auid=0 ses=1 lsm=ipe res=1"));

    let mut record = String::new();
    write_config_change(&mut record, Some(&boot), &release, 4294967295, 4294967295).expect("write to String");
    assert_eq!(record, format!("old_active_pol_name=\"boot\" old_active_pol_version=0.0.0 old_policy_digest=sha256:{digest_hex} new_active_pol_name=\"release\" new_active_pol_version=1.2.3 new_policy_digest=sha256:{release_hex} auid=4294967295 ses=4294967295 lsm=ipe res=1"));

    let mut record = String::new();
    assert_eq!(write_policy_load(&mut record, Ok(&release), 0, 2, LoadRecordFormat::Linux6_12), Ok(true));
    assert_eq!(record, format!("policy_name=\"release\" policy_version=1.2.3 policy_digest=sha256:{release_hex} auid=0 ses=2 lsm=ipe res=1"));

    let mut record = String::new();
    assert_eq!(write_policy_load(&mut record, Err(74), 0, 2, LoadRecordFormat::Linux6_12), Ok(false));
    assert_eq!(record, "");

    let mut record = String::new();
    assert_eq!(write_policy_load(&mut record, Err(74), 0, 2, LoadRecordFormat::WithErrno), Ok(true));
    assert_eq!(record, "policy_name=? policy_version=? policy_digest=? auid=0 ses=2 lsm=ipe res=0 errno=-74");
}

fn warnings(text: &str, options: LintOptions) -> Vec<Warning> {
    let policy = parse(text);
    let mut found = Vec::new();
    lint(&policy.as_ref(), options, &mut |warning| found.push(warning));
    found
}

#[test]
fn lint_finds_each_warning() {
    let text = format!(
        "policy_name=p policy_version=1.0.0
DEFAULT action=DENY
DEFAULT op=EXECUTE action=DENY
op=EXECUTE boot_verified=TRUE action=ALLOW
op=EXECUTE boot_verified=TRUE dmverity_signature=TRUE action=DENY
op=EXECUTE dmverity_roothash=sha256:abcd action=ALLOW
op=EXECUTE dmverity_roothash=SHA256:{HASH} action=ALLOW
op=EXECUTE fsverity_digest=sha256: action=ALLOW
op=EXECUTE dmverity_roothash=sha256:{HASH} dmverity_roothash=sha256:{} action=ALLOW
"
        , "ff".repeat(32)
    );
    let found = warnings(&text, LintOptions::default());
    let kinds: Vec<(u32, u32, WarningKind)> = found.iter().map(|w| (w.line, w.column, w.kind)).collect();
    let expected_missing: Vec<(u32, u32, WarningKind)> = Operation::ALL[1..].iter().map(|&operation| (1, 1, WarningKind::MissingOperationDefault { operation })).collect();
    for item in &expected_missing {
        assert!(kinds.contains(item), "missing {item:?} in {kinds:?}");
    }
    assert!(kinds.contains(&(4, 12, WarningKind::BootVerifiedAfterBoot)), "{kinds:?}");
    assert!(kinds.contains(&(5, 12, WarningKind::BootVerifiedAfterBoot)), "{kinds:?}");
    assert!(kinds.contains(&(5, 31, WarningKind::SignatureWithoutRootHash)), "{kinds:?}");
    assert!(kinds.contains(&(5, 1, WarningKind::ShadowedRule { by_line: 4 })), "{kinds:?}");
    assert!(kinds.contains(&(6, 12, WarningKind::DigestLengthMismatch { expected: 32, actual: 2 })), "{kinds:?}");
    assert!(kinds.contains(&(7, 12, WarningKind::UnknownAlgorithm)), "{kinds:?}");
    assert!(kinds.contains(&(8, 12, WarningKind::EmptyDigest)), "{kinds:?}");
    assert!(kinds.contains(&(9, 102, WarningKind::ContradictoryProperties { other_column: 12 })), "{kinds:?}");
    assert_eq!(found.len(), expected_missing.len() + 8, "{kinds:?}");
}

#[test]
fn lint_quiet_for_release_policy() {
    let mut text = String::from("policy_name=r policy_version=1.0.0\nDEFAULT action=DENY\n");
    for operation in Operation::ALL {
        text.push_str(&format!("DEFAULT op={} action=DENY\n", operation.name()));
    }
    for operation in Operation::ALL {
        text.push_str(&format!("op={} dmverity_roothash=sha256:{HASH} dmverity_signature=TRUE action=ALLOW\n", operation.name()));
    }
    assert_eq!(warnings(&text, LintOptions::default()), Vec::new());
}

#[test]
fn lint_boot_policy_allows_boot_verified() {
    let text = "policy_name=boot policy_version=0.0.0\nDEFAULT action=DENY\nop=EXECUTE boot_verified=TRUE action=ALLOW\n";
    let found = warnings(text, LintOptions { after_boot: false });
    assert!(found.iter().all(|w| w.kind != WarningKind::BootVerifiedAfterBoot), "{found:?}");
}

#[test]
fn error_messages_read_well() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "1:1: the policy has no header; expected a header `policy_name=NAME policy_version=MAJOR.MINOR.REVISION`"),
        (b"policy_name=a policy_version=1.2.3\nDEFAULT action=ALLOW\nop=EXECUTE dmverity_roothash=sha256:xyz action=ALLOW\n", "3:37: the digest has a character that is not a hex digit `dmverity_roothash=sha256:xyz`; expected an even number of hex digits after the `:`"),
        (b"policy_name=a policy_version=1.2.3\nDEFAULT action=ALLOW\nDEFAULT action=DENY\n", "3:1: second global DEFAULT (the first is on line 2) `DEFAULT`; expected one global `DEFAULT action=…` line at most"),
        (b"policy_name=a policy_version=1.2.3\nDEFAULT op=EXECUTE action=ALLOW\n", "1:1: no global DEFAULT and no DEFAULT for op=FIRMWARE; expected a global `DEFAULT action=…` line, or a `DEFAULT op=… action=…` line for every operation"),
    ];
    for (text, expected) in cases {
        let error = Policy::parse(text).expect_err("invalid policy");
        assert_eq!(error.to_string(), *expected);
    }
}

#[test]
fn escaped_bytes_display() {
    use ipe::print::Escaped;
    assert_eq!(Escaped(b"plain").to_string(), "plain");
    assert_eq!(Escaped(b"a\xffb\xe2\x82").to_string(), "a\\xFFb\\xE2\\x82");
    assert_eq!(Escaped("é\u{20ac}".as_bytes()).to_string(), "é€");
    assert_eq!(Escaped(b"").to_string(), "");
}
