//! sops' value cipher: `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` strings.
//!
//! Each value is AES-256-GCM with the file's data key, a random 32-byte IV (GCM with a
//! non-standard nonce size, as Go's `NewGCMWithNonceSize(32)` does it) and the value's key
//! path as additional data, so a ciphertext moved to another key fails to decrypt. The
//! plaintext bytes are sops' `ToBytes` of the value, which are also the bytes the MAC covers.

use std::collections::HashMap;
use std::sync::LazyLock;

use aes_gcm::aead::consts::{U12, U16, U32};
use aes_gcm::aead::generic_array::ArrayLength;
use aes_gcm::aes::Aes256;
use aes_gcm::{AeadInPlace, AesGcm, KeyInit};
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::scalar;

/// The 32-byte key every value of a file is encrypted with.
pub(crate) type DataKey = Zeroizing<[u8; 32]>;

/// sops' IV size.
const NONCE_SIZE: usize = 32;

/// Go's standard base64 as `encoding/base64.StdEncoding` decodes it: padding required,
/// non-zero trailing bits tolerated.
const B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// sops' own pattern (`aes/cipher.go`), greedy groups and no end anchor included, so that odd
/// values split exactly as sops splits them.
static ENC_RE: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]").expect("static pattern is valid"));

/// The plaintext of a value and its sops type name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plain<'a> {
    pub bytes: &'a [u8],
    pub kind: &'static str,
}

/// A decrypted value, before it becomes a tree value.
pub(crate) enum Decrypted {
    Str(Zeroizing<String>),
    Int(i64),
    Float(f64),
    Bool(bool),
    Time(String),
    Comment(Zeroizing<String>),
}

impl Decrypted {
    /// The type name this value is encrypted with when written again.
    fn kind(&self) -> &'static str {
        match self {
            Decrypted::Str(_) => "str",
            Decrypted::Int(_) => "int",
            Decrypted::Float(_) => "float",
            Decrypted::Bool(_) => "bool",
            Decrypted::Time(_) => "time",
            Decrypted::Comment(_) => "comment",
        }
    }
}

/// Why an `ENC[…]` string does not decrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CipherError {
    /// Malformed: the reason names the field, never its content.
    Malformed(String),
    /// The GCM tag does not verify: wrong key, wrong path, or tampering.
    Authentication,
}

/// IVs of the values read from a file, so that re-encrypting an unchanged value at the same
/// path with the same key gives the same ciphertext (sops' stash does the same). Keyed by a
/// hash of path, type and plaintext, so the stash holds no plaintext.
#[derive(Default, Clone)]
pub(crate) struct Stash(HashMap<[u8; 32], [u8; NONCE_SIZE]>);

impl Stash {
    fn key(aad: &str, plain: Plain<'_>) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update((aad.len() as u64).to_be_bytes());
        h.update(aad.as_bytes());
        h.update(plain.kind.as_bytes());
        h.update([0u8]);
        h.update(plain.bytes);
        h.finalize().into()
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

/// Whether a string is sops' encrypted-value syntax (used to recognise comments that stayed
/// encrypted because no path decrypts them, so they are passed through, not re-encrypted).
pub(crate) fn looks_encrypted(s: &str) -> bool {
    ENC_RE.is_match(s)
}

/// Encrypts one value. An empty string or comment stays empty, as in sops.
pub(crate) fn encrypt(key: &DataKey, plain: Plain<'_>, aad: &str, stash: &Stash) -> String {
    if plain.bytes.is_empty() && matches!(plain.kind, "str" | "comment") {
        return String::new();
    }
    let iv = stash.0.get(&Stash::key(aad, plain)).copied().unwrap_or_else(|| {
        let mut iv = [0u8; NONCE_SIZE];
        rand::rngs::OsRng.fill_bytes(&mut iv);
        iv
    });
    let cipher = AesGcm::<Aes256, U32>::new(key.as_ref().into());
    let mut buf = Zeroizing::new(plain.bytes.to_vec());
    // Failing is only possible past GCM's plaintext limit (64 GiB), far beyond any YAML value.
    let Ok(tag) = cipher.encrypt_in_place_detached((&iv).into(), aad.as_bytes(), &mut buf) else { return String::new() };
    format!("ENC[AES256_GCM,data:{},iv:{},tag:{},type:{}]", B64.encode(&buf[..]), B64.encode(iv), B64.encode(tag), plain.kind)
}

/// Decrypts one value and records its IV in `stash`. An empty string decrypts to an empty
/// string, as in sops.
pub(crate) fn decrypt(key: &DataKey, text: &str, aad: &str, stash: &mut Stash) -> Result<Decrypted, CipherError> {
    if text.is_empty() {
        return Ok(Decrypted::Str(Zeroizing::new(String::new())));
    }
    let caps = ENC_RE.captures(text).ok_or_else(|| CipherError::Malformed("not sops' ENC[AES256_GCM,…] syntax".into()))?;
    let fields: Vec<&str> = (0..=4).map(|i| caps.get(i).map(|m| m.as_str()).unwrap_or_default()).collect();
    let b64 =
        |i: usize, name: &str| B64.decode(fields[i].as_bytes()).map_err(|_| CipherError::Malformed(format!("invalid base64 in `{name}`")));
    let data = b64(1, "data")?;
    let iv = b64(2, "iv")?;
    let tag = b64(3, "tag")?;
    let kind = fields[4];
    // Go's gcm.Open takes the last 16 bytes of data||tag as the tag.
    let mut sealed = Zeroizing::new(data);
    sealed.extend_from_slice(&tag);
    if sealed.len() < 16 {
        return Err(CipherError::Malformed("ciphertext shorter than a GCM tag".into()));
    }
    let split = sealed.len() - 16;
    let (body, tag) = sealed.split_at(split);
    let mut buf = Zeroizing::new(body.to_vec());
    match iv.len() {
        32 => open::<U32>(key, &iv, aad, buf.as_mut_slice(), tag)?,
        16 => open::<U16>(key, &iv, aad, buf.as_mut_slice(), tag)?,
        12 => open::<U12>(key, &iv, aad, buf.as_mut_slice(), tag)?,
        n => return Err(CipherError::Malformed(format!("unsupported IV length {n}"))),
    }
    let value = typed(&buf, kind)?;
    if let Ok(iv32) = <[u8; NONCE_SIZE]>::try_from(iv.as_slice()) {
        let plain = Plain { bytes: &buf, kind: value.kind() };
        stash.0.insert(Stash::key(aad, plain), iv32);
    }
    Ok(value)
}

fn open<N: ArrayLength<u8>>(key: &DataKey, iv: &[u8], aad: &str, buf: &mut [u8], tag: &[u8]) -> Result<(), CipherError> {
    let cipher = AesGcm::<Aes256, N>::new(key.as_ref().into());
    let nonce = aes_gcm::Nonce::<N>::from_slice(iv);
    cipher.decrypt_in_place_detached(nonce, aad.as_bytes(), buf, tag.into()).map_err(|_| CipherError::Authentication)
}

/// sops' `Decrypt` type switch.
fn typed(bytes: &[u8], kind: &str) -> Result<Decrypted, CipherError> {
    let text = || {
        std::str::from_utf8(bytes)
            .map(|s| Zeroizing::new(s.to_string()))
            .map_err(|_| CipherError::Malformed(format!("a `{kind}` value that is not UTF-8")))
    };
    let bad = || CipherError::Malformed(format!("a `{kind}` value that does not parse as one"));
    Ok(match kind {
        "str" | "bytes" => Decrypted::Str(text()?),
        "comment" => Decrypted::Comment(text()?),
        "int" => Decrypted::Int(text()?.parse().map_err(|_| bad())?),
        "float" => Decrypted::Float(text()?.parse().map_err(|_| bad())?),
        "bool" => Decrypted::Bool(match text()?.as_str() {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
            "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
            _ => return Err(bad()),
        }),
        "time" => Decrypted::Time(scalar::canonical_rfc3339(&text()?).ok_or_else(bad)?),
        other => {
            let shown: String = other.chars().take(16).filter(char::is_ascii_alphanumeric).collect();
            return Err(CipherError::Malformed(format!("unknown type `{shown}`")));
        }
    })
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: shortest round-trip digits, no exponent.
pub(crate) fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f == f64::INFINITY {
        "+Inf".into()
    } else if f == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DataKey {
        Zeroizing::new([7u8; 32])
    }

    #[test]
    fn round_trip_and_stash() {
        let mut stash = Stash::default();
        let plain = Plain { bytes: b"hello", kind: "str" };
        let enc = encrypt(&key(), plain, "a:b:", &stash);
        assert!(enc.starts_with("ENC[AES256_GCM,data:"), "{enc}");
        assert!(enc.ends_with(",type:str]"));
        let Ok(Decrypted::Str(s)) = decrypt(&key(), &enc, "a:b:", &mut stash) else { panic!("decrypts") };
        assert_eq!(s.as_str(), "hello");
        // The stash makes re-encryption of the unchanged value byte-identical.
        assert_eq!(encrypt(&key(), plain, "a:b:", &stash), enc);
        // A fresh stash gives a fresh IV.
        assert_ne!(encrypt(&key(), plain, "a:b:", &Stash::default()), enc);
        // Another path does not decrypt.
        assert_eq!(decrypt(&key(), &enc, "a:c:", &mut stash).err(), Some(CipherError::Authentication));
    }

    #[test]
    fn empty_and_malformed() {
        let stash = Stash::default();
        assert_eq!(encrypt(&key(), Plain { bytes: b"", kind: "str" }, "a:", &stash), "");
        let mut stash = Stash::default();
        assert!(matches!(decrypt(&key(), "", "a:", &mut stash), Ok(Decrypted::Str(s)) if s.is_empty()));
        for bad in [
            "ENC[AES256_GCM,data:!!,iv:AAAA,tag:AAAA,type:str]",
            "ENC[AES256_GCM,data:AAAA,iv:AAAA,tag:AAAA,type:str",
            "ENC[AES256_GCM,data:AAAA,iv:AAAA,tag:AAAA,type:str]",
            "plain",
        ] {
            assert!(matches!(decrypt(&key(), bad, "a:", &mut stash), Err(CipherError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn go_float_format() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(1.5), "1.5");
        assert_eq!(format_float(1e21), "1000000000000000000000");
        assert_eq!(format_float(1e-7), "0.0000001");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(-0.0), "-0");
    }
}
