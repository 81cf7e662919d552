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

/// Decode a hex string into exactly `N` bytes.
pub fn decode<const N: usize>(s: &str) -> Result<[u8; N], String> {
    let mut out = [0u8; N];
    if s.len() != 2 * N {
        return Err(format!(
            "expected {} hex characters, got {}",
            2 * N,
            s.len()
        ));
    }
    hex::decode_to_slice(s, &mut out).map_err(|e| format!("bad hex {s:?}: {e}"))?;
    Ok(out)
}
