//! The tlog-witness server: what a log submitting checkpoints sees, over
//! loopback, for every answer the spec defines.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dare_container::cosign::{AddCheckpoint, WitnessSigningKey, parse_cosignature_lines};
use dare_container::keys::SigningKey;
use dare_container::merkle::{Hash, MemoryTree, leaf_hash};
use dare_container::note::{Checkpoint, Note};
use dare_mirror::MirrorError;
use dare_mirror::witness::{Witness, WitnessConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::{Client, Reply};

const ORIGIN: &str = "example.com/app";

fn log_key() -> SigningKey {
    SigningKey::from_seed(ORIGIN, [1; 32]).unwrap()
}

fn witness_key() -> WitnessSigningKey {
    WitnessSigningKey::from_seed("witness.example/w1", [2; 32]).unwrap()
}

/// A tree of `n` leaves; `salt` makes a different history.
fn tree(n: u64, salt: u8) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..n {
        t.push(leaf_hash(&[&i.to_be_bytes()[..], &[salt]].concat()));
    }
    t
}

fn checkpoint_text(origin: &str, size: u64, root: Hash) -> String {
    Checkpoint { origin: origin.into(), size, root, time: Some(1_700_000_000), extensions: vec![] }.to_text()
}

/// The note of `t` at `size`, signed by `key`.
fn signed(t: &MemoryTree, size: u64, key: &SigningKey) -> Vec<u8> {
    let text = checkpoint_text(ORIGIN, size, t.root_at(size).unwrap());
    Note::sign(&text, &[key]).unwrap().to_bytes()
}

/// The `add-checkpoint` body from `old` to `size` of `t`, signed by the log.
fn body(t: &MemoryTree, old: u64, size: u64) -> Vec<u8> {
    let proof = if old == 0 { vec![] } else { t.consistency_proof(old, size).unwrap() };
    AddCheckpoint { old_size: old, proof, note: signed(t, size, &log_key()) }.to_bytes()
}

struct TestWitness {
    addr: SocketAddr,
    state: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), MirrorError>>>,
}

impl TestWitness {
    async fn start() -> TestWitness {
        TestWitness::on(tempfile::tempdir().unwrap()).await
    }

    async fn on(state: tempfile::TempDir) -> TestWitness {
        let witness = open(state.path()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(witness.run(listener, async {
            let _ = stopped.await;
        }));
        TestWitness { addr, state, stop: Some(stop), task: Some(task) }
    }

    async fn post(&self, body: &[u8]) -> Reply {
        post_to(self.addr, "/add-checkpoint", body).await
    }

    /// Stops the server and hands back its state directory.
    async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(20), task).await.unwrap().unwrap().unwrap();
        std::mem::replace(&mut self.state, tempfile::tempdir().unwrap())
    }
}

impl Drop for TestWitness {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn open(state: &Path) -> Result<Witness, MirrorError> {
    let logs = vec![(ORIGIN.to_owned(), log_key().verifier())];
    Witness::open(witness_key(), logs, state, WitnessConfig::default())
}

async fn post_to(addr: SocketAddr, path: &str, body: &[u8]) -> Reply {
    let mut client = Client::connect(addr).await;
    let head = format!("POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n", body.len());
    client.send(&[head.as_bytes(), body].concat()).await;
    client.reply(false).await.expect("a complete reply")
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Checks a 200 and its cosignature of `note`; returns the timestamp.
fn cosigned(reply: &Reply, note: &[u8]) -> u64 {
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let sigs = parse_cosignature_lines(&reply.body).unwrap();
    assert_eq!(sigs.len(), 1);
    let note = Note::parse(note).unwrap();
    witness_key().verifier().verify(note.text(), &sigs[0]).expect("a valid cosignature of the submitted checkpoint")
}

#[tokio::test]
async fn cosigns_a_new_log_then_a_consistent_extension() {
    let w = TestWitness::start().await;
    let t = tree(7, 0);
    let before = now();
    let reply = w.post(&body(&t, 0, 3)).await;
    let time = cosigned(&reply, &signed(&t, 3, &log_key()));
    assert!(time >= before && time <= now(), "the server's clock: {time}");

    let reply = w.post(&body(&t, 3, 7)).await;
    cosigned(&reply, &signed(&t, 7, &log_key()));
    // The same checkpoint again is cosigned again.
    let reply = w.post(&body(&t, 7, 7)).await;
    cosigned(&reply, &signed(&t, 7, &log_key()));
    w.stop().await;
}

#[tokio::test]
async fn wrong_old_size_is_409_with_the_stored_size() {
    let w = TestWitness::start().await;
    let t = tree(9, 0);
    assert_eq!(w.post(&body(&t, 0, 4)).await.status, 200);
    for (old, size) in [(0, 6), (2, 6), (5, 6), (3, 4)] {
        let reply = w.post(&body(&t, old, size)).await;
        assert_eq!(reply.status, 409, "old {old}");
        assert_eq!(reply.header("content-type"), Some("text/x.tlog.size"));
        assert_eq!(reply.body, b"4\n");
    }
    // A client that learned the size goes on from it.
    cosigned(&w.post(&body(&t, 4, 9)).await, &signed(&t, 9, &log_key()));
    w.stop().await;
}

#[tokio::test]
async fn a_bad_consistency_proof_is_422() {
    let w = TestWitness::start().await;
    let t = tree(7, 0);
    assert_eq!(w.post(&body(&t, 0, 3)).await.status, 200);
    let good = t.consistency_proof(3, 7).unwrap();
    let note = signed(&t, 7, &log_key());
    let mut flipped = good.clone();
    flipped[0][0] ^= 1;
    let mut short = good.clone();
    short.pop();
    let mut long = good.clone();
    long.push([0; 32]);
    for proof in [flipped, short, long, vec![]] {
        let req = AddCheckpoint { old_size: 3, proof, note: note.clone() };
        let reply = w.post(&req.to_bytes()).await;
        assert_eq!(reply.status, 422, "{}", String::from_utf8_lossy(&reply.body));
    }
    // A fresh log's proof must be empty.
    let w2 = TestWitness::start().await;
    let req = AddCheckpoint { old_size: 0, proof: vec![[0; 32]], note: signed(&t, 3, &log_key()) };
    assert_eq!(w2.post(&req.to_bytes()).await.status, 422);
    // Nothing moved: the good proof still works.
    cosigned(&w.post(&body(&t, 3, 7)).await, &note);
    w.stop().await;
    w2.stop().await;
}

#[tokio::test]
async fn forks_are_refused() {
    let w = TestWitness::start().await;
    let t = tree(8, 0);
    let fork = tree(8, 1);
    assert_eq!(w.post(&body(&t, 0, 4)).await.status, 200);
    // Same size, another root: 409.
    let reply = w.post(&body(&fork, 4, 4)).await;
    assert_eq!(reply.status, 409);
    assert_ne!(reply.header("content-type"), Some("text/x.tlog.size"));
    // A bigger tree with another history, with its own (valid for it) proof: 422.
    let reply = w.post(&body(&fork, 4, 8)).await;
    assert_eq!(reply.status, 422);
    // A tree that shares the first 4 leaves is consistent.
    let mut grown = tree(4, 0);
    grown.push(leaf_hash(b"other"));
    cosigned(&w.post(&body(&grown, 4, 5)).await, &signed(&grown, 5, &log_key()));
    // Now the honest tree at 8 is a fork of what was cosigned at 5.
    let req = AddCheckpoint { old_size: 5, proof: t.consistency_proof(5, 8).unwrap(), note: signed(&t, 8, &log_key()) };
    assert_eq!(w.post(&req.to_bytes()).await.status, 422);
    w.stop().await;
}

#[tokio::test]
async fn a_rollback_is_refused() {
    let w = TestWitness::start().await;
    let t = tree(6, 0);
    assert_eq!(w.post(&body(&t, 0, 6)).await.status, 200);
    // Old size larger than the checkpoint: 400 by the spec.
    let req = AddCheckpoint { old_size: 6, proof: vec![], note: signed(&t, 3, &log_key()) };
    assert_eq!(w.post(&req.to_bytes()).await.status, 400);
    // From the size the client claims: 409 with the real one.
    let reply = w.post(&body(&t, 0, 3)).await;
    assert_eq!((reply.status, reply.body), (409, b"6\n".to_vec()));
    w.stop().await;
}

#[tokio::test]
async fn unknown_origin_is_404_and_bad_signatures_403() {
    let w = TestWitness::start().await;
    let t = tree(3, 0);
    // Another origin, signed by a key of that name.
    let other = SigningKey::from_seed("example.com/other", [3; 32]).unwrap();
    let text = checkpoint_text("example.com/other", 3, t.root_at(3).unwrap());
    let note = Note::sign(&text, &[&other]).unwrap().to_bytes();
    let reply = w.post(&AddCheckpoint { old_size: 0, proof: vec![], note }.to_bytes()).await;
    assert_eq!(reply.status, 404);

    // The right origin, signed by a key of the same name that is not the log's.
    let impostor = SigningKey::from_seed(ORIGIN, [4; 32]).unwrap();
    let reply = w.post(&AddCheckpoint { old_size: 0, proof: vec![], note: signed(&t, 3, &impostor) }.to_bytes()).await;
    assert_eq!(reply.status, 403);

    // The log's signature over another text.
    let good = Note::parse(&signed(&t, 3, &log_key())).unwrap();
    let forged_text = checkpoint_text(ORIGIN, 3, tree(3, 1).root_at(3).unwrap());
    let forged = format!("{forged_text}\n{}", good.signatures()[0].line());
    let reply = w.post(&AddCheckpoint { old_size: 0, proof: vec![], note: forged.into_bytes() }.to_bytes()).await;
    assert_eq!(reply.status, 403);

    // Nothing was recorded: a fresh submission still starts at 0.
    // An unknown signer beside the log's valid signature is ignored.
    let text = checkpoint_text(ORIGIN, 3, t.root_at(3).unwrap());
    let both = Note::sign(&text, &[&impostor, &log_key()]).unwrap().to_bytes();
    let reply = w.post(&AddCheckpoint { old_size: 0, proof: vec![], note: both.clone() }.to_bytes()).await;
    cosigned(&reply, &both);
    w.stop().await;
}

#[tokio::test]
async fn state_survives_a_restart_and_is_locked() {
    let w = TestWitness::start().await;
    let t = tree(10, 0);
    assert_eq!(w.post(&body(&t, 0, 5)).await.status, 200);
    // A second witness on the same state directory is refused.
    let second = open(w.state.path());
    assert!(matches!(second, Err(MirrorError::WitnessState { .. })), "{second:?}");
    let state = w.stop().await;

    let reopened = open(state.path()).unwrap();
    assert_eq!(reopened.latest(ORIGIN), Some((5, t.root_at(5).unwrap())));
    drop(reopened);
    let w = TestWitness::on(state).await;
    let reply = w.post(&body(&t, 0, 10)).await;
    assert_eq!((reply.status, reply.body), (409, b"5\n".to_vec()));
    cosigned(&w.post(&body(&t, 5, 10)).await, &signed(&t, 10, &log_key()));
    let state = w.stop().await;

    // A damaged state file stops the witness at start rather than letting
    // it cosign from nothing.
    let files: Vec<_> = std::fs::read_dir(state.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "checkpoint"))
        .collect();
    assert_eq!(files.len(), 1);
    std::fs::write(&files[0], b"garbage").unwrap();
    assert!(matches!(open(state.path()), Err(MirrorError::WitnessState { .. })));
}

#[tokio::test]
async fn concurrent_requests_advance_one_at_a_time() {
    let w = TestWitness::start().await;
    let t = tree(12, 0);
    assert_eq!(w.post(&body(&t, 0, 4)).await.status, 200);
    let addr = w.addr;
    let requests: Vec<_> = (5..=12)
        .map(|size| {
            let b = body(&t, 4, size);
            tokio::spawn(async move { post_to(addr, "/add-checkpoint", &b).await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for r in requests {
        statuses.push(r.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409, 409, 409, 409, 409, 409, 409], "exactly one advances from size 4");
    w.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_400() {
    let w = TestWitness::start().await;
    let t = tree(3, 0);
    let note = signed(&t, 3, &log_key());
    let mut unterminated = note.clone();
    unterminated.pop();
    let mut bodies: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"garbage".to_vec(),
        b"old 0\n".to_vec(),
        [b"old 0\n".as_slice(), &note].concat(),
        [b"old 00\n\n".as_slice(), &note].concat(),
        [b"old 0\nnot base64\n\n".as_slice(), &note].concat(),
        [b"old 0\n\n".as_slice(), &unterminated].concat(),
        [b"old 0\n\n".as_slice(), &[0xff, 0xfe]].concat(),
    ];
    // A signed note that is not a checkpoint.
    bodies.push([b"old 0\n\n".as_slice(), &Note::sign("hello\n", &[&log_key()]).unwrap().to_bytes()].concat());
    for b in &bodies {
        let reply = w.post(b).await;
        assert_eq!(reply.status, 400, "{:?}: {}", String::from_utf8_lossy(b), String::from_utf8_lossy(&reply.body));
    }
    cosigned(&w.post(&body(&t, 0, 3)).await, &note);
    w.stop().await;
}

#[tokio::test]
async fn other_paths_methods_and_huge_bodies() {
    let w = TestWitness::start().await;
    assert_eq!(post_to(w.addr, "/", b"").await.status, 404);
    assert_eq!(post_to(w.addr, "/add-checkpoint/x", b"").await.status, 404);
    let mut client = Client::connect(w.addr).await;
    client.send(b"GET /add-checkpoint HTTP/1.1\r\nHost: test\r\n\r\n").await;
    let reply = client.reply(false).await.unwrap();
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("POST"));
    // Declared too large: refused before reading.
    let mut client = Client::connect(w.addr).await;
    client.send(b"POST /add-checkpoint HTTP/1.1\r\nHost: test\r\nContent-Length: 100000000\r\n\r\n").await;
    assert_eq!(client.reply(false).await.unwrap().status, 413);
    w.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_while_reading() {
    let state = tempfile::tempdir().unwrap();
    let config = WitnessConfig::default().with_max_body(100);
    let logs = vec![(ORIGIN.to_owned(), log_key().verifier())];
    let witness = Witness::open(witness_key(), logs, state.path(), config).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(witness.run(listener, async {
        let _ = stopped.await;
    }));
    // Chunked, so no length is declared: refused while reading.
    let mut client = Client::connect(addr).await;
    let chunk = "a".repeat(150);
    let raw = format!(
        "POST /add-checkpoint HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    client.send(raw.as_bytes()).await;
    assert_eq!(client.reply(false).await.unwrap().status, 413);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn several_keys_for_one_origin() {
    let state = tempfile::tempdir().unwrap();
    let old_key = log_key();
    let new_key = SigningKey::from_seed(ORIGIN, [5; 32]).unwrap();
    let logs = vec![(ORIGIN.to_owned(), old_key.verifier()), (ORIGIN.to_owned(), new_key.verifier())];
    let witness = Witness::open(witness_key(), logs, state.path(), WitnessConfig::default()).unwrap();
    let t = tree(4, 0);
    let sigs = witness
        .add_checkpoint(&AddCheckpoint { old_size: 0, proof: vec![], note: signed(&t, 2, &old_key) }.to_bytes())
        .unwrap();
    assert_eq!(sigs.len(), 1);
    let proof = t.consistency_proof(2, 4).unwrap();
    let note = signed(&t, 4, &new_key);
    let sigs = witness.add_checkpoint(&AddCheckpoint { old_size: 2, proof, note: note.clone() }.to_bytes()).unwrap();
    let note = Note::parse(&note).unwrap();
    assert!(witness_key().verifier().verify(note.text(), &sigs[0]).is_some());
    assert_eq!(witness.latest(ORIGIN), Some((4, t.root_at(4).unwrap())));
}
