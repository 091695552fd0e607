//! Verifying a timestamp token: the message imprint names the digest, the
//! CMS signed attributes bind the TSTInfo, the signature verifies under the
//! signer's certificate, that certificate is (or was issued by) a trust
//! anchor, is for time stamping only, and was valid at the token's time.

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use der::asn1::OctetString;
use der::oid::ObjectIdentifier as Oid;
use der::{Decode, Encode};
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectKeyIdentifier};
use x509_cert::Certificate;
use x509_tsp::TstInfo;

use super::sig::{self, Digest};
use super::{oids, TimestampError};

/// The certificates a token's signer must be, or be issued by.
#[derive(Debug, Clone)]
pub struct TsaTrust {
    anchors: Vec<Certificate>,
}

impl TsaTrust {
    /// Trust anchors from PEM text (one or more `CERTIFICATE` blocks): the
    /// TSA's own certificate, or the CA that issues it.
    pub fn from_pem(pem: &str) -> Result<Self, TimestampError> {
        let anchors = Certificate::load_pem_chain(pem.as_bytes())
            .map_err(TimestampError::malformed("trust anchor (PEM)"))?;
        if anchors.is_empty() {
            return Err(TimestampError::Invalid(
                "the TSA trust file holds no certificate".into(),
            ));
        }
        Ok(Self { anchors })
    }
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// The TSA's time, seconds since the Unix epoch.
    pub gen_time_unix: i64,
    /// The TSA's time, `YYYY-MM-DDTHH:MM:SSZ`.
    pub gen_time: String,
    /// The signing certificate's subject.
    pub tsa: String,
    /// The token's serial number (hex).
    pub serial: String,
    /// The TSA policy it was issued under.
    pub policy: String,
    /// The nonce it answers, when it has one of at most 64 bits.
    pub nonce: Option<u64>,
}

/// Verify a DER token (`ContentInfo`) over `digest` (SHA-256) against
/// `trust`.
pub fn verify_token(
    token: &[u8],
    digest: &[u8; 32],
    trust: &TsaTrust,
) -> Result<Stamp, TimestampError> {
    let (sd, tst_der, tst) = parse(token)?;
    imprint_is(&tst, digest)?;
    let mut signers = sd.signer_infos.0.iter();
    let (Some(si), None) = (signers.next(), signers.next()) else {
        return Err(TimestampError::Invalid(
            "a token has exactly one signer".into(),
        ));
    };
    let signed = check_signed_attrs(si, &tst_der)?;
    let certs: Vec<&Certificate> = sd
        .certificates
        .iter()
        .flat_map(|s| s.0.iter())
        .filter_map(|c| match c {
            CertificateChoices::Certificate(c) => Some(c),
            CertificateChoices::Other(_) => None,
        })
        .chain(trust.anchors.iter())
        .collect();
    let signer = certs
        .into_iter()
        .find(|c| identifies(&si.sid, c))
        .ok_or_else(|| {
            TimestampError::Untrusted("the signer's certificate is not in the token".into())
        })?;
    let digest_alg = Digest::of(&si.digest_alg.oid)?;
    sig::verify(
        &signer.tbs_certificate.subject_public_key_info,
        &si.signature_algorithm.oid,
        Some(digest_alg),
        &signed,
        si.signature.as_bytes(),
    )?;
    let gen = tst.gen_time.to_unix_duration().as_secs();
    chain_to_anchor(signer, trust, gen)?;
    time_stamping_only(signer)?;
    Ok(Stamp {
        gen_time_unix: i64::try_from(gen).unwrap_or(i64::MAX),
        gen_time: tst.gen_time.to_date_time().to_string(),
        tsa: signer.tbs_certificate.subject.to_string(),
        serial: hex::encode(tst.serial_number.as_bytes()),
        policy: tst.policy.to_string(),
        nonce: tst.nonce.as_ref().and_then(|n| u64_of(n.as_bytes())),
    })
}

/// A DER INTEGER's content octets as a u64 (`None` if longer or negative).
fn u64_of(b: &[u8]) -> Option<u64> {
    let b = match b {
        [0, rest @ ..] => rest,
        [first, ..] if first & 0x80 != 0 => return None,
        other => other,
    };
    (b.len() <= 8).then(|| b.iter().fold(0u64, |n, d| (n << 8) | u64::from(*d)))
}

/// Check only that a token stamps `digest` (SHA-256), without its
/// signature: what can be said of a token when no TSA certificate is
/// trusted.
pub fn check_imprint(token: &[u8], digest: &[u8; 32]) -> Result<(), TimestampError> {
    let (_, _, tst) = parse(token)?;
    imprint_is(&tst, digest)
}

/// The signed data, the TSTInfo's DER and the TSTInfo of a token.
fn parse(token: &[u8]) -> Result<(SignedData, Vec<u8>, TstInfo), TimestampError> {
    let ci = ContentInfo::from_der(token).map_err(TimestampError::malformed("token"))?;
    if ci.content_type != oids::SIGNED_DATA {
        return Err(TimestampError::Invalid(format!(
            "content type {} is not signed data",
            ci.content_type
        )));
    }
    let sd: SignedData = ci
        .content
        .decode_as()
        .map_err(TimestampError::malformed("signed data"))?;
    let encap = &sd.encap_content_info;
    if encap.econtent_type != oids::TST_INFO {
        return Err(TimestampError::Invalid(format!(
            "encapsulated content {} is not TSTInfo",
            encap.econtent_type
        )));
    }
    let econtent: OctetString = encap
        .econtent
        .as_ref()
        .ok_or_else(|| TimestampError::Invalid("no TSTInfo in the token".into()))?
        .decode_as()
        .map_err(TimestampError::malformed("TSTInfo octets"))?;
    let tst_der = econtent.as_bytes().to_vec();
    let tst = TstInfo::from_der(&tst_der).map_err(TimestampError::malformed("TSTInfo"))?;
    Ok((sd, tst_der, tst))
}

fn imprint_is(tst: &TstInfo, digest: &[u8; 32]) -> Result<(), TimestampError> {
    let mi = &tst.message_imprint;
    if mi.hash_algorithm.oid != oids::SHA256 || mi.hashed_message.as_bytes() != digest {
        return Err(TimestampError::WrongImprint {
            expected: hex::encode(digest),
            found: format!(
                "{} {}",
                mi.hash_algorithm.oid,
                hex::encode(mi.hashed_message.as_bytes())
            ),
        });
    }
    Ok(())
}

/// The DER of the signed attributes (what the signature covers), after
/// checking they name TSTInfo and the digest of `content`.
fn check_signed_attrs(si: &SignerInfo, content: &[u8]) -> Result<Vec<u8>, TimestampError> {
    let attrs = si
        .signed_attrs
        .as_ref()
        .ok_or_else(|| TimestampError::Invalid("no signed attributes".into()))?;
    let single = |oid: Oid| {
        let mut found = attrs.iter().filter(|a| a.oid == oid);
        match (found.next(), found.next()) {
            (Some(a), None) if a.values.len() == 1 => Ok(a.values.iter().next()),
            _ => Err(TimestampError::Invalid(format!(
                "signed attribute {oid} must be present once with one value"
            ))),
        }
    };
    let ct: Oid = single(oids::CONTENT_TYPE)?
        .and_then(|v| v.decode_as().ok())
        .ok_or_else(|| TimestampError::Invalid("bad content-type attribute".into()))?;
    if ct != oids::TST_INFO {
        return Err(TimestampError::Invalid(format!(
            "signed content type {ct} is not TSTInfo"
        )));
    }
    let md: OctetString = single(oids::MESSAGE_DIGEST)?
        .and_then(|v| v.decode_as().ok())
        .ok_or_else(|| TimestampError::Invalid("bad message-digest attribute".into()))?;
    let digest = Digest::of(&si.digest_alg.oid)?;
    if md.as_bytes() != digest.hash(content).as_slice() {
        return Err(TimestampError::BadSignature(
            "the signed message digest is not the digest of the TSTInfo".into(),
        ));
    }
    // Signed as a DER SET OF (RFC 5652 §5.4), not with the [0] tag.
    attrs
        .to_der()
        .map_err(TimestampError::malformed("signed attributes"))
}

fn identifies(sid: &SignerIdentifier, c: &Certificate) -> bool {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(is) => {
            is.issuer == c.tbs_certificate.issuer
                && is.serial_number == c.tbs_certificate.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => c
            .tbs_certificate
            .get::<SubjectKeyIdentifier>()
            .ok()
            .flatten()
            .is_some_and(|(_, own)| own == *ski),
    }
}

/// The signer is an anchor, or an anchor issued it (one level: the TSA's
/// certificate directly under the configured CA); both valid at `at`.
fn chain_to_anchor(signer: &Certificate, trust: &TsaTrust, at: u64) -> Result<(), TimestampError> {
    valid_at(signer, at)?;
    if trust.anchors.iter().any(|a| a == signer) {
        return Ok(());
    }
    let tbs = signer
        .tbs_certificate
        .to_der()
        .map_err(TimestampError::malformed("certificate"))?;
    for a in &trust.anchors {
        if a.tbs_certificate.subject != signer.tbs_certificate.issuer {
            continue;
        }
        let ok = sig::verify(
            &a.tbs_certificate.subject_public_key_info,
            &signer.signature_algorithm.oid,
            None,
            &tbs,
            signer.signature.raw_bytes(),
        );
        if ok.is_ok() {
            return valid_at(a, at);
        }
    }
    Err(TimestampError::Untrusted(format!(
        "{} is not a configured TSA certificate nor issued by one",
        signer.tbs_certificate.subject
    )))
}

fn valid_at(c: &Certificate, at: u64) -> Result<(), TimestampError> {
    let v = &c.tbs_certificate.validity;
    let (from, to) = (
        v.not_before.to_unix_duration().as_secs(),
        v.not_after.to_unix_duration().as_secs(),
    );
    if at < from || at > to {
        return Err(TimestampError::Untrusted(format!(
            "certificate {} was not valid at the token's time ({} .. {})",
            c.tbs_certificate.subject, v.not_before, v.not_after
        )));
    }
    Ok(())
}

/// RFC 3161 §2.3: the TSA's certificate has the extended key usage
/// `timeStamping`, critical.
fn time_stamping_only(c: &Certificate) -> Result<(), TimestampError> {
    match c.tbs_certificate.get::<ExtendedKeyUsage>() {
        Ok(Some((true, eku))) if eku.0.contains(&oids::KP_TIME_STAMPING) => Ok(()),
        Ok(Some((false, _))) => Err(TimestampError::Untrusted(
            "the TSA certificate's extended key usage is not critical".into(),
        )),
        _ => Err(TimestampError::Untrusted(
            "the TSA certificate is not for time stamping (extended key usage)".into(),
        )),
    }
}
