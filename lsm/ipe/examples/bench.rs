// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Times policy parsing (1,000, 10,000 and 100,000 rules) and decisions
//! against a 10,000-entry root-hash allowlist, indexed against linear.
//! Run it in release mode: `ci/bench-ipe.sh` or
//! `cargo run --release -p ipe --features alloc --example bench`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ipe::{evaluate, evaluate_linear, DmVerity, Event, FileProperties, Hook, Operation, Policy, Providers};

/// A distinct 32-byte root hash per entry.
fn root_hash(entry: u32) -> [u8; 32] {
    let mut hash = [0u8; 32];
    for (position, byte) in hash.iter_mut().enumerate() {
        *byte = (entry.wrapping_mul(2_654_435_761).rotate_left(position as u32 % 32) >> 8) as u8 ^ position as u8;
    }
    hash[..4].copy_from_slice(&entry.to_be_bytes());
    hash
}

/// An allowlist policy: one `op=EXECUTE dmverity_roothash=… action=ALLOW` rule per entry.
fn allowlist(entries: u32) -> String {
    let mut text = String::from("policy_name=bench policy_version=1.0.0\nDEFAULT action=DENY\nDEFAULT op=EXECUTE action=DENY\n");
    for entry in 0..entries {
        text.push_str("op=EXECUTE dmverity_roothash=sha256:");
        for byte in root_hash(entry) {
            text.push_str(&format!("{byte:02x}"));
        }
        text.push_str(" dmverity_signature=TRUE action=ALLOW\n");
    }
    text
}

/// Runs `f` repeatedly for about `budget` and returns the median time of one call over 7 rounds.
fn time_per_call(budget: Duration, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    f();
    let once = start.elapsed().max(Duration::from_nanos(1));
    let iterations = ((budget.as_nanos() / 7) / once.as_nanos()).clamp(1, 10_000_000) as u32;
    let mut rounds: Vec<Duration> = (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed() / iterations
        })
        .collect();
    rounds.sort();
    rounds[3]
}

fn main() {
    println!("parse (measure + fill + index sort), median of 7 rounds:");
    for rules in [1_000u32, 10_000, 100_000] {
        let text = allowlist(rules);
        let time = time_per_call(Duration::from_secs(3), || {
            black_box(Policy::parse(black_box(text.as_bytes())).expect("benchmark policy parses"));
        });
        println!("  {rules:>7} rules, {:>9} bytes: {:>10.3} ms", text.len(), time.as_secs_f64() * 1e3);
    }

    let entries = 10_000u32;
    let policy = Policy::parse(allowlist(entries).as_bytes()).expect("benchmark policy parses");
    let policy = policy.as_ref();
    println!("decision, {entries}-entry root-hash allowlist, median of 7 rounds:");
    let absent = [0xeeu8; 32];
    let cases: [(&str, [u8; 32]); 4] = [
        ("first entry", root_hash(0)),
        ("middle entry", root_hash(entries / 2)),
        ("last entry", root_hash(entries - 1)),
        ("not listed", absent),
    ];
    for (name, hash) in cases {
        let file = FileProperties { initramfs: false, dm_verity: Some(DmVerity { algorithm: b"sha256", root_hash: &hash, signature_verified: true }), fs_verity: None };
        let event = Event { operation: Some(Operation::Execute), hook: Hook::BprmCheck, file: Some(file) };
        assert_eq!(evaluate(&policy, &event, Providers::ALL), evaluate_linear(&policy, &event, Providers::ALL));
        let indexed = time_per_call(Duration::from_secs(1), || {
            black_box(evaluate(black_box(&policy), black_box(&event), Providers::ALL));
        });
        let linear = time_per_call(Duration::from_secs(1), || {
            black_box(evaluate_linear(black_box(&policy), black_box(&event), Providers::ALL));
        });
        let ratio = linear.as_secs_f64() / indexed.as_secs_f64();
        println!("  {name:<13} indexed {:>9.1} ns, linear {:>11.1} ns, linear/indexed {ratio:>8.1}x", indexed.as_secs_f64() * 1e9, linear.as_secs_f64() * 1e9);
    }
}
