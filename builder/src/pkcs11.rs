//! Release keys in a PKCS#11 token (an HSM, or SoftHSM2 for tests), named
//! by an RFC 7512 URI such as
//! `pkcs11:token=release;object=applbuild?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=/run/pin`.
//!
//! Supported attributes: `token` (token label), `object` (key label) and
//! `id` (key id, percent-encoded bytes) in the path, and `module-path`,
//! `pin-value` and `pin-source` (a file with the PIN) in the query. Without
//! `module-path` the module comes from `APPLBUILD_PKCS11_MODULE`, and
//! without a PIN attribute the PIN comes from `APPLBUILD_PKCS11_PIN`.
//! The token signs with CKM_SHA256_RSA_PKCS, which gives the same bytes as
//! the key file would, because RSASSA-PKCS1-v1_5 is deterministic.

use std::path::PathBuf;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use x509_cert::Certificate;

use crate::sign::{RsaSigner, SignError};

/// Environment variable with the PKCS#11 module path when the URI has none.
pub const MODULE_ENV: &str = "APPLBUILD_PKCS11_MODULE";
/// Environment variable with the user PIN when the URI has none.
pub const PIN_ENV: &str = "APPLBUILD_PKCS11_PIN";

/// Errors from opening a key in a PKCS#11 token.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs11Error {
    #[error("invalid PKCS#11 URI {uri:?}: {reason}")]
    InvalidUri { uri: String, reason: String },
    #[error("no PKCS#11 module: add module-path=… to the URI or set {MODULE_ENV}")]
    NoModule,
    #[error("no PIN for the PKCS#11 token: add pin-source=FILE to the URI or set {PIN_ENV}")]
    NoPin,
    #[error("failed to read the PIN file {path}: {source}")]
    PinFile { path: PathBuf, source: std::io::Error },
    #[error("PKCS#11 module {module}: failed to {action}: {source}")]
    Module { module: String, action: &'static str, source: cryptoki::error::Error },
    #[error("no PKCS#11 token with label {label:?} in module {module}")]
    TokenNotFound { label: String, module: String },
    #[error("{count} private keys match {uri:?}; name one with object= or id=")]
    KeyNotUnique { uri: String, count: usize },
}

impl Pkcs11Error {
    /// 2 for a URI or setup mistake, 1 when the token fails.
    pub fn exit_code(&self) -> i32 {
        match self {
            Pkcs11Error::Module { .. } => 1,
            _ => 2,
        }
    }
}

/// The parts of a PKCS#11 URI that [`Pkcs11Key::open`] uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    pub token: Option<String>,
    pub object: Option<String>,
    pub id: Option<Vec<u8>>,
    pub module_path: Option<String>,
    pub pin_value: Option<String>,
    pub pin_source: Option<String>,
}

impl Pkcs11Uri {
    /// Parses a `pkcs11:` URI. Unknown attributes are rejected, so a typo
    /// does not select another key.
    pub fn parse(uri: &str) -> Result<Pkcs11Uri, Pkcs11Error> {
        let invalid = |reason: String| Pkcs11Error::InvalidUri { uri: uri.to_string(), reason };
        let rest = uri.strip_prefix("pkcs11:").ok_or_else(|| invalid("it does not start with pkcs11:".into()))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut parsed = Pkcs11Uri::default();
        let attributes = path.split(';').map(|a| (a, true)).chain(query.split('&').map(|a| (a, false)));
        for (attribute, in_path) in attributes.filter(|(a, _)| !a.is_empty()) {
            let (name, value) = attribute.split_once('=').ok_or_else(|| invalid(format!("attribute {attribute:?} has no value")))?;
            let bytes = percent_decode(value).ok_or_else(|| invalid(format!("attribute {name} has an invalid percent escape")))?;
            let text = || String::from_utf8(bytes.clone()).map_err(|_| invalid(format!("attribute {name} is not UTF-8")));
            match (name, in_path) {
                ("token", true) => parsed.token = Some(text()?),
                ("object", true) => parsed.object = Some(text()?),
                ("id", true) => parsed.id = Some(bytes.clone()),
                ("module-path", false) => parsed.module_path = Some(text()?),
                ("pin-value", false) => parsed.pin_value = Some(text()?),
                ("pin-source", false) => parsed.pin_source = Some(text()?),
                _ => return Err(invalid(format!("unsupported {} attribute {name:?}", if in_path { "path" } else { "query" }))),
            }
        }
        Ok(parsed)
    }
}

/// Decodes `%XX` escapes; returns `None` for a broken escape.
fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = std::str::from_utf8(bytes.get(index + 1..index + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    Some(out)
}

/// A logged-in session with the private key to sign with.
pub struct Pkcs11Key {
    session: Session,
    key: ObjectHandle,
    certificate: Certificate,
}

impl Pkcs11Key {
    /// Opens the module, finds the token and the one private key that the
    /// URI names, and logs in as the user. `certificate` is the key's
    /// certificate; the caller checks that a signature verifies with it.
    pub fn open(uri_text: &str, certificate: Certificate) -> Result<Pkcs11Key, Pkcs11Error> {
        let uri = Pkcs11Uri::parse(uri_text)?;
        let module = uri.module_path.clone().or_else(|| std::env::var(MODULE_ENV).ok()).ok_or(Pkcs11Error::NoModule)?;
        let pin = match (&uri.pin_value, &uri.pin_source) {
            (Some(pin), _) => pin.clone(),
            (None, Some(path)) => std::fs::read_to_string(path).map_err(|source| Pkcs11Error::PinFile { path: path.into(), source })?.trim_end_matches(['\n', '\r']).to_string(),
            (None, None) => std::env::var(PIN_ENV).map_err(|_| Pkcs11Error::NoPin)?,
        };
        let failed = |action: &'static str| {
            let module = module.clone();
            move |source| Pkcs11Error::Module { module, action, source }
        };

        let context = Pkcs11::new(&module).map_err(failed("load the module"))?;
        context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).map_err(failed("initialize"))?;
        let mut chosen = None;
        for slot in context.get_slots_with_token().map_err(failed("list the slots"))? {
            let info = context.get_token_info(slot).map_err(failed("read the token information"))?;
            if uri.token.as_deref().is_none_or(|label| info.label() == label) {
                chosen = Some(slot);
                break;
            }
        }
        let slot = chosen.ok_or_else(|| Pkcs11Error::TokenNotFound { label: uri.token.clone().unwrap_or_default(), module: module.clone() })?;
        let session = context.open_ro_session(slot).map_err(failed("open a session"))?;
        session.login(UserType::User, Some(&AuthPin::from(pin))).map_err(failed("log in"))?;

        let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
        if let Some(label) = &uri.object {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(id) = &uri.id {
            template.push(Attribute::Id(id.clone()));
        }
        let keys = session.find_objects(&template).map_err(failed("find the private key"))?;
        let [key] = keys.as_slice() else {
            return Err(Pkcs11Error::KeyNotUnique { uri: uri_text.to_string(), count: keys.len() });
        };
        Ok(Pkcs11Key { key: *key, session, certificate })
    }
}

impl RsaSigner for Pkcs11Key {
    fn signer_certificate(&self) -> &Certificate {
        &self.certificate
    }

    fn sign_sha256(&self, content: &[u8]) -> Result<Vec<u8>, SignError> {
        self.session.sign(&Mechanism::Sha256RsaPkcs, self.key, content).map_err(|err| SignError::Token(err.to_string()))
    }
}
