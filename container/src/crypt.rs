//! Private channels: payloads sealed with ChaCha20-Poly1305 in chunks, keys
//! derived with HKDF-SHA256 from one content key per channel and release,
//! and that content key wrapped to age X25519 recipients (FORMAT.md 3.14
//! and 13).
//!
//! Nothing here is a primitive: the AEAD, HKDF, HMAC and the age key
//! exchange come from RustCrypto and the `age` crate. This module only fixes
//! how they are put together:
//!
//! - a **content key** `K` (32 random bytes) per channel and release, wrapped
//!   to every recipient in one `exchange` leaf (an age file whose plaintext is `K`);
//! - the **payload key** of the leaf at index `i` is
//!   `HKDF-SHA256(ikm = K, salt = none, info = "dare/v2 payload key" || u64be(i))`,
//!   so no two payloads share a key, and so a nonce space;
//! - a payload is sealed as age's STREAM: 64 KiB plaintext chunks, each
//!   ChaCha20-Poly1305 with nonce `u88be(chunk number) || last-chunk flag`
//!   and no associated data; the last chunk is shorter than 64 KiB, or full,
//!   and empty only when the whole plaintext is;
//! - a **keyed digest** stands where a header would name a plaintext SHA-256:
//!   `HMAC-SHA256(HKDF-SHA256(K, info = "dare/v2 digest key"), sha256)`.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;

use crate::hashio::{Digest32, digest_from_hex, to_hex};
use crate::header::Sha256Hex;

/// Plaintext bytes per chunk of a sealed payload (64 KiB).
pub const CHUNK: usize = 64 << 10;
/// The Poly1305 tag after each chunk.
pub const TAG: usize = 16;
const SEALED_CHUNK: usize = CHUNK + TAG;

const PAYLOAD_INFO: &[u8] = b"dare/v2 payload key";
const DIGEST_INFO: &[u8] = b"dare/v2 digest key";

/// Why a private payload or key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptError {
    /// A chunk failed to authenticate: the ciphertext, or the key, is not the one sealed.
    #[error("chunk {chunk} of the sealed payload does not authenticate (tampered, or another key)")]
    Tampered {
        /// The chunk's number, from 0.
        chunk: u64,
    },
    /// The sealed payload ended where no chunk can end.
    #[error("the sealed payload is cut short ({len} bytes is not a whole number of sealed chunks)")]
    Truncated {
        /// Its length.
        len: u64,
    },
    /// The system's random source failed.
    #[error("no randomness for a content key: {0}")]
    Random(String),
    /// None of the identities given is a recipient of the exchange.
    #[error("none of the identities given is a recipient of this release's key exchange")]
    NotARecipient,
    /// The exchange leaf's payload is not an age file of one content key.
    #[error("the key exchange is not an age file of a 32-byte key: {0}")]
    BadExchange(String),
    /// An identity could not be read.
    #[error("not an age X25519 identity: {0}")]
    BadIdentity(String),
    /// A recipient could not be read.
    #[error("not an age X25519 recipient (age1...): {0}")]
    BadRecipient(String),
}

macro_rules! secret_key {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq)]
        pub struct $name(pub Digest32);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(..)"))
            }
        }
    };
}

secret_key!(
    /// The content key of one channel's release: every payload key of the
    /// release derives from it.
    ContentKey
);

secret_key!(
    /// The key of one sealed payload. In a private listing it is written as
    /// 64 lowercase hex digits.
    PayloadKey
);

impl Serialize for PayloadKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_hex(&self.0))
    }
}

impl<'de> Deserialize<'de> for PayloadKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        digest_from_hex(&s).map(PayloadKey).ok_or_else(|| serde::de::Error::custom("not 64 lowercase hex digits"))
    }
}

fn hkdf(ikm: &Digest32, info: &[&[u8]]) -> Digest32 {
    let hk = hkdf::Hkdf::<Sha256>::new(None, ikm);
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit of 8160.
    let info: Vec<u8> = info.concat();
    hk.expand(&info, &mut out).unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF length"));
    out
}

impl ContentKey {
    /// A fresh random content key.
    pub fn generate() -> Result<Self, CryptError> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).map_err(|e| CryptError::Random(e.to_string()))?;
        Ok(ContentKey(k))
    }

    /// The key of the payload of leaf `leaf`.
    pub fn payload_key(&self, leaf: u64) -> PayloadKey {
        PayloadKey(hkdf(&self.0, &[PAYLOAD_INFO, &leaf.to_be_bytes()]))
    }

    /// The keyed digest a private header carries instead of `sha256`.
    pub fn keyed_digest(&self, sha256: &Sha256Hex) -> Sha256Hex {
        let key = hkdf(&self.0, &[DIGEST_INFO]);
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(&sha256.0);
        Sha256Hex(mac.finalize().into_bytes().into())
    }
}

/// The sealed length of `plain` bytes of plaintext (`None` past u64).
pub fn sealed_len(plain: u64) -> Option<u64> {
    let chunks = plain.div_ceil(CHUNK as u64).max(1);
    plain.checked_add(chunks.checked_mul(TAG as u64)?)
}

/// The plaintext length of a sealed payload of `sealed` bytes, or `None`
/// when no plaintext seals to that length.
pub fn opened_len(sealed: u64) -> Option<u64> {
    let full = sealed / SEALED_CHUNK as u64;
    let rest = sealed % SEALED_CHUNK as u64;
    let plain = match (full, rest) {
        (0, r) if r < TAG as u64 => return None,
        (f, 0) => f * CHUNK as u64,
        (f, r) if r <= TAG as u64 => return (r == TAG as u64 && f == 0).then_some(0),
        (f, r) => f * CHUNK as u64 + r - TAG as u64,
    };
    Some(plain)
}

#[cfg(feature = "encryption")]
pub use stream::{Opener, SealWriter, open_all, seal_all};

/// Sealing and opening payloads (ChaCha20-Poly1305 in chunks). Behind the
/// `encryption` feature, so an updater that reads no private channel does
/// not build a cipher.
#[cfg(feature = "encryption")]
mod stream {
    use super::*;
    use std::io::{self, Write};

    use chacha20poly1305::aead::{AeadInPlace, KeyInit};
    use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

    fn nonce(chunk: u64, last: bool) -> Nonce {
        let mut n = [0u8; 12];
        n[3..11].copy_from_slice(&chunk.to_be_bytes());
        n[11] = u8::from(last);
        Nonce::from(n)
    }

    fn aead(key: &PayloadKey) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&key.0))
    }

    /// Seals a payload as it is written: plaintext in, sealed chunks out to the
    /// inner writer. [`finish`](SealWriter::finish) writes the last chunk.
    pub struct SealWriter<W: Write> {
        aead: ChaCha20Poly1305,
        inner: W,
        buf: Vec<u8>,
        chunk: u64,
    }

    impl<W: Write> SealWriter<W> {
        /// Seals with `key` into `inner`.
        pub fn new(key: &PayloadKey, inner: W) -> Self {
            SealWriter { aead: aead(key), inner, buf: Vec::with_capacity(SEALED_CHUNK), chunk: 0 }
        }

        fn seal(&mut self, last: bool) -> io::Result<()> {
            let tag = self
                .aead
                .encrypt_in_place_detached(&nonce(self.chunk, last), b"", &mut self.buf)
                .map_err(|_| io::Error::other("sealing a chunk failed"))?;
            self.buf.extend_from_slice(&tag);
            self.inner.write_all(&self.buf)?;
            self.buf.clear();
            self.chunk += 1;
            Ok(())
        }

        /// Writes the last chunk and returns the inner writer.
        pub fn finish(mut self) -> io::Result<W> {
            self.seal(true)?;
            self.inner.flush()?;
            Ok(self.inner)
        }
    }

    impl<W: Write> Write for SealWriter<W> {
        fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
            let n = data.len();
            while !data.is_empty() {
                // A full chunk is sealed only once more follows: the last chunk may be full.
                if self.buf.len() == CHUNK {
                    self.seal(false)?;
                }
                let take = (CHUNK - self.buf.len()).min(data.len());
                self.buf.extend_from_slice(&data[..take]);
                data = &data[take..];
            }
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }

    /// Opens a sealed payload pushed to it in pieces of any size (sans-IO): each
    /// chunk's plaintext goes to the callback once it authenticates, so nothing
    /// unauthenticated is ever passed on.
    pub struct Opener {
        aead: ChaCha20Poly1305,
        buf: Vec<u8>,
        chunk: u64,
        seen: u64,
    }

    impl fmt::Debug for Opener {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Opener").field("chunk", &self.chunk).field("seen", &self.seen).finish()
        }
    }

    impl Opener {
        /// Opens with `key`.
        pub fn new(key: &PayloadKey) -> Self {
            Opener { aead: aead(key), buf: Vec::with_capacity(SEALED_CHUNK), chunk: 0, seen: 0 }
        }

        fn open(&mut self, last: bool) -> Result<(), CryptError> {
            if self.buf.len() < TAG || (last && self.buf.len() == TAG && self.chunk > 0) {
                return Err(CryptError::Truncated { len: self.seen });
            }
            let at = self.buf.len() - TAG;
            let tag = chacha20poly1305::Tag::clone_from_slice(&self.buf[at..]);
            self.buf.truncate(at);
            self.aead
                .decrypt_in_place_detached(&nonce(self.chunk, last), b"", &mut self.buf, &tag)
                .map_err(|_| CryptError::Tampered { chunk: self.chunk })
        }

        /// Takes the next sealed bytes; calls `out` with each chunk's plaintext
        /// once it authenticates.
        pub fn push<E: From<CryptError>>(
            &mut self,
            mut data: &[u8],
            out: &mut dyn FnMut(&[u8]) -> Result<(), E>,
        ) -> Result<(), E> {
            self.seen += data.len() as u64;
            while !data.is_empty() {
                if self.buf.len() == SEALED_CHUNK {
                    self.open(false)?;
                    out(&self.buf)?;
                    self.buf.clear();
                    self.chunk += 1;
                }
                let take = (SEALED_CHUNK - self.buf.len()).min(data.len());
                self.buf.extend_from_slice(&data[..take]);
                data = &data[take..];
            }
            Ok(())
        }

        /// Opens the last chunk.
        pub fn finish<E: From<CryptError>>(mut self, out: &mut dyn FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
            self.open(true)?;
            out(&self.buf)
        }
    }

    /// Opens a whole sealed payload held in memory (a listing, an exchange's
    /// tests): at most `limit` bytes of plaintext.
    pub fn open_all(key: &PayloadKey, sealed: &[u8]) -> Result<Vec<u8>, CryptError> {
        let mut out = Vec::with_capacity(opened_len(sealed.len() as u64).unwrap_or(0) as usize);
        let mut o = Opener::new(key);
        o.push::<CryptError>(sealed, &mut |p| {
            out.extend_from_slice(p);
            Ok(())
        })?;
        o.finish::<CryptError>(&mut |p| {
            out.extend_from_slice(p);
            Ok(())
        })?;
        Ok(out)
    }

    /// Seals a whole plaintext held in memory.
    pub fn seal_all(key: &PayloadKey, plain: &[u8]) -> Vec<u8> {
        let mut w = SealWriter::new(key, Vec::with_capacity(sealed_len(plain.len() as u64).unwrap_or(0) as usize));
        // Writing to a Vec cannot fail.
        let _ = w.write_all(plain);
        w.finish().unwrap_or_default()
    }
}

#[cfg(feature = "encryption")]
pub use exchange::{Identities, Recipients, unwrap_content_key, wrap_content_key};

#[cfg(feature = "encryption")]
mod exchange {
    use std::io::{Read, Write};
    use std::str::FromStr;

    use super::{ContentKey, CryptError};

    use crate::header::MAX_EXCHANGE;

    /// age X25519 recipients (`age1...`), at least one.
    #[derive(Clone)]
    pub struct Recipients(Vec<age::x25519::Recipient>);

    impl std::fmt::Debug for Recipients {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_list().entries(self.0.iter().map(|r| r.to_string())).finish()
        }
    }

    impl Recipients {
        /// Parses recipients: each item is an `age1...` string, or the text of
        /// a recipients file (one per line; `#` comments and blank lines skipped).
        pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, CryptError> {
            let mut out = Vec::new();
            for item in items {
                for line in item.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
                    let r = age::x25519::Recipient::from_str(line)
                        .map_err(|e| CryptError::BadRecipient(format!("{}: {e}", short(line))))?;
                    out.push(r);
                }
            }
            if out.is_empty() {
                return Err(CryptError::BadRecipient("no recipient given".into()));
            }
            Ok(Recipients(out))
        }

        /// The recipients as `age1...` strings.
        pub fn to_strings(&self) -> Vec<String> {
            self.0.iter().map(|r| r.to_string()).collect()
        }
    }

    fn short(s: &str) -> String {
        let s: String = s.chars().take(24).collect();
        format!("{s:?}")
    }

    /// age X25519 identities (`AGE-SECRET-KEY-1...`), from an identity file
    /// as `age-keygen` or `dare keygen --encryption` writes it.
    #[derive(Clone)]
    pub struct Identities(Vec<age::x25519::Identity>);

    impl std::fmt::Debug for Identities {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Identities({})", self.0.len())
        }
    }

    impl Identities {
        /// Parses the text of an identity file: `AGE-SECRET-KEY-1...` lines,
        /// `#` comments and blank lines.
        pub fn parse(text: &str) -> Result<Self, CryptError> {
            let mut out = Vec::new();
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
                if line.starts_with("age1") {
                    return Err(CryptError::BadIdentity(
                        "this is a recipient (age1...), the public half; give the identity (AGE-SECRET-KEY-1...)"
                            .into(),
                    ));
                }
                let id = age::x25519::Identity::from_str(line)
                    .map_err(|e| CryptError::BadIdentity(format!("a line that is not AGE-SECRET-KEY-1...: {e}")))?;
                out.push(id);
            }
            if out.is_empty() {
                return Err(CryptError::BadIdentity("no AGE-SECRET-KEY-1... line".into()));
            }
            Ok(Identities(out))
        }

        /// A fresh identity.
        pub fn generate() -> Self {
            Identities(vec![age::x25519::Identity::generate()])
        }

        /// The identity file's text (`# public key: age1...` then the secret).
        pub fn to_file_text(&self) -> String {
            use age::secrecy::ExposeSecret;
            let mut s = String::new();
            for id in &self.0 {
                s.push_str(&format!("# public key: {}\n{}\n", id.to_public(), id.to_string().expose_secret()));
            }
            s
        }

        /// Each identity's recipient.
        pub fn recipients(&self) -> Recipients {
            Recipients(self.0.iter().map(|i| i.to_public()).collect())
        }
    }

    /// The exchange payload: `key` as an age file to every recipient.
    pub fn wrap_content_key(key: &ContentKey, to: &Recipients) -> Result<Vec<u8>, CryptError> {
        let enc = age::Encryptor::with_recipients(to.0.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| CryptError::BadRecipient(e.to_string()))?;
        let mut out = Vec::new();
        let mut w = enc.wrap_output(&mut out).map_err(|e| CryptError::BadExchange(e.to_string()))?;
        w.write_all(&key.0).map_err(|e| CryptError::BadExchange(e.to_string()))?;
        w.finish().map_err(|e| CryptError::BadExchange(e.to_string()))?;
        Ok(out)
    }

    /// The content key in an exchange payload, for the first identity that
    /// is a recipient.
    pub fn unwrap_content_key(exchange: &[u8], ids: &Identities) -> Result<ContentKey, CryptError> {
        if exchange.len() as u64 > MAX_EXCHANGE {
            return Err(CryptError::BadExchange(format!("{} bytes, more than {MAX_EXCHANGE}", exchange.len())));
        }
        let dec = age::Decryptor::new_buffered(exchange).map_err(|e| CryptError::BadExchange(e.to_string()))?;
        if dec.is_scrypt() {
            return Err(CryptError::BadExchange("a passphrase file, not one to X25519 recipients".into()));
        }
        let mut r = match dec.decrypt(ids.0.iter().map(|i| i as &dyn age::Identity)) {
            Ok(r) => r,
            Err(age::DecryptError::NoMatchingKeys) => return Err(CryptError::NotARecipient),
            Err(e) => return Err(CryptError::BadExchange(e.to_string())),
        };
        let mut key = [0u8; 33];
        let mut n = 0;
        loop {
            let got = r.read(&mut key[n..]).map_err(|e| CryptError::BadExchange(e.to_string()))?;
            if got == 0 {
                break;
            }
            n += got;
            if n == key.len() {
                break;
            }
        }
        if n != 32 {
            return Err(CryptError::BadExchange(format!("the wrapped key is {n} bytes, not 32")));
        }
        let mut k = [0u8; 32];
        k.copy_from_slice(&key[..32]);
        Ok(ContentKey(k))
    }
}

#[cfg(all(test, feature = "encryption"))]
mod tests {
    use super::*;

    fn key(b: u8) -> PayloadKey {
        PayloadKey([b; 32])
    }

    #[test]
    fn sealed_lengths_round_trip_and_impossible_lengths_are_refused() {
        for n in
            [0u64, 1, 100, CHUNK as u64 - 1, CHUNK as u64, CHUNK as u64 + 1, 3 * CHUNK as u64, 3 * CHUNK as u64 + 7]
        {
            let s = sealed_len(n).unwrap();
            assert_eq!(opened_len(s), Some(n), "{n}");
            let sealed = seal_all(&key(1), &vec![7u8; n as usize]);
            assert_eq!(sealed.len() as u64, s);
        }
        for bad in [0u64, 15, SEALED_CHUNK as u64 + 3, SEALED_CHUNK as u64 + 16] {
            assert_eq!(opened_len(bad), None, "{bad}");
        }
    }

    #[test]
    fn any_flipped_byte_cut_or_reorder_is_refused() {
        let plain: Vec<u8> = (0..(2 * CHUNK + 500)).map(|i| (i * 7 % 251) as u8).collect();
        let sealed = seal_all(&key(3), &plain);
        assert_eq!(open_all(&key(3), &sealed).unwrap(), plain);
        for at in [0, 17, CHUNK + 20, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[at] ^= 1;
            assert!(matches!(open_all(&key(3), &bad), Err(CryptError::Tampered { .. })), "{at}");
        }
        // Cut at a chunk edge: the now-last chunk was sealed as not last.
        assert!(open_all(&key(3), &sealed[..SEALED_CHUNK]).is_err());
        assert!(open_all(&key(3), &sealed[..SEALED_CHUNK + 5]).is_err());
        // Another key.
        assert!(matches!(open_all(&key(4), &sealed), Err(CryptError::Tampered { chunk: 0 })));
        // Swapped chunks.
        let mut swapped = sealed[SEALED_CHUNK..2 * SEALED_CHUNK].to_vec();
        swapped.extend_from_slice(&sealed[..SEALED_CHUNK]);
        swapped.extend_from_slice(&sealed[2 * SEALED_CHUNK..]);
        assert!(open_all(&key(3), &swapped).is_err());
    }

    #[test]
    fn pieces_of_any_size_open_the_same() {
        let plain: Vec<u8> = (0..(CHUNK + 999)).map(|i| (i % 13) as u8).collect();
        let sealed = seal_all(&key(5), &plain);
        for piece in [1usize, 7, 4096, CHUNK + TAG, sealed.len()] {
            let mut out = Vec::new();
            let mut o = Opener::new(&key(5));
            for c in sealed.chunks(piece) {
                o.push::<CryptError>(c, &mut |p| {
                    out.extend_from_slice(p);
                    Ok(())
                })
                .unwrap();
            }
            o.finish::<CryptError>(&mut |p| {
                out.extend_from_slice(p);
                Ok(())
            })
            .unwrap();
            assert_eq!(out, plain, "{piece}");
        }
    }

    #[test]
    fn keys_differ_per_leaf_and_purpose() {
        let k = ContentKey([9; 32]);
        assert_ne!(k.payload_key(1), k.payload_key(2));
        let d = Sha256Hex([1; 32]);
        assert_ne!(k.keyed_digest(&d), d);
        assert_ne!(k.keyed_digest(&d), ContentKey([8; 32]).keyed_digest(&d));
    }

    #[cfg(feature = "encryption")]
    #[test]
    fn a_content_key_reaches_every_recipient_and_nobody_else() {
        let a = Identities::generate();
        let b = Identities::generate();
        let c = Identities::generate();
        let to = Recipients::parse([a.recipients().to_strings()[0].as_str(), &b.recipients().to_strings()[0]]).unwrap();
        let k = ContentKey::generate().unwrap();
        let x = wrap_content_key(&k, &to).unwrap();
        assert_eq!(unwrap_content_key(&x, &a).unwrap(), k);
        assert_eq!(unwrap_content_key(&x, &b).unwrap(), k);
        assert!(matches!(unwrap_content_key(&x, &c), Err(CryptError::NotARecipient)));
        let again = Identities::parse(&a.to_file_text()).unwrap();
        assert_eq!(unwrap_content_key(&x, &again).unwrap(), k);
        assert!(matches!(Identities::parse(&to.to_strings()[0]), Err(CryptError::BadIdentity(_))));
        assert!(Recipients::parse(["age1nope"]).is_err());
    }
}
