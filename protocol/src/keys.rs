//! ed25519 keys of nodes, verifiers and coordinators, and the key-file format.
//!
//! A key file is one line: `tessera-ed25519-secret-v1 <64 hex chars of the secret seed>`.

use crate::types::Digest;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// First word of a key file.
pub const KEY_FILE_TAG: &str = "tessera-ed25519-secret-v1";

/// A public key (32 bytes), shown as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PublicKey(#[serde(with = "hex::serde")] pub [u8; 32]);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.short())
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::str::FromStr for PublicKey {
    type Err = KeyError;
    /// A key from its 64 lowercase or uppercase hex characters.
    fn from_str(s: &str) -> Result<Self, KeyError> {
        crate::hexser::decode::<32>(s)
            .map(PublicKey)
            .map_err(KeyError::BadHex)
    }
}

impl PublicKey {
    /// The first 12 hex characters, for logs and tables.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }

    /// Verify `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> Result<(), KeyError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| KeyError::BadPublicKey(*self))?;
        key.verify_strict(message, &Signature::from_bytes(signature))
            .map_err(|_| KeyError::BadSignature(*self))
    }
}

/// A secret signing key.
pub struct SecretKey(SigningKey);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(public {})", self.public().short())
    }
}

impl SecretKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Self {
        Self(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// A key from a 32-byte seed (deterministic; for tests and derived keys).
    pub fn from_seed(seed: &Digest) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Sign `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// The key-file text for this key (keep it private: mode 0600).
    pub fn to_key_file(&self) -> String {
        format!("{KEY_FILE_TAG} {}\n", hex::encode(self.0.to_bytes()))
    }

    /// Parse key-file text; `origin` names the file in errors.
    pub fn from_key_file(text: &str, origin: &str) -> Result<Self, KeyError> {
        let mut words = text.split_whitespace();
        let (Some(tag), Some(hexseed), None) = (words.next(), words.next(), words.next()) else {
            return Err(KeyError::BadKeyFile(
                origin.to_string(),
                "expected two words".into(),
            ));
        };
        if tag != KEY_FILE_TAG {
            return Err(KeyError::BadKeyFile(
                origin.to_string(),
                format!("first word is {tag:?}, expected {KEY_FILE_TAG:?}"),
            ));
        }
        let mut seed = [0u8; 32];
        hex::decode_to_slice(hexseed, &mut seed).map_err(|e| {
            KeyError::BadKeyFile(
                origin.to_string(),
                format!("secret is not 64 hex characters: {e}"),
            )
        })?;
        Ok(Self::from_seed(&seed))
    }
}

/// Key and signature failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The 32 bytes are not a valid ed25519 point.
    #[error("public key {0} is not a valid ed25519 key")]
    BadPublicKey(PublicKey),
    /// The signature does not verify under the key.
    #[error("signature does not verify under key {0}")]
    BadSignature(PublicKey),
    /// A key file could not be parsed.
    #[error("key file {0}: {1}")]
    BadKeyFile(String, String),
    /// A public key's text is not 64 hex characters.
    #[error("public key: {0}")]
    BadHex(crate::hexser::HexError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_key_parses_from_its_hex_and_names_what_is_wrong() {
        let k = SecretKey::generate().public();
        assert_eq!(k.to_string().parse::<PublicKey>().unwrap(), k);
        assert_eq!(
            k.to_string().to_uppercase().parse::<PublicKey>().unwrap(),
            k
        );
        let e = "abc".parse::<PublicKey>().unwrap_err().to_string();
        assert!(e.starts_with("public key: "), "{e}");
        assert!("zz".repeat(32).parse::<PublicKey>().is_err());
    }

    #[test]
    fn sign_verify_and_key_file_round_trip() {
        let k = SecretKey::generate();
        let sig = k.sign(b"hello");
        k.public().verify(b"hello", &sig).unwrap();
        assert!(k.public().verify(b"hellp", &sig).is_err());
        let again = SecretKey::from_key_file(&k.to_key_file(), "k").unwrap();
        assert_eq!(again.public(), k.public());
        assert!(SecretKey::from_key_file("nope", "f")
            .unwrap_err()
            .to_string()
            .contains("key file f"));
    }
}
