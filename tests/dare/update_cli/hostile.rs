//! `dare update` against the hostile test mirror (`dare-testkit`): with a dishonest first mirror and
//! an honest second one, every mode of lying, stalling and dripping costs bounded time and the
//! update (and `--check`) succeeds from the second mirror, with the default timeouts.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dare_testkit::{HostileMirror, Mode};
use serde_json::Value;

use super::{Client, LINUX, Site, dare, now, s};

/// A run still going after this long is killed and fails the test (the goal is well under 60 s).
const WATCHDOG: Duration = Duration::from_secs(120);

/// Runs `dare args`, killing it after [`WATCHDOG`]: exit code, stdout, stderr, elapsed.
fn watched(args: &[String]) -> (Option<i32>, String, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dare"))
        .args(args)
        .env_remove("DARE_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the dare binary runs");
    loop {
        if child.try_wait().expect("waiting for dare").is_some() {
            break;
        }
        if started.elapsed() > WATCHDOG {
            let _ = child.kill();
            let out = child.wait_with_output().expect("the killed dare");
            panic!("dare {args:?} still running after {WATCHDOG:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = started.elapsed();
    let out = child.wait_with_output().expect("dare's output");
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.code(), text(out.stdout), text(out.stderr), elapsed)
}

fn update_args(c: &Client, from: &[&str], trust: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["update".into()];
    for f in from {
        args.extend(["--from".into(), f.to_string()]);
    }
    for a in ["--trust", s(trust), "--state", s(&c.state), "--install", s(&c.install), "--target", LINUX, "--json"] {
        args.push(a.into());
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

#[test]
fn every_hostile_first_mirror_costs_bounded_time_then_the_second_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let t = now() - 3600;
    let site = Site::new(tmp.path(), "release", "app.dare", t);
    site.publish("1.0.0", t + 60, "");
    let honest = Arc::new(HostileMirror::start(&site.container, Mode::Honest));
    let mut runs = Vec::new();
    for mode in Mode::hostile() {
        for check in [false, true] {
            let name = format!("{}{}", mode.name(), if check { " --check" } else { "" });
            let client = Client::new(tmp.path(), &format!("client-{}", runs.len()));
            let (container, public, honest, mode) =
                (site.container.clone(), site.public.clone(), Arc::clone(&honest), mode.clone());
            runs.push(std::thread::spawn(move || {
                let bad = HostileMirror::start(&container, mode);
                let extra: &[&str] = if check { &["--check"] } else { &[] };
                let args = update_args(&client, &[&bad.url(), &honest.url()], &public, extra);
                let (code, stdout, stderr, elapsed) = watched(&args);
                let stats = bad.stats();
                println!(
                    "{name:<45} {:>6.1} s  (hostile mirror: {} requests, {} bytes sent; dare read {} bytes in all)",
                    elapsed.as_secs_f64(),
                    stats.requests,
                    stats.bytes_sent,
                    serde_json::from_str::<Value>(&stdout).map(|v| v["bytes_fetched"].clone()).unwrap_or_default()
                );
                assert_eq!(code, Some(0), "{name}: {stdout} {stderr}");
                let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{name}: {e}: {stdout}"));
                let want = if check { "available" } else { "updated" };
                assert_eq!((v["status"].as_str(), v["version"].as_str()), (Some(want), Some("1.0.0")), "{name}: {v}");
                if !check {
                    assert_eq!(client.current(), Some("versions/1.0.0".into()), "{name}");
                }
                // Everything read from both mirrors, whatever the hostile one sent: bounded.
                let read = v["bytes_fetched"].as_u64().unwrap();
                assert!(read < 4 << 20, "{name}: read {read} bytes");
                elapsed
            }));
        }
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

#[test]
fn redirects_to_other_hosts_are_followed_but_never_out_of_http() {
    let tmp = tempfile::tempdir().unwrap();
    let t = now() - 3600;
    let site = Site::new(tmp.path(), "release", "app.dare", t);
    site.publish("1.0.0", t + 60, "");
    let honest = HostileMirror::start(&site.container, Mode::Honest);

    // To another server (a CDN): followed.
    let cdn = HostileMirror::start(&site.container, Mode::RedirectTo(honest.url()));
    let c = Client::new(tmp.path(), "cdn");
    let (code, v, stderr) = c.json(&cdn.url(), &site.public, LINUX, &[]);
    assert_eq!((code, v["status"].as_str()), (0, Some("updated")), "{v} {stderr}");
    assert!(cdn.stats().requests >= 1 && honest.stats().requests >= 1);

    // To a file: refused, with the reason; nothing else to try.
    let file = HostileMirror::start(&site.container, Mode::RedirectTo("file:///etc/passwd".into()));
    let c = Client::new(tmp.path(), "file");
    let (code, v, _) = c.json(&file.url(), &site.public, LINUX, &[]);
    assert_eq!((code, v["kind"].as_str()), (1, Some("network")), "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains(&file.url())
            && error.contains(
                "redirect to \"file:///etc/passwd\" refused: only http:// and https:// redirects are followed"
            ),
        "{error}"
    );
}

#[test]
fn a_refused_connection_is_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let t = now() - 3600;
    let site = Site::new(tmp.path(), "release", "app.dare", t);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/c.dare");
    let c = Client::new(tmp.path(), "client");
    let out = dare(&[
        "update",
        "--from",
        &url,
        "--trust",
        s(&site.public),
        "--state",
        s(&c.state),
        "--install",
        s(&c.install),
        "--target",
        LINUX,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("cannot connect to {url}: connection refused")), "{stderr}");
    assert!(!stderr.contains("client error"), "{stderr}");
}

/// With only a hostile mirror, the run ends within the (here shortened) bounds and says which
/// mirror did what.
#[test]
fn a_hostile_only_mirror_ends_with_the_cause_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let t = now() - 3600;
    let site = Site::new(tmp.path(), "release", "app.dare", t);
    site.publish("1.0.0", t + 60, "");
    let quick = |deadline: &'static str| {
        ["--connect-timeout", "1", "--idle-timeout", "1", "--min-rate", "1024", "--mirror-deadline", deadline]
    };
    let cases = [
        (Mode::StallBeforeHeaders, quick("3"), "timed out after 2 s waiting for response headers"),
        // Past one 10 s rate window.
        (Mode::Drip(Duration::from_millis(300)), quick("12"), "too slow: "),
        (Mode::TruncateKeepOpen, quick("3"), "before that: timed out after 1 s waiting for data"),
        (
            Mode::LyingLength,
            quick("3"),
            "the server ignores Range requests and says the container is 4611686018427387904 bytes",
        ),
    ];
    let mut runs = Vec::new();
    for (i, (mode, flags, cause)) in cases.into_iter().enumerate() {
        let c = Client::new(tmp.path(), &format!("only-{i}"));
        let (container, public) = (site.container.clone(), site.public.clone());
        runs.push(std::thread::spawn(move || {
            let bad = HostileMirror::start(&container, mode.clone());
            let args = update_args(&c, &[&bad.url()], &public, &flags);
            let (code, stdout, stderr, elapsed) = watched(&args);
            println!("{:<30} {:>5.1} s  {stdout}", mode.name(), elapsed.as_secs_f64());
            assert_eq!(code, Some(1), "{}: {stdout} {stderr}", mode.name());
            let v: Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(v["kind"], "network", "{v}");
            let error = v["error"].as_str().unwrap();
            assert!(error.contains(&bad.url()) && error.contains(cause), "{}: {error}", mode.name());
        }));
    }
    for run in runs {
        run.join().unwrap();
    }
}
