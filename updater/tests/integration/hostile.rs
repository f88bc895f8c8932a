//! The HTTP transport and failover against the hostile test mirror (`dare-testkit`): every dishonest
//! mode costs a bounded time and a bounded number of bytes read, ends in a typed error, and the next
//! mirror serves.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::range_server::{Collect, content, dead_port, expected, span};
use dare_testkit::{HostileMirror, Mode};
use dare_updater::fetch::{FetchError, Mirrors, RetryPolicy};
use dare_updater::transport::{ByteRange, HttpTransport, Timeouts, Transport, TransportError};

/// Turns a hang into a failure; far above what any case needs.
const WATCHDOG: Duration = Duration::from_secs(60);

/// The container's length.
const LEN: usize = 300_000;

/// The most a single answer may make us read: the requested bytes, plus the caps for bytes outside
/// them (1 MiB skipped, 1 MiB buffered), plus one read of hyper's buffer.
const READ_BOUND: u64 = LEN as u64 + 3 * 1024 * 1024;

/// Scaled-down bounds, so a test runs in seconds: the same mechanisms as the defaults.
fn short() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(2),
        idle: Duration::from_secs(2),
        min_rate: 1024,
        rate_window: Duration::from_secs(1),
        mirror_deadline: Duration::from_secs(3),
    }
}

fn file(dir: &Path) -> (PathBuf, Vec<u8>) {
    let data = content(LEN);
    let path = dir.join("c.dare");
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

/// Every dishonest mode, the drip at 50 ms a byte.
fn modes() -> Vec<Mode> {
    let mut modes: Vec<Mode> = Mode::hostile()
        .into_iter()
        .map(|m| if let Mode::Drip(_) = m { Mode::Drip(Duration::from_millis(50)) } else { m })
        .collect();
    modes.push(Mode::RedirectTo("ftp://127.0.0.1/c.dare".into()));
    modes
}

async fn watched<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WATCHDOG, f).await {
        Ok(t) => t,
        Err(_) => panic!("{what}: still running after {WATCHDOG:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_mode_ends_in_a_typed_error_after_bounded_time_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = file(dir.path());
    let mut checks = tokio::task::JoinSet::new();
    for mode in modes() {
        let path = path.clone();
        checks.spawn(async move {
            // As the seal is read: a suffix, before anything is verified.
            let mirror = HostileMirror::start(&path, mode.clone());
            let t = HttpTransport::new(&mirror.url(), short()).unwrap();
            let started = Instant::now();
            let mut sink = Collect::default();
            let result = watched(&mode.name(), t.fetch(&[ByteRange::Suffix(1024)], &mut sink)).await;
            let elapsed = started.elapsed();
            println!(
                "{:<40} {:>6.2} s  {:>8} bytes read  {result:?}",
                mode.name(),
                elapsed.as_secs_f64(),
                t.stats().bytes
            );
            assert!(t.stats().bytes <= READ_BOUND, "{}: read {} bytes", mode.name(), t.stats().bytes);
            let error = match (&mode, result) {
                // It may stop reading right at the end of the range and keep what it asked for.
                (Mode::Endless206, Ok(())) => return,
                (_, Ok(())) => panic!("{}: a hostile answer was accepted", mode.name()),
                (_, Err(e)) => e,
            };
            let text = error.to_string();
            assert!(text.contains(&mirror.url()), "{}: {text}", mode.name());
            match mode {
                Mode::LyingLength => {
                    assert!(matches!(error, TransportError::Protocol { .. }), "{text}");
                    assert!(text.contains("ignores Range") && text.contains(&dare_testkit::LYING_LENGTH.to_string()));
                }
                Mode::Endless200 | Mode::Endless206 => {
                    assert!(matches!(error, TransportError::Protocol { .. }), "{text}")
                }
                Mode::Drip(_) | Mode::StallAfterHeaders | Mode::TruncateKeepOpen => {
                    assert!(matches!(error, TransportError::TooSlow { .. }), "{text}");
                    assert!(
                        text.contains("too slow") && text.contains("in 1 s, below the minimum of 1024 bytes/s"),
                        "{text}"
                    );
                }
                Mode::StallBeforeHeaders => {
                    assert!(matches!(error, TransportError::Timeout { what: "response headers", .. }), "{text}");
                    assert!(text.contains("timed out after 4 s waiting for response headers"), "{text}");
                }
                Mode::RedirectTo(_) => {
                    assert!(matches!(error, TransportError::Protocol { .. }) && !error.is_retryable(), "{text}");
                    assert!(text.contains("only http:// and https:// redirects are followed"), "{text}");
                }
                Mode::Honest => unreachable!(),
            }
        });
    }
    while let Some(done) = checks.join_next().await {
        done.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_mode_fails_over_to_an_honest_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = file(dir.path());
    let honest = Arc::new(HostileMirror::start(&path, Mode::Honest));
    let mut checks = tokio::task::JoinSet::new();
    for mode in modes() {
        let (path, data, honest) = (path.clone(), data.clone(), Arc::clone(&honest));
        checks.spawn(async move {
            let mirror = HostileMirror::start(&path, mode.clone());
            let bad: Arc<dyn Transport> = Arc::new(HttpTransport::new(&mirror.url(), short()).unwrap());
            let good: Arc<dyn Transport> = Arc::new(HttpTransport::new(&honest.url(), short()).unwrap());
            let mirrors = Mirrors::new(vec![Arc::clone(&bad), good], RetryPolicy::default()).with_deadline(&short());
            let started = Instant::now();
            // The seal, then content: the order an update reads in.
            for ranges in [vec![ByteRange::Suffix(1024)], vec![span(1000, 101_000), span(200_000, 200_100)]] {
                let mut sink = Collect::default();
                watched(&mode.name(), mirrors.fetch(&ranges, &mut sink)).await.unwrap();
                assert_eq!(sink.got, expected(&data, &ranges), "{}", mode.name());
            }
            let elapsed = started.elapsed();
            println!(
                "{:<40} {:>6.2} s  {:>8} bytes read from it",
                mode.name(),
                elapsed.as_secs_f64(),
                bad.stats().bytes
            );
            assert!(bad.stats().bytes <= READ_BOUND, "{}: read {} bytes", mode.name(), bad.stats().bytes);
        });
    }
    while let Some(done) = checks.join_next().await {
        done.unwrap();
    }
}

/// A drip just fast enough for the idle timeout, with the rate check off: only the deadline ends it.
#[tokio::test]
async fn the_mirror_deadline_ends_a_drip_that_beats_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = file(dir.path());
    let drip = HostileMirror::start(&path, Mode::Drip(Duration::from_millis(100)));
    let timeouts = Timeouts { min_rate: 0, mirror_deadline: Duration::from_secs(2), ..short() };
    let t: Arc<dyn Transport> = Arc::new(HttpTransport::new(&drip.url(), timeouts).unwrap());
    let mirrors = Mirrors::new(vec![t], RetryPolicy::default()).with_deadline(&timeouts);
    let started = Instant::now();
    match watched("drip", mirrors.fetch(&[span(0, 100_000)], &mut Collect::default())).await {
        Err(FetchError::AllMirrorsFailed { attempts }) => {
            let (_, last) = attempts.last().unwrap();
            assert!(matches!(last, TransportError::Deadline { .. }) && !last.is_retryable(), "{last}");
            assert!(last.to_string().contains("gave up on this mirror after 2 s"), "{last}");
        }
        other => panic!("{other:?}"),
    }
    println!("drip ended by the deadline after {:.2} s", started.elapsed().as_secs_f64());
    // Out of time for the run: not asked again.
    let before = drip.stats().requests;
    assert!(mirrors.fetch(&[span(0, 10)], &mut Collect::default()).await.is_err());
    assert_eq!(drip.stats().requests, before);
}

/// An honest mirror slower than the base deadline allows but above the minimum rate finishes: the
/// deadline grows with the bytes asked.
#[tokio::test]
async fn the_mirror_deadline_grows_with_the_bytes_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = file(dir.path());
    let slow = HostileMirror::start(&path, Mode::Drip(Duration::from_millis(2)));
    let timeouts = Timeouts { min_rate: 100, mirror_deadline: Duration::from_secs(1), ..short() };
    let t: Arc<dyn Transport> = Arc::new(HttpTransport::new(&slow.url(), timeouts).unwrap());
    let mirrors = Mirrors::new(vec![t], RetryPolicy::default()).with_deadline(&timeouts);
    let ranges = [span(5000, 6500)];
    let mut sink = Collect::default();
    let started = Instant::now();
    watched("slow", mirrors.fetch(&ranges, &mut sink)).await.unwrap();
    assert_eq!(sink.got, expected(&data, &ranges));
    println!("1500 bytes at one per 2 ms in {:.2} s, with a base deadline of 1 s", started.elapsed().as_secs_f64());
}

#[tokio::test]
async fn connection_errors_name_the_url_and_the_cause() {
    let url = format!("http://127.0.0.1:{}/c.dare", dead_port());
    let t = HttpTransport::new(&url, short()).unwrap();
    let error = t.fetch(&[span(0, 10)], &mut Collect::default()).await.unwrap_err();
    assert!(matches!(error, TransportError::Connect { .. }), "{error}");
    assert_eq!(error.to_string(), format!("cannot connect to {url}: connection refused"));

    let url = "http://no-such-host.invalid/c.dare";
    let t = HttpTransport::new(url, short()).unwrap();
    let error = t.fetch(&[span(0, 10)], &mut Collect::default()).await.unwrap_err();
    let text = error.to_string();
    assert!(text.starts_with(&format!("cannot connect to {url}: DNS lookup failed")), "{text}");
    assert!(!text.contains("client error"), "{text}");
}
