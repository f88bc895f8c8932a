//! Witness cosignatures (C2SP `tlog-cosignature`, `cosignature/v1`) and the
//! `tlog-witness` `add-checkpoint` request and response bodies.
//!
//! A witness checks that a log's new checkpoint is consistent with the last
//! one it saw, then adds its own signature line to the checkpoint note. The
//! line is an ordinary signed-note signature line
//! `— <witness name> base64(key ID || timestamp || signature)` where
//!
//! - the key ID is `SHA-256(name || "\n" || 0x04 || 32-byte public key)[..4]`,
//!   big-endian (type byte `0x04` where a log key has `0x01`);
//! - the timestamp is the cosigning time in Unix seconds, a big-endian u64
//!   no larger than 2^63 - 1;
//! - the signature is Ed25519 (RFC 8032) over
//!   `"cosignature/v1\ntime <timestamp>\n" || note text`, the note text being
//!   the checkpoint body with its final newline and without signature lines.
//!
//! Witness keys use the signed-note key texts with type byte `0x04`:
//! `name+hexid+base64(0x04 || public key)` for the verifier key and
//! `PRIVATE+KEY+name+hexid+base64(0x04 || seed)` for the signer key.
//!
//! ```
//! use dare_container::cosign::{WitnessPolicy, WitnessSigningKey, append_cosignatures};
//! use dare_container::keys::SigningKey;
//! use dare_container::note::Note;
//!
//! let log = SigningKey::generate("example.com/app").unwrap();
//! let note = Note::sign("example.com/app\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", &[&log]).unwrap();
//! let witness = WitnessSigningKey::generate("witness.example/w1").unwrap();
//! let line = witness.cosign(note.text(), 1_700_000_000);
//! let cosigned = append_cosignatures(&note, &[line]).unwrap();
//! let policy = WitnessPolicy::new(vec![witness.verifier()], 1).unwrap();
//! assert_eq!(policy.check(&cosigned).unwrap(), vec![witness.verifier()]);
//! ```

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::Signer as _;

use crate::keys::{
    KeyError, SIGNER_PREFIX, decode_key_data_for, encode_key_data_for, is_valid_name, key_id_for, parse_hex_id,
    split_key_text,
};
use crate::merkle::Hash;
use crate::note::{MAX_NOTE_SIZE, MAX_SIGNATURES, Note, NoteError, NoteSignature, parse_signature_line_strict};

/// Signature type byte of `cosignature/v1` Ed25519 witness keys.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// The largest timestamp a cosignature may carry (2^63 - 1).
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// Most consistency-proof lines an `add-checkpoint` body may hold (the
/// tlog-witness limit).
pub const MAX_PROOF_LINES: usize = 63;

/// Largest `add-checkpoint` body [`AddCheckpoint::parse`] accepts: a
/// [`MAX_NOTE_SIZE`] note plus room for the old-size and proof lines.
pub const MAX_ADD_CHECKPOINT_SIZE: usize = MAX_NOTE_SIZE + 4096;

/// Largest `add-checkpoint` response body [`parse_cosignature_lines`]
/// accepts (64 KiB: far more than [`MAX_SIGNATURES`] Ed25519 lines).
pub const MAX_COSIGNATURE_RESPONSE_SIZE: usize = 64 << 10;

/// Bytes after the key ID in a `cosignature/v1` signature line:
/// 8-byte timestamp and 64-byte Ed25519 signature.
const TIMESTAMPED_SIGNATURE_LEN: usize = 8 + 64;

/// Errors from witness keys, cosignature policies and the witness protocol.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CosignError {
    /// The key text is malformed, has a bad name or key ID, or the key is
    /// not a usable Ed25519 point.
    #[error("invalid witness key: {0}")]
    Key(#[from] KeyError),
    /// The key text has another signature type than `cosignature/v1`
    /// (`0x04`), e.g. a log key (`0x01`) given as a witness key.
    #[error(
        "key type 0x{0:02x} is not a cosignature/v1 witness key (type 0x04){hint}",
        hint = if *.0 == 0x01 { ": this looks like a log signing key; use the key `dare keygen --witness` made" } else { "" }
    )]
    NotWitnessKey(u8),
    /// Fewer distinct witnesses cosigned validly than the policy requires.
    #[error("checkpoint has valid cosignatures from {valid} witness(es), {threshold} required")]
    BelowThreshold {
        /// Number of distinct policy witnesses with a valid cosignature.
        valid: usize,
        /// Number required.
        threshold: usize,
    },
    /// The threshold is 0 or larger than the number of witness keys.
    #[error("invalid witness threshold: {0}")]
    Threshold(String),
    /// The same witness key appears twice in a policy.
    #[error("witness key given more than once: {0}")]
    DuplicateKey(String),
    /// A witness protocol body (request or response) is malformed.
    #[error("malformed witness protocol message: {0}")]
    Protocol(String),
    /// Adding cosignature lines made an invalid note (too large, too many
    /// signatures).
    #[error("cannot add cosignatures to the note: {0}")]
    Note(#[from] NoteError),
}

/// The signed message of a `cosignature/v1` cosignature.
fn signed_message(note_text: &str, time: u64) -> Vec<u8> {
    let header = format!("cosignature/v1\ntime {time}\n");
    let mut msg = Vec::with_capacity(header.len() + note_text.len());
    msg.extend_from_slice(header.as_bytes());
    msg.extend_from_slice(note_text.as_bytes());
    msg
}

fn check_name(name: &str) -> Result<(), CosignError> {
    if is_valid_name(name) { Ok(()) } else { Err(KeyError::InvalidName(name.to_owned()).into()) }
}

fn decode_witness_key_data(data: &str) -> Result<[u8; 32], CosignError> {
    decode_key_data_for(ALG_COSIGNATURE_V1, data).map_err(|e| match e {
        KeyError::UnsupportedAlgorithm(alg) => CosignError::NotWitnessKey(alg),
        e => CosignError::Key(e),
    })
}

/// A witness's Ed25519 `cosignature/v1` signing key with its name.
///
/// `Debug` shows the name and key ID, never the seed.
#[derive(Clone)]
pub struct WitnessSigningKey {
    name: String,
    key_id: u32,
    key: ed25519_dalek::SigningKey,
}

impl WitnessSigningKey {
    /// Generates a new witness key named `name` from 32 bytes of
    /// operating-system randomness.
    pub fn generate(name: &str) -> Result<Self, CosignError> {
        check_name(name)?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Self::from_seed(name, seed)
    }

    /// Builds the witness key named `name` from a 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, CosignError> {
        check_name(name)?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let key_id = key_id_for(ALG_COSIGNATURE_V1, name, key.verifying_key().as_bytes());
        Ok(Self { name: name.to_owned(), key_id, key })
    }

    /// Parses `PRIVATE+KEY+name+hexid+base64(0x04 || seed)`. One trailing
    /// newline is ignored. The key ID must match the name and public key.
    pub fn parse(text: &str) -> Result<Self, CosignError> {
        let text = text.strip_suffix('\n').unwrap_or(text);
        let rest = text
            .strip_prefix(SIGNER_PREFIX)
            .ok_or(KeyError::Malformed("witness signer key must start with PRIVATE+KEY+"))?;
        let (name, id, data) = split_key_text(rest)?;
        check_name(name)?;
        let stated = parse_hex_id(id)?;
        let seed = decode_witness_key_data(data)?;
        let key = Self::from_seed(name, seed)?;
        if key.key_id != stated {
            return Err(KeyError::KeyIdMismatch { name: name.to_owned(), stated, computed: key.key_id }.into());
        }
        Ok(key)
    }

    /// The signer key text `PRIVATE+KEY+name+hexid+base64(0x04 || seed)`,
    /// without a trailing newline. This is the secret.
    pub fn to_text(&self) -> String {
        format!(
            "{SIGNER_PREFIX}{}+{:08x}+{}",
            self.name,
            self.key_id,
            encode_key_data_for(ALG_COSIGNATURE_V1, self.key.as_bytes())
        )
    }

    /// The witness name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 32-bit key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The matching verifier (public) key.
    pub fn verifier(&self) -> WitnessKey {
        WitnessKey { name: self.name.clone(), key_id: self.key_id, key: self.key.verifying_key() }
    }

    /// The cosignature line over a checkpoint note's text at `time`.
    ///
    /// `note_text` is [`Note::text`]: the checkpoint body, final newline
    /// included, no signature lines. `time` is Unix seconds; values above
    /// [`MAX_TIMESTAMP`] are clamped to it, as the spec allows no more.
    pub fn cosign(&self, note_text: &str, time: u64) -> NoteSignature {
        let time = time.min(MAX_TIMESTAMP);
        let sig = self.key.sign(&signed_message(note_text, time));
        let mut signature = Vec::with_capacity(TIMESTAMPED_SIGNATURE_LEN);
        signature.extend_from_slice(&time.to_be_bytes());
        signature.extend_from_slice(&sig.to_bytes());
        NoteSignature { name: self.name.clone(), key_id: self.key_id, signature }
    }
}

impl fmt::Debug for WitnessSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WitnessSigningKey")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

/// A witness's `cosignature/v1` verifier (public) key with its name.
///
/// Its text form, used by `Display`, `Debug` and `FromStr`, is
/// `name+hexid+base64(0x04 || public key)`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WitnessKey {
    name: String,
    key_id: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl WitnessKey {
    /// Parses `name+hexid+base64(0x04 || public key)`. The text must be
    /// exact (no surrounding whitespace), the key ID must match, and the key
    /// must be a canonically encoded Ed25519 point not of small order.
    pub fn parse(text: &str) -> Result<Self, CosignError> {
        if text.starts_with(SIGNER_PREFIX) {
            return Err(KeyError::PrivateKey.into());
        }
        let (name, id, data) = split_key_text(text)?;
        check_name(name)?;
        let stated = parse_hex_id(id)?;
        let public = decode_witness_key_data(data)?;
        let computed = key_id_for(ALG_COSIGNATURE_V1, name, &public);
        if computed != stated {
            return Err(KeyError::KeyIdMismatch { name: name.to_owned(), stated, computed }.into());
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public)
            .map_err(|_| KeyError::InvalidPublicKey(name.to_owned()))?;
        if key.is_weak() || key.to_edwards().compress().to_bytes() != public {
            return Err(KeyError::InvalidPublicKey(name.to_owned()).into());
        }
        Ok(Self { name: name.to_owned(), key_id: stated, key })
    }

    /// The witness name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 32-bit key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// `Some(timestamp)` iff `sig` is this key's valid cosignature of
    /// `note_text` ([`Note::text`]): the name and key ID match, the
    /// signature is a timestamp of at most [`MAX_TIMESTAMP`] and 64 bytes of
    /// Ed25519, and it verifies strictly over the `cosignature/v1` message.
    pub fn verify(&self, note_text: &str, sig: &NoteSignature) -> Option<u64> {
        if sig.name != self.name || sig.key_id != self.key_id {
            return None;
        }
        let (time, bytes) = sig.signature.split_first_chunk::<8>()?;
        let bytes = <[u8; 64]>::try_from(bytes).ok()?;
        let time = u64::from_be_bytes(*time);
        if time > MAX_TIMESTAMP {
            return None;
        }
        let signature = ed25519_dalek::Signature::from_bytes(&bytes);
        self.key.verify_strict(&signed_message(note_text, time), &signature).ok()?;
        Some(time)
    }
}

impl fmt::Display for WitnessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{:08x}+{}", self.name, self.key_id, encode_key_data_for(ALG_COSIGNATURE_V1, self.key.as_bytes()))
    }
}

impl fmt::Debug for WitnessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WitnessKey({self})")
    }
}

impl FromStr for WitnessKey {
    type Err = CosignError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A client's rule: at least `threshold` distinct witnesses of `keys`
/// cosigned a checkpoint.
#[derive(Clone, Debug)]
pub struct WitnessPolicy {
    keys: Vec<WitnessKey>,
    threshold: usize,
}

impl WitnessPolicy {
    /// Builds a policy. Requires `1 <= threshold <= keys.len()` and no two
    /// keys with the same name and key ID or the same public key (the
    /// `cosignature/v1` message does not commit to the name, so one public
    /// key under two names would count twice).
    pub fn new(keys: Vec<WitnessKey>, threshold: usize) -> Result<Self, CosignError> {
        if threshold == 0 || threshold > keys.len() {
            return Err(CosignError::Threshold(format!(
                "{threshold} of {} witness key(s): need 1 <= threshold <= number of witness keys",
                keys.len()
            )));
        }
        for (i, a) in keys.iter().enumerate() {
            if keys[..i].iter().any(|b| (a.name == b.name && a.key_id == b.key_id) || a.key == b.key) {
                return Err(CosignError::DuplicateKey(a.to_string()));
            }
        }
        Ok(Self { keys, threshold })
    }

    /// The witness keys.
    pub fn keys(&self) -> &[WitnessKey] {
        &self.keys
    }

    /// How many distinct witnesses must cosign.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The witnesses whose cosignature on `note` verifies, in order of first
    /// appearance, or [`CosignError::BelowThreshold`] if fewer than the
    /// threshold.
    ///
    /// Lines from unknown keys (the log's own signature among them) are
    /// ignored. A line that names a policy witness but does not verify is
    /// ignored too, unlike a bad log signature, which rejects a note: a
    /// witness is not the log, and a bad cosignature (say, one over another
    /// checkpoint a mirror mixed in) only fails to count. Each witness
    /// counts once.
    pub fn check(&self, note: &Note) -> Result<Vec<WitnessKey>, CosignError> {
        let mut valid: Vec<WitnessKey> = Vec::new();
        for sig in note.signatures() {
            for key in &self.keys {
                if !valid.contains(key) && key.verify(note.text(), sig).is_some() {
                    valid.push(key.clone());
                }
            }
        }
        if valid.len() >= self.threshold {
            Ok(valid)
        } else {
            Err(CosignError::BelowThreshold { valid: valid.len(), threshold: self.threshold })
        }
    }
}

/// The note with `sigs` appended to its signature lines (e.g. a log's
/// checkpoint plus the cosignatures witnesses returned). Fails if the
/// result is over [`MAX_NOTE_SIZE`] or [`MAX_SIGNATURES`] lines.
pub fn append_cosignatures(note: &Note, sigs: &[NoteSignature]) -> Result<Note, CosignError> {
    let mut bytes = note.to_bytes();
    for sig in sigs {
        bytes.extend_from_slice(sig.line().as_bytes());
    }
    Ok(Note::parse(&bytes)?)
}

/// Parses ASCII decimal with no sign and no leading zeros (except `0`).
fn parse_decimal(s: &str) -> Option<u64> {
    let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

/// A `tlog-witness` `add-checkpoint` request body: the size of the
/// checkpoint the client believes the witness last cosigned, a consistency
/// proof from that size to the new checkpoint's, and the new checkpoint
/// note.
///
/// Encoding: `old <size>\n`, one line of base64 per proof hash, an empty
/// line, then the encoded note (text, blank line, signature lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The tree size of the previous checkpoint (0 if none).
    pub old_size: u64,
    /// The RFC 9162 consistency proof from `old_size` to the new size.
    pub proof: Vec<Hash>,
    /// The encoded checkpoint note.
    pub note: Vec<u8>,
}

impl AddCheckpoint {
    /// The request body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("old {}\n", self.old_size).into_bytes();
        for h in &self.proof {
            out.extend_from_slice(BASE64.encode(h).as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(&self.note);
        out
    }

    /// Parses a request body strictly: at most [`MAX_ADD_CHECKPOINT_SIZE`]
    /// bytes, a canonical decimal old size, at most [`MAX_PROOF_LINES`]
    /// proof lines each canonical base64 of 32 bytes, the empty line, and a
    /// non-empty note of at most [`MAX_NOTE_SIZE`] bytes. The note itself is
    /// kept as bytes; parse it with [`Note::parse`].
    pub fn parse(body: &[u8]) -> Result<Self, CosignError> {
        let bad = |m: &str| CosignError::Protocol(m.to_owned());
        if body.len() > MAX_ADD_CHECKPOINT_SIZE {
            return Err(CosignError::Protocol(format!(
                "add-checkpoint body is {} bytes, more than the {MAX_ADD_CHECKPOINT_SIZE}-byte limit",
                body.len()
            )));
        }
        let mut rest = body;
        let mut next_line = || -> Result<&[u8], CosignError> {
            let end = rest.iter().position(|&b| b == b'\n').ok_or(bad("line without a final newline"))?;
            let line = &rest[..end];
            rest = &rest[end + 1..];
            Ok(line)
        };
        let old = next_line()?;
        let old_size = std::str::from_utf8(old)
            .ok()
            .and_then(|l| l.strip_prefix("old "))
            .and_then(parse_decimal)
            .ok_or(bad("first line must be \"old <size>\" in canonical decimal"))?;
        let mut proof = Vec::new();
        loop {
            let line = next_line()?;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(bad("more than 63 consistency proof lines"));
            }
            let hash = BASE64
                .decode(line)
                .ok()
                .and_then(|h| Hash::try_from(h).ok())
                .ok_or(bad("proof line is not canonical base64 of a 32-byte hash"))?;
            proof.push(hash);
        }
        let note = rest;
        if note.is_empty() {
            return Err(bad("no checkpoint after the empty line"));
        }
        if note.len() > MAX_NOTE_SIZE {
            return Err(bad("checkpoint note is larger than the note size limit"));
        }
        Ok(Self { old_size, proof, note: note.to_vec() })
    }
}

/// Parses the body of a 200 `add-checkpoint` response: one or more note
/// signature lines (`— name base64\n`), at most [`MAX_SIGNATURES`] of them
/// and [`MAX_COSIGNATURE_RESPONSE_SIZE`] bytes. The lines are not verified;
/// use [`WitnessKey::verify`] or [`WitnessPolicy::check`].
pub fn parse_cosignature_lines(body: &[u8]) -> Result<Vec<NoteSignature>, CosignError> {
    if body.len() > MAX_COSIGNATURE_RESPONSE_SIZE {
        return Err(CosignError::Protocol(format!(
            "cosignature response is {} bytes, more than the {MAX_COSIGNATURE_RESPONSE_SIZE}-byte limit",
            body.len()
        )));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| CosignError::Protocol("cosignature response is not valid UTF-8".to_owned()))?;
    let text = text
        .strip_suffix('\n')
        .ok_or_else(|| CosignError::Protocol("cosignature response must be newline-terminated lines".to_owned()))?;
    let count = text.split('\n').count();
    if count > MAX_SIGNATURES {
        return Err(CosignError::Protocol(format!(
            "cosignature response has {count} lines, more than the limit of {MAX_SIGNATURES}"
        )));
    }
    text.split('\n')
        .enumerate()
        .map(|(i, line)| {
            if line.bytes().any(|b| b < 0x20) {
                return Err(CosignError::Protocol(format!("cosignature line {}: control character", i + 1)));
            }
            parse_signature_line_strict(line, i + 1).map_err(|e| CosignError::Protocol(e.to_string()))
        })
        .collect()
}

/// The body of a 200 `add-checkpoint` response: each signature's line.
pub fn cosignature_lines(sigs: &[NoteSignature]) -> Vec<u8> {
    sigs.iter().flat_map(|s| s.line().into_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use crate::merkle::MemoryTree;
    use crate::note::Checkpoint;
    use ed25519_dalek::Verifier as _;
    use proptest::prelude::*;
    use sha2::{Digest as _, Sha256};

    const SPEC_TEXT: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    const SPEC_LOG_SIG: &str = "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
    const SPEC_COSIG: &str = "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";

    fn witness(name: &str, seed: u8) -> WitnessSigningKey {
        WitnessSigningKey::from_seed(name, [seed; 32]).unwrap()
    }

    fn log_note(text: &str) -> Note {
        let log = SigningKey::from_seed("example.com/log", [9; 32]).unwrap();
        Note::sign(text, &[&log]).unwrap()
    }

    #[test]
    fn spec_example_line_framing() {
        // The spec publishes no witness key, so check what it does fix: the
        // line is key ID || big-endian timestamp || 64-byte signature, and
        // the timestamp is the one in the spec's signed-message example.
        let sigs = parse_cosignature_lines(SPEC_COSIG.as_bytes()).unwrap();
        assert_eq!(sigs.len(), 1);
        assert_eq!(sigs[0].name, "witness.example.com/w1");
        assert_eq!(sigs[0].key_id, 0x8d66cf3f);
        assert_eq!(sigs[0].signature.len(), 72);
        assert_eq!(u64::from_be_bytes(sigs[0].signature[..8].try_into().unwrap()), 1679315147);
        assert_eq!(cosignature_lines(&sigs), SPEC_COSIG.as_bytes());
        let note = Note::parse(format!("{SPEC_TEXT}\n{SPEC_LOG_SIG}{SPEC_COSIG}").as_bytes()).unwrap();
        assert_eq!(note.signatures()[1], sigs[0]);
    }

    #[test]
    fn known_answer() {
        // Computed from first principles (SHA-256, the spec's message text,
        // and plain Ed25519), not through this module's helpers.
        let seed = [0x42u8; 32];
        let name = "witness.example/w1";
        let sk = WitnessSigningKey::from_seed(name, seed).unwrap();
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();

        let mut preimage = b"witness.example/w1\n\x04".to_vec();
        preimage.extend_from_slice(&public);
        let sum = Sha256::digest(&preimage);
        let id = u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]]);
        assert_eq!(sk.key_id(), id);

        let mut key_data = vec![0x04];
        key_data.extend_from_slice(&public);
        let vkey_text = format!("{name}+{id:08x}+{}", BASE64.encode(&key_data));
        assert_eq!(sk.verifier().to_string(), vkey_text);
        let mut seed_data = vec![0x04];
        seed_data.extend_from_slice(&seed);
        assert_eq!(sk.to_text(), format!("PRIVATE+KEY+{name}+{id:08x}+{}", BASE64.encode(&seed_data)));

        let sig = sk.cosign(SPEC_TEXT, 1679315147);
        assert_eq!(sig.name, name);
        assert_eq!(sig.key_id, id);
        assert_eq!(&sig.signature[..8], &[0, 0, 0, 0, 0x64, 0x18, 0x50, 0xcb]);
        let message = "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n\
                       CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let raw = ed25519_dalek::Signature::from_bytes(&sig.signature[8..].try_into().unwrap());
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
        vk.verify(message.as_bytes(), &raw).unwrap();
        // Ed25519 is deterministic: the expected line is fixed by the seed.
        let expected = ed25519_dalek::SigningKey::from_bytes(&seed).sign(message.as_bytes());
        let mut blob = id.to_be_bytes().to_vec();
        blob.extend_from_slice(&1679315147u64.to_be_bytes());
        blob.extend_from_slice(&expected.to_bytes());
        assert_eq!(sig.line(), format!("— {name} {}\n", BASE64.encode(&blob)));
        assert_eq!(sk.verifier().verify(SPEC_TEXT, &sig), Some(1679315147));
    }

    #[test]
    fn key_text_round_trips_and_debug_hides_seed() {
        let sk = WitnessSigningKey::generate("w.example/a").unwrap();
        let again = WitnessSigningKey::parse(&format!("{}\n", sk.to_text())).unwrap();
        assert_eq!(again.verifier(), sk.verifier());
        assert!(WitnessSigningKey::parse(&format!("{}\n\n", sk.to_text())).is_err());
        let vk: WitnessKey = sk.verifier().to_string().parse().unwrap();
        assert_eq!(vk, sk.verifier());
        assert_eq!(vk.name(), "w.example/a");
        assert_eq!(vk.key_id(), sk.key_id());
        // PRIVATE+KEY+name+hexid+base64: the base64 may itself hold a `+`.
        let seed_b64 = sk.to_text().splitn(5, '+').last().unwrap().to_owned();
        let dbg = format!("{sk:?}");
        assert!(dbg.contains("w.example/a") && dbg.contains(&format!("{:08x}", sk.key_id())));
        assert!(!dbg.contains(&seed_b64[..12]));
        assert_eq!(format!("{vk:?}"), format!("WitnessKey({vk})"));
    }

    #[test]
    fn key_type_and_form_errors() {
        let log = SigningKey::from_seed("example.com/log", [1; 32]).unwrap();
        assert!(matches!(WitnessKey::parse(&log.verifier().to_string()), Err(CosignError::NotWitnessKey(1))));
        assert!(matches!(WitnessSigningKey::parse(&log.to_text()), Err(CosignError::NotWitnessKey(1))));
        let w = witness("w", 1);
        assert!(matches!(WitnessKey::parse(&w.to_text()), Err(CosignError::Key(KeyError::PrivateKey))));
        assert!(matches!(WitnessSigningKey::parse(&w.verifier().to_string()), Err(CosignError::Key(_))));
        assert!(crate::keys::VerifierKey::parse(&w.verifier().to_string()).is_err());
        assert!(WitnessKey::parse(&format!("{} ", w.verifier())).is_err());
        // A wrong key ID.
        let text = w.verifier().to_string();
        let (name, rest) = text.split_once('+').unwrap();
        let (_, data) = rest.split_once('+').unwrap();
        let wrong = format!("{name}+{:08x}+{data}", w.key_id() ^ 1);
        assert!(matches!(WitnessKey::parse(&wrong), Err(CosignError::Key(KeyError::KeyIdMismatch { .. }))));
        // Small-order key with a correct key ID.
        let mut public = [0u8; 32];
        public[0] = 1;
        let id = key_id_for(ALG_COSIGNATURE_V1, "weak", &public);
        let weak = format!("weak+{id:08x}+{}", encode_key_data_for(ALG_COSIGNATURE_V1, &public));
        assert!(matches!(WitnessKey::parse(&weak), Err(CosignError::Key(KeyError::InvalidPublicKey(_)))));
        assert!(matches!(WitnessSigningKey::generate("a b"), Err(CosignError::Key(KeyError::InvalidName(_)))));
    }

    #[test]
    fn tampering_rejected() {
        let w = witness("w.example/1", 3);
        let vk = w.verifier();
        let text = "example.com/log\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let sig = w.cosign(text, 1_700_000_000);
        assert_eq!(vk.verify(text, &sig), Some(1_700_000_000));
        // Another text.
        assert_eq!(vk.verify("example.com/log\n6\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", &sig), None);
        // Timestamp changed.
        let mut t = sig.clone();
        t.signature[7] ^= 1;
        assert_eq!(vk.verify(text, &t), None);
        // Signature bit flipped.
        let mut s = sig.clone();
        s.signature[40] ^= 0x80;
        assert_eq!(vk.verify(text, &s), None);
        // Truncated / extended.
        let mut short = sig.clone();
        short.signature.pop();
        assert_eq!(vk.verify(text, &short), None);
        let mut long = sig.clone();
        long.signature.push(0);
        assert_eq!(vk.verify(text, &long), None);
        // Name or key ID changed.
        let mut n = sig.clone();
        n.name = "w.example/2".into();
        assert_eq!(vk.verify(text, &n), None);
        let mut id = sig.clone();
        id.key_id ^= 1;
        assert_eq!(vk.verify(text, &id), None);
        // Another witness key.
        assert_eq!(witness("w.example/1", 4).verifier().verify(text, &sig), None);
        // A log-style signature (no timestamp) over the text by the same seed.
        let plain = ed25519_dalek::SigningKey::from_bytes(&[3; 32]).sign(text.as_bytes()).to_bytes().to_vec();
        let log_like = NoteSignature { name: sig.name.clone(), key_id: sig.key_id, signature: plain };
        assert_eq!(vk.verify(text, &log_like), None);
    }

    #[test]
    fn timestamp_bounds() {
        let w = witness("w", 5);
        let text = "o\n0\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let sig = w.cosign(text, u64::MAX);
        assert_eq!(w.verifier().verify(text, &sig), Some(MAX_TIMESTAMP));
        assert_eq!(w.verifier().verify(text, &w.cosign(text, 0)), Some(0));
        // A timestamp over 2^63 - 1 is refused even with a valid signature
        // over the message it names.
        let time = MAX_TIMESTAMP + 1;
        let raw = ed25519_dalek::SigningKey::from_bytes(&[5; 32]).sign(&signed_message(text, time));
        let mut signature = time.to_be_bytes().to_vec();
        signature.extend_from_slice(&raw.to_bytes());
        let over = NoteSignature { name: "w".into(), key_id: w.key_id(), signature };
        assert_eq!(w.verifier().verify(text, &over), None);
    }

    #[test]
    fn policy_rules() {
        let a = witness("a", 1).verifier();
        let b = witness("b", 2).verifier();
        let a_renamed = witness("a2", 1).verifier();
        assert!(matches!(WitnessPolicy::new(vec![a.clone()], 0), Err(CosignError::Threshold(_))));
        assert!(matches!(WitnessPolicy::new(vec![a.clone()], 2), Err(CosignError::Threshold(_))));
        assert!(matches!(WitnessPolicy::new(vec![], 1), Err(CosignError::Threshold(_))));
        assert!(matches!(WitnessPolicy::new(vec![a.clone(), a.clone()], 1), Err(CosignError::DuplicateKey(_))));
        assert!(matches!(WitnessPolicy::new(vec![a.clone(), a_renamed], 1), Err(CosignError::DuplicateKey(_))));
        let p = WitnessPolicy::new(vec![a.clone(), b.clone()], 2).unwrap();
        assert_eq!(p.keys(), &[a, b]);
        assert_eq!(p.threshold(), 2);
    }

    #[test]
    fn policy_check_counts_distinct_valid_cosigners() {
        let text = "example.com/log\n3\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let note = log_note(text);
        let (a, b, c) = (witness("a", 1), witness("b", 2), witness("c", 3));
        let policy = WitnessPolicy::new(vec![a.verifier(), b.verifier(), c.verifier()], 2).unwrap();

        // The log signature alone: none.
        assert!(matches!(policy.check(&note), Err(CosignError::BelowThreshold { valid: 0, threshold: 2 })));
        // The same witness twice counts once.
        let twice = append_cosignatures(&note, &[a.cosign(text, 1), a.cosign(text, 2)]).unwrap();
        assert!(matches!(policy.check(&twice), Err(CosignError::BelowThreshold { valid: 1, threshold: 2 })));
        // A bad line from a known witness is ignored, not fatal.
        let mut bad = b.cosign(text, 1);
        bad.signature[20] ^= 1;
        let with_bad = append_cosignatures(&note, &[bad.clone(), a.cosign(text, 1)]).unwrap();
        assert!(matches!(policy.check(&with_bad), Err(CosignError::BelowThreshold { valid: 1, .. })));
        let enough = append_cosignatures(&note, &[bad, c.cosign(text, 9), a.cosign(text, 1)]).unwrap();
        assert_eq!(policy.check(&enough).unwrap(), vec![c.verifier(), a.verifier()]);
        // An unknown witness does not count.
        let stranger = append_cosignatures(&note, &[witness("d", 4).cosign(text, 1), a.cosign(text, 1)]).unwrap();
        assert!(matches!(policy.check(&stranger), Err(CosignError::BelowThreshold { valid: 1, .. })));
        // Cosignatures over another checkpoint do not count.
        let other = "example.com/log\n4\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let moved = append_cosignatures(&note, &[a.cosign(other, 1), b.cosign(other, 1)]).unwrap();
        assert!(matches!(policy.check(&moved), Err(CosignError::BelowThreshold { valid: 0, .. })));
        // The cosigned note still verifies as the log's note, and round-trips.
        let log = SigningKey::from_seed("example.com/log", [9; 32]).unwrap();
        enough.verify_with(&[log.verifier()], 1).unwrap();
        assert_eq!(Note::parse(&enough.to_bytes()).unwrap(), enough);
    }

    #[test]
    fn append_respects_note_limits() {
        let text = "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let note = log_note(text);
        let w = witness("w", 1);
        let sigs: Vec<NoteSignature> = (0..MAX_SIGNATURES as u64).map(|t| w.cosign(text, t)).collect();
        assert!(matches!(append_cosignatures(&note, &sigs), Err(CosignError::Note(_))));
        assert!(append_cosignatures(&note, &sigs[..MAX_SIGNATURES - 1]).is_ok());
    }

    #[test]
    fn add_checkpoint_round_trip_and_spec_example() {
        let mut tree = MemoryTree::new();
        for i in 0u8..7 {
            tree.push(crate::merkle::leaf_hash(&[i]));
        }
        let proof = tree.consistency_proof(3, 7).unwrap();
        let cp =
            Checkpoint { origin: "o".into(), size: 7, root: tree.root_at(7).unwrap(), time: None, extensions: vec![] };
        let note = log_note(&cp.to_text()).to_bytes();
        let req = AddCheckpoint { old_size: 3, proof, note: note.clone() };
        let bytes = req.to_bytes();
        assert!(bytes.starts_with(b"old 3\n"));
        assert_eq!(AddCheckpoint::parse(&bytes).unwrap(), req);
        let empty = AddCheckpoint { old_size: 0, proof: vec![], note: note.clone() };
        let mut expect = b"old 0\n\n".to_vec();
        expect.extend_from_slice(&note);
        assert_eq!(empty.to_bytes(), expect);
        assert_eq!(AddCheckpoint::parse(&expect).unwrap(), empty);

        let spec = "old 20852014\n\
                    PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n\
                    jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\
                    5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n\
                    /6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\
                    \n";
        let body = format!("{spec}{SPEC_TEXT}\n{SPEC_LOG_SIG}");
        let parsed = AddCheckpoint::parse(body.as_bytes()).unwrap();
        assert_eq!(parsed.old_size, 20852014);
        assert_eq!(parsed.proof.len(), 4);
        assert_eq!(BASE64.encode(parsed.proof[3]), "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=");
        assert_eq!(parsed.note, format!("{SPEC_TEXT}\n{SPEC_LOG_SIG}").as_bytes());
        assert_eq!(parsed.to_bytes(), body.as_bytes());
    }

    #[test]
    fn add_checkpoint_rejects_malformed() {
        let h = "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=";
        let note = "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n— o AAAAAQE=\n";
        let bad = [
            String::new(),
            "old 1".to_owned(),
            format!("old 1\n{note}"),
            format!("old 01\n\n{note}"),
            format!("old -1\n\n{note}"),
            format!("old  1\n\n{note}"),
            format!("old 18446744073709551616\n\n{note}"),
            format!("Old 1\n\n{note}"),
            format!("old 1\r\n\n{note}"),
            "old 1\n\n".to_owned(),
            format!("old 1\n{h}\n"),
            format!("old 1\n{h}x\n\n{note}"),
            format!("old 1\nAAAA\n\n{note}"),
            format!("old 1\n{}\n\n{note}", &h[..43]),
            format!("old 1\n{}\n\n{note}", [h; 64].join("\n")),
        ];
        for body in &bad {
            assert!(matches!(AddCheckpoint::parse(body.as_bytes()), Err(CosignError::Protocol(_))), "{body:?}");
        }
        let max_ok = format!("old 1\n{}\n\n{note}", [h; 63].join("\n"));
        assert_eq!(AddCheckpoint::parse(max_ok.as_bytes()).unwrap().proof.len(), 63);
        let huge = vec![b'x'; MAX_ADD_CHECKPOINT_SIZE + 1];
        assert!(matches!(AddCheckpoint::parse(&huge), Err(CosignError::Protocol(_))));
    }

    #[test]
    fn cosignature_lines_rejects_malformed() {
        let good = SPEC_COSIG;
        for body in [
            "".to_owned(),
            "\n".to_owned(),
            good.trim_end().to_owned(),
            format!("{good}\n"),
            format!("{good}junk\n"),
            good.replace('—', "-"),
            good.replace("w1 ", "w1  "),
            format!("{good}{}", good.replace('\n', "\r\n")),
            good.repeat(MAX_SIGNATURES + 1),
        ] {
            assert!(matches!(parse_cosignature_lines(body.as_bytes()), Err(CosignError::Protocol(_))), "{body:?}");
        }
        assert_eq!(parse_cosignature_lines(good.repeat(3).as_bytes()).unwrap().len(), 3);
        assert!(parse_cosignature_lines(&vec![b'a'; MAX_COSIGNATURE_RESPONSE_SIZE + 1]).is_err());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = AddCheckpoint::parse(&bytes);
            let _ = parse_cosignature_lines(&bytes);
            if let Ok(s) = std::str::from_utf8(&bytes) {
                let _ = WitnessKey::parse(s);
                let _ = WitnessSigningKey::parse(s);
            }
        }

        #[test]
        fn add_checkpoint_like_never_panics(
            old in prop_oneof![Just("old 5".to_owned()), Just("old 0".to_owned()), "[ -~]{0,12}"],
            proof in prop::collection::vec(prop_oneof![
                Just("PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=".to_owned()),
                Just(String::new()),
                "[A-Za-z0-9+/=]{0,46}",
            ], 0..5),
            note in "[ -~\n—]{0,80}",
        ) {
            let body = format!("{old}\n{}\n{note}", proof.iter().map(|p| format!("{p}\n")).collect::<String>());
            if let Ok(req) = AddCheckpoint::parse(body.as_bytes()) {
                prop_assert_eq!(AddCheckpoint::parse(&req.to_bytes()).unwrap(), req);
            }
        }

        #[test]
        fn cosign_round_trip(
            seed in any::<[u8; 32]>(),
            name in "[a-z0-9./-]{1,20}",
            size in any::<u64>(),
            time in 0..=MAX_TIMESTAMP,
        ) {
            let w = WitnessSigningKey::from_seed(&name, seed).unwrap();
            let text = format!("example.com/log\n{size}\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n");
            let sig = w.cosign(&text, time);
            let parsed = parse_cosignature_lines(&cosignature_lines(std::slice::from_ref(&sig))).unwrap();
            prop_assert_eq!(&parsed, &vec![sig]);
            let vk = WitnessKey::parse(&w.verifier().to_string()).unwrap();
            prop_assert_eq!(vk.verify(&text, &parsed[0]), Some(time));
            let sk = WitnessSigningKey::parse(&w.to_text()).unwrap();
            prop_assert_eq!(sk.verifier(), vk);
        }
    }
}
