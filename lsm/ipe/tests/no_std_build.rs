// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Checks that the crate builds without its `alloc` feature, as the kernel
//! build needs (`#![no_std]`, no `alloc`).

use std::process::Command;

#[test]
fn builds_without_default_features() {
    let target_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-std-build");
    let output = Command::new(env!("CARGO"))
        .args(["build", "--offline", "--quiet", "-p", "ipe", "--no-default-features", "--lib", "--target-dir"])
        .arg(&target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(output.status.success(), "cargo build -p ipe --no-default-features failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let lib = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs")).expect("lib.rs");
    assert!(lib.contains("#![no_std]"), "lib.rs lost #![no_std]");
    assert!(lib.contains("#[cfg(feature = \"alloc\")]\nextern crate alloc;"), "alloc must stay behind the feature");
}
