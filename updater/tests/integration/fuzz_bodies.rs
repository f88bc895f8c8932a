//! The fuzz targets' bodies under proptest: `dare_updater::fuzzing`
//! (multipart/byteranges and Content-Range) on arbitrary bytes and on
//! mutations of well-formed responses, and `dare_container::fuzzing::replica`
//! on mutations of a real replica written by an update. None may panic.

use std::sync::{Arc, OnceLock};

use crate::support::*;
use dare_updater::fuzzing;
use dare_updater::state::replica_path;
use dare_updater::transport::MemoryTransport;
use proptest::prelude::*;

/// The ranges of a request in the bodies' input format (see `fuzzing::multipart`).
fn encode_request(spans: &[(u32, u16)], flags: u8) -> Vec<u8> {
    let mut out = vec![(flags << 2) | (spans.len() as u8 - 1)];
    for (start, len) in spans {
        out.extend_from_slice(&(start & 0x7fff_ffff).to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
    }
    out
}

/// A multipart/byteranges answer to `spans` (start, length - 1) of a container of `total` bytes,
/// with the parts in `order`.
fn multipart_body(spans: &[(u32, u16)], total: u64, order: &[usize]) -> Vec<u8> {
    let mut body = b"preamble\r\n".to_vec();
    for &i in order {
        let (start, len) = spans[i % spans.len()];
        let (first, last) = (u64::from(start & 0x7fff_ffff), u64::from(start & 0x7fff_ffff) + u64::from(len));
        body.extend_from_slice(
            format!(
                "--XyZ\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {first}-{last}/{total}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend((first..=last).map(|b| b as u8));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--XyZ--\r\n");
    body
}

fn mutate(mut bytes: Vec<u8>, ms: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(i, kind, b) in ms {
        if bytes.is_empty() {
            break;
        }
        let i = i % bytes.len();
        match kind % 4 {
            0 => bytes[i] ^= 1 << (b % 8),
            1 => bytes.truncate(i),
            2 => bytes.insert(i, b),
            _ => bytes[i] = b,
        }
    }
    bytes
}

fn spans() -> impl Strategy<Value = Vec<(u32, u16)>> {
    proptest::collection::vec((0u32..100_000, 0u16..300), 1..5)
}

/// A replica written by a real update (genesis, index, manifest, proof, seal).
fn replica() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let p = Publisher::small(dir.path());
        p.publish("1.0.0", T0 + 60);
        p.publish("1.1.0", T0 + 120);
        let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
        let m = Arc::new(MemoryTransport::new("memory", p.bytes()));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(c.update(&m)).unwrap();
        std::fs::read(replica_path(&c.state)).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn content_range_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..80)) {
        fuzzing::content_range(&data);
    }

    #[test]
    fn content_range_on_near_valid_values(
        first in any::<u64>(), len in any::<u64>(), total in proptest::option::of(any::<u64>()),
        body in proptest::collection::vec(any::<u8>(), 0..64), ms in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..3),
    ) {
        let last = first.saturating_add(len % 1000);
        let total = total.map_or("*".to_string(), |t| t.to_string());
        let mut input = format!("bytes {first}-{last}/{total}\n").into_bytes();
        input.extend(body);
        fuzzing::content_range(&input);
        fuzzing::content_range(&mutate(input, &ms));
    }

    #[test]
    fn multipart_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzzing::multipart(&data);
    }

    #[test]
    fn multipart_on_mutated_answers(
        spans in spans(), order in proptest::collection::vec(0usize..5, 0..6), flags in 0u8..64,
        ms in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..3),
    ) {
        let mut input = encode_request(&spans, flags);
        input.extend_from_slice(b"multipart/byteranges; boundary=XyZ\n");
        let header = input.len();
        input.extend(multipart_body(&spans, 1 << 20, &order));
        fuzzing::multipart(&input);
        let mut bad = input[..header].to_vec();
        bad.extend(mutate(input[header..].to_vec(), &ms));
        fuzzing::multipart(&bad);
    }

    #[test]
    fn replica_scan_on_a_mutated_replica(ms in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4)) {
        dare_container::fuzzing::replica(&mutate(replica().to_vec(), &ms));
    }
}

/// The well-formed inputs reach the end: every range delivered, the replica verifies.
#[test]
fn the_valid_inputs_are_accepted() {
    let spans = [(10, 99), (5000, 0), (200, 49)];
    let mut input = encode_request(&spans, 3);
    input.extend_from_slice(b"multipart/byteranges; boundary=XyZ\n");
    input.extend(multipart_body(&spans, 1 << 20, &[2, 0, 1]));
    assert!(fuzzing::multipart(&input), "every range delivered");
    let r = replica();
    let scan = dare_container::verify::scan(r, r.len() as u64, &Default::default()).unwrap();
    assert!(scan.partial);
    dare_container::fuzzing::replica(r);

    seed("multipart", "three-parts", &input);
    seed("content_range", "part", b"bytes 100-199/1000\n0123456789");
    seed("replica", "replica", r);
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
