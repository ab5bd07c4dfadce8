//! `sbom.spdx.json`: an SPDX 2.3 software bill of materials of the image,
//! in the JSON serialisation of the SPDX 2.3 specification
//! (<https://spdx.github.io/spdx-spec/v2.3/>).
//!
//! Packages: the image (the described package), every Debian binary
//! package of the root filesystem with its source package, the kernel, the
//! EFI stub and the init of the UKI, and applbuild. Relationships: the
//! document DESCRIBES the image, the image CONTAINS each Debian package,
//! the kernel, the stub and the init, each binary package is
//! GENERATED_FROM its source package, and applbuild is a BUILD_TOOL_OF the
//! image. Declared licences of Debian packages come from their DEP-5
//! copyright files (see [`crate::dep5`]); a short name without an SPDX
//! identifier becomes a `LicenseRef-` whose text is in
//! `hasExtractedLicensingInfos`.
//!
//! The document is reproducible: `created` is `SOURCE_DATE_EPOCH`, the
//! namespace ends in the SHA-256 of the rest of the document, object keys
//! are sorted and lists are in a fixed order.

use crate::debpkg::DebPackage;
use crate::kernel::StubPackage;
use crate::dep5;
use crate::error::Error;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// File name of the SBOM in the output folder.
pub const FILE_NAME: &str = "sbom.spdx.json";

/// SPDX element identifiers of the fixed packages.
pub const IMAGE_ID: &str = "SPDXRef-image";
pub const KERNEL_ID: &str = "SPDXRef-kernel";
pub const APPLBUILD_ID: &str = "SPDXRef-applbuild";
pub const STUB_ID: &str = "SPDXRef-efi-stub";
pub const INIT_ID: &str = "SPDXRef-init";

/// Value of SPDX fields whose content applbuild does not know.
const NOASSERTION: &str = "NOASSERTION";

/// Licence of the Linux kernel as its `COPYING` states it.
const KERNEL_LICENCE: &str = "GPL-2.0-only";

/// Build facts the SBOM records.
pub struct SbomInput<'a> {
    pub board: &'a str,
    pub release: &'a str,
    /// `SOURCE_DATE_EPOCH`, written as the creation time.
    pub epoch: u64,
    /// Debian suite of the root filesystem, for package URLs; `None` for
    /// tarball and directory sources.
    pub suite: Option<&'a str>,
    pub debs: &'a [DebPackage],
    /// Version of Debian's linux-source-6.12 package the kernel is built from.
    pub kernel_version: &'a str,
    /// The LSM built into the kernel (`ipe` or `ipe-rust`).
    pub kernel_lsm: &'a str,
    /// Lowercase hex SHA-256 of the kernel's bzImage.
    pub bzimage_sha256: &'a str,
    /// The Debian package of the UKI's EFI stub, in the kernel build root.
    pub stub: &'a StubPackage,
    /// Lowercase hex SHA-256 of the EFI stub file.
    pub stub_sha256: &'a str,
    pub init: &'a InitInput,
    /// Lowercase hex SHA-256 of `disk.raw`.
    pub disk_sha256: &'a str,
    /// Lowercase hex dm-verity root hash.
    pub root_hash: &'a str,
}

/// The initramfs `/init`.
pub struct InitInput {
    /// Lowercase hex SHA-256 of the binary.
    pub sha256: String,
    /// Crate version when built from this source tree; `None` for a binary
    /// given with `--init`.
    pub version: Option<String>,
    /// SPDX licence expression of the crate, when known.
    pub licence: Option<String>,
    /// Provenance note for the SBOM: where the binary comes from.
    pub comment: String,
}

/// Builds the SBOM document and returns it as pretty-printed JSON with a
/// final newline.
pub fn document(input: &SbomInput) -> Result<String, Error> {
    let mut ids = IdAllocator::default();
    let copyrights = input.debs.iter().map(|deb| (deb.name.as_str(), deb.copyright.as_deref())).chain([(input.stub.name, input.stub.copyright.as_deref())]);
    let licences = LicenceRefs::collect(copyrights);
    let mut packages = vec![image_package(input), kernel_package(input), stub_package(input, &licences), init_package(input.init), applbuild_package()];
    let mut relationships = vec![relationship("SPDXRef-DOCUMENT", "DESCRIBES", IMAGE_ID)];
    let mut sources: BTreeMap<(String, String), String> = BTreeMap::new();

    for deb in input.debs {
        let id = ids.allocate(&format!("SPDXRef-deb-{}-{}", deb.name, deb.architecture));
        packages.push(deb_package(deb, &id, input.suite, &licences));
        relationships.push(relationship(IMAGE_ID, "CONTAINS", &id));
        let key = (deb.source.clone(), deb.source_version.clone());
        let source_id = match sources.get(&key) {
            Some(source_id) => source_id.clone(),
            None => {
                let source_id = ids.allocate(&format!("SPDXRef-debsrc-{}-{}", deb.source, deb.source_version));
                packages.push(source_package(deb, &source_id, input.suite));
                sources.insert(key, source_id.clone());
                source_id
            }
        };
        relationships.push(relationship(&id, "GENERATED_FROM", &source_id));
    }
    for id in [KERNEL_ID, STUB_ID, INIT_ID] {
        relationships.push(relationship(IMAGE_ID, "CONTAINS", id));
    }
    relationships.push(relationship(APPLBUILD_ID, "BUILD_TOOL_OF", IMAGE_ID));

    let mut document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("applbuild image {} {}", input.board, input.release),
        "creationInfo": {
            "created": timestamp(input.epoch),
            "creators": [format!("Tool: applbuild-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    });
    let extracted = licences.extracted_infos();
    if !extracted.is_empty() {
        document["hasExtractedLicensingInfos"] = Value::Array(extracted);
    }
    set_namespace(&mut document, input.board, input.release)?;
    render(&document)
}

/// Replaces the image checksum of an SBOM written by [`document`] (after
/// `applbuild sign` rewrote `disk.raw`) and derives its namespace again.
pub fn update_image_checksum(text: &str, disk_sha256: &str) -> Result<String, Error> {
    let mut document: Value = serde_json::from_str(text).map_err(|err| Error::Internal(format!("{FILE_NAME} does not parse: {err}")))?;
    let image = document["packages"].as_array_mut().and_then(|packages| packages.iter_mut().find(|package| package["SPDXID"] == IMAGE_ID));
    let Some(image) = image else {
        return Err(Error::Internal(format!("{FILE_NAME} has no package {IMAGE_ID}")));
    };
    image["checksums"] = checksums(disk_sha256);
    let board = image["name"].as_str().unwrap_or_default().to_string();
    let release = image["versionInfo"].as_str().unwrap_or_default().to_string();
    set_namespace(&mut document, &board, &release)?;
    render(&document)
}

fn render(document: &Value) -> Result<String, Error> {
    let mut text = serde_json::to_string_pretty(document).map_err(|err| Error::Internal(format!("serialising {FILE_NAME}: {err}")))?;
    text.push('\n');
    Ok(text)
}

/// Sets `documentNamespace` to a URI ending in the SHA-256 of the document
/// without that field, so the same content always gets the same namespace
/// and different content a different one.
fn set_namespace(document: &mut Value, board: &str, release: &str) -> Result<(), Error> {
    let Some(object) = document.as_object_mut() else {
        return Err(Error::Internal(format!("{FILE_NAME} is not a JSON object")));
    };
    object.remove("documentNamespace");
    let bytes = serde_json::to_vec(object).map_err(|err| Error::Internal(format!("serialising {FILE_NAME}: {err}")))?;
    let digest = hex::encode(Sha256::digest(&bytes));
    let namespace = format!("https://spdx.org/spdxdocs/applbuild/{}/{}/{digest}", uri_segment(board), uri_segment(release));
    object.insert("documentNamespace".into(), Value::String(namespace));
    Ok(())
}

/// Replaces every character outside `[A-Za-z0-9._-]` by `-`.
fn uri_segment(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' }).collect()
}

/// Formats Unix seconds as the UTC `YYYY-MM-DDThh:mm:ssZ` SPDX requires.
pub fn timestamp(epoch: u64) -> String {
    let (year, month, day) = crate::disk::civil_from_days(epoch / 86_400);
    let second_of_day = epoch % 86_400;
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", second_of_day / 3600, second_of_day % 3600 / 60, second_of_day % 60)
}

fn relationship(from: &str, kind: &str, to: &str) -> Value {
    json!({ "spdxElementId": from, "relationshipType": kind, "relatedSpdxElement": to })
}

fn checksums(sha256: &str) -> Value {
    json!([{ "algorithm": "SHA256", "checksumValue": sha256 }])
}

/// Returns a package with the fields every package has, all `NOASSERTION`.
fn package(id: &str, name: &str, version: &str) -> Map<String, Value> {
    let mut package = Map::new();
    package.insert("SPDXID".into(), id.into());
    package.insert("name".into(), name.into());
    package.insert("versionInfo".into(), version.into());
    package.insert("downloadLocation".into(), NOASSERTION.into());
    package.insert("filesAnalyzed".into(), false.into());
    package.insert("licenseConcluded".into(), NOASSERTION.into());
    package.insert("licenseDeclared".into(), NOASSERTION.into());
    package.insert("copyrightText".into(), NOASSERTION.into());
    package
}

fn image_package(input: &SbomInput) -> Value {
    let mut image = package(IMAGE_ID, input.board, input.release);
    image.insert("primaryPackagePurpose".into(), "OPERATING-SYSTEM".into());
    image.insert("checksums".into(), checksums(input.disk_sha256));
    image.insert("comment".into(), format!("The appliance disk image disk.raw; the checksum is the SHA-256 of disk.raw. dm-verity root hash: {}.", input.root_hash).into());
    Value::Object(image)
}

fn kernel_package(input: &SbomInput) -> Value {
    let mut kernel = package(KERNEL_ID, "linux", input.kernel_version);
    kernel.insert("primaryPackagePurpose".into(), "OPERATING-SYSTEM".into());
    kernel.insert("checksums".into(), checksums(input.bzimage_sha256));
    kernel.insert("licenseDeclared".into(), KERNEL_LICENCE.into());
    kernel.insert("sourceInfo".into(), format!("built by applbuild from Debian's linux-source-6.12 {} with the {} LSM", input.kernel_version, input.kernel_lsm).into());
    kernel.insert("comment".into(), "The kernel inside the unified kernel image uki.efi; the checksum is the SHA-256 of its bzImage.".into());
    Value::Object(kernel)
}

fn stub_package(input: &SbomInput, licences: &LicenceRefs) -> Value {
    let stub = input.stub;
    let mut package = package(STUB_ID, stub.name, stub.version.as_deref().unwrap_or(NOASSERTION));
    package.insert("checksums".into(), checksums(input.stub_sha256));
    package.insert("sourceInfo".into(), format!("the file linuxx64.efi.stub of Debian's {} in the kernel build root ({})", stub.name, crate::kernel::TOOLCHAIN_SUITE).into());
    package.insert("comment".into(), "The EFI stub of the unified kernel image uki.efi; the checksum is the SHA-256 of the stub file.".into());
    if let Some(version) = &stub.version {
        package.insert("externalRefs".into(), json!([purl(stub.name, version, "amd64", Some(crate::kernel::TOOLCHAIN_SUITE))]));
    }
    declare_licence(&mut package, stub.name, stub.copyright.as_deref(), licences);
    Value::Object(package)
}

fn init_package(init: &InitInput) -> Value {
    let mut package = package(INIT_ID, "applbuild-init", init.version.as_deref().unwrap_or(NOASSERTION));
    package.insert("primaryPackagePurpose".into(), "APPLICATION".into());
    package.insert("checksums".into(), checksums(&init.sha256));
    package.insert("comment".into(), init.comment.as_str().into());
    if let Some(licence) = &init.licence {
        package.insert("licenseDeclared".into(), licence.as_str().into());
    }
    Value::Object(package)
}

fn applbuild_package() -> Value {
    let licence = env!("CARGO_PKG_LICENSE");
    let mut tool = package(APPLBUILD_ID, "applbuild", env!("CARGO_PKG_VERSION"));
    tool.insert("primaryPackagePurpose".into(), "APPLICATION".into());
    if !licence.is_empty() {
        tool.insert("licenseDeclared".into(), licence.into());
    }
    Value::Object(tool)
}

fn deb_package(deb: &DebPackage, id: &str, suite: Option<&str>, licences: &LicenceRefs) -> Value {
    let mut package = package(id, &deb.name, &deb.version);
    if let Some(location) = &deb.download_location {
        package.insert("downloadLocation".into(), location.as_str().into());
    }
    if let Some(supplier) = supplier(&deb.maintainer) {
        package.insert("supplier".into(), supplier.into());
    }
    package.insert("checksums".into(), checksums(&deb.sha256));
    package.insert("sourceInfo".into(), format!("built from the Debian source package {} {}", deb.source, deb.source_version).into());
    package.insert("externalRefs".into(), json!([purl(&deb.name, &deb.version, &deb.architecture, suite)]));
    declare_licence(&mut package, &deb.name, deb.copyright.as_deref(), licences);
    Value::Object(package)
}

/// Sets `licenseDeclared` of Debian package `name` from its copyright
/// file, or says in `licenseComments` why there is none.
fn declare_licence(package: &mut Map<String, Value>, name: &str, copyright: Option<&str>, licences: &LicenceRefs) {
    let Some(text) = copyright else {
        package.insert("licenseComments".into(), "The package has no copyright file in /usr/share/doc.".into());
        return;
    };
    let Some(copyright) = dep5::parse(text) else {
        package.insert("licenseComments".into(), "The copyright file of the package is not in the machine-readable DEP-5 format.".into());
        return;
    };
    match &copyright.declared {
        Some(declared) => {
            package.insert("licenseDeclared".into(), declared.render(&|short_name| licences.id(short_name, &copyright)).into());
        }
        None => tracing::debug!("sbom: the copyright file of {name} names no licence in its Files paragraphs"),
    }
}

fn source_package(deb: &DebPackage, id: &str, suite: Option<&str>) -> Value {
    let mut package = package(id, &deb.source, &deb.source_version);
    package.insert("primaryPackagePurpose".into(), "SOURCE".into());
    package.insert("externalRefs".into(), json!([purl(&deb.source, &deb.source_version, "source", suite)]));
    Value::Object(package)
}

/// Returns the package URL (`pkg:deb/debian/<name>@<version>?arch=<arch>`),
/// the identifier that vulnerability scanners match Debian packages by.
fn purl(name: &str, version: &str, architecture: &str, suite: Option<&str>) -> Value {
    let mut locator = format!("pkg:deb/debian/{}@{}?arch={}", purl_encode(name), purl_encode(version), purl_encode(architecture));
    if let Some(suite) = suite {
        locator.push_str(&format!("&distro={}", purl_encode(suite)));
    }
    json!({ "referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": locator })
}

/// Percent-encodes what package URLs do not allow unencoded in a name or
/// version (`:` of epochs, `+`, `~`).
fn purl_encode(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Turns a `Maintainer:` field into an SPDX supplier: a team or a list is
/// an organisation, anyone else a person.
fn supplier(maintainer: &str) -> Option<String> {
    let maintainer = maintainer.trim();
    if maintainer.is_empty() {
        return None;
    }
    let (name, email) = match maintainer.split_once('<') {
        Some((name, rest)) => (name.trim(), rest.trim_end().trim_end_matches('>').trim()),
        None => (maintainer, ""),
    };
    let lower = name.to_ascii_lowercase();
    let organisation = ["team", "maintainers", "group", "project", "developers", "packagers"].iter().any(|word| lower.split_whitespace().any(|part| part == *word));
    let kind = if organisation { "Organization" } else { "Person" };
    Some(if email.is_empty() { format!("{kind}: {name}") } else { format!("{kind}: {name} ({email})") })
}

/// Gives every SPDX element a distinct identifier made of letters, digits,
/// `.` and `-`, the characters SPDX allows.
#[derive(Default)]
struct IdAllocator {
    used: BTreeSet<String>,
}

impl IdAllocator {
    /// Returns `wanted` with other characters replaced by `-`, and a
    /// numeric suffix if that identifier is taken.
    fn allocate(&mut self, wanted: &str) -> String {
        let base = spdx_idstring(wanted);
        let mut id = base.clone();
        let mut counter = 2;
        while self.used.contains(&id) {
            id = format!("{base}-{counter}");
            counter += 1;
        }
        self.used.insert(id.clone());
        id
    }
}

fn spdx_idstring(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') { c } else { '-' }).collect()
}

/// Placeholder text for a licence that a copyright file names without
/// giving its text, because SPDX requires a text for every `LicenseRef-`.
const MISSING_TEXT: &str = "The Debian copyright file names this licence without giving its text.";

/// The `LicenseRef-` identifiers of all short names without an SPDX
/// identifier. The same name with the same text in several packages gets
/// one identifier; a name used with different texts gets one per text,
/// told apart by a digest of the text.
struct LicenceRefs {
    /// (short name, text) → identifier.
    ids: BTreeMap<(String, String), String>,
    /// (short name, text) → packages whose copyright files use it.
    users: BTreeMap<(String, String), BTreeSet<String>>,
}

impl LicenceRefs {
    /// Collects the short names of the copyright files of `packages`
    /// (package name and copyright text).
    fn collect<'a>(packages: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> LicenceRefs {
        let mut users: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for (package, text) in packages {
            let Some(copyright) = text.and_then(dep5::parse) else { continue };
            let Some(declared) = &copyright.declared else { continue };
            declared.other_names(&mut |name| {
                users.entry((name.to_string(), licence_text(name, &copyright))).or_default().insert(package.to_string());
            });
        }
        let mut texts_per_name: BTreeMap<&str, usize> = BTreeMap::new();
        for (name, _) in users.keys() {
            *texts_per_name.entry(name.as_str()).or_default() += 1;
        }
        let mut allocator = IdAllocator::default();
        let mut ids = BTreeMap::new();
        for (name, text) in users.keys() {
            let mut wanted = format!("LicenseRef-{name}");
            if texts_per_name.get(name.as_str()).copied().unwrap_or_default() > 1 {
                wanted.push('-');
                wanted.push_str(&hex::encode(&Sha256::digest(text.as_bytes())[..4]));
            }
            ids.insert((name.clone(), text.clone()), allocator.allocate(&wanted));
        }
        LicenceRefs { ids, users }
    }

    /// Returns the identifier of short name `name` as `copyright` uses it.
    fn id(&self, name: &str, copyright: &dep5::Copyright) -> String {
        let key = (name.to_string(), licence_text(name, copyright));
        self.ids.get(&key).cloned().unwrap_or_else(|| spdx_idstring(&format!("LicenseRef-{name}")))
    }

    fn extracted_infos(&self) -> Vec<Value> {
        self.ids
            .iter()
            .map(|((name, text), id)| {
                let users: Vec<&str> = self.users.get(&(name.clone(), text.clone())).map(|set| set.iter().map(String::as_str).collect()).unwrap_or_default();
                json!({
                    "licenseId": id,
                    "name": name,
                    "extractedText": text,
                    "comment": format!("Debian short name {name:?} in the copyright file of {}", users.join(", ")),
                })
            })
            .collect()
    }
}

/// Returns the text a copyright file gives for `name`. For `X with Y
/// exception` that is the text of `X with Y exception`, else the text of `X`.
fn licence_text(name: &str, copyright: &dep5::Copyright) -> String {
    let base = name.split_once(" with ").map(|(base, _)| base).unwrap_or(name);
    copyright.text(name).or_else(|| copyright.text(base)).unwrap_or(MISSING_TEXT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deb(name: &str, copyright: Option<&str>) -> DebPackage {
        DebPackage {
            name: name.into(),
            version: "1:1.0-1+b1".into(),
            architecture: "amd64".into(),
            source: format!("{name}-src"),
            source_version: "1:1.0-1".into(),
            maintainer: "Example Team <team@example.org>".into(),
            sha256: "ab".repeat(32),
            download_location: None,
            copyright: copyright.map(str::to_string),
        }
    }

    static STUB: StubPackage = StubPackage { name: "systemd-boot-efi", version: None, copyright: None };

    fn init() -> &'static InitInput {
        static INIT: std::sync::OnceLock<InitInput> = std::sync::OnceLock::new();
        INIT.get_or_init(|| InitInput { sha256: "12".into(), version: Some("0.1.0".into()), licence: Some("MIT".into()), comment: "test".into() })
    }

    fn input(debs: &[DebPackage]) -> SbomInput<'_> {
        SbomInput {
            board: "board",
            release: "1.0.0",
            epoch: 1_764_806_400,
            suite: Some("trixie"),
            debs,
            kernel_version: "6.12.57-1",
            kernel_lsm: "ipe-rust",
            bzimage_sha256: "cd",
            stub: &STUB,
            stub_sha256: "34",
            init: init(),
            disk_sha256: "ef",
            root_hash: "00",
        }
    }

    const DEP5: &str = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n";

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(1_764_806_400), "2025-12-04T00:00:00Z");
        assert_eq!(timestamp(951_782_399), "2000-02-28T23:59:59Z");
    }

    #[test]
    fn same_input_gives_same_bytes() {
        let debs = [deb("a", Some(&format!("{DEP5}Files: *\nCopyright: x\nLicense: GPL-2+\n"))), deb("b", None)];
        let first = document(&input(&debs)).expect("document");
        let second = document(&input(&debs)).expect("document");
        assert_eq!(first, second);
        let other = document(&SbomInput { epoch: 0, ..input(&debs) }).expect("document");
        let namespace = |text: &str| serde_json::from_str::<Value>(text).expect("JSON")["documentNamespace"].clone();
        assert_ne!(namespace(&first), namespace(&other), "other content gets another namespace");
    }

    #[test]
    fn packages_and_relationships_are_complete() {
        let debs = [deb("a", Some(&format!("{DEP5}Files: *\nCopyright: x\nLicense: GPL-2+\n"))), deb("a-dev", Some("not DEP-5"))];
        let document: Value = serde_json::from_str(&document(&input(&debs)).expect("document")).expect("JSON");
        let packages = document["packages"].as_array().expect("packages");
        let ids: Vec<&str> = packages.iter().map(|p| p["SPDXID"].as_str().expect("SPDXID")).collect();
        assert_eq!(ids, [IMAGE_ID, KERNEL_ID, STUB_ID, INIT_ID, APPLBUILD_ID, "SPDXRef-deb-a-amd64", "SPDXRef-debsrc-a-src-1-1.0-1", "SPDXRef-deb-a-dev-amd64", "SPDXRef-debsrc-a-dev-src-1-1.0-1"]);
        assert_eq!(packages[5]["licenseDeclared"], "GPL-2.0-or-later");
        assert_eq!(packages[7]["licenseDeclared"], NOASSERTION);
        assert_eq!(packages[5]["supplier"], "Organization: Example Team (team@example.org)");
        assert_eq!(packages[5]["externalRefs"][0]["referenceLocator"], "pkg:deb/debian/a@1%3A1.0-1%2Bb1?arch=amd64&distro=trixie");
        assert_eq!(packages[3]["licenseDeclared"], "MIT", "the init's licence");
        let relationships: Vec<String> = document["relationships"]
            .as_array()
            .expect("relationships")
            .iter()
            .map(|r| format!("{} {} {}", r["spdxElementId"].as_str().unwrap_or(""), r["relationshipType"].as_str().unwrap_or(""), r["relatedSpdxElement"].as_str().unwrap_or("")))
            .collect();
        for expected in [
            "SPDXRef-DOCUMENT DESCRIBES SPDXRef-image",
            "SPDXRef-image CONTAINS SPDXRef-deb-a-amd64",
            "SPDXRef-deb-a-amd64 GENERATED_FROM SPDXRef-debsrc-a-src-1-1.0-1",
            "SPDXRef-image CONTAINS SPDXRef-kernel",
            "SPDXRef-image CONTAINS SPDXRef-efi-stub",
            "SPDXRef-image CONTAINS SPDXRef-init",
            "SPDXRef-applbuild BUILD_TOOL_OF SPDXRef-image",
        ] {
            assert!(relationships.iter().any(|r| r == expected), "missing relationship {expected}");
        }
    }

    #[test]
    fn licence_refs_carry_their_texts() {
        let copyright = |text: &str| format!("{DEP5}Files: *\nCopyright: x\nLicense: custom and GPL-2\n\nLicense: custom\n {text}\n");
        let debs = [deb("a", Some(&copyright("Text A."))), deb("b", Some(&copyright("Text B."))), deb("c", Some(&copyright("Text A.")))];
        let document: Value = serde_json::from_str(&document(&input(&debs)).expect("document")).expect("JSON");
        let infos = document["hasExtractedLicensingInfos"].as_array().expect("extracted licences");
        assert_eq!(infos.len(), 2, "one entry per distinct text");
        let text_a = infos.iter().find(|info| info["extractedText"] == "Text A.").expect("text A");
        assert!(text_a["licenseId"].as_str().is_some_and(|id| id.starts_with("LicenseRef-custom-")), "a name with two texts gets a digest suffix");
        assert_eq!(text_a["comment"], "Debian short name \"custom\" in the copyright file of a, c");
        let declared_c = document["packages"].as_array().expect("packages").iter().find(|p| p["name"] == "c").expect("package c")["licenseDeclared"].clone();
        assert_eq!(declared_c, format!("GPL-2.0-only AND {}", text_a["licenseId"].as_str().unwrap_or_default()));
    }

    #[test]
    fn stub_licence_shares_licence_refs() {
        let copyright = format!("{DEP5}Files: *\nCopyright: x\nLicense: LGPL-2.1+ and public-domain\n\nLicense: public-domain\n No rights reserved.\n");
        let stub = StubPackage { name: "systemd-boot-efi", version: Some("257.9-1".into()), copyright: Some(copyright.clone()) };
        let debs = [deb("a", Some(&copyright))];
        let document: Value = serde_json::from_str(&document(&SbomInput { stub: &stub, ..input(&debs) }).expect("document")).expect("JSON");
        let packages = document["packages"].as_array().expect("packages");
        let stub_package = packages.iter().find(|p| p["SPDXID"] == STUB_ID).expect("stub package");
        assert_eq!(stub_package["licenseDeclared"], "LGPL-2.1-or-later AND LicenseRef-public-domain");
        assert_eq!(stub_package["versionInfo"], "257.9-1");
        assert_eq!(document["hasExtractedLicensingInfos"].as_array().map(Vec::len), Some(1));
        assert_eq!(document["hasExtractedLicensingInfos"][0]["comment"], "Debian short name \"public-domain\" in the copyright file of a, systemd-boot-efi");
    }

    #[test]
    fn licence_without_text_gets_a_placeholder() {
        let debs = [deb("a", Some(&format!("{DEP5}Files: *\nCopyright: x\nLicense: MIT/X11\n")))];
        let document: Value = serde_json::from_str(&document(&input(&debs)).expect("document")).expect("JSON");
        assert_eq!(document["hasExtractedLicensingInfos"][0]["licenseId"], "LicenseRef-MIT-X11");
        assert_eq!(document["hasExtractedLicensingInfos"][0]["extractedText"], MISSING_TEXT);
    }

    #[test]
    fn updated_checksum_changes_namespace() {
        let text = document(&input(&[])).expect("document");
        let updated = update_image_checksum(&text, &"12".repeat(32)).expect("update");
        let before: Value = serde_json::from_str(&text).expect("JSON");
        let after: Value = serde_json::from_str(&updated).expect("JSON");
        assert_eq!(after["packages"][0]["checksums"][0]["checksumValue"], "12".repeat(32));
        assert_ne!(before["documentNamespace"], after["documentNamespace"]);
        let rebuilt = document(&SbomInput { disk_sha256: &"12".repeat(32), ..input(&[]) }).expect("document");
        assert_eq!(updated, rebuilt, "updating gives the document a build with that disk would give");
    }

    #[test]
    fn suppliers_are_people_or_organisations() {
        assert_eq!(supplier("Guillem Jover <guillem@debian.org>").as_deref(), Some("Person: Guillem Jover (guillem@debian.org)"));
        assert_eq!(supplier("Ncurses Maintainers <ncurses@packages.debian.org>").as_deref(), Some("Organization: Ncurses Maintainers (ncurses@packages.debian.org)"));
        assert_eq!(supplier(""), None);
    }
}
