//! Shamir secret sharing of the data key across key groups, in the share format sops uses
//! (its `shamir` package, from Vault): arithmetic in GF(2^8) with the AES polynomial, one
//! random polynomial per secret byte, and each share laid out as `y1 … yN x`, the x
//! coordinate (1..=255, never 0) in the last byte.
//!
//! No crate on crates.io keeps exactly this layout and is maintained, and the scheme is a
//! few dozen lines, so it lives here, tested against shares real sops wrote.

use rand::RngCore as _;
use rand::seq::SliceRandom as _;
use zeroize::Zeroizing;

/// Multiplication in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1, without secret-dependent
/// branches or table lookups.
fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut out = 0u8;
    for _ in 0..8 {
        out ^= a & 0u8.wrapping_sub(b & 1);
        let carry = 0u8.wrapping_sub(a >> 7);
        a = (a << 1) ^ (carry & 0x1b);
        b >>= 1;
    }
    out
}

/// The multiplicative inverse (a^254); 0 for 0.
fn inv(a: u8) -> u8 {
    let mut out = 1u8;
    let mut base = a;
    let mut e = 254u8;
    while e > 0 {
        if e & 1 == 1 {
            out = mul(out, base);
        }
        base = mul(base, base);
        e >>= 1;
    }
    out
}

/// Splits `secret` into `parts` shares, any `threshold` of which give it back.
///
/// # Errors
/// As sops: `threshold` below 2, `parts` below `threshold` or above 255, an empty secret.
pub(crate) fn split(secret: &[u8], parts: usize, threshold: usize) -> Result<Vec<Zeroizing<Vec<u8>>>, String> {
    if threshold < 2 {
        return Err("the threshold must be at least 2".into());
    }
    if parts < threshold {
        return Err(format!("{parts} parts cannot be fewer than the threshold {threshold}"));
    }
    if parts > 255 {
        return Err("at most 255 parts".into());
    }
    if secret.is_empty() {
        return Err("cannot split an empty secret".into());
    }
    let mut rng = rand::rngs::OsRng;
    let mut xs: Vec<u8> = (1..=255).collect();
    xs.shuffle(&mut rng);
    let mut out: Vec<Zeroizing<Vec<u8>>> = xs[..parts]
        .iter()
        .map(|&x| {
            let mut share = Zeroizing::new(vec![0u8; secret.len() + 1]);
            share[secret.len()] = x;
            share
        })
        .collect();
    let mut coefficients = Zeroizing::new(vec![0u8; threshold]);
    for (i, &byte) in secret.iter().enumerate() {
        coefficients[0] = byte;
        rng.fill_bytes(&mut coefficients[1..]);
        for share in &mut out {
            let x = share[secret.len()];
            // Horner's rule, highest coefficient first.
            share[i] = coefficients.iter().rev().fold(0u8, |acc, &c| mul(acc, x) ^ c);
        }
    }
    Ok(out)
}

/// Recovers the secret from shares (at least the threshold of them, or the result is noise
/// that the file's MAC then refuses).
///
/// # Errors
/// Fewer than two shares, shares of different lengths or shorter than two bytes, or two
/// shares with the same x coordinate.
pub(crate) fn combine(parts: &[Zeroizing<Vec<u8>>]) -> Result<Zeroizing<Vec<u8>>, String> {
    if parts.len() < 2 {
        return Err("fewer than two parts cannot give the secret".into());
    }
    let len = parts[0].len();
    if len < 2 || parts.iter().any(|p| p.len() != len) {
        return Err("the parts are not all of one length (of at least two bytes)".into());
    }
    let xs: Vec<u8> = parts.iter().map(|p| p[len - 1]).collect();
    for (i, x) in xs.iter().enumerate() {
        if *x == 0 || xs[..i].contains(x) {
            return Err("two parts share an x coordinate, or one has x = 0".into());
        }
    }
    // Lagrange basis at 0: prod over j != i of x_j / (x_i + x_j).
    let basis: Vec<u8> =
        (0..xs.len()).map(|i| (0..xs.len()).filter(|&j| j != i).fold(1u8, |acc, j| mul(acc, mul(xs[j], inv(xs[i] ^ xs[j]))))).collect();
    let mut secret = Zeroizing::new(vec![0u8; len - 1]);
    for (idx, byte) in secret.iter_mut().enumerate() {
        *byte = parts.iter().zip(&basis).fold(0u8, |acc, (p, b)| acc ^ mul(p[idx], *b));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(hex: &str) -> Zeroizing<Vec<u8>> {
        Zeroizing::new((0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect())
    }

    /// The three parts of a 2-of-3 file written by sops 3.11 (each group's age stanza
    /// decrypted with `age -d`).
    const SOPS_PARTS: [&str; 3] = [
        "3e885d8139266de1e8c6fb3004fe01004a5f28460831bbd67e2063bee444db9d01",
        "f53acc1938fd22cc3840e3fa82327762c9aa7185f63ae075a39db7578a53acc802",
        "45544a98ceb4eed781cbebbc0976acb541f946c455ca2014e8f6fbf9595e81fb03",
    ];

    #[test]
    fn field_arithmetic_is_the_aes_field() {
        assert_eq!(mul(0x57, 0x83), 0xc1, "FIPS-197 example");
        assert_eq!(mul(0x57, 0x13), 0xfe);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1, "{a}");
        }
    }

    #[test]
    fn every_pair_of_sops_parts_gives_one_secret() {
        let p: Vec<_> = SOPS_PARTS.iter().map(|h| share(h)).collect();
        let a = combine(&[p[0].clone(), p[1].clone()]).expect("0,1");
        let b = combine(&[p[1].clone(), p[2].clone()]).expect("1,2");
        let c = combine(&[p[2].clone(), p[0].clone()]).expect("2,0");
        let all = combine(&p).expect("all");
        assert_eq!(a.len(), 32);
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a, all);
    }

    #[test]
    fn split_then_combine_with_any_threshold_subset() {
        let secret = [7u8; 32];
        let parts = split(&secret, 3, 2).expect("split");
        assert!(parts.iter().all(|p| p.len() == 33 && p[32] != 0));
        for (i, j) in [(0, 1), (1, 2), (0, 2)] {
            assert_eq!(combine(&[parts[i].clone(), parts[j].clone()]).expect("combine").as_slice(), secret);
        }
        let parts = split(&secret, 4, 3).expect("split");
        assert_ne!(combine(&parts[..2]).expect("combine").as_slice(), secret, "below the threshold is noise");
        assert_eq!(combine(&parts[1..]).expect("combine").as_slice(), secret);
        assert!(split(&secret, 3, 1).is_err());
        assert!(split(&secret, 2, 3).is_err());
        assert!(combine(&[parts[0].clone(), parts[0].clone()]).is_err());
    }
}
