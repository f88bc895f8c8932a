//! Fuzzing entry points: each function is the whole body of one target in
//! `fuzz/` and also runs under proptest in `cargo test`
//! (`tests/integration/fuzz_bodies.rs`). A body takes arbitrary bytes, runs one parser
//! on them and checks what must hold of whatever it accepts; it must not
//! panic on any input. Not a stable API.

use crate::client::{SealRead, read_seal, read_top};
use crate::content;
use crate::cosign::{
    AddCheckpoint, WitnessKey, WitnessPolicy, WitnessSigningKey, cosignature_lines, parse_cosignature_lines,
};
use crate::frame::{FrameEvent, FrameStream, Frames, FramesBack, Window, read_header};
use crate::header::{Header, listing_bytes, parse_listing};
use crate::keys::{SigningKey, TrustRoot, VerifierKey};
use crate::map::{TileMap, decode_page};
use crate::note::{Checkpoint, Note};
use crate::verify::ScanOptions;

/// The key the structure-aware inputs are signed with, so that a body
/// verifying signatures gets past them.
pub fn key() -> SigningKey {
    static KEY: std::sync::OnceLock<SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| SigningKey::from_seed("fuzz.example/key", [7; 32]).expect("a valid key name")).clone()
}

/// The witness key the structure-aware witness inputs are cosigned with.
pub fn witness_key() -> WitnessSigningKey {
    static KEY: std::sync::OnceLock<WitnessSigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| WitnessSigningKey::from_seed("fuzz.example/witness", [8; 32]).expect("a valid key name")).clone()
}

/// The witness protocol and cosignatures: an `add-checkpoint` body or a
/// cosignature response that parses is written back to the same bytes; a
/// witness key text that parses is written back to text that parses to the
/// same key; checking cosignatures never panics.
pub fn witness(data: &[u8]) {
    let policy = WitnessPolicy::new(vec![witness_key().verifier()], 1).expect("one key, threshold 1");
    if let Ok(req) = AddCheckpoint::parse(data) {
        assert_eq!(req.to_bytes(), data, "a parsed add-checkpoint body is written back as it was");
        if let Ok(note) = Note::parse(&req.note) {
            let _ = policy.check(&note);
        }
    }
    if let Ok(sigs) = parse_cosignature_lines(data) {
        assert_eq!(cosignature_lines(&sigs), data, "parsed cosignature lines are written back as they were");
        for sig in &sigs {
            let _ = witness_key().verifier().verify("fuzz.example/log\n1\n", sig);
        }
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    for line in text.lines() {
        if let Ok(k) = WitnessKey::parse(line) {
            let again = WitnessKey::parse(&k.to_string()).expect("a written witness key parses");
            assert_eq!(again, k);
        }
        if let Ok(k) = WitnessSigningKey::parse(line) {
            let again = WitnessSigningKey::parse(&k.to_text()).expect("a written witness signing key parses");
            assert_eq!(again.verifier(), k.verifier());
        }
    }
}

/// The note and checkpoint parsers: a note that parses is written back to
/// the same bytes; a checkpoint that parses validates and is written back
/// to the same text; verifying never panics.
pub fn note(data: &[u8]) {
    let Ok(note) = Note::parse(data) else { return };
    assert_eq!(note.to_bytes(), data, "a parsed note is written back as it was");
    let _ = note.verify_with(&[key().verifier()], 1);
    if let Ok(c) = Checkpoint::parse(note.text()) {
        assert_eq!(c.to_text(), note.text(), "a parsed checkpoint is written back as it was");
    }
}

/// The checkpoint text parser alone.
pub fn checkpoint(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(c) = Checkpoint::parse(text) {
        assert_eq!(c.to_text(), text, "a parsed checkpoint is written back as it was");
    }
}

/// Verifier and signing key texts: a key that parses is written back to
/// text that parses to the same key; a trust root of parsed keys validates
/// or says why.
pub fn keys(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut verifiers = Vec::new();
    for line in text.lines() {
        if let Ok(v) = VerifierKey::parse(line) {
            let again = VerifierKey::parse(&v.to_string()).expect("a written verifier key parses");
            assert_eq!((again.name(), again.key_id(), again.public_key()), (v.name(), v.key_id(), v.public_key()));
            let _ = v.verify(data, &[0; 64]);
            verifiers.push(v);
        }
        if let Ok(k) = SigningKey::parse(line) {
            let again = SigningKey::parse(&k.to_text()).expect("a written signing key parses");
            assert_eq!(again.verifier().public_key(), k.verifier().public_key());
        }
    }
    let _ = SigningKey::parse(text);
    let _ = VerifierKey::parse(text);
    let threshold = data.first().map_or(1, |b| u32::from(*b % 4));
    let _ = TrustRoot::new(verifiers, threshold);
}

/// The tail reader: the first 8 bytes say where the window starts (as if
/// fetched as a suffix of a longer container), the rest is the window.
/// Whatever verifies goes on to the map and manifest it names.
pub fn tail(data: &[u8]) {
    let (base, window) = match data.split_first_chunk::<8>() {
        Some((b, rest)) => (u64::from_be_bytes(*b) % (1 << 40), rest),
        None => (0, data),
    };
    // Also the same bytes as a whole container.
    for (base, bytes) in [(base, window), (0, window)] {
        let w = Window::new(base, bytes);
        let len = w.end();
        if let Ok(SealRead::Complete(seal)) = read_seal(&w, len, &[key().verifier()], 1) {
            assert!(seal.frame.end() == len, "the seal ends the container");
            let _ = crate::client::top_ranges(&seal);
            let _ = read_top(*seal, &w);
        }
    }
}

/// The replica (partial container) scan and the whole-container scan on the
/// same bytes, with and without payloads and pinned keys.
pub fn replica(data: &[u8]) {
    let len = data.len() as u64;
    let pins = Some(vec![key().verifier()]);
    for opts in [ScanOptions::full(), ScanOptions::default().with_pins(pins)] {
        let _ = crate::partial::scan_partial(data, len, &opts, true);
        let _ = crate::partial::scan_partial(data, len, &opts, false);
        if let Ok(scan) = crate::verify::scan(data, len, &opts) {
            assert!(scan.sealed_len <= scan.file_len && scan.file_len <= len, "a scan covers at most its bytes");
        }
    }
}

/// The frame reader, both walkers, the stream decoder and the header parser:
/// no allocation from a hostile length, and the stream decoder agrees with
/// the random-access reader.
pub fn frames(data: &[u8]) {
    let len = data.len() as u64;
    let mut forward = Vec::new();
    for info in Frames::new(data, 0, len).flatten() {
        if let Ok(h) = read_header(data, &info) {
            let _ = Header::parse(&h);
        }
        forward.push(info);
    }
    for _ in FramesBack::new(data, 0, len) {}
    let mut streamed = Vec::new();
    let mut st = FrameStream::new(0);
    let _ = st.feed::<()>(data, &mut |ev| {
        if let FrameEvent::End(info) = ev {
            streamed.push(info);
        }
        Ok(())
    });
    assert_eq!(streamed[..], forward[..streamed.len().min(forward.len())], "the stream decoder agrees with the reader");
}

/// The whole-container verifier, as `dare verify` runs it.
pub fn container(data: &[u8]) {
    let len = data.len() as u64;
    if let Ok(scan) = crate::verify::scan(data, len, &ScanOptions::full()) {
        assert!(scan.sealed_len <= scan.file_len && scan.file_len <= len, "a scan covers at most its bytes");
    }
}

/// Contents and delta bases [`listing`] decodes in memory at most.
const LISTING_LIMIT: u64 = 1 << 20;

/// Index listings, maps, pages and stored content (entries, deltas,
/// listings): no allocation from a hostile size, a listing that parses is
/// written back to the same records, and a map that decodes encodes to the
/// same bytes.
pub fn listing(data: &[u8]) {
    // A file count, then a listing.
    if let Some((&n, rest)) = data.split_first() {
        if let Ok(list) = parse_listing(rest, u64::from(n)) {
            let again = listing_bytes(&list).expect("a parsed listing is valid");
            assert_eq!(parse_listing(&again, u64::from(n)).expect("a written listing parses"), list);
        }
        let _ = decode_page(rest);
    }
    // A tree size, then a map.
    if let Some((size, map)) = data.split_first_chunk::<8>()
        && let Ok(decoded) = TileMap::decode(u64::from_be_bytes(*size), map)
    {
        assert_eq!(decoded.encode().expect("a decoded map encodes"), map, "a map is written back as it was");
    }
    // Frames: decode what each entry, delta and index holds.
    let len = data.len() as u64;
    for info in Frames::new(data, 0, len).flatten() {
        let Ok(h) = read_header(data, &info) else { continue };
        match Header::parse(&h) {
            Ok(Header::Entry(e)) => {
                let _ = content::check_entry(data, &info, &e);
                let _ = content::entry_bytes(data, &info, &e, LISTING_LIMIT);
            }
            Ok(Header::Delta(d)) => {
                let _ = content::check_delta_stored(data, &info, &d);
                if d.base_size <= LISTING_LIMIT.min(len) && d.size <= LISTING_LIMIT {
                    let base = &data[..d.base_size as usize];
                    let _ = content::delta_content(data, &info, &d, base, std::io::sink());
                }
            }
            Ok(Header::Index(ix)) => {
                let _ = content::listing(data, &info, &ix);
            }
            _ => {}
        }
    }
}
