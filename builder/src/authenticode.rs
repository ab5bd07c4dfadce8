//! Authenticode signatures of PE images, the form UEFI Secure Boot checks
//! against the firmware's `db`.
//!
//! # Layout
//!
//! Sources: Microsoft's "Windows Authenticode Portable Executable Signature
//! Format" and the PE/COFF specification (attribute certificate table).
//!
//! The image digest is SHA-256 over, in this order:
//! * the headers up to `SizeOfHeaders`, without the 4-byte `CheckSum` field
//!   and without the 8-byte certificate table data directory entry;
//! * the raw data of every section with a non-zero `SizeOfRawData`, sorted
//!   by `PointerToRawData`;
//! * the bytes from `SizeOfHeaders` plus the sum of the hashed section sizes
//!   up to the certificate table (or the end of the file), when there are
//!   any. UEFI firmware (edk2 `DxeImageVerificationLib`) counts this
//!   trailing data the same way.
//!
//! The signature is a PKCS#7 SignedData (version 1) whose content is an
//! `SpcIndirectDataContent` (OID 1.3.6.1.4.1.311.2.1.4), embedded as the
//! SEQUENCE itself rather than in an OCTET STRING:
//!
//! ```text
//! SpcIndirectDataContent ::= SEQUENCE {
//!     data          SEQUENCE { type OID 1.3.6.1.4.1.311.2.1.15 (SpcPeImageData),
//!                              value SpcPeImageData },
//!     messageDigest SEQUENCE { digestAlgorithm sha256, digest OCTET STRING } }
//! SpcPeImageData ::= SEQUENCE { flags BIT STRING (empty),
//!                               file [0] { [2] { [0] IMPLICIT BMPString "<<<Obsolete>>>" } } }
//! ```
//!
//! The one SignerInfo (issuer and serial number, SHA-256, rsaEncryption) has
//! the authenticated attributes contentType (SpcIndirectDataContent),
//! messageDigest (SHA-256 of the content octets of the
//! SpcIndirectDataContent, without its tag and length, as PKCS#7 v1.5
//! defines it), SpcSpOpusInfo (empty) and SpcStatementType (individual
//! code signing). There is no signing time, so a signature depends only on
//! the key and the image: the same inputs give the same signed file. The
//! RSA signature (PKCS#1 v1.5, SHA-256) covers the DER of the attributes as
//! a SET OF. The signer certificate is included so that firmware finds the
//! signer among the signature's certificates.
//!
//! The signature goes into one `WIN_CERTIFICATE` (`dwLength` = 8 + DER
//! length, `wRevision` 0x0200, `wCertificateType` 0x0002 =
//! WIN_CERT_TYPE_PKCS_SIGNED_DATA) appended at an 8-byte aligned file offset and zero-padded to a
//! multiple of 8. The certificate table data directory entry holds its file
//! offset and padded size, and the PE `CheckSum` is recomputed.

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos};
use der::asn1::{ObjectIdentifier, OctetString, OctetStringRef, SetOfVec};
use der::oid::db::rfc5911::{ID_CONTENT_TYPE, ID_MESSAGE_DIGEST, ID_SIGNED_DATA};
use der::oid::db::rfc5912::{ID_SHA_256, RSA_ENCRYPTION, SHA_256_WITH_RSA_ENCRYPTION};
use der::referenced::OwnedToRef;
use der::{Any, Decode, Encode, Tag, TagNumber, Tagged};
use rsa::signature::Verifier;
use sha2::{Digest, Sha256};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;
use x509_cert::Certificate;

use crate::sign::{RsaSigner, SignError};
use crate::uki::{self, PeLayout, UkiError};

/// SpcIndirectDataContent, the content type of an Authenticode signature.
pub const SPC_INDIRECT_DATA_OBJID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.2.1.4");
/// SpcPeImageData, the type of the `data` field for PE images.
const SPC_PE_IMAGE_DATAOBJ: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.2.1.15");
/// SpcSpOpusInfo authenticated attribute (program name and URL, both left out).
const SPC_SP_OPUS_INFO_OBJID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.2.1.12");
/// SpcStatementType authenticated attribute.
const SPC_STATEMENT_TYPE_OBJID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.2.1.11");
/// Individual (not commercial) code signing, the statement type signtool writes by default.
const SPC_INDIVIDUAL_SP_KEY_PURPOSE_OBJID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.2.1.21");
/// The file name that SpcPeImageData carries by convention.
const OBSOLETE_FILE_NAME: &str = "<<<Obsolete>>>";

/// `wRevision` of a WIN_CERTIFICATE: WIN_CERT_REVISION_2_0.
pub const WIN_CERT_REVISION_2_0: u16 = 0x0200;
/// `wCertificateType` of a WIN_CERTIFICATE holding PKCS#7 SignedData.
pub const WIN_CERT_TYPE_PKCS_SIGNED_DATA: u16 = 0x0002;
/// Size of the WIN_CERTIFICATE header: dwLength, wRevision, wCertificateType.
const WIN_CERTIFICATE_HEADER_LEN: usize = 8;
/// Alignment of the certificate table and of each entry in it (PE/COFF specification).
const CERTIFICATE_ALIGNMENT: usize = 8;

/// Errors from signing or checking an Authenticode signature.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthenticodeError {
    #[error("cannot read the PE image: {0}")]
    Pe(#[from] UkiError),

    #[error("the PE image has no certificate table data directory entry, so it cannot carry an Authenticode signature")]
    NoCertificateDirectory,

    #[error("the PE image already has a certificate table ({size} bytes at offset {offset:#x}); applbuild signs only unsigned images")]
    AlreadySigned { offset: u32, size: u32 },

    #[error("the PE image has no Authenticode signature (empty certificate table): it was built without Secure Boot signing")]
    Unsigned,

    #[error("the PE image's {what} at offset {offset:#x} with {size} bytes runs past the end of the {len}-byte file")]
    OutOfBounds { what: &'static str, offset: usize, size: usize, len: usize },

    #[error("the signed PE image would exceed the 4 GiB limit of the certificate table fields")]
    TooLarge,

    #[error(transparent)]
    Sign(#[from] SignError),

    #[error("failed to encode the Authenticode signature: {0}")]
    Encode(der::Error),

    #[error("invalid Authenticode signature: {0}")]
    Malformed(String),

    #[error("unsupported Authenticode signature: {0}")]
    Unsupported(String),

    #[error("the signed image digest {signed} is not the image's SHA-256 Authenticode digest {computed}: the image was changed after it was signed")]
    DigestMismatch { signed: String, computed: String },

    #[error("the Authenticode signer {signer} is not the db certificate {certificate}: the image was signed with another key")]
    OtherSigner { signer: String, certificate: String },

    #[error("the Authenticode signature does not verify with the db certificate {certificate}: the signature was changed, or another key signed it")]
    BadSignature { certificate: String },
}

/// Signer details that [`verify`] reads from a valid signature.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The SHA-256 Authenticode digest of the image, in hex.
    pub digest: String,
    /// The signer, as the db certificate's subject.
    pub signer: String,
}

/// Returns `image` signed with `key`: the image padded to 8 bytes, followed
/// by a certificate table with one Authenticode signature.
///
/// # Errors
///
/// [`AuthenticodeError`] when the image is not PE32+, has no certificate
/// table entry or is signed already, or when signing or encoding fails.
pub fn sign(image: &[u8], key: &dyn RsaSigner) -> Result<Vec<u8>, AuthenticodeError> {
    let layout = uki::pe_layout(image)?;
    let entry = layout.certificate_entry_offset.ok_or(AuthenticodeError::NoCertificateDirectory)?;
    let (offset, size) = certificate_entry(image, entry)?;
    if offset != 0 || size != 0 {
        return Err(AuthenticodeError::AlreadySigned { offset, size });
    }

    let mut signed = image.to_vec();
    signed.resize(signed.len().next_multiple_of(CERTIFICATE_ALIGNMENT), 0);
    let digest = image_digest(&signed, &layout, signed.len())?;
    let signature = signed_data(&digest, key)?;

    let table_offset = signed.len();
    let entry_len = WIN_CERTIFICATE_HEADER_LEN + signature.len();
    let table_len = entry_len.next_multiple_of(CERTIFICATE_ALIGNMENT);
    let as_u32 = |value: usize| u32::try_from(value).map_err(|_| AuthenticodeError::TooLarge);
    let (table_offset_u32, table_len_u32, entry_len_u32) = (as_u32(table_offset)?, as_u32(table_len)?, as_u32(entry_len)?);
    as_u32(table_offset + table_len)?;

    signed.extend_from_slice(&entry_len_u32.to_le_bytes());
    signed.extend_from_slice(&WIN_CERT_REVISION_2_0.to_le_bytes());
    signed.extend_from_slice(&WIN_CERT_TYPE_PKCS_SIGNED_DATA.to_le_bytes());
    signed.extend_from_slice(&signature);
    signed.resize(table_offset + table_len, 0);
    signed[entry..entry + 4].copy_from_slice(&table_offset_u32.to_le_bytes());
    signed[entry + 4..entry + 8].copy_from_slice(&table_len_u32.to_le_bytes());
    uki::update_checksum(&mut signed, &layout);
    Ok(signed)
}

/// Checks the Authenticode signature of `image` with `certificate` as the
/// only trusted key, as UEFI firmware does with a certificate in `db`.
///
/// Certificates inside the signature are ignored. The signer must be
/// `certificate` itself (issuer and serial number), the messageDigest
/// attribute must match the signed content, the content's digest must
/// match the image, and the RSA signature over the attributes must verify.
///
/// # Errors
///
/// [`AuthenticodeError::Unsigned`] for an image without a signature, and
/// another variant naming the first check that fails.
pub fn verify(image: &[u8], certificate: &Certificate) -> Result<Verified, AuthenticodeError> {
    let layout = uki::pe_layout(image)?;
    let entry = layout.certificate_entry_offset.ok_or(AuthenticodeError::NoCertificateDirectory)?;
    let (offset, size) = certificate_entry(image, entry)?;
    if size == 0 {
        return Err(AuthenticodeError::Unsigned);
    }
    let (table_offset, table_len) = (offset as usize, size as usize);
    if table_offset.checked_add(table_len) != Some(image.len()) {
        return Err(AuthenticodeError::Malformed(format!("the certificate table at offset {table_offset:#x} with {table_len} bytes does not end at the end of the {}-byte file", image.len())));
    }
    let signature_der = win_certificate(&image[table_offset..])?;

    let digest = image_digest(image, &layout, table_offset)?;
    let signed_data = decode_signed_data(signature_der)?;
    let content = signed_data.encap_content_info.econtent.as_ref().ok_or_else(|| AuthenticodeError::Malformed("the SignedData has no content".into()))?;
    let signed_digest = indirect_data_digest(content)?;
    if signed_digest != digest {
        return Err(AuthenticodeError::DigestMismatch { signed: hex::encode(signed_digest), computed: hex::encode(digest) });
    }
    check_signer(&signed_data, content.value(), certificate)?;
    Ok(Verified { digest: hex::encode(digest), signer: certificate.tbs_certificate().subject().to_string() })
}

/// Reads the certificate table data directory entry: file offset and size.
fn certificate_entry(image: &[u8], entry: usize) -> Result<(u32, u32), AuthenticodeError> {
    let bytes = range(image, entry, 8, "certificate table entry")?;
    Ok((u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]), u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]])))
}

/// Returns the PKCS#7 DER of the first WIN_CERTIFICATE in `table`.
fn win_certificate(table: &[u8]) -> Result<&[u8], AuthenticodeError> {
    let header = table.get(..WIN_CERTIFICATE_HEADER_LEN).ok_or_else(|| AuthenticodeError::Malformed(format!("the certificate table has {} bytes, fewer than a WIN_CERTIFICATE header", table.len())))?;
    let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let revision = u16::from_le_bytes([header[4], header[5]]);
    let kind = u16::from_le_bytes([header[6], header[7]]);
    if revision != WIN_CERT_REVISION_2_0 || kind != WIN_CERT_TYPE_PKCS_SIGNED_DATA {
        return Err(AuthenticodeError::Unsupported(format!("WIN_CERTIFICATE revision {revision:#06x} type {kind:#06x}; expected revision 0x0200 type 0x0002 (PKCS#7 SignedData)")));
    }
    if length < WIN_CERTIFICATE_HEADER_LEN || length > table.len() {
        return Err(AuthenticodeError::Malformed(format!("WIN_CERTIFICATE dwLength {length} does not fit the {}-byte certificate table", table.len())));
    }
    Ok(&table[WIN_CERTIFICATE_HEADER_LEN..length])
}

/// Computes the SHA-256 Authenticode digest of `image[..end]`, where `end`
/// is the start of the certificate table or the file length.
fn image_digest(image: &[u8], layout: &PeLayout, end: usize) -> Result<[u8; 32], AuthenticodeError> {
    let entry = layout.certificate_entry_offset.ok_or(AuthenticodeError::NoCertificateDirectory)?;
    let checksum = layout.checksum_offset;
    let headers_end = layout.size_of_headers;
    if !(checksum + 4 <= entry && entry + 8 <= headers_end) {
        return Err(AuthenticodeError::Malformed(format!("SizeOfHeaders {headers_end:#x} does not cover the CheckSum field at {checksum:#x} and the certificate table entry at {entry:#x}")));
    }
    let mut hasher = Sha256::new();
    hasher.update(range(image, 0, checksum, "headers")?);
    hasher.update(range(image, checksum + 4, entry - checksum - 4, "headers")?);
    hasher.update(range(image, entry + 8, headers_end - entry - 8, "headers")?);

    let mut sections: Vec<(usize, usize)> = layout.sections.iter().filter(|(_, size)| *size != 0).map(|&(offset, size)| (offset as usize, size as usize)).collect();
    sections.sort_unstable();
    let mut hashed = headers_end;
    for (offset, size) in sections {
        hasher.update(range(image, offset, size, "section data")?);
        hashed += size;
    }
    if end > hashed {
        hasher.update(range(image, hashed, end - hashed, "data after the sections")?);
    }
    Ok(hasher.finalize().into())
}

fn range<'a>(image: &'a [u8], offset: usize, size: usize, what: &'static str) -> Result<&'a [u8], AuthenticodeError> {
    offset.checked_add(size).and_then(|end| image.get(offset..end)).ok_or(AuthenticodeError::OutOfBounds { what, offset, size, len: image.len() })
}

/// Encodes `tag` with `content` as its content octets.
fn tlv(tag: Tag, content: &[u8]) -> Result<Vec<u8>, AuthenticodeError> {
    Any::new(tag, content).and_then(|any| any.to_der()).map_err(AuthenticodeError::Encode)
}

fn context(number: u32, constructed: bool) -> Tag {
    Tag::ContextSpecific { constructed, number: TagNumber(number) }
}

fn encode(value: &impl Encode) -> Result<Vec<u8>, AuthenticodeError> {
    value.to_der().map_err(AuthenticodeError::Encode)
}

/// Encodes the SpcIndirectDataContent SEQUENCE for an image digest.
fn indirect_data_content(digest: &[u8; 32]) -> Result<Vec<u8>, AuthenticodeError> {
    let file_name: Vec<u8> = OBSOLETE_FILE_NAME.encode_utf16().flat_map(u16::to_be_bytes).collect();
    let link = tlv(context(0, true), &tlv(context(2, true), &tlv(context(0, false), &file_name)?)?)?;
    let flags = tlv(Tag::BitString, &[0])?;
    let image_data = tlv(Tag::Sequence, &[flags, link].concat())?;
    let data = tlv(Tag::Sequence, &[encode(&SPC_PE_IMAGE_DATAOBJ)?, image_data].concat())?;
    let digest = OctetStringRef::new(digest).map_err(AuthenticodeError::Encode)?;
    let digest_info = tlv(Tag::Sequence, &[encode(&algorithm_with_null(ID_SHA_256))?, encode(&digest)?].concat())?;
    tlv(Tag::Sequence, &[data, digest_info].concat())
}

/// Reads the image digest out of SpcIndirectDataContent.
fn indirect_data_digest(content: &Any) -> Result<[u8; 32], AuthenticodeError> {
    let malformed = |what: &str, err: der::Error| AuthenticodeError::Malformed(format!("{what}: {err}"));
    if content.tag() != Tag::Sequence {
        return Err(AuthenticodeError::Malformed(format!("the signed content is a {}, not an SpcIndirectDataContent SEQUENCE", content.tag())));
    }
    let fields: Vec<Any> = content.decode_as().map_err(|err| malformed("SpcIndirectDataContent", err))?;
    let [data, digest_info] = fields.as_slice() else {
        return Err(AuthenticodeError::Malformed(format!("SpcIndirectDataContent has {} fields, expected 2", fields.len())));
    };
    let data: Vec<Any> = data.decode_as().map_err(|err| malformed("SpcAttributeTypeAndOptionalValue", err))?;
    let data_type = data.first().map(|any| any.decode_as::<ObjectIdentifier>()).transpose().map_err(|err| malformed("SpcAttributeTypeAndOptionalValue type", err))?;
    if data_type != Some(SPC_PE_IMAGE_DATAOBJ) {
        return Err(AuthenticodeError::Unsupported(format!("the signed data type is {data_type:?}, not SpcPeImageData ({SPC_PE_IMAGE_DATAOBJ})")));
    }
    let digest_info: Vec<Any> = digest_info.decode_as().map_err(|err| malformed("DigestInfo", err))?;
    let [algorithm, digest] = digest_info.as_slice() else {
        return Err(AuthenticodeError::Malformed(format!("DigestInfo has {} fields, expected 2", digest_info.len())));
    };
    let algorithm: AlgorithmIdentifierOwned = algorithm.decode_as().map_err(|err| malformed("DigestInfo algorithm", err))?;
    if algorithm.oid != ID_SHA_256 {
        return Err(AuthenticodeError::Unsupported(format!("the image digest algorithm {} is not SHA-256", algorithm.oid)));
    }
    let digest: OctetString = digest.decode_as().map_err(|err| malformed("DigestInfo digest", err))?;
    digest.as_bytes().try_into().map_err(|_| AuthenticodeError::Malformed(format!("the image digest has {} bytes, not 32", digest.as_bytes().len())))
}

/// Builds the DER ContentInfo of the Authenticode signature of `digest`.
fn signed_data(digest: &[u8; 32], key: &dyn RsaSigner) -> Result<Vec<u8>, AuthenticodeError> {
    let certificate = key.signer_certificate();
    let tbs = certificate.tbs_certificate();
    let content = indirect_data_content(digest)?;
    let content = Any::from_der(&content).map_err(AuthenticodeError::Encode)?;

    let attributes = authenticated_attributes(content.value())?;
    let signature = key.sign_sha256(&encode(&attributes)?)?;
    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber { issuer: tbs.issuer().clone(), serial_number: tbs.serial_number().clone() }),
        digest_alg: algorithm_with_null(ID_SHA_256),
        signed_attrs: Some(attributes),
        signature_algorithm: algorithm_with_null(RSA_ENCRYPTION),
        signature: OctetString::new(signature).map_err(AuthenticodeError::Encode)?,
        unsigned_attrs: None,
    };
    let signed_data = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![algorithm_with_null(ID_SHA_256)]).map_err(AuthenticodeError::Encode)?,
        encap_content_info: EncapsulatedContentInfo { econtent_type: SPC_INDIRECT_DATA_OBJID, econtent: Some(content) },
        certificates: Some(CertificateSet::try_from(vec![CertificateChoices::Certificate(certificate.clone())]).map_err(AuthenticodeError::Encode)?),
        crls: None,
        signer_infos: SignerInfos::try_from(vec![signer_info]).map_err(AuthenticodeError::Encode)?,
    };
    let content_info = ContentInfo { content_type: ID_SIGNED_DATA, content: Any::encode_from(&signed_data).map_err(AuthenticodeError::Encode)? };
    encode(&content_info)
}

/// Builds the authenticated attributes over `content_octets`, the SpcIndirectDataContent without its tag and length.
fn authenticated_attributes(content_octets: &[u8]) -> Result<SetOfVec<Attribute>, AuthenticodeError> {
    let message_digest = Sha256::digest(content_octets);
    let statement = tlv(Tag::Sequence, &encode(&SPC_INDIVIDUAL_SP_KEY_PURPOSE_OBJID)?)?;
    let values: [(ObjectIdentifier, Vec<u8>); 4] = [
        (ID_CONTENT_TYPE, encode(&SPC_INDIRECT_DATA_OBJID)?),
        (ID_MESSAGE_DIGEST, encode(&OctetStringRef::new(&message_digest).map_err(AuthenticodeError::Encode)?)?),
        (SPC_SP_OPUS_INFO_OBJID, tlv(Tag::Sequence, &[])?),
        (SPC_STATEMENT_TYPE_OBJID, statement),
    ];
    let mut attributes = Vec::with_capacity(values.len());
    for (oid, value) in values {
        let value = Any::from_der(&value).map_err(AuthenticodeError::Encode)?;
        attributes.push(Attribute { oid, values: SetOfVec::try_from(vec![value]).map_err(AuthenticodeError::Encode)? });
    }
    SetOfVec::try_from(attributes).map_err(AuthenticodeError::Encode)
}

fn algorithm_with_null(oid: ObjectIdentifier) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned { oid, parameters: Some(Any::null()) }
}

fn decode_signed_data(der_bytes: &[u8]) -> Result<SignedData, AuthenticodeError> {
    let content_info = ContentInfo::from_der(der_bytes).map_err(|err| AuthenticodeError::Malformed(format!("not a DER PKCS#7 ContentInfo: {err}")))?;
    if content_info.content_type != ID_SIGNED_DATA {
        return Err(AuthenticodeError::Malformed(format!("content type {} is not signed-data", content_info.content_type)));
    }
    let signed_data: SignedData = content_info.content.decode_as().map_err(|err| AuthenticodeError::Malformed(format!("invalid SignedData: {err}")))?;
    if signed_data.encap_content_info.econtent_type != SPC_INDIRECT_DATA_OBJID {
        return Err(AuthenticodeError::Unsupported(format!("content type {} is not SpcIndirectDataContent", signed_data.encap_content_info.econtent_type)));
    }
    Ok(signed_data)
}

/// Checks the one SignerInfo: identity, message digest and RSA signature.
fn check_signer(signed_data: &SignedData, content_octets: &[u8], certificate: &Certificate) -> Result<(), AuthenticodeError> {
    let signers = signed_data.signer_infos.0.as_slice();
    let [signer] = signers else {
        return Err(AuthenticodeError::Unsupported(format!("{} signers, expected exactly 1", signers.len())));
    };
    if signer.digest_alg.oid != ID_SHA_256 {
        return Err(AuthenticodeError::Unsupported(format!("digest algorithm {} is not SHA-256", signer.digest_alg.oid)));
    }
    if signer.signature_algorithm.oid != RSA_ENCRYPTION && signer.signature_algorithm.oid != SHA_256_WITH_RSA_ENCRYPTION {
        return Err(AuthenticodeError::Unsupported(format!("signature algorithm {} is not RSA PKCS#1 v1.5", signer.signature_algorithm.oid)));
    }
    let tbs = certificate.tbs_certificate();
    let certificate_name = format!("{} (serial {})", tbs.subject(), hex::encode(tbs.serial_number().as_bytes()));
    match &signer.sid {
        SignerIdentifier::IssuerAndSerialNumber(id) if id.issuer == *tbs.issuer() && id.serial_number == *tbs.serial_number() => {}
        SignerIdentifier::IssuerAndSerialNumber(id) => {
            return Err(AuthenticodeError::OtherSigner { signer: format!("{} (serial {})", id.issuer, hex::encode(id.serial_number.as_bytes())), certificate: certificate_name });
        }
        SignerIdentifier::SubjectKeyIdentifier(_) => return Err(AuthenticodeError::Unsupported("the signer is named by subject key identifier, not issuer and serial number".into())),
    }

    let attributes = signer.signed_attrs.as_ref().ok_or_else(|| AuthenticodeError::Malformed("the SignerInfo has no authenticated attributes".into()))?;
    let attribute = |oid: ObjectIdentifier| attributes.iter().find(|attribute| attribute.oid == oid).and_then(|attribute| attribute.values.iter().next());
    let content_type = attribute(ID_CONTENT_TYPE).map(|value| value.decode_as::<ObjectIdentifier>());
    if !matches!(content_type, Some(Ok(oid)) if oid == SPC_INDIRECT_DATA_OBJID) {
        return Err(AuthenticodeError::Malformed("the contentType attribute is missing or not SpcIndirectDataContent".into()));
    }
    let message_digest = attribute(ID_MESSAGE_DIGEST).map(|value| value.decode_as::<OctetString>());
    let Some(Ok(message_digest)) = message_digest else {
        return Err(AuthenticodeError::Malformed("the messageDigest attribute is missing or not an OCTET STRING".into()));
    };
    if message_digest.as_bytes() != Sha256::digest(content_octets).as_slice() {
        return Err(AuthenticodeError::Malformed("the messageDigest attribute does not match the signed SpcIndirectDataContent".into()));
    }

    let spki = tbs.subject_public_key_info().owned_to_ref();
    let public_key = rsa::PublicKey::try_from(spki).map_err(|err| AuthenticodeError::Unsupported(format!("the db certificate's key is not RSA: {err}")))?;
    let verifying_key = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(public_key);
    let signature = rsa::pkcs1v15::Signature::try_from(signer.signature.as_bytes()).map_err(|err| AuthenticodeError::Malformed(format!("RSA signature: {err}")))?;
    verifying_key.verify(&encode(attributes)?, &signature).map_err(|_| AuthenticodeError::BadSignature { certificate: certificate_name })
}
