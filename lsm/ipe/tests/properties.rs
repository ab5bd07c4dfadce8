// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Property tests: the indexed evaluator agrees with the file-order scan on
//! random policies and events, and no input makes the parser, printer,
//! evaluator, audit writer or lint panic.

use ipe::audit::{write_access, AccessContext, AuditFile};
use ipe::lint::{lint, LintOptions};
use ipe::print::{write_policy, SliceWriter};
use ipe::{evaluate, evaluate_linear, measure, parse_into, DmVerity, Event, FileProperties, FsVerity, Hook, Operation, Policy, Providers, Storage};
use proptest::prelude::*;

/// Digests shared by policies and events so that they often match.
const DIGESTS: [&str; 4] = ["aa", "bb", "cc", "dd"];
const ALGORITHMS: [&str; 2] = ["sha256", "sha512"];

fn digest_hex(choice: usize) -> String {
    DIGESTS[choice % DIGESTS.len()].repeat(32)
}

fn property() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<bool>().prop_map(|v| format!("boot_verified={}", if v { "TRUE" } else { "FALSE" })),
        any::<bool>().prop_map(|v| format!("dmverity_signature={}", if v { "TRUE" } else { "FALSE" })),
        any::<bool>().prop_map(|v| format!("fsverity_signature={}", if v { "TRUE" } else { "FALSE" })),
        (0..2usize, 0..4usize).prop_map(|(a, d)| format!("dmverity_roothash={}:{}", ALGORITHMS[a], digest_hex(d))),
        (0..2usize, 0..4usize).prop_map(|(a, d)| format!("fsverity_digest={}:{}", ALGORITHMS[a], digest_hex(d))),
    ]
}

fn rule() -> impl Strategy<Value = String> {
    (0..7usize, prop::collection::vec(property(), 0..4), any::<bool>()).prop_map(|(op, properties, allow)| {
        let mut line = format!("op={}", Operation::ALL[op].name());
        for property in properties {
            line.push(' ');
            line.push_str(&property);
        }
        line.push_str(if allow { " action=ALLOW" } else { " action=DENY" });
        line
    })
}

fn policy_text() -> impl Strategy<Value = String> {
    (prop::collection::vec(rule(), 0..40), any::<bool>(), prop::collection::vec(any::<Option<bool>>(), 7)).prop_map(|(rules, global_allow, defaults)| {
        let mut text = String::from("policy_name=random policy_version=1.0.0\n");
        text.push_str(if global_allow { "DEFAULT action=ALLOW\n" } else { "DEFAULT action=DENY\n" });
        for (op, default) in Operation::ALL.iter().zip(defaults) {
            if let Some(allow) = default {
                text.push_str(&format!("DEFAULT op={} action={}\n", op.name(), if allow { "ALLOW" } else { "DENY" }));
            }
        }
        for rule in rules {
            text.push_str(&rule);
            text.push('\n');
        }
        text
    })
}

/// A verity state: algorithm choice, digest choice, signature verified.
type VeritySpec = (usize, usize, bool);

#[derive(Debug, Clone)]
struct EventSpec {
    operation: Option<usize>,
    file: Option<(bool, Option<VeritySpec>, Option<VeritySpec>)>,
    providers: [bool; 4],
}

fn event_spec() -> impl Strategy<Value = EventSpec> {
    let verity = prop::option::of((0..2usize, 0..5usize, any::<bool>()));
    (prop::option::weighted(0.95, 0..7usize), prop::option::weighted(0.9, (any::<bool>(), verity.clone(), verity)), any::<[bool; 4]>())
        .prop_map(|(operation, file, providers)| EventSpec { operation, file, providers })
}

fn digest_bytes(choice: usize) -> Vec<u8> {
    // Choice 4 is a digest no policy names.
    let byte = [0xaa, 0xbb, 0xcc, 0xdd, 0xee][choice % 5];
    vec![byte; 32]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn indexed_equals_linear(text in policy_text(), events in prop::collection::vec(event_spec(), 1..20)) {
        let policy = Policy::parse(text.as_bytes()).expect("generated policies are valid");
        let policy = policy.as_ref();
        for spec in events {
            let dm_digest = spec.file.and_then(|f| f.1).map(|(_, d, _)| digest_bytes(d));
            let fs_digest = spec.file.and_then(|f| f.2).map(|(_, d, _)| digest_bytes(d));
            let file = spec.file.map(|(initramfs, dm, fs)| FileProperties {
                initramfs,
                dm_verity: dm.map(|(a, _, signed)| DmVerity { algorithm: ALGORITHMS[a].as_bytes(), root_hash: dm_digest.as_deref().unwrap_or(&[]), signature_verified: signed }),
                fs_verity: fs.map(|(a, _, signed)| FsVerity { algorithm: ALGORITHMS[a].as_bytes(), digest: fs_digest.as_deref().unwrap_or(&[]), builtin_signature_verified: signed }),
            });
            let event = Event { operation: spec.operation.map(|i| Operation::ALL[i]), hook: Hook::Mmap, file };
            let [dm_verity, dm_verity_signature, fs_verity, fs_verity_builtin_signature] = spec.providers;
            let providers = Providers { dm_verity, dm_verity_signature, fs_verity, fs_verity_builtin_signature };
            prop_assert_eq!(evaluate(&policy, &event, providers), evaluate_linear(&policy, &event, providers), "event {:?}", event);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise(&bytes);
    }

    #[test]
    fn grammar_soup_never_panics(words in prop::collection::vec(soup_word(), 0..60)) {
        exercise(words.concat().as_bytes());
    }
}

/// Words of the policy language and separators, so that random texts get
/// past the header and into rules.
fn soup_word() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("policy_name=x policy_version=1.2.3\n".to_string()),
        Just("DEFAULT ".to_string()),
        Just("action=ALLOW".to_string()),
        Just("action=DENY".to_string()),
        (0..7usize).prop_map(|i| format!("op={} ", Operation::ALL[i].name())),
        property().prop_map(|p| format!("{p} ")),
        Just("dmverity_roothash=sha256:abc ".to_string()),
        Just("fsverity_digest=:".to_string()),
        Just("boot_verified=".to_string()),
        Just("policy_version=99999.1.".to_string()),
        Just("\n".to_string()),
        Just("\r".to_string()),
        Just("\t".to_string()),
        Just(" ".to_string()),
        Just("#".to_string()),
        Just("\0".to_string()),
        Just("\u{b}".to_string()),
        "[ -~]{0,8}",
    ]
}

/// Parses with caller storage and the owned type, then prints, reparses,
/// evaluates, audits and lints whatever was accepted.
fn exercise(bytes: &[u8]) {
    let counts = measure(bytes);
    let mut rules = vec![ipe::policy::Rule::EMPTY; counts.rules];
    let mut properties = vec![ipe::policy::Property::EMPTY; counts.properties];
    let mut digest_bytes = vec![0; counts.digest_bytes];
    let mut index = vec![ipe::policy::IndexEntry::default(); counts.indexed_rules];
    let mut plain_rules = vec![0; counts.plain_rules];
    let mut storage = Storage { rules: &mut rules, properties: &mut properties, digest_bytes: &mut digest_bytes, index: &mut index, plain_rules: &mut plain_rules };
    let borrowed = parse_into(bytes, &mut storage);
    let owned = Policy::parse(bytes);
    assert_eq!(borrowed.as_ref().err(), owned.as_ref().err(), "caller storage and owned parse disagree");
    if let Some(error) = borrowed.as_ref().err() {
        assert_ne!(error.errno, ipe::Errno::OutOfMemory, "measure undercounted");
    }
    let Ok(policy) = owned else { return };

    let printed = policy.to_text();
    let reparsed = Policy::parse(&printed).expect("printed policy parses");
    assert!(reparsed == policy, "printed policy differs:\n{}", String::from_utf8_lossy(&printed));
    let mut small = [0u8; 16];
    let _ = write_policy(&mut SliceWriter::new(&mut small), &policy.as_ref());

    let digest = [0xab; 32];
    for operation in Operation::ALL.iter().copied().map(Some).chain([None]) {
        let file = FileProperties { initramfs: true, dm_verity: Some(DmVerity { algorithm: b"sha256", root_hash: &digest, signature_verified: true }), fs_verity: None };
        for file in [None, Some(file)] {
            let event = Event { operation, hook: Hook::KernelRead, file };
            let decision = evaluate(&policy.as_ref(), &event, Providers::ALL);
            assert_eq!(decision, evaluate_linear(&policy.as_ref(), &event, Providers::ALL));
            let context = AccessContext { operation, hook: Hook::KernelRead, enforcing: true, pid: 1, comm: b"t\"x", file: Some(AuditFile { path: b"/a b", device: b"dm-0", inode: 7 }) };
            let mut record = String::new();
            write_access(&mut record, &policy.as_ref(), &context, &decision).expect("writing to a String");
        }
    }
    lint(&policy.as_ref(), LintOptions::default(), &mut |_| {});
}
