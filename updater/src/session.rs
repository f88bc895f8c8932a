//! One check or update: the protocol of DESIGN.md section 3.4.
//!
//! 1. One suffix range gives the seal and the manifest. The checkpoint's
//!    signatures, its freshness, its relation to the stored checkpoint
//!    (never smaller, the same size only with the same root) and the
//!    manifest's place as the last leaf are checked before anything else.
//! 2. In parallel: this target's entries (contiguous ones in one range) and
//!    the few tile hashes that tie them, the manifest and the stored tree to
//!    the signed root. Entries are streamed through SHA-256 (stored bytes),
//!    zstd and SHA-256 (content) into the state directory, every read bounded
//!    by the signed lengths.
//! 3. Only when the root computed from what was fetched equals the signed
//!    root is anything installed; then the fetched frames are appended to the
//!    replica and the new checkpoint is recorded.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use dare_container::client::{
    Fetched, PlanError, ProofPlan, SignedTail, TailError, TailRead, check_entry_header, merge_ranges, read_tail,
};
use dare_container::frame::{FrameEvent, FrameStream, Window, read_frame_at, read_header};
use dare_container::hashio::{BoundedHashWriter, Hasher, to_hex};
use dare_container::header::{Compression, Entry, EntryRef, Header};
use dare_container::merkle::{Frontier, Hash, NodeId, ProofError, leaf_hash};
use dare_container::replica::ReplicaWriter;
use dare_container::zstdio::OneFrame;

use crate::config::Config;
use crate::error::UpdateError;
use crate::fetch::{FetchError, Mirrors};
use crate::install::{StagedFile, install};
use crate::progress::Event;
use crate::state::{Installed, State, replica_path};
use crate::transport::{ByteRange, RangeSink, SinkError};
use crate::{Outcome, Status};

/// Tail bytes read by a client that has never read this container.
pub const FIRST_TAIL: u64 = 8 * 1024;
/// The most tail bytes read before giving up (a seal and a manifest are far smaller).
pub const MAX_TAIL: u64 = 16 * 1024 * 1024;
/// Bytes read at offset 0 for the genesis frame on the first update.
const GENESIS_GUESS: u64 = 1024;

pub(crate) async fn run(cfg: &Config, mirrors: &Mirrors, install_wanted: bool) -> Result<Outcome, UpdateError> {
    fs::create_dir_all(&cfg.state_dir).map_err(|e| UpdateError::io("creating", &cfg.state_dir, e))?;
    let _lock = lock_state(&cfg.state_dir)?;
    let before = mirrors.stats();
    let state = State::load(&cfg.state_dir)?;
    progress(cfg, Event::Checking);

    // Round trip 1: the tail.
    let hint = state.as_ref().map_or(FIRST_TAIL, |s| s.tail_hint.clamp(1024, MAX_TAIL));
    let (tail, mut fetched) = fetch_tail(cfg, mirrors, hint).await?;
    let cp = &tail.checkpoint;
    let now = (cfg.clock)();
    check_origin(cfg, state.as_ref(), &cp.origin)?;
    check_freshness(cfg, tail.seal.time, now)?;
    check_against_stored(state.as_ref(), &tail)?;

    let installed =
        state.as_ref().and_then(|s| s.installed.clone()).filter(|i| i.target == cfg.target && i.channel == cfg.channel);
    let release =
        tail.manifest.release(&cfg.channel, &cfg.target).cloned().ok_or_else(|| UpdateError::MissingTarget {
            target: cfg.target.clone(),
            channel: cfg.channel.clone(),
            available: describe_available(&tail),
        })?;
    let new_version = semver::Version::parse(&release.version)
        .map_err(|e| UpdateError::BadDigest(format!("the signed manifest has a bad version: {e}")))?;
    let newer = match &installed {
        None => true,
        Some(i) => {
            let have = semver::Version::parse(&i.version).map_err(|e| UpdateError::State(e.to_string()))?;
            match new_version.cmp_precedence(&have) {
                std::cmp::Ordering::Greater => true,
                std::cmp::Ordering::Equal => false,
                std::cmp::Ordering::Less => {
                    return Err(UpdateError::Rollback(format!(
                        "the signed manifest offers {new_version} but {have} is installed"
                    )));
                }
            }
        }
    };
    let previous = installed.as_ref().map(|i| i.version.clone());
    let stats = |mirrors: &Mirrors| {
        let s = mirrors.stats();
        (s.bytes - before.bytes, s.requests - before.requests)
    };
    let outcome = |status: Status, payload: u64, install_path: Option<PathBuf>, mirrors: &Mirrors| {
        let (bytes_fetched, requests) = stats(mirrors);
        Outcome {
            status,
            target: cfg.target.clone(),
            channel: cfg.channel.clone(),
            version: release.version.clone(),
            previous: previous.clone(),
            bytes_fetched,
            requests,
            payload_bytes: payload,
            install_path,
            tree_size: tail.size(),
            signed_time: tail.seal.time,
        }
    };
    if !install_wanted {
        let status = if newer { Status::Available } else { Status::UpToDate };
        return Ok(outcome(status, 0, None, mirrors));
    }
    let old_size = state.as_ref().map_or(0, |s| s.size);
    if !newer && old_size == tail.size() {
        // Nothing new at all: keep the fresher seal (a heartbeat) and stop.
        if let Some(s) = &state
            && tail.seal.time > s.time
        {
            let mut w = open_replica(cfg, s.replica_len)?;
            append_window(&mut w, &fetched, tail.seal_frame.offset, tail.seal_frame.len())?;
            let len = w.commit()?;
            save_state(cfg, &tail, s.installed.clone(), len, s.origin.clone())?;
        }
        return Ok(outcome(Status::UpToDate, 0, None, mirrors));
    }

    // Round trip 2: entries and proof hashes, in parallel.
    let old = state.as_ref().map_or_else(Frontier::new, |s| s.frontier.clone());
    let first_sync = state.as_ref().is_none_or(|s| s.replica_len == 0);
    let entries: Vec<EntryRef> = if newer { release.entries.clone() } else { Vec::new() };
    let mut leaves: BTreeSet<u64> = entries.iter().map(|e| e.leaf).collect();
    if first_sync {
        leaves.insert(0);
    }
    let plan = ProofPlan::new(&tail, &old, &leaves).map_err(plan_error)?;
    let mut hash_ranges = plan.ranges();
    if first_sync {
        hash_ranges.push((0, GENESIS_GUESS.min(tail.len)));
    }
    let hash_ranges: Vec<(u64, u64)> =
        merge_ranges(hash_ranges).into_iter().filter(|(s, e)| !fetched.has(*s, e - s)).collect();
    let entry_ranges = contiguous(&entries);
    let payload_bytes: u64 = entry_ranges.iter().map(|(s, e)| e - s).sum();
    if newer {
        progress(cfg, Event::Found { version: release.version.clone(), bytes: payload_bytes });
    }
    let staging = cfg.state_dir.join("staging");
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| UpdateError::io("clearing", &staging, e))?;
    }
    fs::create_dir(&staging).map_err(|e| UpdateError::io("creating", &staging, e))?;
    let result = fetch_and_verify(
        cfg,
        mirrors,
        &tail,
        &plan,
        &old,
        &mut fetched,
        &entries,
        &entry_ranges,
        &hash_ranges,
        &release,
        &staging,
        first_sync,
    )
    .await;
    let verified = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
    };

    // Install, then record.
    let install_path = if newer {
        progress(cfg, Event::Installing);
        match install(&cfg.install_dir, &release.version, &verified.files) {
            Ok(path) => Some(path),
            Err(e) => {
                let _ = fs::remove_dir_all(&staging);
                return Err(e);
            }
        }
    } else {
        None
    };
    let origin = state.as_ref().map_or_else(|| tail.checkpoint.origin.clone(), |s| s.origin.clone());
    let mut w = open_replica(cfg, state.as_ref().map_or(0, |s| s.replica_len))?;
    let written = (|| {
        if first_sync {
            let g = verified.genesis.as_ref().ok_or_else(|| UpdateError::State("genesis frame missing".into()))?;
            w.append_frames(&mut g.as_slice(), g.len() as u64)?;
        }
        let frames = staging.join("frames");
        if newer {
            let mut f = File::open(&frames).map_err(|e| UpdateError::io("reading", &frames, e))?;
            let len = f.metadata().map_err(|e| UpdateError::io("reading", &frames, e))?.len();
            w.append_frames(&mut f, len)?;
        }
        append_window(&mut w, &fetched, tail.manifest_frame.offset, tail.manifest_frame.len())?;
        let mut proof_leaves: Vec<u64> = Vec::new();
        if first_sync {
            proof_leaves.push(0);
        }
        proof_leaves.extend(entries.iter().map(|e| e.leaf));
        proof_leaves.push(tail.size() - 1);
        let nodes: Vec<(NodeId, Hash)> =
            plan.node_ids().into_iter().filter_map(|id| verified.nodes.get(&id).map(|h| (id, *h))).collect();
        w.append_proof(tail.size(), &proof_leaves, &nodes)?;
        append_window(&mut w, &fetched, tail.seal_frame.offset, tail.seal_frame.len())?;
        Ok::<_, UpdateError>(())
    })();
    if let Err(e) = written {
        let _ = w.abort();
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    let replica_len = w.commit()?;
    let installed = if newer {
        Some(Installed { target: cfg.target.clone(), channel: cfg.channel.clone(), version: release.version.clone() })
    } else {
        state.as_ref().and_then(|s| s.installed.clone())
    };
    save_state(cfg, &tail, installed, replica_len, origin)?;
    let _ = fs::remove_dir_all(&staging);
    let status = if newer { Status::Updated } else { Status::UpToDate };
    Ok(outcome(status, if newer { payload_bytes } else { 0 }, install_path, mirrors))
}

fn progress(cfg: &Config, e: Event) {
    if let Some(p) = &cfg.progress {
        p.event(e);
    }
}

/// An exclusive lock on the state directory for the whole update.
fn lock_state(dir: &Path) -> Result<File, UpdateError> {
    let path = dir.join("lock");
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| UpdateError::io("opening", &path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(UpdateError::State(format!("{} is locked by another update", dir.display())))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(UpdateError::io("locking", &path, e)),
    }
}

fn plan_error(e: PlanError) -> UpdateError {
    UpdateError::BadSignature(format!("the signed seal cannot locate its proof material: {e}"))
}

fn describe_available(tail: &SignedTail) -> String {
    let list: Vec<String> =
        tail.manifest.releases.iter().map(|r| format!("{} on {} ({})", r.target, r.channel, r.version)).collect();
    if list.is_empty() { "no releases".into() } else { list.join(", ") }
}

fn check_origin(cfg: &Config, state: Option<&State>, found: &str) -> Result<(), UpdateError> {
    let expected = cfg.origin.as_deref().or(state.map(|s| s.origin.as_str()));
    match expected {
        Some(e) if e != found => Err(UpdateError::WrongOrigin { expected: e.to_string(), found: found.to_string() }),
        _ => Ok(()),
    }
}

fn check_freshness(cfg: &Config, signed: u64, now: u64) -> Result<(), UpdateError> {
    let age = now.saturating_sub(signed);
    if age > cfg.max_age.as_secs() {
        return Err(UpdateError::Freeze { age_secs: age, max_age_secs: cfg.max_age.as_secs() });
    }
    Ok(())
}

fn check_against_stored(state: Option<&State>, tail: &SignedTail) -> Result<(), UpdateError> {
    let Some(s) = state else { return Ok(()) };
    let n = tail.size();
    if n < s.size {
        return Err(UpdateError::Rollback(format!(
            "the mirror's tree has {n} leaves, but this client already verified {}",
            s.size
        )));
    }
    if n == s.size && tail.checkpoint.root != s.root {
        return Err(UpdateError::Fork(format!(
            "two signed trees of {n} leaves with different roots ({} stored, {} now)",
            to_hex(&s.root),
            to_hex(&tail.checkpoint.root)
        )));
    }
    if tail.seal.time < s.time {
        return Err(UpdateError::Rollback(format!(
            "the mirror's seal was signed at {}, before the stored one at {}",
            tail.seal.time, s.time
        )));
    }
    Ok(())
}

/// Fetches a suffix of the container, more if the seal or manifest reach
/// further back, and verifies the tail.
async fn fetch_tail(cfg: &Config, mirrors: &Mirrors, hint: u64) -> Result<(SignedTail, Fetched), UpdateError> {
    let mut sink = BufferSink::new(MAX_TAIL);
    mirrors.fetch(&[ByteRange::Suffix(hint)], &mut sink).await.map_err(network)?;
    let (mut start, mut bytes, total) = sink.single()?;
    let len = total.unwrap_or(start + bytes.len() as u64);
    if start + bytes.len() as u64 != len {
        return Err(UpdateError::BadSignature("the mirror's suffix does not end at the end of the container".into()));
    }
    loop {
        let window = Window::new(start, &bytes);
        match read_tail(&window, len, &cfg.trust, cfg.threshold).map_err(tail_error)? {
            TailRead::Complete(tail) => {
                let mut fetched = Fetched::new();
                fetched.insert(start, bytes);
                return Ok((*tail, fetched));
            }
            TailRead::NeedMore { start: want } => {
                if want >= start || len - want > MAX_TAIL {
                    return Err(UpdateError::BadSignature(format!(
                        "the container's tail needs {} bytes, more than the {MAX_TAIL} allowed",
                        len - want
                    )));
                }
                let mut more = BufferSink::new(MAX_TAIL);
                mirrors.fetch(&[ByteRange::Span { start: want, end: start }], &mut more).await.map_err(network)?;
                let (_, mut head, _) = more.single()?;
                head.extend_from_slice(&bytes);
                bytes = head;
                start = want;
            }
        }
    }
}

fn tail_error(e: TailError) -> UpdateError {
    match e {
        TailError::Unsealed(_) => UpdateError::Unsealed(e.to_string()),
        e => UpdateError::BadSignature(e.to_string()),
    }
}

fn network(e: FetchError) -> UpdateError {
    match e {
        FetchError::Refused(s) => UpdateError::BadDigest(s.0),
        other => UpdateError::Network(other),
    }
}

/// Groups entry frames into contiguous byte ranges.
fn contiguous(entries: &[EntryRef]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut sorted = entries.to_vec();
    sorted.sort_by_key(|e| e.offset);
    for e in sorted {
        match out.last_mut() {
            Some(last) if last.1 == e.offset => last.1 = e.offset + e.length,
            _ => out.push((e.offset, e.offset + e.length)),
        }
    }
    out
}

struct Verified {
    files: Vec<StagedFile>,
    nodes: HashMap<NodeId, Hash>,
    genesis: Option<Vec<u8>>,
}

#[allow(clippy::too_many_arguments)]
async fn fetch_and_verify(
    cfg: &Config,
    mirrors: &Mirrors,
    tail: &SignedTail,
    plan: &ProofPlan,
    old: &Frontier,
    fetched: &mut Fetched,
    entries: &[EntryRef],
    entry_ranges: &[(u64, u64)],
    hash_ranges: &[(u64, u64)],
    release: &dare_container::header::Release,
    staging: &Path,
    first_sync: bool,
) -> Result<Verified, UpdateError> {
    let mut entry_sink = EntrySink::new(cfg, entries, release, staging)?;
    let mut hash_sink = BufferSink::new(1 << 24);
    let entry_req: Vec<ByteRange> = entry_ranges.iter().map(|(s, e)| ByteRange::Span { start: *s, end: *e }).collect();
    let hash_req: Vec<ByteRange> = hash_ranges.iter().map(|(s, e)| ByteRange::Span { start: *s, end: *e }).collect();
    let mut jobs: Vec<(Vec<ByteRange>, &mut dyn RangeSink)> = Vec::new();
    if !entry_req.is_empty() {
        jobs.push((entry_req, &mut entry_sink));
    }
    if !hash_req.is_empty() {
        jobs.push((hash_req, &mut hash_sink));
    }
    if !jobs.is_empty() {
        mirrors.fetch_all(jobs).await.map_err(network)?;
    }
    for (start, bytes) in hash_sink.parts {
        fetched.insert(start, bytes);
    }
    let (mut leaves, files) = entry_sink.finish()?;
    leaves.insert(tail.size() - 1, tail.manifest_leaf);
    let mut genesis = None;
    if first_sync {
        let (bytes, hash) = genesis_frame(mirrors, fetched, tail).await?;
        leaves.insert(0, hash);
        genesis = Some(bytes);
    }
    let nodes = plan.nodes(|s, l| fetched.get(s, l)).map_err(|e| UpdateError::BadDigest(e.to_string()))?;
    let root = plan.root(&leaves, &nodes);
    match root {
        Ok(r) if r == tail.checkpoint.root => {}
        other => return Err(classify(mirrors, fetched, tail, old, other).await),
    }
    Ok(Verified { files, nodes, genesis })
}

/// The genesis frame (leaf 0) from what was fetched, fetching more if it is longer than guessed.
async fn genesis_frame(
    mirrors: &Mirrors,
    fetched: &mut Fetched,
    tail: &SignedTail,
) -> Result<(Vec<u8>, Hash), UpdateError> {
    let bad = |m: String| UpdateError::BadDigest(format!("genesis frame: {m}"));
    let frame = match read_frame_at(&*fetched, 0, tail.len) {
        Ok(f) => f,
        Err(dare_container::frame::FrameError::Truncated { needed, .. }) if needed <= 1 << 20 => {
            let mut sink = BufferSink::new(1 << 20);
            mirrors
                .fetch(&[ByteRange::Span { start: 0, end: needed.min(tail.len) }], &mut sink)
                .await
                .map_err(network)?;
            let (s, b, _) = sink.single()?;
            fetched.insert(s, b);
            read_frame_at(&*fetched, 0, tail.len).map_err(|e| bad(e.to_string()))?
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    let header = read_header(&*fetched, &frame).map_err(|e| bad(e.to_string()))?;
    match Header::parse(&header) {
        Ok(Header::Genesis(g)) if g.origin == tail.checkpoint.origin => {}
        Ok(Header::Genesis(g)) => return Err(bad(format!("its origin {} is not the checkpoint's", g.origin))),
        Ok(h) => return Err(bad(format!("frame 0 is a {} frame", h.kind()))),
        Err(e) => return Err(bad(e.to_string())),
    }
    let bytes = fetched.get(0, frame.len()).ok_or_else(|| bad("not fetched".into()))?.to_vec();
    Ok((bytes, leaf_hash(&header)))
}

/// Tells a fork from bad data: a root mismatch is a fork only when the
/// stored tree alone (with just the manifest) cannot be extended to the
/// signed root; otherwise the entries or their proof hashes were bad.
async fn classify(
    mirrors: &Mirrors,
    fetched: &mut Fetched,
    tail: &SignedTail,
    old: &Frontier,
    result: Result<Hash, ProofError>,
) -> UpdateError {
    let from = mirrors.names().join(", ");
    let detail = match &result {
        Ok(r) => format!(
            "the fetched entries and proof hashes give root {}, not the signed {}",
            to_hex(r),
            to_hex(&tail.checkpoint.root)
        ),
        Err(e) => e.to_string(),
    };
    let fork = |why: String| {
        UpdateError::Fork(format!(
            "cannot prove the signed tree of {} leaves extends the stored tree of {} leaves: {why} \
             (the log forked, or {from} serves bad tiles)",
            tail.size(),
            old.size()
        ))
    };
    if old.size() == 0 {
        return UpdateError::BadDigest(format!("{detail} (from {from})"));
    }
    if let Err(ProofError::FrontierMismatch { .. }) = result {
        return fork(detail);
    }
    let plan = match ProofPlan::new(tail, old, &BTreeSet::new()) {
        Ok(p) => p,
        Err(e) => return plan_error(e),
    };
    let missing: Vec<ByteRange> = plan
        .ranges()
        .into_iter()
        .filter(|(s, e)| !fetched.has(*s, e - s))
        .map(|(start, end)| ByteRange::Span { start, end })
        .collect();
    if !missing.is_empty() {
        let mut sink = BufferSink::new(1 << 24);
        if let Err(e) = mirrors.fetch(&missing, &mut sink).await {
            return network(e);
        }
        for (start, bytes) in sink.parts {
            fetched.insert(start, bytes);
        }
    }
    let leaves = BTreeMap::from([(tail.size() - 1, tail.manifest_leaf)]);
    match plan
        .nodes(|s, l| fetched.get(s, l))
        .map_err(|e| e.to_string())
        .and_then(|n| plan.root(&leaves, &n).map_err(|e| e.to_string()))
    {
        Ok(r) if r == tail.checkpoint.root => UpdateError::BadDigest(format!("{detail} (from {from})")),
        Ok(r) => fork(format!("the consistency proof gives root {}", to_hex(&r))),
        Err(e) => fork(e),
    }
}

fn open_replica(cfg: &Config, committed: u64) -> Result<ReplicaWriter, UpdateError> {
    let path = replica_path(&cfg.state_dir);
    let w = ReplicaWriter::open(&path, committed).map_err(|e| {
        UpdateError::State(format!(
            "{e}; the replica does not match the state (remove {} to start over)",
            cfg.state_dir.display()
        ))
    })?;
    Ok(w)
}

fn append_window(w: &mut ReplicaWriter, fetched: &Fetched, offset: u64, len: u64) -> Result<(), UpdateError> {
    let bytes = fetched.get(offset, len).ok_or_else(|| UpdateError::State("a tail frame is missing".into()))?;
    w.append_frames(&mut &bytes[..], len)?;
    Ok(())
}

fn save_state(
    cfg: &Config,
    tail: &SignedTail,
    installed: Option<Installed>,
    replica_len: u64,
    origin: String,
) -> Result<(), UpdateError> {
    let frontier = tail.frontier().map_err(|e| UpdateError::State(e.to_string()))?;
    // Room for one more seal: the next check most often finds a heartbeat after this tail, and must
    // still read the manifest in its one request.
    let tail_hint = (tail.len - tail.manifest_frame.offset) + tail.seal_frame.len() + 512;
    let state = State {
        origin,
        checkpoint: tail.seal.checkpoint.clone(),
        size: tail.size(),
        root: tail.checkpoint.root,
        time: tail.seal.time,
        frontier,
        replica_len,
        tail_hint,
        installed,
    };
    state.save(&cfg.state_dir)
}

/// Collects fetched ranges in memory, up to a cap.
struct BufferSink {
    parts: Vec<(u64, Vec<u8>)>,
    total: Option<u64>,
    cap: u64,
    used: u64,
}

impl BufferSink {
    fn new(cap: u64) -> Self {
        BufferSink { parts: Vec::new(), total: None, cap, used: 0 }
    }

    fn single(mut self) -> Result<(u64, Vec<u8>, Option<u64>), UpdateError> {
        match self.parts.len() {
            1 => {
                let (s, b) = self.parts.remove(0);
                Ok((s, b, self.total))
            }
            n => Err(UpdateError::State(format!("expected one range, got {n}"))),
        }
    }
}

impl RangeSink for BufferSink {
    fn begin(&mut self, _index: usize, start: u64, total: Option<u64>) -> Result<(), SinkError> {
        if total.is_some() {
            self.total = total;
        }
        self.parts.push((start, Vec::new()));
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        self.used += bytes.len() as u64;
        if self.used > self.cap {
            return Err(SinkError(format!("more than {} bytes of tail and proof data", self.cap)));
        }
        match self.parts.last_mut() {
            Some((_, b)) => {
                b.extend_from_slice(bytes);
                Ok(())
            }
            None => Err(SinkError("data before a range began".into())),
        }
    }
}

/// Streams entry frames: checks each header against the manifest's promise,
/// hashes the stored bytes, decompresses into a staging file while hashing
/// the content, checks both digests at the frame's end, and keeps a raw copy
/// of the frames for the replica.
struct EntrySink<'a> {
    cfg: &'a Config,
    expected: HashMap<u64, EntryRef>,
    channel: String,
    target: String,
    version: String,
    staging: PathBuf,
    raw: BufWriter<File>,
    stream: FrameStream,
    current: Option<Current>,
    leaves: BTreeMap<u64, Hash>,
    files: Vec<StagedFile>,
    received: u64,
}

struct Current {
    leaf: u64,
    entry: Entry,
    header_hash: Hash,
    stored: Hasher,
    out: Content,
    staged: PathBuf,
}

enum Content {
    Plain(BoundedFile),
    Zstd(Box<OneFrame<BoundedFile>>),
}

/// A staging file that hashes what it is given and refuses more than the signed size.
type BoundedFile = BoundedHashWriter<BufWriter<File>>;

impl<'a> EntrySink<'a> {
    fn new(
        cfg: &'a Config,
        entries: &[EntryRef],
        release: &dare_container::header::Release,
        staging: &Path,
    ) -> Result<Self, UpdateError> {
        let raw_path = staging.join("frames");
        let raw = File::create(&raw_path).map_err(|e| UpdateError::io("creating", &raw_path, e))?;
        Ok(EntrySink {
            cfg,
            expected: entries.iter().map(|e| (e.offset, *e)).collect(),
            channel: release.channel.clone(),
            target: release.target.clone(),
            version: release.version.clone(),
            staging: staging.to_path_buf(),
            raw: BufWriter::with_capacity(1 << 20, raw),
            stream: FrameStream::new(0),
            current: None,
            leaves: BTreeMap::new(),
            files: Vec::new(),
            received: 0,
        })
    }

    fn finish(mut self) -> Result<(BTreeMap<u64, Hash>, Vec<StagedFile>), UpdateError> {
        if !self.stream.at_boundary() || self.current.is_some() {
            return Err(UpdateError::BadDigest("the entries ended in the middle of a frame".into()));
        }
        if self.leaves.len() != self.expected.len() {
            return Err(UpdateError::BadDigest(format!(
                "{} of {} entries arrived",
                self.leaves.len(),
                self.expected.len()
            )));
        }
        self.raw.flush().map_err(|e| UpdateError::io("writing", self.staging.join("frames"), e))?;
        let f = self.raw.get_ref();
        f.sync_all().map_err(|e| UpdateError::io("syncing", self.staging.join("frames"), e))?;
        Ok((std::mem::take(&mut self.leaves), std::mem::take(&mut self.files)))
    }

    fn handle(&mut self, ev: FrameEvent<'_>) -> Result<(), String> {
        match ev {
            FrameEvent::Header { offset, header, payload_len } => {
                let r = self
                    .expected
                    .get(&offset)
                    .copied()
                    .ok_or_else(|| format!("an unexpected frame at byte {offset}"))?;
                let entry = check_entry_header(header, &self.channel, &self.target, &self.version)
                    .map_err(|m| format!("entry at byte {offset}: {m}"))?;
                if payload_len != entry.stored_size {
                    return Err(format!(
                        "entry {}: payload is {payload_len} bytes, the header says {}",
                        entry.path, entry.stored_size
                    ));
                }
                let staged = self.staging.join(format!("leaf-{}", r.leaf));
                let file = File::create(&staged).map_err(|e| format!("{}: {e}", staged.display()))?;
                let sink = BoundedHashWriter::new(BufWriter::with_capacity(1 << 20, file), entry.size);
                let out = match entry.compression {
                    Compression::None => Content::Plain(sink),
                    Compression::Zstd => {
                        Content::Zstd(Box::new(OneFrame::new(sink).map_err(|e| format!("zstd: {e}"))?))
                    }
                };
                self.current = Some(Current {
                    leaf: r.leaf,
                    entry,
                    header_hash: leaf_hash(header),
                    stored: Hasher::new(),
                    out,
                    staged,
                });
            }
            FrameEvent::Payload(bytes) => {
                let c = self.current.as_mut().ok_or("payload without a header")?;
                c.stored.update(bytes);
                let w = match &mut c.out {
                    Content::Plain(f) => f.write_all(bytes),
                    Content::Zstd(d) => d.write_all(bytes),
                };
                w.map_err(|e| format!("entry {}: {e}", c.entry.path))?;
                self.received += bytes.len() as u64;
                if let Some(p) = &self.cfg.progress {
                    p.event(Event::Fetched { bytes: self.received });
                }
            }
            FrameEvent::End(frame) => {
                let c = self.current.take().ok_or("a frame ended without a header")?;
                let e = &c.entry;
                let mut file = match c.out {
                    Content::Plain(f) => f,
                    Content::Zstd(d) => d.finish().map_err(|err| format!("entry {}: zstd: {err}", e.path))?,
                };
                file.flush().map_err(|err| format!("{}: {err}", c.staged.display()))?;
                let (stored, n) = c.stored.finish();
                if n != e.stored_size || stored != e.stored_sha256.0 {
                    return Err(format!(
                        "entry {}: the stored bytes hash to {}, not the signed {}",
                        e.path,
                        to_hex(&stored),
                        e.stored_sha256
                    ));
                }
                let (content, len, out) = file.finish();
                if len != e.size || content != e.sha256.0 {
                    return Err(format!(
                        "entry {}: the content ({len} bytes) hashes to {}, not the signed {} ({} bytes)",
                        e.path,
                        to_hex(&content),
                        e.sha256,
                        e.size
                    ));
                }
                let f = out.into_inner().map_err(|err| format!("{}: {}", c.staged.display(), err.error()))?;
                f.sync_all().map_err(|err| format!("{}: {err}", c.staged.display()))?;
                let r = self.expected.get(&frame.offset).ok_or("an unexpected frame")?;
                if frame.len() != r.length {
                    return Err(format!(
                        "entry {}: the frame is {} bytes, the manifest says {}",
                        e.path,
                        frame.len(),
                        r.length
                    ));
                }
                self.leaves.insert(c.leaf, c.header_hash);
                self.files.push(StagedFile { path: e.path.clone(), staged: c.staged, mode: e.mode });
            }
        }
        Ok(())
    }
}

impl RangeSink for EntrySink<'_> {
    fn begin(&mut self, _index: usize, start: u64, _total: Option<u64>) -> Result<(), SinkError> {
        if !self.stream.at_boundary() || self.current.is_some() {
            return Err(SinkError("a range began in the middle of a frame".into()));
        }
        self.stream = FrameStream::new(start);
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        self.raw.write_all(bytes).map_err(|e| SinkError(format!("writing the replica staging file: {e}")))?;
        let mut stream = std::mem::replace(&mut self.stream, FrameStream::new(0));
        let r = stream.feed(bytes, &mut |ev| self.handle(ev));
        self.stream = stream;
        r.map_err(|e| SinkError(e.to_string()))
    }
}
