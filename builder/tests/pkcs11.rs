//! Tests of signing with a PKCS#11 key, against SoftHSM2 (`apt-get install
//! softhsm2`). Each test makes its own token folder and skips when SoftHSM2
//! is not installed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use applbuild::keys;
use applbuild::pkcs11::{Pkcs11Key, Pkcs11Uri};
use applbuild::sign;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "1234";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repository root")
}

/// A SoftHSM2 configuration and token folder with the test key imported
/// under the label `applbuild` in the token `release`.
struct Token {
    dir: tempfile::TempDir,
}

impl Token {
    fn new() -> Option<Token> {
        if !Path::new(MODULE).exists() || Command::new("softhsm2-util").arg("--version").output().is_err() {
            eprintln!("skipped: SoftHSM2 is not installed (apt-get install softhsm2)");
            return None;
        }
        let dir = tempfile::tempdir().expect("temporary folder");
        fs::create_dir(dir.path().join("tokens")).expect("token folder");
        fs::write(dir.path().join("softhsm2.conf"), format!("directories.tokendir = {}/tokens\nobjectstore.backend = file\n", dir.path().display())).expect("write configuration");
        let token = Token { dir };
        token.util(&["--init-token", "--free", "--label", "release", "--so-pin", "5678", "--pin", PIN]);
        token.import(&repo().join("keys/test/key.pem"), "applbuild", "01");
        Some(token)
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    fn util(&self, args: &[&str]) {
        let output = Command::new("softhsm2-util").env("SOFTHSM2_CONF", self.config()).args(args).output().expect("run softhsm2-util");
        assert!(output.status.success(), "softhsm2-util {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }

    fn import(&self, key: &Path, label: &str, id: &str) {
        let key = key.to_str().expect("UTF-8 path");
        self.util(&["--import", key, "--token", "release", "--label", label, "--id", id, "--pin", PIN]);
    }

    fn uri(&self, path: &str, pin: &str) -> String {
        format!("pkcs11:{path}?module-path={MODULE}&pin-value={pin}")
    }
}

fn certificate() -> x509_cert::Certificate {
    keys::load_certificate(&repo().join("keys/test/cert.pem")).expect("test certificate")
}

fn key_pair(dir: &Path) -> keys::KeyPair {
    for name in ["key.pem", "cert.pem"] {
        fs::copy(repo().join("keys/test").join(name), dir.join(name)).expect("copy test key");
    }
    fs::set_permissions(dir.join("key.pem"), fs::Permissions::from_mode(0o600)).expect("chmod key");
    keys::load(dir).expect("load test keys")
}

// SOFTHSM2_CONF is process-wide, so the tests that open a token run one at
// a time under this lock.
static TOKEN_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn token_signatures_equal_key_file() {
    let _guard = TOKEN_LOCK.lock().unwrap_or_else(|poison| poison.into_inner());
    let Some(token) = Token::new() else { return };
    std::env::set_var("SOFTHSM2_CONF", token.config());
    let hsm_key = Pkcs11Key::open(&token.uri("token=release;object=applbuild", PIN), certificate()).expect("open token key");
    let file_dir = tempfile::tempdir().expect("temporary folder");
    let file_key = key_pair(file_dir.path());

    let content = b"5b6c90856d7b5f6ad15117c0a2f5a5ea168c74e6361094493b69c18ef25e2e1a";
    let from_token = sign::sign_detached(&hsm_key, content).expect("token signs");
    let from_file = sign::sign_detached(&file_key, content).expect("file key signs");
    assert_eq!(from_token, from_file);
    let attached_token = sign::sign_attached(&hsm_key, b"policy").expect("token signs");
    let attached_file = sign::sign_attached(&file_key, b"policy").expect("file key signs");
    assert_eq!(attached_token, attached_file);
}

#[test]
fn token_errors_are_reported() {
    let _guard = TOKEN_LOCK.lock().unwrap_or_else(|poison| poison.into_inner());
    let Some(token) = Token::new() else { return };
    std::env::set_var("SOFTHSM2_CONF", token.config());

    let wrong_pin = Pkcs11Key::open(&token.uri("token=release;object=applbuild", "9999"), certificate());
    assert!(matches!(wrong_pin, Err(applbuild::pkcs11::Pkcs11Error::Module { action: "log in", .. })), "{:?}", wrong_pin.err());
    let no_token = Pkcs11Key::open(&token.uri("token=other;object=applbuild", PIN), certificate());
    assert!(matches!(no_token, Err(applbuild::pkcs11::Pkcs11Error::TokenNotFound { .. })), "{:?}", no_token.err());

    let second = tempfile::tempdir().expect("temporary folder");
    keys::init(second.path(), 2048, "second").expect("second key");
    token.import(&second.path().join("key.pem"), "second", "02");
    let ambiguous = Pkcs11Key::open(&token.uri("token=release", PIN), certificate());
    assert!(matches!(ambiguous, Err(applbuild::pkcs11::Pkcs11Error::KeyNotUnique { count: 2, .. })), "{:?}", ambiguous.err());
    let by_id = Pkcs11Key::open(&token.uri("token=release;id=%02", PIN), certificate()).expect("open by id");
    // The key with id 02 does not belong to the test certificate.
    let signature = sign::sign_detached(&by_id, b"content").expect("token signs");
    assert!(sign::verify_detached(&signature, b"content", &certificate()).is_err());
}

#[test]
fn uri_parsing() {
    let uri = Pkcs11Uri::parse("pkcs11:token=my%20token;object=key;id=%01%ff?module-path=/lib/x.so&pin-source=/run/pin").expect("parse");
    assert_eq!(uri.token.as_deref(), Some("my token"));
    assert_eq!(uri.object.as_deref(), Some("key"));
    assert_eq!(uri.id, Some(vec![0x01, 0xff]));
    assert_eq!(uri.module_path.as_deref(), Some("/lib/x.so"));
    assert_eq!(uri.pin_source.as_deref(), Some("/run/pin"));
    assert_eq!(uri.pin_value, None);
    for invalid in ["token=x", "pkcs11:token", "pkcs11:slot=1", "pkcs11:id=%zz", "pkcs11:object=k?pin=1", "pkcs11:module-path=/x.so"] {
        assert!(Pkcs11Uri::parse(invalid).is_err(), "{invalid:?} was accepted");
    }
}

#[test]
#[ignore = "builds the default board twice: needs root, the cached kernel and SoftHSM2"]
fn unsigned_image_signed_in_token_matches() {
    let _guard = TOKEN_LOCK.lock().unwrap_or_else(|poison| poison.into_inner());
    let Some(token) = Token::new() else { return };
    let work = tempfile::tempdir().expect("temporary folder");
    let keys_dir = work.path().join("keys");
    fs::create_dir(&keys_dir).expect("key folder");
    key_pair(&keys_dir);
    let binary = env!("CARGO_BIN_EXE_applbuild");
    let build = |extra: &[&str], out: &str| {
        let output = Command::new(binary)
            .current_dir(repo())
            .env("SOURCE_DATE_EPOCH", "1764806400")
            .arg("image")
            .args(extra)
            .args(["boards/qemu-x86_64.toml", "--keys"])
            .arg(&keys_dir)
            .arg("--out")
            .arg(work.path().join(out))
            .output()
            .expect("run applbuild image");
        assert!(output.status.success(), "applbuild image {extra:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        work.path().join(out).join("qemu-x86_64/1.0.0")
    };
    let signed = build(&[], "signed");
    let unsigned = build(&["--unsigned"], "unsigned");

    let output = Command::new(binary)
        .env("SOFTHSM2_CONF", token.config())
        .arg("sign")
        .arg(&unsigned)
        .arg("--key")
        .arg(token.uri("token=release;object=applbuild", PIN))
        .output()
        .expect("run applbuild sign");
    assert!(output.status.success(), "applbuild sign failed: {}", String::from_utf8_lossy(&output.stderr));
    for name in ["disk.raw", "uki.efi", "roothash.p7s", "policy.p7s"] {
        let status = Command::new("cmp").arg(signed.join(name)).arg(unsigned.join(name)).status().expect("run cmp");
        assert!(status.success(), "{name} differs from the one-step signed build");
    }
}

#[test]
fn token_authenticode_equals_key_file() {
    let _guard = TOKEN_LOCK.lock().unwrap_or_else(|poison| poison.into_inner());
    let Some(token) = Token::new() else { return };
    let Ok(stub) = fs::read("/usr/lib/systemd/boot/efi/linuxx64.efi.stub") else {
        eprintln!("skipped: no systemd-stub (apt-get install systemd-boot-efi)");
        return;
    };
    token.import(&repo().join("keys/test/db.key.pem"), "db", "03");
    std::env::set_var("SOFTHSM2_CONF", token.config());
    let db_certificate = keys::load_certificate(&repo().join("keys/test/db.cert.pem")).expect("test db certificate");
    let hsm_key = Pkcs11Key::open(&token.uri("token=release;object=db", PIN), db_certificate.clone()).expect("open token db key");

    let file_dir = tempfile::tempdir().expect("temporary folder");
    for name in [keys::DB_KEY_FILE, keys::DB_CERT_FILE] {
        fs::copy(repo().join("keys/test").join(name), file_dir.path().join(name)).expect("copy test db key");
    }
    fs::set_permissions(file_dir.path().join(keys::DB_KEY_FILE), fs::Permissions::from_mode(0o600)).expect("chmod key");
    let file_key = keys::load_pair(file_dir.path(), keys::SECURE_BOOT_DB).expect("load test db key");

    let uki = applbuild::uki::build(&stub, &[(".cmdline", b"console=ttyS0"), (".linux", &[0x90; 4096])]).expect("build UKI");
    let from_token = applbuild::authenticode::sign(&uki, &hsm_key).expect("token signs");
    let from_file = applbuild::authenticode::sign(&uki, &file_key).expect("file key signs");
    assert!(from_token == from_file, "the token's Authenticode signature differs from the key file's");
    applbuild::authenticode::verify(&from_token, &db_certificate).expect("the token's signature verifies");
}
