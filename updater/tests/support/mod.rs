//! Fixtures for the updater's tests: containers built with the publisher
//! library, clients with a fixed clock, snapshots of directories, and two
//! HTTP servers (a range server of our own with fault knobs, and nginx).

#![allow(dead_code)]

pub mod nginx;
pub mod server;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dare_container::Appender;
use dare_container::client::{ProofPlan, SignedTail, TailRead, read_tail};
use dare_container::frame::Window;
use dare_container::header::{FORMAT_VERSION, Genesis};
use dare_container::keys::{SigningKey, TrustRoot, VerifierKey};
use dare_container::merkle::Frontier;
use dare_container::verify::{EntryRecord, Scan, ScanOptions};
use dare_publisher::{Artifact, PublishOptions};
use dare_updater::fetch::RetryPolicy;
use dare_updater::transport::{Timeouts, Transport};
use dare_updater::{Outcome, UpdateError, Updater, UpdaterBuilder};

/// The signed time of the genesis; releases follow a minute apart.
pub const T0: u64 = 1_700_000_000;
pub const DAY: u64 = 86_400;
/// The clock of most clients: an hour after the genesis.
pub fn now() -> u64 {
    T0 + 3600
}

pub const ORIGIN: &str = "example.com/app";
pub const LINUX: &str = "x86_64-unknown-linux-gnu";
pub const ARM: &str = "aarch64-unknown-linux-gnu";
pub const MAC: &str = "aarch64-apple-darwin";
pub const WINDOWS: &str = "x86_64-pc-windows-msvc";
/// The targets of the usual fixture.
pub const TARGETS: [&str; 3] = [LINUX, ARM, MAC];

/// A publisher key, deterministic from `seed`.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed(ORIGIN, [seed; 32]).expect("a valid key name")
}

/// A deterministic, incompressible byte string for `label`.
pub fn noise(label: &str, len: usize) -> Vec<u8> {
    // splitmix64 seeded with FNV-1a of the label.
    let mut s = label.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The executable of one build.
pub fn app_bytes(target: &str, version: &str, size: usize) -> Vec<u8> {
    let mut b = format!("#!/bin/sh\necho {target} {version}\n").into_bytes();
    b.extend(noise(&format!("{target} {version}"), size));
    b
}

/// The single random file of one build (see [`Publisher::publish_single`]).
pub fn single_bytes(target: &str, version: &str, size: usize) -> Vec<u8> {
    noise(&format!("single {target} {version}"), size)
}

/// The text file of one build (compressible).
pub fn readme_text(target: &str, version: &str) -> String {
    format!("app {version} for {target}\n").repeat(40)
}

/// A container and the keys that sign it.
pub struct Publisher {
    pub container: PathBuf,
    pub keys: Vec<SigningKey>,
    /// Bytes of random content in each build's executable.
    pub app_size: usize,
    builds: PathBuf,
}

impl Publisher {
    /// A new container in `dir` named `name`, with a trust root of `keys` and `threshold`.
    pub fn create(dir: &Path, name: &str, keys: Vec<SigningKey>, threshold: u32, app_size: usize) -> Publisher {
        Publisher::create_for(ORIGIN, dir, name, keys, threshold, app_size)
    }

    /// Like [`Publisher::create`] for a container named `origin`.
    pub fn create_for(
        origin: &str,
        dir: &Path,
        name: &str,
        keys: Vec<SigningKey>,
        threshold: u32,
        app_size: usize,
    ) -> Publisher {
        let container = dir.join(name);
        let builds = dir.join(format!("{name}.builds"));
        fs::create_dir_all(&builds).unwrap();
        let trust = TrustRoot::new(keys.iter().map(|k| k.verifier()).collect(), threshold).unwrap();
        let genesis = Genesis { format: FORMAT_VERSION, origin: origin.into(), product: "app".into(), trust };
        let signers: Vec<&SigningKey> = keys.iter().collect();
        Appender::create(&container, genesis, &signers, T0).unwrap();
        Publisher { container, keys, app_size, builds }
    }

    /// A container with one key (seed 1) and small builds.
    pub fn small(dir: &Path) -> Publisher {
        Publisher::create(dir, "app.dare", vec![key(1)], 1, 6 * 1024)
    }

    /// A copy of this container under another name (a fork starts here).
    pub fn copy(&self, name: &str) -> Publisher {
        let dir = self.container.parent().unwrap();
        let container = dir.join(name);
        fs::copy(&self.container, &container).unwrap();
        let builds = dir.join(format!("{name}.builds"));
        fs::create_dir_all(&builds).unwrap();
        Publisher { container, keys: self.keys.clone(), app_size: self.app_size, builds }
    }

    /// Writes the build of `target` at `version` (salted, so forks differ) as a directory.
    fn build(&self, target: &str, version: &str, salt: &str) -> PathBuf {
        let dir = self.builds.join(format!("{target}-{version}{salt}"));
        fs::create_dir_all(dir.join("bin")).unwrap();
        fs::create_dir_all(dir.join("share")).unwrap();
        let app = dir.join("bin/app");
        fs::write(&app, app_bytes(target, &format!("{version}{salt}"), self.app_size)).unwrap();
        fs::set_permissions(&app, fs::Permissions::from_mode(0o755)).unwrap();
        let readme = dir.join("share/readme.txt");
        fs::write(&readme, readme_text(target, &format!("{version}{salt}"))).unwrap();
        fs::set_permissions(&readme, fs::Permissions::from_mode(0o644)).unwrap();
        dir
    }

    /// Publishes `version` for `targets` at `time`, builds salted with `salt`.
    pub fn publish_salted(&self, version: &str, time: u64, targets: &[&str], salt: &str) {
        let artifacts: Vec<Artifact> =
            targets.iter().map(|t| Artifact { target: (*t).to_string(), path: self.build(t, version, salt) }).collect();
        let signers: Vec<&SigningKey> = self.keys.iter().collect();
        let mut opts = PublishOptions::new(version, artifacts, time);
        opts.workers = 1;
        dare_publisher::publish(&self.container, &signers, &opts, &mut |_| {}).unwrap();
    }

    /// Publishes `version` at `time` with one file `app` of `size` random bytes per target.
    pub fn publish_single(&self, version: &str, time: u64, targets: &[&str], size: usize) {
        let artifacts: Vec<Artifact> = targets
            .iter()
            .map(|t| {
                let dir = self.builds.join(format!("{t}-{version}"));
                fs::create_dir_all(&dir).unwrap();
                let app = dir.join("app");
                fs::write(&app, single_bytes(t, version, size)).unwrap();
                fs::set_permissions(&app, fs::Permissions::from_mode(0o755)).unwrap();
                Artifact { target: (*t).to_string(), path: app }
            })
            .collect();
        let signers: Vec<&SigningKey> = self.keys.iter().collect();
        let mut opts = PublishOptions::new(version, artifacts, time);
        opts.level = 1;
        dare_publisher::publish(&self.container, &signers, &opts, &mut |_| {}).unwrap();
    }

    /// Publishes `version` for every usual target at `time`.
    pub fn publish(&self, version: &str, time: u64) {
        self.publish_salted(version, time, &TARGETS, "");
    }

    /// Appends a heartbeat seal at `time`.
    pub fn heartbeat(&self, time: u64) {
        let signers: Vec<&SigningKey> = self.keys.iter().collect();
        dare_publisher::heartbeat(&self.container, &signers, time).unwrap();
    }

    /// The container's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        fs::read(&self.container).unwrap()
    }

    /// A full verification of the container.
    pub fn scan(&self) -> Scan {
        dare_container::verify_file(&self.container, &ScanOptions { payloads: true, pins: None }).unwrap()
    }

    /// The verifier keys.
    pub fn verifiers(&self) -> Vec<VerifierKey> {
        self.keys.iter().map(|k| k.verifier()).collect()
    }
}

/// The entry of `path` in the newest release of `target` (by leaf order).
pub fn entry_of(scan: &Scan, target: &str, version: &str, path: &str) -> EntryRecord {
    scan.entries
        .iter()
        .rev()
        .find(|e| e.entry.target == target && e.entry.version == version && e.entry.path == path)
        .cloned()
        .unwrap_or_else(|| panic!("no entry {target} {version} {path}"))
}

/// The verified tail of a whole container.
pub fn signed_tail(bytes: &[u8], trust: &[VerifierKey]) -> SignedTail {
    match read_tail(&Window::new(0, bytes), bytes.len() as u64, trust, 1).unwrap() {
        TailRead::Complete(t) => *t,
        TailRead::NeedMore { .. } => panic!("a whole container cannot need more"),
    }
}

/// The tile byte ranges a client with the stored tree `old` fetches to prove `leaves`.
pub fn proof_ranges(tail: &SignedTail, old: &Frontier, leaves: &[u64]) -> Vec<(u64, u64)> {
    ProofPlan::new(tail, old, &leaves.iter().copied().collect()).unwrap().ranges()
}

/// A client's directories and settings.
pub struct Client {
    pub state: PathBuf,
    pub install: PathBuf,
    pub target: String,
    pub trust: Vec<VerifierKey>,
    pub threshold: u32,
    pub clock: fn() -> u64,
}

impl Client {
    /// A client for `target` under `root/name`, trusting `trust`.
    pub fn new(root: &Path, name: &str, target: &str, trust: Vec<VerifierKey>) -> Client {
        Client {
            state: root.join(name).join("state"),
            install: root.join(name).join("install"),
            target: target.into(),
            trust,
            threshold: 1,
            clock: now,
        }
    }

    /// A builder with this client's settings, a fixed clock and quick retries, but no mirror.
    pub fn builder(&self) -> UpdaterBuilder {
        let mut b = UpdaterBuilder::new()
            .state_dir(&self.state)
            .install_dir(&self.install)
            .target(self.target.clone())
            .threshold(self.threshold)
            .clock(self.clock)
            .retry(quick_retry())
            .timeouts(Timeouts { connect: Duration::from_secs(2), idle: Duration::from_secs(5) });
        for k in &self.trust {
            b = b.trust(k.clone());
        }
        b
    }

    /// An updater reading through `t`.
    pub fn via(&self, t: Arc<dyn Transport>) -> Updater {
        self.builder().transport(t).build().unwrap()
    }

    /// An updater reading `location` (a path or URL).
    pub fn at(&self, location: &str) -> Updater {
        self.builder().mirror(location).build().unwrap()
    }

    /// One update through `t`.
    pub async fn update(&self, t: &Arc<impl Transport + 'static>) -> Result<Outcome, UpdateError> {
        let t: Arc<dyn Transport> = t.clone();
        self.via(t).update().await
    }

    /// The loaded state, if any.
    pub fn state(&self) -> Option<dare_updater::state::State> {
        dare_updater::state::State::load(&self.state).unwrap()
    }

    /// A snapshot of the install directory and of the state files.
    pub fn snapshot(&self) -> (Snapshot, Snapshot) {
        (snapshot(&self.install), snapshot_files(&self.state, &["state.json", "replica.dare"]))
    }
}

pub fn quick_retry() -> RetryPolicy {
    RetryPolicy { attempts: 2, backoff: Duration::from_millis(5), max_backoff: Duration::from_millis(20) }
}

/// What a directory tree holds: per relative path, its kind, mode and bytes (or link target).
pub type Snapshot = BTreeMap<PathBuf, String>;

pub fn snapshot(dir: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    if fs::symlink_metadata(dir).is_ok() {
        walk(dir, dir, &mut out);
    }
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Snapshot) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        let m = fs::symlink_metadata(&p).unwrap();
        let mode = m.permissions().mode() & 0o7777;
        if m.file_type().is_symlink() {
            out.insert(rel, format!("link -> {}", fs::read_link(&p).unwrap().display()));
        } else if m.is_dir() {
            out.insert(rel, format!("dir {mode:o}"));
            walk(root, &p, out);
        } else {
            let bytes = fs::read(&p).unwrap();
            out.insert(rel, format!("file {mode:o} {} {:x?}", bytes.len(), fnv(&bytes)));
        }
    }
}

fn snapshot_files(dir: &Path, names: &[&str]) -> Snapshot {
    let mut out = Snapshot::new();
    for n in names {
        if let Ok(bytes) = fs::read(dir.join(n)) {
            out.insert(PathBuf::from(n), format!("{} {:x}", bytes.len(), fnv(&bytes)));
        }
    }
    out
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// Checks that `current` points at `versions/<version>` (or `<version>~N`) holding this target's build with its modes.
pub fn assert_installed(install: &Path, target: &str, version: &str, app_size: usize) {
    let link = fs::read_link(install.join("current")).expect("current is a symlink");
    // A version installed again lands in `versions/<version>~N`.
    let name = link.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(link.parent(), Some(Path::new("versions")));
    assert_eq!(name.split('~').next(), Some(version), "current -> {}", link.display());
    let dir = install.join("versions").join(&name);
    let app = dir.join("bin/app");
    assert_eq!(fs::read(&app).unwrap(), app_bytes(target, version, app_size), "{}", app.display());
    assert_eq!(fs::metadata(&app).unwrap().permissions().mode() & 0o777, 0o755);
    let readme = dir.join("share/readme.txt");
    assert_eq!(fs::read_to_string(&readme).unwrap(), readme_text(target, version));
    assert_eq!(fs::metadata(&readme).unwrap().permissions().mode() & 0o777, 0o644);
    let current = install.join("current/bin/app");
    assert_eq!(fs::read(current).unwrap(), app_bytes(target, version, app_size));
}

/// The versions kept under `versions/`, sorted.
pub fn versions(install: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(install.join("versions"))
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().split('~').next().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
