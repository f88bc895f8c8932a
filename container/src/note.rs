//! C2SP signed notes and tlog checkpoints.
//!
//! A signed note (<https://c2sp.org/signed-note>) is a UTF-8 text ending in a
//! newline, a blank line, then one or more signature lines
//! `— <key name> <base64(key ID || signature)>`. The signatures cover the text
//! bytes exactly, final newline included, so a [`Note`] keeps the text as
//! received and never re-serializes it to verify.
//!
//! A checkpoint (<https://c2sp.org/tlog-checkpoint>) is a note text with the
//! log origin, tree size and root hash, then optional extension lines. dare
//! puts its signed publication time in the extension line `time <unix
//! seconds>`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::keys::{KeyError, SigningKey, TrustRoot, VerifierKey, is_valid_name};

/// Largest encoded note [`Note::parse`] accepts, in bytes (1 MiB).
pub const MAX_NOTE_SIZE: usize = 1 << 20;

/// Most signature lines a note may carry (the limit Go's `note` package and
/// the C2SP spec suggest).
pub const MAX_SIGNATURES: usize = 100;

/// The start of every signature line: em dash (U+2014) and a space.
pub(crate) const SIG_PREFIX: &str = "\u{2014} ";

/// Errors from parsing, signing or verifying notes and checkpoints.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    /// The encoded note is larger than [`MAX_NOTE_SIZE`].
    #[error("note is {size} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Size of the input in bytes.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The note is not valid UTF-8.
    #[error("note is not valid UTF-8 (at byte {offset})")]
    InvalidUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// The note holds an ASCII control character other than newline.
    #[error("control character 0x{byte:02x} at byte {offset}: only newline is allowed")]
    ControlCharacter {
        /// Byte offset of the character.
        offset: usize,
        /// The character's value.
        byte: u8,
    },
    /// No blank line separates the text from the signatures.
    #[error("note has no blank line separating the text from the signatures")]
    MissingBlankLine,
    /// Nothing follows the blank line.
    #[error("note has no signature lines")]
    NoSignatures,
    /// The note does not end with a newline.
    #[error("note does not end with a newline")]
    MissingFinalNewline,
    /// A signature line is malformed.
    #[error("signature line {line}: {reason}")]
    MalformedSignatureLine {
        /// 1-based index of the line among the signature lines.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The note has more than [`MAX_SIGNATURES`] signature lines.
    #[error("note has {count} signature lines, more than the limit of {max}")]
    TooManySignatures {
        /// Number of signature lines (or signers).
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A text given to [`Note::sign`] or [`Checkpoint::parse`] is not a valid
    /// note text.
    #[error("invalid note text: {0}")]
    InvalidText(&'static str),
    /// [`Note::sign`] was given no keys.
    #[error("a note needs at least one signing key")]
    NoSigners,
    /// [`Note::sign`] was given the same key (name and key ID) twice.
    #[error("signing key {0} given more than once")]
    DuplicateSigner(String),
    /// A signature line names a trusted key (its name, and its key ID or an
    /// undecodable one) but is malformed, so it cannot be checked.
    #[error("signature line {line} names trusted key {key} but is malformed: {reason}")]
    MalformedTrustedSignature {
        /// The trusted key the line names (boxed: keys are large).
        key: Box<VerifierKey>,
        /// 1-based index of the line among the signature lines.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A signature line names a trusted key but its signature does not verify.
    #[error("signature by trusted key {key} does not verify")]
    InvalidSignature {
        /// The trusted key whose signature failed (boxed: keys are large).
        key: Box<VerifierKey>,
    },
    /// Fewer distinct trusted keys signed validly than the threshold requires.
    #[error("note has valid signatures from {valid} trusted key(s), {threshold} required")]
    BelowThreshold {
        /// Number of distinct trusted keys with a valid signature.
        valid: usize,
        /// Number required.
        threshold: u32,
    },
    /// The trust root (keys and threshold) is invalid.
    #[error("invalid trust root: {0}")]
    TrustRoot(#[from] KeyError),
    /// A checkpoint text is malformed.
    #[error("checkpoint line {line}: {reason}")]
    MalformedCheckpoint {
        /// 1-based line number in the checkpoint text.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Checks a note text: non-empty, ends in newline, no control characters but
/// newline.
fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::InvalidText("text must end with a newline"));
    }
    check_controls(text)
}

fn check_controls(s: &str) -> Result<(), NoteError> {
    match s.bytes().enumerate().find(|&(_, b)| b < 0x20 && b != b'\n') {
        Some((offset, byte)) => Err(NoteError::ControlCharacter { offset, byte }),
        None => Ok(()),
    }
}

/// One well-formed signature line of a note, as parsed (not yet verified).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The 32-bit key ID.
    pub key_id: u32,
    /// The signature bytes after the key ID (64 bytes for Ed25519; other
    /// signature types may differ).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The encoded signature line `— <name> <base64(key ID || signature)>`,
    /// final newline included.
    pub fn line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}\n", self.name, BASE64.encode(raw))
    }
}

/// A signature line that starts with the em dash but is otherwise malformed:
/// a bad key name, base64 that is not canonical, or fewer than 5 decoded
/// bytes. It cannot be verified, so it never counts towards a threshold;
/// [`Note::verify`] ignores it unless it names a trusted key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalformedSignature {
    /// 1-based index of the line among the signature lines.
    pub line: usize,
    /// Everything between the em dash and the first space after it (the
    /// whole rest of the line if it has no space); possibly not a valid name.
    pub name: String,
    /// The key ID, if the signature field decodes (leniently: padding and
    /// trailing bits not checked) to at least 4 bytes.
    pub key_id: Option<u32>,
    /// What is wrong with the line.
    pub reason: &'static str,
}

/// Base64 that ignores what canonical encoding pins down (trailing bits,
/// padding), to read a key ID out of a line that is not canonical.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A signed note: the exact text and its signature lines.
///
/// A parsed note is only well-formed; call [`Note::verify`] before trusting
/// the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    text: String,
    /// The signature lines exactly as encoded, each ending in a newline.
    lines: String,
    signatures: Vec<NoteSignature>,
    malformed: Vec<MalformedSignature>,
}

impl Note {
    /// Parses an encoded signed note. Rejects input over [`MAX_NOTE_SIZE`]
    /// bytes, invalid UTF-8, control characters other than newline, a missing
    /// blank line or final newline, a signature line that does not start with
    /// an em dash and a space, and more than [`MAX_SIGNATURES`] signature
    /// lines.
    ///
    /// A signature line is well-formed if it is em dash, space, valid key
    /// name, space, canonical standard base64 of at least 5 bytes (a 4-byte
    /// key ID and the signature). Other signature lines are kept as
    /// [`MalformedSignature`]s: signed-note says verifiers ignore signatures
    /// from keys they do not know, and a cosigner's line dare cannot read is
    /// one of those. [`Note::verify`] rejects the note only if such a line
    /// names a trusted key.
    ///
    /// The text is everything up to and including the newline before the
    /// last blank line, so it may itself contain blank lines. Duplicate and
    /// unknown-key signature lines are kept; [`Note::verify`] deals with them.
    pub fn parse(bytes: &[u8]) -> Result<Note, NoteError> {
        if bytes.len() > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge { size: bytes.len(), max: MAX_NOTE_SIZE });
        }
        let s = std::str::from_utf8(bytes).map_err(|e| NoteError::InvalidUtf8 { offset: e.valid_up_to() })?;
        check_controls(s)?;
        let split = s.rfind("\n\n").ok_or(NoteError::MissingBlankLine)?;
        let text = &s[..=split];
        let lines = &s[split + 2..];
        if lines.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        let Some(body) = lines.strip_suffix('\n') else {
            return Err(NoteError::MissingFinalNewline);
        };
        let count = body.split('\n').count();
        if count > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures { count, max: MAX_SIGNATURES });
        }
        let mut signatures = Vec::new();
        let mut malformed = Vec::new();
        for (i, line) in body.split('\n').enumerate() {
            match parse_signature_line(line, i + 1)? {
                Ok(sig) => signatures.push(sig),
                Err(bad) => malformed.push(bad),
            }
        }
        Ok(Note { text: text.to_owned(), lines: lines.to_owned(), signatures, malformed })
    }

    /// Signs `text` with each key, in order. The text must end with a newline
    /// and hold no control characters other than newline; it may contain
    /// blank lines. Keys must be distinct (by name and key ID), between 1 and
    /// [`MAX_SIGNATURES`] of them, and the encoded note must fit in
    /// [`MAX_NOTE_SIZE`], so the result always parses.
    pub fn sign(text: &str, keys: &[&SigningKey]) -> Result<Note, NoteError> {
        check_text(text)?;
        if keys.is_empty() {
            return Err(NoteError::NoSigners);
        }
        if keys.len() > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures { count: keys.len(), max: MAX_SIGNATURES });
        }
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|p| p.name() == k.name() && p.key_id() == k.key_id()) {
                return Err(NoteError::DuplicateSigner(format!("{}+{:08x}", k.name(), k.key_id())));
            }
        }
        let signatures: Vec<NoteSignature> = keys
            .iter()
            .map(|k| NoteSignature {
                name: k.name().to_owned(),
                key_id: k.key_id(),
                signature: k.sign(text.as_bytes()).to_vec(),
            })
            .collect();
        let lines: String = signatures.iter().map(NoteSignature::line).collect();
        let note = Note { text: text.to_owned(), lines, signatures, malformed: Vec::new() };
        let size = note.encoded_len();
        if size > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge { size, max: MAX_NOTE_SIZE });
        }
        Ok(note)
    }

    /// The signed text, final newline included.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The well-formed signature lines in note order, duplicates and unknown
    /// keys included.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// The malformed signature lines (see [`Note::parse`]), in note order.
    pub fn malformed_signatures(&self) -> &[MalformedSignature] {
        &self.malformed
    }

    /// The encoded note: text, blank line, signature lines. For a parsed note
    /// these are exactly the bytes parsed, malformed lines included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(self.text.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(self.lines.as_bytes());
        out
    }

    fn encoded_len(&self) -> usize {
        self.text.len() + 1 + self.lines.len()
    }

    /// Verifies the note against a trust root.
    ///
    /// Signature lines whose name and key ID match no trusted key are
    /// ignored, well-formed or not. Every line that matches a trusted key
    /// must verify, or the whole note is rejected with
    /// [`NoteError::InvalidSignature`] naming the key; a malformed line that
    /// matches a trusted key (its name, and its key ID or a key ID that
    /// cannot be decoded) rejects the note with
    /// [`NoteError::MalformedTrustedSignature`]. Each key counts once however
    /// many lines it has. Returns the distinct trusted keys that signed, in
    /// order of first appearance, if there are at least `root.threshold` of
    /// them, else [`NoteError::BelowThreshold`].
    pub fn verify(&self, root: &TrustRoot) -> Result<Vec<VerifierKey>, NoteError> {
        root.validate()?;
        for bad in &self.malformed {
            let names = |k: &&VerifierKey| k.name() == bad.name && bad.key_id.is_none_or(|id| id == k.key_id());
            if let Some(key) = root.keys.iter().find(names) {
                return Err(NoteError::MalformedTrustedSignature {
                    key: Box::new(key.clone()),
                    line: bad.line,
                    reason: bad.reason,
                });
            }
        }
        let mut signed: Vec<VerifierKey> = Vec::new();
        for sig in &self.signatures {
            let Some(key) = root.keys.iter().find(|k| k.name() == sig.name && k.key_id() == sig.key_id) else {
                continue;
            };
            if !key.verify(self.text.as_bytes(), &sig.signature) {
                return Err(NoteError::InvalidSignature { key: Box::new(key.clone()) });
            }
            if !signed.contains(key) {
                signed.push(key.clone());
            }
        }
        let enough = usize::try_from(root.threshold).is_ok_and(|t| signed.len() >= t);
        if enough {
            Ok(signed)
        } else {
            Err(NoteError::BelowThreshold { valid: signed.len(), threshold: root.threshold })
        }
    }

    /// Like [`Note::verify`] with a trust root built from `keys` and
    /// `threshold` (which must satisfy [`TrustRoot::new`]).
    pub fn verify_with(&self, keys: &[VerifierKey], threshold: u32) -> Result<Vec<VerifierKey>, NoteError> {
        let root = TrustRoot::new(keys.to_vec(), threshold)?;
        self.verify(&root)
    }
}

/// Parses one signature line. The outer error (no em dash and space) makes
/// the whole note malformed; the inner one is a signature line that is kept
/// but cannot be verified.
/// One signature line that must be well formed (a witness's answer).
pub(crate) fn parse_signature_line_strict(line: &str, index: usize) -> Result<NoteSignature, NoteError> {
    match parse_signature_line(line, index)? {
        Ok(sig) => Ok(sig),
        Err(m) => Err(NoteError::MalformedSignatureLine { line: index, reason: m.reason }),
    }
}

fn parse_signature_line(line: &str, index: usize) -> Result<Result<NoteSignature, MalformedSignature>, NoteError> {
    let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::MalformedSignatureLine {
        line: index,
        reason: "must start with an em dash (U+2014) and a space",
    })?;
    let (name, b64) = rest.split_once(' ').unwrap_or((rest, ""));
    let key_id =
        LENIENT_BASE64.decode(b64).ok().and_then(|raw| raw.first_chunk::<4>().map(|id| u32::from_be_bytes(*id)));
    let bad = |reason| Ok(Err(MalformedSignature { line: index, name: name.to_owned(), key_id, reason }));
    if !rest.contains(' ') {
        return bad("missing space between key name and signature");
    }
    if !is_valid_name(name) {
        return bad("invalid key name");
    }
    let Ok(raw) = BASE64.decode(b64) else {
        return bad("signature is not canonical standard base64");
    };
    match raw.split_first_chunk::<4>() {
        Some((id, sig)) if !sig.is_empty() => {
            Ok(Ok(NoteSignature { name: name.to_owned(), key_id: u32::from_be_bytes(*id), signature: sig.to_vec() }))
        }
        _ => bad("signature must hold a 4-byte key ID and at least 1 byte"),
    }
}

/// A transparency-log checkpoint (C2SP tlog-checkpoint) as dare uses it.
///
/// Text form: origin, tree size, base64 root hash, then extension lines;
/// dare's `time <unix seconds>` line, if present, is the first extension.
/// Verify the note first, then parse its exact text with
/// [`Checkpoint::parse`]; never re-serialize to verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (its unique name, e.g. `example.com/myapp`).
    pub origin: String,
    /// The number of leaves in the tree.
    pub size: u64,
    /// The RFC 6962 Merkle tree root hash at `size`.
    pub root: [u8; 32],
    /// The signed publication time in Unix seconds (the `time` extension).
    pub time: Option<u64>,
    /// Other extension lines, in order, without newlines.
    pub extensions: Vec<String>,
}

/// Reports whether an extension line is dare's time line (`time` as its
/// first space-separated word).
fn is_time_line(line: &str) -> bool {
    line == "time" || line.starts_with("time ")
}

/// Parses ASCII decimal with no sign and no leading zeros (except `0`).
fn parse_decimal(s: &str) -> Option<u64> {
    let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

impl Checkpoint {
    /// Parses a checkpoint note text (final newline included) strictly: at
    /// least three lines, all non-empty; a decimal tree size without leading
    /// zeros; a root hash in canonical standard base64 of exactly 32 bytes.
    /// An extension line `time <secs>` (canonical decimal) is accepted only
    /// as the first extension line; other extension lines are kept as is.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        check_text(text)?;
        let body = text.strip_suffix('\n').unwrap_or(text);
        let lines: Vec<&str> = body.split('\n').collect();
        let bad = |line: usize, reason| NoteError::MalformedCheckpoint { line, reason };
        if let Some(i) = lines.iter().position(|l| l.is_empty()) {
            return Err(bad(i + 1, "empty line"));
        }
        let (origin, size, root, ext) = match lines.as_slice() {
            [origin, size, root, ext @ ..] => (*origin, *size, *root, ext),
            _ => {
                return Err(bad(lines.len() + 1, "missing line: need origin, tree size and root hash"));
            }
        };
        let size =
            parse_decimal(size).ok_or(bad(2, "tree size must be a decimal u64 without sign or leading zeros"))?;
        let root: [u8; 32] = BASE64
            .decode(root)
            .ok()
            .and_then(|r| <[u8; 32]>::try_from(r).ok())
            .ok_or(bad(3, "root hash must be canonical base64 of 32 bytes"))?;
        let mut time = None;
        let mut extensions = Vec::new();
        for (i, line) in ext.iter().enumerate() {
            if is_time_line(line) {
                if i != 0 {
                    return Err(bad(i + 4, "time line must be the first extension line and appear once"));
                }
                let value = line
                    .strip_prefix("time ")
                    .and_then(parse_decimal)
                    .ok_or(bad(i + 4, "time line must be \"time <unix seconds>\" in canonical decimal"))?;
                time = Some(value);
            } else {
                extensions.push((*line).to_owned());
            }
        }
        Ok(Self { origin: origin.to_owned(), size, root, time, extensions })
    }

    /// Checks that [`Checkpoint::to_text`] will produce a text that
    /// [`Checkpoint::parse`] accepts and maps back to `self`: a non-empty
    /// origin and non-empty extension lines without newlines or control
    /// characters, none of which look like a `time` line.
    pub fn validate(&self) -> Result<(), NoteError> {
        let bad = |line: usize, reason| NoteError::MalformedCheckpoint { line, reason };
        let clean = |s: &str| !s.is_empty() && !s.bytes().any(|b| b < 0x20);
        if !clean(&self.origin) {
            return Err(bad(1, "origin must be non-empty without newlines or control characters"));
        }
        let first_ext = if self.time.is_some() { 5 } else { 4 };
        for (i, e) in self.extensions.iter().enumerate() {
            if !clean(e) {
                return Err(bad(
                    first_ext + i,
                    "extension line must be non-empty without newlines or control characters",
                ));
            }
            if is_time_line(e) {
                return Err(bad(first_ext + i, "use the time field for the time line"));
            }
        }
        Ok(())
    }

    /// The checkpoint text: origin, size, base64 root, then `time <secs>` if
    /// set, then the other extension lines, each ending in a newline. The
    /// result is the text to sign with [`Note::sign`]; call
    /// [`Checkpoint::validate`] first if the fields came from outside.
    pub fn to_text(&self) -> String {
        let mut out = format!("{}\n{}\n{}\n", self.origin, self.size, BASE64.encode(self.root));
        if let Some(t) = self.time {
            out.push_str(&format!("time {t}\n"));
        }
        for e in &self.extensions {
            out.push_str(e);
            out.push('\n');
        }
        out
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
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const PETER_SIG: &str =
        "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str =
        "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    // From c2sp.org/tlog-checkpoint.
    const SPEC_CHECKPOINT: &str = "example.com/behind-the-sofa\n\
        20852163\n\
        CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\
        \n\
        — example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";

    fn peter() -> VerifierKey {
        VerifierKey::parse(PETER_VKEY).unwrap()
    }
    fn enoch() -> VerifierKey {
        VerifierKey::parse(ENOCH_VKEY).unwrap()
    }
    fn peter_note() -> String {
        format!("{TEXT}\n{PETER_SIG}")
    }
    fn key(name: &str, seed: u8) -> SigningKey {
        SigningKey::from_seed(name, [seed; 32]).unwrap()
    }

    #[test]
    fn go_vector_sign_is_byte_identical() {
        let sk = SigningKey::parse(PETER_SKEY).unwrap();
        let note = Note::sign(TEXT, &[&sk]).unwrap();
        assert_eq!(note.to_bytes(), peter_note().as_bytes());
    }

    #[test]
    fn go_vector_parse_and_verify() {
        let note = Note::parse(peter_note().as_bytes()).unwrap();
        assert_eq!(note.text(), TEXT);
        assert_eq!(note.signatures().len(), 1);
        assert_eq!(note.signatures()[0].name, "PeterNeumann");
        assert_eq!(note.signatures()[0].key_id, 0xc74f20a3);
        assert_eq!(note.signatures()[0].signature.len(), 64);
        assert_eq!(note.to_bytes(), peter_note().as_bytes());
        assert_eq!(note.verify_with(&[peter()], 1).unwrap(), vec![peter()]);
    }

    #[test]
    fn go_vector_two_signatures() {
        let msg = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        let note = Note::parse(msg.as_bytes()).unwrap();
        assert_eq!(note.signatures().len(), 2);
        let both = note.verify_with(&[enoch(), peter()], 2).unwrap();
        assert_eq!(both, vec![peter(), enoch()]);
        // Unknown key (Enoch) ignored.
        assert_eq!(note.verify_with(&[peter()], 1).unwrap(), vec![peter()]);
        // No known key at all.
        let other = key("other", 9).verifier();
        assert!(matches!(note.verify_with(&[other], 1), Err(NoteError::BelowThreshold { valid: 0, threshold: 1 })));
    }

    #[test]
    fn known_key_bad_signature_rejects_note() {
        // Go's test: splice "ABCD" into the base64.
        let bad_sig = format!("{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
        let note = Note::parse(format!("{TEXT}\n{bad_sig}").as_bytes()).unwrap();
        match note.verify_with(&[peter()], 1) {
            Err(NoteError::InvalidSignature { key }) => assert_eq!(*key, peter()),
            other => panic!("unexpected {other:?}"),
        }
        // A bad line from a known key rejects even next to a good one from it.
        let msg = format!("{TEXT}\n{PETER_SIG}{bad_sig}");
        let note = Note::parse(msg.as_bytes()).unwrap();
        assert!(matches!(note.verify_with(&[peter()], 1), Err(NoteError::InvalidSignature { .. })));
        // ... and next to a good one from another key.
        let msg = format!("{TEXT}\n{ENOCH_SIG}{bad_sig}");
        let note = Note::parse(msg.as_bytes()).unwrap();
        assert!(note.verify_with(&[peter(), enoch()], 1).is_err());
        // A bad line from an unknown key is ignored.
        assert_eq!(note.verify_with(&[enoch()], 1).unwrap(), vec![enoch()]);
    }

    #[test]
    fn same_name_or_id_only_is_unknown() {
        // Same name, different key: ignored, not an error.
        let impostor = key("PeterNeumann", 3);
        let note = Note::sign(TEXT, &[&impostor]).unwrap();
        let mut bytes = note.to_bytes();
        bytes.extend_from_slice(PETER_SIG.as_bytes());
        let note = Note::parse(&bytes).unwrap();
        assert_eq!(note.verify_with(&[peter()], 1).unwrap(), vec![peter()]);
        // Same ID, different name: ignored.
        let renamed = PETER_SIG.replace("PeterNeumann", "CarmenSandiego");
        let note = Note::parse(format!("{TEXT}\n{renamed}{PETER_SIG}").as_bytes()).unwrap();
        assert_eq!(note.verify_with(&[peter()], 1).unwrap(), vec![peter()]);
    }

    #[test]
    fn duplicate_lines_count_once() {
        let enoch_abcd = format!("{}ABCD{}", &ENOCH_SIG[..60], &ENOCH_SIG[60..]);
        let msg = format!("{TEXT}\n{PETER_SIG}{PETER_SIG}{ENOCH_SIG}{ENOCH_SIG}{enoch_abcd}");
        let note = Note::parse(msg.as_bytes()).unwrap();
        assert_eq!(note.signatures().len(), 5);
        assert_eq!(note.to_bytes(), msg.as_bytes());
        assert_eq!(note.verify_with(&[peter()], 1).unwrap(), vec![peter()]);

        let msg = format!("{TEXT}\n{PETER_SIG}{PETER_SIG}{PETER_SIG}");
        let note = Note::parse(msg.as_bytes()).unwrap();
        assert!(matches!(
            note.verify_with(&[peter(), enoch()], 2),
            Err(NoteError::BelowThreshold { valid: 1, threshold: 2 })
        ));
    }

    #[test]
    fn threshold_counts_distinct_keys() {
        let (a, b, c) = (key("a", 1), key("b", 2), key("c", 3));
        let root = TrustRoot::new(vec![a.verifier(), b.verifier(), c.verifier()], 2).unwrap();
        let two = Note::sign("hello\n", &[&a, &c]).unwrap();
        assert_eq!(two.verify(&root).unwrap(), vec![a.verifier(), c.verifier()]);
        let one = Note::sign("hello\n", &[&b]).unwrap();
        assert!(matches!(one.verify(&root), Err(NoteError::BelowThreshold { valid: 1, threshold: 2 })));
        // Invalid roots are refused.
        let mut bad = root.clone();
        bad.threshold = 4;
        assert!(matches!(two.verify(&bad), Err(NoteError::TrustRoot(_))));
        assert!(matches!(two.verify_with(&[a.verifier(), a.verifier()], 1), Err(NoteError::TrustRoot(_))));
        assert!(matches!(two.verify_with(&[a.verifier()], 0), Err(NoteError::TrustRoot(_))));
    }

    #[test]
    fn sign_round_trip_and_validation() {
        let (a, b) = (key("example.com/a", 1), key("example.com/b", 2));
        let text = "line one\n\nafter a blank line\n";
        let note = Note::sign(text, &[&a, &b]).unwrap();
        let parsed = Note::parse(&note.to_bytes()).unwrap();
        assert_eq!(parsed, note);
        assert_eq!(parsed.text(), text);
        assert_eq!(parsed.verify_with(&[a.verifier(), b.verifier()], 2).unwrap().len(), 2);

        assert!(matches!(Note::sign("no newline", &[&a]), Err(NoteError::InvalidText(_))));
        assert!(matches!(Note::sign("", &[&a]), Err(NoteError::InvalidText(_))));
        assert!(matches!(Note::sign("tab\there\n", &[&a]), Err(NoteError::ControlCharacter { offset: 3, byte: 9 })));
        assert!(matches!(Note::sign("x\n", &[]), Err(NoteError::NoSigners)));
        assert!(matches!(Note::sign("x\n", &[&a, &a]), Err(NoteError::DuplicateSigner(_))));
        let big = "x".repeat(MAX_NOTE_SIZE) + "\n";
        assert!(matches!(Note::sign(&big, &[&a]), Err(NoteError::TooLarge { .. })));
    }

    #[test]
    fn go_malformed_notes() {
        let cases = [
            TEXT.to_owned(),
            format!("{TEXT}\n"),
            format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
            format!("\x01{TEXT}\n{PETER_SIG}"),
            format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
        ];
        for msg in &cases {
            assert!(Note::parse(msg.as_bytes()).is_err(), "accepted {msg:?}");
        }
        let mut invalid_utf8 = b"\xff".to_vec();
        invalid_utf8.extend_from_slice(peter_note().as_bytes());
        assert!(matches!(Note::parse(&invalid_utf8), Err(NoteError::InvalidUtf8 { offset: 0 })));
        // Go rejects a bad key name at parse time; dare keeps the line as
        // malformed, and since "Bad" is no trusted key it cannot count.
        let bad_name = format!(
            "{TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        );
        let note = Note::parse(bad_name.as_bytes()).unwrap();
        assert_eq!(note.malformed_signatures()[0].name, "Bad");
        assert!(matches!(note.verify_with(&[peter()], 1), Err(NoteError::BelowThreshold { valid: 0, .. })));
    }

    /// Signature fields that make a line malformed, with the key ID (if any)
    /// they carry.
    fn malformed_fields(key_id: u32) -> Vec<(String, &'static str)> {
        let id = key_id.to_be_bytes();
        let with_id = |sig: &[u8]| BASE64.encode([&id[..], sig].concat());
        let canonical = with_id(&[7; 64]);
        // Non-canonical: the last character's unused bits set.
        let mut trailing_bits = canonical.clone();
        trailing_bits.replace_range(canonical.len() - 2..canonical.len() - 1, "B");
        assert!(BASE64.decode(&trailing_bits).is_err() && LENIENT_BASE64.decode(&trailing_bits).is_ok());
        vec![
            (trailing_bits, "non-canonical base64"),
            (canonical.trim_end_matches('=').to_owned(), "missing padding"),
            (with_id(&[]), "a key ID and no signature"),
            (BASE64.encode([1, 2, 3]), "a 3-byte payload"),
            ("!!!!".to_owned(), "not base64"),
            (String::new(), "empty"),
        ]
    }

    #[test]
    fn foreign_malformed_lines_are_ignored() {
        // A line the verifier cannot attribute to a trusted key never rejects
        // the note (signed-note: ignore signatures from unknown keys).
        let pq = BASE64.encode([&0x1234_5678u32.to_be_bytes()[..], &[9; 4627 + 8]].concat());
        let mut lines: Vec<String> =
            malformed_fields(0x1234_5678).into_iter().map(|(b64, _)| format!("— witness.example/w1 {b64}\n")).collect();
        lines.push("— Bad+Name AAAAAQE=\n".into());
        lines.push("— witness.example/w1\n".into());
        lines.push(format!("— witness.example/pq {pq}\n"));
        // Peter's name with another key ID: a different key, even malformed.
        let other_id = malformed_fields(0x0bad_cafe).swap_remove(2).0;
        lines.push(format!("— PeterNeumann {other_id}\n"));
        for line in &lines {
            for msg in [format!("{TEXT}\n{line}{PETER_SIG}"), format!("{TEXT}\n{PETER_SIG}{line}")] {
                let note = Note::parse(msg.as_bytes()).unwrap_or_else(|e| panic!("{line:?}: {e}"));
                assert_eq!(note.to_bytes(), msg.as_bytes(), "{line:?}");
                assert_eq!(note.verify_with(&[peter()], 1).unwrap(), vec![peter()], "{line:?}");
            }
        }
        // The post-quantum-sized line is well-formed, just unknown.
        let pq_note = Note::parse(format!("{TEXT}\n{PETER_SIG}— witness.example/pq {pq}\n").as_bytes()).unwrap();
        assert_eq!(pq_note.signatures()[1].signature.len(), 4627 + 8);
        assert!(pq_note.malformed_signatures().is_empty());
        // All of them at once, beside nothing trusted: below threshold.
        let all = format!("{TEXT}\n{}", lines.concat());
        let note = Note::parse(all.as_bytes()).unwrap();
        assert_eq!(note.to_bytes(), all.as_bytes());
        assert!(matches!(note.verify_with(&[peter()], 1), Err(NoteError::BelowThreshold { valid: 0, .. })));
    }

    #[test]
    fn malformed_lines_of_a_trusted_key_reject_the_note() {
        let peter_id = peter().key_id();
        let mut fields = malformed_fields(peter_id);
        // Canonical but not a valid signature: well-formed, fails to verify.
        let forged = BASE64.encode([&peter_id.to_be_bytes()[..], &[9; 4627 + 8]].concat());
        for (b64, what) in fields.drain(..) {
            for msg in [
                format!("{TEXT}\n{PETER_SIG}— PeterNeumann {b64}\n"),
                format!("{TEXT}\n— PeterNeumann {b64}\n{PETER_SIG}"),
            ] {
                let note = Note::parse(msg.as_bytes()).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(note.to_bytes(), msg.as_bytes());
                let err = note.verify_with(&[peter(), enoch()], 1).unwrap_err();
                assert!(
                    matches!(&err, NoteError::MalformedTrustedSignature { key, .. } if **key == peter()),
                    "{what}: {err}"
                );
            }
        }
        // No space, so no key ID: the name alone attributes it.
        let note = Note::parse(format!("{TEXT}\n{PETER_SIG}— PeterNeumann\n").as_bytes()).unwrap();
        assert!(matches!(note.verify_with(&[peter()], 1), Err(NoteError::MalformedTrustedSignature { line: 2, .. })));
        let note = Note::parse(format!("{TEXT}\n{PETER_SIG}— PeterNeumann {forged}\n").as_bytes()).unwrap();
        assert!(matches!(note.verify_with(&[peter()], 1), Err(NoteError::InvalidSignature { .. })));
        // A verifier that does not trust Peter ignores all of these.
        assert!(matches!(note.verify_with(&[enoch()], 1), Err(NoteError::BelowThreshold { valid: 0, .. })));
    }

    #[test]
    fn malformed_notes_have_specific_errors() {
        let parse = |s: &str| Note::parse(s.as_bytes());
        // Missing blank line.
        assert!(matches!(parse(&format!("{TEXT}{PETER_SIG}")), Err(NoteError::MissingBlankLine)));
        // Missing final newline.
        assert!(matches!(parse(&format!("{TEXT}\n{}", PETER_SIG.trim_end())), Err(NoteError::MissingFinalNewline)));
        assert!(matches!(parse(&format!("{TEXT}\n")), Err(NoteError::NoSignatures)));
        // Bad base64 (character, padding, non-canonical trailing bits): kept
        // as malformed lines, which reject the note for a verifier trusting
        // Peter.
        for b64 in [
            "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnA!=",
            "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM",
            "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAN=",
            "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM= ",
            "",
            "AAAA",
        ] {
            let note = parse(&format!("{TEXT}\n— PeterNeumann {b64}\n")).unwrap();
            assert_eq!(note.malformed_signatures().len(), 1, "{b64:?}");
            assert!(
                matches!(note.verify_with(&[peter()], 1), Err(NoteError::MalformedTrustedSignature { line: 1, .. })),
                "{b64:?}"
            );
        }
        // Bad em dash: hyphens, en dash, missing space, double space.
        for prefix in ["-- ", "- ", "\u{2013} ", "\u{2014}", " \u{2014} "] {
            let line = PETER_SIG.replacen("— ", prefix, 1);
            assert!(
                matches!(
                    parse(&format!("{TEXT}\n{PETER_SIG}{line}")),
                    Err(NoteError::MalformedSignatureLine { line: 2, .. })
                ),
                "{prefix:?}"
            );
        }
        // A double space leaves an empty (invalid) name: a malformed line.
        let note = parse(&format!("{TEXT}\n{PETER_SIG}{}", PETER_SIG.replacen("— ", "—  ", 1))).unwrap();
        assert_eq!(note.malformed_signatures()[0].reason, "invalid key name");
        // CR is a control character.
        assert!(matches!(
            parse(&peter_note().replace('\n', "\r\n")),
            Err(NoteError::ControlCharacter { byte: b'\r', .. })
        ));
    }

    #[test]
    fn signature_count_limit() {
        let ok = format!("{TEXT}\n{}", PETER_SIG.repeat(MAX_SIGNATURES));
        let note = Note::parse(ok.as_bytes()).unwrap();
        assert_eq!(note.verify_with(&[peter()], 1).unwrap(), vec![peter()]);
        let too_many = format!("{TEXT}\n{}", PETER_SIG.repeat(MAX_SIGNATURES + 1));
        assert!(matches!(Note::parse(too_many.as_bytes()), Err(NoteError::TooManySignatures { count: 101, max: 100 })));
        let keys: Vec<SigningKey> = (0..=MAX_SIGNATURES).map(|i| key(&format!("k{i}"), 1)).collect();
        let refs: Vec<&SigningKey> = keys.iter().collect();
        assert!(matches!(Note::sign("x\n", &refs), Err(NoteError::TooManySignatures { .. })));
        assert!(Note::sign("x\n", &refs[..MAX_SIGNATURES]).is_ok());
    }

    #[test]
    fn size_cap() {
        let pad = MAX_NOTE_SIZE - peter_note().len();
        let at_cap = format!("{}{TEXT}\n{PETER_SIG}", "x".repeat(pad));
        assert_eq!(at_cap.len(), MAX_NOTE_SIZE);
        assert!(Note::parse(at_cap.as_bytes()).is_ok());
        let over = format!("y{at_cap}");
        assert!(matches!(Note::parse(over.as_bytes()), Err(NoteError::TooLarge { .. })));
    }

    #[test]
    fn text_may_hold_blank_lines() {
        // The last blank line separates text from signatures.
        let msg = format!("a\n\nb\n\n{PETER_SIG}");
        let note = Note::parse(msg.as_bytes()).unwrap();
        assert_eq!(note.text(), "a\n\nb\n");
        // The Peter signature is over another text, so it must fail.
        assert!(matches!(note.verify_with(&[peter()], 1), Err(NoteError::InvalidSignature { .. })));
    }

    #[test]
    fn spec_checkpoint_parses() {
        let note = Note::parse(SPEC_CHECKPOINT.as_bytes()).unwrap();
        assert_eq!(note.signatures()[0].name, "example.com/behind-the-sofa");
        assert_eq!(note.to_bytes(), SPEC_CHECKPOINT.as_bytes());
        let cp = Checkpoint::parse(note.text()).unwrap();
        assert_eq!(cp.origin, "example.com/behind-the-sofa");
        assert_eq!(cp.size, 20852163);
        assert_eq!(BASE64.encode(cp.root), "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=");
        assert_eq!(cp.time, None);
        assert!(cp.extensions.is_empty());
        assert_eq!(cp.to_text(), note.text());
    }

    #[test]
    fn checkpoint_sign_verify_round_trip() {
        let k = key("example.com/myapp", 5);
        let cp = Checkpoint {
            origin: "example.com/myapp".into(),
            size: 42,
            root: [7; 32],
            time: Some(1_700_000_000),
            extensions: vec!["other extension".into()],
        };
        cp.validate().unwrap();
        let text = cp.to_text();
        assert!(text.ends_with("\ntime 1700000000\nother extension\n"));
        let note = Note::sign(&text, &[&k]).unwrap();
        let parsed = Note::parse(&note.to_bytes()).unwrap();
        parsed.verify_with(&[k.verifier()], 1).unwrap();
        assert_eq!(Checkpoint::parse(parsed.text()).unwrap(), cp);
    }

    #[test]
    fn checkpoint_rejects_malformed() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        let ok = |s: &str| Checkpoint::parse(s).is_ok();
        assert!(ok(&format!("o\n0\n{root}\n")));
        assert!(ok(&format!("o\n18446744073709551615\n{root}\n")));
        assert!(ok(&format!("o\n1\n{root}\ntime 0\n")));
        assert!(ok(&format!("o\n1\n{root}\ntimex\n")));
        let bad = [
            format!("o\n1\n{root}"),
            "o\n1\n".to_owned(),
            format!("\n1\n{root}\n"),
            format!("o\n01\n{root}\n"),
            format!("o\n00\n{root}\n"),
            format!("o\n+1\n{root}\n"),
            format!("o\n-0\n{root}\n"),
            format!("o\n 1\n{root}\n"),
            format!("o\n\n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2=\n".to_owned(),
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n".to_owned(),
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n".to_owned(),
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2IA\n".to_owned(),
            format!("o\n1\n{root}\n\n"),
            format!("o\n1\n{root}\next\n\n"),
            format!("o\n1\n{root}\ntime\n"),
            format!("o\n1\n{root}\ntime 01\n"),
            format!("o\n1\n{root}\ntime -1\n"),
            format!("o\n1\n{root}\ntime 1 2\n"),
            format!("o\n1\n{root}\ntime 18446744073709551616\n"),
            format!("o\n1\n{root}\ntime 1\ntime 1\n"),
            format!("o\n1\n{root}\next\ntime 1\n"),
            format!("o\t\n1\n{root}\n"),
        ];
        for text in &bad {
            assert!(Checkpoint::parse(text).is_err(), "accepted {text:?}");
        }
        assert!(matches!(
            Checkpoint::parse(&format!("o\n01\n{root}\n")),
            Err(NoteError::MalformedCheckpoint { line: 2, .. })
        ));
    }

    #[test]
    fn checkpoint_validate() {
        let mut cp = Checkpoint { origin: "o".into(), size: 0, root: [0; 32], time: None, extensions: vec![] };
        assert!(cp.validate().is_ok());
        cp.extensions = vec!["time 5".into()];
        assert!(cp.validate().is_err());
        cp.extensions = vec!["a\nb".into()];
        assert!(cp.validate().is_err());
        cp.extensions = vec![String::new()];
        assert!(cp.validate().is_err());
        cp.extensions = vec![];
        cp.origin = String::new();
        assert!(cp.validate().is_err());
    }

    fn note_like() -> impl Strategy<Value = Vec<u8>> {
        // Mostly well-formed notes (often checkpoint-shaped text, signature
        // lines from a small vocabulary weighted towards valid pieces), then
        // maybe one byte changed, to reach the later checks far more often
        // than random bytes do.
        let line = prop_oneof![
            Just("example.com/log".to_owned()),
            Just("012".to_owned()),
            Just("time 01".to_owned()),
            Just(String::new()),
            "[ -~]{0,8}",
        ];
        let ext = prop_oneof![
            Just("time 1700000000".to_owned()),
            Just("time".to_owned()),
            Just("x".to_owned()),
            Just(String::new()),
        ];
        let checkpoint = (
            prop_oneof![4 => Just("example.com/log".to_owned()), 1 => line.clone()],
            prop_oneof![4 => any::<u64>().prop_map(|n| n.to_string()), 1 => line.clone()],
            prop_oneof![
                4 => Just("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=".to_owned()),
                1 => line.clone(),
            ],
            prop::collection::vec(ext, 0..3),
        )
            .prop_map(|(o, n, r, e)| [vec![o, n, r], e].concat());
        let text = prop_oneof![checkpoint, prop::collection::vec(line, 0..6)];
        let sig_line = (
            prop_oneof![8 => Just("— "), 1 => Just("-- "), 1 => Just("—"), 1 => Just("— — ")],
            prop_oneof![
                4 => Just("PeterNeumann"),
                4 => Just("EnochRoot"),
                1 => Just("a+b"),
                1 => Just(""),
            ],
            prop_oneof![8 => Just(" "), 1 => Just("  "), 1 => Just("")],
            prop_oneof![
                4 => Just(PETER_SIG[17..].trim_end()),
                4 => Just(ENOCH_SIG[14..].trim_end()),
                2 => Just("AAAAAQE="),
                1 => Just("AAAA"),
                1 => Just("AAAAAQ="),
                1 => Just("!"),
            ],
        )
            .prop_map(|(p, n, sp, b)| format!("{p}{n}{sp}{b}\n"));
        (
            text,
            prop::collection::vec(sig_line, 0..4),
            prop::option::weighted(0.3, (any::<prop::sample::Index>(), any::<u8>())),
        )
            .prop_map(|(lines, sigs, flip)| {
                let mut out = Vec::new();
                for l in lines {
                    out.extend_from_slice(l.as_bytes());
                    out.push(b'\n');
                }
                out.push(b'\n');
                for s in sigs {
                    out.extend_from_slice(s.as_bytes());
                }
                if let Some((i, b)) = flip {
                    let i = i.index(out.len());
                    out[i] = b;
                }
                out
            })
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = Note::parse(&bytes);
            if let Ok(s) = std::str::from_utf8(&bytes) {
                let _ = Checkpoint::parse(s);
                let _ = VerifierKey::parse(s);
            }
        }

        #[test]
        fn parse_note_like_never_panics_and_round_trips(bytes in note_like()) {
            if let Ok(note) = Note::parse(&bytes) {
                prop_assert_eq!(&note.to_bytes(), &bytes);
                let _ = note.verify_with(&[peter(), enoch()], 1);
                if let Ok(cp) = Checkpoint::parse(note.text()) {
                    prop_assert_eq!(cp.to_text(), note.text());
                }
            }
        }

        #[test]
        fn sign_parse_verify_round_trip(
            text in "([a-z0-9 ./+=—]{0,20}\n){1,6}",
            seeds in prop::collection::btree_set(any::<u8>(), 1..4),
        ) {
            let keys: Vec<SigningKey> = seeds.iter().map(|&s| key(&format!("k{s}"), s)).collect();
            let refs: Vec<&SigningKey> = keys.iter().collect();
            let verifiers: Vec<VerifierKey> = keys.iter().map(SigningKey::verifier).collect();
            let note = Note::sign(&text, &refs).unwrap();
            let parsed = Note::parse(&note.to_bytes()).unwrap();
            prop_assert_eq!(&parsed, &note);
            prop_assert_eq!(parsed.text(), text.as_str());
            let threshold = u32::try_from(keys.len()).unwrap();
            prop_assert_eq!(parsed.verify_with(&verifiers, threshold).unwrap(), verifiers);
        }

        #[test]
        fn checkpoint_round_trip(
            origin in "[a-z0-9./-]{1,20}",
            size in any::<u64>(),
            root in any::<[u8; 32]>(),
            time in proptest::option::of(any::<u64>()),
            extensions in prop::collection::vec("[a-z][a-z0-9 ]{0,10}", 0..3),
        ) {
            let cp = Checkpoint { origin, size, root, time, extensions };
            prop_assume!(cp.validate().is_ok());
            prop_assert_eq!(Checkpoint::parse(&cp.to_text()).unwrap(), cp);
        }
    }
}
