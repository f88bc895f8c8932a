//! Witnesses end to end: `dare publish` and `dare seal` with `--witness`
//! collect C2SP cosignatures before the seal is written, and `dare update
//! --witness` requires them. A witness that is down, or that refuses a fork,
//! fails the publish clearly and leaves the container as it was.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use dare_container::cosign::{AddCheckpoint, WitnessPolicy, WitnessSigningKey, cosignature_lines};
use dare_container::keys::VerifierKey;
use dare_container::merkle::{Hash, verify_consistency};
use dare_container::note::{Checkpoint, Note};
use dare_container::verify::ScanOptions;

use crate::support::{LINUX, Run, Sandbox, T0, app};

const ORIGIN: &str = "example.com/app";

/// A C2SP tlog-witness for one log, on 127.0.0.1:0: it keeps the tree it
/// last cosigned and cosigns a checkpoint signed by the log's key only with
/// a consistency proof from that tree (409 with its size when `old` is not
/// it, 422 for a proof that does not verify, 403 for a bad log signature).
struct Witness {
    key: WitnessSigningKey,
    addr: String,
    /// The tree it holds: size and root.
    state: Arc<Mutex<(u64, Hash)>>,
    down: Arc<AtomicBool>,
}

impl Witness {
    fn start(seed: u8, log: VerifierKey) -> Witness {
        let key = WitnessSigningKey::from_seed(&format!("witness{seed}.example"), [seed; 32]).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new((0u64, [0u8; 32])));
        let down = Arc::new(AtomicBool::new(false));
        let (k, st, d) = (key.clone(), state.clone(), down.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if d.load(Ordering::SeqCst) {
                    // A witness that is down: the connection is dropped unanswered.
                    drop(conn);
                    continue;
                }
                let _ = serve(conn, &k, &log, &st);
            }
        });
        Witness { key, addr, state, down }
    }

    /// `VKEY=URL` for `--witness`.
    fn flag(&self) -> String {
        format!("{}=http://{}", self.key.verifier(), self.addr)
    }

    /// The verifier key, as `dare update --witness` takes it.
    fn public(&self) -> String {
        self.key.verifier().to_string()
    }

    fn size(&self) -> u64 {
        self.state.lock().unwrap().0
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

fn serve(
    conn: TcpStream,
    key: &WitnessSigningKey,
    log: &VerifierKey,
    state: &Mutex<(u64, Hash)>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut len = 0usize;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let post = line.starts_with("POST /add-checkpoint ");
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    let (status, ctype, out) = if post { answer(&body, key, log, state) } else { (404, "text/plain", vec![]) };
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        out.len()
    )?;
    conn.write_all(&out)
}

fn answer(
    body: &[u8],
    key: &WitnessSigningKey,
    log: &VerifierKey,
    state: &Mutex<(u64, Hash)>,
) -> (u16, &'static str, Vec<u8>) {
    let Ok(req) = AddCheckpoint::parse(body) else { return (400, "text/plain", b"bad body".to_vec()) };
    let Ok(note) = Note::parse(&req.note) else { return (400, "text/plain", b"bad note".to_vec()) };
    if note.verify_with(std::slice::from_ref(log), 1).is_err() {
        return (403, "text/plain", vec![]);
    }
    let Ok(cp) = Checkpoint::parse(note.text()) else { return (403, "text/plain", vec![]) };
    if cp.origin != ORIGIN {
        return (404, "text/plain", vec![]);
    }
    let mut held = state.lock().unwrap();
    if req.old_size != held.0 {
        return (409, "text/x.tlog.size", format!("{}\n", held.0).into_bytes());
    }
    if req.old_size > cp.size {
        return (400, "text/plain", vec![]);
    }
    let consistent = match req.old_size {
        0 => true,
        m if m == cp.size => held.1 == cp.root && req.proof.is_empty(),
        m => verify_consistency(m, cp.size, &held.1, &cp.root, &req.proof).is_ok(),
    };
    if !consistent {
        return (422, "text/plain", vec![]);
    }
    *held = (cp.size, cp.root);
    (200, "text/plain", cosignature_lines(&[key.cosign(note.text(), T0 + 1)]))
}

/// A witness address nothing listens on.
fn dead_address() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// A sandbox with a release key and a container made by `dare init`.
struct Site {
    sb: Sandbox,
    log: VerifierKey,
    container: PathBuf,
}

impl Site {
    fn new() -> Site {
        let sb = Sandbox::new();
        let (_, public) = sb.keygen("release.key");
        let container = sb.init("app.dare", "release.key");
        Site { sb, log: VerifierKey::parse(&public).unwrap(), container }
    }

    /// `dare publish VERSION` of one Linux build (whose content `tag` picks)
    /// signed at `time`, with `extra` flags.
    fn publish(&self, container: &str, version: &str, tag: &str, time: u64, extra: &[String]) -> Run {
        let dir = self.sb.path(&format!("build-{version}-{tag}"));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("bin/app"), app(LINUX, tag)).unwrap();
        dare_container::fsys::set_mode(&dir.join("bin/app"), 0o755).unwrap();
        let artifact = format!("{LINUX}={}", dir.display());
        let t = time.to_string();
        let mut args = vec!["publish", container, "--key", "release.key", "--version", version];
        args.extend(["--artifact", &artifact, "--time", &t]);
        args.extend(extra.iter().map(String::as_str));
        self.sb.dare(&args)
    }

    fn update(&self, state: &str, extra: &[String]) -> Run {
        let install = format!("{state}-install");
        let mut args = vec!["update", "--from", "app.dare", "--trust", "release.key.pub", "--state", state];
        args.extend(["--install", &install, "--target", LINUX, "--max-age", "1000000000"]);
        args.extend(extra.iter().map(String::as_str));
        self.sb.dare(&args)
    }
}

fn witness_flags(ws: &[&Witness]) -> Vec<String> {
    ws.iter().flat_map(|w| ["--witness".to_string(), w.flag()]).collect()
}

/// The last seal's checkpoint note of a container.
fn last_note(container: &Path) -> Note {
    let scan = dare_container::verify_file(container, &ScanOptions::full()).expect("the container verifies");
    Note::parse(scan.last_seal.seal.checkpoint.as_bytes()).unwrap()
}

fn cosigned_by(container: &Path, ws: &[&Witness]) -> usize {
    let policy = WitnessPolicy::new(ws.iter().map(|w| w.key.verifier()).collect(), 1).unwrap();
    policy.check(&last_note(container)).map_or(0, |v| v.len())
}

#[test]
fn a_publish_is_cosigned_by_every_witness() {
    let site = Site::new();
    let ws: Vec<Witness> = (1..=3).map(|i| Witness::start(i, site.log.clone())).collect();
    let refs: Vec<&Witness> = ws.iter().collect();
    let mut flags = witness_flags(&refs);
    flags.push("--json".into());
    let run = site.publish("app.dare", "1.0.0", "a", T0 + 10, &flags);
    run.ok();
    assert_eq!(run.json()["cosignatures"], 3, "{}", run.stdout);
    let note = last_note(&site.container);
    // The publisher's signature and three cosignatures that verify.
    assert_eq!(note.signatures().len(), 4);
    assert_eq!(cosigned_by(&site.container, &refs), 3);
    let size = Checkpoint::parse(note.text()).unwrap().size;
    assert!(ws.iter().all(|w| w.size() == size));
    // The next publish sends a proof from that tree; each witness checks it.
    site.publish("app.dare", "1.1.0", "b", T0 + 20, &witness_flags(&refs)).ok();
    assert_eq!(cosigned_by(&site.container, &refs), 3);
    // A heartbeat is cosigned too.
    let mut args = vec!["seal".to_string(), "app.dare".into(), "--key".into(), "release.key".into()];
    args.extend(["--time".into(), (T0 + 30).to_string()]);
    args.extend(witness_flags(&refs));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = site.sb.dare(&args);
    run.ok();
    assert!(run.stdout.contains("cosigned by 3 witness(es)"), "{}", run.stdout);
    assert_eq!(cosigned_by(&site.container, &refs), 3);
    assert_eq!(Checkpoint::parse(last_note(&site.container).text()).unwrap().time, Some(T0 + 30));
}

#[test]
fn a_client_requires_its_threshold_of_witnesses() {
    let site = Site::new();
    let ws: Vec<Witness> = (1..=3).map(|i| Witness::start(i, site.log.clone())).collect();
    ws[2].set_down(true);
    let refs: Vec<&Witness> = ws.iter().collect();
    let mut flags = witness_flags(&refs);
    flags.extend(["--witness-threshold".into(), "2".into()]);
    site.publish("app.dare", "1.0.0", "a", T0 + 10, &flags).ok();
    assert_eq!(cosigned_by(&site.container, &refs), 2);

    let client = |k: usize| -> Vec<String> {
        let mut f: Vec<String> = ws.iter().flat_map(|w| ["--witness".to_string(), w.public()]).collect();
        f.extend(["--witness-threshold".into(), k.to_string()]);
        f
    };
    // Two of three: installed.
    let run = site.update("two", &client(2));
    run.ok();
    assert!(site.sb.path("two-install/current").exists());
    // Three of three: refused as a verification failure, nothing installed.
    let mut three = client(3);
    three.push("--json".into());
    let run = site.update("three", &three);
    let line = run.refused().to_string();
    assert!(line.contains("witness"), "{line}");
    assert_eq!(run.json()["kind"], "witness");
    assert!(!site.sb.path("three-install/current").exists());
    // `--check` refuses it too.
    let mut check = client(3);
    check.push("--check".into());
    let run = site.update("check", &check);
    assert!(run.refused().contains("witness"), "{}", run.stderr);
    // A witness key file works as well as its text.
    std::fs::write(site.sb.path("w1.pub"), format!("{}\n", ws[0].public())).unwrap();
    let run = site.update("file", &["--witness".into(), "w1.pub".into()]);
    run.ok();
}

#[test]
fn a_witness_refuses_a_fork_before_any_client_sees_it() {
    let site = Site::new();
    let w = Witness::start(1, site.log.clone());
    site.publish("app.dare", "1.0.0", "a", T0 + 10, &witness_flags(&[&w])).ok();
    // A copy of the container as it was, then the real next release.
    std::fs::copy(&site.container, site.sb.path("copy.dare")).unwrap();
    site.publish("app.dare", "1.1.0", "b", T0 + 20, &witness_flags(&[&w])).ok();
    let held = w.size();
    // Another 1.1.0 on the copy: the split view the witness must not cosign.
    let before = std::fs::read(site.sb.path("copy.dare")).unwrap();
    let run = site.publish("copy.dare", "1.1.0", "evil", T0 + 20, &witness_flags(&[&w]));
    let line = run.error();
    assert!(line.contains("witness1.example") && line.contains("fork"), "{line}");
    assert!(line.contains("0 of 1 witnesses cosigned"), "{line}");
    assert_eq!(std::fs::read(site.sb.path("copy.dare")).unwrap(), before, "the copy is unchanged");
    assert!(!dare_container::pending_path(&site.sb.path("copy.dare")).exists());
    assert_eq!(w.size(), held, "the witness still holds the real tree");
    // And a client requiring the witness never sees the fork: the copy's
    // newest seal is the old, cosigned one.
    let run = site.sb.dare(&[
        "update",
        "--from",
        "copy.dare",
        "--trust",
        "release.key.pub",
        "--state",
        "s",
        "--install",
        "i",
        "--target",
        LINUX,
        "--max-age",
        "1000000000",
        "--witness",
        &w.public(),
    ]);
    run.ok();
    assert!(run.stdout.contains("1.0.0"), "{}", run.stdout);
}

#[test]
fn a_witness_that_is_down_fails_the_publish_unless_the_threshold_allows() {
    let site = Site::new();
    let up = Witness::start(1, site.log.clone());
    let dead = format!(
        "{}=http://{}",
        WitnessSigningKey::from_seed("down.example", [9; 32]).unwrap().verifier(),
        dead_address()
    );
    let before = std::fs::read(&site.container).unwrap();
    let mut flags = witness_flags(&[&up]);
    flags.extend(["--witness".into(), dead.clone()]);
    let run = site.publish("app.dare", "1.0.0", "a", T0 + 10, &flags);
    let line = run.error();
    assert!(line.contains("1 of 2 witnesses cosigned, 2 required"), "{line}");
    assert!(line.contains("down.example") && line.contains("down or unreachable"), "{line}");
    assert!(line.contains("publishing this same release again"), "{line}");
    assert_eq!(std::fs::read(&site.container).unwrap(), before, "the container is byte-identical");
    // The witness that answered moved to the tree that was not sealed; the
    // same release builds the same tree, so it cosigns it again (after a
    // 409 that says where it is).
    assert!(up.size() > 2);
    flags.extend(["--witness-threshold".into(), "1".into()]);
    let run = site.publish("app.dare", "1.0.0", "a", T0 + 11, &flags);
    run.ok();
    assert_eq!(cosigned_by(&site.container, &[&up]), 1);
    assert_eq!(Checkpoint::parse(last_note(&site.container).text()).unwrap().size, up.size());
}

#[test]
fn a_key_rotation_is_cosigned() {
    let site = Site::new();
    let ws: Vec<Witness> = (1..=2).map(|i| Witness::start(i, site.log.clone())).collect();
    let refs: Vec<&Witness> = ws.iter().collect();
    site.publish("app.dare", "1.0.0", "a", T0 + 10, &witness_flags(&refs)).ok();
    site.sb.keygen("other.key");
    let mut args: Vec<String> =
        ["keys", "rotate", "app.dare", "--key", "release.key", "--new-trust", "release.key.pub"]
            .map(String::from)
            .into();
    args.extend(["--new-trust".into(), "other.key.pub".into(), "--time".into(), (T0 + 20).to_string()]);
    args.extend(witness_flags(&refs));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = site.sb.dare(&args);
    run.ok();
    assert!(run.stdout.contains("cosigned by 2 witness(es)"), "{}", run.stdout);
    assert_eq!(cosigned_by(&site.container, &refs), 2);
    let size = Checkpoint::parse(last_note(&site.container).text()).unwrap().size;
    assert!(ws.iter().all(|w| w.size() == size));
}

/// A real `dare witness` process, killed when dropped (`dare witness` is
/// Unix-only, like `dare serve`).
#[cfg(unix)]
struct DareWitness {
    child: std::process::Child,
    flag: String,
    public: String,
}

#[cfg(unix)]
impl DareWitness {
    fn start(sb: &Sandbox, name: &str) -> DareWitness {
        sb.dare(&["keygen", "--witness", "--out", &format!("{name}.key"), "--name", &format!("{name}.example")]).ok();
        let public = std::fs::read_to_string(sb.path(&format!("{name}.key.pub"))).unwrap().trim().to_string();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dare"))
            .current_dir(sb.path(""))
            .args(["witness", "--listen", "127.0.0.1:0", "--key", &format!("{name}.key")])
            .args(["--state", &format!("{name}-state"), "--log", &format!("{ORIGIN}=release.key.pub")])
            .env_remove("DARE_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dare witness starts");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{line:?}")).to_string();
        DareWitness { child, flag: format!("{name}.key.pub=http://{addr}"), public }
    }
}

#[cfg(unix)]
impl Drop for DareWitness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(unix)]
#[test]
fn real_dare_witnesses_cosign_and_refuse_a_fork() {
    let site = Site::new();
    let ws = [DareWitness::start(&site.sb, "w1"), DareWitness::start(&site.sb, "w2")];
    let flags: Vec<String> = ws.iter().flat_map(|w| ["--witness".to_string(), w.flag.clone()]).collect();
    site.publish("app.dare", "1.0.0", "a", T0 + 10, &flags).ok();
    std::fs::copy(&site.container, site.sb.path("copy.dare")).unwrap();
    site.publish("app.dare", "1.1.0", "b", T0 + 20, &flags).ok();
    let policy = WitnessPolicy::new(ws.iter().map(|w| w.public.parse().unwrap()).collect(), 2).unwrap();
    policy.check(&last_note(&site.container)).expect("both real witnesses cosigned");
    // The split view on the copy: both refuse, nothing is written.
    let before = std::fs::read(site.sb.path("copy.dare")).unwrap();
    let line = site.publish("copy.dare", "1.1.0", "evil", T0 + 20, &flags).error().to_string();
    assert!(line.contains("0 of 2 witnesses cosigned") && line.contains("fork"), "{line}");
    assert_eq!(std::fs::read(site.sb.path("copy.dare")).unwrap(), before);
    // A client requiring both installs the real release.
    let client: Vec<String> = ws.iter().flat_map(|w| ["--witness".to_string(), w.public.clone()]).collect();
    site.update("real", &client).ok();
}

#[test]
fn witnesses_cosign_a_private_channel_without_any_key() {
    // A witness sees checkpoints and consistency proofs only: a private
    // release (its entries and listing sealed) is cosigned like any other,
    // and a member that requires the cosignatures installs it.
    let site = Site::new();
    let ws: Vec<Witness> = (1..=2).map(|i| Witness::start(i, site.log.clone())).collect();
    let refs: Vec<&Witness> = ws.iter().collect();
    site.sb.dare(&["keygen", "--encryption", "--out", "member.id"]).ok();
    let mut flags = witness_flags(&refs);
    flags.extend(["--encrypt-to".into(), site.sb.path("member.id.pub").display().to_string()]);
    site.publish("app.dare", "1.0.0", "a", T0 + 10, &flags).ok();
    site.publish("app.dare", "1.1.0", "b", T0 + 20, &flags).ok();
    assert_eq!(cosigned_by(&site.container, &refs), 2);
    // The witnesses hold the private release's tree.
    let size = Checkpoint::parse(last_note(&site.container).text()).unwrap().size;
    assert!(ws.iter().all(|w| w.size() == size));

    let mut client: Vec<String> = ws.iter().flat_map(|w| ["--witness".to_string(), w.public()]).collect();
    client.extend(["--witness-threshold".into(), "2".into()]);
    let mut member = client.clone();
    member.extend(["--identity".into(), "member.id".into()]);
    site.update("member", &member).ok();
    let live = dare_updater::current_dir(&site.sb.path("member-install")).expect("a build is installed");
    assert_eq!(std::fs::read(live.join("bin/app")).unwrap(), app(LINUX, "b"));
    // Without the identity the cosigned release is still refused, for lack of a key.
    let mut stranger = client;
    stranger.push("--json".into());
    let run = site.update("stranger", &stranger);
    assert!(run.error().contains("identity"), "{}", run.stderr);
    assert_eq!(run.json()["kind"], "identity");
    assert!(dare_updater::current_dir(&site.sb.path("stranger-install")).is_none());
}
