//! `applbuild verify`: checks a built disk image offline, without root,
//! loop devices or booting.
//!
//! The chain of trust it follows is the one the appliance follows at boot:
//! the release certificate signs the root hash (verity-sig partition) and
//! the release policy (inside the UKI's initramfs). The root hash fixes the
//! root and hash partitions byte for byte, the DPS partition UUIDs and the
//! UKI's `roothash=`. Every check reads the image with the same modules
//! that wrote it (`disk`, `verity`, `sign`, `uki`, `initramfs`).
//!
//! Bytes that dm-verity never reads are checked too, so that a single
//! flipped bit anywhere in the root or hash partition is found. The root
//! partition past the verity data blocks, the hash partition past the tree
//! and block 0 after the superblock must be zero. The superblock must be
//! exactly the one `verity` writes for its fields. The superblock UUID is not covered by the root hash, so it is
//! compared only when `build.json` lies next to the image.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest, Sha256};
use x509_cert::Certificate;

use crate::disk::{self, FatVolume, Layout, PartitionEntry};
use crate::error::Error;
use crate::{authenticode, initramfs, keys, policy, sign, uki, verity};

/// Path of the UKI on the ESP.
pub const ESP_UKI_PATH: &str = "EFI/BOOT/BOOTX64.EFI";
/// Path of the attached policy signature in the initramfs.
pub const INITRAMFS_POLICY_PATH: &str = "policy.p7s";
/// UKI sections every appliance UKI has.
const UKI_SECTIONS: [&str; 4] = [".osrel", ".cmdline", ".initrd", ".linux"];
/// Read buffer for copying partitions and scanning for zeros.
const COPY_BUFFER: usize = 1 << 20;

/// The outcome of one check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Short check name, such as `gpt` or `verity tree`.
    pub name: &'static str,
    pub ok: bool,
    /// Description of the checked values, or of the difference found.
    pub message: String,
}

/// All checks of one image, in the order they ran.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub image: PathBuf,
    /// The root hash the signature partition names, when it could be read.
    pub root_hash: Option<String>,
    /// Source of the trusted certificate.
    pub certificate: Option<String>,
    pub checks: Vec<Check>,
}

impl Report {
    /// Reports whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.ok)
    }

    /// Formats one `ok: …` or `FAILED: …` line per check.
    pub fn lines(&self) -> Vec<String> {
        self.checks
            .iter()
            .map(|check| format!("{}: {}: {}", if check.ok { "ok" } else { "FAILED" }, check.name, check.message))
            .collect()
    }

    fn record(&mut self, name: &'static str, result: Result<String, String>) -> bool {
        let ok = result.is_ok();
        let message = result.unwrap_or_else(|message| message);
        self.checks.push(Check { name, ok, message });
        ok
    }
}

/// The four DPS partitions of an appliance disk.
struct Partitions<'a> {
    esp: &'a PartitionEntry,
    root: &'a PartitionEntry,
    verity: &'a PartitionEntry,
    signature: &'a PartitionEntry,
}

/// The verity-sig partition's JSON.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignatureJson {
    root_hash: String,
    certificate_fingerprint: String,
    signature: String,
}

/// Verifies the image at `image` (a disk image, or an output folder with a
/// `disk.raw`). `cert` is the trusted release certificate (PEM or DER, or a
/// key folder). Without it the certificate embedded in the policy signature
/// is used, which proves the image is consistent but not who signed it.
///
/// Returns the report, failed checks included. Returns an error only when
/// the image or the certificate cannot be read at all.
pub fn verify(image: &Path, cert: Option<&Path>) -> Result<Report, Error> {
    verify_with(image, cert, None)
}

/// Verifies the image as [`verify`] does and, when `db_cert` is given,
/// also the Authenticode signature of the UKI on the ESP with that
/// certificate, as UEFI firmware with it in `db` checks it under Secure Boot.
pub fn verify_with(image: &Path, cert: Option<&Path>, db_cert: Option<&Path>) -> Result<Report, Error> {
    let disk_path = if image.is_dir() { image.join("disk.raw") } else { image.to_path_buf() };
    let mut file = File::open(&disk_path).map_err(|source| Error::io("open", &disk_path, source))?;
    let trusted = match cert {
        Some(path) => Some(keys::load_certificate(path)?),
        None => None,
    };
    let db_certificate = match db_cert {
        Some(path) => Some(keys::load_certificate(path)?),
        None => None,
    };
    let mut report = Report { image: disk_path.clone(), root_hash: None, certificate: cert.map(|p| p.display().to_string()), checks: Vec::new() };

    let layout = match disk::read_layout(&disk_path) {
        Ok(layout) => layout,
        Err(err) => {
            report.record("gpt", Err(err.to_string()));
            return Ok(report);
        }
    };
    report.record("gpt", Ok(format!("protective MBR, primary and backup headers and entry arrays agree; {} partitions", layout.partitions.len())));
    let Some(parts) = find_partitions(&layout, &mut report) else { return Ok(report) };

    // The UKI and the policy signature, read from the ESP.
    let esp = read_partition(&mut file, &disk_path, parts.esp)?;
    let uki_bytes = check_esp(&esp, &mut report);
    if let (Some(uki_bytes), Some(db_certificate)) = (&uki_bytes, &db_certificate) {
        check_secure_boot(uki_bytes, db_certificate, &mut report);
    }
    let sections = uki_bytes.as_deref().and_then(|bytes| check_uki(bytes, &mut report));
    let cmdline = sections.as_ref().and_then(|s| section(s, ".cmdline")).map(|data| String::from_utf8_lossy(data).trim_end_matches(['\0', '\n']).to_string());
    let policy_sig = sections.as_ref().and_then(|s| section(s, ".initrd")).and_then(|initrd| check_initrd(initrd, &mut report));

    // The trust anchor.
    let certificate = match trusted {
        Some(certificate) => Some(certificate),
        None => embedded_certificate(policy_sig.as_deref(), &mut report),
    };

    // Root hash signature, partition UUIDs, verity tree.
    let signature_area = read_partition(&mut file, &disk_path, parts.signature)?;
    let root_hash = check_root_hash_signature(&signature_area, certificate.as_ref(), &mut report);
    let root_hash = root_hash.or_else(|| cmdline.as_deref().and_then(|c| cmdline_value(c, "roothash")).and_then(|hex_text| parse_root_hash(hex_text).ok()));
    let Some(root_hash) = root_hash else {
        report.record("root hash", Err("no root hash: neither the signature partition nor the UKI command line gives one".into()));
        return Ok(report);
    };
    report.root_hash = Some(hex::encode(root_hash));
    check_partition_uuids(&parts, &root_hash, &mut report);
    let superblock = check_verity(&mut file, &disk_path, &parts, &root_hash, &mut report)?;

    if let Some(cmdline) = &cmdline {
        check_cmdline(cmdline, &parts, &root_hash, &mut report);
    }
    if let (Some(policy_sig), Some(certificate)) = (&policy_sig, &certificate) {
        check_policy(policy_sig, certificate, &root_hash, cmdline.as_deref(), &mut report);
    }
    if let Some(superblock) = superblock {
        check_build_record(&disk_path, &superblock, &mut report);
    }
    Ok(report)
}

fn find_partitions<'a>(layout: &'a Layout, report: &mut Report) -> Option<Partitions<'a>> {
    let mut missing = Vec::new();
    let mut find = |type_guid: disk::Uuid, label: &'static str| {
        let found: Vec<&PartitionEntry> = layout.partitions.iter().filter(|p| p.type_guid == type_guid).collect();
        match found.as_slice() {
            [one] => Some(*one),
            [] => {
                missing.push(format!("no {label} partition (type {type_guid})"));
                None
            }
            _ => {
                missing.push(format!("{} {label} partitions (type {type_guid}); expected 1", found.len()));
                None
            }
        }
    };
    let esp = find(disk::ESP, "EFI System");
    let root = find(disk::ROOT_X86_64, "root");
    let verity = find(disk::ROOT_VERITY_X86_64, "root verity");
    let signature = find(disk::ROOT_VERITY_SIG_X86_64, "root verity signature");
    match (esp, root, verity, signature) {
        (Some(esp), Some(root), Some(verity), Some(signature)) => {
            report.record("partition types", Ok(format!("ESP #{}, root #{}, root verity #{}, root verity signature #{} (DPS x86-64)", esp.number, root.number, verity.number, signature.number)));
            Some(Partitions { esp, root, verity, signature })
        }
        _ => {
            report.record("partition types", Err(missing.join("; ")));
            None
        }
    }
}

fn read_partition(file: &mut File, path: &Path, entry: &PartitionEntry) -> Result<Vec<u8>, Error> {
    let mut bytes = vec![0u8; usize::try_from(entry.size()).map_err(|_| Error::Internal(format!("partition {} does not fit in memory", entry.number)))?];
    file.seek(SeekFrom::Start(entry.offset())).and_then(|_| file.read_exact(&mut bytes)).map_err(|source| Error::io("read", path, source))?;
    Ok(bytes)
}

fn check_esp(esp: &[u8], report: &mut Report) -> Option<Vec<u8>> {
    let result = FatVolume::open(esp).and_then(|volume| volume.read_file(ESP_UKI_PATH));
    match result {
        Ok(uki) => {
            report.record("esp", Ok(format!("FAT32 boot sector, backup and FATs agree; {ESP_UKI_PATH} is {} bytes", uki.len())));
            Some(uki)
        }
        Err(err) => {
            report.record("esp", Err(err.to_string()));
            None
        }
    }
}

fn check_secure_boot(uki_bytes: &[u8], db_certificate: &Certificate, report: &mut Report) {
    let result = authenticode::verify(uki_bytes, db_certificate)
        .map(|verified| format!("{ESP_UKI_PATH} has an Authenticode signature by {} over SHA-256 {}", verified.signer, verified.digest))
        .map_err(|err| format!("{ESP_UKI_PATH}: {err}; Secure Boot firmware with this db certificate refuses to start it"));
    report.record("secure boot signature", result);
}

fn check_uki(uki_bytes: &[u8], report: &mut Report) -> Option<Vec<uki::Section>> {
    let sections = match uki::read_sections(uki_bytes) {
        Ok(sections) => sections,
        Err(err) => {
            report.record("uki sections", Err(err.to_string()));
            return None;
        }
    };
    let missing: Vec<&str> = UKI_SECTIONS.iter().copied().filter(|name| section(&sections, name).is_none()).collect();
    if missing.is_empty() {
        report.record("uki sections", Ok(format!("PE checksum matches; {} present", UKI_SECTIONS.join(" "))));
    } else {
        report.record("uki sections", Err(format!("missing section(s) {}", missing.join(" "))));
    }
    Some(sections)
}

fn section<'a>(sections: &'a [uki::Section], name: &str) -> Option<&'a [u8]> {
    sections.iter().find(|s| s.name == name).map(|s| s.data.as_slice())
}

fn check_initrd(initrd: &[u8], report: &mut Report) -> Option<Vec<u8>> {
    let result = initramfs::read_archive(initrd).map_err(|err| err.to_string()).and_then(|entries| {
        entries
            .into_iter()
            .find(|entry| entry.path == INITRAMFS_POLICY_PATH && entry.is_file())
            .map(|entry| entry.data)
            .ok_or_else(|| format!("the initramfs has no /{INITRAMFS_POLICY_PATH}"))
    });
    match result {
        Ok(data) if data.is_empty() => {
            report.record("initramfs", Err(format!("/{INITRAMFS_POLICY_PATH} is empty: the image was built with --unsigned; run applbuild sign")));
            None
        }
        Ok(data) => {
            report.record("initramfs", Ok(format!("newc archive; /{INITRAMFS_POLICY_PATH} is {} bytes", data.len())));
            Some(data)
        }
        Err(message) => {
            report.record("initramfs", Err(message));
            None
        }
    }
}

fn embedded_certificate(policy_sig: Option<&[u8]>, report: &mut Report) -> Option<Certificate> {
    let found = policy_sig.map(sign::embedded_certificate);
    match found {
        Some(Ok(Some(certificate))) => {
            let subject = certificate.tbs_certificate().subject().to_string();
            report.certificate = Some(format!("embedded in the policy signature: {subject}"));
            report.record("certificate", Ok(format!("no --cert given: using the certificate embedded in the policy signature ({subject}); pass --cert to check who signed the image")));
            Some(certificate)
        }
        Some(Ok(None)) => {
            report.record("certificate", Err("no --cert given and the policy signature embeds no certificate".into()));
            None
        }
        Some(Err(err)) => {
            report.record("certificate", Err(format!("no --cert given and the policy signature cannot be read: {err}")));
            None
        }
        None => {
            report.record("certificate", Err("no --cert given and no policy signature to take a certificate from".into()));
            None
        }
    }
}

/// Checks the verity-sig partition and returns the root hash it names.
fn check_root_hash_signature(area: &[u8], certificate: Option<&Certificate>, report: &mut Report) -> Option<[u8; 32]> {
    let json_end = area.iter().position(|&b| b == 0).unwrap_or(area.len());
    if json_end == 0 {
        report.record("root hash signature", Err("the signature partition is empty: the image was built with --unsigned; run applbuild sign".into()));
        return None;
    }
    if let Some(offset) = area[json_end..].iter().position(|&b| b != 0) {
        report.record("root hash signature", Err(format!("the signature partition has non-zero bytes at offset {} after the JSON's NUL padding", json_end + offset)));
        return None;
    }
    let parsed: SignatureJson = match serde_json::from_slice(&area[..json_end]) {
        Ok(parsed) => parsed,
        Err(err) => {
            report.record("root hash signature", Err(format!("the signature partition is not the expected JSON: {err}")));
            return None;
        }
    };
    let root_hash = match parse_root_hash(&parsed.root_hash) {
        Ok(hash) => hash,
        Err(message) => {
            report.record("root hash signature", Err(message));
            return None;
        }
    };
    let Some(certificate) = certificate else {
        report.record("root hash signature", Err("not checked: no trusted certificate".into()));
        return Some(root_hash);
    };
    let result = check_signature_json(&parsed, certificate);
    report.record("root hash signature", result.map(|()| format!("PKCS#7 signature over {} verifies with {}", parsed.root_hash, certificate.tbs_certificate().subject())));
    Some(root_hash)
}

fn check_signature_json(parsed: &SignatureJson, certificate: &Certificate) -> Result<(), String> {
    use der::Encode;
    let cert_der = certificate.to_der().map_err(|err| format!("cannot encode the certificate: {err}"))?;
    let fingerprint = hex::encode(Sha256::digest(&cert_der));
    if parsed.certificate_fingerprint != fingerprint {
        return Err(format!("certificateFingerprint {} is not the certificate's SHA-256 {fingerprint}", parsed.certificate_fingerprint));
    }
    let signature = base64::engine::general_purpose::STANDARD.decode(&parsed.signature).map_err(|err| format!("signature is not Base64: {err}"))?;
    sign::verify_detached(&signature, parsed.root_hash.as_bytes(), certificate).map_err(|err| err.to_string())
}

fn parse_root_hash(text: &str) -> Result<[u8; 32], String> {
    let valid = text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let mut hash = [0u8; 32];
    if !valid || hex::decode_to_slice(text, &mut hash).is_err() {
        return Err(format!("root hash {text:?} is not 64 lower-case hex digits"));
    }
    Ok(hash)
}

fn check_partition_uuids(parts: &Partitions<'_>, root_hash: &[u8; 32], report: &mut Report) {
    let expected = [
        ("root", parts.root, disk::root_partition_uuid(root_hash)),
        ("root verity", parts.verity, disk::verity_partition_uuid(root_hash)),
        ("root verity signature", parts.signature, disk::verity_sig_partition_uuid(root_hash)),
    ];
    let mut differences = Vec::new();
    for (label, entry, uuid) in expected {
        match uuid {
            Ok(uuid) if uuid == entry.uuid => {}
            Ok(uuid) => differences.push(format!("{label} partition UUID is {}, the root hash gives {uuid}", entry.uuid)),
            Err(err) => differences.push(err.to_string()),
        }
    }
    let result = if differences.is_empty() { Ok("root, root verity and signature partition UUIDs derive from the root hash".to_string()) } else { Err(differences.join("; ")) };
    report.record("partition uuids", result);
}

/// Checks the hash tree and the bytes dm-verity does not read, and returns
/// the superblock when it could be decoded.
fn check_verity(file: &mut File, disk_path: &Path, parts: &Partitions<'_>, root_hash: &[u8; 32], report: &mut Report) -> Result<Option<verity::Superblock>, Error> {
    let work = tempfile::tempdir().map_err(|source| Error::io("create a temporary folder in", &std::env::temp_dir(), source))?;
    let data_path = work.path().join("root.img");
    let hash_path = work.path().join("verity.img");
    copy_partition(file, disk_path, parts.root, &data_path)?;
    copy_partition(file, disk_path, parts.verity, &hash_path)?;

    let tree = verity::verify(&data_path, &hash_path, root_hash);
    let info = match tree {
        Ok(info) => {
            report.record("verity tree", Ok(format!("{} data blocks and every hash block match root hash {}", info.data_blocks, hex::encode(root_hash))));
            info
        }
        Err(err) => {
            report.record("verity tree", Err(describe_verity_error(&err, parts, &data_path, &hash_path)));
            return Ok(verity::read_superblock(&hash_path).ok());
        }
    };

    // The bytes outside the tree and the data blocks.
    let mut hash_head = vec![0u8; verity::BLOCK_SIZE as usize];
    File::open(&hash_path).and_then(|mut f| f.read_exact(&mut hash_head)).map_err(|source| Error::io("read", &hash_path, source))?;
    let superblock = verity::read_superblock(&hash_path)?;
    let mut problems = Vec::new();
    match superblock.encode() {
        Ok(encoded) if encoded[..] == hash_head[..verity::SUPERBLOCK_SIZE] => {}
        Ok(_) => problems.push("the superblock differs from the canonical encoding of its fields (a reserved or padding byte changed)".to_string()),
        Err(err) => problems.push(format!("the superblock cannot be encoded: {err}")),
    }
    if let Some(offset) = hash_head[verity::SUPERBLOCK_SIZE..].iter().position(|&b| b != 0) {
        problems.push(format!("hash partition byte {} after the superblock is not zero", verity::SUPERBLOCK_SIZE + offset));
    }
    if let Some(offset) = first_nonzero(file, disk_path, parts.verity.offset() + info.hash_size, parts.verity.size().saturating_sub(info.hash_size))? {
        problems.push(format!("hash partition byte {} past the {}-byte tree is not zero", info.hash_size + offset, info.hash_size));
    }
    let data_size = info.data_blocks * verity::BLOCK_SIZE;
    if let Some(offset) = first_nonzero(file, disk_path, parts.root.offset() + data_size, parts.root.size().saturating_sub(data_size))? {
        problems.push(format!("root partition byte {} past the {data_size} bytes verity covers is not zero", data_size + offset));
    }
    let result = if problems.is_empty() { Ok("superblock canonical; no data outside the tree and the data blocks".to_string()) } else { Err(problems.join("; ")) };
    report.record("verity padding", result);
    Ok(Some(superblock))
}

/// Rewords a verity error for a disk image: partitions instead of the
/// temporary files, and without the builder's "format again" advice.
fn describe_verity_error(err: &verity::VerityError, parts: &Partitions<'_>, data_path: &Path, hash_path: &Path) -> String {
    let root = format!("root partition #{}", parts.root.number);
    let hash = format!("root verity partition #{}", parts.verity.number);
    match err {
        verity::VerityError::DataBlockMismatch { index, .. } => {
            format!("{root}: data block {index} (partition byte offset {}) does not match its digest in the hash tree", index * verity::BLOCK_SIZE)
        }
        verity::VerityError::HashBlockMismatch { level, index, hash_block, .. } => {
            format!("{hash}: hash block {hash_block} (tree level {level}, block {index} of that level, partition byte offset {}) does not match its digest", hash_block * verity::BLOCK_SIZE)
        }
        verity::VerityError::RootHashMismatch { expected, actual, .. } => {
            format!("the root and hash partitions give root hash {}, but the image names {}", hex::encode(actual), hex::encode(expected))
        }
        other => other.to_string().replace(&data_path.display().to_string(), &root).replace(&hash_path.display().to_string(), &hash),
    }
}

fn copy_partition(file: &mut File, disk_path: &Path, entry: &PartitionEntry, out: &Path) -> Result<(), Error> {
    let mut target = File::create(out).map_err(|source| Error::io("create", out, source))?;
    file.seek(SeekFrom::Start(entry.offset())).map_err(|source| Error::io("read", disk_path, source))?;
    let mut buffer = vec![0u8; COPY_BUFFER];
    let mut left = entry.size();
    while left > 0 {
        let chunk = left.min(COPY_BUFFER as u64) as usize;
        file.read_exact(&mut buffer[..chunk]).map_err(|source| Error::io("read", disk_path, source))?;
        target.write_all(&buffer[..chunk]).map_err(|source| Error::io("write", out, source))?;
        left -= chunk as u64;
    }
    Ok(())
}

/// Returns the position of the first non-zero byte in `len` bytes at `offset`.
fn first_nonzero(file: &mut File, path: &Path, offset: u64, len: u64) -> Result<Option<u64>, Error> {
    file.seek(SeekFrom::Start(offset)).map_err(|source| Error::io("read", path, source))?;
    let mut buffer = vec![0u8; COPY_BUFFER];
    let mut done = 0;
    while done < len {
        let chunk = (len - done).min(COPY_BUFFER as u64) as usize;
        file.read_exact(&mut buffer[..chunk]).map_err(|source| Error::io("read", path, source))?;
        if let Some(position) = buffer[..chunk].iter().position(|&b| b != 0) {
            return Ok(Some(done + position as u64));
        }
        done += chunk as u64;
    }
    Ok(None)
}

/// Returns the value of the first `key=value` word of a kernel command line.
fn cmdline_value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline.split_ascii_whitespace().find_map(|word| word.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
}

fn check_cmdline(cmdline: &str, parts: &Partitions<'_>, root_hash: &[u8; 32], report: &mut Report) {
    let expected_hash = hex::encode(root_hash);
    let mut differences = Vec::new();
    match cmdline_value(cmdline, "roothash") {
        Some(value) if value == expected_hash => {}
        Some(value) => differences.push(format!("roothash={value}, the signed root hash is {expected_hash}")),
        None => differences.push("no roothash= on the UKI command line".to_string()),
    }
    for (key, entry) in [("root", parts.root), ("applbuild.verity", parts.verity)] {
        let expected = format!("PARTUUID={}", entry.uuid.hyphenated());
        match cmdline_value(cmdline, key) {
            Some(value) if value == expected => {}
            Some(value) => differences.push(format!("{key}={value}, the partition is {expected}")),
            None => differences.push(format!("no {key}= on the UKI command line")),
        }
    }
    let result = if differences.is_empty() { Ok(format!("roothash={expected_hash}, root= and applbuild.verity= name the partitions")) } else { Err(differences.join("; ")) };
    report.record("uki command line", result);
}

fn check_policy(policy_sig: &[u8], certificate: &Certificate, root_hash: &[u8; 32], cmdline: Option<&str>, report: &mut Report) {
    let text = match sign::verify_attached(policy_sig, certificate) {
        Ok(text) => {
            report.record("policy signature", Ok(format!("attached PKCS#7 signature verifies with {}", certificate.tbs_certificate().subject())));
            text
        }
        Err(err) => {
            report.record("policy signature", Err(err.to_string()));
            return;
        }
    };

    let mut problems = Vec::new();
    if let Err(err) = policy::check(&text) {
        problems.push(format!("the policy is invalid: {err}"));
    }
    let text = String::from_utf8_lossy(&text);
    let pin = format!("dmverity_roothash=sha256:{}", hex::encode(root_hash));
    let pinned = text.lines().any(|line| line.split_ascii_whitespace().any(|word| word == pin) && line.split_ascii_whitespace().any(|word| word == "action=ALLOW"));
    if !pinned {
        problems.push(format!("no ALLOW rule has {pin}"));
    }
    let header: Vec<&str> = text.lines().next().unwrap_or_default().split_ascii_whitespace().collect();
    let header_value = |key: &str| header.iter().find_map(|word| word.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')));
    if let Some(cmdline) = cmdline {
        for (policy_key, cmdline_key) in [("policy_name", "applbuild.policy"), ("policy_version", "applbuild.release")] {
            if let (Some(in_policy), Some(on_cmdline)) = (header_value(policy_key), cmdline_value(cmdline, cmdline_key)) {
                if in_policy != on_cmdline {
                    problems.push(format!("{policy_key}={in_policy} but the command line has {cmdline_key}={on_cmdline}"));
                }
            }
        }
    }
    let result = if problems.is_empty() {
        Ok(format!("{} {} allows root hash {}", header_value("policy_name").unwrap_or("?"), header_value("policy_version").unwrap_or("?"), hex::encode(root_hash)))
    } else {
        Err(problems.join("; "))
    };
    report.record("policy pins root hash", result);
}

/// Compares the superblock with the `verity` record of a `build.json` next
/// to the image, which covers the fields the root hash does not.
fn check_build_record(disk_path: &Path, superblock: &verity::Superblock, report: &mut Report) {
    let Some(record_path) = disk_path.parent().map(|dir| dir.join("build.json")).filter(|path| path.is_file()) else { return };
    let record: serde_json::Value = match std::fs::read(&record_path).map_err(|err| err.to_string()).and_then(|bytes| serde_json::from_slice(&bytes).map_err(|err| err.to_string())) {
        Ok(record) => record,
        Err(err) => {
            report.record("build.json", Err(format!("{}: {err}", record_path.display())));
            return;
        }
    };
    let verity_record = &record["verity"];
    let mut differences = Vec::new();
    let mut compared = vec!["data block count"];
    let mut compare = |field: &'static str, actual: String| match verity_record[field].as_str() {
        Some(expected) if expected == actual => compared.push(field),
        Some(expected) => differences.push(format!("superblock {field} is {actual}, build.json has {expected}")),
        // Builds before the UUID was recorded have no verity.uuid.
        None if field == "uuid" => {}
        None => differences.push(format!("build.json has no verity.{field}")),
    };
    compare("salt", hex::encode(&superblock.salt));
    compare("uuid", hex::encode(superblock.uuid));
    if verity_record["data_blocks"].as_u64() != Some(superblock.data_blocks) {
        differences.push(format!("superblock has {} data blocks, build.json has {}", superblock.data_blocks, verity_record["data_blocks"]));
    }
    let result = if differences.is_empty() { Ok(format!("superblock {} match {}", compared.join(", "), record_path.display())) } else { Err(differences.join("; ")) };
    report.record("build.json", result);
}
