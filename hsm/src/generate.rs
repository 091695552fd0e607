//! Making a key pair inside the token.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};

use crate::config::Pkcs11Config;
use crate::error::HsmError;
use crate::signer::Pkcs11Signer;
use crate::token::{Access, Token, ED25519_PARAMS};

/// How a private key is protected in its token, as the token reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyProtection {
    /// `CKA_SENSITIVE`: its value is never revealed in the clear.
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`: it may be wrapped (exported encrypted).
    pub extractable: bool,
    /// `CKA_ALWAYS_SENSITIVE`: it has been sensitive since it was made.
    pub always_sensitive: bool,
    /// `CKA_NEVER_EXTRACTABLE`: it has never been extractable.
    pub never_extractable: bool,
}

/// Generate an Ed25519 key pair named `name` (the log origin, kept in
/// `CKA_ID`) in the token, labelled as `cfg` says. The private key is a
/// token object, private, sensitive and not extractable: it never leaves
/// the token. Refuses when a key with that label exists.
pub fn generate(cfg: &Pkcs11Config, name: &str) -> Result<Pkcs11Signer, HsmError> {
    if !stele_attest::note::valid_key_name(name) {
        return Err(HsmError::Config(format!(
            "invalid key name {name:?}: must be non-empty, with no spaces, '+' or control characters"
        )));
    }
    let token = Token::find(cfg)?;
    let s = token.session(Access::ReadWrite)?;
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        if token.object(&s, class)?.is_some() {
            return Err(
                token.key_error("a key with this label already exists; choose another label")
            );
        }
    }
    let label = cfg.label.as_bytes().to_vec();
    let id = name.as_bytes().to_vec();
    let public = [
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::KeyType(KeyType::EC_EDWARDS),
        Attribute::EcParams(ED25519_PARAMS.to_vec()),
        Attribute::Label(label.clone()),
        Attribute::Id(id.clone()),
    ];
    let private = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::KeyType(KeyType::EC_EDWARDS),
        Attribute::Label(label),
        Attribute::Id(id),
    ];
    s.generate_key_pair(&Mechanism::EccEdwardsKeyPairGen, &public, &private)
        .map_err(|e| token.call_error("generating an Ed25519 key pair", &e))?;
    drop(s);
    Pkcs11Signer::open(cfg)
}

impl Pkcs11Signer {
    /// The private key's protection attributes, read from the token.
    pub fn protection(cfg: &Pkcs11Config) -> Result<KeyProtection, HsmError> {
        let token = Token::find(cfg)?;
        let s = token.session(Access::ReadOnly)?;
        let h = token.private_key(&s)?;
        let attrs = s
            .get_attributes(
                h,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::NeverExtractable,
                ],
            )
            .map_err(|e| token.call_error("reading the key's attributes", &e))?;
        let mut p = KeyProtection {
            sensitive: false,
            extractable: true,
            always_sensitive: false,
            never_extractable: false,
        };
        for a in attrs {
            match a {
                Attribute::Sensitive(v) => p.sensitive = v,
                Attribute::Extractable(v) => p.extractable = v,
                Attribute::AlwaysSensitive(v) => p.always_sensitive = v,
                Attribute::NeverExtractable(v) => p.never_extractable = v,
                _ => {}
            }
        }
        Ok(p)
    }
}
