//! `dare keygen --witness` and `dare witness`, as an operator runs them: a
//! witness cosigns a real container's seals over HTTP, keeps its state
//! across restarts, and stops on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dare_container::cosign::{AddCheckpoint, WitnessKey, WitnessSigningKey, parse_cosignature_lines};
use dare_container::note::Note;
use dare_container::verify::ScanOptions;

use crate::support::{Sandbox, T0, app, publish, signing_key};

/// `dare witness --listen 127.0.0.1:0 ARGS...` in the sandbox; the child and
/// the address from its first line.
fn witness(sb: &Sandbox, args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dare"))
        .current_dir(sb.path(""))
        .args(["witness", "--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("DARE_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dare witness starts");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("a first line");
    let addr = line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{line:?}")).to_string();
    (child, addr)
}

/// SIGTERM, then the exit status (killed if it does not stop: a hang guard).
fn stop(mut child: Child) -> std::process::ExitStatus {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        if let Ok(Some(s)) = child.try_wait() {
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    panic!("dare witness did not stop on SIGTERM");
}

/// `POST /add-checkpoint` with `body`; the status, Content-Type and body.
fn post(addr: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect to the witness");
    let head = format!(
        "POST /add-checkpoint HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(&[head.as_bytes(), body].concat()).unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8(reply[..split].to_vec()).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    (status, content_type, reply[split + 4..].to_vec())
}

/// The container's last seal: its checkpoint note, tree size, and the tree.
fn last_seal(container: &Path) -> (Note, u64, dare_container::merkle::MemoryTree) {
    let scan = dare_container::scan_file(container, &ScanOptions::default()).unwrap();
    let note = Note::parse(scan.last_seal.seal.checkpoint.as_bytes()).unwrap();
    (note, scan.last_seal.checkpoint.size, scan.tree)
}

#[test]
fn keygen_witness_writes_a_cosignature_key() {
    let sb = Sandbox::new();
    let run = sb.dare(&["keygen", "--witness", "--out", "w.key", "--name", "witness.example/w1"]);
    run.ok();
    let public = std::fs::read_to_string(sb.path("w.key.pub")).unwrap();
    assert_eq!(run.stdout, public);
    let vkey = WitnessKey::parse(public.trim()).expect("a cosignature/v1 verifier key");
    assert_eq!(vkey.name(), "witness.example/w1");
    // Not a log key: a log verifier key parser refuses it.
    assert!(dare_container::keys::VerifierKey::parse(public.trim()).is_err());
    let secret = std::fs::read_to_string(sb.path("w.key")).unwrap();
    assert!(secret.starts_with("PRIVATE+KEY+witness.example/w1+"));
    assert_eq!(WitnessSigningKey::parse(&secret).unwrap().verifier(), vkey);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(sb.path("w.key")).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let line = sb.dare(&["keygen", "--witness", "--out", "w.key"]).error().to_string();
    assert!(line.contains("already exists"), "{line}");
}

#[test]
fn witness_cosigns_a_containers_seals_and_remembers_them() {
    let sb = Sandbox::new();
    sb.keygen("k");
    sb.dare(&["keygen", "--witness", "--out", "w.key", "--name", "witness.example/w1"]).ok();
    let wkey = WitnessKey::parse(std::fs::read_to_string(sb.path("w.key.pub")).unwrap().trim()).unwrap();
    let container = sb.init("app.dare", "k");
    let log = ["--key", "w.key", "--state", "state", "--log", "example.com/app=k.pub"];
    let (child, addr) = witness(&sb, &log);

    let (note, size, _) = last_seal(&container);
    let first = AddCheckpoint { old_size: 0, proof: vec![], note: note.to_bytes() };
    let (status, _, body) = post(&addr, &first.to_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let sigs = parse_cosignature_lines(&body).unwrap();
    assert!(wkey.verify(note.text(), &sigs[0]).is_some(), "a valid cosignature of the seal");

    // A release later, the next seal with its consistency proof.
    publish(
        &container,
        &signing_key(&sb.path("k")),
        "stable",
        "1.0.0",
        &[("x86_64-unknown-linux-gnu", &[("bin/app", &app("x86_64-unknown-linux-gnu", "1.0.0"))])],
        T0 + 10,
    );
    let (next, next_size, tree) = last_seal(&container);
    assert!(next_size > size);
    let req = AddCheckpoint {
        old_size: size,
        proof: tree.consistency_proof(size, next_size).unwrap(),
        note: next.to_bytes(),
    };
    let (status, _, body) = post(&addr, &req.to_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(wkey.verify(next.text(), &parse_cosignature_lines(&body).unwrap()[0]).is_some());
    // Replaying the first request now is a conflict naming the size cosigned.
    let (status, content_type, body) = post(&addr, &first.to_bytes());
    assert_eq!((status, content_type.as_str()), (409, "text/x.tlog.size"));
    assert_eq!(body, format!("{next_size}\n").into_bytes());
    assert!(stop(child).success());

    // A restarted witness remembers.
    let (child, addr) = witness(&sb, &log);
    let (status, _, body) = post(&addr, &first.to_bytes());
    assert_eq!((status, body), (409, format!("{next_size}\n").into_bytes()));
    // A log it was not told about is unknown to it, even signed by a known key.
    let t = T0.to_string();
    sb.dare(&["init", "other.dare", "--key", "k", "--origin", "example.com/other", "--time", &t]).ok();
    let (other, _, _) = last_seal(&sb.path("other.dare"));
    let (status, _, _) = post(&addr, &AddCheckpoint { old_size: 0, proof: vec![], note: other.to_bytes() }.to_bytes());
    assert_eq!(status, 404);
    assert!(stop(child).success());
}

#[test]
fn witness_refuses_bad_configuration_with_one_line() {
    let sb = Sandbox::new();
    sb.keygen("k");
    sb.dare(&["keygen", "--witness", "--out", "w.key"]).ok();
    // A log key where the witness key belongs.
    let line =
        sb.dare(&["witness", "--key", "k", "--state", "s", "--log", "example.com/app=k.pub"]).error().to_string();
    assert!(line.contains("witness key") && line.contains("dare keygen --witness"), "{line}");
    // A witness key where a log key belongs.
    let line = sb
        .dare(&["witness", "--key", "w.key", "--state", "s", "--log", "example.com/app=w.key.pub"])
        .error()
        .to_string();
    assert!(line.contains("--log example.com/app") && line.contains("the log's verifier key"), "{line}");
    // A private key given as a log key is refused without echoing it.
    let secret = std::fs::read_to_string(sb.path("k")).unwrap();
    let arg = format!("example.com/app={}", secret.trim());
    let line = sb.dare(&["witness", "--key", "w.key", "--state", "s", "--log", &arg]).error().to_string();
    assert!(!line.contains(secret.trim()) && line.contains("private"), "{line}");
    // Not ORIGIN=PUB.
    let line = sb.dare(&["witness", "--key", "w.key", "--state", "s", "--log", "k.pub"]).error().to_string();
    assert!(line.contains("ORIGIN=PUB"), "{line}");
    // No --log at all is a usage error.
    assert_eq!(sb.dare(&["witness", "--key", "w.key", "--state", "s"]).code, 2);
}
