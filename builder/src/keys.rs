//! Signing keys: RSA private keys with self-signed X.509 certificates.
//!
//! A key directory holds up to two key pairs ([`KeyFiles`]):
//! * the release key, `key.pem` (PKCS#8 PEM, mode 0600) and `cert.pem`: the
//!   appliance kernel trusts the certificate, and the key signs the verity
//!   root hash and the IPE policy;
//! * the Secure Boot db key, `db.key.pem` (mode 0600) and `db.cert.pem`:
//!   firmware with the certificate in its `db` variable boots UKIs that the
//!   key signed (see [`crate::authenticode`]).
//!
//! `init` creates a pair, `load` reads it back with the checks that protect
//! a private key, and `describe` formats the certificate for
//! `applbuild keys show`.

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::asn1::Utf8StringRef;
use der::oid::db::rfc4519::CN;
use der::oid::db::rfc5280::ID_KP_CODE_SIGNING;
use der::pem::LineEnding;
use der::referenced::OwnedToRef;
use der::{Any, DateTime, Decode, DecodePem, Encode, EncodePem};
use pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::pkcs1v15::SigningKey;
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};
use sha2::{Digest, Sha256};
use spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

/// RSA modulus size in bits that `applbuild keys init` generates by default.
pub const DEFAULT_BITS: usize = 3072;

/// Smallest RSA modulus in bits that `init` creates and `load` accepts.
pub const MIN_BITS: usize = 2048;

/// Largest RSA modulus in bits that `init` creates. Linux verifies RSA
/// signatures with larger keys too, but generating them takes minutes.
pub const MAX_BITS: usize = 4096;

/// File name of the PKCS#8 PEM private key inside a key directory.
pub const KEY_FILE: &str = "key.pem";

/// File name of the PEM certificate inside a key directory.
pub const CERT_FILE: &str = "cert.pem";

/// File name of the Secure Boot db private key (PKCS#8 PEM) inside a key directory.
pub const DB_KEY_FILE: &str = "db.key.pem";

/// File name of the Secure Boot db certificate inside a key directory, the
/// one to enroll in the firmware's `db`.
pub const DB_CERT_FILE: &str = "db.cert.pem";

/// The two files of one key pair in a key directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyFiles {
    /// File name of the PKCS#8 PEM private key.
    pub key: &'static str,
    /// File name of the PEM certificate.
    pub cert: &'static str,
    /// Short name for messages and check output, such as `db`.
    pub label: &'static str,
}

/// The release key: signs the verity root hash and the IPE policy.
pub const RELEASE: KeyFiles = KeyFiles { key: KEY_FILE, cert: CERT_FILE, label: "release" };

/// The Secure Boot db key: signs the UKI (Authenticode).
pub const SECURE_BOOT_DB: KeyFiles = KeyFiles { key: DB_KEY_FILE, cert: DB_CERT_FILE, label: "db" };

/// Validity period of a certificate made by `init`, in calendar years.
const VALIDITY_YEARS: u16 = 30;

/// Length of the random certificate serial number in bytes (126 random bits).
const SERIAL_LEN: usize = 16;

/// Maximum length of an X.509 common name (ub-common-name in RFC 5280).
const MAX_COMMON_NAME_LEN: usize = 64;

/// Errors from creating, loading and describing a key directory.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("invalid key size {bits} bits: use a size from {MIN_BITS} to {MAX_BITS} bits, for example {DEFAULT_BITS}")]
    InvalidKeySize { bits: usize },

    #[error("invalid common name {name:?}: {reason}")]
    InvalidCommonName { name: String, reason: &'static str },

    #[error("{} already exists and applbuild never overwrites keys: move it away or choose another directory", path.display())]
    AlreadyExists { path: PathBuf },

    #[error("failed to create key directory {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },

    #[error("invalid SOURCE_DATE_EPOCH {value:?}: expected a Unix time in whole seconds between 1970 and 9969")]
    InvalidSourceDateEpoch { value: String },

    #[error("system clock is before 1970-01-01: set the clock or SOURCE_DATE_EPOCH")]
    ClockBeforeEpoch,

    #[error("failed to compute the certificate validity period: {0}")]
    Validity(der::Error),

    #[error("failed to read random bytes for the certificate serial number: {0}")]
    Random(getrandom::Error),

    #[error("failed to generate a {bits}-bit RSA key: {source}")]
    GenerateKey { bits: usize, source: rsa::Error },

    #[error("failed to encode the certificate subject CN={name:?}: {source}")]
    EncodeSubject { name: String, source: der::Error },

    #[error("failed to encode the public key: {0}")]
    EncodePublicKey(spki::Error),

    #[error("failed to build the X.509 certificate: {0}")]
    BuildCertificate(x509_cert::builder::Error),

    #[error("failed to encode the certificate: {0}")]
    EncodeCertificate(der::Error),

    #[error("failed to encode the private key as PKCS#8 PEM: {0}")]
    EncodePrivateKey(pkcs8::Error),

    #[error("failed to write {}: {source}", path.display())]
    WriteFile { path: PathBuf, source: io::Error },

    #[error("failed to read {}: {source}", path.display())]
    ReadFile { path: PathBuf, source: io::Error },

    #[error("key file {path} has mode {mode:04o}; private keys must not be readable by group or others: run chmod 600 {path}", path = path.display())]
    InsecureKeyMode { path: PathBuf, mode: u32 },

    #[error("{path} is an encrypted PKCS#8 key, which applbuild cannot use: decrypt it with openssl pkcs8 -in {path} -out {path}.plain and replace it (keep mode 0600)", path = path.display())]
    EncryptedKey { path: PathBuf },

    #[error("{path} is a PKCS#1 RSA key but applbuild expects PKCS#8: convert it with openssl pkcs8 -topk8 -nocrypt -in {path} -out {path}.p8 and replace it (keep mode 0600)", path = path.display())]
    Pkcs1Key { path: PathBuf },

    #[error("failed to decode PEM in {}: {source}", path.display())]
    KeyPem {
        path: PathBuf,
        source: der::pem::Error,
    },

    #[error("{} contains a PEM block with label {label:?}, expected \"PRIVATE KEY\" (PKCS#8)", path.display())]
    UnexpectedKeyLabel { path: PathBuf, label: String },

    #[error("failed to parse {} as a PKCS#8 RSA private key: {source}", path.display())]
    ParseKey { path: PathBuf, source: pkcs8::Error },

    #[error("failed to parse {} as a PEM X.509 certificate: {source}", path.display())]
    ParseCertificate { path: PathBuf, source: der::Error },

    #[error("certificate {} does not contain an RSA public key: {source}", path.display())]
    CertificateNotRsa { path: PathBuf, source: spki::Error },

    #[error("RSA key {} has {bits} bits, fewer than the minimum of {MIN_BITS}: create a new key pair with applbuild keys init", path.display())]
    KeyTooSmall { path: PathBuf, bits: usize },

    #[error("private key {} does not match the public key in certificate {}: use the cert.pem made together with this key, or create a new key pair with applbuild keys init", key.display(), cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
}

impl KeyError {
    /// Returns what to do next, where the error has a usual fix.
    pub fn hint(&self) -> Option<String> {
        match self {
            KeyError::ReadFile { path, source } if source.kind() == io::ErrorKind::NotFound && path.ends_with(DB_KEY_FILE) => Some(
                "boards with [secure_boot] sign = true need the Secure Boot db key: pass --db-key DIR|URI to `applbuild sign`, \
                 or add a db pair with `applbuild keys init --db-only DIR`"
                    .to_owned(),
            ),
            KeyError::ReadFile { path, source } if source.kind() == io::ErrorKind::NotFound => Some(format!(
                "create the keys with `applbuild keys init {}`, build a board with `create_if_missing = true` once, or pass --keys DIR",
                if path.extension().is_some_and(|e| e == "pem") { path.parent().unwrap_or(path) } else { path.as_path() }.display()
            )),
            _ => None,
        }
    }
}

/// A release signing key: the RSA private key and its certificate.
///
/// `Debug` shows only the certificate subject and fingerprint, never key material.
pub struct KeyPair {
    signing_key: SigningKey<Sha256>,
    certificate: Certificate,
    cert_der: Vec<u8>,
    cert_pem: String,
}

impl KeyPair {
    /// Returns the certificate in DER form.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Returns the certificate as a PEM `CERTIFICATE` block with LF line endings.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// Returns the SHA-256 fingerprint of the DER certificate.
    pub fn cert_sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.cert_der).into()
    }

    /// Returns the certificate subject in RFC 4514 form, for example `CN=release`.
    pub fn subject(&self) -> String {
        self.certificate.tbs_certificate().subject().to_string()
    }

    /// Returns the RSA modulus size in bits.
    pub fn key_bits(&self) -> usize {
        modulus_bits(self.signing_key.as_ref().as_public_key())
    }

    pub(crate) fn signing_key(&self) -> &SigningKey<Sha256> {
        &self.signing_key
    }

    /// Returns the certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("subject", &self.subject())
            .field("cert_sha256", &hex::encode(self.cert_sha256()))
            .finish_non_exhaustive()
    }
}

/// Creates a key directory with a new RSA key and a self-signed code signing certificate.
///
/// Creates `dir` with mode 0700 if it is missing and writes `key.pem`
/// (PKCS#8 PEM, created with mode 0600) and `cert.pem`. Rejects the request
/// before generating a key if either file exists. The certificate is X.509 v3
/// with subject and issuer CN=`common_name`, a random serial number,
/// notBefore = now or `SOURCE_DATE_EPOCH`, notAfter = notBefore + 30 years,
/// critical basicConstraints CA:FALSE, critical keyUsage digitalSignature,
/// extendedKeyUsage codeSigning, and subject and authority key identifiers
/// that both hold the SHA-1 of the public key. It is signed with
/// sha256WithRSAEncryption.
pub fn init(dir: &Path, bits: usize, common_name: &str) -> Result<(), KeyError> {
    init_pair(dir, RELEASE, bits, common_name)
}

/// Creates the key pair `files` in `dir`, as [`init`] does for the release key.
pub fn init_pair(dir: &Path, files: KeyFiles, bits: usize, common_name: &str) -> Result<(), KeyError> {
    if !(MIN_BITS..=MAX_BITS).contains(&bits) {
        return Err(KeyError::InvalidKeySize { bits });
    }
    let subject = subject_name(common_name)?;
    let not_before = validity_start()?;
    check_absent(dir, &[files])?;
    create_key_dir(dir)?;
    let key_path = dir.join(files.key);
    let cert_path = dir.join(files.cert);

    let private_key = PrivateKey::new(&mut getrandom::SysRng, bits)
        .map_err(|source| KeyError::GenerateKey { bits, source })?;
    let signing_key = SigningKey::<Sha256>::new(private_key);
    let certificate = self_signed_certificate(&signing_key, subject, not_before)?;

    let key_pem = signing_key
        .as_ref()
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(KeyError::EncodePrivateKey)?;
    let cert_pem = certificate
        .to_pem(LineEnding::LF)
        .map_err(KeyError::EncodeCertificate)?;

    write_new_file(&key_path, key_pem.as_bytes(), 0o600)?;
    if let Err(err) = write_new_file(&cert_path, cert_pem.as_bytes(), 0o644) {
        // Leave no key without a certificate, so that a retry does not hit AlreadyExists.
        let _ = fs::remove_file(&key_path);
        return Err(err);
    }
    Ok(())
}

/// Fails with [`KeyError::AlreadyExists`] when a file of `pairs` exists in `dir`.
pub fn check_absent(dir: &Path, pairs: &[KeyFiles]) -> Result<(), KeyError> {
    for files in pairs {
        for path in [dir.join(files.key), dir.join(files.cert)] {
            if path.symlink_metadata().is_ok() {
                return Err(KeyError::AlreadyExists { path });
            }
        }
    }
    Ok(())
}

/// Reports whether `dir` contains a file of the pair `files`.
pub fn has_pair(dir: &Path, files: KeyFiles) -> bool {
    dir.join(files.key).symlink_metadata().is_ok() || dir.join(files.cert).symlink_metadata().is_ok()
}

/// Loads `dir/key.pem` and `dir/cert.pem`.
///
/// Rejects a key file that group or others can access in any way, an encrypted
/// or PKCS#1 key, a certificate without an RSA key, a key that does not match
/// the certificate, and RSA keys below 2048 bits.
pub fn load(dir: &Path) -> Result<KeyPair, KeyError> {
    load_pair(dir, RELEASE)
}

/// Loads the key pair `files` from `dir` with the checks of [`load`].
pub fn load_pair(dir: &Path, files: KeyFiles) -> Result<KeyPair, KeyError> {
    let key_path = dir.join(files.key);
    let cert_path = dir.join(files.cert);

    let key_pem = read_private_file(&key_path)?;
    let private_key = parse_private_key(&key_path, &key_pem)?;

    let cert_pem = fs::read(&cert_path).map_err(|source| KeyError::ReadFile {
        path: cert_path.clone(),
        source,
    })?;
    let certificate =
        Certificate::from_pem(&cert_pem).map_err(|source| KeyError::ParseCertificate {
            path: cert_path.clone(),
            source,
        })?;
    let cert_der = certificate.to_der().map_err(KeyError::EncodeCertificate)?;
    let cert_pem = certificate
        .to_pem(LineEnding::LF)
        .map_err(KeyError::EncodeCertificate)?;

    let spki_ref = certificate
        .tbs_certificate()
        .subject_public_key_info()
        .owned_to_ref();
    let cert_key = PublicKey::try_from(spki_ref).map_err(|source| KeyError::CertificateNotRsa {
        path: cert_path.clone(),
        source,
    })?;
    let public_key = private_key.as_public_key();
    if public_key.n() != cert_key.n() || public_key.e() != cert_key.e() {
        return Err(KeyError::KeyMismatch {
            key: key_path,
            cert: cert_path,
        });
    }

    let bits = modulus_bits(public_key);
    if bits < MIN_BITS {
        return Err(KeyError::KeyTooSmall {
            path: key_path,
            bits,
        });
    }

    Ok(KeyPair {
        signing_key: SigningKey::<Sha256>::new(private_key),
        certificate,
        cert_der,
        cert_pem,
    })
}

/// Loads a certificate as [`load_certificate`] does and returns it as the
/// PEM block with LF line endings that [`KeyPair::cert_pem`] gives for the
/// same certificate, the form the kernel build takes.
pub fn certificate_pem(path: &Path) -> Result<String, KeyError> {
    load_certificate(path)?.to_pem(LineEnding::LF).map_err(KeyError::EncodeCertificate)
}

/// Loads an X.509 certificate in PEM or DER form. A directory stands for
/// its `cert.pem`.
pub fn load_certificate(path: &Path) -> Result<Certificate, KeyError> {
    let path = if path.is_dir() { path.join(CERT_FILE) } else { path.to_path_buf() };
    let bytes = fs::read(&path).map_err(|source| KeyError::ReadFile { path: path.clone(), source })?;
    let parsed = if bytes.starts_with(b"-----BEGIN") { Certificate::from_pem(&bytes) } else { Certificate::from_der(&bytes) };
    parsed.map_err(|source| KeyError::ParseCertificate { path, source })
}

/// The outcome of one `applbuild keys check` check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyCheck {
    /// The key pair checked: `release` or `db` ([`KeyFiles::label`]).
    pub key: &'static str,
    /// Short check name, such as `key size`.
    pub name: &'static str,
    pub ok: bool,
    /// Finding, or the problem and how to fix it.
    pub message: String,
}

/// Checks the key folder `dir` for what signing and the kernel's trusted
/// keyring need. The checks cover the key file's mode (no group or other
/// access), the PKCS#8 RSA key and its size (at least 2048 bits), the
/// certificate, the key match, the self-signature and the validity dates
/// at `now`.
///
/// Unlike [`load`] it reports every check instead of stopping at the first
/// failure. A check that depends on a file that could not be read is
/// reported as failed with the reason.
///
/// The Secure Boot db key pair is checked the same way when one of its
/// files is present.
pub fn check(dir: &Path, now: SystemTime) -> Vec<KeyCheck> {
    let mut checks = check_pair(dir, RELEASE, now);
    if has_pair(dir, SECURE_BOOT_DB) {
        checks.extend(check_pair(dir, SECURE_BOOT_DB, now));
    }
    checks
}

/// Runs the checks of [`check`] on the key pair `files` in `dir`.
pub fn check_pair(dir: &Path, files: KeyFiles, now: SystemTime) -> Vec<KeyCheck> {
    let mut checks = Vec::new();
    let mut record = |name: &'static str, result: Result<String, String>| {
        let ok = result.is_ok();
        let message = result.unwrap_or_else(|message| message);
        checks.push(KeyCheck { key: files.label, name, ok, message });
    };
    let key_path = dir.join(files.key);
    let cert_path = dir.join(files.cert);

    let mode = fs::metadata(&key_path).map(|meta| meta.permissions().mode() & 0o7777);
    record("key file mode", match mode {
        Ok(mode) if mode & 0o077 == 0 => Ok(format!("{} has mode {mode:04o}", key_path.display())),
        Ok(mode) => Err(KeyError::InsecureKeyMode { path: key_path.clone(), mode }.to_string()),
        Err(err) => Err(format!("cannot read {}: {err}", key_path.display())),
    });

    // Read the key even when its mode is too open, so that every other check still runs.
    let private_key = fs::read(&key_path)
        .map_err(|source| KeyError::ReadFile { path: key_path.clone(), source }.to_string())
        .map(der::zeroize::Zeroizing::new)
        .and_then(|pem| parse_private_key(&key_path, &pem).map_err(|err| err.to_string()));
    let public_key = private_key.as_ref().map(|key| key.as_public_key().clone());
    record("private key", public_key.as_ref().map(|_| format!("{} is a PKCS#8 RSA private key", key_path.display())).map_err(|err| err.to_string()));
    if let Ok(public_key) = &public_key {
        let bits = modulus_bits(public_key);
        record("key size", if bits >= MIN_BITS { Ok(format!("RSA {bits} bits")) } else { Err(KeyError::KeyTooSmall { path: key_path.clone(), bits }.to_string()) });
    }

    let certificate = load_certificate(&cert_path).map_err(|err| err.to_string());
    record("certificate", certificate.as_ref().map(|cert| format!("{} parses: subject {}", cert_path.display(), cert.tbs_certificate().subject())).map_err(String::clone));
    let Ok(certificate) = certificate else { return checks };
    let spki = certificate.tbs_certificate().subject_public_key_info().owned_to_ref();
    let cert_key = PublicKey::try_from(spki).map_err(|source| KeyError::CertificateNotRsa { path: cert_path.clone(), source }.to_string());
    match (&public_key, &cert_key) {
        (Ok(key), Ok(cert_key)) if key.n() == cert_key.n() && key.e() == cert_key.e() => record("key matches certificate", Ok("the certificate's public key is the key's".into())),
        (Ok(_), Ok(_)) => record("key matches certificate", Err(KeyError::KeyMismatch { key: key_path.clone(), cert: cert_path.clone() }.to_string())),
        (_, Err(err)) => record("key matches certificate", Err(err.clone())),
        (Err(_), Ok(_)) => record("key matches certificate", Err("not checked: the private key could not be read".into())),
    }
    if let Ok(cert_key) = &cert_key {
        record("self-signature", check_self_signature(&certificate, cert_key));
    }
    record("validity", check_validity(&certificate, now));
    checks
}

/// Checks that a self-issued certificate's signature verifies with its own
/// key, as the kernel checks a self-signed certificate before it trusts it.
fn check_self_signature(certificate: &Certificate, key: &PublicKey) -> Result<String, String> {
    use rsa::signature::Verifier;
    let tbs = certificate.tbs_certificate();
    if tbs.issuer() != tbs.subject() {
        return Ok(format!("not self-issued (issuer {}); the issuer's signature is not checked", tbs.issuer()));
    }
    let algorithm = certificate.signature_algorithm().oid;
    if algorithm != der::oid::db::rfc5912::SHA_256_WITH_RSA_ENCRYPTION {
        return Err(format!("signature algorithm {algorithm} is not sha256WithRSAEncryption, the one applbuild checks"));
    }
    let tbs_der = tbs.to_der().map_err(|err| format!("cannot encode the certificate body: {err}"))?;
    let signature = rsa::pkcs1v15::Signature::try_from(certificate.signature().raw_bytes()).map_err(|err| format!("invalid RSA signature: {err}"))?;
    rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key.clone())
        .verify(&tbs_der, &signature)
        .map(|()| "sha256WithRSAEncryption self-signature verifies".to_string())
        .map_err(|_| "the certificate's self-signature does not verify: the certificate is corrupt, so create a new key pair with applbuild keys init".to_string())
}

fn check_validity(certificate: &Certificate, now: SystemTime) -> Result<String, String> {
    let validity = certificate.tbs_certificate().validity();
    let now_seconds = now.duration_since(UNIX_EPOCH).map_err(|_| KeyError::ClockBeforeEpoch.to_string())?;
    let (not_before, not_after) = (validity.not_before.to_unix_duration(), validity.not_after.to_unix_duration());
    if now_seconds < not_before {
        return Err(format!("the certificate is not valid before {}: check the clock, or SOURCE_DATE_EPOCH when the key was created", validity.not_before));
    }
    if now_seconds > not_after {
        return Err(format!("the certificate expired on {}: create a new key pair with applbuild keys init", validity.not_after));
    }
    Ok(format!("valid from {} to {}", validity.not_before, validity.not_after))
}

/// Formats the subject, key size, serial number, validity and SHA-256
/// fingerprint of the key pair in `dir`, one `name: value` line each.
///
/// Loads the key pair with all the checks of [`load`].
pub fn describe(dir: &Path) -> Result<String, KeyError> {
    describe_pair(dir, RELEASE)
}

/// Formats the key pair `files` in `dir` as [`describe`] does.
pub fn describe_pair(dir: &Path, files: KeyFiles) -> Result<String, KeyError> {
    let key = load_pair(dir, files)?;
    let tbs = key.certificate.tbs_certificate();
    let validity = tbs.validity();
    let lines = [
        ("directory", dir.display().to_string()),
        ("files", format!("{} {}", files.key, files.cert)),
        ("subject", key.subject()),
        ("issuer", tbs.issuer().to_string()),
        ("key", format!("RSA {} bits", key.key_bits())),
        ("serial", hex::encode(tbs.serial_number().as_bytes())),
        ("not before", validity.not_before.to_string()),
        ("not after", validity.not_after.to_string()),
        ("sha256", hex_colon_upper(&key.cert_sha256())),
    ];
    let mut text = String::new();
    for (name, value) in lines {
        text.push_str(&format!("{:<11} {value}\n", format!("{name}:")));
    }
    Ok(text)
}

/// Certificate profile for a self-signed end-entity code signing certificate.
struct CodeSigningProfile {
    subject: Name,
}

impl BuilderProfile for CodeSigningProfile {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let subject = tbs.subject();
        let key_id = SubjectKeyIdentifier::try_from(spk)?;
        let authority_key_id = AuthorityKeyIdentifier {
            key_identifier: Some(key_id.0.clone()),
            ..Default::default()
        };
        let basic_constraints = BasicConstraints {
            ca: false,
            path_len_constraint: None,
        };

        let mut extensions = Vec::new();
        let next = basic_constraints.to_extension(subject, &extensions)?;
        extensions.push(next);
        let next =
            KeyUsage(KeyUsages::DigitalSignature.into()).to_extension(subject, &extensions)?;
        extensions.push(next);
        let next = ExtendedKeyUsage(vec![ID_KP_CODE_SIGNING]).to_extension(subject, &extensions)?;
        extensions.push(next);
        let next = key_id.to_extension(subject, &extensions)?;
        extensions.push(next);
        let next = authority_key_id.to_extension(subject, &extensions)?;
        extensions.push(next);
        Ok(extensions)
    }
}

fn self_signed_certificate(
    signing_key: &SigningKey<Sha256>,
    subject: Name,
    not_before: DateTime,
) -> Result<Certificate, KeyError> {
    let validity = Validity::new(Time::from(not_before), Time::from(years_later(not_before)?));
    let public_key_info = SubjectPublicKeyInfoOwned::from_key(signing_key.as_ref().as_public_key())
        .map_err(KeyError::EncodePublicKey)?;
    let profile = CodeSigningProfile { subject };

    let builder = CertificateBuilder::new(profile, random_serial()?, validity, public_key_info)
        .map_err(KeyError::BuildCertificate)?;
    builder
        .build::<_, rsa::pkcs1v15::Signature>(signing_key)
        .map_err(KeyError::BuildCertificate)
}

/// Builds the one-attribute name CN=`common_name`, encoded as UTF8String like OpenSSL does.
fn subject_name(common_name: &str) -> Result<Name, KeyError> {
    let invalid = |reason| KeyError::InvalidCommonName {
        name: common_name.to_owned(),
        reason,
    };
    if common_name.trim().is_empty() {
        return Err(invalid(
            "the common name must not be empty or only whitespace",
        ));
    }
    if common_name.chars().count() > MAX_COMMON_NAME_LEN {
        return Err(invalid("the common name must have at most 64 characters"));
    }
    if common_name.chars().any(char::is_control) {
        return Err(invalid(
            "the common name must not contain control characters",
        ));
    }

    let encode_error = |source| KeyError::EncodeSubject {
        name: common_name.to_owned(),
        source,
    };
    let value = Utf8StringRef::new(common_name).map_err(encode_error)?;
    let attribute = AttributeTypeAndValue {
        oid: CN,
        value: Any::encode_from(&value).map_err(encode_error)?,
    };
    let rdn = RelativeDistinguishedName::try_from(vec![attribute]).map_err(encode_error)?;
    let mut rdns = RdnSequence::default();
    rdns.push(rdn);
    let der = rdns.to_der().map_err(encode_error)?;
    Name::from_der(&der).map_err(encode_error)
}

/// Returns the certificate notBefore: `SOURCE_DATE_EPOCH` if set, else the current time.
fn validity_start() -> Result<DateTime, KeyError> {
    let seconds = match std::env::var_os("SOURCE_DATE_EPOCH") {
        Some(value) => parse_source_date_epoch(&value)?,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| KeyError::ClockBeforeEpoch)?
            .as_secs(),
    };
    let invalid = || KeyError::InvalidSourceDateEpoch {
        value: seconds.to_string(),
    };
    let start =
        DateTime::from_unix_duration(Duration::from_secs(seconds)).map_err(|_| invalid())?;
    // notAfter must still fit in the four-digit years of GeneralizedTime.
    if start.year() > 9999 - VALIDITY_YEARS {
        return Err(invalid());
    }
    Ok(start)
}

/// Parses `SOURCE_DATE_EPOCH` as defined by reproducible-builds.org: a
/// decimal count of seconds since 1970-01-01 00:00:00 UTC.
fn parse_source_date_epoch(value: &std::ffi::OsStr) -> Result<u64, KeyError> {
    let invalid = || KeyError::InvalidSourceDateEpoch {
        value: value.to_string_lossy().into_owned(),
    };
    let text = value.to_str().ok_or_else(invalid)?;
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(invalid());
    }
    text.parse::<u64>().map_err(|_| invalid())
}

/// Returns the same date and time `VALIDITY_YEARS` later. 29 February becomes
/// 28 February when the later year is not a leap year.
fn years_later(start: DateTime) -> Result<DateTime, KeyError> {
    let year = start.year() + VALIDITY_YEARS;
    let at_day = |day| {
        DateTime::new(
            year,
            start.month(),
            day,
            start.hour(),
            start.minutes(),
            start.seconds(),
        )
    };
    match at_day(start.day()) {
        Err(_) if start.month() == 2 && start.day() == 29 => at_day(28),
        other => other,
    }
    .map_err(KeyError::Validity)
}

/// Returns a positive serial number of exactly `SERIAL_LEN` bytes from the system RNG.
fn random_serial() -> Result<SerialNumber, KeyError> {
    let mut bytes = [0u8; SERIAL_LEN];
    getrandom::fill(&mut bytes).map_err(KeyError::Random)?;
    // Clear the sign bit so the INTEGER is positive, and set the next bit so
    // no leading zero byte is stripped and the length stays fixed.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::new(&bytes).map_err(KeyError::EncodeCertificate)
}

fn create_key_dir(dir: &Path) -> Result<(), KeyError> {
    let create_error = |source| KeyError::CreateDir {
        path: dir.to_path_buf(),
        source,
    };
    if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(create_error)?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(err) => Err(create_error(err)),
    }
}

/// Writes `contents` to a file that must not exist yet, created with `mode`
/// so that no other user can open it between creation and write.
fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyError> {
    let write_error = |source: io::Error| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            KeyError::AlreadyExists {
                path: path.to_path_buf(),
            }
        } else {
            KeyError::WriteFile {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(write_error)?;
    file.write_all(contents).map_err(write_error)?;
    file.sync_all().map_err(write_error)
}

/// Reads a private key file after checking, on the open file, that group
/// and others have no access to it.
fn read_private_file(path: &Path) -> Result<der::zeroize::Zeroizing<Vec<u8>>, KeyError> {
    let read_error = |source| KeyError::ReadFile {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_error)?;
    let mode = file.metadata().map_err(read_error)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecureKeyMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut contents = der::zeroize::Zeroizing::new(Vec::new());
    file.read_to_end(&mut contents).map_err(read_error)?;
    Ok(contents)
}

fn parse_private_key(path: &Path, pem: &[u8]) -> Result<PrivateKey, KeyError> {
    let (label, der) = der::pem::decode_vec(pem).map_err(|source| KeyError::KeyPem {
        path: path.to_path_buf(),
        source,
    })?;
    let der = der::zeroize::Zeroizing::new(der);
    match label {
        "PRIVATE KEY" => {}
        "ENCRYPTED PRIVATE KEY" => {
            return Err(KeyError::EncryptedKey {
                path: path.to_path_buf(),
            })
        }
        "RSA PRIVATE KEY" => {
            return Err(KeyError::Pkcs1Key {
                path: path.to_path_buf(),
            })
        }
        other => {
            return Err(KeyError::UnexpectedKeyLabel {
                path: path.to_path_buf(),
                label: other.to_owned(),
            })
        }
    }
    PrivateKey::from_pkcs8_der(&der).map_err(|source| KeyError::ParseKey {
        path: path.to_path_buf(),
        source,
    })
}

fn modulus_bits(key: &PublicKey) -> usize {
    key.n().bit_width() as usize
}

/// Formats bytes like `openssl x509 -fingerprint`: uppercase hex pairs joined by colons.
fn hex_colon_upper(bytes: &[u8]) -> String {
    let pairs: Vec<String> = bytes.iter().map(|byte| format!("{byte:02X}")).collect();
    pairs.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn source_date_epoch_accepts_decimal_seconds() {
        assert_eq!(
            parse_source_date_epoch(OsStr::new("1700000000")).ok(),
            Some(1_700_000_000)
        );
        assert_eq!(parse_source_date_epoch(OsStr::new("0")).ok(), Some(0));
    }

    #[test]
    fn source_date_epoch_rejects_non_decimal() {
        for value in [
            "",
            " 17",
            "-1",
            "1.5",
            "17e8",
            "0x10",
            "99999999999999999999999",
        ] {
            let result = parse_source_date_epoch(OsStr::new(value));
            assert!(
                matches!(result, Err(KeyError::InvalidSourceDateEpoch { .. })),
                "{value:?} was accepted: {result:?}"
            );
        }
    }

    #[test]
    fn years_later_keeps_date_and_time() -> Result<(), KeyError> {
        let start = DateTime::new(2026, 12, 4, 21, 7, 3).map_err(KeyError::Validity)?;
        let end = years_later(start)?;
        assert_eq!(
            end,
            DateTime::new(2056, 12, 4, 21, 7, 3).map_err(KeyError::Validity)?
        );
        Ok(())
    }

    #[test]
    fn years_later_moves_february_29() -> Result<(), KeyError> {
        let start = DateTime::new(2028, 2, 29, 12, 0, 0).map_err(KeyError::Validity)?;
        let end = years_later(start)?;
        assert_eq!(
            end,
            DateTime::new(2058, 2, 28, 12, 0, 0).map_err(KeyError::Validity)?
        );
        Ok(())
    }

    #[test]
    fn serial_is_positive_and_fixed_length() -> Result<(), KeyError> {
        for _ in 0..64 {
            let serial = random_serial()?;
            let bytes = serial.as_bytes();
            assert_eq!(bytes.len(), SERIAL_LEN);
            assert_eq!(bytes[0] & 0xc0, 0x40);
        }
        Ok(())
    }

    #[test]
    fn common_name_validation() {
        assert!(subject_name("release").is_ok());
        assert!(subject_name("a, b = c + d").is_ok());
        for name in ["", "   ", "line\nbreak"] {
            assert!(
                matches!(subject_name(name), Err(KeyError::InvalidCommonName { .. })),
                "{name:?} was accepted"
            );
        }
        let long = "x".repeat(MAX_COMMON_NAME_LEN + 1);
        assert!(matches!(
            subject_name(&long),
            Err(KeyError::InvalidCommonName { .. })
        ));
    }
}
