//! Builds the static initramfs init (`builder/init`) from this source tree
//! with cargo: glibc linked statically (`crt-static`), paths remapped so the
//! binary does not depend on where the tree is checked out.

use crate::error::Error;
use crate::tool::{self, Tool};
use std::path::PathBuf;

const TARGET: &str = "x86_64-unknown-linux-gnu";

/// The init crate's manifest, compiled in for its version and licence.
const INIT_MANIFEST: &str = include_str!("../init/Cargo.toml");

/// Returns the `version` and `license` of the init crate's manifest.
pub fn crate_version_and_licence() -> (Option<String>, Option<String>) {
    let package = INIT_MANIFEST.parse::<toml::Table>().ok().and_then(|manifest| manifest.get("package").and_then(|package| package.as_table()).cloned());
    let field = |name: &str| package.as_ref().and_then(|package| package.get(name)).and_then(|value| value.as_str()).map(str::to_string);
    (field("version"), field("license"))
}

/// Returns the version of the host's libc6-dev, whose static glibc the
/// init links, or `None` if dpkg does not list it.
pub fn host_glibc_version() -> Option<String> {
    let output = std::process::Command::new("dpkg-query").args(["-W", "-f=${Version}", "libc6-dev"]).output().ok()?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (output.status.success() && !version.is_empty()).then_some(version)
}

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
