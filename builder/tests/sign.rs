//! Tests of `keys` and `sign` against the openssl command line tool.
//!
//! Every test works in its own temporary directory. Tests that call
//! `keys::init` hold `ENV_LOCK`, because one of them sets SOURCE_DATE_EPOCH
//! and `init` reads it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

use applbuild::keys::{self, KeyError, KeyPair};
use applbuild::sign;
use tempfile::TempDir;

type TestResult = Result<(), Box<dyn std::error::Error>>;

static ENV_LOCK: Mutex<()> = Mutex::new(());

/// A dm-verity root hash as `veritysetup` prints it: 64 lowercase hex digits, no newline.
const ROOT_HASH: &str = "4d3c2b1a0f9e8d7c6b5a49382716f5e4d3c2b1a0f9e8d7c6b5a49382716f5e4";

fn env_lock() -> MutexGuard<'static, ()> {
    ENV_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Directory of the openssl-made test key pair in the repository.
fn repo_test_keys() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys/test")
}

/// Copies the repository test keys into `dir`, with key.pem at mode 0600.
///
/// Git does not store file modes other than the executable bit, so a fresh
/// clone has keys/test/key.pem at the umask default (usually 0644).
fn copy_test_keys(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::copy(repo_test_keys().join("key.pem"), dir.join("key.pem"))?;
    fs::copy(repo_test_keys().join("cert.pem"), dir.join("cert.pem"))?;
    fs::set_permissions(dir.join("key.pem"), fs::Permissions::from_mode(0o600))?;
    Ok(())
}

fn load_test_keys(tmp: &TempDir) -> Result<(PathBuf, KeyPair), Box<dyn std::error::Error>> {
    let dir = tmp.path().join("test-keys");
    copy_test_keys(&dir)?;
    let key = keys::load(&dir)?;
    Ok((dir, key))
}

/// Runs openssl with `args` and returns its output. Returns an error that
/// contains openssl's stderr if openssl exits with a failure status.
fn openssl(args: &[&str]) -> Result<Output, Box<dyn std::error::Error>> {
    let output = Command::new("openssl").args(args).output()?;
    if !output.status.success() {
        return Err(format!(
            "openssl {} failed with {}: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(output)
}

fn path_str(path: &Path) -> Result<&str, Box<dyn std::error::Error>> {
    path.to_str()
        .ok_or_else(|| format!("path {} is not UTF-8", path.display()).into())
}

fn mode_of(path: &Path) -> std::io::Result<u32> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o7777)
}

/// Returns the `openssl cms -cmsout -print` dump of a DER CMS file.
fn cms_print(path: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let output = openssl(&[
        "cms",
        "-cmsout",
        "-print",
        "-inform",
        "DER",
        "-in",
        path_str(path)?,
    ])?;
    Ok(String::from_utf8(output.stdout)?)
}

/// Returns the line after the line that ends with `label` in an openssl dump.
fn value_after<'a>(dump: &'a str, label: &str) -> Option<&'a str> {
    let mut lines = dump.lines();
    while let Some(line) = lines.next() {
        if line.trim_end().ends_with(label) {
            return lines.next().map(str::trim);
        }
    }
    None
}

#[test]
fn init_creates_key_and_certificate() -> TestResult {
    let tmp = TempDir::new()?;
    let dir = tmp.path().join("keys/dev");
    {
        let _env = env_lock();
        keys::init(&dir, keys::DEFAULT_BITS, "applbuild release test")?;
    }

    assert_eq!(mode_of(&dir)?, 0o700, "key directory mode");
    assert_eq!(mode_of(&dir.join("key.pem"))?, 0o600, "key.pem mode");
    let key_pem = fs::read_to_string(dir.join("key.pem"))?;
    assert!(
        key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "key.pem is not PKCS#8 PEM"
    );

    let cert = path_str(&dir.join("cert.pem"))?.to_owned();
    let text = String::from_utf8(openssl(&["x509", "-noout", "-text", "-in", &cert])?.stdout)?;
    for expected in [
        "Version: 3 (0x2)",
        "Signature Algorithm: sha256WithRSAEncryption",
        "Issuer: CN = applbuild release test",
        "Subject: CN = applbuild release test",
        "Public-Key: (3072 bit)",
        "X509v3 Basic Constraints: critical",
        "CA:FALSE",
        "X509v3 Key Usage: critical",
        "Digital Signature",
        "X509v3 Extended Key Usage",
        "Code Signing",
        "X509v3 Subject Key Identifier",
        "X509v3 Authority Key Identifier",
    ] {
        assert!(
            text.contains(expected),
            "certificate text lacks {expected:?}:\n{text}"
        );
    }
    assert!(
        !text.contains("Certificate Sign"),
        "certificate allows keyCertSign:\n{text}"
    );

    let subject_key_id =
        value_after(&text, "X509v3 Subject Key Identifier:").ok_or("no SKID value")?;
    let authority_key_id =
        value_after(&text, "X509v3 Authority Key Identifier:").ok_or("no AKID value")?;
    assert_eq!(
        authority_key_id.trim_start_matches("keyid:"),
        subject_key_id
    );

    // The key in key.pem belongs to the certificate.
    let key = path_str(&dir.join("key.pem"))?.to_owned();
    let cert_public = openssl(&["x509", "-noout", "-pubkey", "-in", &cert])?.stdout;
    let key_public = openssl(&["pkey", "-pubout", "-in", &key])?.stdout;
    assert_eq!(cert_public, key_public);

    // The self-signature verifies.
    openssl(&["verify", "-CAfile", &cert, "-purpose", "any", &cert])?;

    let pair = keys::load(&dir)?;
    assert_eq!(pair.key_bits(), 3072);
    assert_eq!(pair.subject(), "CN=applbuild release test");
    Ok(())
}

#[test]
fn init_validity_follows_source_date_epoch() -> TestResult {
    let tmp = TempDir::new()?;
    let dir = tmp.path().join("keys");
    {
        let _env = env_lock();
        std::env::set_var("SOURCE_DATE_EPOCH", "1700000000");
        let result = keys::init(&dir, 2048, "epoch test");
        std::env::remove_var("SOURCE_DATE_EPOCH");
        result?;
    }

    let cert = path_str(&dir.join("cert.pem"))?.to_owned();
    let dates = String::from_utf8(openssl(&["x509", "-noout", "-dates", "-in", &cert])?.stdout)?;
    // 1700000000 is 2023-11-14 22:13:20 UTC.
    assert!(
        dates.contains("notBefore=Nov 14 22:13:20 2023 GMT"),
        "{dates}"
    );
    assert!(
        dates.contains("notAfter=Nov 14 22:13:20 2053 GMT"),
        "{dates}"
    );
    Ok(())
}

#[test]
fn init_rejects_invalid_source_date_epoch() -> TestResult {
    let tmp = TempDir::new()?;
    let dir = tmp.path().join("keys");
    let result = {
        let _env = env_lock();
        std::env::set_var("SOURCE_DATE_EPOCH", "yesterday");
        let result = keys::init(&dir, 2048, "epoch test");
        std::env::remove_var("SOURCE_DATE_EPOCH");
        result
    };
    assert!(
        matches!(result, Err(KeyError::InvalidSourceDateEpoch { .. })),
        "{result:?}"
    );
    assert!(!dir.join("key.pem").exists());
    Ok(())
}

#[test]
fn init_rejects_existing_files() -> TestResult {
    let tmp = TempDir::new()?;
    for existing in ["key.pem", "cert.pem"] {
        let dir = tmp.path().join(existing.replace('.', "-"));
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(existing), "old contents")?;

        let result = {
            let _env = env_lock();
            keys::init(&dir, 2048, "overwrite test")
        };

        let err = result
            .err()
            .ok_or("init overwrote an existing key directory")?;
        assert!(matches!(err, KeyError::AlreadyExists { .. }), "{err:?}");
        assert!(err.to_string().contains(existing), "{err}");
        assert_eq!(fs::read_to_string(dir.join(existing))?, "old contents");
        assert_eq!(
            fs::read_dir(&dir)?.count(),
            1,
            "init wrote files into {}",
            dir.display()
        );
    }
    Ok(())
}

#[test]
fn init_rejects_invalid_arguments() -> TestResult {
    let tmp = TempDir::new()?;
    let dir = tmp.path().join("keys");
    let _env = env_lock();

    let small = keys::init(&dir, 1024, "small");
    assert!(
        matches!(small, Err(KeyError::InvalidKeySize { bits: 1024 })),
        "{small:?}"
    );

    let empty = keys::init(&dir, 2048, "");
    assert!(
        matches!(empty, Err(KeyError::InvalidCommonName { .. })),
        "{empty:?}"
    );

    assert!(
        !dir.exists(),
        "init created {} for invalid arguments",
        dir.display()
    );
    Ok(())
}

#[test]
fn load_accepts_repository_test_keys() -> TestResult {
    let tmp = TempDir::new()?;
    let (dir, key) = load_test_keys(&tmp)?;

    assert_eq!(key.key_bits(), 3072);
    assert_eq!(
        key.subject(),
        "CN=applbuild TEST key - do not use in production"
    );

    let der = openssl(&[
        "x509",
        "-outform",
        "DER",
        "-in",
        path_str(&dir.join("cert.pem"))?,
    ])?
    .stdout;
    assert_eq!(
        key.cert_der(),
        der.as_slice(),
        "cert_der differs from openssl's DER"
    );
    assert_eq!(key.cert_pem(), fs::read_to_string(dir.join("cert.pem"))?);

    let fingerprint = String::from_utf8(
        openssl(&[
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-in",
            path_str(&dir.join("cert.pem"))?,
        ])?
        .stdout,
    )?;
    let expected: String = fingerprint
        .trim()
        .rsplit('=')
        .next()
        .unwrap_or_default()
        .replace(':', "")
        .to_lowercase();
    assert_eq!(hex::encode(key.cert_sha256()), expected);
    Ok(())
}

#[test]
fn load_rejects_group_readable_key() -> TestResult {
    let tmp = TempDir::new()?;
    let dir = tmp.path().join("keys");
    copy_test_keys(&dir)?;
    let key_path = dir.join("key.pem");
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o644))?;

    let err = keys::load(&dir)
        .err()
        .ok_or("load accepted a key with mode 0644")?;

    assert!(
        matches!(err, KeyError::InsecureKeyMode { mode: 0o644, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("key file {} has mode 0644", key_path.display())),
        "{message}"
    );
    assert!(
        message.contains(&format!("run chmod 600 {}", key_path.display())),
        "{message}"
    );
    Ok(())
}

#[test]
fn load_rejects_key_of_other_certificate() -> TestResult {
    let tmp = TempDir::new()?;
    let dir = tmp.path().join("keys");
    copy_test_keys(&dir)?;
    let other_key = tmp.path().join("other-key.pem");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=other",
        "-days",
        "1",
        "-keyout",
        path_str(&other_key)?,
        "-out",
        path_str(&dir.join("cert.pem"))?,
    ])?;

    let err = keys::load(&dir)
        .err()
        .ok_or("load accepted a key that does not match cert.pem")?;

    assert!(matches!(err, KeyError::KeyMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("does not match"), "{err}");
    Ok(())
}

#[test]
fn load_rejects_1024_bit_key() -> TestResult {
    let tmp = TempDir::new()?;
    let dir = tmp.path().join("keys");
    fs::create_dir_all(&dir)?;
    let key_path = path_str(&dir.join("key.pem"))?.to_owned();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:1024",
        "-nodes",
        "-subj",
        "/CN=small",
        "-days",
        "1",
        "-keyout",
        &key_path,
        "-out",
        path_str(&dir.join("cert.pem"))?,
    ])?;
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600))?;

    let err = keys::load(&dir)
        .err()
        .ok_or("load accepted a 1024-bit key")?;

    assert!(
        matches!(err, KeyError::KeyTooSmall { bits: 1024, .. }),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn load_rejects_pkcs1_key() -> TestResult {
    let tmp = TempDir::new()?;
    let dir = tmp.path().join("keys");
    copy_test_keys(&dir)?;
    let key_path = path_str(&dir.join("key.pem"))?.to_owned();
    let pkcs1 = openssl(&["rsa", "-traditional", "-in", &key_path])?.stdout;
    fs::write(&key_path, pkcs1)?;

    let err = keys::load(&dir).err().ok_or("load accepted a PKCS#1 key")?;

    assert!(matches!(err, KeyError::Pkcs1Key { .. }), "{err:?}");
    assert!(
        err.to_string().contains("openssl pkcs8 -topk8 -nocrypt"),
        "{err}"
    );
    Ok(())
}

#[test]
fn load_reports_missing_key_file() -> TestResult {
    let tmp = TempDir::new()?;
    let dir = tmp.path().join("absent");

    let err = keys::load(&dir)
        .err()
        .ok_or("load accepted a missing directory")?;

    assert!(matches!(err, KeyError::ReadFile { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&dir.join("key.pem").display().to_string()),
        "{err}"
    );
    Ok(())
}

#[test]
fn key_pair_debug_hides_private_key() -> TestResult {
    let tmp = TempDir::new()?;
    let (dir, key) = load_test_keys(&tmp)?;
    let debug = format!("{key:?}");

    assert!(debug.contains("CN=applbuild TEST key"), "{debug}");
    assert!(debug.contains(&hex::encode(key.cert_sha256())), "{debug}");

    // The leading bytes of the first prime factor must not appear in the output.
    let key_text = String::from_utf8(
        openssl(&[
            "pkey",
            "-noout",
            "-text",
            "-in",
            path_str(&dir.join("key.pem"))?,
        ])?
        .stdout,
    )?;
    let prime_line = key_text
        .lines()
        .skip_while(|line| !line.starts_with("prime1:"))
        .nth(1)
        .ok_or("no prime1 in openssl output")?;
    let prime_hex = prime_line.trim().replace(':', "");
    assert!(!debug.to_lowercase().contains(&prime_hex), "{debug}");
    assert!(
        debug.len() < 300,
        "Debug output is unexpectedly long: {debug}"
    );
    Ok(())
}

#[test]
fn describe_shows_certificate_summary() -> TestResult {
    let tmp = TempDir::new()?;
    let (dir, key) = load_test_keys(&tmp)?;

    let text = keys::describe(&dir)?;

    assert!(
        text.contains("subject:    CN=applbuild TEST key - do not use in production\n"),
        "{text}"
    );
    assert!(text.contains("key:        RSA 3072 bits\n"), "{text}");
    assert!(
        text.contains("serial:     39a515e80ca9f7c34abaf474f2b1cda6203ece42\n"),
        "{text}"
    );
    let colon_fingerprint: Vec<String> = key
        .cert_sha256()
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect();
    assert!(text.contains(&colon_fingerprint.join(":")), "{text}");
    assert!(text.contains("not before:"), "{text}");
    assert!(text.contains("not after:"), "{text}");
    Ok(())
}

#[test]
fn detached_signature_verifies_with_openssl() -> TestResult {
    let tmp = TempDir::new()?;
    let (dir, key) = load_test_keys(&tmp)?;
    let content_path = tmp.path().join("roothash.txt");
    let signature_path = tmp.path().join("roothash.p7s");
    fs::write(&content_path, ROOT_HASH)?;

    let signature = sign::sign_detached(&key, ROOT_HASH.as_bytes())?;
    fs::write(&signature_path, &signature)?;

    let cert = path_str(&dir.join("cert.pem"))?.to_owned();
    openssl(&[
        "smime",
        "-verify",
        "-binary",
        "-inform",
        "der",
        "-content",
        path_str(&content_path)?,
        "-certfile",
        &cert,
        "-CAfile",
        &cert,
        "-purpose",
        "any",
        "-in",
        path_str(&signature_path)?,
        "-out",
        "/dev/null",
    ])?;

    // A changed root hash must not verify.
    let tampered_path = tmp.path().join("tampered.txt");
    fs::write(&tampered_path, ROOT_HASH.replace('4', "5"))?;
    let tampered = Command::new("openssl")
        .args([
            "smime",
            "-verify",
            "-binary",
            "-inform",
            "der",
            "-content",
            path_str(&tampered_path)?,
            "-certfile",
            &cert,
            "-CAfile",
            &cert,
            "-purpose",
            "any",
            "-in",
            path_str(&signature_path)?,
            "-out",
            "/dev/null",
        ])
        .output()?;
    assert!(
        !tampered.status.success(),
        "openssl accepted a signature over other content"
    );
    Ok(())
}

#[test]
fn detached_signature_structure() -> TestResult {
    let tmp = TempDir::new()?;
    let (_dir, key) = load_test_keys(&tmp)?;
    let signature_path = tmp.path().join("roothash.p7s");
    fs::write(
        &signature_path,
        sign::sign_detached(&key, ROOT_HASH.as_bytes())?,
    )?;

    let dump = cms_print(&signature_path)?;

    assert!(dump.contains("contentType: pkcs7-signedData"), "{dump}");
    assert!(dump.contains("eContentType: pkcs7-data"), "{dump}");
    assert!(dump.contains("eContent: <ABSENT>"), "{dump}");
    assert_eq!(
        value_after(&dump, "certificates:"),
        Some("<ABSENT>"),
        "{dump}"
    );
    assert_eq!(
        value_after(&dump, "signedAttrs:"),
        Some("<ABSENT>"),
        "{dump}"
    );
    assert_eq!(
        value_after(&dump, "unsignedAttrs:"),
        Some("<ABSENT>"),
        "{dump}"
    );
    assert!(dump.contains("d.issuerAndSerialNumber:"), "{dump}");
    assert!(
        dump.contains("algorithm: sha256 (2.16.840.1.101.3.4.2.1)"),
        "{dump}"
    );
    assert!(
        dump.contains("algorithm: rsaEncryption (1.2.840.113549.1.1.1)"),
        "{dump}"
    );
    Ok(())
}

#[test]
fn detached_signature_is_deterministic() -> TestResult {
    let tmp = TempDir::new()?;
    let (_dir, key) = load_test_keys(&tmp)?;

    let first = sign::sign_detached(&key, ROOT_HASH.as_bytes())?;
    let second = sign::sign_detached(&key, ROOT_HASH.as_bytes())?;

    assert_eq!(first, second);
    Ok(())
}

#[test]
fn detached_signature_matches_openssl_bytes() -> TestResult {
    let tmp = TempDir::new()?;
    let (dir, key) = load_test_keys(&tmp)?;
    let content_path = tmp.path().join("roothash.txt");
    fs::write(&content_path, ROOT_HASH)?;

    let ours = sign::sign_detached(&key, ROOT_HASH.as_bytes())?;
    let theirs = openssl(&[
        "smime",
        "-sign",
        "-binary",
        "-noattr",
        "-nocerts",
        "-outform",
        "der",
        "-md",
        "sha256",
        "-signer",
        path_str(&dir.join("cert.pem"))?,
        "-inkey",
        path_str(&dir.join("key.pem"))?,
        "-in",
        path_str(&content_path)?,
    ])?
    .stdout;

    assert_eq!(hex::encode(&ours), hex::encode(&theirs));
    Ok(())
}

#[test]
fn attached_signature_verifies_with_openssl() -> TestResult {
    let tmp = TempDir::new()?;
    let (dir, key) = load_test_keys(&tmp)?;
    let policy = "policy_name=appliance policy_version=0.0.1\nDEFAULT action=DENY\nop=EXECUTE dmverity_signature=TRUE action=ALLOW\n";
    let signature_path = tmp.path().join("policy.p7s");
    fs::write(
        &signature_path,
        sign::sign_attached(&key, policy.as_bytes())?,
    )?;

    let output = openssl(&[
        "smime",
        "-verify",
        "-inform",
        "der",
        "-CAfile",
        path_str(&dir.join("cert.pem"))?,
        "-purpose",
        "any",
        "-in",
        path_str(&signature_path)?,
    ])?;

    assert_eq!(String::from_utf8(output.stdout)?, policy);
    Ok(())
}

#[test]
fn attached_signature_structure() -> TestResult {
    let tmp = TempDir::new()?;
    let (_dir, key) = load_test_keys(&tmp)?;
    let signature_path = tmp.path().join("policy.p7s");
    fs::write(&signature_path, sign::sign_attached(&key, b"policy")?)?;

    let dump = cms_print(&signature_path)?;

    assert!(dump.contains("eContentType: pkcs7-data"), "{dump}");
    // openssl prints eContent as a hex dump, in which "policy" is 70 6f 6c 69 63 79.
    let econtent = value_after(&dump, "eContent:").ok_or("no eContent in dump")?;
    assert!(econtent.contains("70 6f 6c 69 63 79"), "{dump}");
    assert!(dump.contains("d.certificate:"), "{dump}");
    assert_eq!(
        value_after(&dump, "signedAttrs:"),
        Some("<ABSENT>"),
        "{dump}"
    );

    // The embedded certificate is the signer certificate, byte for byte.
    let certs_path = tmp.path().join("certs.pem");
    openssl(&[
        "pkcs7",
        "-print_certs",
        "-inform",
        "DER",
        "-in",
        path_str(&signature_path)?,
        "-out",
        path_str(&certs_path)?,
    ])?;
    let embedded = openssl(&["x509", "-outform", "DER", "-in", path_str(&certs_path)?])?.stdout;
    assert_eq!(embedded, key.cert_der());
    Ok(())
}

#[test]
fn attached_signature_matches_openssl_bytes() -> TestResult {
    let tmp = TempDir::new()?;
    let (dir, key) = load_test_keys(&tmp)?;
    let content_path = tmp.path().join("policy.txt");
    fs::write(&content_path, "policy_name=test policy_version=0.0.1\n")?;

    let ours = sign::sign_attached(&key, &fs::read(&content_path)?)?;
    let theirs = openssl(&[
        "smime",
        "-sign",
        "-nodetach",
        "-binary",
        "-noattr",
        "-outform",
        "der",
        "-md",
        "sha256",
        "-signer",
        path_str(&dir.join("cert.pem"))?,
        "-inkey",
        path_str(&dir.join("key.pem"))?,
        "-in",
        path_str(&content_path)?,
    ])?
    .stdout;

    assert_eq!(hex::encode(&ours), hex::encode(&theirs));
    Ok(())
}

#[test]
fn init_key_signs_verifiable_root_hash() -> TestResult {
    let tmp = TempDir::new()?;
    let dir = tmp.path().join("keys");
    {
        let _env = env_lock();
        keys::init(&dir, 2048, "roundtrip")?;
    }
    let key = keys::load(&dir)?;
    let content_path = tmp.path().join("roothash.txt");
    let signature_path = tmp.path().join("roothash.p7s");
    fs::write(&content_path, ROOT_HASH)?;
    fs::write(
        &signature_path,
        sign::sign_detached(&key, ROOT_HASH.as_bytes())?,
    )?;

    let cert = path_str(&dir.join("cert.pem"))?.to_owned();
    openssl(&[
        "cms",
        "-verify",
        "-binary",
        "-inform",
        "der",
        "-content",
        path_str(&content_path)?,
        "-certfile",
        &cert,
        "-CAfile",
        &cert,
        "-purpose",
        "any",
        "-in",
        path_str(&signature_path)?,
        "-out",
        "/dev/null",
    ])?;
    Ok(())
}
