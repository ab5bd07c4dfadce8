// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Table-driven vectors from `tests/data`: policy files with the result
//! Linux 6.12 gives (accepted, or the errno with the position this crate
//! reports), and evaluation cases with the expected decision and the rule
//! or default that decides.

use std::fs;
use std::path::{Path, PathBuf};

use ipe::{evaluate, evaluate_active, evaluate_linear, Action, Decision, DmVerity, Event, FileProperties, FsVerity, Hook, Operation, Policy, Providers, Source};

fn data_dir(part: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(part)
}

/// Rows of a tab-separated table, without comments and blank lines.
fn table(path: &Path) -> Vec<Vec<String>> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines().filter(|line| !line.trim().is_empty() && !line.starts_with('#')).map(|line| line.split('\t').map(str::to_string).collect()).collect()
}

#[test]
fn parse_vectors() {
    let dir = data_dir("parse");
    let rows = table(&dir.join("expected.tsv"));
    let mut failures = Vec::new();
    for row in &rows {
        let [file, expected, position, case] = row.as_slice() else { panic!("malformed row {row:?}") };
        let text = fs::read(dir.join(file)).unwrap_or_else(|e| panic!("cannot read {file}: {e}"));
        let got = match Policy::parse(&text) {
            Ok(policy) => {
                let printed = policy.to_text();
                let reparsed = Policy::parse(&printed);
                assert_eq!(reparsed.as_ref().ok(), Some(&policy), "{file}: the printed text does not parse back equal:\n{}", String::from_utf8_lossy(&printed));
                ("ok".to_string(), "-".to_string())
            }
            Err(error) => (error.errno.name().to_string(), format!("{}:{}", error.line, error.column)),
        };
        if (got.0.as_str(), got.1.as_str()) != (expected.as_str(), position.as_str()) {
            failures.push(format!("{file} ({case}): expected {expected} at {position}, got {} at {}", got.0, got.1));
        }
    }
    assert!(failures.is_empty(), "{} of {} vectors failed:\n{}", failures.len(), rows.len(), failures.join("\n"));
}

#[test]
fn parse_vectors_cover_every_file() {
    let dir = data_dir("parse");
    let listed: Vec<String> = table(&dir.join("expected.tsv")).into_iter().map(|row| row[0].clone()).collect();
    for entry in fs::read_dir(&dir).expect("parse vector folder") {
        let name = entry.expect("directory entry").file_name().to_string_lossy().into_owned();
        if name.ends_with(".pol") {
            assert!(listed.contains(&name), "{name} has no row in expected.tsv");
        }
    }
}

fn decode_hex(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex in a test case")).collect()
}

/// Owned digests for an event description such as `file,initramfs,dmv=sha256:AB,dmvsig`.
struct FileSpec {
    initramfs: bool,
    dm_verity: Option<(String, Vec<u8>, bool)>,
    fs_verity: Option<(String, Vec<u8>, bool)>,
}

fn parse_file_spec(spec: &str) -> Option<FileSpec> {
    if spec == "-" {
        return None;
    }
    let mut file = FileSpec { initramfs: false, dm_verity: None, fs_verity: None };
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("dmv", digest)) => {
                let (algorithm, hex) = digest.split_once(':').expect("dmv=ALG:HEX");
                file.dm_verity = Some((algorithm.to_string(), decode_hex(hex), false));
            }
            Some(("fsv", digest)) => {
                let (algorithm, hex) = digest.split_once(':').expect("fsv=ALG:HEX");
                file.fs_verity = Some((algorithm.to_string(), decode_hex(hex), false));
            }
            _ => match part {
                "file" => {}
                "initramfs" => file.initramfs = true,
                "dmvsig" => file.dm_verity.as_mut().expect("dmvsig after dmv=").2 = true,
                "fsvsig" => file.fs_verity.as_mut().expect("fsvsig after fsv=").2 = true,
                other => panic!("unknown file property {other:?}"),
            },
        }
    }
    Some(file)
}

fn parse_providers(spec: &str) -> Providers {
    let mut providers = Providers::ALL;
    for part in spec.split(',') {
        match part {
            "all" => {}
            "-dmv" => providers.dm_verity = false,
            "-dmvsig" => providers.dm_verity_signature = false,
            "-fsv" => providers.fs_verity = false,
            "-fsvsig" => providers.fs_verity_builtin_signature = false,
            other => panic!("unknown provider {other:?}"),
        }
    }
    providers
}

/// Describes a decision as the table does: `ALLOW rule:LINE`, `DENY opdefault`, …
fn describe(policy: Option<&Policy>, decision: &Decision) -> String {
    let action = match decision.action {
        Action::Allow => "ALLOW",
        Action::Deny => "DENY",
    };
    let source = match decision.source {
        Source::Rule(index) => format!("rule:{}", policy.and_then(|p| p.as_ref().rule(index).map(|r| r.line)).unwrap_or(0)),
        Source::OperationDefault(_) => "opdefault".to_string(),
        Source::GlobalDefault => "global".to_string(),
        Source::UnknownOperationWithoutDefault => "unknown-no-default".to_string(),
        Source::NoActivePolicy => "no-policy".to_string(),
    };
    format!("{action} {source}")
}

#[test]
fn eval_vectors() {
    let dir = data_dir("eval");
    let rows = table(&dir.join("cases.tsv"));
    let mut failures = Vec::new();
    for row in &rows {
        let [policy_file, operation, file, providers, expected, case] = row.as_slice() else { panic!("malformed row {row:?}") };
        let policy = match policy_file.as_str() {
            "-" => None,
            name => {
                let text = fs::read(dir.join(name)).unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
                Some(Policy::parse(&text).unwrap_or_else(|e| panic!("{name} does not parse: {e}")))
            }
        };
        let operation = match operation.as_str() {
            "UNKNOWN" => None,
            name => Some(Operation::from_name(name.as_bytes()).unwrap_or_else(|| panic!("unknown operation {name}"))),
        };
        let file = parse_file_spec(file);
        let file_properties = file.as_ref().map(|f| FileProperties {
            initramfs: f.initramfs,
            dm_verity: f.dm_verity.as_ref().map(|(algorithm, hash, signed)| DmVerity { algorithm: algorithm.as_bytes(), root_hash: hash, signature_verified: *signed }),
            fs_verity: f.fs_verity.as_ref().map(|(algorithm, digest, signed)| FsVerity { algorithm: algorithm.as_bytes(), digest, builtin_signature_verified: *signed }),
        });
        let hook = if file_properties.is_some() { Hook::BprmCheck } else { Hook::KernelLoad };
        let event = Event { operation, hook, file: file_properties };
        let providers = parse_providers(providers);

        let policy_ref = policy.as_ref().map(Policy::as_ref);
        let indexed = evaluate_active(policy_ref.as_ref(), &event, providers);
        let got = describe(policy.as_ref(), &indexed);
        if &got != expected {
            failures.push(format!("{policy_file} {case}: expected {expected}, got {got}"));
        }
        if let Some(policy_ref) = &policy_ref {
            assert_eq!(evaluate(policy_ref, &event, providers), evaluate_linear(policy_ref, &event, providers), "{case}: indexed and linear differ");
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), rows.len(), failures.join("\n"));
}
