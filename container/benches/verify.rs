//! Verify throughput against raw SHA-256 over the same bytes, in the same run.
//!
//! Builds a container of `DARE_BENCH_MB` MiB (default 256) of incompressible
//! entries (stored as-is, as a release of already-compressed archives is),
//! then times `verify_file` with payload digests, and SHA-256 of the same
//! number of bytes: in-process (sha2, SHA-NI when the CPU has it) over a
//! buffer in memory, and `openssl dgst -sha256` over the container file when
//! openssl is installed. Prints the ratios; the goal is verify >= 0.8x SHA-256.
//! A second container of compressible (zstd) entries is timed too, where
//! verify also decompresses and hashes the content, and a third where each
//! content after the first also has a delta from the one before, which
//! verify applies to its base.

use std::io::Write;
use std::time::{Duration, Instant};

use dare_container::header::{
    Compression, Delta, DeltaRef, Entry, FORMAT_VERSION, FileRecord, Genesis, LeafRef, Sha256Hex,
};
use dare_container::keys::{SigningKey, TrustRoot};
use dare_container::verify::ScanOptions;
use dare_container::{Appender, hashio::sha256, verify_file};
use sha2::{Digest, Sha256};

const FILE_MB: usize = 32;

fn main() {
    let total_mb: usize = std::env::var("DARE_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let files = (total_mb / FILE_MB).max(1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let key = SigningKey::from_seed("bench", [7; 32]).expect("a key");
    let trust = TrustRoot::new(vec![key.verifier()], 1).expect("a trust root");
    let genesis = |origin: &str| Genesis {
        format: FORMAT_VERSION,
        origin: origin.into(),
        product: "bench".into(),
        trust: trust.clone(),
    };

    // Incompressible payloads (a cheap xorshift stream), one content per file.
    let plain = dir.path().join("plain.dare");
    Appender::create(&plain, genesis("bench/plain"), &[&key], 1).expect("create");
    let mut a = Appender::open(&plain).expect("open");
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut buf = vec![0u8; FILE_MB << 20];
    let mut records = Vec::new();
    for i in 0..files {
        for chunk in buf.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        let d = Sha256Hex(sha256(&buf));
        let e = entry(buf.len() as u64, d, buf.len() as u64, d, Compression::None);
        let at = a.append_entry(e, &mut buf.as_slice()).expect("append");
        records.push(record(i, buf.len() as u64, d, at, Vec::new()));
    }
    a.append_index("stable", TARGET, "1.0.0", &records).expect("index");
    a.seal(&[&key], 2).expect("seal");
    let bytes = std::fs::metadata(&plain).expect("stat").len();

    // Compressible payloads, zstd level 3: numbered lines, another range per file.
    let packed = dir.path().join("zstd.dare");
    Appender::create(&packed, genesis("bench/zstd"), &[&key], 1).expect("create");
    let mut a = Appender::open(&packed).expect("open");
    let lines = (FILE_MB << 20) / 16;
    let text = |i: usize| -> Vec<u8> {
        (i * lines..(i + 1) * lines).flat_map(|j| format!("{j:015}\n").into_bytes()).collect()
    };
    let mut content_bytes = 0u64;
    let mut records = Vec::new();
    for i in 0..files {
        let t = text(i);
        let z = zstd::encode_all(t.as_slice(), 3).expect("zstd");
        let sha = Sha256Hex(sha256(&t));
        let e = entry(t.len() as u64, sha, z.len() as u64, Sha256Hex(sha256(&z)), Compression::Zstd);
        let at = a.append_entry(e, &mut z.as_slice()).expect("append");
        records.push(record(i, t.len() as u64, sha, at, Vec::new()));
        content_bytes += t.len() as u64;
    }
    a.append_index("stable", TARGET, "1.0.0", &records).expect("index");
    a.seal(&[&key], 2).expect("seal");
    let packed_bytes = std::fs::metadata(&packed).expect("stat").len();

    // Deltas: each zstd content after the first is also a patch from the one
    // before it (the numbered lines of the previous file, one line changed).
    let patched = dir.path().join("delta.dare");
    Appender::create(&patched, genesis("bench/delta"), &[&key], 1).expect("create");
    let mut a = Appender::open(&patched).expect("open");
    let mut records = Vec::new();
    let mut previous: Option<(Vec<u8>, Sha256Hex)> = None;
    let mut delta_content = 0u64;
    for i in 0..files.max(2) {
        let mut t = text(0);
        t[i * 16..i * 16 + 15].copy_from_slice(format!("{:015}", 999_999_999_999u64 - i as u64).as_bytes());
        let z = zstd::encode_all(t.as_slice(), 3).expect("zstd");
        let sha = Sha256Hex(sha256(&t));
        let e = entry(t.len() as u64, sha, z.len() as u64, Sha256Hex(sha256(&z)), Compression::Zstd);
        let at = a.append_entry(e, &mut z.as_slice()).expect("append");
        let mut deltas = Vec::new();
        if let Some((base, base_sha)) = &previous {
            let p = patch(base, &t);
            let d = Delta {
                sealed: None,
                base: *base_sha,
                base_size: base.len() as u64,
                size: t.len() as u64,
                sha256: sha,
                stored_size: p.len() as u64,
                stored_sha256: Sha256Hex(sha256(&p)),
            };
            let at = a.append_delta(d, &mut p.as_slice()).expect("append a delta");
            deltas.push(DeltaRef { key: None, base: *base_sha, leaf: at.leaf, offset: at.offset, length: at.length });
            delta_content += t.len() as u64;
        }
        records.push(record(i, t.len() as u64, sha, at, deltas));
        previous = Some((t, sha));
    }
    a.append_index("stable", TARGET, "1.0.0", &records).expect("index");
    a.seal(&[&key], 2).expect("seal");

    let opts = ScanOptions::full();
    let verify = best_of(3, || {
        verify_file(&plain, &opts).expect("the bench container verifies");
    });
    let hash_mem = best_of(3, || {
        let mut h = Sha256::new();
        let mut left = bytes as usize;
        while left > 0 {
            let n = left.min(buf.len());
            h.update(&buf[..n]);
            left -= n;
        }
        std::hint::black_box(h.finalize());
    });
    let openssl = best_of_opt(3, || {
        std::process::Command::new("openssl")
            .args(["dgst", "-sha256"])
            .arg(&plain)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(drop)
    });
    let verify_zstd = best_of(3, || {
        verify_file(&packed, &opts).expect("the bench container verifies");
    });
    let verify_delta = best_of(3, || {
        verify_file(&patched, &opts).expect("the bench container verifies");
    });

    let mbps = |b: u64, d: Duration| b as f64 / d.as_secs_f64() / (1u64 << 20) as f64;
    let out = std::io::stdout();
    let mut out = out.lock();
    let _ = writeln!(
        out,
        "container verify benchmark: {} MiB of incompressible entries ({files} x {FILE_MB} MiB)",
        bytes >> 20
    );
    let _ = writeln!(out, "  dare verify (payload digests)   {:8.0} MiB/s", mbps(bytes, verify));
    let _ = writeln!(out, "  sha2 SHA-256 in memory           {:8.0} MiB/s", mbps(bytes, hash_mem));
    if let Some(o) = openssl {
        let _ = writeln!(out, "  openssl dgst -sha256 (file)      {:8.0} MiB/s", mbps(bytes, o));
    }
    let _ = writeln!(
        out,
        "  ratio verify / SHA-256 in memory {:8.2}x   (goal >= 0.8)",
        hash_mem.as_secs_f64() / verify.as_secs_f64()
    );
    if let Some(o) = openssl {
        let _ = writeln!(out, "  ratio verify / openssl           {:8.2}x", o.as_secs_f64() / verify.as_secs_f64());
    }
    let _ = writeln!(
        out,
        "  zstd container: {} MiB stored, {} MiB content, verify {:.0} MiB/s of content (decompress + 2 digests)",
        packed_bytes >> 20,
        content_bytes >> 20,
        mbps(content_bytes, verify_zstd)
    );
    let _ = writeln!(
        out,
        "  delta container: {} MiB of content made by deltas, verify {:.0} MiB/s of those (entries decoded + patches applied)",
        delta_content >> 20,
        mbps(delta_content, verify_delta)
    );
}

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn entry(size: u64, sha: Sha256Hex, stored_size: u64, stored: Sha256Hex, compression: Compression) -> Entry {
    Entry { sealed: None, size, sha256: sha, stored_size, stored_sha256: stored, compression }
}

fn record(i: usize, size: u64, sha256: Sha256Hex, entry: LeafRef, deltas: Vec<DeltaRef>) -> FileRecord {
    FileRecord { key: None, path: format!("file-{i:04}"), mode: 0o644, size, sha256, entry, deltas }
}

/// A zstd patch-from delta, as `dare publish` makes them.
fn patch(base: &[u8], new: &[u8]) -> Vec<u8> {
    let mut enc = zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), 3, base).expect("zstd");
    let span = base.len().max(new.len()).max(1) as u64;
    enc.window_log((64 - span.leading_zeros() + 1).clamp(10, 31)).expect("zstd");
    enc.long_distance_matching(true).expect("zstd");
    enc.write_all(new).expect("zstd");
    enc.finish().expect("zstd")
}

fn best_of(n: usize, mut f: impl FnMut()) -> Duration {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn best_of_opt(n: usize, mut f: impl FnMut() -> Option<()>) -> Option<Duration> {
    let mut best: Option<Duration> = None;
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        let d = t.elapsed();
        best = Some(best.map_or(d, |b| b.min(d)));
    }
    best
}
