//! The one check of a seal's signed note, and of a key rotation.
//!
//! Every reader of seals (the full verifier, the replica verifier, a
//! client's tail read, a publisher opening a container to append) checks a
//! seal here: the note and checkpoint parse, the seal's time is the signed
//! time, the origin is the container's, the seal's time follows the seal
//! before it, and the note satisfies the trust root in effect (restricted to
//! pinned keys when there are some) and, for the seal that first covers a
//! `keys` leaf, the new root too. So a rule cannot be forgotten in one
//! reader. What only a reader with the leaves can check (the tree size and
//! root, the map) stays with that reader.
//!
//! A `keys` leaf (a rotation) carries its own signed note, signed by a
//! threshold of the root it replaces and of the new root: a client that last
//! trusted a root several rotations ago checks each rotation with the root
//! before it ([`check_rotation`]), without the seals in between.

use std::collections::BTreeSet;

use crate::client::{check_seal_order, superseded_time};
use crate::frame::{ReadAt, read_frame_at, read_header};
use crate::header::{Header, Keys, LeafRef, Seal};
use crate::keys::{SigningKey, TrustRoot, VerifierKey};
use crate::note::{Checkpoint, Note, NoteError};

/// The first line of a rotation note.
pub const ROTATION_NOTE: &str = "dare-rotation/v1";

/// The most rotations a client walks in one update: a client further behind
/// is given the current trust root again out of band.
pub const MAX_ROTATIONS: usize = 64;

/// Why a seal (or a rotation) is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The note or its checkpoint does not parse.
    #[error("{0}")]
    Note(#[source] NoteError),
    /// The note does not satisfy a trust root.
    #[error("{0}")]
    Signature(#[source] NoteError),
    /// A rule of the seal: origin, time, order.
    #[error("{0}")]
    Rule(String),
}

impl SealError {
    /// The parse or signature error underneath, if any.
    pub fn note_error(&self) -> Option<&NoteError> {
        match self {
            SealError::Note(e) | SealError::Signature(e) => Some(e),
            SealError::Rule(_) => None,
        }
    }
}

/// What the seal before this one says about its time.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Previous<'a> {
    /// The reader does not know (a client reading only the tail: the time
    /// against its stored checkpoint is its own check).
    Unknown,
    /// This is the container's first seal.
    First,
    /// The seal before was signed at `time`; `earlier` holds the times of
    /// every seal before this one that the reader knows (`time` included).
    Seal {
        /// The previous seal's signed time.
        time: u64,
        /// The times of the seals before.
        earlier: &'a BTreeSet<u64>,
    },
}

/// What a seal is checked against.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct SealRules<'a> {
    /// The origin the checkpoint must name, when the reader knows it.
    pub origin: Option<&'a str>,
    /// The trust root in effect before this seal.
    pub trust: &'a TrustRoot,
    /// Pinned keys: only the keys of `trust` among them count.
    pub pins: Option<&'a [VerifierKey]>,
    /// A new root rotated in since the previous seal: the note must satisfy
    /// it as well.
    pub rotation: Option<&'a TrustRoot>,
    /// The seal before.
    pub previous: Previous<'a>,
}

impl<'a> SealRules<'a> {
    /// Checks against `trust` alone: any origin, no rotation, no previous seal known.
    pub fn new(trust: &'a TrustRoot) -> Self {
        SealRules { origin: None, trust, pins: None, rotation: None, previous: Previous::Unknown }
    }

    /// The origin the checkpoint must name.
    pub fn origin(mut self, origin: &'a str) -> Self {
        self.origin = Some(origin);
        self
    }

    /// Only these keys of the trust root count.
    pub fn pins(mut self, pins: Option<&'a [VerifierKey]>) -> Self {
        self.pins = pins;
        self
    }

    /// A root rotated in since the previous seal.
    pub fn rotation(mut self, new_root: Option<&'a TrustRoot>) -> Self {
        self.rotation = new_root;
        self
    }

    /// The seal before.
    pub fn previous(mut self, previous: Previous<'a>) -> Self {
        self.previous = previous;
        self
    }
}

/// A seal whose note passed [`check_seal`].
#[derive(Clone, Debug)]
pub struct CheckedSeal {
    /// The note.
    pub note: Note,
    /// Its checkpoint.
    pub checkpoint: Checkpoint,
    /// The trust-root keys whose signatures verified (both roots' on a rotation).
    pub signers: Vec<VerifierKey>,
}

/// Parses a seal's note and checkpoint and checks the rules that need no
/// signature: the seal's time is the signed time.
pub fn parse_seal(seal: &Seal) -> Result<(Note, Checkpoint), SealError> {
    let note = Note::parse(seal.checkpoint.as_bytes()).map_err(SealError::Note)?;
    let checkpoint = Checkpoint::parse(note.text()).map_err(SealError::Note)?;
    if checkpoint.time != Some(seal.time) {
        return Err(SealError::Rule(format!(
            "the signed time {} is not the seal's time {}",
            checkpoint.time.map_or_else(|| "(none)".to_string(), |t| t.to_string()),
            seal.time
        )));
    }
    Ok((note, checkpoint))
}

/// The one check of a seal: see the module documentation.
pub fn check_seal(seal: &Seal, rules: &SealRules<'_>) -> Result<CheckedSeal, SealError> {
    let (note, checkpoint) = parse_seal(seal)?;
    if let Some(origin) = rules.origin
        && checkpoint.origin != origin
    {
        return Err(SealError::Rule(format!(
            "checkpoint origin `{}` is not the container's `{origin}`",
            checkpoint.origin
        )));
    }
    let supersedes = superseded_time(&checkpoint).map_err(SealError::Rule)?;
    match rules.previous {
        Previous::Unknown => {}
        Previous::First if supersedes.is_some() => {
            return Err(SealError::Rule("the first seal supersedes no time".into()));
        }
        Previous::First => {}
        Previous::Seal { time, earlier } => {
            check_seal_order(seal.time, supersedes, time, earlier).map_err(SealError::Rule)?;
        }
    }
    let mut signers = verify_note(&note, rules.trust, rules.pins).map_err(SealError::Signature)?;
    if let Some(new_root) = rules.rotation {
        for k in note.verify(new_root).map_err(SealError::Signature)? {
            if !signers.contains(&k) {
                signers.push(k);
            }
        }
    }
    Ok(CheckedSeal { note, checkpoint, signers })
}

/// Verifies a note against a trust root, counting only pinned keys when
/// there are pins.
pub fn verify_note(
    note: &Note,
    trust: &TrustRoot,
    pins: Option<&[VerifierKey]>,
) -> Result<Vec<VerifierKey>, NoteError> {
    match pins {
        Some(pins) => {
            let allowed: Vec<VerifierKey> = pins.iter().filter(|k| trust.contains(k)).cloned().collect();
            note.verify_with(&allowed, trust.threshold)
        }
        None => note.verify(trust),
    }
}

/// The text a rotation note signs: the origin, the root it replaces and the
/// new root, by fingerprint.
pub fn rotation_text(origin: &str, from: &TrustRoot, to: &TrustRoot) -> String {
    format!("{ROTATION_NOTE}\n{origin}\nfrom {}\nto {}\n", from.fingerprint(), to.fingerprint())
}

/// Signs the rotation from `from` to `to` with `keys`, which must hold a
/// threshold of each root; every key must be in one of them.
pub fn sign_rotation(origin: &str, from: &TrustRoot, to: &TrustRoot, keys: &[&SigningKey]) -> Result<Note, SealError> {
    for k in keys {
        let v = k.verifier();
        if !from.contains(&v) && !to.contains(&v) {
            return Err(SealError::Rule(format!("key {v} is in neither the current trust root nor the new one")));
        }
    }
    let note = Note::sign(&rotation_text(origin, from, to), keys).map_err(SealError::Note)?;
    note.verify(from)
        .map_err(|e| SealError::Rule(format!("the current trust root does not sign the rotation: {e}")))?;
    note.verify(to).map_err(|e| SealError::Rule(format!("the new trust root does not sign the rotation: {e}")))?;
    Ok(note)
}

/// Checks a `keys` leaf against the root before it: its note names `origin`
/// and the new root (and `from`, the exact root it replaces, when the reader
/// knows it), and is signed by a threshold of `trust` (restricted to `pins`)
/// and of the new root. Returns the signers.
pub fn check_rotation(
    keys: &Keys,
    origin: &str,
    trust: &TrustRoot,
    pins: Option<&[VerifierKey]>,
    from: Option<&TrustRoot>,
) -> Result<Vec<VerifierKey>, SealError> {
    let note = Note::parse(keys.rotation.as_bytes()).map_err(SealError::Note)?;
    let mut lines = note.text().lines();
    let ok = lines.next() == Some(ROTATION_NOTE)
        && lines.next() == Some(origin)
        && lines
            .next()
            .and_then(|l| l.strip_prefix("from "))
            .is_some_and(|f| from.is_none_or(|r| r.fingerprint() == f))
        && lines.next().and_then(|l| l.strip_prefix("to ")) == Some(keys.trust.fingerprint().as_str())
        && lines.next().is_none();
    if !ok {
        let expected = from.map_or_else(
            || format!("`{ROTATION_NOTE}`, `{origin}`, `from <fingerprint>`, `to {}`", keys.trust.fingerprint()),
            |f| format!("{:?}", rotation_text(origin, f, &keys.trust)),
        );
        return Err(SealError::Rule(format!("the rotation note's text is not {expected}")));
    }
    let mut signers = verify_note(&note, trust, pins)
        .map_err(|e| SealError::Rule(format!("the rotation is not signed by the trust root it replaces: {e}")))?;
    let more = note
        .verify(&keys.trust)
        .map_err(|e| SealError::Rule(format!("the rotation is not signed by the new root: {e}")))?;
    for k in more {
        if !signers.contains(&k) {
            signers.push(k);
        }
    }
    Ok(signers)
}

/// The most bytes one `keys` frame may take (a trust root and a rotation
/// note, which is a signed note).
pub const MAX_KEYS_FRAME: u64 = (1 << 20) + (1 << 16);

/// Why the key rotations between two trust roots cannot be followed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RotationError(pub String);

/// One `keys` leaf read by a [`RotationWalk`].
#[derive(Clone, Debug)]
pub struct KeysLeaf {
    /// Where it is.
    pub at: LeafRef,
    /// Its header bytes (its leaf hash is of these).
    pub header: Vec<u8>,
    /// The rotation.
    pub keys: Keys,
}

/// Follows the key rotations between the trust root a reader holds and the
/// root in effect for a signed tree, without I/O: the reader fetches each
/// `keys` frame [`RotationWalk::next_read`] names (newest first, through
/// each one's `previous`) and [`feeds`](RotationWalk::feed) it, then
/// [`finish`](RotationWalk::finish) checks every rotation, oldest first,
/// with the root before it (TUF's root-chain rule) and gives the root in
/// effect, which must then sign the tree. At most [`MAX_ROTATIONS`] keys
/// leaves are read; each read is bounded by [`MAX_KEYS_FRAME`]. Nothing is
/// trusted until the seal verifies with that root and the reader has proven
/// every keys leaf read in the signed tree.
#[derive(Debug)]
pub struct RotationWalk {
    root: TrustRoot,
    fingerprint: String,
    /// The keys leaf the reader's root came from, if any.
    from: Option<LeafRef>,
    next: Option<LeafRef>,
    exact: bool,
    matched: bool,
    chain: Vec<KeysLeaf>,
    size: u64,
    seal_offset: u64,
}

impl RotationWalk {
    /// A walk from `root` (which came from the keys leaf `from`, or is the
    /// reader's own choice of keys when `None`) to the keys leaf `latest`
    /// that the manifest of a tree of `size` leaves, sealed at byte
    /// `seal_offset`, names.
    pub fn new(root: TrustRoot, from: Option<LeafRef>, latest: Option<LeafRef>, size: u64, seal_offset: u64) -> Self {
        RotationWalk {
            fingerprint: root.fingerprint(),
            root,
            from,
            next: latest,
            exact: from.is_some(),
            matched: false,
            chain: Vec::new(),
            size,
            seal_offset,
        }
    }

    /// The next `keys` frame to read, or `None` when the walk has read all it needs.
    pub fn next_read(&self) -> Result<Option<LeafRef>, RotationError> {
        let Some(at) = self.next.filter(|at| Some(*at) != self.from && !self.matched) else { return Ok(None) };
        if let Some(k) = self.from
            && at.leaf <= k.leaf
        {
            return Err(RotationError(format!(
                "the keys leaves lead from leaf {} past leaf {}, the one the trust root held came from \
                 (the log forked, or the mirror serves another history)",
                at.leaf, k.leaf
            )));
        }
        if self.chain.len() >= MAX_ROTATIONS {
            return Err(RotationError(format!(
                "more than {MAX_ROTATIONS} key rotations since the trust root held: \
                 give it the container's current trust root (dare verify prints its fingerprint)"
            )));
        }
        if at.length > MAX_KEYS_FRAME || at.end() > self.seal_offset || at.leaf >= self.size {
            return Err(RotationError(format!(
                "a keys leaf is named at bytes {}..{} (leaf {}), outside the signed tree",
                at.offset,
                at.offset.saturating_add(at.length),
                at.leaf
            )));
        }
        Ok(Some(at))
    }

    /// Takes the frame [`next_read`](Self::next_read) named, read from `src`.
    pub fn feed<R: ReadAt + ?Sized>(&mut self, src: &R) -> Result<(), RotationError> {
        let Some(at) = self.next_read()? else { return Ok(()) };
        let bad = |e: String| RotationError(format!("the keys leaf at byte {}: {e}", at.offset));
        let frame = read_frame_at(src, at.offset, at.end()).map_err(|e| bad(e.to_string()))?;
        let header = read_header(src, &frame).map_err(|e| bad(e.to_string()))?;
        let keys = match Header::parse(&header) {
            Ok(Header::Keys(k)) if frame.len() == at.length => k,
            Ok(Header::Keys(_)) => return Err(bad("the frame's length is not the one named".into())),
            Ok(h) => return Err(RotationError(format!("leaf {} is a {} frame, not a keys leaf", at.leaf, h.kind()))),
            Err(e) => return Err(bad(e.to_string())),
        };
        if keys.previous.is_some_and(|p| p.leaf >= at.leaf) {
            return Err(RotationError(format!("the keys leaf {} names a later one as the one before it", at.leaf)));
        }
        // A reader whose keys were never rotated (given today's keys, or the
        // keys of a root the log went back to) starts after the latest
        // rotation to exactly its root.
        if self.from.is_none() && keys.trust.fingerprint() == self.fingerprint {
            self.exact = true;
            self.matched = true;
            return Ok(());
        }
        self.next = keys.previous;
        self.chain.push(KeysLeaf { at, header, keys });
        Ok(())
    }

    /// Checks each rotation read, oldest first, with the root before it;
    /// returns the root in effect and the keys leaves read (oldest first),
    /// which the reader proves in the signed tree.
    pub fn finish(mut self, origin: &str) -> Result<(TrustRoot, Vec<KeysLeaf>), RotationError> {
        if self.next_read()?.is_some() {
            return Err(RotationError("the walk is not over".into()));
        }
        if let (None, Some(from)) = (self.next, self.from)
            && !self.matched
        {
            return Err(RotationError(format!(
                "the keys leaves do not lead back to leaf {}, the one the trust root held came from \
                 (the log forked, or the mirror hides a rotation)",
                from.leaf
            )));
        }
        self.chain.reverse();
        let mut root = self.root;
        let mut exact = self.exact;
        for k in &self.chain {
            check_rotation(&k.keys, origin, &root, None, exact.then_some(&root)).map_err(|e| {
                RotationError(format!(
                    "the rotation at leaf {} (to trust root {}): {e}",
                    k.at.leaf,
                    k.keys.trust.fingerprint()
                ))
            })?;
            root = k.keys.trust.clone();
            exact = true;
        }
        Ok((root, self.chain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: &str) -> SigningKey {
        SigningKey::from_seed(n, [n.len() as u8; 32]).unwrap()
    }

    fn root(keys: &[&SigningKey], t: u32) -> TrustRoot {
        TrustRoot::new(keys.iter().map(|k| k.verifier()).collect(), t).unwrap()
    }

    #[test]
    fn a_rotation_needs_a_threshold_of_both_roots() {
        let (a, b, c) = (key("a"), key("bb"), key("ccc"));
        let old = root(&[&a, &b], 2);
        let new = root(&[&c], 1);
        // One of two old keys is below the old threshold.
        let e = sign_rotation("o", &old, &new, &[&a, &c]).unwrap_err().to_string();
        assert!(e.contains("current trust root does not sign"), "{e}");
        // The new root must sign too.
        let e = sign_rotation("o", &old, &new, &[&a, &b]).unwrap_err().to_string();
        assert!(e.contains("new trust root does not sign"), "{e}");
        let stranger = key("dddd");
        let e = sign_rotation("o", &old, &new, &[&a, &b, &c, &stranger]).unwrap_err().to_string();
        assert!(e.contains("neither"), "{e}");
        let note = sign_rotation("o", &old, &new, &[&a, &b, &c]).unwrap();
        let keys = Keys { trust: new.clone(), previous: None, rotation: String::from_utf8(note.to_bytes()).unwrap() };
        assert_eq!(check_rotation(&keys, "o", &old, None, Some(&old)).unwrap().len(), 3);
        assert!(check_rotation(&keys, "o", &old, None, None).is_ok());
        // Another origin, another old root, a root the client trusts that did not sign.
        assert!(check_rotation(&keys, "p", &old, None, None).is_err());
        assert!(check_rotation(&keys, "o", &old, None, Some(&new)).is_err());
        assert!(check_rotation(&keys, "o", &new, None, None).is_ok(), "c signed and is the client's root");
        assert!(check_rotation(&keys, "o", &root(&[&stranger], 1), None, None).is_err());
        // Pins restrict the old root's signers.
        let pins = [a.verifier()];
        assert!(check_rotation(&keys, "o", &old, Some(&pins), None).is_err(), "a alone is below 2");
        // The note names the new root: a keys leaf with another root is refused.
        let other = Keys { trust: root(&[&a], 1), ..keys.clone() };
        assert!(check_rotation(&other, "o", &old, None, None).is_err());
    }
}
