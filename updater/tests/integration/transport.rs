//! The network layer against honest and hostile servers on loopback, local files and the in-memory fake.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::range_server::{Collect, Mode, Server, content, dead_port, expected, span};
use dare_updater::fetch::{FetchError, Mirrors, RetryPolicy};
use dare_updater::transport::{
    ByteRange, FileTransport, HttpTransport, MemoryTransport, RangeSink, Timeouts, TransferStats, Transport,
    TransportError, transport_for,
};
use proptest::prelude::*;

fn quick() -> Timeouts {
    Timeouts::default().with_connect(Duration::from_secs(2)).with_idle(Duration::from_secs(5))
}

fn fast_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy::default()
        .with_attempts(attempts)
        .with_backoff(Duration::from_millis(5))
        .with_max_backoff(Duration::from_millis(20))
}

async fn fetch(t: &dyn Transport, ranges: &[ByteRange]) -> Result<Collect, TransportError> {
    let mut sink = Collect::default();
    t.fetch(ranges, &mut sink).await.map(|()| sink)
}

/// Single, suffix, oversized suffix, multi-range (out of order, overlapping, with a suffix).
fn cases(len: u64) -> Vec<Vec<ByteRange>> {
    vec![
        vec![span(10, 1000)],
        vec![span(0, len)],
        vec![ByteRange::Suffix(777)],
        vec![ByteRange::Suffix(len * 3)],
        vec![span(5000, 9000), span(0, 100), ByteRange::Suffix(10), span(50, 150), span(len - 1, len)],
        vec![span(1, 2), span(3, 4), span(100, 200_000)],
    ]
}

async fn check_cases(t: &dyn Transport, data: &[u8]) {
    for ranges in cases(data.len() as u64) {
        let got = fetch(t, &ranges).await.unwrap_or_else(|e| panic!("{}: {ranges:?}: {e}", t.name()));
        assert_eq!(got.got, expected(data, &ranges), "{}: {ranges:?}", t.name());
    }
}

#[tokio::test]
async fn http_single_suffix_and_multi_ranges() {
    let data = content(300_000);
    let server = Server::start(data.clone()).await;
    let t = HttpTransport::new(&server.url(), quick()).unwrap();
    check_cases(&t, &data).await;
    let log = server.log();
    assert_eq!(
        server.ranges_seen()[..5],
        [
            Some("bytes=10-999".to_owned()),
            Some("bytes=0-299999".to_owned()),
            Some("bytes=-777".to_owned()),
            Some("bytes=-900000".to_owned()),
            Some("bytes=5000-8999,0-99,-10,50-149,299999-299999".to_owned()),
        ]
    );
    assert!(log.iter().all(|l| l.status == 206), "{log:?}");
    // One request per fetch; every body byte counted, multipart framing included.
    assert_eq!(t.stats(), TransferStats::new(6, log.iter().map(|l| l.body_len as u64).sum()));
    assert_eq!(log[0].body_len, 990);
    // Complete responses leave the connection to the next request (keep-alive).
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn file_transport_paths_and_file_urls() {
    let data = content(300_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("my container.dare");
    std::fs::write(&path, &data).unwrap();
    let t = FileTransport::new(path.clone());
    check_cases(&t, &data).await;
    assert_eq!(t.stats().requests, 6);
    // file:///abs/path, or on Windows file:///C:/dir/file
    let abs = path.display().to_string().replace(' ', "%20");
    let url = if cfg!(windows) { format!("file:///{}", abs.replace('\\', "/")) } else { format!("file://{abs}") };
    let t = transport_for(&url, quick()).unwrap();
    assert_eq!(t.name(), path.display().to_string());
    check_cases(t.as_ref(), &data).await;
    let t = transport_for(path.to_str().unwrap(), quick()).unwrap();
    check_cases(t.as_ref(), &data).await;

    // The length is taken at request time: the file may grow.
    let mut grown = data.clone();
    grown.extend_from_slice(b"more");
    std::fs::write(&path, &grown).unwrap();
    assert_eq!(fetch(t.as_ref(), &[ByteRange::Suffix(4)]).await.unwrap().got[0].bytes, b"more");

    let past = fetch(t.as_ref(), &[span(0, 10), span(1, grown.len() as u64 + 1)]).await.unwrap_err();
    assert!(matches!(past, TransportError::RangeNotSatisfiable { len: Some(n), .. } if n == grown.len() as u64));
    let missing = FileTransport::new(dir.path().join("nope"));
    assert!(matches!(fetch(&missing, &[span(0, 1)]).await, Err(TransportError::NotFound { .. })));
}

#[tokio::test]
async fn memory_transport_in_every_server_mode() {
    let data = content(300_000);
    type Knob = fn(MemoryTransport) -> MemoryTransport;
    let modes: [(&str, Knob); 4] = [
        ("honour", |t| t),
        ("ignore", MemoryTransport::ignore_ranges),
        ("coalesce", MemoryTransport::coalesce),
        ("reorder", MemoryTransport::reorder),
    ];
    for (name, mode) in modes {
        let t = mode(MemoryTransport::new(name, data.clone()));
        check_cases(&t, &data).await;
    }
}

#[tokio::test]
async fn server_ignoring_ranges_is_read_only_up_to_the_last_range() {
    let data = content(4 << 20);
    let server = Server::start(data.clone()).await;
    server.set(|k| {
        k.mode = Mode::Ignore;
        k.write_chunk = 8192;
        k.write_delay = Duration::from_millis(1);
    });
    let t = HttpTransport::new(&server.url(), quick()).unwrap();
    let ranges = [span(10_000, 20_000), span(500, 600)];
    let got = fetch(&t, &ranges).await.unwrap();
    assert_eq!(got.got, expected(&data, &ranges));
    let stats = t.stats();
    assert_eq!(stats.requests, 1);
    assert!(stats.bytes >= 20_000 && stats.bytes < 20_000 + 256 * 1024, "read {} bytes", stats.bytes);
    assert_eq!(server.log()[0].status, 200);

    // A suffix needs the whole body; still one request.
    server.set(|k| k.write_chunk = 0);
    let ranges = [ByteRange::Suffix(100), span(0, 10)];
    assert_eq!(fetch(&t, &ranges).await.unwrap().got, expected(&data, &ranges));
    assert_eq!(t.stats().requests, 2);
}

#[tokio::test]
async fn coalescing_and_reordering_servers() {
    let data = content(8 << 20);
    let server = Server::start(data.clone()).await;
    let t = HttpTransport::new(&server.url(), quick()).unwrap();

    server.set(|k| k.mode = Mode::Reorder);
    let ranges = [span(100, 200), span(1000, 5000), ByteRange::Suffix(64)];
    assert_eq!(fetch(&t, &ranges).await.unwrap().got, expected(&data, &ranges));
    assert_eq!(t.stats().requests, 1);

    server.set(|k| k.mode = Mode::Coalesce);
    let ranges = [span(5000, 6000), span(100, 200), span(300, 400)];
    assert_eq!(fetch(&t, &ranges).await.unwrap().got, expected(&data, &ranges));
    assert_eq!(t.stats().requests, 2);
    assert_eq!(server.log()[1].range.as_deref(), Some("bytes=5000-5999,100-199,300-399"));

    // Ranges far apart coalesced into one huge part: take the first, give up on the part after a
    // bounded skip, ask for the rest range by range.
    let ranges = [span(0, 10), span(6 << 20, (6 << 20) + 10), span(20, 30)];
    let before = t.stats();
    assert_eq!(fetch(&t, &ranges).await.unwrap().got, expected(&data, &ranges));
    let after = t.stats();
    assert_eq!(after.requests - before.requests, 3);
    assert!(after.bytes - before.bytes < 3 << 20, "read {} bytes", after.bytes - before.bytes);
    let seen = server.ranges_seen();
    let far = format!("bytes={}-{}", 6 << 20, (6 << 20) + 9);
    assert_eq!(
        seen[2..],
        [Some(format!("bytes=0-9,{}-{},20-29", 6 << 20, (6 << 20) + 9)), Some(far), Some("bytes=20-29".into())]
    );

    // Only the last range, which cannot go out before the first: ask range by range.
    server.set(|k| k.mode = Mode::LastOnly);
    let ranges = [span(100, 200), span(0, 50), span(300, 310)];
    assert_eq!(fetch(&t, &ranges).await.unwrap().got, expected(&data, &ranges));
    let seen: Vec<String> = server.ranges_seen()[5..].iter().flatten().cloned().collect();
    assert_eq!(seen, ["bytes=100-199,0-49,300-309", "bytes=100-199", "bytes=0-49", "bytes=300-309"]);
}

#[tokio::test]
async fn dropped_connection_resumes_from_the_last_byte() {
    let data = content(200_000);
    let server = Server::start(data.clone()).await;
    server.set(|k| k.drop_after = Some((50_000, 1)));
    let mirrors = Mirrors::new(vec![Arc::new(HttpTransport::new(&server.url(), quick()).unwrap())], fast_retries(3));
    let ranges = [span(1000, 101_000), ByteRange::Suffix(3000)];
    let mut sink = Collect::default();
    mirrors.fetch(&ranges, &mut sink).await.unwrap();
    // One begin per range and one continuous stream of the right bytes.
    assert_eq!(sink.got, expected(&data, &ranges));
    let seen = server.ranges_seen();
    assert_eq!(seen[0].as_deref(), Some("bytes=1000-100999,-3000"));
    let resumed = seen[1].clone().unwrap();
    let rest = resumed.strip_prefix("bytes=").unwrap();
    let (first, second) = rest.split_once(',').unwrap();
    let start: u64 = first.split_once('-').unwrap().0.parse().unwrap();
    assert!(start > 1000 + 40_000 && start < 1000 + 50_000, "{resumed}");
    assert_eq!(first, format!("{start}-100999"));
    assert_eq!(second, "-3000");
    assert_eq!(seen.len(), 2);

    // A suffix cut off mid-way is asked for again as a span.
    let ranges = [ByteRange::Suffix(30_000), span(0, 10)];
    server.set(|k| k.drop_after = Some((10_000, 2)));
    let mut sink = Collect::default();
    mirrors.fetch(&ranges, &mut sink).await.unwrap();
    assert_eq!(sink.got, expected(&data, &ranges));
    let seen = server.ranges_seen();
    assert_eq!(seen[2].as_deref(), Some("bytes=-30000,0-9"));
    let mut last = 170_000;
    for resumed in &seen[3..] {
        let resumed = resumed.as_deref().unwrap();
        let start: u64 = resumed["bytes=".len()..].split_once('-').unwrap().0.parse().unwrap();
        assert!(start > last && resumed.ends_with("-199999,0-9"), "{resumed}");
        last = start;
    }
    assert_eq!(seen.len(), 5);
}

#[tokio::test]
async fn failover_from_a_dead_mirror_and_back_to_the_good_one() {
    let data = content(10_000);
    let server = Server::start(data.clone()).await;
    let dead: Arc<dyn Transport> =
        Arc::new(HttpTransport::new(&format!("http://127.0.0.1:{}/c.dare", dead_port()), quick()).unwrap());
    let live: Arc<dyn Transport> = Arc::new(HttpTransport::new(&server.url(), quick()).unwrap());
    let mirrors = Mirrors::new(vec![Arc::clone(&dead), Arc::clone(&live)], fast_retries(2));
    assert_eq!(mirrors.names(), vec![dead.name().to_owned(), live.name().to_owned()]);
    let ranges = [span(0, 100), ByteRange::Suffix(10)];
    let mut sink = Collect::default();
    mirrors.fetch(&ranges, &mut sink).await.unwrap();
    assert_eq!(sink.got, expected(&data, &ranges));
    assert_eq!(dead.stats().requests, 2);
    assert_eq!(live.stats().requests, 1);
    // The mirror that last succeeded goes first.
    let mut sink = Collect::default();
    mirrors.fetch(&ranges, &mut sink).await.unwrap();
    assert_eq!(dead.stats().requests, 2);
    assert_eq!(live.stats().requests, 2);
    assert_eq!(mirrors.stats(), TransferStats::new(4, live.stats().bytes));

    // Nothing works: every attempt is reported, connection errors are retried.
    let alone = Mirrors::new(vec![dead], fast_retries(3));
    match alone.fetch(&ranges, &mut Collect::default()).await {
        Err(FetchError::AllMirrorsFailed { attempts }) => {
            assert_eq!(attempts.len(), 3);
            assert!(attempts.iter().all(|(_, e)| matches!(e, TransportError::Connect { .. }) && e.is_retryable()));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn stalled_servers_time_out() {
    let server = Server::start(content(100_000)).await;
    let timeouts = Timeouts::default().with_connect(Duration::from_millis(500)).with_idle(Duration::from_millis(300));
    let t = HttpTransport::new(&server.url(), timeouts).unwrap();
    server.set(|k| k.stall_after = Some(1000));
    let started = Instant::now();
    let error = fetch(&t, &[span(0, 50_000)]).await.unwrap_err();
    assert!(matches!(error, TransportError::Timeout { what: "data", .. }), "{error}");
    assert!(error.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(3));

    server.set(|k| (k.stall_after, k.mode) = (None, Mode::StallHeaders));
    let error = fetch(&t, &[span(0, 10)]).await.unwrap_err();
    assert!(matches!(error, TransportError::Timeout { what: "response headers", .. }), "{error}");

    // Through Mirrors: retried, then reported.
    let mirrors = Mirrors::new(vec![Arc::new(t)], fast_retries(2));
    match mirrors.fetch(&[span(0, 10)], &mut Collect::default()).await {
        Err(FetchError::AllMirrorsFailed { attempts }) => assert_eq!(attempts.len(), 2),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_sink_error_stops_everything_without_retry() {
    let data = content(100_000);
    let server = Server::start(data.clone()).await;
    let first: Arc<dyn Transport> = Arc::new(HttpTransport::new(&server.url(), quick()).unwrap());
    let second: Arc<dyn Transport> = Arc::new(MemoryTransport::new("memory", data.clone()));
    let mirrors = Mirrors::new(vec![first, second], fast_retries(3));
    let mut sink = Collect::refusing_after(20_000);
    match mirrors.fetch(&[span(0, 50_000), span(60_000, 70_000)], &mut sink).await {
        Err(FetchError::Refused(e)) => assert_eq!(e.0, "digest mismatch"),
        other => panic!("{other:?}"),
    }
    assert_eq!(mirrors.stats().requests, 1);

    // A corrupt mirror feeds a verifying sink bad bytes: refused, the fetch ends.
    let corrupt = MemoryTransport::new("corrupt", data.clone()).corrupt(5);
    let mut sink = Collect::default();
    corrupt.fetch(&[span(0, 10)], &mut sink).await.unwrap();
    assert_eq!(sink.got[0].bytes[5], data[5] ^ 0xff);
}

#[tokio::test]
async fn not_found_and_unsatisfiable() {
    let data = content(1000);
    let server = Server::start(data.clone()).await;
    let t = HttpTransport::new(&server.url(), quick()).unwrap();
    let past = fetch(&t, &[span(1000, 1001)]).await.unwrap_err();
    assert!(matches!(past, TransportError::RangeNotSatisfiable { len: Some(1000), .. }), "{past}");
    assert!(!past.is_retryable());
    // Some ranges satisfiable, one past the end: the server leaves it out; the mirror is behind.
    let past = fetch(&t, &[span(0, 10), span(990, 1010)]).await.unwrap_err();
    assert!(matches!(past, TransportError::RangeNotSatisfiable { len: Some(1000), .. }), "{past}");

    server.set(|k| k.mode = Mode::NotFound);
    let missing = fetch(&t, &[span(0, 1)]).await.unwrap_err();
    assert!(matches!(missing, TransportError::NotFound { .. }) && !missing.is_retryable(), "{missing}");

    // 404 and 416 fail over at once, without retries.
    let behind: Arc<dyn Transport> = Arc::new(MemoryTransport::new("behind", data[..500].to_vec()));
    let good: Arc<dyn Transport> = Arc::new(MemoryTransport::new("good", data.clone()));
    let t: Arc<dyn Transport> = Arc::new(t);
    let mirrors = Mirrors::new(vec![Arc::clone(&t), Arc::clone(&behind), Arc::clone(&good)], fast_retries(3));
    let before = t.stats().requests;
    let mut sink = Collect::default();
    mirrors.fetch(&[span(400, 600)], &mut sink).await.unwrap();
    assert_eq!(sink.got, expected(&data, &[span(400, 600)]));
    assert_eq!((t.stats().requests - before, behind.stats().requests, good.stats().requests), (1, 1, 1));
}

#[tokio::test]
async fn lying_servers() {
    let data = content(10_000);
    let server = Server::start(data.clone()).await;
    let t = HttpTransport::new(&server.url(), quick()).unwrap();

    // More bytes than Content-Length: only Content-Length bytes are taken, and the next request works.
    server.set(|k| k.extra_bytes = 5000);
    for _ in 0..3 {
        assert_eq!(fetch(&t, &[span(10, 20)]).await.unwrap().got, expected(&data, &[span(10, 20)]));
    }
    server.set(|k| k.extra_bytes = 0);

    for mode in [Mode::BadContentRange, Mode::WrongRange, Mode::LongerThanRange] {
        server.set(|k| k.mode = mode);
        let error = fetch(&t, &[span(100, 200)]).await.unwrap_err();
        assert!(matches!(error, TransportError::Protocol { .. }), "{mode:?}: {error}");
        assert!(!error.is_retryable());
    }

    // Redirects are followed.
    server.set(|k| k.mode = Mode::Honour);
    let moved = HttpTransport::new(&server.url().replace("/c.dare", "/moved"), quick()).unwrap();
    assert_eq!(fetch(&moved, &[span(0, 5)]).await.unwrap().got, expected(&data, &[span(0, 5)]));
    assert_eq!(moved.stats().requests, 2);
}

#[tokio::test]
async fn memory_faults_retries_and_updates() {
    let data = content(50_000);
    let flaky = Arc::new(MemoryTransport::new("flaky", data.clone()).fail_first(2));
    let mirrors = Mirrors::new(vec![flaky.clone()], fast_retries(3));
    let ranges = [span(0, 10), ByteRange::Suffix(10)];
    let mut sink = Collect::default();
    mirrors.fetch(&ranges, &mut sink).await.unwrap();
    assert_eq!(sink.got, expected(&data, &ranges));
    assert_eq!(flaky.stats().requests, 3);

    // Dropped three times mid-range, resumed each time.
    flaky.update_faults(|f| (f.drop_after, f.drop_requests) = (7000, 3));
    let ranges = [span(100, 40_000)];
    let mut sink = Collect::default();
    mirrors.fetch(&ranges, &mut sink).await.unwrap();
    assert_eq!(sink.got, expected(&data, &ranges));
    assert_eq!(flaky.stats().requests, 3 + 4);

    // A mirror updated between fetches serves the new bytes.
    let newer = content(60_000);
    flaky.set_content(newer.clone());
    let mut sink = Collect::default();
    mirrors.fetch(&[ByteRange::Suffix(100)], &mut sink).await.unwrap();
    assert_eq!(sink.got, expected(&newer, &[ByteRange::Suffix(100)]));
    assert!(flaky.faults().drop_requests == 0 && flaky.faults().fail_requests == 0);

    // Not a range at all.
    for bad in [span(5, 5), span(6, 5), ByteRange::Suffix(0)] {
        let error = fetch(flaky.as_ref(), &[bad]).await.unwrap_err();
        assert!(matches!(error, TransportError::Invalid { .. }), "{error}");
    }
    assert!(fetch(flaky.as_ref(), &[]).await.unwrap().got.is_empty());
}

#[tokio::test]
async fn fetch_all_runs_jobs_in_parallel() {
    let data = content(20_000);
    let slow: Arc<dyn Transport> =
        Arc::new(MemoryTransport::new("slow", data.clone()).delay(Duration::from_millis(400)));
    let mirrors = Mirrors::new(vec![slow], RetryPolicy::default());
    let (mut a, mut b, mut c) = (Collect::default(), Collect::default(), Collect::default());
    let jobs: Vec<(Vec<ByteRange>, &mut dyn RangeSink)> =
        vec![(vec![span(0, 10)], &mut a), (vec![ByteRange::Suffix(5)], &mut b), (vec![span(7, 9)], &mut c)];
    let started = Instant::now();
    mirrors.fetch_all(jobs).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(1100), "{:?}", started.elapsed());
    assert_eq!(a.got, expected(&data, &[span(0, 10)]));
    assert_eq!(b.got, expected(&data, &[ByteRange::Suffix(5)]));
    assert_eq!(c.got, expected(&data, &[span(7, 9)]));

    // The first failure ends them all.
    let mut bad = Collect::refusing_after(0);
    let mut good = Collect::default();
    let jobs: Vec<(Vec<ByteRange>, &mut dyn RangeSink)> =
        vec![(vec![span(0, 10)], &mut bad), (vec![span(0, 10)], &mut good)];
    assert!(matches!(mirrors.fetch_all(jobs).await, Err(FetchError::Refused(_))));
}

#[test]
fn errors_tell_retryable_from_not() {
    let url = || "http://example.invalid/c".to_owned();
    let io = |kind| TransportError::Io { path: url(), source: std::io::Error::from(kind) };
    let retryable = [
        TransportError::Timeout { url: url(), what: "data", after: Duration::from_secs(30) },
        TransportError::Interrupted { url: url(), reason: "reset".into() },
        TransportError::Status { url: url(), status: 503 },
        TransportError::Status { url: url(), status: 429 },
        TransportError::Connect { url: url(), reason: "connection refused".into(), source: "refused".into() },
        TransportError::TooSlow { url: url(), bytes: 1, window: Duration::from_secs(10), min_rate: 1024 },
        io(std::io::ErrorKind::Interrupted),
    ];
    let final_ = [
        TransportError::Status { url: url(), status: 403 },
        TransportError::NotFound { url: url() },
        TransportError::RangeNotSatisfiable { url: url(), len: None },
        TransportError::Protocol { url: url(), reason: "bad".into() },
        TransportError::Sink(dare_updater::transport::SinkError("no".into())),
        TransportError::Invalid { url: url(), reason: "bad".into() },
        TransportError::Deadline { url: url(), after: Duration::from_secs(31) },
        io(std::io::ErrorKind::PermissionDenied),
    ];
    assert!(retryable.iter().all(TransportError::is_retryable));
    assert!(!final_.iter().any(TransportError::is_retryable));
    for e in retryable.iter().chain(&final_) {
        assert!(e.to_string().contains("example.invalid") || matches!(e, TransportError::Sink(_)), "{e}");
    }
}

#[tokio::test]
async fn transport_for_picks_by_scheme() {
    let http = transport_for("http://127.0.0.1:1/c.dare", quick()).unwrap();
    assert_eq!(http.name(), "http://127.0.0.1:1/c.dare");
    assert!(transport_for("HTTPS://example.invalid/c.dare", quick()).is_ok());
    // A Windows path takes Windows separators.
    let native = |p: &str| if cfg!(windows) { p.replace('/', "\\") } else { p.to_string() };
    assert_eq!(transport_for("file:///tmp/a%20b", quick()).unwrap().name(), native("/tmp/a b"));
    assert_eq!(transport_for("file://localhost/tmp/x", quick()).unwrap().name(), native("/tmp/x"));
    #[cfg(windows)]
    assert_eq!(transport_for("file:///C:/dir/a%20b", quick()).unwrap().name(), "C:\\dir\\a b");
    assert_eq!(transport_for("relative/c.dare", quick()).unwrap().name(), "relative/c.dare");
    for bad in ["ftp://example.invalid/c", "file://elsewhere/tmp/x", "http://", "https:///x"] {
        assert!(matches!(transport_for(bad, quick()), Err(TransportError::Invalid { .. })), "{bad}");
    }
}

#[test]
fn futures_are_send_and_errors_are_anyhow_friendly() {
    fn error<E: std::error::Error + Send + Sync + 'static>() {}
    error::<TransportError>();
    error::<FetchError>();
    fn send<T: Send>(_: T) {}
    let mirrors = Mirrors::new(Vec::new(), RetryPolicy::default());
    let mut sink = Collect::default();
    send(mirrors.fetch(&[], &mut sink));
    send(mirrors.fetch_all(Vec::new()));
}

// ---------------------------------------------------------------------------------------------------------
// nginx as a real peer

#[cfg(unix)]
struct Nginx {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

#[cfg(unix)]
impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(unix)]
fn start_nginx(file: &[u8]) -> Option<Nginx> {
    let bin = std::path::Path::new("/usr/sbin/nginx");
    if !bin.exists() {
        // Skipping is only for machines without nginx; CI installs it.
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
            "{} is not installed and CI is set: install nginx (apt-get install -y nginx)",
            bin.display()
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("www")).unwrap();
    std::fs::write(dir.path().join("www/c.dare"), file).unwrap();
    for attempt in 0..5 {
        let port = dead_port();
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/t1;\n  proxy_temp_path {d}/t2;\n  \
             fastcgi_temp_path {d}/t3;\n  uwsgi_temp_path {d}/t4;\n  scgi_temp_path {d}/t5;\n  \
             server {{\n    listen 127.0.0.1:{port};\n    root {d}/www;\n  }}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let mut child = std::process::Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Nginx { child, port, _dir: dir });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        eprintln!("nginx did not start on port {port} (attempt {attempt}); retrying");
    }
    let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
    panic!("nginx would not start:\n{log}");
}

#[cfg(unix)] // nginx is a Unix program here.
#[tokio::test]
async fn nginx_serves_single_suffix_and_multi_ranges() {
    let data = content(300_000);
    let Some(nginx) = start_nginx(&data) else {
        eprintln!("skipped: /usr/sbin/nginx is not installed");
        return;
    };
    let url = format!("http://127.0.0.1:{}/c.dare", nginx.port);
    let t = HttpTransport::new(&url, quick()).unwrap();
    check_cases(&t, &data).await;
    assert_eq!(t.stats().requests, 6);
    let ranges = [span(200_000, 200_100), span(10, 20), ByteRange::Suffix(3)];
    assert_eq!(fetch(&t, &ranges).await.unwrap().got, expected(&data, &ranges));
    let missing = HttpTransport::new(&url.replace("c.dare", "nope"), quick()).unwrap();
    assert!(matches!(fetch(&missing, &[span(0, 1)]).await, Err(TransportError::NotFound { .. })));
    let past = fetch(&t, &[span(300_000, 300_001)]).await.unwrap_err();
    assert!(matches!(past, TransportError::RangeNotSatisfiable { len: Some(300_000), .. }), "{past}");
}

// ---------------------------------------------------------------------------------------------------------
// Any server behaviour, any ranges: the sink sees exactly the requested bytes.

fn arb_range(len: u64) -> impl Strategy<Value = ByteRange> {
    prop_oneof![
        (0..len, 1..4000u64).prop_map(move |(s, n)| span(s, (s + n).min(len).max(s + 1))),
        (1..len + 100).prop_map(ByteRange::Suffix),
    ]
}

fn scenario() -> impl Strategy<Value = (u64, Vec<ByteRange>)> {
    (1u64..300_000).prop_flat_map(|len| (Just(len), prop::collection::vec(arb_range(len), 1..7)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_server_any_ranges(
        (len, ranges) in scenario(),
        mode in 0..4u8,
        drops in 0..3u32,
        drop_after in 1u64..20_000,
    ) {
        let data = content(len as usize);
        let t = MemoryTransport::new("m", data.clone());
        let t = match mode { 1 => t.ignore_ranges(), 2 => t.coalesce(), 3 => t.reorder(), _ => t };
        let t = t.drop_after(drop_after, drops);
        let mirrors = Mirrors::new(vec![Arc::new(t)], fast_retries(3));
        let mut sink = Collect::default();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        runtime.block_on(mirrors.fetch(&ranges, &mut sink)).unwrap();
        prop_assert_eq!(sink.got, expected(&data, &ranges));
    }
}

// ---------------------------------------------------------------------------------------------------------
// HTTPS with rustls (ring), against a CA made with the openssl command

#[cfg(unix)]
fn openssl(dir: &std::path::Path, args: &[&str]) -> bool {
    std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A CA and a server certificate for 127.0.0.1, or `None` without the openssl command.
#[cfg(unix)]
fn make_ca(dir: &std::path::Path) -> Option<()> {
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
    steps.iter().all(|args| openssl(dir, args)).then_some(())
}

#[cfg(unix)] // The test CA is made with the openssl command, a Unix program here.
#[tokio::test]
async fn https_with_a_private_ca() {
    use tokio_rustls::rustls::{self, pki_types::pem::PemObject};
    let dir = tempfile::tempdir().unwrap();
    if make_ca(dir.path()).is_none() {
        // Only for machines without openssl; CI installs it, and there this fails.
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
            "openssl is not installed, and CI=true: apt-get install -y openssl"
        );
        eprintln!("skipped: the openssl command is not available (apt-get install -y openssl)");
        return;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = rustls::pki_types::CertificateDer::pem_file_iter(dir.path().join("leaf.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.path().join("leaf.key")).unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let wrap: crate::support::range_server::Wrap = Arc::new(move |tcp| {
        let acceptor = acceptor.clone();
        Box::pin(async move {
            acceptor.accept(tcp).await.ok().map(|s| Box::new(s) as Box<dyn crate::support::range_server::Stream>)
        })
    });
    let data = content(300_000);
    let server = Server::start_with(data.clone(), Some(wrap)).await;
    let url = server.url().replace("http://", "https://");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_file(dir.path().join("ca.pem")).unwrap()).unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    let t = HttpTransport::with_tls_config(&url, quick(), client_config.clone()).unwrap();
    check_cases(&t, &data).await;
    assert_eq!(t.stats().requests, 6);
    assert_eq!(server.connections(), 1);

    // The same CA as the app's own root store, through TlsRoots.
    let t = HttpTransport::with_roots(&url, quick(), &dare_updater::TlsRoots::Custom(roots)).unwrap();
    check_cases(&t, &data).await;
    // An empty store cannot check any server: refused before connecting, for https only.
    let error =
        HttpTransport::with_roots(&url, quick(), &dare_updater::TlsRoots::Custom(rustls::RootCertStore::empty()))
            .unwrap_err();
    assert!(
        matches!(error, TransportError::Invalid { .. }) && error.to_string().contains("no root certificates"),
        "{error}"
    );
    let plain = url.replace("https://", "http://");
    assert!(
        HttpTransport::with_roots(&plain, quick(), &dare_updater::TlsRoots::Custom(rustls::RootCertStore::empty()))
            .is_ok()
    );

    // A redirect from https down to plain http is refused, not followed.
    let downgrade = url.replace("/c.dare", "/to-http");
    let t = HttpTransport::with_tls_config(&downgrade, quick(), client_config).unwrap();
    let error = fetch(&t, &[span(0, 1)]).await.unwrap_err();
    assert!(matches!(error, TransportError::Protocol { .. }) && !error.is_retryable(), "{error}");
    assert!(error.to_string().contains("downgrade to plain http"), "{error}");

    // The system roots do not know this CA: one line naming the URL and the TLS failure.
    match HttpTransport::new(&url, quick()) {
        Ok(system) => {
            let error = fetch(&system, &[span(0, 1)]).await.unwrap_err();
            assert!(matches!(error, TransportError::Connect { .. }), "{error}");
            let text = error.to_string();
            assert!(text.starts_with(&format!("cannot connect to {url}: TLS handshake failed: ")), "{text}");
            assert!(text.contains("certificate"), "{text}");
        }
        Err(error) => assert!(matches!(error, TransportError::Invalid { .. }), "{error}"),
    }
}
