//! `publish` against its reference, in the same run: zstd -3 with every core
//! plus SHA-256 of the same files (`zstd -3 -T0` and `openssl dgst -sha256`,
//! run as processes). Publishing reads each file once, compresses it with
//! zstd level 3 on every core, hashes the content and the stored bytes, and
//! appends; the goal is to cost at most 1.3 times the reference.
//!
//! `cargo bench -p dare-publisher --bench publish`; `DARE_BENCH_MB` sets the
//! size of the build output (default 300), `DARE_BENCH_BREAKDOWN=1` also
//! times the parts of a publish on their own. Publish and reference runs
//! alternate so both see the same machine load; CPU seconds (from
//! /proc/self/stat, children included) are printed beside wall times because
//! they hardly move when the machine is busy.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dare_container::Appender;
use dare_container::header::{FORMAT_VERSION, Genesis};
use dare_container::keys::{SigningKey, TrustRoot};
use dare_container::verify::Stored;
use dare_publisher::{Artifact, PublishOptions, publish};

const MB: usize = 1_000_000;
const RUNS: usize = 3;
const TIME: u64 = 1_764_057_600;

fn main() {
    let total_mb: usize = std::env::var("DARE_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let files = make_build(&dir.path().join("build"), total_mb * MB);
    let bytes: u64 = files.iter().map(|f| fs::metadata(f).map(|m| m.len()).unwrap_or(0)).sum();
    let mb = bytes as f64 / MB as f64;
    println!("build output: {} files, {mb:.0} MB, in {}", files.len(), dir.path().display());

    let key = SigningKey::from_seed("bench", [7; 32]).expect("a key");
    let target = "x86_64-unknown-linux-gnu";
    let artifacts = vec![Artifact { target: target.into(), path: dir.path().join("build") }];
    let opts = PublishOptions::new("1.0.0", artifacts.clone(), TIME + 1);
    let have = |tool: &str| Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    let reference_tools = have("zstd").is_ok() && have("openssl").is_ok();

    // Publish and reference runs alternate, so both see the same machine load.
    let mut stored = 0;
    let (mut publish_runs, mut reference_runs) = (Vec::new(), Vec::new());
    let mut parts = Vec::new();
    for i in 0..RUNS {
        let container = dir.path().join(format!("bench-{i}.dare"));
        let trust = TrustRoot::new(vec![key.verifier()], 1).expect("a trust root");
        let genesis =
            Genesis { format: FORMAT_VERSION, origin: "example.com/bench".into(), product: "bench".into(), trust };
        Appender::create(&container, genesis, &[&key], TIME).expect("creating a container");
        let (report, m) = measure(|| publish(&container, &[&key], &opts, &mut |_| {}).expect("publishing"));
        publish_runs.push(m);
        stored = report.targets[target].stored;
        if i == 0 {
            let scan = dare_container::scan_file(&container, &Default::default()).expect("the container verifies");
            let index = scan.index("stable", target, None).expect("the release");
            for f in &index.files {
                let Some(Stored::Entry(e)) = scan.entry(f.entry.leaf).map(|r| &r.stored) else {
                    panic!("{}: no entry at leaf {}", f.path, f.entry.leaf)
                };
                let ratio = e.size as f64 / e.stored_size as f64;
                println!("  {:<24} {:>6.1} MB  {:?} {ratio:.2}x", f.path, e.size as f64 / MB as f64, e.compression);
            }
        }
        fs::remove_file(&container).expect("removing the container");
        if reference_tools {
            let ((z, h), m) = measure(|| {
                let (mut z, mut h) = (Duration::ZERO, Duration::ZERO);
                for f in &files {
                    z += run(Command::new("zstd").args(["-3", "-T0", "-q", "-c"]).arg(f));
                    h += run(Command::new("openssl").args(["dgst", "-sha256"]).arg(f));
                }
                (z, h)
            });
            reference_runs.push(m);
            parts.push((z, h));
        }
    }
    let p = best(&publish_runs);
    println!(
        "publish (zstd -{}, {} workers):                  {:>7.3} s  {:>6.1} MB/s  cpu {:>6.2} s  stored {:.1} MB ({:.2}x)",
        opts.level,
        opts.workers,
        p.wall.as_secs_f64(),
        mb / p.wall.as_secs_f64(),
        p.cpu,
        stored as f64 / MB as f64,
        bytes as f64 / stored as f64
    );
    next_release(dir.path(), &key, target, &artifacts, &opts, &files);
    if !reference_tools {
        println!("reference skipped: `zstd` or `openssl` is not installed (both are needed)");
        return;
    }
    let r = best(&reference_runs);
    let (z, h) = parts[reference_runs.iter().position(|m| m.wall == r.wall).unwrap_or(0)];
    println!(
        "reference (zstd -3 -T0 + openssl dgst -sha256):  {:>7.3} s  {:>6.1} MB/s  cpu {:>6.2} s  (zstd {:.3} s, sha256 {:.3} s)",
        r.wall.as_secs_f64(),
        mb / r.wall.as_secs_f64(),
        r.cpu,
        z.as_secs_f64(),
        h.as_secs_f64()
    );
    println!(
        "ratio publish/reference: {:.2} wall (goal <= 1.3), {:.2} cpu; runs: {}",
        p.wall.as_secs_f64() / r.wall.as_secs_f64(),
        p.cpu / r.cpu,
        publish_runs
            .iter()
            .zip(&reference_runs)
            .map(|(p, r)| format!("{:.2}", p.wall.as_secs_f64() / r.wall.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if std::env::var_os("DARE_BENCH_BREAKDOWN").is_some() {
        breakdown(&artifacts, dir.path(), &opts);
    }
}

/// The release after the first: the same build again (every file hashed,
/// nothing stored), then with 64 KiB of `bin/app` changed (one new entry and
/// its delta). Both read only the container's tail.
fn next_release(
    dir: &Path,
    key: &SigningKey,
    target: &str,
    artifacts: &[Artifact],
    opts: &PublishOptions,
    files: &[PathBuf],
) {
    let container = dir.join("next.dare");
    let trust = TrustRoot::new(vec![key.verifier()], 1).expect("a trust root");
    let genesis =
        Genesis { format: FORMAT_VERSION, origin: "example.com/bench".into(), product: "bench".into(), trust };
    Appender::create(&container, genesis, &[key], TIME).expect("creating a container");
    publish(&container, &[key], opts, &mut |_| {}).expect("publishing 1.0.0");
    let app = files.iter().find(|f| f.ends_with("bin/app")).expect("bin/app");
    let original = fs::read(app).expect("reading bin/app");
    for (version, change) in [("1.0.1", false), ("1.0.2", true)] {
        if change {
            let mut changed = original.clone();
            let mut rng = Rng(0xC0FFEE);
            let at = changed.len() / 2;
            for b in &mut changed[at..at + (64 << 10)] {
                *b = rng.next() as u8;
            }
            fs::write(app, &changed).expect("changing bin/app");
        }
        let before = fs::metadata(&container).expect("the container").len();
        let mut o = PublishOptions::new(version, artifacts.to_vec(), TIME + 2);
        o.level = opts.level;
        o.workers = opts.workers;
        let (report, m) = measure(|| publish(&container, &[key], &o, &mut |_| {}).expect("publishing"));
        let t = &report.targets[target];
        println!(
            "next release {version} ({}):{:>9.3} s  cpu {:>6.2} s  appended {:.1} kB: {} new, {} file(s) shared, \
             {} delta(s) of {} bytes",
            if change { "64 KiB of bin/app changed" } else { "the same build" },
            m.wall.as_secs_f64(),
            m.cpu,
            (fs::metadata(&container).expect("the container").len() - before) as f64 / 1000.0,
            t.stored,
            t.shared,
            t.deltas,
            t.delta_bytes
        );
    }
    fs::write(app, &original).expect("restoring bin/app");
    fs::remove_file(&container).expect("removing the container");
}

/// Where publish's time goes: each part on its own, best of [`RUNS`].
fn breakdown(artifacts: &[Artifact], dir: &Path, opts: &PublishOptions) {
    let sources = dare_publisher::gather(artifacts).expect("gathering");
    let row = |name: &str, runs: Vec<Measured>| {
        let m = best(&runs);
        println!("  {name:<46} {:>7.3} s  cpu {:>6.2} s", m.wall.as_secs_f64(), m.cpu);
    };
    println!("breakdown:");
    row(
        "stage: read, hash, zstd, hash, staging file",
        (0..RUNS)
            .map(|_| {
                measure(|| {
                    for f in &sources {
                        dare_publisher::compress::stage(f, dir, opts.level, opts.workers, None).expect("staging");
                    }
                })
                .1
            })
            .collect(),
    );
    row(
        "zstd alone (1 MiB writes, output discarded)",
        (0..RUNS)
            .map(|_| {
                measure(|| {
                    for f in &sources {
                        let mut enc = zstd::stream::write::Encoder::new(std::io::sink(), opts.level).expect("zstd");
                        enc.multithread(opts.workers).expect("zstd");
                        let mut src = File::open(&f.source).expect("opening");
                        let mut buf = vec![0u8; 1 << 20];
                        loop {
                            let n = std::io::Read::read(&mut src, &mut buf).expect("reading");
                            if n == 0 {
                                break;
                            }
                            enc.write_all(&buf[..n]).expect("compressing");
                        }
                        enc.finish().expect("compressing");
                    }
                })
                .1
            })
            .collect(),
    );
    row(
        "sha-256 alone (1 MiB reads)",
        (0..RUNS)
            .map(|_| {
                measure(|| {
                    for f in &sources {
                        let mut src = File::open(&f.source).expect("opening");
                        let mut buf = vec![0u8; 1 << 20];
                        let mut h = dare_container::hashio::Hasher::new();
                        loop {
                            let n = std::io::Read::read(&mut src, &mut buf).expect("reading");
                            if n == 0 {
                                break;
                            }
                            h.update(&buf[..n]);
                        }
                        h.finish();
                    }
                })
                .1
            })
            .collect(),
    );
}

/// Wall time and CPU seconds (this process and the children it waited for).
#[derive(Clone, Copy, Debug)]
struct Measured {
    wall: Duration,
    cpu: f64,
}

fn measure<T>(f: impl FnOnce() -> T) -> (T, Measured) {
    let cpu = cpu_seconds();
    let started = Instant::now();
    let out = f();
    (out, Measured { wall: started.elapsed(), cpu: cpu_seconds() - cpu })
}

/// The fastest run by wall time.
fn best(runs: &[Measured]) -> Measured {
    *runs.iter().min_by_key(|m| m.wall).expect("at least one run")
}

/// utime + stime + cutime + cstime from /proc/self/stat, in seconds
/// (assuming the usual 100 ticks a second); 0 where there is no /proc.
fn cpu_seconds() -> f64 {
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else { return 0.0 };
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    // After the command name: state is field 3; utime..cstime are fields 14..17.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields.get(11..15).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum::<f64>() / 100.0)
}

/// Runs a reference command with its output thrown away; its wall time.
fn run(cmd: &mut Command) -> Duration {
    let started = Instant::now();
    let status = cmd.stdout(Stdio::null()).status().expect("running a reference tool");
    assert!(status.success(), "{cmd:?} failed");
    started.elapsed()
}

/// A fast deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Build output of about `total` bytes: executables (code-like machine bytes,
/// symbol tables, string tables, zero padding), text sources and docs, and
/// data tables, in several files of a directory tree.
fn make_build(root: &Path, total: usize) -> Vec<PathBuf> {
    // (path, share of the total, what it holds)
    let layout: [(&str, usize, &[Block]); 6] = [
        ("bin/app", 30, &[Block::Code, Block::Symbols, Block::Code, Block::Strings, Block::Zeros]),
        ("bin/helper", 15, &[Block::Code, Block::Code, Block::Symbols, Block::Zeros]),
        ("lib/libcore.so", 20, &[Block::Code, Block::Strings, Block::Symbols, Block::Code]),
        ("share/doc/manual.html", 10, &[Block::Text]),
        ("share/data/tables.bin", 15, &[Block::Table, Block::Table, Block::Zeros]),
        ("share/assets/icons.pak", 10, &[Block::Noise, Block::Table, Block::Text]),
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut files = Vec::new();
    for (path, share, blocks) in layout {
        let path = root.join(path);
        fs::create_dir_all(path.parent().expect("a parent")).expect("creating directories");
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&path).expect("creating a file"));
        let size = total * share / 100;
        let mut written = 0;
        let mut buf = Vec::with_capacity(1 << 17);
        let mut i = 0;
        while written < size {
            buf.clear();
            blocks[i % blocks.len()].fill(&mut rng, &mut buf, (size - written).min(1 << 17));
            out.write_all(&buf).expect("writing");
            written += buf.len();
            i += 1;
        }
        out.flush().expect("writing");
        files.push(path);
    }
    files
}

#[derive(Clone, Copy)]
enum Block {
    /// x86-like instruction bytes: a skewed alphabet of opcodes and small immediates.
    Code,
    /// Symbol names: mangled-looking identifiers.
    Symbols,
    /// String tables: messages with a few variable words.
    Strings,
    /// Source-like and HTML text.
    Text,
    /// Tables of slowly changing numbers.
    Table,
    /// Already compressed data.
    Noise,
    /// Alignment padding.
    Zeros,
}

const WORDS: [&str; 32] = [
    "frame",
    "header",
    "payload",
    "offset",
    "length",
    "index",
    "buffer",
    "return",
    "match",
    "error",
    "value",
    "config",
    "server",
    "client",
    "update",
    "verify",
    "signature",
    "manifest",
    "release",
    "target",
    "version",
    "channel",
    "checkpoint",
    "container",
    "publish",
    "extract",
    "install",
    "mirror",
    "request",
    "response",
    "timeout",
    "retry",
];

impl Block {
    fn fill(self, rng: &mut Rng, out: &mut Vec<u8>, len: usize) {
        match self {
            Block::Code => {
                // Instruction-like sequences from a small set of templates
                // (as a compiler emits the same few idioms), some of them
                // with an arbitrary displacement or immediate.
                let templates: Vec<Vec<u8>> = {
                    let mut t = Rng(0x5EED);
                    (0..96).map(|_| (0..2 + t.below(6)).map(|_| t.next() as u8).collect()).collect()
                };
                while out.len() < len {
                    let r = rng.next();
                    // Skewed: low template numbers are much more common.
                    let pick = (((r & 0xff) * ((r >> 8) & 0xff)) >> 10) as usize % templates.len();
                    out.extend_from_slice(&templates[pick]);
                    if (r >> 16) & 3 == 0 {
                        out.extend_from_slice(&((r >> 32) as u32 & 0x0fff_ffff).to_le_bytes());
                    }
                }
            }
            Block::Symbols => {
                while out.len() < len {
                    let a = WORDS[rng.below(32) as usize];
                    let b = WORDS[rng.below(32) as usize];
                    let h = rng.next() & 0xffff_ffff;
                    out.extend_from_slice(format!("_ZN4dare{}{a}{}{b}17h{h:016x}E\0", a.len(), b.len()).as_bytes());
                }
            }
            Block::Strings => {
                while out.len() < len {
                    let w = |rng: &mut Rng| WORDS[rng.below(32) as usize];
                    let line =
                        format!("{}: could not {} the {} ({} {})\0", w(rng), w(rng), w(rng), w(rng), rng.below(1000));
                    out.extend_from_slice(line.as_bytes());
                }
            }
            Block::Text => {
                while out.len() < len {
                    let indent = "    ".repeat(rng.below(4) as usize);
                    let n = 3 + rng.below(8);
                    out.extend_from_slice(indent.as_bytes());
                    for _ in 0..n {
                        out.extend_from_slice(WORDS[rng.below(32) as usize].as_bytes());
                        out.push(if rng.below(6) == 0 { b'.' } else { b' ' });
                    }
                    if rng.below(5) == 0 {
                        out.extend_from_slice(format!("{}", rng.below(100_000)).as_bytes());
                    }
                    out.push(b'\n');
                }
            }
            Block::Table => {
                let mut v = rng.below(1 << 20) as u32;
                while out.len() < len {
                    v = v.wrapping_add(rng.below(64) as u32);
                    out.extend_from_slice(&v.to_le_bytes());
                    out.extend_from_slice(&(rng.below(4) as u16).to_le_bytes());
                }
            }
            Block::Noise => {
                while out.len() < len {
                    out.extend_from_slice(&rng.next().to_le_bytes());
                }
            }
            Block::Zeros => out.resize(len, 0),
        }
        out.truncate(len);
    }
}
