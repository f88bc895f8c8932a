//! `dare serve --upstream` against a hostile or misconfigured upstream, as a
//! user runs it: a wrong `--trust` ends the server with one clear line, and
//! SIGTERM stops it at once even while a sync is stuck on a dripping
//! endless response.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::{Sandbox, T0};

/// `dare serve DIR --listen 127.0.0.1:0 EXTRA...` in the sandbox; the child
/// and the address from its first line.
fn serve(sb: &Sandbox, dir: &str, extra: &[&str]) -> (Child, String) {
    std::fs::create_dir_all(sb.path(dir)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dare"))
        .current_dir(sb.path(""))
        .args(["serve", dir, "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dare serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("a first line");
    let addr = line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{line:?}")).to_string();
    (child, addr)
}

fn wait(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn terminate(child: &Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
}

#[test]
fn serve_with_a_wrong_trust_key_says_so_and_exits() {
    let sb = Sandbox::new();
    sb.keygen("k");
    sb.keygen("other");
    std::fs::create_dir_all(sb.path("www")).unwrap();
    sb.init("www/app.dare", "k");
    let (mut origin, origin_addr) = serve(&sb, "www", &[]);
    let upstream = format!("http://{origin_addr}/app.dare");
    let (mut mirror, _) = serve(&sb, "mirror", &["--upstream", &upstream, "--trust", "other.pub"]);
    let status = wait(&mut mirror, Duration::from_secs(60)).expect("dare serve gives up on a wrong --trust");
    assert!(!status.success());
    let mut stderr = String::new();
    mirror.stderr.take().expect("stderr").read_to_string(&mut stderr).unwrap();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: ") && last.contains("none of the --trust keys"), "{stderr}");
    assert!(last.contains(&upstream), "names the upstream: {last}");
    assert!(!Path::new(&sb.path("mirror/app.dare")).exists());
    terminate(&origin);
    wait(&mut origin, Duration::from_secs(10)).expect("the origin stops");
}

/// An upstream whose every answer is a `206` that drips zeros forever (one
/// byte every 50 ms, so no idle timeout fires). Sets `busy` once it drips.
fn dripping_upstream(busy: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let busy = busy.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let total = 1u64 << 62;
                let reply = format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {}-{}/{total}\r\n\r\n",
                    total - 16384,
                    total - 1
                );
                if stream.write_all(reply.as_bytes()).is_err() {
                    return;
                }
                busy.store(true, Ordering::SeqCst);
                while stream.write_all(&[0]).is_ok() {
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }
    });
    format!("http://{addr}/app.dare")
}

#[test]
fn serve_stops_on_sigterm_while_a_sync_drips() {
    let _ = T0;
    let sb = Sandbox::new();
    let busy = Arc::new(AtomicBool::new(false));
    let upstream = dripping_upstream(busy.clone());
    let (mut mirror, _) = serve(&sb, "mirror", &["--upstream", &upstream]);
    let t = Instant::now();
    while !busy.load(Ordering::SeqCst) {
        assert!(t.elapsed() < Duration::from_secs(30), "the sync never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    terminate(&mirror);
    // A generous watchdog: the stop itself takes milliseconds.
    let status = wait(&mut mirror, Duration::from_secs(5)).expect("dare serve stops within 5 s of SIGTERM mid-sync");
    eprintln!("stopped {:?} after SIGTERM", t.elapsed());
    assert!(status.success(), "{status:?}");
    assert!(std::fs::read_dir(sb.path("mirror")).unwrap().next().is_none(), "nothing written");
}

/// Polls until `done` or `limit` passes (a watchdog: a hang fails the test).
fn poll(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if done() {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// `dare serve --upstream HOSTILE --upstream HONEST` for every mode of the
/// shared hostile test mirror (`dare-testkit`, the one the updater's tests
/// use), with the default timeouts: each hostile first upstream costs
/// bounded time, then the copy is synced from the honest one, and SIGTERM
/// stops the server. With the hostile upstream alone, SIGTERM in the middle
/// of a sync stops the server too, leaving the verified copy as it was. The modes run
/// side by side; the watchdogs only turn a hang into a failure, and the
/// times are printed.
#[test]
fn every_hostile_first_upstream_then_the_honest_one_syncs_and_sigterm_stops_it() {
    use crate::support::{LINUX, app, publish, signing_key};
    use dare_testkit::{HostileMirror, Mode};
    let sb = Sandbox::new();
    let (key, _) = sb.keygen("release.key");
    let container = sb.init("app.dare", "release.key");
    let key = signing_key(&key);
    let release = |version: &str, time: u64| {
        let bin = app(LINUX, version);
        publish(&container, &key, "stable", version, &[(LINUX, &[("bin/app", &bin[..])])], time);
    };
    release("1.0.0", T0 + 100);
    // A mirror's verified copy of 1.0.0; the upstreams serve 1.1.0 too.
    let older = std::fs::read(&container).unwrap();
    release("1.1.0", T0 + 200);
    let want = std::fs::read(&container).unwrap();
    let public = format!("{}.pub", sb.path("release.key").display());
    let honest = Arc::new(HostileMirror::start(&container, Mode::Honest));
    let sb = Arc::new(sb);
    let mut runs = Vec::new();
    for (i, mode) in Mode::hostile().into_iter().enumerate() {
        let (sb, container, older, want, public, honest) =
            (Arc::clone(&sb), container.clone(), older.clone(), want.clone(), public.clone(), Arc::clone(&honest));
        runs.push(std::thread::spawn(move || {
            let name = mode.name();
            let bad = HostileMirror::start(&container, mode);

            // Hostile first, honest second: synced from the honest one.
            let dir = format!("mirror-{i}");
            let (mut mirror, _) =
                serve(&sb, &dir, &["--upstream", &bad.url(), "--upstream", &honest.url(), "--trust", &public]);
            let copy = sb.path(&format!("{dir}/app.dare"));
            let synced = poll(Duration::from_secs(120), || std::fs::read(&copy).is_ok_and(|b| b == want));
            let stats = bad.stats();
            terminate(&mirror);
            let t = Instant::now();
            let status = wait(&mut mirror, Duration::from_secs(5));
            let stop = t.elapsed();
            let mut stderr = String::new();
            mirror.stderr.take().expect("stderr").read_to_string(&mut stderr).unwrap();
            let synced = synced.unwrap_or_else(|| panic!("{name}: no synced copy after 120 s: {stderr}"));
            println!(
                "{name:<35} synced after {:>5.1} s (hostile upstream: {} requests, {} bytes sent); stopped {stop:.1?} after SIGTERM",
                synced.as_secs_f64(),
                stats.requests,
                stats.bytes_sent,
            );
            assert!(status.is_some_and(|s| s.success()), "{name}: {status:?} {stderr}");
            let left: Vec<_> = std::fs::read_dir(sb.path(&dir)).unwrap().flatten().map(|e| e.file_name()).collect();
            assert_eq!(left, ["app.dare"], "{name}: only the copy, no staging file");

            // The hostile one alone, for a mirror holding a verified 1.0.0: SIGTERM while its
            // sync of 1.1.0 is under way (or waiting to retry) stops it, the copy untouched.
            let dir = format!("alone-{i}");
            std::fs::create_dir_all(sb.path(&dir)).unwrap();
            std::fs::write(sb.path(&format!("{dir}/app.dare")), &older).unwrap();
            let before = bad.stats().requests;
            let (mut mirror, _) = serve(&sb, &dir, &["--upstream", &bad.url(), "--trust", &public]);
            poll(Duration::from_secs(60), || bad.stats().requests > before)
                .unwrap_or_else(|| panic!("{name}: the sync never asked the hostile upstream"));
            std::thread::sleep(Duration::from_millis(300));
            if let Some(ended) = mirror.try_wait().expect("waiting for dare serve") {
                let mut stderr = String::new();
                mirror.stderr.take().expect("stderr").read_to_string(&mut stderr).unwrap();
                panic!("{name}: dare serve ended by itself ({ended}): {stderr}");
            }
            terminate(&mirror);
            let t = Instant::now();
            let status = wait(&mut mirror, Duration::from_secs(5));
            let stop = t.elapsed();
            println!("{name:<35} alone: stopped {stop:.1?} after SIGTERM mid-sync");
            assert!(status.is_some_and(|s| s.success()), "{name}: {status:?} after SIGTERM");
            let left: Vec<_> = std::fs::read_dir(sb.path(&dir)).unwrap().flatten().map(|e| e.file_name()).collect();
            assert_eq!(left, ["app.dare"], "{name}: no staging file left");
            assert!(std::fs::read(sb.path(&format!("{dir}/app.dare"))).unwrap() == older, "{name}: the copy changed");
        }));
    }
    let mut failed = Vec::new();
    for run in runs {
        if let Err(e) = run.join() {
            failed.push(e);
        }
    }
    if let Some(e) = failed.pop() {
        std::panic::resume_unwind(e);
    }
}
