//! `build.json`: the record of one build, written next to the image.
//!
//! Layout: one JSON object whose fields [`FIELDS`] lists with their types
//! and meanings. `docs/build-json.md` shows that table, and tests check
//! that the page, the table and the written record agree. `schema_version`
//! is [`SCHEMA_VERSION`]. Within a schema version fields are only added;
//! removing a field or changing its type or meaning raises the version.

use crate::board::Board;
use crate::error::Error;
use crate::manifest::Manifest;
use crate::pipeline::ImageOptions;
use crate::{ext4, kernel, verity};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// File name of the record in the output folder.
pub const FILE_NAME: &str = "build.json";

/// Version of the layout below; see the module documentation for when it
/// changes.
pub const SCHEMA_VERSION: u64 = 1;

/// One field of the record. `path` joins object keys with `.`; `[]` stands
/// for every element of an array.
#[derive(Debug)]
pub struct Field {
    pub path: &'static str,
    /// JSON type, with the unit or format of the value. A type starting
    /// with `map` is an object whose keys are data, not field names.
    pub kind: &'static str,
    pub meaning: &'static str,
}

/// Every field applbuild writes, in the order of the reference page.
pub const FIELDS: &[Field] = &[
    Field { path: "schema_version", kind: "integer", meaning: "Layout version of this file, 1. Fields are only added within a version; a removal or a change of type or meaning raises it." },
    Field { path: "board", kind: "string", meaning: "Board name, the `name` key of the board file." },
    Field { path: "release", kind: "string", meaning: "Release number `X.Y.Z` from the board file." },
    Field { path: "unsigned", kind: "boolean", meaning: "`true` for an `image --unsigned` build that `applbuild sign` has not signed yet." },
    Field { path: "source_date_epoch", kind: "integer (seconds since 1970-01-01 UTC)", meaning: "Timestamp of every file in the image, from `SOURCE_DATE_EPOCH`." },
    Field { path: "inputs", kind: "map of string to string (lowercase hex SHA-256)", meaning: "Board file, manifest and kernel config fragments with the SHA-256 of their content. Keys are the paths as applbuild resolved them: relative to the working folder when the board path on the command line is relative." },
    Field { path: "outputs", kind: "map of string to string (lowercase hex SHA-256)", meaning: "Every file of the output folder except `build.json` itself, by name, with the SHA-256 of its content." },
    Field { path: "packages", kind: "array of strings", meaning: "Debian packages of the root filesystem as `name version`, sorted; empty for tarball and directory sources. `sbom.spdx.json` has the details." },
    Field { path: "kernel", kind: "object", meaning: "The kernel in the UKI." },
    Field { path: "kernel.cache_key", kind: "string (16 hex digits)", meaning: "Key of the kernel's cache entry, a digest of everything that goes into the kernel." },
    Field { path: "kernel.bzimage_sha256", kind: "string (lowercase hex SHA-256)", meaning: "SHA-256 of the kernel image (bzImage)." },
    Field { path: "kernel.source_version", kind: "string", meaning: "Debian version of the linux-source-6.12 package the kernel is built from." },
    Field { path: "kernel.lsm", kind: "string", meaning: "The IPE implementation built in: `ipe` (upstream C) or `ipe-rust`." },
    Field { path: "verity", kind: "object", meaning: "The dm-verity parameters of the root partition." },
    Field { path: "verity.root_hash", kind: "string (lowercase hex)", meaning: "Root hash of the hash tree, the value that is signed." },
    Field { path: "verity.salt", kind: "string (lowercase hex)", meaning: "Salt of the hash tree." },
    Field { path: "verity.uuid", kind: "string (32 lowercase hex digits)", meaning: "UUID in the verity superblock." },
    Field { path: "verity.data_blocks", kind: "integer (blocks)", meaning: "Number of data blocks the tree covers." },
    Field { path: "verity.hash_algorithm", kind: "string", meaning: "Hash of the tree, `sha256`." },
    Field { path: "verity.data_block_size", kind: "integer (bytes)", meaning: "Data block size, 4096." },
    Field { path: "verity.hash_block_size", kind: "integer (bytes)", meaning: "Hash block size, 4096." },
    Field { path: "rootfs_files", kind: "array of objects", meaning: "Every regular file of the root filesystem." },
    Field { path: "rootfs_files[].path", kind: "string", meaning: "Absolute path inside the root filesystem, such as `/etc/hostname`." },
    Field { path: "rootfs_files[].mode", kind: "integer", meaning: "File type and permission bits as in `st_mode` (decimal; `33261` is `0o100755`)." },
    Field { path: "rootfs_files[].uid", kind: "integer", meaning: "Owner user id." },
    Field { path: "rootfs_files[].gid", kind: "integer", meaning: "Owner group id." },
    Field { path: "rootfs_files[].size", kind: "integer (bytes)", meaning: "File size." },
    Field { path: "rootfs_files[].sha256", kind: "string (lowercase hex SHA-256)", meaning: "SHA-256 of the content." },
    Field { path: "tools", kind: "map of string to string", meaning: "Version of `applbuild`, and the first line of the version output of the host tools `mke2fs` and `mmdebstrap`, by program name. A tool that is not installed is left out." },
    Field { path: "timings", kind: "array of objects", meaning: "Time spent per stage, in pipeline order. Varies between runs, unlike the other fields." },
    Field { path: "timings[].stage", kind: "string", meaning: "Stage name, such as `rootfs` or `kernel`." },
    Field { path: "timings[].seconds", kind: "number (seconds)", meaning: "Wall-clock time of the stage." },
];

/// Time one stage took, for `timings`.
#[derive(Serialize)]
pub(crate) struct StageTime {
    pub stage: &'static str,
    pub seconds: f64,
}

/// Returns the path of every field in `record`, walked as [`FIELDS`]
/// names them: objects are entered unless their field is a map, and
/// arrays of objects are entered as `path[]`.
pub fn field_paths(record: &Value) -> BTreeSet<String> {
    fn walk(value: &Value, path: &str, paths: &mut BTreeSet<String>) {
        if !path.is_empty() {
            paths.insert(path.to_string());
        }
        let is_map = FIELDS.iter().any(|field| field.path == path && field.kind.starts_with("map"));
        match value {
            Value::Object(object) if !is_map => {
                for (key, child) in object {
                    let child_path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                    walk(child, &child_path, paths);
                }
            }
            Value::Array(items) => {
                for object in items.iter().filter_map(Value::as_object) {
                    for (key, child) in object {
                        walk(child, &format!("{path}[].{key}"), paths);
                    }
                }
            }
            _ => {}
        }
    }
    let mut paths = BTreeSet::new();
    walk(record, "", &mut paths);
    paths
}

/// Renders [`FIELDS`] as the Markdown table of `docs/build-json.md`.
pub fn render_reference() -> String {
    let mut out = String::from("| Field | Type | Meaning |\n| --- | --- | --- |\n");
    for field in FIELDS {
        out.push_str(&format!("| `{}` | {} | {} |\n", field.path, field.kind, field.meaning));
    }
    out
}

/// The build facts that go into the record.
pub(crate) struct RecordInput<'a> {
    pub board: &'a Board,
    pub manifest: &'a Manifest,
    pub options: &'a ImageOptions,
    pub packages: &'a [String],
    pub ext4_out: &'a ext4::Ext4Output,
    pub verity_info: &'a verity::VerityInfo,
    pub kernel_out: &'a kernel::KernelOutput,
    /// SHA-256 of each output file but the record, from [`output_digests`].
    pub outputs: Map<String, Value>,
    pub times: &'a [StageTime],
}

/// Builds the record and returns it as pretty-printed JSON.
pub(crate) fn render(input: RecordInput) -> Result<String, Error> {
    let RecordInput { board, manifest, options, packages, ext4_out, verity_info, kernel_out, outputs, times } = input;
    let mut inputs = Map::new();
    for path in [&board.path, &manifest.path].into_iter().chain(board.kernel.config.iter()) {
        let digest = crate::digest::sha256_file(path).map_err(|source| Error::io("read", path, source))?;
        inputs.insert(path.display().to_string(), Value::String(digest));
    }
    let record = serde_json::json!({
        "schema_version": SCHEMA_VERSION,
        "board": board.name,
        "release": board.release.to_string(),
        "unsigned": options.unsigned,
        "source_date_epoch": options.epoch,
        "inputs": inputs,
        "outputs": outputs,
        "packages": packages,
        "kernel": {
            "cache_key": kernel_out.key,
            "bzimage_sha256": crate::digest::sha256_file(&kernel_out.bzimage).unwrap_or_default(),
            "source_version": kernel_out.source_version,
            "lsm": kernel_out.lsm,
        },
        "verity": {
            "root_hash": hex::encode(verity_info.root_hash),
            "salt": hex::encode(&verity_info.salt),
            "uuid": hex::encode(verity_info.uuid),
            "data_blocks": verity_info.data_blocks,
            "hash_algorithm": "sha256",
            "data_block_size": 4096,
            "hash_block_size": 4096,
        },
        "rootfs_files": ext4_out.files,
        "tools": tool_versions(),
        "timings": times,
    });
    serde_json::to_string_pretty(&record).map_err(|e| Error::Internal(format!("serialising build.json: {e}")))
}

/// Returns the SHA-256 of every file in `dir` (not of folders), by name.
pub fn output_digests(dir: &Path) -> Result<Map<String, Value>, Error> {
    let mut outputs = Map::new();
    let mut names: Vec<_> = fs::read_dir(dir).map_err(|source| Error::io("read", dir, source))?.flatten().filter(|e| e.path().is_file()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        outputs.insert(name, Value::String(crate::digest::sha256_file(&path).map_err(|source| Error::io("read", &path, source))?));
    }
    Ok(outputs)
}

fn tool_versions() -> Value {
    let mut versions = Map::new();
    versions.insert("applbuild".into(), env!("CARGO_PKG_VERSION").into());
    for (name, args) in [("mke2fs", &["-V"][..]), ("mmdebstrap", &["--version"][..])] {
        if let Some(path) = crate::tool::find(name) {
            if let Ok(output) = std::process::Command::new(path).args(args).output() {
                let text = if output.stdout.is_empty() { output.stderr } else { output.stdout };
                let first = String::from_utf8_lossy(&text).lines().next().unwrap_or_default().to_string();
                versions.insert(name.into(), first.into());
            }
        }
    }
    Value::Object(versions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;
    use std::path::PathBuf;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// Builds a record of the default board from made-up stage outputs,
    /// with one element per list so that every field appears.
    fn sample_record() -> Value {
        let board = crate::board::load(&repo().join("boards/qemu-x86_64.toml")).expect("default board");
        let manifest = crate::manifest::load(&board.manifest).expect("default manifest");
        let options = ImageOptions { out: PathBuf::from("out"), epoch: 1, random_salt: false, no_cache: false, qcow2: false, keys_dir: None, init: None, cache: Cache::at(PathBuf::from("cache")), unsigned: false };
        let file = ext4::FileEntry { path: "usr/bin/busybox".into(), mode: 0o100755, uid: 0, gid: 0, size: 1, sha256: "00".repeat(32) };
        let ext4_out = ext4::Ext4Output { image: PathBuf::from("root.ext4"), size: 4096, files: vec![file] };
        let verity_info = verity::VerityInfo { root_hash: [0; 32], salt: vec![0; 32], uuid: [0; 16], data_blocks: 1, hash_size: 4096 };
        let kernel_out = kernel::KernelOutput { bzimage: PathBuf::from("missing"), stub: PathBuf::new(), config: PathBuf::new(), key: "0".repeat(16), cached: true, source_version: "6.12.0-1".into(), lsm: "ipe-rust", stub_package: kernel::StubPackage { name: "systemd-boot-efi", version: None, copyright: None } };
        let mut outputs = Map::new();
        outputs.insert("disk.raw".into(), "00".repeat(32).into());
        let times = [StageTime { stage: "rootfs", seconds: 1.0 }];
        let packages = ["busybox-static 1:1.37.0-6".to_string()];
        let text = render(RecordInput { board: &board, manifest: &manifest, options: &options, packages: &packages, ext4_out: &ext4_out, verity_info: &verity_info, kernel_out: &kernel_out, outputs, times: &times }).expect("record");
        serde_json::from_str(&text).expect("the record is JSON")
    }

    #[test]
    fn written_fields_match_the_field_table() {
        let written = field_paths(&sample_record());
        let documented: BTreeSet<String> = FIELDS.iter().map(|field| field.path.to_string()).collect();
        assert_eq!(written, documented, "build.json and FIELDS disagree; update FIELDS and docs/build-json.md");
    }

    #[test]
    fn record_carries_the_schema_version() {
        assert_eq!(sample_record()["schema_version"], SCHEMA_VERSION);
    }

    #[test]
    fn maps_are_not_entered() {
        let record = serde_json::json!({ "inputs": { "boards/x.toml": "00" }, "kernel": { "lsm": "ipe" }, "timings": [{ "stage": "a" }, { "stage": "b", "seconds": 1 }] });
        let paths: Vec<String> = field_paths(&record).into_iter().collect();
        assert_eq!(paths, ["inputs", "kernel", "kernel.lsm", "timings", "timings[].seconds", "timings[].stage"]);
    }
}
