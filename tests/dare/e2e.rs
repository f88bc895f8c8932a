//! The whole product over loopback: `dare publish` -> `dare serve` (or nginx)
//! -> `dare update`, a mirror syncing from an origin, and what a mirror
//! refuses.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Sandbox, T0};

/// A `dare serve` process, stopped (SIGTERM) when dropped.
struct Served {
    child: Child,
    addr: String,
}

impl Served {
    /// `dare serve DIR --listen 127.0.0.1:0 EXTRA...`, run in DIR's parent (the sandbox).
    fn start(dir: &Path, extra: &[&str]) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dare"))
            .current_dir(dir.parent().expect("a sandbox"))
            .arg("serve")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dare serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("a first line");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("the first line says where: {line:?}"))
            .to_string();
        Served { child, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        terminate(&self.child);
        let status = wait(&mut self.child, Duration::from_secs(10)).expect("dare serve stops on SIGTERM");
        std::mem::forget(self);
        status
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        terminate(&self.child);
        if wait(&mut self.child, Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn terminate(child: &Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
}

fn wait(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A plain HTTP/1.1 GET: (status, body).
fn get(url: &str) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).expect("a path");
    let mut s = TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("a response");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("headers end");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("a status");
    (status, raw[split + 4..].to_vec())
}

/// Waits until `f` holds, or panics after `limit`.
fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const TARGETS: [&str; 3] = ["x86_64-unknown-linux-gnu", "aarch64-apple-darwin", "x86_64-pc-windows-msvc"];

/// A build directory per target for `version`: an executable and a README.
fn builds(sb: &Sandbox, version: &str) -> Vec<String> {
    TARGETS
        .iter()
        .map(|t| {
            let dir = sb.path(&format!("build/{version}/{t}"));
            std::fs::create_dir_all(dir.join("bin")).unwrap();
            let body: Vec<u8> = (0..200_000u32).flat_map(|i| format!("{t} {version} {i}\n").into_bytes()).collect();
            let exe = dir.join("bin/app");
            std::fs::write(&exe, body).unwrap();
            std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            std::fs::write(dir.join("README"), format!("{t} {version}\n")).unwrap();
            format!("{t}={}", dir.display())
        })
        .collect()
}

fn publish(sb: &Sandbox, container: &Path, version: &str, time: u64) {
    publish_signed(sb, container, version, time, "k");
}

fn publish_signed(sb: &Sandbox, container: &Path, version: &str, time: u64, key: &str) {
    let mut args: Vec<String> = vec![
        "publish".into(),
        container.display().to_string(),
        "--key".into(),
        key.into(),
        "--version".into(),
        version.into(),
        "--time".into(),
        time.to_string(),
    ];
    for a in builds(sb, version) {
        args.push("--artifact".into());
        args.push(a);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    sb.dare(&refs).ok();
}

/// `dare update` for the first target from `url`, with generous freshness (the test times are fixed).
fn update(sb: &Sandbox, url: &str, client: &str, check: bool) -> serde_json::Value {
    let state = format!("{client}/state");
    let install = format!("{client}/install");
    let mut args = vec![
        "update",
        "--from",
        url,
        "--trust",
        "k.pub",
        "--state",
        &state,
        "--install",
        &install,
        "--target",
        TARGETS[0],
        "--max-age",
        "4000000000",
        "--json",
    ];
    if check {
        args.push("--check");
    }
    let run = sb.dare(&args);
    run.ok();
    run.json()
}

fn installed(sb: &Sandbox, client: &str) -> PathBuf {
    sb.path(&format!("{client}/install/current"))
}

fn setup() -> (Sandbox, PathBuf) {
    let sb = Sandbox::new();
    sb.keygen("k");
    std::fs::create_dir_all(sb.path("www")).unwrap();
    let c = sb.init("www/app.dare", "k");
    publish(&sb, &c, "1.0.0", T0 + 1);
    (sb, c)
}

#[test]
fn publish_serve_update_and_publish_again_while_serving() {
    let (sb, container) = setup();
    let server = Served::start(&sb.path("www"), &[]);
    let url = server.url("/app.dare");

    let o = update(&sb, &url, "client", false);
    assert_eq!(
        (o["status"].as_str(), o["version"].as_str(), o["previous"].is_null()),
        (Some("updated"), Some("1.0.0"), true)
    );
    // At most 4 round trips: the seal; the map and manifest; the index and
    // its proof; the contents.
    assert!(o["requests"].as_u64().unwrap() <= 4, "{o}");
    // A first install: whole entries only.
    let n = |o: &serde_json::Value, f: &str| o[f].as_u64().unwrap_or_else(|| panic!("no {f}: {o}"));
    assert!(n(&o, "bytes_full") > 0, "{o}");
    assert_eq!((n(&o, "bytes_delta"), n(&o, "bytes_reused")), (0, 0), "{o}");
    assert_eq!(n(&o, "payload_bytes"), n(&o, "bytes_full"), "{o}");
    let exe = installed(&sb, "client").join("bin/app");
    assert_eq!(
        std::fs::read(&exe).unwrap(),
        std::fs::read(sb.path(&format!("build/1.0.0/{}/bin/app", TARGETS[0]))).unwrap()
    );

    // The publisher appends while the mirror serves the same file.
    publish(&sb, &container, "1.1.0", T0 + 2);
    assert_eq!(update(&sb, &url, "client", true)["status"], "available");
    let o = update(&sb, &url, "client", false);
    assert_eq!(
        (o["status"].as_str(), o["version"].as_str(), o["previous"].as_str()),
        (Some("updated"), Some("1.1.0"), Some("1.0.0"))
    );
    assert_eq!(n(&o, "payload_bytes"), n(&o, "bytes_full") + n(&o, "bytes_delta"), "{o}");
    assert!(n(&o, "payload_bytes") > 0, "{o}");
    let o = update(&sb, &url, "client", false);
    assert_eq!((o["status"].as_str(), o["requests"].as_u64()), (Some("up-to-date"), Some(1)), "{o}");

    // The tlog endpoints follow the container.
    let (status, note) = get(&server.url("/app.dare/checkpoint"));
    assert_eq!(status, 200);
    let note = String::from_utf8(note).unwrap();
    assert!(note.starts_with("example.com/app\n"), "{note}");
    let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
    eventually(Duration::from_secs(90), "the checkpoint of the second release", || {
        let (_, n) = get(&server.url("/app.dare/checkpoint"));
        String::from_utf8_lossy(&n).lines().nth(1).and_then(|l| l.parse::<u64>().ok()).is_some_and(|s| s >= size)
    });
    let (status, tile) = get(&server.url(&format!("/app.dare/tile/0/000.p/{}", size.min(255))));
    assert_eq!((status, tile.len() as u64), (200, size.min(255) * 32));

    // The client's replica verifies on its own.
    sb.dare(&["verify", "client/state/replica.dare"]).ok();
    assert!(server.stop().success(), "dare serve exits 0 on SIGTERM");
}

#[test]
fn a_mirror_syncs_from_an_origin_and_clients_update_from_it() {
    let (sb, origin_file) = setup();
    let origin = Served::start(&sb.path("www"), &[]);
    std::fs::create_dir_all(sb.path("mirror")).unwrap();
    let upstream = origin.url("/app.dare");
    let mirror =
        Served::start(&sb.path("mirror"), &["--upstream", &upstream, "--sync-interval", "1", "--trust", "k.pub"]);
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);

    eventually(Duration::from_secs(30), "the first sync", || len(&sb.path("mirror/app.dare")) == len(&origin_file));
    let o = update(&sb, &mirror.url("/app.dare"), "client", false);
    assert_eq!(o["version"], "1.0.0");

    publish(&sb, &origin_file, "1.1.0", T0 + 2);
    eventually(Duration::from_secs(30), "the sync of 1.1.0", || len(&sb.path("mirror/app.dare")) == len(&origin_file));
    assert_eq!(std::fs::read(sb.path("mirror/app.dare")).unwrap(), std::fs::read(&origin_file).unwrap());
    let o = update(&sb, &mirror.url("/app.dare"), "client", false);
    assert_eq!((o["status"].as_str(), o["version"].as_str()), (Some("updated"), Some("1.1.0")));
    sb.dare(&["verify", "mirror/app.dare"]).ok();
}

#[test]
fn a_mirror_and_its_clients_follow_a_key_rotation_that_removes_the_old_key() {
    let (sb, origin_file) = setup();
    sb.keygen("n");
    let origin = Served::start(&sb.path("www"), &[]);
    std::fs::create_dir_all(sb.path("mirror")).unwrap();
    let mirror = Served::start(
        &sb.path("mirror"),
        &["--upstream", &origin.url("/app.dare"), "--sync-interval", "1", "--trust", "k.pub"],
    );
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    eventually(Duration::from_secs(30), "the first sync", || len(&sb.path("mirror/app.dare")) == len(&origin_file));
    assert_eq!(update(&sb, &mirror.url("/app.dare"), "client", false)["version"], "1.0.0");

    // k hands over to n, which alone signs from then on.
    let c = origin_file.display().to_string();
    let t = (T0 + 2).to_string();
    sb.dare(&["keys", "rotate", &c, "--key", "k", "--key", "n", "--new-trust", "n.pub", "--time", &t]).ok();
    publish_signed(&sb, &origin_file, "1.1.0", T0 + 3, "n");
    eventually(Duration::from_secs(30), "the sync through the rotation", || {
        len(&sb.path("mirror/app.dare")) == len(&origin_file)
    });
    assert_eq!(std::fs::read(sb.path("mirror/app.dare")).unwrap(), std::fs::read(&origin_file).unwrap());
    // The client, which trusts k, walks the rotation and installs 1.1.0.
    let o = update(&sb, &mirror.url("/app.dare"), "client", false);
    assert_eq!((o["version"].as_str(), o["rotations"].as_u64()), (Some("1.1.0"), Some(1)), "{o}");
    // And the mirror, restarted, keeps following from the rotated root.
    drop(mirror);
    let mirror = Served::start(&sb.path("mirror"), &["--upstream", &origin.url("/app.dare"), "--sync-interval", "1"]);
    sb.dare(&["seal", &c, "--key", "n", "--time", &(T0 + 4).to_string()]).ok();
    eventually(Duration::from_secs(30), "the sync of a heartbeat", || {
        len(&sb.path("mirror/app.dare")) == len(&origin_file)
    });
    let o = update(&sb, &mirror.url("/app.dare"), "client", false);
    assert_eq!((o["status"].as_str(), o["rotations"].as_u64()), (Some("up-to-date"), Some(0)), "{o}");
}

#[test]
fn a_mirror_refuses_a_tampered_or_rolled_back_upstream() {
    let (sb, origin_file) = setup();
    let good = std::fs::read(&origin_file).unwrap();
    // The next release, with one byte of its last entry's payload flipped.
    publish(&sb, &origin_file, "1.1.0", T0 + 2);
    let full = std::fs::read(&origin_file).unwrap();
    let mut tampered = full.clone();
    let at = good.len() + 400;
    tampered[at] ^= 0x40;
    std::fs::write(&origin_file, &tampered).unwrap();

    std::fs::create_dir_all(sb.path("seed")).unwrap();
    std::fs::write(sb.path("seed/app.dare"), &good).unwrap();
    std::fs::create_dir_all(sb.path("mirror")).unwrap();
    std::fs::write(sb.path("mirror/app.dare"), &good).unwrap();
    let origin = Served::start(&sb.path("www"), &[]);
    let mirror = Served::start(&sb.path("mirror"), &["--upstream", &origin.url("/app.dare"), "--sync-interval", "1"]);
    // Several sync rounds pass; the mirror keeps serving only what it verified.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(std::fs::read(sb.path("mirror/app.dare")).unwrap(), good, "nothing unverified was appended");
    let (status, body) = get(&mirror.url("/app.dare"));
    assert_eq!((status, body.len()), (200, good.len()));
    assert_eq!(update(&sb, &mirror.url("/app.dare"), "client", false)["version"], "1.0.0");

    // Once the upstream serves the real release, the mirror follows it.
    std::fs::write(&origin_file, &full).unwrap();
    eventually(Duration::from_secs(30), "the sync of the untampered release", || {
        std::fs::read(sb.path("mirror/app.dare")).unwrap() == full
    });

    // An upstream that went back to an older file is refused.
    std::fs::write(&origin_file, &good).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(std::fs::read(sb.path("mirror/app.dare")).unwrap(), full, "the mirror did not go back");
    assert_eq!(update(&sb, &mirror.url("/app.dare"), "client", false)["version"], "1.1.0");
    drop(mirror);
}

/// Several workers serve one address; a second server on that address is
/// refused rather than handed a share of the connections.
#[test]
fn workers_serve_one_address_and_a_second_server_is_refused() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("www")).unwrap();
    std::fs::write(sb.path("www/a.txt"), b"hello\n").unwrap();
    let server = Served::start(&sb.path("www"), &["--workers", "4"]);
    for _ in 0..40 {
        assert_eq!(get(&server.url("/a.txt")), (200, b"hello\n".to_vec()));
    }
    for workers in ["1", "3"] {
        let mut second = Command::new(env!("CARGO_BIN_EXE_dare"))
            .args(["serve", "www", "--listen", &server.addr, "--workers", workers])
            .current_dir(sb.path(""))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let Some(status) = wait(&mut second, Duration::from_secs(10)) else {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second server on {} with {workers} worker(s) started", server.addr);
        };
        let mut stderr = String::new();
        second.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("Address already in use"), "{stderr}");
    }
    assert_eq!(get(&server.url("/a.txt")).0, 200);
    assert!(server.stop().success(), "dare serve exits 0 on SIGTERM");
}

/// nginx as the mirror, when it is installed (`.ci/run` installs it); under
/// CI (`CI=true`) a missing nginx fails the test instead of skipping it.
#[test]
fn publish_then_update_through_nginx() {
    let Some(nginx) = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().find(|p| Path::new(p).exists()) else {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "nginx is not installed, and CI=true: apt-get install -y nginx"
        );
        eprintln!("nginx is not installed: skipping (apt-get install -y nginx)");
        return;
    };
    let (sb, container) = setup();
    let root = sb.path("");
    // nginx's workers run as another user: make the files readable.
    for p in [root.as_path(), &sb.path("www"), &container] {
        let mode = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let conf = sb.path("nginx.conf");
    let w = root.display();
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1; pid {w}/nginx.pid; error_log {w}/nginx-error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; client_body_temp_path {w}; proxy_temp_path {w}; fastcgi_temp_path {w};\n\
               uwsgi_temp_path {w}; scgi_temp_path {w};\n\
               server {{ listen 127.0.0.1:{port}; root {w}/www; location / {{ }} }} }}\n"
        ),
    )
    .unwrap();
    let started = Command::new(nginx)
        .args(["-c"])
        .arg(&conf)
        .args(["-p"])
        .arg(&root)
        .arg("-e")
        .arg(sb.path("nginx-error.log"))
        .status()
        .unwrap();
    assert!(
        started.success(),
        "nginx starts: {}",
        std::fs::read_to_string(sb.path("nginx-error.log")).unwrap_or_default()
    );
    let stop = || {
        if let Ok(pid) = std::fs::read_to_string(sb.path("nginx.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let url = format!("http://127.0.0.1:{port}/app.dare");
        let o = update(&sb, &url, "client", false);
        assert_eq!((o["status"].as_str(), o["version"].as_str()), (Some("updated"), Some("1.0.0")));
        publish(&sb, &container, "1.1.0", T0 + 2);
        std::fs::set_permissions(&container, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        let o = update(&sb, &url, "client", false);
        assert_eq!((o["status"].as_str(), o["version"].as_str()), (Some("updated"), Some("1.1.0")));
        assert!(o["requests"].as_u64().unwrap() <= 4, "{o}");
        assert_eq!(update(&sb, &url, "client", false)["requests"], 1);
    }));
    stop();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// `dare demo --dir D`: the whole product in one command, and what it leaves
/// behind verifies.
#[test]
fn the_demo_runs_and_leaves_containers_that_verify() {
    let sb = Sandbox::new();
    let run = sb.dare(&["demo", "--dir", "demo"]);
    run.ok();
    let out = &run.stdout;
    for step in
        ["1. keygen + init", "2. publish 1.0.0", "3. serve", "4. update", "5. publish 1.1.0", "6. update", "7. update"]
    {
        assert!(out.contains(step), "no `{step}` in\n{out}");
    }
    // The second update fetched deltas and reused installed files.
    let after = |step: &str| {
        let lines: Vec<&str> = out.lines().collect();
        let i = lines.iter().position(|l| l.starts_with(step)).unwrap_or_else(|| panic!("{step}: {out}"));
        lines[i + 1].to_string()
    };
    let second = after("6. update");
    assert!(second.contains("of deltas") && !second.contains(" 0 B of deltas"), "{second}");
    assert!(second.contains("reused") && !second.contains("reused 0 B"), "{second}");
    assert!(after("7. update").starts_with("   fetched"), "{out}");
    assert!(out.contains("7. update") && out.contains("is up to date"), "{out}");
    sb.dare(&["verify", "demo/mirror/app.dare"]).ok();
    sb.dare(&["verify", "demo/client/state/replica.dare"]).ok();
    let ls = sb.dare(&["ls", "demo/mirror/app.dare", "--json"]).json();
    let releases = ls["releases"].as_array().unwrap();
    assert!(!releases.is_empty());
    for r in releases.iter().filter(|r| r["version"] == "1.1.0") {
        assert!(r["shared_files"].as_u64().unwrap() > 0, "{r}");
        assert!(r["deltas"].as_u64().unwrap() > 0, "{r}");
    }
    let current = std::fs::read_link(sb.path("demo/client/install/current")).unwrap();
    assert!(current.ends_with("1.1.0"), "{}", current.display());
}

/// Rewrites the container's last seal with `lines` appended to its note's
/// signature lines: what a container looks like once cosigners (witnesses)
/// added their lines to the publisher's. The publisher's own signature still
/// covers the unchanged checkpoint text.
fn add_seal_lines(container: &Path, lines: &str) {
    use dare_container::header::Header;
    let mut bytes = std::fs::read(container).unwrap();
    let (info, header) = crate::support::frames(&bytes).pop().expect("a frame");
    let Header::Seal(mut seal) = header else { panic!("the last frame is a seal") };
    seal.checkpoint.push_str(lines);
    let header = Header::Seal(seal).to_bytes().expect("a valid seal");
    bytes.truncate(usize::try_from(info.offset).unwrap());
    bytes.extend(dare_container::frame::encode_frame(&header, b"").expect("a frame"));
    std::fs::write(container, bytes).unwrap();
}

/// Signature lines of keys the client does not trust, malformed in the ways
/// signed-note leaves to the verifier: non-canonical base64 (unused bits
/// set), a 3-byte payload, a name with a `+`.
const FOREIGN_MALFORMED: &str = "— witness.example/a AAAAAQF=\n— witness.example/b AQID\n— Bad+Name AAAAAQE=\n";

/// `n` cosignature lines the size of timestamped ML-DSA-87 ones (key ID,
/// 8-byte timestamp, 4627-byte signature), from keys the client does not
/// trust.
fn post_quantum_lines(n: u32) -> String {
    use base64::Engine as _;
    (0..n)
        .map(|i| {
            let raw: Vec<u8> = (0..4 + 8 + 4627u32).map(|b| (b * 31 + i * 7) as u8).collect();
            format!("— witness{i}.example/pq {}\n", base64::engine::general_purpose::STANDARD.encode(raw))
        })
        .collect()
}

#[test]
fn a_seal_with_malformed_foreign_signature_lines_verifies_and_updates() {
    let (sb, container) = setup();
    add_seal_lines(&container, FOREIGN_MALFORMED);
    sb.dare(&["verify", "www/app.dare"]).ok();
    let o = update(&sb, "www/app.dare", "client", false);
    assert_eq!((o["status"].as_str(), o["version"].as_str()), (Some("updated"), Some("1.0.0")), "{o}");
    // The publisher appends after such a seal, and a client follows.
    publish(&sb, &container, "1.1.0", T0 + 2);
    add_seal_lines(&container, FOREIGN_MALFORMED);
    sb.dare(&["verify", "www/app.dare"]).ok();
    let o = update(&sb, "www/app.dare", "client", false);
    assert_eq!((o["status"].as_str(), o["version"].as_str()), (Some("updated"), Some("1.1.0")), "{o}");
}

#[test]
fn seals_with_sixteen_post_quantum_cosignatures_verify_serve_sync_and_update() {
    let (sb, container) = setup();
    let lines = post_quantum_lines(16);
    assert!(lines.len() > 96 * 1024, "{} bytes of cosignatures", lines.len());
    add_seal_lines(&container, &lines);
    publish(&sb, &container, "1.1.0", T0 + 2);
    add_seal_lines(&container, &lines);
    sb.dare(&["verify", "www/app.dare"]).ok();

    // From a path and from `dare serve`, a new client and one that knows
    // the previous (large) seal.
    let o = update(&sb, "www/app.dare", "path-client", false);
    assert_eq!((o["status"].as_str(), o["version"].as_str()), (Some("updated"), Some("1.1.0")), "{o}");
    let origin = Served::start(&sb.path("www"), &[]);
    let o = update(&sb, &origin.url("/app.dare"), "client", false);
    assert_eq!((o["status"].as_str(), o["version"].as_str()), (Some("updated"), Some("1.1.0")), "{o}");
    let o = update(&sb, &origin.url("/app.dare"), "client", false);
    assert_eq!(o["status"], "up-to-date", "{o}");

    // A mirror syncs it from the origin and serves it.
    std::fs::create_dir_all(sb.path("mirror")).unwrap();
    let mirror = Served::start(
        &sb.path("mirror"),
        &["--upstream", &origin.url("/app.dare"), "--sync-interval", "1", "--trust", "k.pub"],
    );
    let whole = std::fs::read(&container).unwrap();
    eventually(Duration::from_secs(30), "the sync", || {
        std::fs::read(sb.path("mirror/app.dare")).is_ok_and(|b| b == whole)
    });
    let o = update(&sb, &mirror.url("/app.dare"), "mirror-client", false);
    assert_eq!((o["status"].as_str(), o["version"].as_str()), (Some("updated"), Some("1.1.0")), "{o}");
    sb.dare(&["verify", "mirror/app.dare"]).ok();
}

/// A private release of every target for `version`, sealed to the recipient in `id.pub`.
fn publish_private(sb: &Sandbox, container: &Path, version: &str, time: u64) {
    let recipient = std::fs::read_to_string(sb.path("id.pub")).unwrap();
    let mut args: Vec<String> = ["publish", &container.display().to_string(), "--key", "k", "--version", version]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--channel".into(), "internal".into(), "--time".into(), time.to_string()]);
    args.extend(["--encrypt-to".into(), recipient.trim().to_string(), "--identity".into(), "id".into()]);
    for a in builds(sb, version) {
        args.push("--artifact".into());
        args.push(a);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    sb.dare(&refs).ok();
}

#[test]
fn a_mirror_syncs_and_verifies_a_private_channel_without_any_key() {
    let (sb, origin_file) = setup();
    let id = dare_container::crypt::Identities::generate();
    std::fs::write(sb.path("id"), id.to_file_text()).unwrap();
    std::fs::write(sb.path("id.pub"), format!("{}\n", id.recipients().to_strings()[0])).unwrap();
    publish_private(&sb, &origin_file, "2.0.0", T0 + 2);
    let origin = Served::start(&sb.path("www"), &[]);
    std::fs::create_dir_all(sb.path("mirror")).unwrap();
    // The mirror has the signing key's public half only: no identity.
    let mirror = Served::start(
        &sb.path("mirror"),
        &["--upstream", &origin.url("/app.dare"), "--sync-interval", "1", "--trust", "k.pub"],
    );
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    eventually(Duration::from_secs(30), "the first sync", || len(&sb.path("mirror/app.dare")) == len(&origin_file));
    publish_private(&sb, &origin_file, "2.1.0", T0 + 3);
    eventually(Duration::from_secs(30), "the sync of 2.1.0", || len(&sb.path("mirror/app.dare")) == len(&origin_file));
    assert_eq!(std::fs::read(sb.path("mirror/app.dare")).unwrap(), std::fs::read(&origin_file).unwrap());
    let run = sb.dare(&["verify", "mirror/app.dare", "--trust", "k.pub"]);
    run.ok();
    let ls = sb.dare(&["ls", "mirror/app.dare", "--channel", "internal"]);
    ls.ok();
    assert!(ls.stdout.contains("private (listing encrypted"), "{}", ls.stdout);
    drop(mirror);
}
