//! Publishing, sealing and checking as the log grows: containers of about
//! 1,000, 100,000 and 1,000,000 leaves, each ending with the same live
//! releases (10 targets of 100 small files), get one more release (a few
//! files changed per target) through `dare_publisher::publish`. Printed per
//! size: the median publish time and its ratio to the smallest size, the
//! bytes a publish appends, the seal's size, and the bytes and requests of an
//! up-to-date check and of an update by a client one release behind (through
//! the file transport, which counts what it reads).
//!
//! `cargo bench --bench scale` (part of `benches/changes.sh`). Generated
//! files are fine here: what is measured is how costs grow with the log.

use std::path::Path;
use std::time::{Duration, Instant};

use dare_container::Appender;
use dare_container::hashio::sha256;
use dare_container::header::{Compression, Entry, FORMAT_VERSION, FileRecord, Genesis, Sha256Hex};
use dare_container::keys::{SigningKey, TrustRoot};
use dare_publisher::{Artifact, PublishOptions, publish};
use dare_updater::UpdaterBuilder;

const TARGETS: [&str; 10] = [
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "x86_64-unknown-linux-musl",
    "aarch64-unknown-linux-musl",
    "x86_64-apple-darwin",
    "aarch64-apple-darwin",
    "x86_64-pc-windows-msvc",
    "aarch64-pc-windows-msvc",
    "i686-pc-windows-msvc",
    "riscv64gc-unknown-linux-gnu",
];
const FILES: usize = 100;
const T0: u64 = 1_764_057_600;

fn file_bytes(target: &str, i: usize, release: u64) -> Vec<u8> {
    format!("{target} file {i} release {release}\n").repeat(8).into_bytes()
}

/// A container of about `leaves` leaves: history releases appended through
/// the library (each target's 100 files all new every release), then the
/// live release, published like any other.
fn build(path: &Path, key: &SigningKey, leaves: u64) -> u64 {
    let trust = TrustRoot::new(vec![key.verifier()], 1).unwrap();
    let genesis =
        Genesis { format: FORMAT_VERSION, origin: "bench.example/scale".into(), product: "scale".into(), trust };
    Appender::create(path, genesis, &[key], T0).unwrap();
    let per_release = (TARGETS.len() * (FILES + 1) + 1) as u64;
    let history = leaves.saturating_sub(per_release) / per_release;
    for r in 0..history {
        let mut a = Appender::open(path).unwrap();
        for t in TARGETS {
            let mut files = Vec::with_capacity(FILES);
            for i in 0..FILES {
                let content = file_bytes(t, i, r);
                let sha = Sha256Hex(sha256(&content));
                let e = Entry {
                    sealed: None,
                    size: content.len() as u64,
                    sha256: sha,
                    stored_size: content.len() as u64,
                    stored_sha256: sha,
                    compression: Compression::None,
                };
                let at = a.append_entry(e, &mut content.as_slice()).unwrap();
                files.push(FileRecord {
                    key: None,
                    path: format!("lib/f{i:04}.dat"),
                    mode: 0o644,
                    size: content.len() as u64,
                    sha256: sha,
                    entry: at,
                    deltas: Vec::new(),
                });
            }
            a.append_index("stable", t, &format!("0.{r}.0"), &files).unwrap();
        }
        a.seal(&[key], T0 + r).unwrap();
    }
    history
}

/// One release of every target through the publisher: `changed` files per
/// target differ from the previous release.
fn release(dir: &Path, container: &Path, key: &SigningKey, n: u64, changed: usize) -> Duration {
    let mut artifacts = Vec::new();
    for t in TARGETS {
        let d = dir.join(format!("build-{n}")).join(t);
        std::fs::create_dir_all(d.join("lib")).unwrap();
        for i in 0..FILES {
            let rel = if i < changed { 1_000_000 + n } else { 1_000_000 };
            std::fs::write(d.join(format!("lib/f{i:04}.dat")), file_bytes(t, i, rel)).unwrap();
        }
        artifacts.push(Artifact { target: t.into(), path: d });
    }
    let opts = PublishOptions::new(format!("1.{n}.0"), artifacts, T0 + 1_000_000 + n);
    let start = Instant::now();
    publish(container, &[key], &opts, &mut |_| {}).unwrap();
    let took = start.elapsed();
    std::fs::remove_dir_all(dir.join(format!("build-{n}"))).unwrap();
    took
}

fn last_frame_len(path: &Path) -> u64 {
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    dare_container::frame::read_frame_before(&f, 0, len).unwrap().len()
}

fn main() {
    let key = SigningKey::generate("bench.example/scale").unwrap();
    let sizes: Vec<u64> = match std::env::var("DARE_SCALE_SIZES") {
        Ok(s) => s.split(',').map(|x| x.trim().parse().expect("DARE_SCALE_SIZES: numbers")).collect(),
        Err(_) => vec![1_000, 100_000, 1_000_000],
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut base: Option<f64> = None;
    println!("scale: 10 targets x 100 files live; each publish changes 5 files per target");
    println!(
        "{:>10} {:>10} {:>12} {:>9} {:>12} {:>10} {:>9} {:>12} {:>9}",
        "leaves", "container", "publish", "vs 1st", "appended", "seal", "check B", "check reqs", "update B"
    );
    for target_leaves in sizes {
        let dir = tempfile::tempdir().unwrap();
        let container = dir.path().join("scale.dare");
        let t = Instant::now();
        build(&container, &key, target_leaves);
        let built = t.elapsed();
        // A client at the first live release.
        release(dir.path(), &container, &key, 0, FILES);
        let client = |check: bool| {
            let u = UpdaterBuilder::new()
                .mirror(container.display().to_string())
                .trust(key.verifier())
                .target(TARGETS[0])
                .state_dir(dir.path().join("state"))
                .install_dir(dir.path().join("install"))
                .max_age(Duration::from_secs(u64::MAX / 4))
                .build()
                .unwrap();
            rt.block_on(async { if check { u.check().await } else { u.update().await } }).unwrap()
        };
        client(false);
        let mut times = Vec::new();
        let mut appended = 0;
        for n in 1..=5 {
            let before = std::fs::metadata(&container).unwrap().len();
            times.push(release(dir.path(), &container, &key, n, 5));
            appended = std::fs::metadata(&container).unwrap().len() - before;
        }
        times.sort();
        let median = times[times.len() / 2].as_secs_f64();
        let ratio = median / *base.get_or_insert(median);
        let update = client(false);
        let check = client(true);
        let scan = dare_container::scan_file(&container, &Default::default()).unwrap();
        println!(
            "{:>10} {:>9.1}M {:>10.1}ms {:>8.2}x {:>12} {:>10} {:>9} {:>12} {:>9}   (built in {:.1?})",
            scan.size(),
            std::fs::metadata(&container).unwrap().len() as f64 / (1 << 20) as f64,
            median * 1000.0,
            ratio,
            appended,
            last_frame_len(&container),
            check.bytes_fetched,
            check.requests,
            update.bytes_fetched,
            built
        );
    }
}
