//! Tests of the Authenticode signer: a UKI built from the host's
//! systemd-stub is signed with the committed test db key, then checked by
//! our verifier and by two independent tools, `sbverify` (sbsigntool) and
//! `osslsigncode verify`.

mod common;
use common::{pseudo_random, repo};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use applbuild::authenticode::{self, AuthenticodeError};
use applbuild::keys::{self, KeyPair};
use applbuild::uki;

const HOST_STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

/// Copies the committed test db key pair into `dir`, so its mode can be
/// set to 0600, and loads it.
fn db_key(dir: &Path) -> KeyPair {
    common::copy_test_keys(dir);
    keys::load_pair(dir, keys::SECURE_BOOT_DB).expect("load test db key")
}

/// Builds an unsigned UKI from the host stub, or returns `None` with a
/// skip message.
fn unsigned_uki() -> Option<Vec<u8>> {
    let stub = match fs::read(HOST_STUB) {
        Ok(stub) => stub,
        Err(error) => {
            eprintln!("skipped: cannot read {HOST_STUB} ({error}); apt-get install systemd-boot-efi");
            return None;
        }
    };
    let initrd = pseudo_random(70_001, 11);
    let kernel = pseudo_random(300_007, 13);
    let sections: [(&str, &[u8]); 4] = [(".osrel", b"ID=applbuild\n"), (".cmdline", b"console=ttyS0"), (".initrd", &initrd), (".linux", &kernel)];
    Some(uki::build(&stub, &sections).expect("build UKI"))
}

/// Runs an external checker, or returns `None` with a skip message when it is not installed.
fn tool(program: &str, args: &[&std::ffi::OsStr], package: &str) -> Option<Output> {
    match Command::new(program).args(args).output() {
        Ok(output) => Some(output),
        Err(error) => {
            eprintln!("skipped the {program} check: {error}; apt-get install {package}");
            None
        }
    }
}

fn sbverify(image: &Path, cert: &Path) -> Option<Output> {
    tool("sbverify", &["--cert".as_ref(), cert.as_os_str(), image.as_os_str()], "sbsigntool")
}

fn osslsigncode(image: &Path, cert: &Path) -> Option<Output> {
    tool("osslsigncode", &["verify".as_ref(), "-CAfile".as_ref(), cert.as_os_str(), "-in".as_ref(), image.as_os_str()], "osslsigncode")
}

fn describe(output: &Output) -> String {
    format!("{}\nstdout:\n{}\nstderr:\n{}", output.status, String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

struct Signed {
    _dir: tempfile::TempDir,
    unsigned: Vec<u8>,
    signed: Vec<u8>,
    path: PathBuf,
    cert: PathBuf,
    key: KeyPair,
}

fn signed_uki() -> Option<Signed> {
    let unsigned = unsigned_uki()?;
    let dir = tempfile::tempdir().expect("temporary folder");
    let key = db_key(dir.path());
    let signed = authenticode::sign(&unsigned, &key).expect("sign");
    let path = dir.path().join("signed.efi");
    fs::write(&path, &signed).expect("write signed UKI");
    let cert = dir.path().join(keys::DB_CERT_FILE);
    Some(Signed { _dir: dir, unsigned, signed, path, cert, key })
}

#[test]
fn signed_uki_verifies_and_keeps_sections() {
    let Some(signed) = signed_uki() else { return };
    let verified = authenticode::verify(&signed.signed, signed.key.certificate()).expect("our verifier accepts the signature");
    assert!(verified.signer.contains("Secure Boot db key"), "signer {}", verified.signer);

    // The UKI reader (PE checksum included) still reads the same sections.
    assert_eq!(uki::read_sections(&signed.signed).expect("read signed"), uki::read_sections(&signed.unsigned).expect("read unsigned"));
    assert_eq!(signed.signed.len() % 8, 0, "the certificate table is not padded to 8 bytes");
    assert_eq!(&signed.signed[..0x3c], &signed.unsigned[..0x3c], "the DOS header changed");
}

#[test]
fn signing_is_deterministic() {
    let Some(signed) = signed_uki() else { return };
    let again = authenticode::sign(&signed.unsigned, &signed.key).expect("sign again");
    assert!(again == signed.signed, "two signatures of the same UKI with the same key differ");
}

#[test]
fn sbverify_accepts_signature() {
    let Some(signed) = signed_uki() else { return };
    let Some(output) = sbverify(&signed.path, &signed.cert) else { return };
    assert!(output.status.success(), "sbverify rejected the signature: {}", describe(&output));
}

#[test]
fn osslsigncode_accepts_signature() {
    let Some(signed) = signed_uki() else { return };
    let Some(output) = osslsigncode(&signed.path, &signed.cert) else { return };
    assert!(output.status.success(), "osslsigncode verify rejected the signature: {}", describe(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("Signature verification: ok"), "osslsigncode output: {}", describe(&output));
}

#[test]
fn changed_section_byte_is_refused_by_every_verifier() {
    let Some(signed) = signed_uki() else { return };
    let sections_end = signed.unsigned.len();
    let mut changed = signed.signed.clone();
    // A byte in the middle of .linux, the last section.
    changed[sections_end - 1000] ^= 0x01;
    let result = authenticode::verify(&changed, signed.key.certificate());
    assert!(matches!(result, Err(AuthenticodeError::DigestMismatch { .. })), "{result:?}");

    fs::write(&signed.path, &changed).expect("write changed UKI");
    if let Some(output) = sbverify(&signed.path, &signed.cert) {
        assert!(!output.status.success(), "sbverify accepted a changed UKI: {}", describe(&output));
    }
    if let Some(output) = osslsigncode(&signed.path, &signed.cert) {
        assert!(!output.status.success(), "osslsigncode accepted a changed UKI: {}", describe(&output));
    }
}

#[test]
fn changed_signature_byte_or_header_is_refused() {
    let Some(signed) = signed_uki() else { return };
    let certificate = signed.key.certificate();
    // The RSA signature is the last field of the SignedData, just before the padding.
    let mut changed = signed.signed.clone();
    let last = changed.iter().rposition(|&b| b != 0).expect("non-zero byte");
    changed[last] ^= 0x01;
    assert!(authenticode::verify(&changed, certificate).is_err(), "a changed signature byte was accepted");

    // SizeOfHeaders covers the section table; change a section name.
    let mut changed = signed.signed.clone();
    let position = changed.windows(7).position(|window| window == b".initrd").expect(".initrd header");
    changed[position + 1] = b'j';
    let result = authenticode::verify(&changed, certificate);
    assert!(matches!(result, Err(AuthenticodeError::DigestMismatch { .. })), "{result:?}");
}

#[test]
fn unsigned_signed_twice_and_other_key_are_reported() {
    let Some(signed) = signed_uki() else { return };
    let certificate = signed.key.certificate();
    assert!(matches!(authenticode::verify(&signed.unsigned, certificate), Err(AuthenticodeError::Unsigned)));
    assert!(matches!(authenticode::sign(&signed.signed, &signed.key), Err(AuthenticodeError::AlreadySigned { .. })));

    let other = keys::load_certificate(&repo().join("keys/test/cert.pem")).expect("release certificate");
    let result = authenticode::verify(&signed.signed, &other);
    assert!(matches!(result, Err(AuthenticodeError::OtherSigner { .. })), "{result:?}");
    for message in [result.expect_err("error").to_string(), AuthenticodeError::Unsigned.to_string()] {
        eprintln!("{message}");
    }
}
