//! The fuzz targets' bodies (`dare_container::fuzzing`, one per target in
//! `fuzz/`) under proptest: arbitrary bytes, and mutations of valid inputs
//! (signed notes, key texts, the tail of a real signed container) so that
//! the bodies reach past the first checks. A body panics on a broken
//! invariant; none may panic on any input.

use std::sync::OnceLock;

use crate::support::{T0, genesis, put_build, trust};
use dare_container::Appender;
use dare_container::fuzzing;
use dare_container::merkle::Hash;
use dare_container::note::{Checkpoint, Note};
use proptest::prelude::*;

/// A mutation of valid bytes: flip a bit, cut, insert, or overwrite.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Cut(usize),
    Insert(usize, Vec<u8>),
    Set(usize, u8),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Cut),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..4)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
    ];
    proptest::collection::vec(one, 0..4)
}

fn mutate(mut bytes: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        if bytes.is_empty() {
            break;
        }
        let at = |i: usize| i % bytes.len();
        match m {
            Mutation::Flip(i, b) => {
                let i = at(*i);
                bytes[i] ^= 1 << b;
            }
            Mutation::Cut(i) => bytes.truncate(at(*i)),
            Mutation::Insert(i, b) => {
                let i = at(*i);
                bytes.splice(i..i, b.iter().copied());
            }
            Mutation::Set(i, b) => {
                let i = at(*i);
                bytes[i] = *b;
            }
        }
    }
    bytes
}

/// A signed checkpoint note.
fn signed_note(size: u64, root: Hash, time: u64, extra: &str) -> Vec<u8> {
    let mut c = Checkpoint::parse(&format!("fuzz.example/app\n{size}\n{}\n", base64(&root))).expect("a checkpoint");
    c.time = Some(time);
    let mut text = c.to_text();
    if !extra.is_empty() {
        text.push_str(extra);
        text.push('\n');
    }
    Note::sign(&text, &[&fuzzing::key()]).map(|n| n.to_bytes()).unwrap_or_else(|_| text.into_bytes())
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
        out.push_str(&"=".repeat(3 - chunk.len()));
    }
    out
}

/// A real container, signed with the fuzzing key: two releases of one build.
fn container() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.dare");
        let key = fuzzing::key();
        Appender::create(&path, genesis(trust(&[&key], 1)), &[&key], T0).unwrap();
        for r in 0..2u64 {
            let mut app = Appender::open(&path).unwrap();
            let body = crate::support::content(r, 300);
            put_build(&mut app, "stable", crate::support::TARGETS[0], &format!("1.{r}.0"), "bin/app", &body).unwrap();
            app.seal(&[&key], T0 + 60 * (r + 1)).unwrap();
        }
        std::fs::read(&path).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn note_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzzing::note(&data);
        fuzzing::checkpoint(&data);
    }

    #[test]
    fn note_on_mutated_signed_notes(
        size in any::<u64>(), root in any::<[u8; 32]>(), time in any::<u64>(),
        extra in "[a-z0-9 ]{0,12}", ms in mutations(),
    ) {
        let note = signed_note(size, root, time, &extra);
        fuzzing::note(&note);
        let bad = mutate(note, &ms);
        fuzzing::note(&bad);
        fuzzing::checkpoint(&bad);
    }

    #[test]
    fn witness_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzzing::witness(&data);
    }

    #[test]
    fn witness_on_mutated_requests_and_responses(size in 1u64..1000, ms in mutations()) {
        let (request, response) = witness_inputs(size);
        fuzzing::witness(&request);
        fuzzing::witness(&mutate(request, &ms));
        fuzzing::witness(&response);
        fuzzing::witness(&mutate(response, &ms));
    }

    #[test]
    fn keys_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        fuzzing::keys(&data);
    }

    #[test]
    fn keys_on_mutated_key_texts(seed in any::<[u8; 32]>(), name in "[a-z][a-z0-9./-]{0,20}", ms in mutations()) {
        let Ok(k) = dare_container::keys::SigningKey::from_seed(&name, seed) else { return Ok(()) };
        let text = format!("{}\n{}\n", k.to_text(), k.verifier());
        fuzzing::keys(text.as_bytes());
        fuzzing::keys(&mutate(text.into_bytes(), &ms));
    }

    #[test]
    fn tail_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzzing::tail(&data);
    }

    #[test]
    fn tail_on_mutated_suffixes_of_a_signed_container(from in 0usize..4096, ms in mutations()) {
        let c = container();
        let start = c.len().saturating_sub(from);
        let mut input = (start as u64).to_be_bytes().to_vec();
        input.extend_from_slice(&c[start..]);
        fuzzing::tail(&input);
        fuzzing::tail(&mutate(input, &ms));
    }

    #[test]
    fn replica_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzzing::replica(&data);
    }

    #[test]
    fn replica_on_a_mutated_container(ms in mutations()) {
        fuzzing::replica(&mutate(container().to_vec(), &ms));
    }

    #[test]
    fn frames_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzzing::frames(&data);
    }

    #[test]
    fn frames_on_a_mutated_container(ms in mutations()) {
        fuzzing::frames(&mutate(container().to_vec(), &ms));
    }

    #[test]
    fn container_on_a_mutated_container(ms in mutations()) {
        fuzzing::container(&mutate(container().to_vec(), &ms));
    }

    #[test]
    fn listing_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzzing::listing(&data);
    }

    #[test]
    fn listing_on_mutated_listings_maps_and_frames(which in 0usize..3, ms in mutations()) {
        let input = listing_inputs().swap_remove(which);
        fuzzing::listing(&input);
        fuzzing::listing(&mutate(input, &ms));
    }
}

/// Valid inputs of the `listing` body: a file count and the listing of the
/// container's last index, a tree size and its last map, and the container.
fn listing_inputs() -> Vec<Vec<u8>> {
    let c = container();
    let scan = dare_container::verify::scan(c, c.len() as u64, &Default::default()).expect("a valid container");
    let files = &scan.indexes.last().expect("an index").files;
    let mut listing = vec![u8::try_from(files.len()).expect("a few files")];
    listing.extend(dare_container::header::listing_bytes(files).expect("a valid listing"));
    let at = scan.last_seal.seal.map;
    let mut map = scan.size().to_be_bytes().to_vec();
    let frame = dare_container::frame::read_frame_at(c, at.offset, c.len() as u64).expect("the map frame");
    map.extend_from_slice(&c[frame.payload_offset as usize..][..frame.payload_len as usize]);
    vec![listing, map, c.to_vec()]
}

/// An `add-checkpoint` body (old size, a proof, a signed and cosigned
/// checkpoint of `size`) and a cosignature response for it.
fn witness_inputs(size: u64) -> (Vec<u8>, Vec<u8>) {
    use dare_container::cosign::{AddCheckpoint, append_cosignatures, cosignature_lines};
    let note = Note::parse(&signed_note(size, [2; 32], T0, "")).unwrap();
    let sig = fuzzing::witness_key().cosign(note.text(), T0);
    let cosigned = append_cosignatures(&note, std::slice::from_ref(&sig)).unwrap();
    let req = AddCheckpoint { old_size: size / 2, proof: vec![[3; 32]; 3], note: cosigned.to_bytes() };
    (req.to_bytes(), cosignature_lines(&[sig]))
}

/// The structure-aware inputs reach the deep code: the unmutated ones are accepted.
#[test]
fn the_valid_inputs_are_accepted() {
    let note = signed_note(5, [1; 32], T0, "");
    let parsed = Note::parse(&note).unwrap();
    parsed.verify_with(&[fuzzing::key().verifier()], 1).unwrap();
    Checkpoint::parse(parsed.text()).unwrap();
    let k = fuzzing::key();
    dare_container::keys::SigningKey::parse(&k.to_text()).unwrap();
    dare_container::keys::VerifierKey::parse(&k.verifier().to_string()).unwrap();
    let c = container();
    let w = dare_container::frame::Window::new(0, c);
    let read = dare_container::client::read_seal(&w, c.len() as u64, &[fuzzing::key().verifier()], 1).unwrap();
    assert!(matches!(read, dare_container::client::SealRead::Complete(_)));
    dare_container::verify::scan(c, c.len() as u64, &Default::default()).unwrap();

    let (request, response) = witness_inputs(5);
    let req = dare_container::cosign::AddCheckpoint::parse(&request).unwrap();
    let policy = dare_container::cosign::WitnessPolicy::new(vec![fuzzing::witness_key().verifier()], 1).unwrap();
    policy.check(&Note::parse(&req.note).unwrap()).unwrap();
    assert_eq!(dare_container::cosign::parse_cosignature_lines(&response).unwrap().len(), 1);
    let wk = fuzzing::witness_key();
    let key_texts = format!("{}\n{}\n", wk.to_text(), wk.verifier());

    seed("note", "signed", &note);
    seed("witness", "request", &request);
    seed("witness", "response", &response);
    seed("witness", "keys", key_texts.as_bytes());
    seed("keys", "key", format!("{}\n{}\n", k.to_text(), k.verifier()).as_bytes());
    for from in [1024, 4096, c.len()] {
        let start = c.len().saturating_sub(from);
        let mut input = (start as u64).to_be_bytes().to_vec();
        input.extend_from_slice(&c[start..]);
        seed("tail", &format!("suffix-{from}"), &input);
    }
    seed("replica", "container", c);
    seed("container", "container", c);
    seed("frames", "container", c);
    let [listing, map, _] = <[Vec<u8>; 3]>::try_from(listing_inputs()).expect("three inputs");
    let n = usize::from(listing[0]);
    assert_eq!(dare_container::header::parse_listing(&listing[1..], n as u64).expect("the listing parses").len(), n);
    let size = u64::from_be_bytes(map[..8].try_into().expect("8 bytes"));
    dare_container::map::TileMap::decode(size, &map[8..]).expect("the map decodes");
    seed("listing", "listing", &listing);
    seed("listing", "map", &map);
    seed("listing", "container", c);
}

/// With `DARE_FUZZ_SEEDS=<dir>` (`.ci/run` sets it to `fuzz/corpus`), writes
/// `input` as a seed of fuzz target `target`, so the fuzzer starts from
/// inputs that reach deep code.
fn seed(target: &str, name: &str, input: &[u8]) {
    if let Some(dir) = std::env::var_os("DARE_FUZZ_SEEDS") {
        let dir = std::path::Path::new(&dir).join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), input).unwrap();
    }
}
