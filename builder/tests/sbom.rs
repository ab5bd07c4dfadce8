//! The SBOM (`sbom.spdx.json`) and the build record (`build.json`) of the
//! default board. The ignored test builds the board with the committed test
//! keys, which needs root and the cached kernel and takes about a minute.
//! It validates the SBOM with the SPDX project's validator `pyspdxtools`
//! (PyPI `spdx-tools`, pinned in `ci/python-tools.txt`). Then it compares
//! the SBOM with `build.json` and the cached `.deb` files. `ci/test.sh`
//! runs it with `-- --ignored`. The other tests check that
//! `docs/build-json.md` matches the field table.

mod common;

use applbuild::build_record;
use common::{applbuild, repo, run};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn build_json_reference_matches_fields() {
    common::check_generated_section("docs/build-json.md", "build-json-fields", &build_record::render_reference(), "sbom reference");
}

/// The example in the docs has every documented field and no other.
#[test]
fn build_json_example_has_every_field() {
    let page = std::fs::read_to_string(repo().join("docs/build-json.md")).expect("docs/build-json.md");
    let start = page.find("```json\n").expect("a ```json example") + "```json\n".len();
    let end = start + page[start..].find("```").expect("the end of the example");
    let example: Value = serde_json::from_str(&page[start..end]).expect("the example is JSON");
    let documented: BTreeSet<String> = build_record::FIELDS.iter().map(|field| field.path.to_string()).collect();
    assert_eq!(build_record::field_paths(&example), documented);
    assert_eq!(example["schema_version"], build_record::SCHEMA_VERSION);
}

/// Returns the validator from the tools venv that `.ci/run` makes, or from PATH.
fn pyspdxtools() -> PathBuf {
    let venv = PathBuf::from("/opt/applbuild-tools/bin/pyspdxtools");
    if venv.is_file() {
        return venv;
    }
    applbuild::tool::find("pyspdxtools").expect("pyspdxtools not found: run .ci/run --install-only, or pip install the spdx-tools line of ci/python-tools.txt")
}

fn sha256sum(path: &Path) -> String {
    let output = run(Command::new("sha256sum").arg(path));
    output.split_whitespace().next().expect("sha256sum prints a digest").to_string()
}

fn package<'a>(sbom: &'a Value, id: &str) -> &'a Value {
    sbom["packages"].as_array().expect("packages").iter().find(|package| package["SPDXID"] == id).unwrap_or_else(|| panic!("the SBOM has no package {id}"))
}

fn has_relationship(sbom: &Value, from: &str, kind: &str, to: &str) -> bool {
    sbom["relationships"].as_array().expect("relationships").iter().any(|r| r["spdxElementId"] == from && r["relationshipType"] == kind && r["relatedSpdxElement"] == to)
}

fn sha256_of(package: &Value) -> &str {
    package["checksums"].as_array().and_then(|sums| sums.iter().find(|sum| sum["algorithm"] == "SHA256")).and_then(|sum| sum["checksumValue"].as_str()).unwrap_or_default()
}

/// Checks every package of build.json against the SBOM and the .deb file
/// the build used.
fn check_debian_packages(sbom: &Value, record: &Value) {
    let debs = applbuild::cache::Cache::locate().dir("debs").join("trixie");
    let packages = record["packages"].as_array().expect("build.json packages");
    assert!(packages.len() >= 2, "the default board installs at least busybox-static and nftables");
    for entry in packages {
        let entry = entry.as_str().expect("package entries are strings");
        let (name, version) = entry.split_once(' ').expect("`name version`");
        let id = format!("SPDXRef-deb-{name}-amd64");
        let deb = package(sbom, &id);
        assert_eq!(deb["name"], name);
        assert_eq!(deb["versionInfo"], version, "{name}");
        let file = debs.join(format!("{name}_{}_amd64.deb", version.replace(':', "%3a")));
        assert_eq!(sha256_of(deb), sha256sum(&file), "{name}: checksum of {}", file.display());
        let location = deb["downloadLocation"].as_str().unwrap_or_default();
        assert!(location.starts_with("http://deb.debian.org/debian/pool/main/"), "{name}: download location {location}");
        assert!(location.ends_with("_amd64.deb"), "{name}: download location {location}");
        assert!(has_relationship(sbom, "SPDXRef-image", "CONTAINS", &id), "{name}: the image does not contain it");

        let source = sbom["relationships"].as_array().expect("relationships").iter().find(|r| r["spdxElementId"] == id.as_str() && r["relationshipType"] == "GENERATED_FROM");
        let source_id = source.and_then(|r| r["relatedSpdxElement"].as_str()).unwrap_or_else(|| panic!("{name} has no source package"));
        let source = package(sbom, source_id);
        assert_eq!(source["primaryPackagePurpose"], "SOURCE", "{name}");
        assert!(source["name"].as_str().is_some_and(|s| !s.is_empty()), "{name}: source name");
        assert!(source["versionInfo"].as_str().is_some_and(|s| !s.is_empty()), "{name}: source version");
    }
}

#[test]
#[ignore = "builds the default board: needs root, network on the first run and the cached kernel (about a minute)"]
fn default_board_sbom() {
    let keys = repo().join("keys/test");
    std::fs::set_permissions(keys.join("key.pem"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod key.pem");
    let out = tempfile::tempdir().expect("temporary folder");
    run(applbuild().arg("image").arg(repo().join("boards/qemu-x86_64.toml")).arg("--keys").arg(&keys).arg("--out").arg(out.path()).env("SOURCE_DATE_EPOCH", "1764806400"));
    let dir = out.path().join("qemu-x86_64/1.0.0");
    let sbom_path = dir.join("sbom.spdx.json");

    let validation = Command::new(pyspdxtools()).arg("--version").arg("SPDX-2.3").arg("-i").arg(&sbom_path).output().expect("run pyspdxtools");
    assert!(validation.status.success(), "pyspdxtools rejects the SBOM:\n{}{}", String::from_utf8_lossy(&validation.stdout), String::from_utf8_lossy(&validation.stderr));

    let sbom: Value = serde_json::from_str(&std::fs::read_to_string(&sbom_path).expect("read the SBOM")).expect("the SBOM is JSON");
    let record: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("build.json")).expect("read build.json")).expect("build.json is JSON");
    assert_eq!(sbom["creationInfo"]["created"], "2025-12-04T00:00:00Z", "created is SOURCE_DATE_EPOCH");
    check_debian_packages(&sbom, &record);

    let nftables = package(&sbom, "SPDXRef-deb-nftables-amd64");
    let declared = nftables["licenseDeclared"].as_str().unwrap_or_default();
    assert!(declared.contains("GPL-2.0-only"), "nftables declares GPL-2.0-only in its DEP-5 copyright file, SBOM has {declared}");
    // busybox's Debian copyright file is prose, not DEP-5, so Debian
    // declares no machine-readable licence for it.
    let busybox = package(&sbom, "SPDXRef-deb-busybox-static-amd64");
    assert_eq!(busybox["licenseDeclared"], "NOASSERTION");
    assert!(busybox["licenseComments"].as_str().is_some_and(|c| c.contains("DEP-5")), "busybox-static: the comment says why");
    assert!(busybox["sourceInfo"].as_str().is_some_and(|s| s.contains("busybox 1:1.37")), "busybox-static comes from the busybox source package: {}", busybox["sourceInfo"]);

    let kernel = package(&sbom, "SPDXRef-kernel");
    assert_eq!(kernel["versionInfo"], record["kernel"]["source_version"]);
    assert_eq!(sha256_of(kernel), record["kernel"]["bzimage_sha256"].as_str().unwrap_or("missing"));
    assert_eq!(kernel["licenseDeclared"], "GPL-2.0-only");
    assert!(has_relationship(&sbom, "SPDXRef-image", "CONTAINS", "SPDXRef-kernel"));

    let lsm = record["kernel"]["lsm"].as_str().expect("kernel.lsm");
    let cache_key = record["kernel"]["cache_key"].as_str().expect("kernel.cache_key");
    let stub_file = applbuild::cache::Cache::locate().dir("kernel").join(format!("{lsm}-{cache_key}")).join("linuxx64.efi.stub");
    let stub = package(&sbom, "SPDXRef-efi-stub");
    assert_eq!(stub["name"], "systemd-boot-efi");
    assert_eq!(sha256_of(stub), sha256sum(&stub_file), "the stub checksum is that of {}", stub_file.display());
    assert!(stub["licenseDeclared"].as_str().is_some_and(|licence| licence.contains("LGPL-2.1-or-later")), "systemd's DEP-5 file declares LGPL-2.1+: {}", stub["licenseDeclared"]);
    assert!(has_relationship(&sbom, "SPDXRef-image", "CONTAINS", "SPDXRef-efi-stub"));

    let init_file = repo().join("target/init/x86_64-unknown-linux-gnu/release/applbuild-init");
    let init = package(&sbom, "SPDXRef-init");
    assert_eq!(sha256_of(init), sha256sum(&init_file), "the init checksum is that of {}", init_file.display());
    assert!(has_relationship(&sbom, "SPDXRef-image", "CONTAINS", "SPDXRef-init"));

    let tool = package(&sbom, "SPDXRef-applbuild");
    assert_eq!(tool["versionInfo"], record["tools"]["applbuild"]);
    assert!(has_relationship(&sbom, "SPDXRef-applbuild", "BUILD_TOOL_OF", "SPDXRef-image"));

    let image = package(&sbom, "SPDXRef-image");
    assert_eq!(sha256_of(image), sha256sum(&dir.join("disk.raw")), "the image checksum is that of disk.raw");
    assert!(has_relationship(&sbom, "SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-image"));
    assert_eq!(record["outputs"]["sbom.spdx.json"].as_str(), Some(sha256sum(&sbom_path).as_str()), "build.json lists the SBOM's digest");

    let documented: BTreeSet<String> = build_record::FIELDS.iter().map(|field| field.path.to_string()).collect();
    assert_eq!(build_record::field_paths(&record), documented, "the written build.json and docs/build-json.md differ");
}
