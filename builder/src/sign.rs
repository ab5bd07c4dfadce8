//! PKCS#7 / CMS SignedData signatures made with the release key.
//!
//! Both forms carry no signed attributes, so the RSA signature covers the
//! content itself: RSASSA-PKCS1-v1_5 over SHA-256(content). Without a signing
//! time attribute every signature is a deterministic function of the key and
//! the content, which keeps images reproducible. The `cms` 0.3.0-rc.0 builder
//! always adds signed attributes (content type and message digest), so the
//! structures are assembled here from the `cms` types.

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{OctetString, OctetStringRef, SetOfVec};
use der::oid::db::rfc5911::{ID_DATA, ID_SIGNED_DATA};
use der::oid::db::rfc5912::{ID_SHA_256, RSA_ENCRYPTION};
use der::oid::ObjectIdentifier;
use der::{Any, Encode};
use rsa::signature::{SignatureEncoding, Signer};
use spki::AlgorithmIdentifierOwned;

use crate::keys::KeyPair;

/// Errors from building a signature.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("failed to compute the RSA PKCS#1 v1.5 SHA-256 signature: {0}")]
    Sign(rsa::signature::Error),

    #[error("failed to encode the {content_len}-byte content as a CMS OCTET STRING: {source}")]
    EncodeContent {
        content_len: usize,
        source: der::Error,
    },

    #[error("failed to encode the CMS SignedData structure: {0}")]
    EncodeSignedData(der::Error),
}

/// Signs `content` and returns a detached PKCS#7 signature in DER.
///
/// The CMS SignedData has content type id-data with eContent absent, one
/// SignerInfo identified by issuer and serial number, SHA-256, no signed
/// attributes and no certificates. It has the same structure as the output of
/// `openssl smime -sign -binary -noattr -nocerts -outform der -md sha256`.
/// For dm-verity, `content` is the lowercase hex root hash without a newline.
pub fn sign_detached(key: &KeyPair, content: &[u8]) -> Result<Vec<u8>, SignError> {
    encode_signed_data(key, content, Encapsulation::Detached)
}

/// Signs `content` and returns a PKCS#7 signature in DER that embeds the
/// content and the signer certificate.
///
/// This is the form that Linux IPE accepts in `new_policy`. It has the same
/// structure as the output of
/// `openssl smime -sign -nodetach -binary -noattr -outform der -md sha256`.
pub fn sign_attached(key: &KeyPair, content: &[u8]) -> Result<Vec<u8>, SignError> {
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
    key: &KeyPair,
    content: &[u8],
    encapsulation: Encapsulation,
) -> Result<Vec<u8>, SignError> {
    let certificate = key.certificate();
    let tbs = certificate.tbs_certificate();

    // Without signed attributes the signature covers the content directly (RFC 5652 section 5.4).
    let signature = key
        .signing_key()
        .try_sign(content)
        .map_err(SignError::Sign)?;

    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: tbs.issuer().clone(),
            serial_number: tbs.serial_number().clone(),
        }),
        digest_alg: algorithm_with_null(ID_SHA_256),
        signed_attrs: None,
        signature_algorithm: algorithm_with_null(RSA_ENCRYPTION),
        signature: OctetString::new(signature.to_vec()).map_err(SignError::EncodeSignedData)?,
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
