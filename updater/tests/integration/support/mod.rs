//! Fixtures for the updater's tests: containers built with the publisher
//! library, clients with a fixed clock, snapshots of directories, and two
//! HTTP servers (a range server of our own with fault knobs, and nginx).

#![allow(dead_code)]

#[cfg(unix)] // nginx is a Unix program here.
pub mod nginx;
pub mod range_server;
pub mod server;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dare_container::Appender;
use dare_container::client::{ProofPlan, SealRead, SignedTop, read_seal, read_top};
use dare_container::frame::Window;
use dare_container::header::{FORMAT_VERSION, FileRecord, Genesis};
use dare_container::keys::{SigningKey, TrustRoot, VerifierKey};
use dare_container::merkle::Frontier;
use dare_container::verify::{EntryRecord, IndexRecord, Scan, ScanOptions};
use dare_publisher::{Artifact, PublishOptions, PublishReport};
use dare_updater::fetch::RetryPolicy;
use dare_updater::transport::{
    BoxFuture, ByteRange, MemoryTransport, RangeSink, SinkError, Timeouts, TransferStats, Transport, TransportError,
};
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
        set_mode(&app, 0o755);
        let readme = dir.join("share/readme.txt");
        fs::write(&readme, readme_text(target, &format!("{version}{salt}"))).unwrap();
        set_mode(&readme, 0o644);
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

    /// Publishes `version` at `time` with one file `app` of `size` random bytes per target. The
    /// builds are unrelated random bytes, so no delta is tried.
    pub fn publish_single(&self, version: &str, time: u64, targets: &[&str], size: usize) {
        let artifacts: Vec<Artifact> = targets
            .iter()
            .map(|t| {
                let dir = self.builds.join(format!("{t}-{version}"));
                fs::create_dir_all(&dir).unwrap();
                let app = dir.join("app");
                fs::write(&app, single_bytes(t, version, size)).unwrap();
                set_mode(&app, 0o755);
                Artifact { target: (*t).to_string(), path: app }
            })
            .collect();
        let signers: Vec<&SigningKey> = self.keys.iter().collect();
        let mut opts = PublishOptions::new(version, artifacts, time);
        opts.level = 1;
        opts.deltas = 0;
        dare_publisher::publish(&self.container, &signers, &opts, &mut |_| {}).unwrap();
    }

    /// Publishes `version` at `time` with the given build of each target (default options: deltas
    /// against the previous release).
    pub fn publish_builds(&self, version: &str, time: u64, builds: &[(&str, &Build)]) -> PublishReport {
        self.publish_builds_with(version, time, builds, |_| {})
    }

    /// [`Publisher::publish_builds`] with options adjusted by `adjust`.
    pub fn publish_builds_with(
        &self,
        version: &str,
        time: u64,
        builds: &[(&str, &Build)],
        adjust: impl FnOnce(&mut PublishOptions),
    ) -> PublishReport {
        let artifacts: Vec<Artifact> = builds
            .iter()
            .map(|(t, build)| {
                let dir = self.builds.join(format!("{t}-{version}-tree"));
                if dir.exists() {
                    fs::remove_dir_all(&dir).unwrap();
                }
                write_build(&dir, build);
                Artifact { target: (*t).to_string(), path: dir }
            })
            .collect();
        let signers: Vec<&SigningKey> = self.keys.iter().collect();
        let mut opts = PublishOptions::new(version, artifacts, time);
        opts.workers = 1;
        adjust(&mut opts);
        dare_publisher::publish(&self.container, &signers, &opts, &mut |_| {}).unwrap()
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
        dare_container::verify_file(&self.container, &ScanOptions::full()).unwrap()
    }

    /// The verifier keys.
    pub fn verifiers(&self) -> Vec<VerifierKey> {
        self.keys.iter().map(|k| k.verifier()).collect()
    }
}

/// The index of `version` of `target` on `stable`.
pub fn index_of(scan: &Scan, target: &str, version: &str) -> IndexRecord {
    scan.index("stable", target, Some(version)).cloned().unwrap_or_else(|| panic!("no index {target} {version}"))
}

/// The listing record of `path` in `version` of `target`.
pub fn file_of(scan: &Scan, target: &str, version: &str, path: &str) -> FileRecord {
    index_of(scan, target, version)
        .files
        .into_iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no file {path} in {target} {version}"))
}

/// The entry frame holding the content of `path` in `version` of `target`.
pub fn entry_of(scan: &Scan, target: &str, version: &str, path: &str) -> EntryRecord {
    let f = file_of(scan, target, version, path);
    let e = scan.entry(f.entry.leaf).cloned().unwrap_or_else(|| panic!("no entry at leaf {}", f.entry.leaf));
    assert_eq!((e.frame.offset, e.frame.len()), (f.entry.offset, f.entry.length));
    e
}

/// The delta frame that produces `path` of `version` of `target` from the previous version.
pub fn delta_of(scan: &Scan, target: &str, version: &str, path: &str) -> EntryRecord {
    let f = file_of(scan, target, version, path);
    let d = f.deltas.first().unwrap_or_else(|| panic!("{path} of {target} {version} has no delta"));
    let e = scan.entry(d.leaf).cloned().unwrap_or_else(|| panic!("no delta at leaf {}", d.leaf));
    assert_eq!((e.frame.offset, e.frame.len()), (d.offset, d.length));
    e
}

/// The leaves a client holding the build `installed` (if any) fetches to install `version` of
/// `target`: the delta of each changed file whose base it holds, else its whole entry.
pub fn needed_leaves(scan: &Scan, target: &str, version: &str, installed: Option<&str>) -> BTreeSet<u64> {
    let have: HashSet<_> =
        installed.map(|v| index_of(scan, target, v).files.iter().map(|f| f.sha256).collect()).unwrap_or_default();
    index_of(scan, target, version)
        .files
        .iter()
        .filter(|f| !have.contains(&f.sha256))
        .map(|f| f.deltas.iter().find(|d| have.contains(&d.base)).map_or(f.entry.leaf, |d| d.leaf))
        .collect()
}

/// The verified top (seal, map, manifest) of a whole container.
pub fn signed_top(bytes: &[u8], trust: &[VerifierKey]) -> SignedTop {
    let seal = match read_seal(&Window::new(0, bytes), bytes.len() as u64, trust, 1).unwrap() {
        SealRead::Complete(s) => *s,
        SealRead::NeedMore { .. } => panic!("a whole container cannot need more"),
    };
    read_top(seal, bytes).unwrap()
}

/// The byte ranges (page slots and tile hashes) a client with the stored tree `old` fetches to prove
/// `leaves` in the tree of `top`.
pub fn proof_ranges(bytes: &[u8], top: &SignedTop, old: &Frontier, leaves: &BTreeSet<u64>) -> Vec<(u64, u64)> {
    let mut plan = ProofPlan::new(&top.map, old, leaves).unwrap();
    let mut out = plan.slot_ranges();
    plan.resolve_slots(|s, l| bytes.get(s as usize..(s + l) as usize)).unwrap();
    out.extend(plan.ranges());
    out
}

/// Every byte offset in `ranges`.
pub fn bytes_in(ranges: &[(u64, u64)]) -> BTreeSet<u64> {
    ranges.iter().flat_map(|(s, e)| *s..*e).collect()
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
            .timeouts(Timeouts::default().with_connect(Duration::from_secs(2)).with_idle(Duration::from_secs(5)));
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

    /// A snapshot of the install directory and of the state directory (but its lock file, which
    /// every run creates).
    pub fn snapshot(&self) -> (Snapshot, Snapshot) {
        let mut state = snapshot(&self.state);
        state.remove(Path::new("lock"));
        (snapshot(&self.install), state)
    }
}

/// Whether `present` (a tool the test needs is installed). A missing tool
/// fails the test under `CI=true` (a test must not pass by skipping there),
/// with `hint`, the install command; elsewhere the test prints it and skips.
pub fn require_tool(present: bool, tool: &str, hint: &str) -> bool {
    if !present {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
            "{tool} is not installed, and CI=true: {hint}"
        );
        eprintln!("skipped: {tool} is not installed ({hint})");
    }
    present
}

pub fn quick_retry() -> RetryPolicy {
    RetryPolicy::default()
        .with_attempts(2)
        .with_backoff(Duration::from_millis(5))
        .with_max_backoff(Duration::from_millis(20))
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
        let mode = mode_bits(&m);
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

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// Gives `p` the permission bits `mode` (on Windows, what of them it keeps).
pub fn set_mode(p: &Path, mode: u32) {
    dare_container::fsys::set_mode(p, mode).unwrap();
}

/// A file's permission bits; on Windows, which keeps only a read-only
/// attribute, `0o444` or `0o666`.
pub fn mode_bits(m: &fs::Metadata) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o7777
    }
    #[cfg(windows)]
    {
        if m.permissions().readonly() { 0o444 } else { 0o666 }
    }
}

/// Checks that the file at `p` has the mode `mode` (on Windows: what of it
/// Windows keeps).
#[track_caller]
pub fn assert_mode(p: &Path, mode: u32) {
    let m = fs::metadata(p).unwrap();
    let got = mode_bits(&m);
    assert!(dare_container::fsys::mode_matches(&m, mode), "the mode of {} is {got:o}, want {mode:o}", p.display());
}

/// The name under `versions/` of the build `current` names, found the way an
/// app finds it (a symlink on Unix, a pointer file on Windows).
#[track_caller]
pub fn current_name(install: &Path) -> String {
    let dir = dare_updater::current_dir(install).expect("current names an installed build");
    assert_eq!(dir.parent(), Some(install.join("versions").as_path()));
    let link = fs::symlink_metadata(install.join("current")).unwrap();
    assert!(if cfg!(windows) { link.file_type().is_file() } else { link.file_type().is_symlink() });
    dir.file_name().unwrap().to_string_lossy().into_owned()
}

/// The live build's directory, found the way an app finds it.
#[track_caller]
pub fn current_dir(install: &Path) -> PathBuf {
    dare_updater::current_dir(install).expect("current names an installed build")
}

/// Checks that `current` points at `versions/<version>` (or `<version>~N`) holding this target's build with its modes.
pub fn assert_installed(install: &Path, target: &str, version: &str, app_size: usize) {
    // A version installed again lands in `versions/<version>~N`.
    let name = current_name(install);
    assert_eq!(name.split('~').next(), Some(version), "current -> {name}");
    let dir = install.join("versions").join(&name);
    let app = dir.join("bin/app");
    assert_eq!(fs::read(&app).unwrap(), app_bytes(target, version, app_size), "{}", app.display());
    assert_mode(&app, 0o755);
    let readme = dir.join("share/readme.txt");
    assert_eq!(fs::read_to_string(&readme).unwrap(), readme_text(target, version));
    assert_mode(&readme, 0o644);
    #[cfg(unix)] // Through the link, as a path.
    assert_eq!(fs::read(install.join("current/bin/app")).unwrap(), app_bytes(target, version, app_size));
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

// ---------------------------------------------------------------------------------------------------------
// Builds of several files

/// A build: relative path to (content, executable).
pub type Build = BTreeMap<String, (Vec<u8>, bool)>;

/// Writes `build` under `dir` with its modes.
pub fn write_build(dir: &Path, build: &Build) {
    for (path, (bytes, exec)) in build {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, bytes).unwrap();
        set_mode(&p, if *exec { 0o755 } else { 0o644 });
    }
}

/// The regular files under `dir`, by relative `/` path.
pub fn files_under(dir: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, PathBuf>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                walk(root, &p, out);
            } else {
                let rel: Vec<_> =
                    p.strip_prefix(root).unwrap().components().map(|c| c.as_os_str().to_string_lossy()).collect();
                out.insert(rel.join("/"), p);
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

/// Checks that `current` points at `versions/<version>` (or `<version>~N`) holding exactly `build`,
/// with its modes; returns that directory.
#[track_caller]
pub fn assert_build(install: &Path, version: &str, build: &Build) -> PathBuf {
    let name = current_name(install);
    assert_eq!(name.split('~').next(), Some(version), "current -> {name}");
    let dir = install.join("versions").join(&name);
    assert_dir(&dir, build);
    dir
}

/// Checks that `dir` holds exactly `build`, with its modes.
#[track_caller]
pub fn assert_dir(dir: &Path, build: &Build) {
    let files = files_under(dir);
    assert_eq!(files.keys().collect::<Vec<_>>(), build.keys().collect::<Vec<_>>(), "the files of {}", dir.display());
    for (path, (bytes, exec)) in build {
        let p = &files[path];
        assert!(fs::read(p).unwrap() == *bytes, "{} is not the published content", p.display());
        assert_mode(p, if *exec { 0o755 } else { 0o644 });
    }
}

/// A build from `(path, content, executable)`.
pub fn build_of(files: &[(&str, Vec<u8>, bool)]) -> Build {
    files.iter().map(|(p, b, x)| (p.to_string(), (b.clone(), *x))).collect()
}

/// `bytes` with 8 bytes changed at places chosen by `label`: a small edit of a large file.
pub fn tweaked(bytes: &[u8], label: &str) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for c in noise(&format!("tweak {label}"), 64).chunks(8) {
        let at = (u64::from_le_bytes(c.try_into().unwrap()) % out.len() as u64) as usize;
        out[at] ^= 0xa5;
    }
    out
}

/// What an update from the build `installed` (if any) to `version` of `target` should transfer:
/// (bytes of whole entry frames, bytes of delta frames, content bytes reused). Each content is
/// fetched once; a file whose content is installed is reused; a changed one comes as a delta
/// when one has an installed base.
pub fn expected_transfer(scan: &Scan, target: &str, version: &str, installed: Option<&str>) -> (u64, u64, u64) {
    let have: HashSet<_> =
        installed.map(|v| index_of(scan, target, v).files.iter().map(|f| f.sha256).collect()).unwrap_or_default();
    let (mut full, mut delta, mut reused) = (0, 0, 0);
    let mut fetched = HashSet::new();
    for f in index_of(scan, target, version).files {
        if have.contains(&f.sha256) {
            reused += f.size;
        } else if fetched.insert(f.sha256) {
            match f.deltas.iter().find(|d| have.contains(&d.base)) {
                Some(d) => delta += d.length,
                None => full += f.entry.length,
            }
        }
    }
    (full, delta, reused)
}

/// The inode of a file. (std has no stable file index on Windows, so tests
/// of hard links are Unix-only.)
#[cfg(unix)]
pub fn inode(p: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(p).unwrap();
    (m.dev(), m.ino())
}

/// Bytes of every regular file under `dir`, each link counted.
pub fn tree_size(dir: &Path) -> u64 {
    files_under(dir).values().map(|p| fs::symlink_metadata(p).unwrap().len()).sum()
}

/// Bytes of the distinct files under `dir`: hard links to one file counted once.
#[cfg(unix)]
pub fn distinct_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    files_under(dir)
        .values()
        .filter_map(|p| {
            let m = fs::symlink_metadata(p).unwrap();
            (m.file_type().is_file() && seen.insert((m.dev(), m.ino()))).then_some(m.len())
        })
        .sum()
}

// ---------------------------------------------------------------------------------------------------------
// A transport that watches (and can break) what a session asks for

/// What a [`Watched`] transport does with one request.
pub enum Act {
    /// Answer it.
    Pass,
    /// Fail it, sending nothing.
    Fail(TransportError),
    /// Send this many bytes, then drop the connection.
    CutAfter(u64),
}

/// Decides the fate of request `n` (from 0) asking for `ranges`.
pub type Hook = Box<dyn Fn(usize, &[ByteRange]) -> Act + Send + Sync>;

/// A [`MemoryTransport`] whose requests are recorded and may be failed or cut by a hook.
pub struct Watched {
    pub inner: Arc<MemoryTransport>,
    name: String,
    hook: Hook,
    count: AtomicUsize,
    log: Mutex<Vec<Vec<ByteRange>>>,
}

impl Watched {
    pub fn new(inner: Arc<MemoryTransport>, hook: Hook) -> Watched {
        Watched { inner, name: "watched".into(), hook, count: AtomicUsize::new(0), log: Mutex::new(Vec::new()) }
    }

    /// Records only.
    pub fn passive(inner: Arc<MemoryTransport>) -> Watched {
        Watched::new(inner, Box::new(|_, _| Act::Pass))
    }

    /// The ranges of every request so far.
    pub fn log(&self) -> Vec<Vec<ByteRange>> {
        self.log.lock().unwrap().clone()
    }

    /// Forgets the requests so far.
    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }

    /// Whether any request so far asked for a byte of `[start, end)` of a container of `total` bytes.
    pub fn asked_for(&self, total: u64, start: u64, end: u64) -> bool {
        self.log().iter().flatten().any(|r| touches(r, total, start, end))
    }
}

/// The bytes `[start, end)` that `r` asks for in a container of `total` bytes.
pub fn resolve(r: &ByteRange, total: u64) -> (u64, u64) {
    match *r {
        ByteRange::Span { start, end } => (start, end.min(total)),
        ByteRange::Suffix(n) => (total - n.min(total), total),
    }
}

/// Whether `r` asks for a byte of `[start, end)` of a container of `total` bytes.
pub fn touches(r: &ByteRange, total: u64, start: u64, end: u64) -> bool {
    let (s, e) = resolve(r, total);
    s < end && start < e
}

impl Transport for Watched {
    fn name(&self) -> &str {
        &self.name
    }

    fn fetch<'a>(
        &'a self,
        ranges: &'a [ByteRange],
        sink: &'a mut dyn RangeSink,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        let n = self.count.fetch_add(1, Ordering::SeqCst);
        self.log.lock().unwrap().push(ranges.to_vec());
        let act = (self.hook)(n, ranges);
        Box::pin(async move {
            match act {
                Act::Pass => self.inner.fetch(ranges, sink).await,
                Act::Fail(e) => Err(e),
                Act::CutAfter(left) => {
                    let mut cut = CutSink { inner: sink, left, cut: false };
                    let r = self.inner.fetch(ranges, &mut cut).await;
                    if cut.cut {
                        Err(TransportError::Interrupted { url: self.name.clone(), reason: "cut by the test".into() })
                    } else {
                        r
                    }
                }
            }
        })
    }

    fn stats(&self) -> TransferStats {
        self.inner.stats()
    }
}

/// Passes `left` bytes on, then refuses the rest.
struct CutSink<'a> {
    inner: &'a mut dyn RangeSink,
    left: u64,
    cut: bool,
}

impl RangeSink for CutSink<'_> {
    fn begin(&mut self, index: usize, start: u64, total: Option<u64>) -> Result<(), SinkError> {
        self.inner.begin(index, start, total)
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        let n = (bytes.len() as u64).min(self.left) as usize;
        if n > 0 {
            self.inner.data(&bytes[..n])?;
            self.left -= n as u64;
        }
        if n < bytes.len() {
            self.cut = true;
            return Err(SinkError("cut".into()));
        }
        Ok(())
    }
}

/// A `file://` URL of an absolute path: `file:///abs/path`, or on Windows
/// `file:///C:/dir/file`.
pub fn file_url(path: &Path) -> String {
    let text = path.display().to_string();
    if cfg!(windows) { format!("file:///{}", text.replace('\\', "/")) } else { format!("file://{text}") }
}
