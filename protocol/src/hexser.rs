//! Serde helpers: fixed byte arrays and lists of digests as lowercase hex strings.

use serde::{de::Error, Deserialize, Deserializer, Serializer};

/// `[u8; N]` as a hex string.
pub mod arr {
    use super::*;

    /// Serialize as hex.
    pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    /// Deserialize from hex of exactly `2N` characters.
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = String::deserialize(d)?;
        decode(&s).map_err(D::Error::custom)
    }
}

/// `Option<[u8; N]>` as a hex string or null.
pub mod opt_arr {
    use super::*;

    /// Serialize as hex or null.
    pub fn serialize<S: Serializer, const N: usize>(
        v: &Option<[u8; N]>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&hex::encode(v)),
            None => s.serialize_none(),
        }
    }

    /// Deserialize from null or hex of exactly `2N` characters.
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<Option<[u8; N]>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| decode(&s).map_err(D::Error::custom))
            .transpose()
    }
}

/// `Vec<[u8; 32]>` as a list of hex strings.
pub mod vec32 {
    use super::*;
    use serde::ser::SerializeSeq;

    /// Serialize as a list of hex strings.
    pub fn serialize<S: Serializer>(v: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for d in v {
            seq.serialize_element(&hex::encode(d))?;
        }
        seq.end()
    }

    /// Deserialize from a list of 64-character hex strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.iter()
            .map(|s| decode(s).map_err(D::Error::custom))
            .collect()
    }
}

/// `Vec<Vec<u8>>` as a list of hex strings.
pub mod vec_bytes {
    use super::*;
    use serde::ser::SerializeSeq;

    /// Serialize as a list of hex strings.
    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for b in v {
            seq.serialize_element(&hex::encode(b))?;
        }
        seq.end()
    }

    /// Deserialize from a list of hex strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.iter()
            .map(|s| hex::decode(s).map_err(|e| D::Error::custom(format!("bad hex: {e}"))))
            .collect()
    }
}

/// Why a hex string is not the bytes it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// The string does not have `2N` characters.
    #[error("expected {expected} hex characters, got {got}")]
    Length {
        /// The characters `N` bytes take (`2N`).
        expected: usize,
        /// The characters found.
        got: usize,
    },
    /// A character is not a hex digit.
    #[error("bad hex {text:?}: Invalid character {found:?} at position {position}")]
    Digit {
        /// The string as given.
        text: String,
        /// The first character that is not a hex digit.
        found: char,
        /// Its position (in characters from the start).
        position: usize,
    },
}

/// Decode a hex string into exactly `N` bytes.
pub fn decode<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    let mut out = [0u8; N];
    if s.len() != 2 * N {
        return Err(HexError::Length {
            expected: 2 * N,
            got: s.len(),
        });
    }
    hex::decode_to_slice(s, &mut out).map_err(|e| match e {
        hex::FromHexError::InvalidHexCharacter { c, index } => HexError::Digit {
            text: s.to_string(),
            found: c,
            position: index,
        },
        // The length was checked above, so these do not occur; they still are errors.
        hex::FromHexError::OddLength | hex::FromHexError::InvalidStringLength => HexError::Length {
            expected: 2 * N,
            got: s.len(),
        },
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_names_the_length_or_the_bad_digit() {
        assert_eq!(decode::<2>("0aff"), Ok([0x0a, 0xff]));
        let short = decode::<2>("0af").unwrap_err();
        assert_eq!(
            short,
            HexError::Length {
                expected: 4,
                got: 3
            }
        );
        assert_eq!(short.to_string(), "expected 4 hex characters, got 3");
        let bad = decode::<2>("0agf").unwrap_err();
        assert_eq!(
            bad,
            HexError::Digit {
                text: "0agf".into(),
                found: 'g',
                position: 2
            }
        );
        assert_eq!(
            bad.to_string(),
            "bad hex \"0agf\": Invalid character 'g' at position 2"
        );
    }
}
