//! `dare demo`: the whole product on loopback, with real output.
//!
//! Generates builds for several target triples, makes a key, creates a
//! container, publishes 1.0.0, serves the directory with the dare mirror on a
//! free loopback port, updates a client for one target over HTTP, publishes
//! 1.1.0 (which changes a few files of each build, as real releases do) and
//! updates again: the second update fetches deltas and reuses what is
//! installed. Every figure printed is measured. Everything is left in the
//! directory so `dare ls` and `dare verify` can be run on it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dare_container::Appender;
use dare_container::header::{FORMAT_VERSION, Genesis};
use dare_container::keys::{SigningKey, TrustRoot};
use dare_mirror::{Server, ServerConfig};
use dare_publisher::{Artifact, PublishOptions, publish};
use dare_updater::{Outcome, UpdaterBuilder};

use crate::report::bytes;

/// The demo's targets: a client updates the first one unless the host is another of them.
const TARGETS: [&str; 5] = [
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "x86_64-apple-darwin",
    "aarch64-apple-darwin",
    "x86_64-pc-windows-msvc",
];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to put everything (default: a new temporary directory, kept).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    let started = Instant::now();
    let dir = match a.dir {
        Some(d) => {
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            if std::fs::read_dir(&d)?.next().is_some() {
                anyhow::bail!("{} is not empty; give an empty or new directory", d.display());
            }
            d
        }
        None => tempfile::Builder::new().prefix("dare-demo-").tempdir().context("making a directory")?.keep(),
    };
    let say = |s: String| {
        crate::outln!("{s}");
        let _ = std::io::stdout().flush();
    };
    say(format!("dare demo in {}", dir.display()));

    // The publisher's side: a key, a container, builds.
    let key = SigningKey::generate("demo.example/app").context("generating a key")?;
    std::fs::write(dir.join("release.key"), format!("{}\n", key.to_text())).context("writing the key")?;
    std::fs::write(dir.join("release.key.pub"), format!("{}\n", key.verifier())).context("writing the key")?;
    let mirror_dir = dir.join("mirror");
    std::fs::create_dir_all(&mirror_dir)?;
    let container = mirror_dir.join("app.dare");
    let now = unix_now();
    let trust = TrustRoot::new(vec![key.verifier()], 1)?;
    let genesis = Genesis { format: FORMAT_VERSION, origin: "demo.example/app".into(), product: "app".into(), trust };
    Appender::create(&container, genesis, &[&key], now)?;
    say(format!("1. keygen + init     {} signed by {}", container.display(), key.verifier()));

    let builds = dir.join("builds");
    let publish_version = |version: &str, time: u64| -> Result<(u64, Duration)> {
        let mut artifacts = Vec::new();
        for t in TARGETS {
            let d = builds.join(version).join(t);
            make_build(&d, t, version)?;
            artifacts.push(Artifact { target: t.to_string(), path: d });
        }
        let t = Instant::now();
        let report = publish(&container, &[&key], &PublishOptions::new(version, artifacts, time), &mut |_| {})?;
        let size: u64 = report.targets.values().map(|r| r.size).sum();
        let stored: u64 = report.targets.values().map(|r| r.stored).sum();
        let deltas: u64 = report.targets.values().map(|r| r.delta_bytes).sum();
        let shared: u64 = report.targets.values().map(|r| r.shared_bytes).sum();
        say(format!(
            "   published {version} for {} targets: {} of builds; stored {} of new content and {} of deltas, \
             {} already in the container; the container is now {}",
            report.targets.len(),
            bytes(size),
            bytes(stored),
            bytes(deltas),
            bytes(shared),
            bytes(report.seal.len)
        ));
        Ok((report.seal.len, t.elapsed()))
    };
    say("2. publish 1.0.0".into());
    publish_version("1.0.0", now)?;

    // The mirror: the dare range server on a free loopback port.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).context("binding 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(Server::new(mirror_dir.clone(), ServerConfig::default()).run(listener, async {
        let _ = stopped.await;
    }));
    let url = format!("http://{addr}/app.dare");
    say(format!("3. serve             {url}"));

    // The client: one target, over HTTP.
    let host = dare_updater::host_target();
    let target = TARGETS.iter().find(|t| **t == host).copied().unwrap_or(TARGETS[0]);
    let state = dir.join("client/state");
    let install = dir.join("client/install");
    let update = |step: &str| -> Result<Outcome> {
        let updater = UpdaterBuilder::new()
            .mirror(url.clone())
            .trust(key.verifier())
            .target(target)
            .state_dir(&state)
            .install_dir(&install)
            .build()?;
        let t = Instant::now();
        let o = runtime.block_on(updater.update())?;
        let len = std::fs::metadata(&container)?.len();
        match o.status {
            dare_updater::Status::Updated => say(format!(
                "{step} update {target}: {} -> {} in {:.0?}",
                o.previous.as_deref().unwrap_or("nothing"),
                o.version,
                t.elapsed()
            )),
            _ => say(format!("{step} update {target}: {} is up to date, checked in {:.0?}", o.version, t.elapsed())),
        }
        say(format!(
            "   fetched {} in {} request(s): {} of whole entries, {} of deltas, {} of signed metadata and proofs; \
             reused {} already installed; the container is {} ({:.1}% of it fetched)",
            bytes(o.bytes_fetched),
            o.requests,
            bytes(o.bytes_full),
            bytes(o.bytes_delta),
            bytes(o.bytes_fetched.saturating_sub(o.payload_bytes)),
            bytes(o.bytes_reused),
            bytes(len),
            100.0 * o.bytes_fetched as f64 / len as f64
        ));
        Ok(o)
    };
    let result = (|| -> Result<()> {
        update("4.")?;
        say("5. publish 1.1.0".into());
        publish_version("1.1.0", now + 1)?;
        update("6.")?;
        update("7.")?;
        Ok(())
    })();
    let _ = stop.send(());
    let _ = runtime.block_on(server);
    result?;
    say(format!("   installed: {}", install.join("current").display()));
    say(format!("done in {:.1?}. Look around:", started.elapsed()));
    say(format!("   dare ls {}", container.display()));
    say(format!("   dare verify {}", container.display()));
    say(format!(
        "   dare verify {}   (the client's replica: the signed tree and the installed index, still verifiable)",
        state.join("replica.dare").display()
    ));
    Ok(())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A deterministic, realistic-looking build: a 3 MiB "binary" mixing
/// code-like text with pseudo-random tables, a few plugins, assets shared by
/// every target, and a README. A new version changes what a real release
/// changes: a few functions of the binary, one plugin, the README.
fn make_build(dir: &Path, target: &str, version: &str) -> Result<()> {
    let seed_of =
        |s: &str| s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let minor = version.split('.').nth(1).and_then(|m| m.parse::<u64>().ok()).unwrap_or(0);
    let blob = |seed: u64, len: usize, changed: &dyn Fn(u64) -> bool| {
        let mut seed = seed | 1;
        let mut out = Vec::with_capacity(len);
        let mut i = 0u64;
        while out.len() < len {
            if i.is_multiple_of(16) {
                // A table of pseudo-random constants: incompressible.
                for _ in 0..48 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    out.extend_from_slice(&seed.to_le_bytes());
                }
            } else if changed(i) {
                out.extend_from_slice(
                    format!("fn handler_{i}() {{ dispatch_v2({i}, \"{target}\", \"{version}\"); }}\n").as_bytes(),
                );
            } else {
                out.extend_from_slice(format!("fn handler_{i}() {{ dispatch({i}, \"{target}\"); }}\n").as_bytes());
            }
            i += 1;
        }
        out.truncate(len);
        out
    };
    let write = |rel: &str, bytes: &[u8], exec: bool| -> Result<()> {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, bytes)?;
        let mode = if exec { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        Ok(())
    };
    // Every minor release rewrites a few hundred of the binary's functions.
    write("bin/app", &blob(seed_of(target), 3 << 20, &|i| minor > 0 && i % 97 == 5), true)?;
    for p in 0..4u64 {
        // Plugin 0 changes in every release; the others only with the target.
        let seed = seed_of(&format!("{target}/plugin{p}/{}", if p == 0 { minor } else { 0 }));
        write(&format!("lib/plugin{p}.so"), &blob(seed, 256 << 10, &|_| false), false)?;
    }
    for a in 0..8u64 {
        // The same assets in every build of every target: stored once.
        write(&format!("share/assets/{a}.dat"), &blob(seed_of(&format!("asset{a}")), 64 << 10, &|_| false), false)?;
    }
    write("README.txt", format!("app {version} for {target}\n").as_bytes(), false)?;
    Ok(())
}
