//! Ed25519 note keys and trust roots.
//!
//! Keys use the text encodings of the C2SP signed-note spec and Go's
//! `golang.org/x/mod/sumdb/note` package:
//!
//! - verifier (public) key: `name+hexid+base64(0x01 || public key)`
//! - signer (private) key: `PRIVATE+KEY+name+hexid+base64(0x01 || seed)`
//!
//! where `hexid` is the key ID as 8 lowercase hex digits and the key ID is the
//! first four bytes (big-endian) of
//! `SHA-256(name || "\n" || 0x01 || 32-byte public key)`.
//!
//! A [`TrustRoot`] is a set of verifier keys and how many distinct ones must
//! sign a note for it to be accepted.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::Signer as _;
use sha2::{Digest as _, Sha256};

/// Signature type identifier byte for Ed25519 in the signed-note spec.
const ALG_ED25519: u8 = 0x01;

/// Prefix of the signer key text, as in Go's `note.NewSigner`.
pub(crate) const SIGNER_PREFIX: &str = "PRIVATE+KEY+";

/// Errors from parsing, generating or combining keys.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key name is empty or has a `+`, whitespace or a control character.
    #[error("invalid key name {0:?}: it must be non-empty and contain no '+', whitespace or control characters")]
    InvalidName(String),
    /// The key text does not have the expected shape.
    #[error("malformed key text: {0}")]
    Malformed(&'static str),
    /// The key data names a signature algorithm other than Ed25519 (`0x01`).
    #[error("unsupported key algorithm 0x{0:02x}: only Ed25519 (0x01) is supported")]
    UnsupportedAlgorithm(u8),
    /// The key ID in the text is not the one computed from the name and key.
    #[error("key ID mismatch for {name:?}: text says {stated:08x}, key hashes to {computed:08x}")]
    KeyIdMismatch {
        /// The key name.
        name: String,
        /// The key ID written in the key text.
        stated: u32,
        /// The key ID computed from the name and public key.
        computed: u32,
    },
    /// The public key is not a usable Ed25519 point (invalid or of small order).
    #[error("invalid Ed25519 public key for {0:?}")]
    InvalidPublicKey(String),
    /// A private (signer) key where a verifier (public) key belongs.
    #[error(
        "this is a private signing key (PRIVATE+KEY+...), not a verifier key: give the public key, the `.pub` \
         file `dare keygen` wrote beside it"
    )]
    PrivateKey,
    /// The operating system's random number generator failed.
    #[error("random number generator failed: {0}")]
    Random(String),
    /// The threshold is 0 or larger than the number of keys.
    #[error("invalid threshold {threshold} for {keys} key(s): need 1 <= threshold <= number of keys")]
    InvalidThreshold {
        /// The threshold asked for.
        threshold: u32,
        /// The number of keys in the root.
        keys: usize,
    },
    /// Two keys in a trust root share a name and key ID, or a public key.
    #[error("duplicate key in trust root: {0}")]
    DuplicateKey(String),
}

/// Checks a key name: non-empty, no `+`, no Unicode whitespace, no control
/// characters. (`&str` already guarantees UTF-8.)
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c == '+' || c.is_whitespace() || c.is_control())
}

fn check_name(name: &str) -> Result<(), KeyError> {
    if is_valid_name(name) { Ok(()) } else { Err(KeyError::InvalidName(name.to_owned())) }
}

/// Computes the note key ID: `SHA-256(name || "\n" || 0x01 || public)[..4]`,
/// big-endian.
fn compute_key_id(name: &str, public: &[u8; 32]) -> u32 {
    key_id_for(ALG_ED25519, name, public)
}

/// The key ID of a key of signature type `alg`:
/// `SHA-256(name || "\n" || alg || public)[..4]`, big-endian.
pub(crate) fn key_id_for(alg: u8, name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([alg]);
    h.update(public);
    let sum = h.finalize();
    u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]])
}

/// Parses exactly 8 lowercase hex digits.
pub(crate) fn parse_hex_id(s: &str) -> Result<u32, KeyError> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(KeyError::Malformed("key ID must be 8 lowercase hexadecimal digits"));
    }
    u32::from_str_radix(s, 16).map_err(|_| KeyError::Malformed("key ID must be 8 lowercase hexadecimal digits"))
}

/// Decodes canonical standard base64 of `0x01 || 32 bytes`.
fn parse_key_data(s: &str) -> Result<[u8; 32], KeyError> {
    decode_key_data_for(ALG_ED25519, s)
}

/// Decodes canonical standard base64 of `alg || 32 bytes`; another type
/// byte is [`KeyError::UnsupportedAlgorithm`].
pub(crate) fn decode_key_data_for(alg: u8, s: &str) -> Result<[u8; 32], KeyError> {
    let raw = BASE64.decode(s).map_err(|_| KeyError::Malformed("key data is not valid standard base64"))?;
    match raw.split_first() {
        None => Err(KeyError::Malformed("key data is empty")),
        Some((&a, rest)) if a == alg => {
            <[u8; 32]>::try_from(rest).map_err(|_| KeyError::Malformed("Ed25519 key data must be 32 bytes"))
        }
        Some((&a, _)) => Err(KeyError::UnsupportedAlgorithm(a)),
    }
}

fn encode_key_data(key: &[u8; 32]) -> String {
    encode_key_data_for(ALG_ED25519, key)
}

/// Encodes `alg || key` in standard base64.
pub(crate) fn encode_key_data_for(alg: u8, key: &[u8; 32]) -> String {
    let mut raw = [0u8; 33];
    raw[0] = alg;
    raw[1..].copy_from_slice(key);
    BASE64.encode(raw)
}

/// Splits `name+hexid+keydata` (names and hex IDs cannot hold `+`, base64 can).
pub(crate) fn split_key_text(text: &str) -> Result<(&str, &str, &str), KeyError> {
    let mut parts = text.splitn(3, '+');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(name), Some(id), Some(data)) => Ok((name, id, data)),
        _ => Err(KeyError::Malformed("expected name+hexid+base64")),
    }
}

/// An Ed25519 note signing key with its name.
///
/// `Debug` shows the name and key ID, never the secret.
#[derive(Clone)]
pub struct SigningKey {
    name: String,
    key_id: u32,
    key: ed25519_dalek::SigningKey,
}

impl SigningKey {
    /// Generates a new key named `name` from 32 bytes of operating-system
    /// randomness.
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        check_name(name)?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Self::from_seed(name, seed)
    }

    /// Builds the key named `name` from a 32-byte Ed25519 seed (RFC 8032
    /// private key).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, KeyError> {
        check_name(name)?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let key_id = compute_key_id(name, key.verifying_key().as_bytes());
        Ok(Self { name: name.to_owned(), key_id, key })
    }

    /// Parses the signer key text `PRIVATE+KEY+name+hexid+base64(0x01 || seed)`
    /// (Go's `note.NewSigner` format). One trailing newline is ignored. The key
    /// ID must match the one derived from the name and public key.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.strip_suffix('\n').unwrap_or(text);
        let rest =
            text.strip_prefix(SIGNER_PREFIX).ok_or(KeyError::Malformed("signer key must start with PRIVATE+KEY+"))?;
        let (name, id, data) = split_key_text(rest)?;
        check_name(name)?;
        let stated = parse_hex_id(id)?;
        let seed = parse_key_data(data)?;
        let key = Self::from_seed(name, seed)?;
        if key.key_id != stated {
            return Err(KeyError::KeyIdMismatch { name: name.to_owned(), stated, computed: key.key_id });
        }
        Ok(key)
    }

    /// The signer key text `PRIVATE+KEY+name+hexid+base64(0x01 || seed)`,
    /// without a trailing newline. This is the secret: store it with care.
    pub fn to_text(&self) -> String {
        format!("{SIGNER_PREFIX}{}+{:08x}+{}", self.name, self.key_id, encode_key_data(self.key.as_bytes()))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 32-bit note key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The matching verifier (public) key.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey { name: self.name.clone(), key_id: self.key_id, key: self.key.verifying_key() }
    }

    /// Signs `msg` with Ed25519 (RFC 8032) and returns the 64-byte signature.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

/// An Ed25519 note verifier (public) key with its name.
///
/// Its text form, used by `Display`, `Debug`, `FromStr` and serde, is
/// `name+hexid+base64(0x01 || public key)`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VerifierKey {
    name: String,
    key_id: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl VerifierKey {
    /// Parses `name+hexid+base64(0x01 || public key)`. The text must be exact
    /// (no surrounding whitespace), the key ID must match the name and key,
    /// and the key must be a valid Ed25519 point not of small order.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        if text.starts_with(SIGNER_PREFIX) {
            return Err(KeyError::PrivateKey);
        }
        let (name, id, data) = split_key_text(text)?;
        check_name(name)?;
        let stated = parse_hex_id(id)?;
        let public = parse_key_data(data)?;
        let computed = compute_key_id(name, &public);
        if computed != stated {
            return Err(KeyError::KeyIdMismatch { name: name.to_owned(), stated, computed });
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public)
            .map_err(|_| KeyError::InvalidPublicKey(name.to_owned()))?;
        // Reject small-order keys and non-canonical encodings (so that equal
        // keys always have equal bytes and text).
        if key.is_weak() || key.to_edwards().compress().to_bytes() != public {
            return Err(KeyError::InvalidPublicKey(name.to_owned()));
        }
        Ok(Self { name: name.to_owned(), key_id: stated, key })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 32-bit note key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Reports whether `sig` is a valid 64-byte Ed25519 signature of `msg` by
    /// this key, using strict verification (rejects non-canonical and
    /// small-order components).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(sig) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&bytes);
        self.key.verify_strict(msg, &sig).is_ok()
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{:08x}+{}", self.name, self.key_id, encode_key_data(self.key.as_bytes()))
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

impl FromStr for VerifierKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for VerifierKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for VerifierKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A set of trusted keys and how many distinct ones must sign.
///
/// JSON form: `{"keys":["name+hexid+base64",...],"threshold":1}`.
/// Deserializing checks the same rules as [`TrustRoot::new`] and rejects
/// unknown fields.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "TrustRootFields", deny_unknown_fields)]
pub struct TrustRoot {
    /// The trusted verifier keys.
    pub keys: Vec<VerifierKey>,
    /// How many distinct keys of `keys` must sign.
    pub threshold: u32,
}

/// The unchecked serde shape of a [`TrustRoot`].
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustRootFields {
    keys: Vec<VerifierKey>,
    threshold: u32,
}

impl TryFrom<TrustRootFields> for TrustRoot {
    type Error = KeyError;

    fn try_from(f: TrustRootFields) -> Result<Self, Self::Error> {
        TrustRoot::new(f.keys, f.threshold)
    }
}

impl TrustRoot {
    /// Builds a trust root. Requires `1 <= threshold <= keys.len()` and no two
    /// keys with the same name and key ID or the same public key.
    pub fn new(keys: Vec<VerifierKey>, threshold: u32) -> Result<Self, KeyError> {
        let root = Self { keys, threshold };
        root.validate()?;
        Ok(root)
    }

    /// Checks the rules of [`TrustRoot::new`] (useful after mutating the
    /// public fields).
    pub fn validate(&self) -> Result<(), KeyError> {
        let enough = usize::try_from(self.threshold).is_ok_and(|t| t <= self.keys.len());
        if self.threshold == 0 || !enough {
            return Err(KeyError::InvalidThreshold { threshold: self.threshold, keys: self.keys.len() });
        }
        for (i, a) in self.keys.iter().enumerate() {
            for b in &self.keys[..i] {
                if (a.name == b.name && a.key_id == b.key_id) || a.key == b.key {
                    return Err(KeyError::DuplicateKey(a.to_string()));
                }
            }
        }
        Ok(())
    }

    /// Reports whether `key` (name, key ID and public key) is in the root.
    pub fn contains(&self, key: &VerifierKey) -> bool {
        self.keys.contains(key)
    }

    /// A stable identifier for the root: lowercase hex SHA-256 of the
    /// threshold in decimal followed by `"\n"`, then each key's text form
    /// (`name+hexid+base64`) in ascending byte order, each followed by `"\n"`.
    ///
    /// The key order in `keys` does not change the fingerprint.
    pub fn fingerprint(&self) -> String {
        let mut texts: Vec<String> = self.keys.iter().map(ToString::to_string).collect();
        texts.sort_unstable();
        let mut h = Sha256::new();
        h.update(self.threshold.to_string().as_bytes());
        h.update(b"\n");
        for t in &texts {
            h.update(t.as_bytes());
            h.update(b"\n");
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // From golang.org/x/mod/sumdb/note (note.go docs and note_test.go).
    const PETER_SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";

    #[test]
    fn go_vector_keys() {
        let sk = SigningKey::parse(PETER_SKEY).unwrap();
        assert_eq!(sk.name(), "PeterNeumann");
        assert_eq!(sk.key_id(), 0xc74f20a3);
        assert_eq!(sk.to_text(), PETER_SKEY);
        let vk = VerifierKey::parse(PETER_VKEY).unwrap();
        assert_eq!(vk.name(), "PeterNeumann");
        assert_eq!(vk.key_id(), 0xc74f20a3);
        assert_eq!(vk.to_string(), PETER_VKEY);
        assert_eq!(sk.verifier(), vk);
        let enoch = VerifierKey::parse(ENOCH_VKEY).unwrap();
        assert_eq!(enoch.key_id(), 0xaf0cfe78);
    }

    #[test]
    fn signer_text_trims_one_newline() {
        let with_nl = format!("{PETER_SKEY}\n");
        assert!(SigningKey::parse(&with_nl).is_ok());
        assert!(SigningKey::parse(&format!("{PETER_SKEY}\n\n")).is_err());
        assert!(SigningKey::parse(&format!(" {PETER_SKEY}")).is_err());
    }

    #[test]
    fn debug_hides_secret() {
        let sk = SigningKey::parse(PETER_SKEY).unwrap();
        let dbg = format!("{sk:?}");
        assert!(dbg.contains("PeterNeumann"));
        assert!(dbg.contains("c74f20a3"));
        assert!(!dbg.contains("AYEKFALV"));
        assert!(!dbg.contains("secret"));
        let vk = sk.verifier();
        assert_eq!(format!("{vk:?}"), format!("VerifierKey({PETER_VKEY})"));
    }

    #[test]
    fn sign_and_verify() {
        let sk = SigningKey::generate("example.com/log").unwrap();
        let vk = sk.verifier();
        let sig = sk.sign(b"hello\n");
        assert!(vk.verify(b"hello\n", &sig));
        assert!(!vk.verify(b"hello", &sig));
        let mut bad = sig;
        bad[0] ^= 1;
        assert!(!vk.verify(b"hello\n", &bad));
        assert!(!vk.verify(b"hello\n", &sig[..63]));
        assert!(!vk.verify(b"hello\n", &[]));
        let again = VerifierKey::parse(&vk.to_string()).unwrap();
        assert_eq!(again, vk);
        let sk2 = SigningKey::parse(&sk.to_text()).unwrap();
        assert_eq!(sk2.sign(b"x"), sk.sign(b"x"));
    }

    #[test]
    fn generate_gives_distinct_keys() {
        let a = SigningKey::generate("a").unwrap();
        let b = SigningKey::generate("a").unwrap();
        assert_ne!(a.verifier().public_key(), b.verifier().public_key());
    }

    #[test]
    fn bad_names() {
        for name in ["", "a+b", "a b", "a\tb", "a\nb", "a\u{7f}b", "a\u{a0}b", "a\u{2003}b"] {
            assert!(matches!(SigningKey::from_seed(name, [7; 32]), Err(KeyError::InvalidName(_))), "{name:?}");
        }
        assert!(SigningKey::from_seed("example.com/ok-ünïcode", [7; 32]).is_ok());
    }

    #[test]
    fn go_manglings_rejected() {
        // Every proper substring and every single-byte increment of the Go
        // vectors must fail, as in Go's TestNewVerifier / TestNewSigner.
        for (text, is_signer) in [(PETER_VKEY, false), (PETER_SKEY, true)] {
            let parse = |s: &str| {
                if is_signer { SigningKey::parse(s).is_ok() } else { VerifierKey::parse(s).is_ok() }
            };
            let b = text.as_bytes();
            for i in 0..=b.len() {
                for j in i + 1..=b.len() {
                    if i == 0 && j == b.len() {
                        continue;
                    }
                    // A signer text minus just its last newline is not a substring here.
                    let s = String::from_utf8_lossy(&b[i..j]);
                    assert!(!parse(&s), "accepted {s:?}");
                }
            }
            let mut m = b.to_vec();
            for i in 0..m.len() {
                m[i] = m[i].wrapping_add(1);
                let s = String::from_utf8_lossy(&m).into_owned();
                assert!(!parse(&s), "accepted {s:?}");
                m[i] = m[i].wrapping_sub(1);
            }
        }
    }

    #[test]
    fn specific_key_errors() {
        // Wrong length key, with adjusted key hash (from Go's tests).
        assert!(
            VerifierKey::parse("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==").is_err()
        );
        // Unknown algorithm, with adjusted key hash.
        assert!(matches!(
            VerifierKey::parse("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
            Err(KeyError::UnsupportedAlgorithm(0x65))
        ));
        assert!(matches!(
            VerifierKey::parse("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
            Err(KeyError::KeyIdMismatch { stated: 0xc74f20a4, computed: 0xc74f20a3, .. })
        ));
        assert!(matches!(
            VerifierKey::parse("PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(VerifierKey::parse(&format!("{PETER_VKEY}\n")), Err(KeyError::Malformed(_))));
        assert!(matches!(SigningKey::parse(PETER_VKEY), Err(KeyError::Malformed(_))));
    }

    #[test]
    fn small_order_key_rejected() {
        // The identity point (small order) with a correct key ID.
        let mut public = [0u8; 32];
        public[0] = 1;
        let id = compute_key_id("weak", &public);
        let text = format!("weak+{id:08x}+{}", encode_key_data(&public));
        assert!(matches!(VerifierKey::parse(&text), Err(KeyError::InvalidPublicKey(_))));
    }

    #[test]
    fn non_canonical_key_rejected() {
        // y = p + k (p = 2^255 - 19) encodes the same point as y = k.
        let mut found = 0;
        for k in 0u8..19 {
            let mut public = [0xffu8; 32];
            public[0] = 0xed + k;
            public[31] = 0x7f;
            let Ok(point) = ed25519_dalek::VerifyingKey::from_bytes(&public) else {
                continue;
            };
            if point.is_weak() {
                continue;
            }
            found += 1;
            let id = compute_key_id("nc", &public);
            let text = format!("nc+{id:08x}+{}", encode_key_data(&public));
            assert!(matches!(VerifierKey::parse(&text), Err(KeyError::InvalidPublicKey(_))));
        }
        assert!(found > 0);
    }

    #[test]
    fn trust_root_rules() {
        let a = SigningKey::from_seed("a", [1; 32]).unwrap().verifier();
        let b = SigningKey::from_seed("b", [2; 32]).unwrap().verifier();
        let a_renamed = SigningKey::from_seed("a2", [1; 32]).unwrap().verifier();
        assert!(TrustRoot::new(vec![a.clone(), b.clone()], 2).is_ok());
        assert!(matches!(TrustRoot::new(vec![a.clone(), b.clone()], 0), Err(KeyError::InvalidThreshold { .. })));
        assert!(matches!(TrustRoot::new(vec![a.clone(), b.clone()], 3), Err(KeyError::InvalidThreshold { .. })));
        assert!(matches!(TrustRoot::new(vec![], 1), Err(KeyError::InvalidThreshold { .. })));
        assert!(matches!(TrustRoot::new(vec![a.clone(), a.clone()], 1), Err(KeyError::DuplicateKey(_))));
        assert!(matches!(TrustRoot::new(vec![a.clone(), a_renamed], 1), Err(KeyError::DuplicateKey(_))));
        let root = TrustRoot::new(vec![a.clone()], 1).unwrap();
        assert!(root.contains(&a));
        assert!(!root.contains(&b));
    }

    #[test]
    fn trust_root_json() {
        let a = VerifierKey::parse(PETER_VKEY).unwrap();
        let b = VerifierKey::parse(ENOCH_VKEY).unwrap();
        let root = TrustRoot::new(vec![a, b], 1).unwrap();
        let json = serde_json::to_string(&root).unwrap();
        assert_eq!(json, format!(r#"{{"keys":["{PETER_VKEY}","{ENOCH_VKEY}"],"threshold":1}}"#));
        let back: TrustRoot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, root);

        let zero = format!(r#"{{"keys":["{PETER_VKEY}"],"threshold":0}}"#);
        assert!(serde_json::from_str::<TrustRoot>(&zero).is_err());
        let dup = format!(r#"{{"keys":["{PETER_VKEY}","{PETER_VKEY}"],"threshold":1}}"#);
        assert!(serde_json::from_str::<TrustRoot>(&dup).is_err());
        let extra = format!(r#"{{"keys":["{PETER_VKEY}"],"threshold":1,"x":1}}"#);
        assert!(serde_json::from_str::<TrustRoot>(&extra).is_err());
        let bad_key = r#"{"keys":["PeterNeumann+c74f20a3+AAAA"],"threshold":1}"#;
        assert!(serde_json::from_str::<TrustRoot>(bad_key).is_err());
    }

    #[test]
    fn fingerprint_is_canonical() {
        let a = VerifierKey::parse(PETER_VKEY).unwrap();
        let b = VerifierKey::parse(ENOCH_VKEY).unwrap();
        let ab = TrustRoot::new(vec![a.clone(), b.clone()], 1).unwrap();
        let ba = TrustRoot::new(vec![b.clone(), a.clone()], 1).unwrap();
        let ab2 = TrustRoot::new(vec![a.clone(), b.clone()], 2).unwrap();
        assert_eq!(ab.fingerprint(), ba.fingerprint());
        assert_ne!(ab.fingerprint(), ab2.fingerprint());
        assert_eq!(ab.fingerprint().len(), 64);
        // Independently computed encoding: "1\n" + sorted key texts.
        let encoding = format!("1\n{ENOCH_VKEY}\n{PETER_VKEY}\n");
        let expect: String = Sha256::digest(encoding.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(ab.fingerprint(), expect);
    }

    proptest! {
        #[test]
        fn verifier_parse_never_panics(s in ".*") {
            let _ = VerifierKey::parse(&s);
            let _ = SigningKey::parse(&s);
        }

        #[test]
        fn verifier_parse_never_panics_keyish(
            name in "[a-zA-Z+ ]{0,6}", id in "[0-9a-fA-F+]{0,9}", data in "[A-Za-z0-9+/=]{0,48}"
        ) {
            let _ = VerifierKey::parse(&format!("{name}+{id}+{data}"));
            let _ = SigningKey::parse(&format!("PRIVATE+KEY+{name}+{id}+{data}"));
        }

        #[test]
        fn key_text_round_trip(seed in any::<[u8; 32]>(), name in "[a-z0-9./-]{1,20}") {
            let sk = SigningKey::from_seed(&name, seed).unwrap();
            let sk2 = SigningKey::parse(&sk.to_text()).unwrap();
            prop_assert_eq!(sk2.to_text(), sk.to_text());
            let vk = VerifierKey::parse(&sk.verifier().to_string()).unwrap();
            prop_assert_eq!(&vk, &sk.verifier());
            prop_assert_eq!(vk.key_id(), sk.key_id());
        }
    }
}
