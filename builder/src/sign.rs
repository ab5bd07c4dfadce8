//! PKCS#7 / CMS SignedData signatures made with the release key.
//!
//! Both forms carry no signed attributes, so the RSA signature covers the
//! content itself: RSASSA-PKCS1-v1_5 over SHA-256(content). Without a signing
//! time attribute every signature is a deterministic function of the key and
//! the content, which keeps images reproducible. The `cms` 0.3.0-rc.0 builder
//! always adds signed attributes (content type and message digest), so the
//! structures are assembled here from the `cms` types.

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use x509_cert::Certificate;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{OctetString, OctetStringRef, SetOfVec};
use der::oid::db::rfc5911::{ID_DATA, ID_SIGNED_DATA};
use der::oid::db::rfc5912::{ID_SHA_256, RSA_ENCRYPTION, SHA_256_WITH_RSA_ENCRYPTION};
use der::referenced::OwnedToRef;
use der::oid::ObjectIdentifier;
use der::{Any, Decode, Encode};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use sha2::Sha256;
use spki::AlgorithmIdentifierOwned;

use crate::keys::KeyPair;

/// Errors from building a signature.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("failed to compute the RSA PKCS#1 v1.5 SHA-256 signature: {0}")]
    Sign(rsa::signature::Error),

    #[error("PKCS#11 token failed to sign: {0}")]
    Token(String),

    #[error("failed to encode the {content_len}-byte content as a CMS OCTET STRING: {source}")]
    EncodeContent {
        content_len: usize,
        source: der::Error,
    },

    #[error("failed to encode the CMS SignedData structure: {0}")]
    EncodeSignedData(der::Error),

    #[error("invalid PKCS#7 signature: {0}")]
    Malformed(String),

    #[error("unsupported PKCS#7 signature: {0}")]
    Unsupported(String),

    #[error("PKCS#7 signer {signer} is not the certificate {certificate}: the content was signed with another key")]
    OtherSigner { signer: String, certificate: String },

    #[error("RSA signature does not verify with the certificate {certificate}: the content or the signature was changed, or another key signed it")]
    BadSignature { certificate: String },
}

/// A release key that makes RSASSA-PKCS1-v1_5 SHA-256 signatures: a key
/// file ([`KeyPair`]) or a key in a PKCS#11 token.
pub trait RsaSigner {
    /// Returns the signer's certificate.
    fn signer_certificate(&self) -> &Certificate;
    /// Signs `content` with RSASSA-PKCS1-v1_5 over SHA-256(content).
    fn sign_sha256(&self, content: &[u8]) -> Result<Vec<u8>, SignError>;
}

impl RsaSigner for KeyPair {
    fn signer_certificate(&self) -> &Certificate {
        self.certificate()
    }

    fn sign_sha256(&self, content: &[u8]) -> Result<Vec<u8>, SignError> {
        let signature = self.signing_key().try_sign(content).map_err(SignError::Sign)?;
        Ok(signature.to_vec())
    }
}

/// Signs `content` and returns a detached PKCS#7 signature in DER.
///
/// The CMS SignedData has content type id-data with eContent absent, one
/// SignerInfo identified by issuer and serial number, SHA-256, no signed
/// attributes and no certificates. It has the same structure as the output of
/// `openssl smime -sign -binary -noattr -nocerts -outform der -md sha256`.
/// For dm-verity, `content` is the lowercase hex root hash without a newline.
pub fn sign_detached(key: &dyn RsaSigner, content: &[u8]) -> Result<Vec<u8>, SignError> {
    encode_signed_data(key, content, Encapsulation::Detached)
}

/// Signs `content` and returns a PKCS#7 signature in DER that embeds the
/// content and the signer certificate.
///
/// This is the form that Linux IPE accepts in `new_policy`. It has the same
/// structure as the output of
/// `openssl smime -sign -nodetach -binary -noattr -outform der -md sha256`.
pub fn sign_attached(key: &dyn RsaSigner, content: &[u8]) -> Result<Vec<u8>, SignError> {
    encode_signed_data(key, content, Encapsulation::Attached)
}

/// Placement of the signed content in the SignedData.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Encapsulation {
    /// eContent absent, no certificates.
    Detached,
    /// eContent present, signer certificate included.
    Attached,
}

fn encode_signed_data(
    key: &dyn RsaSigner,
    content: &[u8],
    encapsulation: Encapsulation,
) -> Result<Vec<u8>, SignError> {
    let certificate = key.signer_certificate();
    let tbs = certificate.tbs_certificate();

    // Without signed attributes the signature covers the content directly (RFC 5652 section 5.4).
    let signature = key.sign_sha256(content)?;

    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: tbs.issuer().clone(),
            serial_number: tbs.serial_number().clone(),
        }),
        digest_alg: algorithm_with_null(ID_SHA_256),
        signed_attrs: None,
        signature_algorithm: algorithm_with_null(RSA_ENCRYPTION),
        signature: OctetString::new(signature).map_err(SignError::EncodeSignedData)?,
        unsigned_attrs: None,
    };

    let (econtent, certificates) = match encapsulation {
        Encapsulation::Detached => (None, None),
        Encapsulation::Attached => {
            let content_error = |source| SignError::EncodeContent {
                content_len: content.len(),
                source,
            };
            let octets = OctetStringRef::new(content).map_err(content_error)?;
            let econtent = Any::encode_from(&octets).map_err(content_error)?;
            let certificates = CertificateSet::try_from(vec![CertificateChoices::Certificate(
                certificate.clone(),
            )])
            .map_err(SignError::EncodeSignedData)?;
            (Some(econtent), Some(certificates))
        }
    };

    let signed_data = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![algorithm_with_null(ID_SHA_256)])
            .map_err(SignError::EncodeSignedData)?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent,
        },
        certificates,
        crls: None,
        signer_infos: SignerInfos::try_from(vec![signer_info])
            .map_err(SignError::EncodeSignedData)?,
    };
    let content_info = ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed_data).map_err(SignError::EncodeSignedData)?,
    };
    content_info.to_der().map_err(SignError::EncodeSignedData)
}

/// Returns an AlgorithmIdentifier with explicit NULL parameters, the form
/// OpenSSL writes for sha256 and rsaEncryption.
fn algorithm_with_null(oid: ObjectIdentifier) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid,
        parameters: Some(Any::null()),
    }
}

/// Checks a detached PKCS#7 signature, as [`sign_detached`] writes it, over
/// `content` with the public key of `certificate`.
///
/// Accepts exactly the form this module writes: one SignerInfo identified by
/// issuer and serial number, SHA-256, rsaEncryption (or
/// sha256WithRSAEncryption) and no signed attributes. Any certificates in
/// the signature are ignored, so the caller's certificate is the only trust
/// anchor.
pub fn verify_detached(signature_der: &[u8], content: &[u8], certificate: &Certificate) -> Result<(), SignError> {
    let signed_data = decode_signed_data(signature_der)?;
    if signed_data.encap_content_info.econtent.is_some() {
        return Err(SignError::Unsupported("the signature embeds its content, but a detached signature was expected".into()));
    }
    check_signer(&signed_data, content, certificate)
}

/// Checks an attached PKCS#7 signature, as [`sign_attached`] writes it,
/// with the public key of `certificate` and returns the signed content.
///
/// The embedded certificate, if any, is not trusted: only `certificate` is.
pub fn verify_attached(signature_der: &[u8], certificate: &Certificate) -> Result<Vec<u8>, SignError> {
    let signed_data = decode_signed_data(signature_der)?;
    let content = attached_content(&signed_data)?;
    check_signer(&signed_data, &content, certificate)?;
    Ok(content)
}

/// Returns the first certificate embedded in a PKCS#7 signature, or `None`
/// when it has none. The certificate is not checked in any way.
pub fn embedded_certificate(signature_der: &[u8]) -> Result<Option<Certificate>, SignError> {
    let signed_data = decode_signed_data(signature_der)?;
    let Some(set) = signed_data.certificates else { return Ok(None) };
    Ok(set.0.iter().find_map(|choice| match choice {
        CertificateChoices::Certificate(certificate) => Some(certificate.clone()),
        _ => None,
    }))
}

/// Returns the content of an attached PKCS#7 signature without checking the
/// signature, for commands that only display or compare signed text.
pub fn unverified_content(signature_der: &[u8]) -> Result<Vec<u8>, SignError> {
    attached_content(&decode_signed_data(signature_der)?)
}

fn decode_signed_data(signature_der: &[u8]) -> Result<SignedData, SignError> {
    let content_info = ContentInfo::from_der(signature_der).map_err(|err| SignError::Malformed(format!("not a DER CMS ContentInfo: {err}")))?;
    if content_info.content_type != ID_SIGNED_DATA {
        return Err(SignError::Malformed(format!("content type {} is not signed-data", content_info.content_type)));
    }
    content_info.content.decode_as::<SignedData>().map_err(|err| SignError::Malformed(format!("invalid SignedData: {err}")))
}

fn attached_content(signed_data: &SignedData) -> Result<Vec<u8>, SignError> {
    let econtent = signed_data.encap_content_info.econtent.as_ref().ok_or_else(|| SignError::Unsupported("the signature is detached, but a signature with embedded content was expected".into()))?;
    let octets = econtent.decode_as::<OctetString>().map_err(|err| SignError::Malformed(format!("eContent is not an OCTET STRING: {err}")))?;
    Ok(octets.as_bytes().to_vec())
}

fn check_signer(signed_data: &SignedData, content: &[u8], certificate: &Certificate) -> Result<(), SignError> {
    if signed_data.encap_content_info.econtent_type != ID_DATA {
        return Err(SignError::Unsupported(format!("content type {} is not id-data", signed_data.encap_content_info.econtent_type)));
    }
    let signers = signed_data.signer_infos.0.as_slice();
    let [signer] = signers else {
        return Err(SignError::Unsupported(format!("{} signers, expected exactly 1", signers.len())));
    };
    if signer.digest_alg.oid != ID_SHA_256 {
        return Err(SignError::Unsupported(format!("digest algorithm {} is not SHA-256", signer.digest_alg.oid)));
    }
    if signer.signature_algorithm.oid != RSA_ENCRYPTION && signer.signature_algorithm.oid != SHA_256_WITH_RSA_ENCRYPTION {
        return Err(SignError::Unsupported(format!("signature algorithm {} is not RSA PKCS#1 v1.5", signer.signature_algorithm.oid)));
    }
    if signer.signed_attrs.is_some() {
        return Err(SignError::Unsupported("signed attributes are present; applbuild signs the content directly (openssl -noattr)".into()));
    }

    let tbs = certificate.tbs_certificate();
    let certificate_name = format!("{} (serial {})", tbs.subject(), hex::encode(tbs.serial_number().as_bytes()));
    match &signer.sid {
        SignerIdentifier::IssuerAndSerialNumber(id) if id.issuer == *tbs.issuer() && id.serial_number == *tbs.serial_number() => {}
        SignerIdentifier::IssuerAndSerialNumber(id) => {
            return Err(SignError::OtherSigner { signer: format!("{} (serial {})", id.issuer, hex::encode(id.serial_number.as_bytes())), certificate: certificate_name });
        }
        SignerIdentifier::SubjectKeyIdentifier(_) => return Err(SignError::Unsupported("the signer is named by subject key identifier, not issuer and serial number".into())),
    }

    let spki = tbs.subject_public_key_info().owned_to_ref();
    let public_key = rsa::PublicKey::try_from(spki).map_err(|err| SignError::Unsupported(format!("certificate key is not RSA: {err}")))?;
    let verifying_key = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(public_key);
    let signature = rsa::pkcs1v15::Signature::try_from(signer.signature.as_bytes()).map_err(|err| SignError::Malformed(format!("RSA signature: {err}")))?;
    verifying_key.verify(content, &signature).map_err(|_| SignError::BadSignature { certificate: certificate_name })
}
