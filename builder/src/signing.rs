//! `applbuild sign OUTDIR --key DIR|URI`: completes an image built with
//! `applbuild image --unsigned`, so the private key can stay on a separate
//! signing machine.
//!
//! The command runs the pipeline's own signing step ([`pipeline::sign_parts`])
//! on the inputs the unsigned build kept in `signing-inputs/`, then writes
//! the new ESP and verity signature partition into `disk.raw` in place.
//! Both partitions keep their size and position, and the signatures are
//! deterministic, so the result is byte-identical to a one-step signed
//! build of the same inputs.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use der::{DecodePem, Encode};
use sha2::{Digest, Sha256};

use crate::disk;
use crate::error::Error;
use crate::pipeline::{self, SIGNING_INPUTS_DIR};
use crate::pkcs11::Pkcs11Key;
use crate::{authenticode, keys, sign};

/// Location of the release key for `applbuild sign`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A key folder with key.pem and cert.pem.
    Folder(PathBuf),
    /// A key in a PKCS#11 token, named by an RFC 7512 URI.
    Pkcs11(String),
}

impl KeySource {
    /// Reads a `--key` value: a `pkcs11:` URI, else a key folder.
    pub fn from_argument(value: &str) -> KeySource {
        if value.starts_with("pkcs11:") {
            KeySource::Pkcs11(value.to_string())
        } else {
            KeySource::Folder(PathBuf::from(value))
        }
    }
}

/// Summary of an `applbuild sign` run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SignSummary {
    pub output: PathBuf,
    pub root_hash: String,
    pub certificate_subject: String,
}

/// Signs the unsigned build in `dir` with the key from `key_source`. When
/// the build requests Secure Boot signing, the UKI is signed with the db
/// key from `db_key_source`, or else the db key pair in the `key_source`
/// folder.
///
/// Rejects a folder that is already signed or has no signing inputs, and a
/// key whose certificate is not the one the unsigned build put in the
/// kernel's trusted keyring. `disk.raw` is rewritten in place. If the
/// command is interrupted while doing so, running it again completes the
/// image, because `signing-inputs/` and the `unsigned` marker are removed
/// only at the end.
pub fn sign_output(dir: &Path, key_source: &KeySource, db_key_source: Option<&KeySource>) -> Result<SignSummary, Error> {
    let record_path = dir.join("build.json");
    let record_bytes = fs::read(&record_path).map_err(|source| Error::io("read", &record_path, source))?;
    let mut record: serde_json::Value = serde_json::from_slice(&record_bytes).map_err(|err| usage(format!("{}: invalid JSON: {err}", record_path.display()), None))?;
    let inputs_dir = dir.join(SIGNING_INPUTS_DIR);
    if record["unsigned"] != serde_json::Value::Bool(true) || !inputs_dir.is_dir() {
        return Err(usage(
            format!("{} is not an unsigned build: build.json has no \"unsigned\": true or {SIGNING_INPUTS_DIR}/ is missing", dir.display()),
            Some("build with applbuild image --unsigned first; a signed build needs no applbuild sign".into()),
        ));
    }
    let inputs = pipeline::read_signing_inputs(&inputs_dir)?;
    let (key, key_name): (Box<dyn sign::RsaSigner>, String) = match key_source {
        KeySource::Folder(key_dir) => (Box::new(keys::load(key_dir)?), key_dir.display().to_string()),
        KeySource::Pkcs11(uri) => {
            if inputs.certificate_pem.is_empty() {
                return Err(usage(format!("{} records no certificate, which signing with a PKCS#11 key needs", inputs_dir.join("inputs.json").display()), Some("rebuild with this version of applbuild image --unsigned".into())));
            }
            let certificate = x509_cert::Certificate::from_pem(inputs.certificate_pem.as_bytes()).map_err(|err| Error::Internal(format!("the recorded certificate does not parse: {err}")))?;
            (Box::new(Pkcs11Key::open(uri, certificate)?), uri.clone())
        }
    };
    let key_fingerprint = certificate_sha256(key.as_ref())?;
    if key_fingerprint != inputs.certificate_sha256 {
        return Err(usage(
            format!("the certificate of {key_name} (SHA-256 {key_fingerprint}) is not the one this image's kernel trusts (SHA-256 {})", inputs.certificate_sha256),
            Some("sign with the key whose cert.pem the unsigned build used, or rebuild with the new certificate".into()),
        ));
    }

    let db_key = if inputs.secure_boot { Some(open_db_key(&inputs, &inputs_dir, key_source, db_key_source)?) } else { None };

    let keys = pipeline::PartKeys { release: key.as_ref(), db: db_key.as_ref().map(|(key, _)| key.as_ref()) };
    let parts = pipeline::sign_parts(&inputs, Some(keys))?;
    // A token key that does not belong to the certificate signs without error, so check the result.
    sign::verify_detached(&parts.root_sig, inputs.root_hash.as_bytes(), key.signer_certificate()).map_err(|err| {
        usage(format!("the signature made with {key_name} does not verify with the image's certificate: {err}"), Some("choose the private key that belongs to the certificate".into()))
    })?;
    if let Some((db_key, db_key_name)) = &db_key {
        authenticode::verify(&parts.uki, db_key.signer_certificate()).map_err(|err| {
            usage(format!("the UKI signature made with {db_key_name} does not verify with the image's db certificate: {err}"), Some("choose the private key that belongs to the db certificate".into()))
        })?;
    }
    let disk_path = dir.join("disk.raw");
    write_partitions(&disk_path, &parts)?;
    // The ESP and the signature partition changed: so did their bmap
    // ranges and the qcow2 copy.
    if disk_path.with_extension("bmap").exists() {
        pipeline::write_bmap(&disk_path, &disk::read_layout(&disk_path)?)?;
    }
    let qcow2 = disk_path.with_extension("qcow2");
    if qcow2.exists() {
        pipeline::convert_qcow2(&disk_path, &qcow2)?;
    }

    write_replacing(&dir.join("uki.efi"), &parts.uki)?;
    write_replacing(&dir.join("roothash.p7s"), &parts.root_sig)?;
    write_replacing(&dir.join("policy.p7s"), &parts.policy_sig)?;
    fs::remove_dir_all(&inputs_dir).map_err(|source| Error::io("remove", &inputs_dir, source))?;
    record["unsigned"] = serde_json::Value::Bool(false);
    // As in a one-step build, the digests cover every output but build.json itself.
    let mut outputs = crate::build_record::output_digests(dir)?;
    outputs.remove("build.json");
    // The SBOM names the digest of disk.raw, which signing changed.
    let sbom_path = dir.join(crate::sbom::FILE_NAME);
    if let (Ok(sbom_text), Some(disk_sha256)) = (fs::read_to_string(&sbom_path), outputs.get("disk.raw").and_then(|value| value.as_str())) {
        let updated = crate::sbom::update_image_checksum(&sbom_text, disk_sha256)?;
        write_replacing(&sbom_path, updated.as_bytes())?;
        outputs.insert(crate::sbom::FILE_NAME.into(), serde_json::Value::String(hex::encode(Sha256::digest(updated.as_bytes()))));
    }
    record["outputs"] = serde_json::Value::Object(outputs);
    let text = serde_json::to_string_pretty(&record).map_err(|err| Error::Internal(format!("serialising build.json: {err}")))?;
    write_replacing(&record_path, text.as_bytes())?;

    tracing::info!(output = %dir.display(), "sign: signed the image");
    let certificate_subject = key.signer_certificate().tbs_certificate().subject().to_string();
    Ok(SignSummary { output: dir.to_path_buf(), root_hash: inputs.root_hash, certificate_subject })
}

/// Opens the Secure Boot db key: `db_key_source`, else the db key pair in
/// the `--key` folder. Its certificate must be the one the unsigned build
/// recorded.
fn open_db_key(inputs: &pipeline::SigningInputs, inputs_dir: &Path, key_source: &KeySource, db_key_source: Option<&KeySource>) -> Result<(Box<dyn sign::RsaSigner>, String), Error> {
    let source = match (db_key_source, key_source) {
        (Some(source), _) => source.clone(),
        (None, KeySource::Folder(dir)) => KeySource::Folder(dir.clone()),
        (None, KeySource::Pkcs11(_)) => {
            return Err(usage(
                "the board signs the UKI for Secure Boot, and a PKCS#11 release key has no db key next to it".into(),
                Some("name the db key with --db-key DIR|URI (a key folder with db.key.pem, or a PKCS#11 URI)".into()),
            ))
        }
    };
    let (key, name): (Box<dyn sign::RsaSigner>, String) = match &source {
        KeySource::Folder(dir) => (Box::new(keys::load_pair(dir, keys::SECURE_BOOT_DB)?), dir.join(keys::DB_KEY_FILE).display().to_string()),
        KeySource::Pkcs11(uri) => {
            if inputs.db_certificate_pem.is_empty() {
                return Err(usage(format!("{} records no db certificate, which signing with a PKCS#11 db key needs", inputs_dir.join("inputs.json").display()), Some("rebuild with this version of applbuild image --unsigned".into())));
            }
            let certificate = x509_cert::Certificate::from_pem(inputs.db_certificate_pem.as_bytes()).map_err(|err| Error::Internal(format!("the recorded db certificate does not parse: {err}")))?;
            (Box::new(Pkcs11Key::open(uri, certificate)?), uri.clone())
        }
    };
    let fingerprint = certificate_sha256(key.as_ref())?;
    if fingerprint != inputs.db_certificate_sha256 {
        return Err(usage(
            format!("the db certificate of {name} (SHA-256 {fingerprint}) is not the one the unsigned build recorded (SHA-256 {})", inputs.db_certificate_sha256),
            Some("sign with the db key whose db.cert.pem the unsigned build read, or rebuild with the new db certificate".into()),
        ));
    }
    Ok((key, name))
}

/// Returns the SHA-256 (hex) of a signer's DER certificate.
fn certificate_sha256(key: &dyn sign::RsaSigner) -> Result<String, Error> {
    let der = key.signer_certificate().to_der().map_err(|err| Error::Internal(format!("encoding the certificate: {err}")))?;
    Ok(hex::encode(Sha256::digest(&der)))
}

/// Writes the ESP and the verity signature partition into the disk image.
fn write_partitions(disk_path: &Path, parts: &pipeline::SignedParts) -> Result<(), Error> {
    let layout = disk::read_layout(disk_path)?;
    let find = |type_guid: disk::Uuid, label: &str| {
        let mut found = layout.partitions.iter().filter(|p| p.type_guid == type_guid);
        match (found.next(), found.next()) {
            (Some(entry), None) => Ok(entry.clone()),
            _ => Err(usage(format!("{}: expected exactly one {label} partition (type {type_guid})", disk_path.display()), Some("check the image with applbuild verify".into()))),
        }
    };
    let esp = find(disk::ESP, "EFI System")?;
    let signature = find(disk::ROOT_VERITY_SIG_X86_64, "root verity signature")?;
    if parts.esp.len() as u64 != esp.size() {
        return Err(Error::Internal(format!("the signed ESP is {} bytes but partition #{} has {}", parts.esp.len(), esp.number, esp.size())));
    }
    if parts.sig_json.len() as u64 > signature.size() {
        return Err(Error::Internal(format!("the signature JSON is {} bytes but partition #{} has {}", parts.sig_json.len(), signature.number, signature.size())));
    }
    let mut signature_area = parts.sig_json.clone();
    signature_area.resize(signature.size() as usize, 0);

    let file = fs::OpenOptions::new().write(true).open(disk_path).map_err(|source| Error::io("open", disk_path, source))?;
    let write_error = |source| Error::io("write", disk_path, source);
    file.write_all_at(&parts.esp, esp.offset()).map_err(write_error)?;
    file.write_all_at(&signature_area, signature.offset()).map_err(write_error)?;
    file.sync_all().map_err(write_error)
}

/// Replaces `path` with `bytes` through a temporary file and a rename, so
/// a reader sees the old or the new file, never a partial one.
pub fn write_replacing(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(|source| Error::io("create a temporary file in", dir, source))?;
    // NamedTempFile creates mode 0600; the outputs are public files like the ones the build writes.
    temp.as_file().set_permissions(fs::Permissions::from_mode(0o644)).map_err(|source| Error::io("set the mode of", temp.path(), source))?;
    temp.write_all(bytes).and_then(|()| temp.as_file().sync_all()).map_err(|source| Error::io("write", temp.path(), source))?;
    temp.persist(path).map_err(|err| Error::io("rename into", path, err.error))?;
    Ok(())
}

fn usage(message: String, hint: Option<String>) -> Error {
    Error::Usage { message, hint }
}
