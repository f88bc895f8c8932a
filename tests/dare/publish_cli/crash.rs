//! `dare publish` killed with SIGKILL at many moments: during compression,
//! during the appends, during the seal, and after it finished.

use std::collections::BTreeMap;
use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::support::*;

/// The size of each target's build file, in MiB.
const BUILD_MIB: usize = 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Landed {
    /// The container is exactly as before (the kill came before any append).
    BeforeAppending,
    /// Unsealed bytes after the previous seal.
    TornTail,
    /// The new release is sealed.
    AfterTheSeal,
}

#[test]
fn a_publish_killed_at_any_moment_leaves_the_previous_release() {
    let env = Env::new();
    let small: Vec<_> = TARGETS
        .iter()
        .map(|t| {
            let p = env.path(&format!("builds/small-{t}"));
            write(&p, format!("app {t} 1.0.0\n").as_bytes(), 0o755);
            (*t, p)
        })
        .collect();
    let small_refs: Vec<_> = small.iter().map(|(t, p)| (*t, p.as_path())).collect();
    env.ok(&strs(&env.publish_args("1.0.0", &small_refs, &[])));
    let base = env.container_bytes();
    let base_verify = env.json(&["verify", &env.container, "--json"]);
    let base_releases = env.releases();
    assert_eq!(base_releases.len(), 3);

    let big: Vec<_> = TARGETS
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let p = env.path(&format!("builds/big-{t}"));
            mixed_file(&p, BUILD_MIB, i as u64 + 1);
            (*t, p)
        })
        .collect();
    let big_refs: Vec<_> = big.iter().map(|(t, p)| (*t, p.as_path())).collect();
    let args = env.publish_args("2.0.0", &big_refs, &[]);
    let json_args = env.publish_args("2.0.0", &big_refs, &["--json"]);

    // One publish that is not interrupted: how long it takes and what it writes.
    let started = Instant::now();
    env.ok(&strs(&args));
    let full = started.elapsed();
    let full_bytes = env.container_bytes();
    let full_verify = env.json(&["verify", &env.container, "--json"]);
    let full_releases = env.releases();
    assert_eq!(full_releases.len(), 6);
    eprintln!("an uninterrupted publish of 3 x {BUILD_MIB} MiB took {full:.2?}, container {} bytes", full_bytes.len());

    // Kill points: doubling from 0 ms, and spread evenly over the whole publish.
    let mut delays: Vec<Duration> = vec![Duration::ZERO];
    let mut d = Duration::from_millis(5);
    while d < full {
        delays.push(d);
        d *= 2;
    }
    delays.extend((1..=10).map(|k| full * k / 11));
    // Around the end: the last append, the seal, the exit.
    delays.extend([full * 19 / 20, full, full * 21 / 20]);
    delays.sort();
    delays.dedup();

    let mut landed: BTreeMap<Landed, Vec<Duration>> = BTreeMap::new();
    for delay in delays.iter().copied().map(Some).chain([None]) {
        fs::write(&env.container, &base).expect("restoring the container");
        let _ = fs::remove_file(env.pending());
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dare"))
            .args(&args)
            .env_remove("SOURCE_DATE_EPOCH")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting dare publish");
        match delay {
            Some(d) => std::thread::sleep(d),
            // The last kill lands after the publish finished.
            None => {
                while child.try_wait().expect("waiting").is_none() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        // SIGKILL; an error means it already exited.
        let _ = child.kill();
        let status = child.wait().expect("waiting for dare publish");
        let what = format!("killed after {delay:?} ({status})");
        let landing = check_after_kill(&env, &what, &base, &base_verify, &base_releases, &full_verify, &full_releases);
        if landing == Landed::AfterTheSeal {
            assert!(env.container_bytes() == full_bytes, "{what}: a finished publish wrote other bytes");
            let line = env.fail(&strs(&args));
            assert!(line.contains("2.0.0 is not greater than 2.0.0"), "{what}: {line}");
        } else {
            // The next publish of the same version cuts the torn tail and succeeds.
            let torn = env.container_bytes().len() - base.len();
            let v = env.json(&strs(&json_args));
            assert_eq!(v["status"], "published", "{what}");
            if torn == 0 {
                assert!(v["cut_tail"].is_null(), "{what}: {v}");
            } else {
                assert_eq!(v["cut_tail"]["offset"], base.len() as u64, "{what}: {v}");
                assert_eq!(v["cut_tail"]["len"], torn as u64, "{what}: {v}");
            }
            let verify = run(&["verify", &env.container, "--json"]);
            assert!(verify.status.success(), "{what}: the republished container does not verify");
            let stderr = String::from_utf8_lossy(&verify.stderr);
            assert!(!stderr.contains("warning"), "{what}: {stderr}");
            let verify = one_json(&verify.stdout);
            assert!(verify["interrupted_publish"].is_null(), "{what}: {verify}");
            assert_eq!(env.releases(), full_releases, "{what}");
            assert!(env.container_bytes() == full_bytes, "{what}: the republished container is not the same bytes");
        }
        assert!(!env.pending().exists(), "{what}: the pending file is still there");
        assert_only_the_container(&env, &what);
        landed.entry(landing).or_default().push(delay.unwrap_or(Duration::MAX));
    }
    for (landing, at) in &landed {
        let at: Vec<String> = at
            .iter()
            .map(|d| if *d == Duration::MAX { "after exit".into() } else { format!("{}ms", d.as_millis()) })
            .collect();
        eprintln!("{landing:?}: {}", at.join(", "));
    }
    assert!(landed.contains_key(&Landed::TornTail), "no kill landed during the appends: {landed:?}");
    assert!(landed.contains_key(&Landed::AfterTheSeal), "{landed:?}");
}

/// What `dare verify` and `dare ls` show after a kill; which phase it hit.
fn check_after_kill(
    env: &Env,
    what: &str,
    base: &[u8],
    base_verify: &serde_json::Value,
    base_releases: &[(String, String, String)],
    full_verify: &serde_json::Value,
    full_releases: &[(String, String, String)],
) -> Landed {
    let bytes = env.container_bytes();
    assert!(bytes.len() >= base.len() && bytes[..base.len()] == *base, "{what}: the sealed part changed");
    let out = run(&["verify", &env.container, "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what}: dare verify failed: {stderr}");
    let v = one_json(&out.stdout);
    assert_eq!(v["status"], "ok", "{what}");
    let releases = env.releases();
    if releases == full_releases {
        for field in ["size", "root", "seals", "sealed_len"] {
            assert_eq!(v[field], full_verify[field], "{what}: {field}");
        }
        assert!(v["interrupted_publish"].is_null(), "{what}: {v}");
        return Landed::AfterTheSeal;
    }
    assert_eq!(releases, base_releases, "{what}: dare ls lists more than the previous releases");
    for field in ["size", "root", "seals", "sealed_len"] {
        assert_eq!(v[field], base_verify[field], "{what}: {field}");
    }
    if bytes.len() == base.len() {
        assert!(v["interrupted_publish"].is_null(), "{what}: {v}");
        return Landed::BeforeAppending;
    }
    assert!(env.pending().exists(), "{what}: a torn tail without a pending file");
    assert_eq!(v["interrupted_publish"], (bytes.len() - base.len()) as u64, "{what}: {v}");
    assert!(stderr.contains("warning: an interrupted publish"), "{what}: {stderr}");
    let ls = run(&["ls", &env.container]);
    assert!(ls.status.success(), "{what}");
    assert!(String::from_utf8_lossy(&ls.stderr).contains("are not sealed and are not listed"), "{what}");
    assert!(!String::from_utf8_lossy(&ls.stdout).contains("2.0.0"), "{what}");
    Landed::TornTail
}

/// No staging or temporary files are left beside the container.
fn assert_only_the_container(env: &Env, what: &str) {
    let names: Vec<String> = fs::read_dir(env.path("c"))
        .expect("reading the container directory")
        .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["app.dare".to_string()], "{what}");
}

/// A crash that tears a write (power loss, a full disk) can leave any prefix
/// of the appended bytes, not only what a SIGKILL leaves between writes:
/// the container is cut inside every frame of a publish's tail.
#[test]
fn a_publish_torn_inside_any_frame_leaves_the_previous_release() {
    let env = Env::new();
    let small = env.path("builds/small");
    write(&small, b"app 1.0.0\n", 0o755);
    env.ok(&strs(&env.publish_args("1.0.0", &[(LINUX, &small), (MAC, &small)], &[])));
    let base = env.container_bytes();
    let base_releases = env.releases();
    let dir = env.path("builds/two");
    mixed_file(&dir.join("bin/app"), 2, 7);
    write(&dir.join("README"), &text_bytes(5000, 3), 0o644);
    let args = env.publish_args("2.0.0", &[(LINUX, &dir), (MAC, &dir)], &["--json"]);
    env.ok(&strs(&args));
    let full = env.container_bytes();
    let full_releases = env.releases();

    let mut cuts = Vec::new();
    let frames = dare_container::frame::Frames::new(&full[..], base.len() as u64, full.len() as u64);
    for f in frames {
        let f = f.expect("a frame");
        let header = dare_container::frame::read_header(&full[..], &f).expect("a header");
        let kind = String::from_utf8_lossy(&header[..20.min(header.len())]).into_owned();
        // Cut at the frame's start (the frames before it complete), one byte in,
        // inside its header, and one byte short of its end.
        for at in [f.offset, f.offset + 1, f.header_offset + f.header_len / 2, f.end() - 1] {
            if at > base.len() as u64 {
                cuts.push((at as usize, kind.clone()));
            }
        }
    }
    cuts.dedup();
    assert!(cuts.len() >= 20, "{} cuts", cuts.len());
    for (cut, kind) in &cuts {
        // The next command after the crash is a heartbeat seal, or the same publish again.
        for next in ["seal", "publish"] {
            let what = format!("cut at byte {cut} (in a frame starting {kind}), then {next}");
            fs::write(&env.container, &full[..*cut]).expect("writing");
            fs::write(env.pending(), format!("{{\"sealed_len\":{}}}\n", base.len())).expect("writing");
            let out = run(&["verify", &env.container, "--json"]);
            assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
            let v = one_json(&out.stdout);
            assert_eq!(v["interrupted_publish"], (cut - base.len()) as u64, "{what}");
            assert_eq!(v["sealed_len"], base.len() as u64, "{what}");
            assert_eq!(env.releases(), base_releases, "{what}");
            if next == "publish" {
                let v = env.json(&strs(&args));
                assert_eq!(v["cut_tail"]["len"], (cut - base.len()) as u64, "{what}: {v}");
                assert!(env.container_bytes() == full, "{what}: the republished container differs");
                assert_eq!(env.releases(), full_releases, "{what}");
            } else {
                let out = env.ok(&["seal", &env.container, "--key", &env.key, "--time", &(T0 + 60).to_string()]);
                assert!(String::from_utf8_lossy(&out.stderr).contains("warning: cut off a torn tail"), "{what}");
                assert_eq!(env.container_bytes()[..base.len()], base[..], "{what}");
                assert_eq!(env.releases(), base_releases, "{what}");
            }
            let v = env.json(&["verify", &env.container, "--json"]);
            assert!(v["interrupted_publish"].is_null(), "{what}: {v}");
            assert!(!env.pending().exists(), "{what}");
        }
    }
    // Without a pending file the same bytes are damage, not an interrupted publish.
    fs::write(&env.container, &full[..full.len() - 1]).expect("writing");
    let line = env.fail_verification(&["verify", &env.container]);
    assert!(line.contains(&format!("torn tail at byte {}", base.len())), "{line}");
}

/// `dare ARGS` with writes past `limit` bytes of any file failing (EFBIG),
/// as on a full disk; `None` when prlimit is not installed. Unix only: a
/// shell and util-linux's prlimit set the limit.
#[cfg(unix)]
fn dare_with_file_size_limit(limit: usize, args: &[&str]) -> Option<std::process::Output> {
    if std::process::Command::new("prlimit").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "prlimit (util-linux) is not installed, and CI=true: apt-get install -y util-linux"
        );
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return None;
    }
    // SIGXFSZ ignored (it survives exec), so the write fails instead of killing.
    let script = format!("trap '' XFSZ; exec prlimit --fsize={limit} \"$0\" \"$@\"");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_dare"))
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("running sh");
    Some(out)
}

#[test]
#[cfg(unix)] // the full disk is made with prlimit
fn a_publish_or_seal_that_fails_while_sealing_leaves_the_container_as_it_was() {
    let env = Env::new();
    let app = env.path("builds/app");
    write(&app, &text_bytes(300_000, 5), 0o755);
    env.ok(&strs(&env.publish_args("1.0.0", &[(LINUX, &app), (MAC, &app)], &[])));
    let base = env.container_bytes();
    // Where the entries and indexes of 2.0.0 end and its tail (tiles, map,
    // manifest, seal) starts.
    let app2 = env.path("builds/app2");
    write(&app2, &text_bytes(300_000, 6), 0o755);
    let args = env.publish_args("2.0.0", &[(LINUX, &app2), (MAC, &app2)], &[]);
    env.ok(&strs(&args));
    let full = env.container_bytes();
    let kinds: Vec<(u64, String)> = dare_container::frame::Frames::new(&full[..], base.len() as u64, full.len() as u64)
        .map(|f| {
            let f = f.expect("a frame");
            let h = dare_container::frame::read_header(&full[..], &f).expect("a header");
            (f.offset, dare_container::header::Header::parse(&h).expect("a header").kind().to_string())
        })
        .collect();
    assert_eq!(kinds[0].1, "entry", "2.0.0 stores a new entry: {kinds:?}");
    let tail =
        kinds.iter().find(|(_, k)| !["entry", "delta", "index"].contains(&k.as_str())).expect("a tail").0 as usize;
    fs::write(&env.container, &base).expect("restoring");

    // Every entry fits, the seal does not.
    let Some(out) = dare_with_file_size_limit(tail, &strs(&args)) else { return };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: ") && stderr.contains("File too large"), "{stderr}");
    assert!(env.container_bytes() == base, "a failed seal left unsealed bytes: {stderr}");
    assert!(!env.pending().exists());
    // A heartbeat that cannot write its seal.
    let t = (T0 + 120).to_string();
    let Some(out) = dare_with_file_size_limit(base.len(), &["seal", &env.container, "--key", &env.key, "--time", &t])
    else {
        return;
    };
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(env.container_bytes() == base);
    assert!(!env.pending().exists());
    // Both work without the limit.
    env.ok(&strs(&args));
    assert!(env.container_bytes() == full);
}

#[test]
fn ls_after_a_crash_before_the_seal_marks_the_sealed_release_latest() {
    let env = Env::new();
    let app = env.path("builds/app");
    write(&app, b"app", 0o755);
    env.ok(&strs(&env.publish_args("1.0.0", &[(LINUX, &app)], &[])));
    let base = env.container_bytes();
    env.ok(&strs(&env.publish_args("2.0.0", &[(LINUX, &app)], &[])));
    let full = env.container_bytes();
    let seal = dare_container::frame::FramesBack::new(&full[..], 0, full.len() as u64)
        .next()
        .expect("a frame")
        .expect("the seal");
    fs::write(&env.container, &full[..seal.offset as usize]).expect("writing");
    fs::write(env.pending(), format!("{{\"sealed_len\":{}}}\n", base.len())).expect("writing");
    let v = env.json(&["ls", &env.container, "--json"]);
    let releases = v["releases"].as_array().expect("releases");
    assert_eq!(releases.len(), 1, "{v}");
    assert_eq!(releases[0]["version"], "1.0.0");
    assert_eq!(releases[0]["latest"], true, "{v}");
}
