//! The 16-byte digest that keys the dedup table.

use sha2::{Digest, Sha256};

/// SHA-256 of the dedup key, truncated to 128 bits.
///
/// Dedup keys are authenticated (the verifier builds them from signed content), so nobody
/// chooses them to collide; 128 bits keep the chance of two of a billion stored keys
/// colliding below 10⁻²⁰. The key itself stays in the event's row for the log.
pub(crate) fn key_digest(key: &str) -> [u8; 16] {
    let hash = Sha256::digest(key.as_bytes());
    let mut digest = [0u8; 16];
    for (out, byte) in digest.iter_mut().zip(hash.iter()) {
        *out = *byte;
    }
    digest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_the_first_half_of_sha256() {
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(
            key_digest("abc"),
            [
                0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae,
                0x22, 0x23
            ]
        );
        assert_ne!(key_digest("a"), key_digest("b"));
    }
}
