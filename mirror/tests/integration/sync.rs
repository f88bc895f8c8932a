//! Syncing a container from upstreams, through the library API, over
//! loopback: containers built with the publisher, an origin [`Server`] on
//! `127.0.0.1:0`, a [`Syncer`] keeping a local copy, and (where it matters)
//! the mirror's own [`Server`] serving that copy. Every case checks the local
//! bytes and the [`ServedLengths`] afterwards.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dare_container::header::{FORMAT_VERSION, Genesis};
use dare_container::keys::{SigningKey, TrustRoot, VerifierKey};
use dare_container::tiles::TileId;
use dare_container::verify::{Scan, ScanOptions, Stored};
use dare_container::{Appender, scan_file};
use dare_mirror::sync::{SyncConfig, SyncError, SyncReport, Syncer};
use dare_mirror::tlog::TlogOverlay;
use dare_mirror::{MirrorError, ServedLengths, Server, ServerConfig};
use dare_publisher::{Artifact, PublishOptions, heartbeat, publish};
use dare_updater::transport::{HttpTransport, Timeouts, TransportError, transport_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const T0: u64 = 1_764_057_600;
const LINUX: &str = "x86_64-unknown-linux-gnu";
const MAC: &str = "aarch64-apple-darwin";
/// Where the mirror serves its copy.
const PATH: &str = "/app.dare";

fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed("release", [seed; 32]).expect("a valid key name")
}

/// Deterministic, incompressible bytes: equal lengths give equal stored
/// lengths, so two different releases can make containers of equal length.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn scan(path: &Path) -> Scan {
    scan_file(path, &ScanOptions::full()).expect("the container verifies")
}

/// Asserts two byte strings are equal, naming the first difference rather
/// than printing megabytes.
#[track_caller]
fn same_bytes(got: &[u8], want: &[u8], what: &str) {
    if let Some(at) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: the bytes differ first at offset {at} (lengths {} and {})", got.len(), want.len());
    }
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
}

/// One target's build: files by relative path.
type Build = Vec<(String, Vec<u8>)>;

/// The publisher's side: a key, containers and builds in one directory.
struct Publisher {
    dir: tempfile::TempDir,
    key: SigningKey,
    builds: AtomicU64,
}

impl Publisher {
    fn new() -> Publisher {
        Publisher { dir: tempfile::tempdir().expect("a temporary directory"), key: key(1), builds: AtomicU64::new(0) }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A new container at `rel`: its genesis and first seal.
    fn create(&self, rel: &str) -> PathBuf {
        let path = self.path(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("a directory");
        }
        let trust = TrustRoot::new(vec![self.key.verifier()], 1).expect("a trust root");
        let genesis =
            Genesis { format: FORMAT_VERSION, origin: "example.com/app".into(), product: "app".into(), trust };
        Appender::create(&path, genesis, &[&self.key], T0).expect("creating a container");
        path
    }

    /// Publishes `version` into `container`: per target, a directory of `files`.
    fn publish(&self, container: &Path, version: &str, targets: &[(&str, Build)], time: u64) {
        let mut artifacts = Vec::new();
        for (target, files) in targets {
            let n = self.builds.fetch_add(1, Ordering::Relaxed);
            let dir = self.path(&format!("builds/{n}"));
            for (name, bytes) in files {
                let file = dir.join(name);
                std::fs::create_dir_all(file.parent().expect("a parent")).expect("a build directory");
                std::fs::write(&file, bytes).expect("writing a build");
            }
            artifacts.push(Artifact { target: (*target).to_string(), path: dir });
        }
        publish(container, &[&self.key], &PublishOptions::new(version, artifacts, time), &mut |_| {})
            .unwrap_or_else(|e| panic!("publishing {version}: {e}"));
    }

    /// Publishes `version` with one `app` file of `len` bytes (from `seed`) per target.
    fn release(&self, container: &Path, version: &str, seed: u64, len: usize, time: u64) {
        let targets: Vec<(&str, Build)> = [LINUX, MAC]
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, vec![("app".to_string(), noise(seed * 10 + i as u64, len))]))
            .collect();
        self.publish(container, version, &targets, time);
    }
}

/// A [`Server`] running on `127.0.0.1:0` until stopped.
struct Serving {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), MirrorError>>>,
}

impl Serving {
    async fn start(server: Server) -> Serving {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(listener, async {
            let _ = stopped.await;
        }));
        Serving { addr, stop: Some(stop), task: Some(task) }
    }

    /// An origin: `root` served whole, every file opened anew for each
    /// request (tests replace upstream files in place).
    async fn origin(root: &Path) -> Serving {
        let config = ServerConfig::default().with_open_file_ttl(Duration::ZERO);
        Serving::start(Server::new(root, config)).await
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("stopped once");
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("the server stops within 20 s")
            .expect("the server task did not panic")
            .expect("the server returned Ok");
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// An upstream that ignores `Range` and answers every request with 200 and
/// the whole file, as some plain servers do.
struct WholeFileServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl WholeFileServer {
    async fn start(file: PathBuf) -> WholeFileServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let file = file.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = std::fs::read(&file).unwrap_or_default();
                    let head =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&body).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        WholeFileServer { addr, task }
    }

    fn url(&self) -> String {
        format!("http://{}{PATH}", self.addr)
    }

    fn stop(self) {
        self.task.abort();
    }
}

/// A URL where nothing listens.
fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    drop(listener);
    format!("http://{addr}{PATH}")
}

/// The publisher's container served by an origin server.
struct Origin {
    publisher: Publisher,
    /// `www/app.dare`, served at `/app.dare`.
    file: PathBuf,
    server: Serving,
}

impl Origin {
    /// A container with release 1.0.0, served.
    async fn start() -> Origin {
        let publisher = Publisher::new();
        let file = publisher.create("www/app.dare");
        publisher.release(&file, "1.0.0", 1, 3000, T0 + 1);
        let server = Serving::origin(&publisher.path("www")).await;
        Origin { publisher, file, server }
    }

    fn url(&self) -> String {
        self.server.url(PATH)
    }

    fn bytes(&self) -> Vec<u8> {
        read(&self.file)
    }

    fn release(&self, version: &str, seed: u64, len: usize, time: u64) {
        self.publisher.release(&self.file, version, seed, len, time);
    }

    /// The URL of `www/app.static`: bytes served whole, as a static server
    /// serves a container (a `*.dare` file is served only up to its last
    /// complete seal).
    fn static_url(&self) -> String {
        self.server.url("/app.static")
    }

    /// Serves `bytes` at [`Origin::static_url`].
    fn serve_static(&self, bytes: &[u8]) {
        std::fs::write(self.publisher.path("www/app.static"), bytes).expect("writing the origin's static file");
    }

    /// Replaces what the origin serves.
    fn serve_bytes(&self, bytes: &[u8]) {
        std::fs::write(&self.file, bytes).expect("writing the origin's file");
    }

    async fn stop(self) {
        self.server.stop().await;
    }
}

/// The mirror's side: its directory, the lengths it serves and its logs.
struct Mirror {
    dir: tempfile::TempDir,
    local: PathBuf,
    lengths: ServedLengths,
    tlog: TlogOverlay,
}

impl Mirror {
    fn new() -> Mirror {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let local = dir.path().join("app.dare");
        Mirror { dir, local, lengths: ServedLengths::default(), tlog: TlogOverlay::new() }
    }

    fn config(&self, upstreams: Vec<String>, pins: Option<Vec<VerifierKey>>) -> SyncConfig {
        let upstreams = upstreams.iter().map(|url| transport_for(url, Timeouts::default()).expect("a URL")).collect();
        SyncConfig::new(upstreams, self.local.clone(), PATH).with_pins(pins)
    }

    fn open(&self, upstreams: Vec<String>, pins: Option<Vec<VerifierKey>>) -> Result<Syncer, SyncError> {
        Syncer::open(self.config(upstreams, pins), self.lengths.clone(), self.tlog.clone())
    }

    fn syncer(&self, upstream: &str) -> Syncer {
        self.open(vec![upstream.to_string()], None).expect("the syncer opens")
    }

    /// The mirror's own server over its directory.
    async fn serve(&self) -> Serving {
        let server = Server::new(self.dir.path(), ServerConfig::default())
            .lengths(self.lengths.clone())
            .overlay(Arc::new(self.tlog.clone()));
        Serving::start(server).await
    }

    fn served(&self) -> Option<u64> {
        self.lengths.get(PATH)
    }

    /// The local copy is exactly `want` and is served whole.
    #[track_caller]
    fn assert_copy(&self, want: &[u8]) {
        same_bytes(&read(&self.local), want, "the local copy");
        assert_eq!(self.served(), Some(want.len() as u64), "the served length");
    }

    /// Files in the mirror's directory, hidden ones included.
    fn listing(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .expect("the mirror directory")
            .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

#[track_caller]
fn assert_refused(result: Result<SyncReport, SyncError>) -> String {
    match result {
        Err(e @ (SyncError::Refused { .. } | SyncError::Untrusted { .. })) => e.to_string(),
        other => panic!("expected the sync to be refused, got {other:?}"),
    }
}

/// A raw HTTP/1.1 response.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> u64 {
        self.header("content-length").and_then(|v| v.parse().ok()).expect("a Content-Length")
    }

    /// `Content-Range: bytes FIRST-LAST/TOTAL` or `bytes */TOTAL`:
    /// `(Some((first, last)), total)`.
    fn content_range(&self) -> (Option<(u64, u64)>, u64) {
        let v = self.header("content-range").expect("a Content-Range");
        let rest = v.strip_prefix("bytes ").expect("a byte range");
        let (range, total) = rest.split_once('/').expect("a total");
        let total = total.parse().expect("a numeric total");
        if range == "*" {
            return (None, total);
        }
        let (a, b) = range.split_once('-').expect("first-last");
        (Some((a.parse().expect("first"), b.parse().expect("last"))), total)
    }
}

/// One GET on a new connection, with an optional `Range`.
async fn get(addr: SocketAddr, path: &str, range: Option<&str>) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let range = range.map(|r| format!("Range: {r}\r\n")).unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: mirror\r\n{range}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("a response");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("the end of the head");
    let head = String::from_utf8(raw[..split].to_vec()).expect("a UTF-8 head");
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("a status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply { status, headers, body: raw[split + 4..].to_vec() }
}

#[tokio::test]
async fn a_first_sync_pinned_to_the_right_key() {
    let origin = Origin::start().await;
    let mirror = Mirror::new();
    let mut syncer = mirror.open(vec![origin.url()], Some(vec![origin.publisher.key.verifier()])).unwrap();
    assert_eq!(mirror.served(), None);
    let report = syncer.sync_once().await.expect("the first sync");
    let want = origin.bytes();
    assert_eq!((report.before, report.after, report.size), (0, want.len() as u64, scan(&origin.file).size()));
    assert_eq!(syncer.verified_len(), want.len() as u64);
    mirror.assert_copy(&want);
    assert_eq!(mirror.listing(), ["app.dare"]);
    origin.stop().await;
}

#[tokio::test]
async fn a_first_sync_pinned_to_another_key_is_refused() {
    let origin = Origin::start().await;
    let mirror = Mirror::new();
    let mut syncer = mirror.open(vec![origin.url()], Some(vec![key(9).verifier()])).unwrap();
    let error = syncer.sync_once().await.expect_err("refused");
    assert!(matches!(error, SyncError::Untrusted { .. }) && error.is_permanent(), "{error:?}");
    // One line naming both sets of keys.
    let line = error.to_string();
    assert!(!line.contains('\n'), "{line}");
    let (theirs, ours) = (origin.publisher.key.verifier().key_id(), key(9).verifier().key_id());
    assert!(line.contains("none of the --trust keys"), "{line}");
    assert!(line.contains(&format!("{theirs:08x}")) && line.contains(&format!("{ours:08x}")), "{line}");
    assert!(!mirror.local.exists(), "no local copy");
    assert_eq!(mirror.served(), None);
    assert_eq!(syncer.verified_len(), 0);
    assert!(mirror.listing().is_empty(), "nothing left behind: {:?}", mirror.listing());
    origin.stop().await;
}

#[tokio::test]
async fn a_first_sync_without_pins_trusts_the_genesis() {
    let origin = Origin::start().await;
    let mirror = Mirror::new();
    let mut syncer = mirror.syncer(&origin.url());
    let report = syncer.sync_once().await.expect("the first sync");
    assert_eq!((report.before, report.after), (0, origin.bytes().len() as u64));
    mirror.assert_copy(&origin.bytes());
    origin.stop().await;
}

#[tokio::test]
async fn follows_releases_and_heartbeats_round_after_round() {
    let origin = Origin::start().await;
    let mirror = Mirror::new();
    let mut syncer = mirror.syncer(&origin.url());
    syncer.sync_once().await.expect("the first sync");
    mirror.assert_copy(&origin.bytes());

    let mut time = T0 + 10;
    for (round, versions) in [vec!["1.1.0"], vec!["1.2.0", "1.3.0"], vec!["2.0.0"]].into_iter().enumerate() {
        let before = origin.bytes().len() as u64;
        for v in &versions {
            time += 1;
            origin.release(v, time, 2000 + 500 * round, time);
        }
        let want = origin.bytes();
        let report = syncer.sync_once().await.unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!((report.before, report.after, report.size), (before, want.len() as u64, scan(&origin.file).size()));
        mirror.assert_copy(&want);
    }

    // A heartbeat: a new seal, no new leaves.
    let size = scan(&origin.file).size();
    let before = origin.bytes().len() as u64;
    heartbeat(&origin.file, &[&origin.publisher.key], time + 100).expect("a heartbeat");
    let want = origin.bytes();
    let report = syncer.sync_once().await.expect("the heartbeat's sync");
    assert_eq!((report.before, report.after, report.size), (before, want.len() as u64, size));
    mirror.assert_copy(&want);
    assert_eq!(scan(&mirror.local).last_seal.seal.time, time + 100);

    // Nothing new.
    let report = syncer.sync_once().await.expect("a sync with nothing new");
    assert_eq!((report.before, report.after, report.size), (want.len() as u64, want.len() as u64, size));
    mirror.assert_copy(&want);
    assert_eq!(mirror.listing(), ["app.dare"]);
    origin.stop().await;
}

/// The offset of one base64 character in the middle of the last signature
/// line of the last seal's checkpoint.
fn seal_signature_byte(bytes: &[u8], seal: &Scan) -> usize {
    let f = &seal.last_seal.frame;
    let header = &bytes[f.header_offset as usize..(f.header_offset + f.header_len) as usize];
    let dash = "\u{2014} ".as_bytes();
    let line = header.windows(dash.len()).rposition(|w| w == dash).expect("a signature line");
    // "— NAME BASE64": skip the name.
    let name = header[line + dash.len()..].iter().position(|&b| b == b' ').expect("a name") + line + dash.len();
    f.header_offset as usize + name + 1 + 40
}

#[tokio::test]
async fn a_tampered_release_is_refused_and_the_copy_stays() {
    let origin = Origin::start().await;
    let mirror = Mirror::new();
    let mut syncer = mirror.syncer(&origin.url());
    syncer.sync_once().await.expect("the first sync");
    let good = origin.bytes();

    origin.release("1.1.0", 2, 5000, T0 + 2);
    let full = origin.bytes();
    let s = scan(&origin.file);
    let entry = s.entries.last().expect("an entry");
    assert!(entry.frame.offset >= good.len() as u64, "the last entry is new");
    let payload = (entry.frame.payload_offset + entry.frame.payload_len / 2) as usize;
    let header = (entry.frame.header_offset + entry.frame.header_len / 2) as usize;
    let signature = seal_signature_byte(&full, &s);
    assert!(signature > good.len());

    for (what, at, flip, why) in [
        ("a payload byte", payload, 0x01u8, "payload SHA-256"),
        ("a header byte", header, 0x01, "header"),
        // Letters and digits stay base64 ('A' <-> 'B'): a signature that fails.
        ("a seal signature byte", signature, 0x03, "not signed by the keys the local copy trusts"),
    ] {
        let mut tampered = full.clone();
        tampered[at] ^= flip;
        origin.serve_bytes(&tampered);
        let reason = assert_refused(syncer.sync_once().await);
        assert!(reason.contains(why), "{what}: {reason}");
        mirror.assert_copy(&good);
        assert_eq!(syncer.verified_len(), good.len() as u64, "{what}");
        assert_eq!(mirror.listing(), ["app.dare"], "{what}: nothing left behind");
    }

    // The real release syncs.
    origin.serve_bytes(&full);
    syncer.sync_once().await.expect("the untampered release");
    mirror.assert_copy(&full);
    origin.stop().await;
}

/// The frames of format 2 a release adds besides entries: a delta, an
/// index (its compressed file listing), the map. A flipped byte in any of
/// them is refused, for its own reason, and the copy stays.
#[tokio::test]
async fn a_tampered_delta_index_or_map_is_refused() {
    let origin = Origin::start().await;
    let mirror = Mirror::new();
    let mut syncer = mirror.syncer(&origin.url());
    syncer.sync_once().await.expect("the first sync");
    let good = origin.bytes();

    // 1.1.0 changes 100 bytes of Linux's app: a delta against 1.0.0's.
    let mut app = noise(10, 3000);
    app[1000..1100].copy_from_slice(&noise(99, 100));
    origin.publisher.publish(&origin.file, "1.1.0", &[(LINUX, vec![("app".to_string(), app)])], T0 + 2);
    let full = origin.bytes();
    let s = scan(&origin.file);
    let delta = s.entries.iter().find(|e| matches!(e.stored, Stored::Delta(_))).expect("a delta").frame;
    assert!(delta.offset >= good.len() as u64, "the delta is new");
    let index = s.indexes.last().expect("an index").frame;
    assert!(index.offset >= good.len() as u64, "the index is new");
    let map = s.last_seal.seal.map;
    let map_payload = (map.offset + map.length - 40) as usize;

    for (what, at, why) in [
        ("a delta payload byte", (delta.payload_offset + delta.payload_len / 2) as usize, "payload"),
        ("an index payload byte", (index.payload_offset + index.payload_len / 2) as usize, "payload"),
        ("a map payload byte", map_payload, "map"),
    ] {
        let mut tampered = full.clone();
        tampered[at] ^= 0x01;
        origin.serve_bytes(&tampered);
        let reason = assert_refused(syncer.sync_once().await);
        assert!(reason.contains(why), "{what}: {reason}");
        mirror.assert_copy(&good);
        assert_eq!(syncer.verified_len(), good.len() as u64, "{what}");
        assert_eq!(mirror.listing(), ["app.dare"], "{what}: nothing left behind");
    }
    origin.serve_bytes(&full);
    syncer.sync_once().await.expect("the untampered release");
    mirror.assert_copy(&full);
    origin.stop().await;
}

/// An honest publisher's release that goes back to the content of an older
/// release (1.0.0 -> 1.1.0 -> 1.2.0 = 1.0.0's files) must sync: the
/// publisher, reading only the tail, does not know the older content is
/// stored and stores it again.
#[tokio::test]
async fn a_release_that_goes_back_to_older_content_syncs() {
    let origin = Origin::start().await;
    let mirror = Mirror::new();
    let mut syncer = mirror.syncer(&origin.url());
    syncer.sync_once().await.expect("the first sync");
    origin.release("1.1.0", 2, 3000, T0 + 2);
    syncer.sync_once().await.expect("the sync of 1.1.0");
    // Seed 1 again: 1.0.0's files.
    origin.release("1.2.0", 1, 3000, T0 + 3);
    let full = origin.bytes();
    let report = syncer.sync_once().await;
    assert!(report.is_ok(), "an honest release was refused: {report:?}");
    mirror.assert_copy(&full);
    origin.stop().await;
}

/// Two containers from one genesis: `a` and `b`, each with its own 1.0.0.
fn fork(publisher: &Publisher, b_len: usize) -> (PathBuf, PathBuf) {
    fork_with_seed(publisher, b_len, 2)
}

fn fork_with_seed(publisher: &Publisher, b_len: usize, seed: u64) -> (PathBuf, PathBuf) {
    let a = publisher.path("forks/a.dare");
    let _ = std::fs::remove_file(&a);
    let a = publisher.create("forks/a.dare");
    let b = publisher.path("forks/b.dare");
    std::fs::copy(&a, &b).expect("copying the genesis");
    publisher.release(&a, "1.0.0", 1, 3000, T0 + 1);
    publisher.release(&b, "1.0.0", seed, b_len, T0 + 1);
    (a, b)
}

/// A fork of the same length as `a`: the compressed file listings of two
/// releases (their digests are random hex) may differ in length by a byte or
/// two, so the first seed of `b` that gives the same length is taken.
fn fork_of_the_same_length(publisher: &Publisher) -> (PathBuf, PathBuf) {
    for seed in 2..200 {
        let (a, b) = fork_with_seed(publisher, 3000, seed);
        if read(&a).len() == read(&b).len() {
            return (a, b);
        }
    }
    panic!("no seed gives a fork of the same length");
}

#[tokio::test]
async fn a_fork_is_refused() {
    let origin = Origin::start().await;
    let (a, b) = fork(&origin.publisher, 5000);
    origin.serve_bytes(&read(&a));
    let mirror = Mirror::new();
    let mut syncer = mirror.syncer(&origin.url());
    syncer.sync_once().await.expect("syncing a");
    mirror.assert_copy(&read(&a));

    // b is longer than a: its bytes past a's length are no extension of a.
    assert!(read(&b).len() > read(&a).len());
    origin.serve_bytes(&read(&b));
    let reason = assert_refused(syncer.sync_once().await);
    assert!(reason.contains("fork"), "{reason}");
    mirror.assert_copy(&read(&a));

    // b grows further: still no extension of a.
    origin.publisher.release(&b, "1.1.0", 3, 4000, T0 + 2);
    origin.serve_bytes(&read(&b));
    assert_refused(syncer.sync_once().await);
    mirror.assert_copy(&read(&a));
    assert_eq!(mirror.listing(), ["app.dare"]);
    origin.stop().await;
}

#[tokio::test]
async fn a_fork_of_the_same_length_is_refused() {
    let origin = Origin::start().await;
    let (a, b) = fork_of_the_same_length(&origin.publisher);
    let (a_bytes, b_bytes) = (read(&a), read(&b));
    assert_eq!(a_bytes.len(), b_bytes.len(), "the fork has the same length");
    assert_eq!(scan(&a).size(), scan(&b).size(), "and the same tree size");
    assert_ne!(scan(&a).last_seal.checkpoint.root, scan(&b).last_seal.checkpoint.root, "but another root");
    origin.serve_bytes(&a_bytes);
    let mirror = Mirror::new();
    let mut syncer = mirror.syncer(&origin.url());
    syncer.sync_once().await.expect("syncing a");

    origin.serve_bytes(&b_bytes);
    let reason = assert_refused(syncer.sync_once().await);
    assert!(reason.contains("fork"), "{reason}");
    mirror.assert_copy(&a_bytes);
    origin.stop().await;
}

#[tokio::test]
async fn an_upstream_that_went_back_is_a_rollback() {
    let origin = Origin::start().await;
    let mirror = Mirror::new();
    // A static server: a cut seal is served as it is.
    let mut syncer = mirror.syncer(&origin.static_url());
    let old = origin.bytes();
    origin.release("1.1.0", 2, 3000, T0 + 2);
    origin.serve_static(&origin.bytes());
    syncer.sync_once().await.expect("the first sync");
    let new = origin.bytes();
    mirror.assert_copy(&new);

    for (what, bytes) in [("the previous release", old.clone()), ("a cut seal", new[..new.len() - 10].to_vec())] {
        origin.serve_static(&bytes);
        match syncer.sync_once().await {
            Err(SyncError::Rollback { upstream, local, .. }) => {
                assert_eq!((upstream, local), (bytes.len() as u64, new.len() as u64), "{what}");
            }
            other => panic!("{what}: expected a rollback, got {other:?}"),
        }
        mirror.assert_copy(&new);
    }
    origin.stop().await;
}

#[tokio::test]
async fn an_upstream_that_ignores_ranges_still_works() {
    let publisher = Publisher::new();
    let file = publisher.create("www/app.dare");
    publisher.release(&file, "1.0.0", 1, 3000, T0 + 1);
    let upstream = WholeFileServer::start(file.clone()).await;
    let mirror = Mirror::new();
    let mut syncer = mirror.syncer(&upstream.url());

    let report = syncer.sync_once().await.expect("the first sync");
    assert_eq!((report.before, report.after), (0, read(&file).len() as u64));
    mirror.assert_copy(&read(&file));

    let old = read(&file);
    publisher.release(&file, "1.1.0", 2, 3000, T0 + 2);
    let report = syncer.sync_once().await.expect("the next sync");
    assert_eq!((report.before, report.after), (old.len() as u64, read(&file).len() as u64));
    mirror.assert_copy(&read(&file));

    let now = read(&file);
    let report = syncer.sync_once().await.expect("nothing new");
    assert_eq!(report.before, report.after);
    mirror.assert_copy(&now);

    std::fs::write(&file, &old).unwrap();
    match syncer.sync_once().await {
        Err(SyncError::Rollback { upstream, local, .. }) => {
            assert_eq!((upstream, local), (old.len() as u64, now.len() as u64));
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
    mirror.assert_copy(&now);
    upstream.stop();
}

#[tokio::test]
async fn a_torn_upstream_is_a_publish_in_progress_and_retried() {
    let origin = Origin::start().await;
    let v1 = origin.bytes();
    origin.release("1.1.0", 2, 20_000, T0 + 2);
    let v2 = origin.bytes();
    let s = scan(&origin.file);
    let seal = s.last_seal.frame.offset as usize;
    let manifest_end = (s.manifest_frame.offset + s.manifest_frame.len()) as usize;
    let cuts = [v1.len() + 1, v1.len() + 7, v1.len() + 5000, manifest_end, seal, seal + 3, v2.len() - 1];

    // A static server (the file served whole) caught mid-publish: the first
    // sync is retried later; nothing fetched past the tail, nothing left
    // behind.
    origin.serve_static(&v2[..v1.len() + 5000]);
    let mirror = Mirror::new();
    let mut syncer = mirror.syncer(&origin.static_url());
    assert_unsealed(syncer.sync_once().await, "the first sync");
    assert!(mirror.listing().is_empty(), "{:?}", mirror.listing());
    origin.serve_static(&v1);
    syncer.sync_once().await.expect("the first sync");
    mirror.assert_copy(&v1);

    for cut in cuts {
        origin.serve_static(&v2[..cut]);
        assert_unsealed(syncer.sync_once().await, &format!("cut at {cut}"));
        mirror.assert_copy(&v1);
        assert_eq!(mirror.listing(), ["app.dare"], "cut at {cut}: nothing left behind");
    }

    // v2 plus the start of a third release: in progress too; then v2.
    origin.serve_static(&v2);
    origin.release("1.2.0", 3, 4000, T0 + 3);
    let v3 = origin.bytes();
    origin.serve_static(&v3[..v2.len() + 100]);
    assert_unsealed(syncer.sync_once().await, "v3 in progress");
    origin.serve_static(&v2);
    let report = syncer.sync_once().await.expect("a sync of v2");
    assert_eq!((report.before, report.after), (v1.len() as u64, v2.len() as u64));
    mirror.assert_copy(&v2);
    origin.stop().await;
}

/// A `dare serve` upstream caught mid-publish serves its last sealed
/// release: the mirror syncs exactly that, then the new one once sealed.
#[tokio::test]
async fn a_dare_serve_upstream_mid_publish_gives_its_last_release() {
    let origin = Origin::start().await;
    let v1 = origin.bytes();
    origin.release("1.1.0", 2, 20_000, T0 + 2);
    let v2 = origin.bytes();
    origin.serve_bytes(&v2[..v1.len() + 5000]);
    let mirror = Mirror::new();
    let mut syncer = mirror.syncer(&origin.url());
    let report = syncer.sync_once().await.expect("the sealed prefix syncs");
    assert_eq!(report.after, v1.len() as u64);
    mirror.assert_copy(&v1);
    origin.serve_bytes(&v2);
    syncer.sync_once().await.expect("the new release");
    mirror.assert_copy(&v2);
    origin.stop().await;
}

#[track_caller]
fn assert_unsealed(result: Result<SyncReport, SyncError>, what: &str) {
    match result {
        Err(e @ SyncError::Unsealed { .. }) => {
            assert!(!e.is_permanent(), "{what}: a publish in progress is retried");
            assert!(e.to_string().contains("a publish in progress"), "{what}: {e}");
        }
        other => panic!("{what}: expected an unsealed upstream, got {other:?}"),
    }
}

#[tokio::test]
async fn fails_over_from_a_dead_upstream() {
    let origin = Origin::start().await;
    let mirror = Mirror::new();
    let mut syncer = mirror.open(vec![dead_url(), origin.url()], None).unwrap();
    syncer.sync_once().await.expect("the second upstream answers");
    mirror.assert_copy(&origin.bytes());
    origin.release("1.1.0", 2, 3000, T0 + 2);
    syncer.sync_once().await.expect("the next round");
    mirror.assert_copy(&origin.bytes());

    // Every upstream dead: an upstream error, the copy as it was.
    let mut syncer = mirror.open(vec![dead_url(), dead_url()], None).unwrap();
    match syncer.sync_once().await {
        Err(SyncError::Transport(TransportError::Connect { .. })) => {}
        other => panic!("expected an upstream error, got {other:?}"),
    }
    mirror.assert_copy(&origin.bytes());
    origin.stop().await;
}

/// Checks one response of the mirror for `/app.dare` against the origin's
/// bytes (`full`) and the served lengths before and after it; returns the
/// representation length it was served at.
#[track_caller]
fn check_reply(reply: &Reply, asked: (u64, u64), full: &[u8], served: (u64, u64)) -> u64 {
    let body = &reply.body;
    assert_eq!(reply.content_length(), body.len() as u64, "Content-Length and the bytes received");
    let total = match reply.status {
        206 => {
            let (range, total) = reply.content_range();
            let (first, last) = range.expect("a range");
            assert!(last < total, "{first}-{last}/{total}");
            assert_eq!(last - first + 1, body.len() as u64);
            same_bytes(body, &full[first as usize..=last as usize], "a range");
            total
        }
        416 => {
            let total = reply.content_range().1;
            assert!(asked.0 >= total, "416 for {asked:?} of {total}");
            total
        }
        200 => {
            same_bytes(body, &full[..body.len()], "a whole response");
            body.len() as u64
        }
        s => panic!("status {s}"),
    };
    assert!(total == served.0 || total == served.1, "served {total} bytes, the length was {served:?}");
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_see_consistent_bytes_while_a_sync_appends() {
    let origin = Origin::start().await;
    let mirror = Mirror::new();
    let mut syncer = mirror.syncer(&origin.url());
    syncer.sync_once().await.expect("the first sync");
    let server = mirror.serve().await;
    let before = origin.bytes().len() as u64;
    // A large release: fetching and verifying it takes a while.
    origin.release("1.1.0", 2, 12 << 20, T0 + 2);
    let full = Arc::new(origin.bytes());
    let after = full.len() as u64;

    let done = Arc::new(AtomicBool::new(false));
    let replies = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for id in 0..8u64 {
        let (full, done, replies, lengths, addr) =
            (full.clone(), done.clone(), replies.clone(), mirror.lengths.clone(), server.addr);
        readers.push(tokio::spawn(async move {
            let mut rng = id * 7919 + 1;
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let mut seen = [0u64; 2];
            let mut extra = 0;
            while extra < 20 {
                if done.load(Ordering::Relaxed) {
                    extra += 1;
                }
                let len = 1 + next() % (256 << 10);
                let (range, asked) = match next() % 10 {
                    0 => (format!("bytes=-{len}"), (0, u64::MAX)),
                    1 => {
                        // Around the old end, where the new bytes start.
                        let first = before - 1000 + next() % 2000;
                        (format!("bytes={first}-{}", first + len - 1), (first, first + len - 1))
                    }
                    _ => {
                        let first = next() % after;
                        (format!("bytes={first}-{}", first + len - 1), (first, first + len - 1))
                    }
                };
                let served_before = lengths.get(PATH).expect("a served length");
                let reply = get(addr, PATH, Some(&range)).await;
                let served_after = lengths.get(PATH).expect("a served length");
                let total = check_reply(&reply, asked, &full, (served_before, served_after));
                seen[usize::from(total == after)] += 1;
                replies.fetch_add(1, Ordering::Relaxed);
            }
            seen
        }));
    }
    // Every reader is under way before the sync starts.
    while replies.load(Ordering::Relaxed) < 16 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let report = syncer.sync_once().await.expect("the sync of the large release");
    assert_eq!((report.before, report.after), (before, after));
    done.store(true, Ordering::Relaxed);
    let mut seen = [0u64; 2];
    for r in readers {
        let s = r.await.expect("a reader");
        seen[0] += s[0];
        seen[1] += s[1];
    }
    assert!(seen[0] > 0 && seen[1] >= 8 * 20, "responses at the old and the new length: {seen:?}");
    mirror.assert_copy(&full);
    server.stop().await;
    origin.stop().await;
}

/// The mirror's `/app.dare/checkpoint` and every tile the container holds.
async fn assert_tlog(server: &Serving, container: &Path) {
    let s = scan(container);
    let bytes = read(container);
    let reply = get(server.addr, &format!("{PATH}/checkpoint"), None).await;
    assert_eq!(reply.status, 200);
    // tlog-tiles: the checkpoint is cached a few seconds at most, full
    // tiles for long, partial ones (which may go away) briefly.
    assert_eq!(reply.header("cache-control"), Some("max-age=5"));
    assert_eq!(String::from_utf8(reply.body).unwrap(), s.last_seal.seal.checkpoint);
    assert!(!s.tiles.is_empty());
    for (&(level, index, width), &offset) in &s.tiles {
        let tile = TileId { level, index, width };
        let reply = get(server.addr, &format!("{PATH}/{}", tile.path()), None).await;
        assert_eq!(reply.status, 200, "{}", tile.path());
        let cache = reply.header("cache-control");
        if tile.is_full() {
            assert_eq!(cache, Some("max-age=31536000, immutable"), "{}", tile.path());
        } else {
            assert_eq!(cache, Some("max-age=60"), "{}", tile.path());
        }
        let want = &bytes[offset as usize..offset as usize + usize::from(width) * 32];
        same_bytes(&reply.body, want, &tile.path());
    }
    // Beyond the tree.
    let beyond = TileId { level: 0, index: s.size() / 256 + 1, width: 1 };
    assert_eq!(get(server.addr, &format!("{PATH}/{}", beyond.path()), None).await.status, 404);
}

#[tokio::test]
async fn the_tlog_overlay_follows_the_sync() {
    let origin = Origin::start().await;
    let mirror = Mirror::new();
    let server = mirror.serve().await;
    assert_eq!(get(server.addr, &format!("{PATH}/checkpoint"), None).await.status, 404);
    let mut syncer = mirror.syncer(&origin.url());
    syncer.sync_once().await.expect("the first sync");
    assert_tlog(&server, &origin.file).await;

    // Over 256 leaves: a full tile frame at level 0.
    let files: Build = (0..300).map(|i| (format!("f/{i:03}"), noise(i, 64))).collect();
    origin.publisher.publish(&origin.file, "1.1.0", &[(LINUX, files)], T0 + 2);
    syncer.sync_once().await.expect("the sync of 300 files");
    mirror.assert_copy(&origin.bytes());
    let s = scan(&origin.file);
    assert!(s.tiles.keys().any(|&(level, _, width)| level == 0 && width == 256), "a full tile: {:?}", s.tiles);
    assert_tlog(&server, &origin.file).await;

    origin.release("1.2.0", 3, 1000, T0 + 3);
    syncer.sync_once().await.expect("the next sync");
    assert_tlog(&server, &origin.file).await;
    server.stop().await;
    origin.stop().await;
}

#[tokio::test]
async fn a_restart_cuts_a_torn_local_tail_and_resumes() {
    let origin = Origin::start().await;
    let mirror = Mirror::new();
    let v1 = origin.bytes();
    {
        let mut syncer = mirror.syncer(&origin.url());
        syncer.sync_once().await.expect("the first sync");
    }
    origin.release("1.1.0", 2, 8000, T0 + 2);
    let v2 = origin.bytes();

    // Garbage, then the start of the next release (a crash mid-append).
    for (what, tail) in
        [("garbage", b"\xF4\x10not a frame at all".to_vec()), ("a torn append", v2[v1.len()..v1.len() + 6000].to_vec())]
    {
        let mut torn = v1.clone();
        torn.extend_from_slice(&tail);
        std::fs::write(&mirror.local, &torn).unwrap();
        let syncer = mirror.syncer(&origin.url());
        assert_eq!(syncer.verified_len(), v1.len() as u64, "{what}");
        mirror.assert_copy(&v1);
    }

    let mut syncer = mirror.syncer(&origin.url());
    let report = syncer.sync_once().await.expect("the sync after the restart");
    assert_eq!((report.before, report.after), (v1.len() as u64, v2.len() as u64));
    mirror.assert_copy(&v2);

    // A restart of a clean copy changes nothing.
    let syncer = mirror.syncer(&origin.url());
    assert_eq!(syncer.verified_len(), v2.len() as u64);
    mirror.assert_copy(&v2);
    origin.stop().await;
}

/// Bytes past the verified length (a failed append, say) are never served
/// and never end up inside the copy: the next sync writes over them.
#[tokio::test]
async fn bytes_past_the_verified_length_are_written_over() {
    let origin = Origin::start().await;
    let mirror = Mirror::new();
    let mut syncer = mirror.syncer(&origin.url());
    syncer.sync_once().await.expect("the first sync");
    let v1 = origin.bytes();
    origin.release("1.1.0", 2, 8000, T0 + 2);
    let v2 = origin.bytes();

    for leftover in [b"junk left by a failed append".to_vec(), v2[v1.len()..v1.len() + 3000].to_vec()] {
        let mut f = std::fs::OpenOptions::new().append(true).open(&mirror.local).unwrap();
        std::io::Write::write_all(&mut f, &leftover).unwrap();
        drop(f);
        assert_eq!(mirror.served(), Some(v1.len() as u64), "the leftover is not served");
    }
    let report = syncer.sync_once().await.expect("the next sync");
    assert_eq!((report.before, report.after), (v1.len() as u64, v2.len() as u64));
    mirror.assert_copy(&v2);
    // And the copy still opens.
    assert_eq!(mirror.syncer(&origin.url()).verified_len(), v2.len() as u64);
    origin.stop().await;
}

// ---------------------------------------------------------------------------
// Hostile upstreams: every sync read is bounded by what the signed seal
// needs, every transfer in time, and a shutdown stops a sync at once.

/// How a [`HostileUpstream`] answers every request.
#[derive(Clone)]
enum Hostile {
    /// `206` with a `Content-Range` for what was asked, of a container of
    /// 2^62 bytes, then zeros forever (no `Content-Length`).
    Endless206,
    /// The true bytes of `file` for what was asked, then zeros forever.
    TruthThenEndless(PathBuf),
    /// Reads the request and never answers.
    Stall,
}

/// A raw HTTP/1.1 upstream that lies, on `127.0.0.1:0`.
struct HostileUpstream {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

const HUGE: u64 = 1 << 62;

impl HostileUpstream {
    async fn start(mode: Hostile) -> HostileUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                tokio::spawn(answer_hostile(stream, mode.clone()));
            }
        });
        HostileUpstream { addr, task }
    }

    fn url(&self) -> String {
        format!("http://{}{PATH}", self.addr)
    }
}

impl Drop for HostileUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `bytes=A-B` or `bytes=-N` of a container of `total` bytes: `(first, last)`.
fn asked_range(head: &str, total: u64) -> (u64, u64) {
    let spec = head
        .lines()
        .find_map(|l| l.strip_prefix("Range: ").or_else(|| l.strip_prefix("range: ")))
        .and_then(|v| v.trim().strip_prefix("bytes="))
        .unwrap_or("0-");
    let (a, b) = spec.split_once('-').expect("a range spec");
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Err(_), Ok(n)) => (total - n.min(total), total - 1),
        (Ok(a), Ok(b)) => (a, b.min(total - 1)),
        (Ok(a), Err(_)) => (a, total - 1),
        _ => (0, total - 1),
    }
}

async fn answer_hostile(mut stream: TcpStream, mode: Hostile) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let (truth, total) = match &mode {
        Hostile::Stall => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
        Hostile::Endless206 => (Vec::new(), HUGE),
        Hostile::TruthThenEndless(file) => {
            let bytes = read(file);
            let len = bytes.len() as u64;
            (bytes, len)
        }
    };
    let (first, last) = asked_range(&head, total);
    let reply = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {first}-{last}/{total}\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(reply.as_bytes()).await.is_err() {
        return;
    }
    if !truth.is_empty() {
        let part = &truth[first as usize..=last as usize];
        if stream.write_all(part).await.is_err() {
            return;
        }
    }
    let zeros = vec![0u8; 64 * 1024];
    while stream.write_all(&zeros).await.is_ok() {}
}

/// The bytes in `dir`, hidden files included.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
    })
}

/// Runs `f`, sampling the bytes in `dir` every few milliseconds; returns its
/// output and the most bytes seen. A watchdog turns a hang into a failure.
async fn watching_disk<T>(dir: &Path, what: &str, f: impl std::future::Future<Output = T>) -> (T, u64) {
    let peak = Arc::new(AtomicU64::new(0));
    let (p, d) = (peak.clone(), dir.to_path_buf());
    let sampler = tokio::spawn(async move {
        loop {
            p.fetch_max(dir_bytes(&d), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let out = tokio::time::timeout(Duration::from_secs(60), f).await.unwrap_or_else(|_| panic!("{what}: hung"));
    sampler.abort();
    peak.fetch_max(dir_bytes(dir), Ordering::Relaxed);
    (out, peak.load(Ordering::Relaxed))
}

/// An upstream that answers every request with an endless 206 costs a
/// bounded read of its tail (no seal there: retried), never disk; the next
/// upstream then syncs.
#[tokio::test]
async fn an_endless_206_upstream_costs_no_disk_and_the_next_upstream_syncs() {
    let origin = Origin::start().await;
    let hostile = HostileUpstream::start(Hostile::Endless206).await;
    let mirror = Mirror::new();

    let transport = transport_for(&hostile.url(), Timeouts::default()).expect("a URL");
    let cfg = mirror.config(Vec::new(), None).with_upstreams(vec![transport.clone()]);
    let mut alone = Syncer::open(cfg, mirror.lengths.clone(), mirror.tlog.clone()).unwrap();
    let (result, peak) = watching_disk(mirror.dir.path(), "the endless upstream alone", alone.sync_once()).await;
    let error = result.expect_err("nothing to sync from zeros");
    assert!(!error.is_permanent(), "retried later: {error}");
    assert_eq!(peak, 0, "nothing written to disk");
    let received = transport.stats().bytes;
    assert!(received <= 64 * 1024, "read {received} bytes: only a bounded tail");

    let mut syncer = mirror.open(vec![hostile.url(), origin.url()], None).unwrap();
    let (result, peak) = watching_disk(mirror.dir.path(), "failing over", syncer.sync_once()).await;
    result.expect("the honest upstream syncs");
    mirror.assert_copy(&origin.bytes());
    assert!(peak <= 2 * origin.bytes().len() as u64, "disk use {peak} bounded by the release");
    assert_eq!(mirror.listing(), ["app.dare"]);
    origin.stop().await;
}

/// An upstream that sends the true bytes of every range and then zeros
/// forever: the transport reads no further than the end of the signed seal
/// (and refuses the extra bytes), so the disk holds no more than the
/// container; the next upstream then syncs.
#[tokio::test]
async fn an_upstream_sending_past_the_range_is_read_only_to_the_signed_seal() {
    let origin = Origin::start().await;
    let hostile = HostileUpstream::start(Hostile::TruthThenEndless(origin.file.clone())).await;
    let mirror = Mirror::new();
    origin.release("1.1.0", 2, 50_000, T0 + 2);
    let len = origin.bytes().len() as u64;
    let transport = transport_for(&hostile.url(), Timeouts::default()).expect("a URL");
    let cfg = mirror.config(Vec::new(), None).with_upstreams(vec![transport.clone()]);
    let mut alone = Syncer::open(cfg, mirror.lengths.clone(), mirror.tlog.clone()).unwrap();
    let (result, peak) = watching_disk(mirror.dir.path(), "the first sync", alone.sync_once()).await;
    let error = result.expect_err("bytes past the range are a protocol error");
    assert!(!error.is_permanent(), "{error}");
    assert!(peak <= len, "disk use {peak} is at most the container's {len}");
    let received = transport.stats().bytes;
    assert!(received <= len + 128 * 1024, "read {received} bytes for a container of {len}");
    assert!(mirror.listing().is_empty(), "{:?}", mirror.listing());

    let mut syncer = mirror.open(vec![hostile.url(), origin.url()], None).unwrap();
    let (result, _) = watching_disk(mirror.dir.path(), "failing over", syncer.sync_once()).await;
    result.expect("the honest upstream syncs");
    mirror.assert_copy(&origin.bytes());
    origin.stop().await;
}

/// A stalled upstream costs the transport's idle timeout, then the next one
/// syncs.
#[tokio::test]
async fn a_stalled_upstream_costs_bounded_time_then_the_next_syncs() {
    let origin = Origin::start().await;
    let hostile = HostileUpstream::start(Hostile::Stall).await;
    let mirror = Mirror::new();
    let quick = Timeouts::default().with_idle(Duration::from_secs(1));
    let upstreams = [hostile.url(), origin.url()].iter().map(|u| transport_for(u, quick).expect("a URL")).collect();
    let cfg = mirror.config(Vec::new(), None).with_upstreams(upstreams);
    let mut syncer = Syncer::open(cfg, mirror.lengths.clone(), mirror.tlog.clone()).unwrap();
    let (result, _) = watching_disk(mirror.dir.path(), "failing over from a stall", syncer.sync_once()).await;
    result.expect("the honest upstream syncs");
    mirror.assert_copy(&origin.bytes());
    origin.stop().await;
}

/// A shutdown in the middle of a sync from an endless upstream stops the
/// syncer at once: no local copy is touched and no staging file stays.
#[tokio::test]
async fn a_shutdown_stops_a_sync_in_progress() {
    let origin = Origin::start().await;
    let mirror = Mirror::new();
    let mut syncer = mirror.syncer(&origin.url());
    syncer.sync_once().await.expect("the first sync");
    let good = origin.bytes();
    // A new release of 8 MiB, sent by an upstream that drips it.
    origin.release("1.1.0", 2, 8 << 20, T0 + 2);
    let slow = SlowUpstream::start(origin.file.clone()).await;
    let cfg = mirror.config(vec![slow.url()], None);
    let syncer = Syncer::open(cfg, mirror.lengths.clone(), mirror.tlog.clone()).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(syncer.run(Duration::from_secs(60), async {
        let _ = stopped.await;
    }));
    // Wait until the sync is streaming into its staging file.
    let staging = mirror.dir.path().join(".app.dare.sync");
    tokio::time::timeout(Duration::from_secs(30), async {
        while std::fs::metadata(&staging).map_or(0, |m| m.len()) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the sync starts staging");
    let _ = stop.send(());
    let ended = tokio::time::timeout(Duration::from_secs(5), run).await.expect("the syncer stops within 5 s");
    ended.expect("no panic").expect("a clean stop");
    mirror.assert_copy(&good);
    assert_eq!(mirror.listing(), ["app.dare"], "no staging file left");
    origin.stop().await;
}

/// Every mode of the shared hostile test mirror (`dare-testkit`: a lying
/// length, endless 200 and 206, a byte every 29 s, stalls before and after
/// the headers, half a body with the connection kept open, a redirect out of
/// HTTP), first upstream before an honest one, with the default timeouts:
/// each costs bounded time and bytes and no disk, then the honest upstream
/// syncs. The modes run side by side (each against its own mirror); the
/// watchdog only turns a hang into a failure.
#[tokio::test]
async fn every_hostile_mode_of_the_test_mirror_costs_bounded_time_then_the_next_upstream_syncs() {
    use dare_testkit::{HostileMirror, Mode};
    let origin = Origin::start().await;
    origin.release("1.1.0", 2, 50_000, T0 + 2);
    let want = origin.bytes();
    let runs = Mode::hostile().into_iter().map(|mode| {
        let (file, good, want) = (origin.file.clone(), origin.url(), want.clone());
        tokio::spawn(async move {
            let hostile = HostileMirror::start(&file, mode.clone());
            let mirror = Mirror::new();
            let bad = transport_for(&hostile.url(), Timeouts::default()).expect("a URL");
            let honest = transport_for(&good, Timeouts::default()).expect("a URL");
            let cfg = mirror.config(Vec::new(), None).with_upstreams(vec![bad.clone(), honest]);
            let mut syncer = Syncer::open(cfg, mirror.lengths.clone(), mirror.tlog.clone()).unwrap();
            let started = std::time::Instant::now();
            let peak = Arc::new(AtomicU64::new(0));
            let (p, d) = (peak.clone(), mirror.dir.path().to_path_buf());
            let sampler = tokio::spawn(async move {
                loop {
                    p.fetch_max(dir_bytes(&d), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
            let result = tokio::time::timeout(Duration::from_secs(180), syncer.sync_once()).await;
            sampler.abort();
            let took = started.elapsed();
            let name = mode.name();
            result.unwrap_or_else(|_| panic!("{name}: hung")).unwrap_or_else(|e| panic!("{name}: {e}"));
            mirror.assert_copy(&want);
            let (peak, read) = (peak.load(Ordering::Relaxed), bad.stats().bytes);
            eprintln!(
                "{name}: synced from the honest upstream after {took:.1?}; read {read} bytes from the hostile one"
            );
            // The disk never holds more than the release's bytes (staged, then the copy).
            assert!(peak <= 2 * want.len() as u64, "{name}: disk use {peak}");
            // From the hostile upstream: the bounded tail read and the signed seal's bytes, at most.
            assert!(read <= want.len() as u64 + 128 * 1024, "{name}: read {read} bytes");
            assert_eq!(mirror.listing(), ["app.dare"], "{name}");
        })
    });
    let runs: Vec<_> = runs.collect();
    for run in runs {
        run.await.expect("the mode's run");
    }
    origin.stop().await;
}

/// Sends the true bytes of what was asked, 4 KiB every 10 ms.
struct SlowUpstream {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SlowUpstream {
    async fn start(file: PathBuf) -> SlowUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let file = file.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let bytes = read(&file);
                    let (first, last) = asked_range(&String::from_utf8_lossy(&head), bytes.len() as u64);
                    let reply = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {first}-{last}/{}\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n",
                        bytes.len(),
                        last - first + 1
                    );
                    if stream.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                    for chunk in bytes[first as usize..=last as usize].chunks(4096) {
                        if stream.write_all(chunk).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                });
            }
        });
        SlowUpstream { addr, task }
    }

    fn url(&self) -> String {
        format!("http://{}{PATH}", self.addr)
    }
}

impl Drop for SlowUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------
// HTTPS upstreams, with a private CA made by the openssl command.

fn openssl(dir: &Path, args: &[&str]) -> bool {
    std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A CA and a server certificate for 127.0.0.1, or `None` without the
/// openssl command (a failure under `CI=true`).
fn make_ca(dir: &Path) -> Option<()> {
    if !openssl(dir, &["version"]) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the openssl command is missing (apt-get install openssl); CI=true does not skip"
        );
        eprintln!("skipped: the openssl command is not available");
        return None;
    }
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let steps: [&[&str]; 3] = [
        &[
            &["req", "-x509"],
            &ec[..],
            &["-subj", "/CN=dare test CA", "-days", "2", "-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
        &[&["req"], &ec[..], &["-subj", "/CN=127.0.0.1", "-keyout", "leaf.key", "-out", "leaf.csr"]].concat(),
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ],
    ];
    assert!(steps.iter().all(|args| openssl(dir, args)), "openssl could not make a test CA");
    Some(())
}

/// A TLS front for `origin` (HTTPS on `127.0.0.1:0`, proxied to its plain
/// HTTP address), with the certificate from [`make_ca`].
async fn tls_front(dir: &Path, origin: SocketAddr) -> (SocketAddr, JoinHandle<()>) {
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = rustls::pki_types::CertificateDer::pem_file_iter(dir.join("leaf.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.join("leaf.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut plain) = TcpStream::connect(origin).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (addr, task)
}

fn client_tls(dir: &Path) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap()).unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A sync from an `https://` upstream with a private CA, through the
/// updater's transport: the first sync, the next release, and a wrong
/// `--trust` refused for good in one line naming the keys.
#[tokio::test]
async fn syncs_from_an_https_upstream() {
    let ca = tempfile::tempdir().unwrap();
    if make_ca(ca.path()).is_none() {
        return;
    }
    let origin = Origin::start().await;
    let (front, task) = tls_front(ca.path(), origin.server.addr).await;
    let url = format!("https://{front}{PATH}");
    let https = || -> Arc<dyn dare_updater::transport::Transport> {
        Arc::new(HttpTransport::with_tls_config(&url, Timeouts::default(), client_tls(ca.path())).expect("a URL"))
    };
    let mirror = Mirror::new();
    let pins = Some(vec![origin.publisher.key.verifier()]);
    let cfg = mirror.config(Vec::new(), pins).with_upstreams(vec![https()]);
    let mut syncer = Syncer::open(cfg, mirror.lengths.clone(), mirror.tlog.clone()).unwrap();
    syncer.sync_once().await.expect("the first sync over https");
    mirror.assert_copy(&origin.bytes());
    origin.release("1.1.0", 2, 30_000, T0 + 2);
    syncer.sync_once().await.expect("the next sync over https");
    mirror.assert_copy(&origin.bytes());

    let other = Mirror::new();
    let cfg = other.config(Vec::new(), Some(vec![key(9).verifier()])).with_upstreams(vec![https()]);
    let mut wrong = Syncer::open(cfg, other.lengths.clone(), other.tlog.clone()).unwrap();
    let error = wrong.sync_once().await.expect_err("another key");
    assert!(error.is_permanent(), "{error}");
    assert!(error.to_string().contains("none of the --trust keys"), "{error}");
    assert!(other.listing().is_empty());

    // The system roots do not know this CA: a connection error, retried.
    let system = transport_for(&url, Timeouts::default()).expect("a URL");
    let cfg = other.config(Vec::new(), None).with_upstreams(vec![system]);
    let mut untrusted_ca = Syncer::open(cfg, other.lengths.clone(), other.tlog.clone()).unwrap();
    let error = untrusted_ca.sync_once().await.expect_err("an unknown CA");
    assert!(!error.is_permanent(), "{error}");
    task.abort();
    origin.stop().await;
}

/// An upstream that is not there, or is not a dare container, will not work
/// without a change of configuration: a permanent error naming it, and
/// `run` gives up on a first sync instead of retrying for ever.
#[tokio::test]
async fn a_missing_upstream_or_not_a_container_is_permanent() {
    let origin = Origin::start().await;
    std::fs::write(origin.publisher.path("www/notes.dare"), b"hello, not a container\n".repeat(100)).unwrap();
    for (path, want) in [("/missing.dare", "not found"), ("/notes.dare", "not a dare container")] {
        let mirror = Mirror::new();
        let url = origin.server.url(path);
        let mut syncer = mirror.syncer(&url);
        let error = syncer.sync_once().await.expect_err(path);
        assert!(error.is_permanent(), "{path}: {error}");
        let line = error.to_string();
        assert!(line.contains(&url) && line.contains(want), "{path}: {line}");
        let run = mirror.syncer(&url).run(Duration::from_secs(1), std::future::pending());
        let ended = tokio::time::timeout(Duration::from_secs(20), run).await.expect("run gives up");
        assert!(ended.is_err_and(|e| e.is_permanent()), "{path}");
        assert!(mirror.listing().is_empty(), "{path}: {:?}", mirror.listing());
    }
    origin.stop().await;
}
