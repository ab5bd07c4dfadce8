// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Fuzzes the IPE engine: parse with caller storage and with `Policy`,
//! then print, reparse, evaluate (indexed and linear), write audit text and
//! lint. Fails on a panic, on disagreement between the two parse paths or
//! the two evaluators, and when the printed policy does not parse back equal.
#![no_main]

use ipe::audit::{write_access, AccessContext};
use ipe::lint::{lint, LintOptions};
use ipe::policy::{IndexEntry, Property, Rule};
use ipe::{evaluate, evaluate_linear, measure, parse_into, DmVerity, Event, FileProperties, FsVerity, Hook, Operation, Policy, Providers, Storage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let counts = measure(data);
    let mut rules = vec![Rule::EMPTY; counts.rules];
    let mut properties = vec![Property::EMPTY; counts.properties];
    let mut digest_bytes = vec![0; counts.digest_bytes];
    let mut index = vec![IndexEntry::default(); counts.indexed_rules];
    let mut plain_rules = vec![0; counts.plain_rules];
    let mut storage = Storage { rules: &mut rules, properties: &mut properties, digest_bytes: &mut digest_bytes, index: &mut index, plain_rules: &mut plain_rules };
    let borrowed = parse_into(data, &mut storage).err();
    let owned = Policy::parse(data);
    assert_eq!(borrowed, owned.as_ref().err().copied(), "caller storage and owned parse disagree");
    let Ok(policy) = owned else { return };

    let printed = policy.to_text();
    let reparsed = Policy::parse(&printed).expect("printed policy parses");
    assert!(reparsed == policy, "printed policy differs");

    // Events built from the digests the policy names, so that rules match.
    let policy_ref = policy.as_ref();
    for property in policy_ref.properties().iter().take(8) {
        let Some(digest) = property.digest() else { continue };
        let algorithm = policy_ref.algorithm(&digest);
        let bytes = policy_ref.digest_bytes(&digest);
        for signed in [false, true] {
            let file = FileProperties {
                initramfs: signed,
                dm_verity: Some(DmVerity { algorithm, root_hash: bytes, signature_verified: signed }),
                fs_verity: Some(FsVerity { algorithm, digest: bytes, builtin_signature_verified: !signed }),
            };
            for operation in Operation::ALL.iter().copied().map(Some).chain([None]) {
                let event = Event { operation, hook: Hook::Mmap, file: Some(file) };
                let decision = evaluate(&policy_ref, &event, Providers::ALL);
                assert_eq!(decision, evaluate_linear(&policy_ref, &event, Providers::ALL));
                let context = AccessContext { operation, hook: Hook::Mmap, enforcing: true, pid: 1, comm: b"fuzz", file: None };
                let mut record = String::new();
                write_access(&mut record, &policy_ref, &context, &decision).expect("writing to a String");
            }
        }
    }
    lint(&policy_ref, LintOptions::default(), &mut |_| {});
});
