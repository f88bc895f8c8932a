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
