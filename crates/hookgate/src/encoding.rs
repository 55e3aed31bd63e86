//! Strict decoders for signatures and keys, and the encoders used when signing.
//!
//! Signatures are decoded strictly (canonical standard base64 with padding, lowercase hex
//! unless a provider documents otherwise): a lenient decoder silently drops or maps
//! characters, which widens what an attacker may send without gaining anything for senders.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use smallvec::SmallVec;

/// Standard base64 with padding, canonical: what every provider here sends.
pub(crate) const BASE64: GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Base64url without padding, as JWS compact serialization writes each part (RFC 7515).
pub(crate) const BASE64_URL: GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Standard base64 where padding is optional and trailing bits are ignored: only for secrets
/// the user pastes
/// (Standard Webhooks' Python and JavaScript libraries accept unpadded `whsec_` secrets).
const BASE64_PADDING_OPTIONAL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// How a provider writes its signatures.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Lowercase hexadecimal (uppercase is rejected, as the providers' own string
    /// comparisons do).
    Hex,
    /// Hexadecimal in either case.
    HexAnyCase,
    /// Standard base64 with padding.
    Base64,
}

impl Encoding {
    /// Decodes a signature; `None` when it is not valid in this encoding.
    pub(crate) fn decode(self, text: &[u8]) -> Option<Vec<u8>> {
        match self {
            Encoding::Hex => base16ct::lower::decode_vec(text).ok(),
            Encoding::HexAnyCase => base16ct::mixed::decode_vec(text).ok(),
            Encoding::Base64 => BASE64.decode(text).ok(),
        }
    }

    /// Decodes a signature as [`decode`](Self::decode) does, without allocating for up to
    /// 32 bytes (any HMAC-SHA256 tag).
    pub(crate) fn decode_inline(self, text: &[u8]) -> Option<SmallVec<[u8; 32]>> {
        let mut buffer = [0u8; 64];
        let written = match self {
            Encoding::Hex => base16ct::lower::decode(text, &mut buffer)
                .map(|d| d.len())
                .ok(),
            Encoding::HexAnyCase => base16ct::mixed::decode(text, &mut buffer)
                .map(|d| d.len())
                .ok(),
            // A value that may decode to more than the buffer goes the allocating way.
            Encoding::Base64 if text.len() > 84 => {
                return self.decode(text).map(SmallVec::from_vec);
            }
            Encoding::Base64 => BASE64.decode_slice(text, &mut buffer).ok(),
        };
        match written {
            Some(len) => buffer.get(..len).map(SmallVec::from_slice),
            // Hex too long for the buffer, or invalid: the allocating way says which.
            None => self.decode(text).map(SmallVec::from_vec),
        }
    }

    /// Encodes a signature the way the provider sends it.
    pub(crate) fn encode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Hex | Encoding::HexAnyCase => base16ct::lower::encode_string(bytes),
            Encoding::Base64 => BASE64.encode(bytes),
        }
    }
}

/// Decodes a pasted base64 secret, tolerating missing padding.
pub(crate) fn decode_base64_secret(text: &str) -> Option<Vec<u8>> {
    BASE64_PADDING_OPTIONAL.decode(text.trim()).ok()
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    base16ct::lower::encode_string(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_only_unless_any_case() {
        assert_eq!(Encoding::Hex.decode(b"0aff"), Some(vec![0x0a, 0xff]));
        assert_eq!(Encoding::Hex.decode(b"0AFF"), None);
        assert_eq!(Encoding::HexAnyCase.decode(b"0AFF"), Some(vec![0x0a, 0xff]));
        assert_eq!(Encoding::Hex.decode(b"abc"), None);
        assert_eq!(Encoding::Hex.decode(b""), Some(vec![]));
    }

    /// The inline decoder accepts and refuses exactly what the allocating one does, and
    /// keeps a 32-byte tag inline.
    #[test]
    fn inline_decoding_agrees_with_decoding() {
        let tag: Vec<u8> = (0..32u8).map(|b| b.wrapping_mul(37)).collect();
        let hex = Encoding::Hex.encode(&tag);
        let b64 = Encoding::Base64.encode(&tag);
        for (encoding, text) in [
            (Encoding::Hex, hex.as_str()),
            (Encoding::HexAnyCase, hex.as_str()),
            (Encoding::Base64, b64.as_str()),
        ] {
            let inline = encoding.decode_inline(text.as_bytes()).unwrap();
            assert_eq!(inline.as_slice(), tag.as_slice());
            assert!(!inline.spilled(), "{encoding:?}");
        }
        let long = "ab".repeat(100);
        let cases: [(Encoding, &[u8]); 9] = [
            (Encoding::Hex, b"0AFF"),
            (Encoding::Hex, b"abc"),
            (Encoding::Hex, b""),
            (Encoding::Hex, long.as_bytes()),
            (Encoding::HexAnyCase, b"0AFF"),
            (Encoding::Base64, b"AAE"),
            (Encoding::Base64, b"-_8="),
            (Encoding::Base64, b""),
            (Encoding::Base64, &[b'A'; 120]),
        ];
        for (encoding, text) in cases {
            assert_eq!(
                encoding.decode_inline(text).map(|d| d.to_vec()),
                encoding.decode(text),
                "{encoding:?} {text:?}"
            );
        }
    }

    #[test]
    fn base64_is_strict_for_signatures_and_lenient_for_secrets() {
        assert_eq!(Encoding::Base64.decode(b"AAE="), Some(vec![0, 1]));
        assert_eq!(Encoding::Base64.decode(b"AAE"), None);
        assert_eq!(Encoding::Base64.decode(b"-_8="), None);
        assert_eq!(decode_base64_secret("AAE"), Some(vec![0, 1]));
        assert_eq!(Encoding::Base64.encode(&[0, 1]), "AAE=");
        assert_eq!(Encoding::Hex.encode(&[0xab]), "ab");
    }
}
