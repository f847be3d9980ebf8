//! The ssh-to-age conversion, byte for byte as Mic92's `ssh-to-age` does it, because
//! sops-nix decrypts with the identity it derives from the host's SSH key: any other
//! derivation would encrypt secrets for a key the host cannot use.
//!
//! - recipient: the Montgomery (X25519) form of the Ed25519 public point, Bech32 (BIP-173,
//!   not Bech32m) with HRP `age`;
//! - identity: `sha512(seed)[..32]`, not clamped (X25519 clamps on use), Bech32 with HRP
//!   `age-secret-key-`, upper-cased.

use bech32::{Bech32, Hrp};
use curve25519_dalek::edwards::CompressedEdwardsY;
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The `age1…` recipient of an Ed25519 public key.
///
/// # Errors
/// When the 32 bytes are not a point on the curve.
pub(crate) fn recipient_from_ed25519(public: &[u8; 32]) -> Result<String> {
    let point = CompressedEdwardsY(*public)
        .decompress()
        .ok_or_else(|| Error::Key("the ed25519 public key is not a valid curve point; the key is corrupt".into()))?;
    let montgomery = point.to_montgomery().to_bytes();
    encode("age", &montgomery)
}

/// The `AGE-SECRET-KEY-1…` identity of an Ed25519 private key, from its 32-byte seed.
///
/// # Errors
/// Only if Bech32 encoding fails, which it cannot for 32 bytes.
pub(crate) fn identity_from_ed25519_seed(seed: &[u8; 32]) -> Result<Zeroizing<String>> {
    let mut digest = Zeroizing::new([0u8; 64]);
    Sha512::new().chain_update(seed).finalize_into((&mut digest[..]).into());
    let lower = Zeroizing::new(encode("age-secret-key-", &digest[..32])?);
    Ok(Zeroizing::new(lower.to_uppercase()))
}

fn encode(hrp: &str, data: &[u8]) -> Result<String> {
    let hrp = Hrp::parse(hrp).map_err(|e| Error::Key(format!("bech32 prefix: {e}")))?;
    bech32::encode::<Bech32>(hrp, data).map_err(|e| Error::Key(format!("bech32 encoding failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn ed25519_of(openssh_public_blob: &str) -> [u8; 32] {
        let blob = base64::engine::general_purpose::STANDARD.decode(openssh_public_blob).expect("base64");
        blob[blob.len() - 32..].try_into().expect("32 bytes")
    }

    /// Published vectors: ssh-to-age's README and test assets (the keyscan of eve/eva and
    /// the test key `id_ed25519.pub`).
    #[test]
    fn reproduces_published_ssh_to_age_recipients() {
        for (blob, want) in [
            (
                "AAAAC3NzaC1lZDI1NTE5AAAAIOHz+U0YtjINc54dZiJNclfmEFifF7RXCFlNlTbuZBji",
                "age17044m9wgakla6pzftf4srtl3h5mcsr85jysgt5fg23zpnta8sfdqhzn452",
            ),
            (
                "AAAAC3NzaC1lZDI1NTE5AAAAIF/KPU3Z5LSjbBI6hrq25wCcseq2UpqSzUFZRr+ux6LM",
                "age1hjm3aujg9e79f5yth8a2cejzdjg5n9vnu96l05p70uvfpeltnpms7yy3pp",
            ),
            (
                "AAAAC3NzaC1lZDI1NTE5AAAAIIL2vjdqpppuCn7yPdF2muINriAG7zBWrsELKpPWkhn5",
                "age1v8zjc47jmlqwefyu66s0d4ke98qr4vnuj3cpvs4z9npfdw833dxqwjrhzv",
            ),
        ] {
            assert_eq!(recipient_from_ed25519(&ed25519_of(blob)).expect("convert"), want);
        }
    }

    #[test]
    fn identity_is_unclamped_sha512_of_the_seed_and_matches_the_recipient() {
        let seed = [7u8; 32];
        let identity = identity_from_ed25519_seed(&seed).expect("identity");
        assert!(identity.starts_with("AGE-SECRET-KEY-1"));
        let parsed: age::x25519::Identity = identity.parse().expect("age parses it");
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let recipient = recipient_from_ed25519(signing.verifying_key().as_bytes()).expect("recipient");
        assert_eq!(parsed.to_public().to_string(), recipient);
        // Unclamped: the low three bits of sha512(seed)[0] survive into the encoding.
        let digest = Sha512::digest(seed);
        let (_, data) = bech32::decode(&identity.to_lowercase()).expect("bech32");
        assert_eq!(&data[..], &digest[..32]);
    }

    #[test]
    fn rejects_points_off_the_curve() {
        let mut bad = [0u8; 32];
        bad[0] = 2; // y = 2 has no x on the curve
        assert!(recipient_from_ed25519(&bad).is_err());
    }
}
