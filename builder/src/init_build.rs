//! Builds the static initramfs init (`builder/init`) from this source tree
//! with cargo: glibc linked statically (`crt-static`), paths remapped so the
//! binary does not depend on where the tree is checked out.

use crate::error::Error;
use crate::tool::{self, Tool};
use std::path::PathBuf;

const TARGET: &str = "x86_64-unknown-linux-gnu";

/// The workspace this binary was built from.
pub fn workspace_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the init and returns its bytes.
pub fn build() -> Result<Vec<u8>, Error> {
    let workspace = workspace_dir();
    let manifest = workspace.join("builder/init/Cargo.toml");
    if !manifest.is_file() {
        return Err(Error::Usage {
            message: format!("the init sources are not at {}", manifest.display()),
            hint: Some("run applbuild from its source tree, or pass --init with a prebuilt static init binary".into()),
        });
    }
    let target_dir = workspace.join("target/init");
    let cargo = std::env::var_os("CARGO").map(PathBuf::from);
    let mut cmd = match cargo {
        Some(path) => std::process::Command::new(path),
        None => tool::command(Tool { program: "cargo", package: "cargo (install Rust with rustup)" }),
    };
    let registry = std::env::var("CARGO_HOME").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo"));
    let flags = format!(
        "-C target-feature=+crt-static --remap-path-prefix={}=/applbuild --remap-path-prefix={}=/cargo",
        workspace.canonicalize().unwrap_or(workspace.clone()).display(),
        registry.display()
    );
    cmd.env("RUSTFLAGS", flags)
        .env_remove("CARGO_TARGET_DIR")
        .args(["build", "--release", "--locked", "--quiet", "-p", "applbuild-init", "--target", TARGET])
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    tool::run(&mut cmd)?;
    let binary = target_dir.join(TARGET).join("release/applbuild-init");
    std::fs::read(&binary).map_err(|source| Error::io("read", &binary, source))
}
