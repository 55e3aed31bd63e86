//! HMAC-SHA256 (RFC 2104) with the key's two padded blocks hashed once, when a verifier is
//! built, instead of at every verification.
//!
//! The `hmac` crate (0.12, on `digest` 0.10) can keep a keyed state too, but it cannot wipe
//! it: its state types neither implement `Zeroize` nor wipe themselves on drop, and a keyed
//! HMAC state is as good as the key (whoever reads it can sign). So the two SHA-256
//! midstates — the chaining values after `K ⊕ ipad` and after `K ⊕ opad` — are kept here, in
//! arrays this crate owns and zeroizes on drop, and every per-verification copy of them is
//! zeroized after use. The hashing itself is `sha2`'s own: its compression function
//! (`sha2::compress256`, which uses the SHA extensions where the CPU has them) and the
//! `block-buffer` that `sha2` buffers and pads with. Only the key preparation of RFC 2104
//! and the one fixed-size outer block are written here; tests check the result against the
//! `hmac` crate for keys and messages of every length around the block boundaries.

use std::fmt;

use sha2::digest::block_buffer::{BlockBuffer, Eager};
use sha2::digest::consts::U64;
#[allow(deprecated)]
use sha2::digest::generic_array::GenericArray;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// SHA-256's block size in bytes.
const BLOCK: usize = 64;

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Bit length of the outer hash's message: the `K ⊕ opad` block and the 32-byte inner digest.
const OUTER_BITS: u64 = (BLOCK as u64 + 32) * 8;

/// An HMAC-SHA256 key, prepared: the midstates after `K ⊕ ipad` and `K ⊕ opad`.
/// Zeroized on drop; `Debug` shows nothing of it.
#[derive(Clone)]
pub(crate) struct HmacSha256Key {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl HmacSha256Key {
    /// Prepares `key` as RFC 2104 does: a key longer than a block is hashed first, then the
    /// key is padded with zeros to a block.
    pub(crate) fn new(key: &[u8]) -> Self {
        let mut padded = Zeroizing::new([0u8; BLOCK]);
        if key.len() > BLOCK {
            let digest = Zeroizing::new(<[u8; 32]>::from(Sha256::digest(key)));
            for (out, byte) in padded.iter_mut().zip(digest.iter()) {
                *out = *byte;
            }
        } else {
            for (out, byte) in padded.iter_mut().zip(key) {
                *out = *byte;
            }
        }
        HmacSha256Key {
            inner: midstate(&padded, 0x36),
            outer: midstate(&padded, 0x5c),
        }
    }

    /// The HMAC-SHA256 tag of the concatenation of `pieces`.
    pub(crate) fn tag<'m>(&self, pieces: impl IntoIterator<Item = &'m [u8]>) -> [u8; 32] {
        // The inner hash, resumed after the key block.
        let mut state = Zeroizing::new(self.inner);
        let mut buffer = BlockBuffer::<U64, Eager>::default();
        let mut bytes = BLOCK as u64;
        for piece in pieces {
            bytes = bytes.wrapping_add(piece.len() as u64);
            buffer.digest_blocks(piece, |blocks| sha2::compress256(&mut state, blocks));
        }
        buffer.len64_padding_be(bytes.wrapping_mul(8), |block| {
            sha2::compress256(&mut state, std::slice::from_ref(block));
        });

        // The outer hash of the inner digest: one block, padded by hand (its length is fixed).
        // It holds the inner digest, not key material: no need to wipe it.
        let mut block = [0u8; BLOCK];
        for (out, word) in block.chunks_exact_mut(4).zip(state.iter()) {
            out.copy_from_slice(&word.to_be_bytes());
        }
        if let Some(marker) = block.get_mut(32) {
            *marker = 0x80;
        }
        if let Some(length) = block.get_mut(BLOCK - 8..) {
            length.copy_from_slice(&OUTER_BITS.to_be_bytes());
        }
        let mut outer = Zeroizing::new(self.outer);
        sha2::compress256(&mut outer, std::slice::from_ref(as_block(&block)));
        let mut tag = [0u8; 32];
        for (out, word) in tag.chunks_exact_mut(4).zip(outer.iter()) {
            out.copy_from_slice(&word.to_be_bytes());
        }
        tag
    }
}

/// The SHA-256 chaining value after one block: the padded key XOR `pad`.
fn midstate(padded: &[u8; BLOCK], pad: u8) -> [u32; 8] {
    let mut block = Zeroizing::new([0u8; BLOCK]);
    for (out, byte) in block.iter_mut().zip(padded) {
        *out = byte ^ pad;
    }
    let mut state = IV;
    sha2::compress256(&mut state, std::slice::from_ref(as_block(&block)));
    state
}

/// A block as `sha2`'s compression function takes it. `sha2` 0.10 speaks `generic-array`
/// 0.14, which deprecates itself in favour of 1.x; nothing to do about that until `sha2` 0.11.
#[allow(deprecated)]
fn as_block(bytes: &[u8; BLOCK]) -> &GenericArray<u8, U64> {
    GenericArray::from_slice(bytes)
}

impl Drop for HmacSha256Key {
    fn drop(&mut self) {
        self.inner.zeroize();
        self.outer.zeroize();
    }
}

impl ZeroizeOnDrop for HmacSha256Key {}

impl fmt::Debug for HmacSha256Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacSha256Key(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use hmac::{Hmac, Mac};
    use proptest::prelude::*;

    use super::*;

    fn reference(key: &[u8], pieces: &[&[u8]]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        for piece in pieces {
            mac.update(piece);
        }
        mac.finalize().into_bytes().into()
    }

    /// RFC 4231, test cases 1, 2 and 6 (a key longer than the block).
    #[test]
    fn rfc_4231_vectors() {
        let cases: [(&[u8], &[u8], &str); 3] = [
            (
                &[0x0b; 20],
                b"Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
        ];
        for (key, message, expected) in cases {
            let tag = HmacSha256Key::new(key).tag([message]);
            assert_eq!(base16ct::lower::encode_string(&tag), expected);
        }
    }

    /// Every key length from 0 to 2 blocks and every message length around the block and
    /// padding boundaries, in one piece and in three.
    #[test]
    fn matches_the_hmac_crate_at_every_boundary() {
        let data: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        for key_len in 0..=130 {
            let key = HmacSha256Key::new(&data[..key_len]);
            for len in [
                0, 1, 31, 32, 54, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 300,
            ] {
                let message = &data[..len];
                let expected = reference(&data[..key_len], &[message]);
                assert_eq!(key.tag([message]), expected, "key {key_len}, message {len}");
                let (a, rest) = message.split_at(len / 3);
                let (b, c) = rest.split_at(rest.len() / 2);
                assert_eq!(
                    key.tag([a, b, c]),
                    expected,
                    "key {key_len}, pieces of {len}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn matches_the_hmac_crate(
            key in proptest::collection::vec(any::<u8>(), 0..200),
            pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..150), 0..6),
        ) {
            let slices: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
            let prepared = HmacSha256Key::new(&key);
            prop_assert_eq!(prepared.tag(slices.iter().copied()), reference(&key, &slices));
        }
    }

    #[test]
    fn debug_shows_nothing_and_drop_wipes() {
        let key = HmacSha256Key::new(b"hunter2");
        assert_eq!(format!("{key:?}"), "HmacSha256Key(<redacted>)");
        fn wiped_on_drop<T: ZeroizeOnDrop>(_: &T) {}
        wiped_on_drop(&key);
    }
}
