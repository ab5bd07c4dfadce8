//! The content-addressed cache under `~/.cache/applbuild/` (or
//! `$APPLBUILD_CACHE`): Debian build roots, kernels and package downloads,
//! each in a folder named after the hash of its inputs.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The cache root folder.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// Locates the cache: `$APPLBUILD_CACHE`, else `$XDG_CACHE_HOME/applbuild`,
    /// else `$HOME/.cache/applbuild`.
    pub fn locate() -> Cache {
        if let Some(dir) = std::env::var_os("APPLBUILD_CACHE") {
            return Cache { root: PathBuf::from(dir) };
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
            return Cache { root: PathBuf::from(dir).join("applbuild") };
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
        Cache { root: home.join(".cache").join("applbuild") }
    }

    pub fn at(root: PathBuf) -> Cache {
        Cache { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of one kind of entry, e.g. `kernel` or `debs`.
    pub fn dir(&self, kind: &str) -> PathBuf {
        self.root.join(kind)
    }
}

/// An incremental SHA-256 over named inputs, used for cache keys. Each part
/// is length-prefixed so that different splits of the same bytes differ.
#[derive(Default)]
pub struct KeyHasher {
    hasher: Sha256,
}

impl KeyHasher {
    pub fn new(domain: &str) -> KeyHasher {
        let mut key = KeyHasher { hasher: Sha256::new() };
        key.add(domain.as_bytes());
        key
    }

    pub fn add(&mut self, part: &[u8]) -> &mut KeyHasher {
        self.hasher.update((part.len() as u64).to_le_bytes());
        self.hasher.update(part);
        self
    }

    pub fn add_str(&mut self, part: &str) -> &mut KeyHasher {
        self.add(part.as_bytes())
    }

    pub fn finish(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }

    /// The first 16 hex digits of the key, used in folder names.
    pub fn short_hex(&self) -> String {
        hex::encode(&self.finish()[..8])
    }
}
