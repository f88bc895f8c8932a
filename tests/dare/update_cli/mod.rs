//! `dare update` as a user runs it: the built binary, containers made with
//! `dare keygen`, `init` and `publish`, local path and file:// mirrors, the
//! `--json` object on success and on failure, and one distinct message per
//! refusal.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

mod hostile;

const LINUX: &str = "x86_64-unknown-linux-gnu";
const ARM: &str = "aarch64-unknown-linux-gnu";
const WINDOWS: &str = "x86_64-pc-windows-msvc";
const ORIGIN: &str = "example.com/app";

fn dare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dare"))
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("DARE_LOG")
        .output()
        .expect("the dare binary runs")
}

#[track_caller]
fn ok(args: &[&str]) -> String {
    let out = dare(args);
    assert!(out.status.success(), "dare {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A publisher's key and a container, made with the CLI.
struct Site {
    dir: PathBuf,
    key: PathBuf,
    public: PathBuf,
    container: PathBuf,
}

impl Site {
    fn new(dir: &Path, key_name: &str, container: &str, time: u64) -> Site {
        let key = dir.join(format!("{key_name}.key"));
        if !key.exists() {
            ok(&["keygen", "--out", s(&key), "--name", ORIGIN]);
        }
        let public = dir.join(format!("{key_name}.key.pub"));
        let container = dir.join(container);
        ok(&["init", s(&container), "--key", s(&key), "--origin", ORIGIN, "--time", &time.to_string()]);
        Site { dir: dir.to_path_buf(), key, public, container }
    }

    /// A copy of the container (sharing its genesis and key).
    fn copy(&self, name: &str) -> Site {
        let container = self.dir.join(name);
        fs::copy(&self.container, &container).unwrap();
        Site { dir: self.dir.clone(), key: self.key.clone(), public: self.public.clone(), container }
    }

    /// Publishes `version` for Linux and ARM, the builds salted with `salt`.
    fn publish(&self, version: &str, time: u64, salt: &str) {
        let mut args: Vec<String> = vec![
            "publish".into(),
            s(&self.container).into(),
            "--key".into(),
            s(&self.key).into(),
            "--version".into(),
            version.into(),
            "--time".into(),
            time.to_string(),
        ];
        for t in [LINUX, ARM] {
            let build = self.dir.join(format!("build-{t}-{version}{salt}"));
            fs::create_dir_all(build.join("bin")).unwrap();
            let app = build.join("bin/app");
            fs::write(&app, app_text(t, version, salt)).unwrap();
            dare_container::fsys::set_mode(&app, 0o755).unwrap();
            fs::write(build.join("notes.txt"), format!("release notes {version}\n")).unwrap();
            args.push("--artifact".into());
            args.push(format!("{t}={}", build.display()));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&args);
    }
}

fn app_text(target: &str, version: &str, salt: &str) -> String {
    format!("#!/bin/sh\necho {target} {version}{salt}\n").repeat(50)
}

/// A client's directories.
struct Client {
    state: PathBuf,
    install: PathBuf,
}

impl Client {
    fn new(dir: &Path, name: &str) -> Client {
        Client { state: dir.join(name).join("state"), install: dir.join(name).join("install") }
    }

    /// `dare update` with the state, install and target flags, and `extra`.
    fn update(&self, from: &str, trust: &Path, target: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "update",
            "--from",
            from,
            "--trust",
            s(trust),
            "--state",
            s(&self.state),
            "--install",
            s(&self.install),
            "--target",
            target,
        ];
        args.extend_from_slice(extra);
        dare(&args)
    }

    /// `dare update --json`: exit code, the JSON object on stdout, stderr.
    fn json(&self, from: &str, trust: &Path, target: &str, extra: &[&str]) -> (i32, Value, String) {
        let mut extra = extra.to_vec();
        extra.push("--json");
        let out = self.update(from, trust, target, &extra);
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(stdout.lines().count(), 1, "exactly one JSON line on stdout: {stdout:?}");
        let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        (out.status.code().unwrap(), v, String::from_utf8(out.stderr).unwrap())
    }

    /// The live build's directory.
    #[track_caller]
    fn live(&self) -> PathBuf {
        dare_updater::current_dir(&self.install).expect("a build is installed")
    }

    fn current(&self) -> Option<PathBuf> {
        // As an app finds it: a symlink on Unix, a pointer file on Windows.
        let dir = dare_updater::current_dir(&self.install)?;
        Some(dir.strip_prefix(&self.install).ok()?.to_path_buf())
    }
}

#[test]
fn json_on_success_check_and_a_path_mirror() {
    let tmp = tempfile::tempdir().unwrap();
    let t = now() - 3600;
    let site = Site::new(tmp.path(), "release", "app.dare", t);
    site.publish("1.0.0", t + 60, "");
    let c = Client::new(tmp.path(), "client");
    let from = s(&site.container);

    let (code, v, _) = c.json(from, &site.public, LINUX, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["status"], "updated");
    assert_eq!(v["target"], LINUX);
    assert_eq!(v["version"], "1.0.0");
    assert_eq!(v["previous"], Value::Null);
    assert!(v["bytes_fetched"].as_u64().unwrap() > 0);
    // At most 4 round trips: the seal; the map and manifest; the index and
    // its proof; what the installed build lacks.
    assert!((1..=4).contains(&v["requests"].as_u64().unwrap()), "{v}");
    assert_eq!(c.current(), Some(PathBuf::from("versions/1.0.0")));
    let app = c.live().join("bin/app");
    assert_eq!(fs::read_to_string(&app).unwrap(), app_text(LINUX, "1.0.0", ""));
    assert_mode(&app, 0o755);

    let (code, v, _) = c.json(from, &site.public, LINUX, &[]);
    assert_eq!((code, v["status"].as_str(), v["requests"].as_u64()), (0, Some("up-to-date"), Some(1)), "{v}");
    assert_eq!(v["previous"], "1.0.0");

    // --check reports a newer build and installs nothing.
    site.publish("1.1.0", t + 120, "");
    let (code, v, _) = c.json(from, &site.public, LINUX, &["--check"]);
    assert_eq!(code, 0);
    assert_eq!(
        (v["status"].as_str(), v["version"].as_str(), v["previous"].as_str()),
        (Some("available"), Some("1.1.0"), Some("1.0.0"))
    );
    // The seal, then (the tree having grown) the map and manifest it names.
    assert!((1..=2).contains(&v["requests"].as_u64().unwrap()), "{v}");
    assert_eq!(c.current(), Some(PathBuf::from("versions/1.0.0")));

    // A file:// URL is a mirror too.
    let url = file_url(&site.container);
    let (code, v, _) = c.json(&url, &site.public, LINUX, &[]);
    assert_eq!(code, 0);
    assert_eq!(
        (v["status"].as_str(), v["version"].as_str(), v["previous"].as_str()),
        (Some("updated"), Some("1.1.0"), Some("1.0.0"))
    );
    assert_eq!(c.current(), Some(PathBuf::from("versions/1.1.0")));

    // Without --json: a human line on stdout.
    let out = c.update(from, &site.public, LINUX, &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("up to date"), "{text}");
}

/// Runs a refused update both ways: `--json` (exit `code`, one error object naming the kind) and
/// plain (exit `code`, one `error: ...` line). Returns the message; checks nothing was installed
/// or changed. Refused attacks exit 3, other failures 1.
#[track_caller]
fn refused(c: &Client, from: &str, trust: &Path, target: &str, kind: &str) -> String {
    let before = (c.current(), fs::read(c.state.join("state.json")).ok());
    let expected = if kind == "missing-target" { 1 } else { 3 };
    let (code, v, stderr) = c.json(from, trust, target, &[]);
    assert_eq!(code, expected, "{v}");
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["kind"], kind, "{v}");
    assert_eq!(v["exit_code"], expected, "{v}");
    let message = v["error"].as_str().unwrap().to_string();
    assert!(stderr.contains(&format!("error: {message}")), "{stderr}");
    let out = c.update(from, trust, target, &[]);
    assert_eq!(out.status.code(), Some(expected));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(before, (c.current(), fs::read(c.state.join("state.json")).ok()), "nothing changed");
    message
}

#[test]
fn every_refusal_has_its_own_message() {
    let tmp = tempfile::tempdir().unwrap();
    let t = now() - 3600;
    let site = Site::new(tmp.path(), "release", "app.dare", t);
    let fork = site.copy("fork.dare");
    site.publish("1.0.0", t + 60, "");
    let release1 = site.copy("release1.dare");
    site.publish("1.1.0", t + 120, "");
    fork.publish("1.0.0", t + 60, "-evil");
    fork.publish("1.1.0", t + 120, "-evil");

    let c = Client::new(tmp.path(), "client");
    let (code, v, _) = c.json(s(&site.container), &site.public, LINUX, &[]);
    assert_eq!((code, v["version"].as_str()), (0, Some("1.1.0")), "{v}");

    let mut messages = Vec::new();
    let m = refused(&c, s(&release1.container), &site.public, LINUX, "rollback");
    assert!(m.contains("rollback refused"), "{m}");
    messages.push(m);
    let m = refused(&c, s(&fork.container), &site.public, LINUX, "fork");
    assert!(m.contains("fork refused"), "{m}");
    messages.push(m);
    let m = refused(&c, s(&site.container), &site.public, WINDOWS, "missing-target");
    assert!(m.contains(&format!("no release for target {WINDOWS}")) && m.contains(LINUX) && m.contains(ARM), "{m}");
    messages.push(m);

    // A key the container is not signed with.
    let other = Site::new(tmp.path(), "other", "other.dare", t);
    let fresh = Client::new(tmp.path(), "fresh");
    let m = refused(&fresh, s(&site.container), &other.public, LINUX, "bad-signature");
    assert!(m.contains("bad signature"), "{m}");
    messages.push(m);

    // A container last sealed a month ago.
    let old = Site::new(tmp.path(), "release", "old.dare", now() - 40 * 86_400);
    old.publish("1.0.0", now() - 30 * 86_400, "");
    let m = refused(&fresh, s(&old.container), &old.public, LINUX, "freeze");
    assert!(m.contains("freeze refused") && m.contains("1209600"), "{m}");
    messages.push(m);
    // ... accepted with a longer --max-age.
    let (code, v, _) = fresh.json(s(&old.container), &old.public, LINUX, &["--max-age", &(40 * 86_400).to_string()]);
    assert_eq!((code, v["status"].as_str()), (0, Some("updated")), "{v}");

    let firsts: std::collections::BTreeSet<&str> = messages.iter().map(|m| m.split(':').next().unwrap()).collect();
    assert_eq!(firsts.len(), messages.len(), "distinct messages: {messages:#?}");
    for m in &messages {
        println!("{m}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = dare(&["update", "--json"]);
    assert_eq!(out.status.code(), Some(2));
}

/// xorshift bytes: zstd cannot shrink them, so an entry is as big as its file.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.truncate(len);
    out
}

impl Site {
    /// Publishes `version` of one Linux build of `files` (path, content, mode).
    fn publish_files(&self, version: &str, time: u64, files: &[(&str, &[u8], u32)], extra: &[&str]) {
        let build = self.dir.join(format!("files-{version}"));
        for (path, content, mode) in files {
            let p = build.join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, content).unwrap();
            dare_container::fsys::set_mode(&p, *mode).unwrap();
        }
        let artifact = format!("{LINUX}={}", build.display());
        let time = time.to_string();
        let mut args =
            vec!["publish", s(&self.container), "--key", s(&self.key), "--version", version, "--time", &time];
        args.extend(["--artifact", &artifact]);
        args.extend_from_slice(extra);
        ok(&args);
    }
}

fn n(v: &Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or_else(|| panic!("no {field} in {v}"))
}

/// `--json` tells where the bytes of an update came from: whole entries,
/// deltas, or files already installed.
#[test]
fn json_reports_bytes_full_delta_and_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let t = now() - 3600;
    let site = Site::new(tmp.path(), "release", "app.dare", t);
    let app1 = noise(200_000, 1);
    let data = noise(100_000, 2);
    let notes = b"release notes\n".repeat(10);
    site.publish_files(
        "1.0.0",
        t + 60,
        &[("bin/app", &app1, 0o755), ("lib/data.bin", &data, 0o644), ("notes.txt", &notes, 0o644)],
        &[],
    );
    let c = Client::new(tmp.path(), "client");
    let from = s(&site.container);

    // A first install: every file is a whole entry.
    let (code, first, _) = c.json(from, &site.public, LINUX, &[]);
    assert_eq!((code, first["status"].as_str()), (0, Some("updated")), "{first}");
    let content = (app1.len() + data.len()) as u64;
    assert!(n(&first, "bytes_full") > content, "whole entries of incompressible files: {first}");
    assert!(n(&first, "bytes_full") < content + 4096 + notes.len() as u64, "{first}");
    assert_eq!((n(&first, "bytes_delta"), n(&first, "bytes_reused")), (0, 0), "{first}");
    assert_eq!(n(&first, "payload_bytes"), n(&first, "bytes_full"), "{first}");
    assert!(n(&first, "bytes_fetched") >= n(&first, "bytes_full"), "{first}");

    // 1.1.0 changes 100 bytes of bin/app: a delta, and the rest is reused.
    let mut app2 = app1.clone();
    app2[100_000..100_100].copy_from_slice(&noise(100, 3));
    site.publish_files(
        "1.1.0",
        t + 120,
        &[("bin/app", &app2, 0o755), ("lib/data.bin", &data, 0o644), ("notes.txt", &notes, 0o644)],
        &[],
    );
    let (code, second, _) = c.json(from, &site.public, LINUX, &[]);
    assert_eq!((code, second["version"].as_str(), second["previous"].as_str()), (0, Some("1.1.0"), Some("1.0.0")));
    assert_eq!(n(&second, "bytes_full"), 0, "{second}");
    assert!(n(&second, "bytes_delta") > 0 && n(&second, "bytes_delta") < 2000, "a delta for 100 bytes: {second}");
    assert_eq!(n(&second, "bytes_reused"), (data.len() + notes.len()) as u64, "{second}");
    assert_eq!(n(&second, "payload_bytes"), n(&second, "bytes_delta"), "{second}");
    assert!(n(&second, "bytes_fetched") * 10 < n(&first, "bytes_fetched"), "{second} after {first}");
    let installed = c.live();
    assert_eq!(fs::read(installed.join("bin/app")).unwrap(), app2);
    assert_eq!(fs::read(installed.join("lib/data.bin")).unwrap(), data);
    for (p, mode) in [("bin/app", 0o755), ("lib/data.bin", 0o644), ("notes.txt", 0o644)] {
        assert_mode(&installed.join(p), mode);
    }

    // Up to date: nothing fetched but the seal.
    let (_, v, _) = c.json(from, &site.public, LINUX, &[]);
    assert_eq!(v["status"], "up-to-date");
    assert_eq!((n(&v, "bytes_full"), n(&v, "bytes_delta"), n(&v, "bytes_reused")), (0, 0, 0), "{v}");

    // 1.2.0: a new bin/app (no delta is worth storing), the data moved to
    // another path (still reused: found by its digest), new notes.
    let app3 = noise(150_000, 4);
    let notes3 = b"other notes\n".repeat(10);
    site.publish_files(
        "1.2.0",
        t + 180,
        &[("bin/app", &app3, 0o755), ("share/data.bin", &data, 0o644), ("notes.txt", &notes3, 0o644)],
        &[],
    );
    let (code, third, _) = c.json(from, &site.public, LINUX, &[]);
    assert_eq!((code, third["version"].as_str()), (0, Some("1.2.0")), "{third}");
    assert_eq!(n(&third, "bytes_delta"), 0, "{third}");
    assert!(n(&third, "bytes_full") > app3.len() as u64, "{third}");
    assert!(n(&third, "bytes_full") < (app3.len() + 4096) as u64, "{third}");
    assert_eq!(n(&third, "bytes_reused"), data.len() as u64, "{third}");
    assert_eq!(fs::read(c.live().join("share/data.bin")).unwrap(), data);
    assert_eq!(fs::read(c.live().join("notes.txt")).unwrap(), notes3);
    // The human line says the same.
    site.publish_files(
        "1.3.0",
        t + 240,
        &[("bin/app", &app3, 0o755), ("share/data.bin", &data, 0o644), ("notes.txt", b"notes 1.3.0\n", 0o644)],
        &[],
    );
    let out = c.update(from, &site.public, LINUX, &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("updated x86_64-unknown-linux-gnu 1.2.0 -> 1.3.0"), "{text}");
    assert!(text.contains("reused from the installed build"), "{text}");
}

/// A mirror whose bytes were changed where the signatures do not look (the
/// middle of a build's payload) is refused as an attack: exit 3,
/// `bad-digest`, nothing installed; damage nobody signed for is not an I/O
/// failure.
#[test]
fn a_damaged_payload_is_a_bad_digest_and_exits_3() {
    let tmp = tempfile::tempdir().unwrap();
    let t = now() - 3600;
    let site = Site::new(tmp.path(), "release", "app.dare", t);
    site.publish("1.0.0", t + 60, "");
    let scan = dare_container::verify_file(&site.container, &Default::default()).unwrap();
    let index = scan.index("stable", LINUX, Some("1.0.0")).expect("the Linux release");
    let app = index.files.iter().find(|f| f.path == "bin/app").expect("bin/app");
    let entry = scan.entry(app.entry.leaf).expect("its entry");
    let damaged = site.copy("damaged.dare");
    let mut bytes = fs::read(&damaged.container).unwrap();
    bytes[(entry.frame.payload_offset + entry.frame.payload_len / 2) as usize] ^= 0x20;
    fs::write(&damaged.container, bytes).unwrap();

    let fresh = Client::new(tmp.path(), "fresh");
    let (code, v, stderr) = fresh.json(s(&damaged.container), &site.public, LINUX, &[]);
    assert_eq!(
        (code, v["status"].as_str(), v["kind"].as_str(), v["exit_code"].as_u64()),
        (3, Some("error"), Some("bad-digest"), Some(3)),
        "{v}"
    );
    let message = v["error"].as_str().unwrap();
    assert!(message.starts_with("bad digest: ") && message.contains("payload SHA-256"), "{message}");
    assert!(stderr.lines().last() == Some(&format!("error: {message}")), "{stderr}");
    let out = fresh.update(s(&damaged.container), &site.public, LINUX, &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(fresh.current().is_none() && !fresh.state.join("state.json").exists(), "nothing installed or recorded");
    // The undamaged container installs.
    let (code, v, _) = fresh.json(s(&site.container), &site.public, LINUX, &[]);
    assert_eq!((code, v["status"].as_str()), (0, Some("updated")), "{v}");
}

#[test]
fn origin_refuses_another_container_on_first_use() {
    let tmp = tempfile::tempdir().unwrap();
    let t = now() - 3600;
    let site = Site::new(tmp.path(), "release", "app.dare", t);
    site.publish("1.0.0", t + 60, "");
    // The same key signs it, but the client was told to follow another container.
    let fresh = Client::new(tmp.path(), "fresh");
    let elsewhere = ["--origin", "example.com/another-app"];
    let (code, v, _) = fresh.json(s(&site.container), &site.public, LINUX, &elsewhere);
    assert_eq!((code, v["kind"].as_str()), (3, Some("wrong-origin")), "{v}");
    assert!(v["error"].as_str().unwrap().contains("example.com/another-app"), "{v}");
    assert!(!fresh.state.join("state.json").exists() && fresh.current().is_none(), "nothing recorded or installed");
    // Given its own origin, it installs.
    let (code, v, _) = fresh.json(s(&site.container), &site.public, LINUX, &["--origin", ORIGIN]);
    assert_eq!((code, v["status"].as_str()), (0, Some("updated")), "{v}");
}

/// Whether `tool` can be run; a missing tool fails the test under `CI=true`
/// (it must not pass by skipping), else the test skips with `hint`.
#[cfg(unix)]
fn require_tool(tool: &str, hint: &str) -> bool {
    if Command::new(tool).arg("--version").output().is_ok() {
        return true;
    }
    assert!(std::env::var("CI").map_or(true, |v| v != "true"), "{tool} is not installed, and CI=true: {hint}");
    eprintln!("skipped: {tool} is not installed ({hint})");
    false
}

/// `dare update` under a file size limit (`prlimit --fsize`): every write past
/// `limit` bytes of one file fails with EFBIG, as on a full disk.
#[cfg(unix)]
fn update_with_file_size_limit(c: &Client, from: &str, trust: &Path, limit: u64) -> Output {
    // SIGXFSZ ignored (it survives exec), so the write fails instead of killing.
    let script = format!("trap '' XFSZ; exec prlimit --fsize={limit} \"$0\" \"$@\"");
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_dare"))
        .args(["update", "--from", from, "--trust", s(trust), "--state", s(&c.state), "--install", s(&c.install)])
        .args(["--target", LINUX, "--json"])
        .env_remove("DARE_LOG")
        .output()
        .expect("running sh")
}

#[cfg(unix)] // prlimit and sh are Unix programs.
#[test]
fn a_full_disk_is_an_io_error_naming_the_file_not_a_bad_digest() {
    if !require_tool("prlimit", "apt-get install -y util-linux") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = now() - 3600;
    let site = Site::new(tmp.path(), "release", "app.dare", t);
    // One big file (staging it fails under the limit) and small ones (only the replica, of a few
    // KiB, goes past the limit).
    let big = noise(64 * 1024, 7);
    site.publish_files("1.0.0", t + 60, &[("bin/app", &big, 0o755)], &[]);
    let small = Site::new(tmp.path(), "release", "small.dare", t);
    small.publish_files("1.0.0", t + 60, &[("bin/app", b"#!/bin/sh\n", 0o755)], &[]);
    for (site, limit, file) in [(&site, 16 * 1024, "staging"), (&small, 1024, "replica.dare")] {
        let c = Client::new(tmp.path(), &format!("client-{limit}"));
        let out = update_with_file_size_limit(&c, s(&site.container), &site.public, limit);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        assert_eq!((out.status.code(), v["kind"].as_str()), (Some(1), Some("io")), "{v}");
        let m = v["error"].as_str().unwrap();
        assert!(m.contains(file) && m.contains("File too large"), "names the file and the OS error: {m}");
        assert!(!m.contains("digest") && !m.contains("mirror"), "{m}");
        // (A replica that cannot be written comes after the install: the next run repairs it.)
        assert!(!c.state.join("state.json").exists(), "nothing recorded");
        assert!(file == "replica.dare" || c.current().is_none(), "nothing installed");
        println!("{m}");
    }
}

/// Checks the file at `p` has the mode `mode` (on Windows, which keeps only
/// a read-only attribute, what of it Windows keeps).
#[track_caller]
fn assert_mode(p: &Path, mode: u32) {
    let meta = fs::metadata(p).unwrap();
    assert!(dare_container::fsys::mode_matches(&meta, mode), "the mode of {} is not {mode:o}", p.display());
}

/// A `file://` URL of an absolute path: `file:///abs/path`, or on Windows
/// `file:///C:/dir/file`.
fn file_url(path: &Path) -> String {
    let text = path.display().to_string();
    if cfg!(windows) { format!("file:///{}", text.replace('\\', "/")) } else { format!("file://{text}") }
}
