//! One check or update: the protocol of DESIGN.md section 3.4.
//!
//! 1. A suffix of about one seal's length gives the last seal. Its
//!    signatures, its freshness and its relation to the stored checkpoint
//!    (never smaller, the same size only with the same root) are checked.
//!    If the tree is the one already verified, that is the whole check.
//! 2. The map and manifest the seal names: the manifest is proven to be the
//!    last leaf of the signed tree, and gives this target's newest version
//!    and where its index is.
//! 3. This target's index and, in parallel, the tile hashes that prove it and
//!    the stored tree's consistency with the signed one.
//! 4. What the installed build lacks: files whose content is installed are
//!    linked or copied from it (and hashed); changed files come as a delta
//!    against their installed version when the index offers one and the
//!    installed copy hashes to its base, else as a whole entry. Every payload
//!    is streamed through SHA-256 (stored bytes), zstd and SHA-256 (content)
//!    into the state directory, every read bounded by the signed lengths,
//!    and the entries are proven in the signed tree. A delta that does not
//!    produce its signed content falls back to the whole entry.
//!
//! Only when everything verified is anything installed; then the replica
//! (genesis, index, manifest, proof, seal) and the state are replaced.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dare_container::client::{
    self, Fetched, PlanError, ProofPlan, SignedSeal, SignedTop, TailError, TailRead, TailSeal, check_index_header,
    merge_ranges, read_top, top_ranges,
};
use dare_container::content::{self, MAX_DELTA_SIZE, PayloadCheck, PayloadError, PayloadSpec};
use dare_container::crypt::{ContentKey, PayloadKey};
use dare_container::frame::{
    FrameEvent, FrameInfo, FrameStream, MAX_HEADER_LEN, ReadAt, Window, encode_frame, read_frame_at, read_frame_before,
    read_frame_head, read_header,
};
use dare_container::hashio::to_hex;
use dare_container::header::{
    DeltaRef, FileRecord, Header, Index, LeafRef, Listing, MAX_EXCHANGE, MAX_LISTING, Release, Sha256Hex,
};
use dare_container::keys::TrustRoot;
use dare_container::merkle::{Frontier, Hash, NodeId, leaf_hash};
use dare_container::replica::ReplicaWriter;
use dare_container::seal::{self, KeysLeaf, RotationWalk, SealRules};
use dare_container::verify::ScanOptions;

use crate::config::Config;
use crate::error::UpdateError;
use crate::fetch::{FetchError, Mirrors};
use crate::install::{Incoming, current_dir, hash_file};
use crate::progress::Event;
use crate::state::{Installed, State, Trusted, replica_path};
use crate::transport::{ByteRange, RangeSink, SinkError};
use crate::{Outcome, Status};

/// Seal bytes read by a client that has never read this container: a seal
/// with a few signatures fits.
pub const FIRST_SEAL: u64 = 1024;
/// The fewest seal bytes read by a client that knows how long the last seal was.
const MIN_SEAL: u64 = 256;
/// The most seal bytes read: the largest seal frame
/// ([`MAX_SEAL_FRAME`](dare_container::header::MAX_SEAL_FRAME), room for the
/// publisher's signature and 16 post-quantum cosignatures).
pub const MAX_SEAL: u64 = dare_container::header::MAX_SEAL_FRAME;
/// Bytes read at offset 0 for the genesis frame when the replica lacks it.
const GENESIS_GUESS: u64 = 1024;
/// Slack over the last seal's length for the next one (its numbers may grow).
const SEAL_SLACK: u64 = 64;

/// Bytes of the session so far, for the outcome.
#[derive(Default)]
struct Tally {
    full: u64,
    delta: u64,
    reused: u64,
}

pub(crate) async fn run(cfg: &Config, mirrors: &Mirrors, install_wanted: bool) -> Result<Outcome, UpdateError> {
    fs::create_dir_all(&cfg.state_dir).map_err(|e| UpdateError::io("creating", &cfg.state_dir, e))?;
    let _lock = lock_state(&cfg.state_dir).await?;
    let before = mirrors.stats();
    let state = State::load(&cfg.state_dir)?;
    progress(cfg, Event::Checking);

    // Round trip 1: the seal.
    let hint = state.as_ref().map_or(FIRST_SEAL, |s| (s.seal_len + SEAL_SLACK).clamp(MIN_SEAL, MAX_SEAL));
    let (tail, mut fetched) = fetch_seal(mirrors, hint).await?;
    let trusted = trusted_root(cfg, state.as_ref())?;
    // The same tree as the stored one cannot hold a rotation this client has
    // not walked; a new tree may: its manifest names the latest keys leaf,
    // and every rotation since the stored one is checked with the root
    // before it (round trip 2 and one read per rotation).
    let walk = if state.as_ref().is_some_and(|s| s.size == tail.size()) {
        Walk::none(&trusted)
    } else {
        fetch_tail_top(mirrors, &tail, &mut fetched).await?;
        let manifest = client::read_tail_manifest(&tail, &fetched).map_err(tail_error)?;
        walk_rotations(mirrors, &mut fetched, &tail, manifest.keys, &trusted).await?
    };
    let seal = tail.verify(&SealRules::new(&walk.root)).map_err(tail_error)?;
    check_witnesses(cfg, &seal)?;
    let now = (cfg.clock)();
    check_origin(cfg, state.as_ref(), &seal.checkpoint.origin)?;
    check_freshness(cfg, seal.seal.time, now)?;
    check_against_stored(state.as_ref(), &seal, now)?;
    let installed =
        state.as_ref().and_then(|s| s.installed.clone()).filter(|i| i.target == cfg.target && i.channel == cfg.channel);
    let previous = installed.as_ref().map(|i| i.version.clone());
    let outcome = |status: Status, version: &str, tally: &Tally, install_path: Option<PathBuf>| {
        let s = mirrors.stats();
        Outcome {
            status,
            target: cfg.target.clone(),
            channel: cfg.channel.clone(),
            version: version.to_string(),
            previous: previous.clone(),
            bytes_fetched: s.bytes - before.bytes,
            requests: s.requests - before.requests,
            payload_bytes: tally.full + tally.delta,
            bytes_full: tally.full,
            bytes_delta: tally.delta,
            bytes_reused: tally.reused,
            install_path,
            tree_size: seal.size(),
            signed_time: seal.seal.time,
            rotations: walk.rotations(),
            trust_fingerprint: walk.root.fingerprint(),
        }
    };
    let tally = Tally::default();
    if let (Some(s), Some(i)) = (&state, &installed)
        && s.size == seal.size()
    {
        // The tree this client verified last: nothing new, whatever the seal's time.
        // A stored time from the future is replaced by the honest one.
        if install_wanted && (seal.seal.time > s.time || !client::stored_time_binds(s.time, now)) {
            refresh_seal(cfg, s, &seal, &fetched)?;
        }
        return Ok(outcome(Status::UpToDate, &i.version, &tally, None));
    }

    // Round trip 2: the map and the manifest.
    let top = fetch_top(mirrors, seal.clone(), &mut fetched).await?;
    if top.manifest.keys != walk.latest {
        return Err(UpdateError::Rotation(format!(
            "the signed manifest names the keys leaf {:?}, not the one whose rotations were walked ({:?})",
            top.manifest.keys.map(|k| k.leaf),
            walk.latest.map(|k| k.leaf)
        )));
    }
    let release =
        top.manifest.release(&cfg.channel, &cfg.target).cloned().ok_or_else(|| UpdateError::MissingTarget {
            target: cfg.target.clone(),
            channel: cfg.channel.clone(),
            available: describe_available(&top),
        })?;
    let newer = is_newer(&release, installed.as_ref())?;
    if !install_wanted {
        let status = if newer { Status::Available } else { Status::UpToDate };
        return Ok(outcome(status, &release.version, &tally, None));
    }
    let old = state.as_ref().map_or_else(Frontier::new, |s| s.frontier.clone());
    let replica = load_replica(cfg, state.as_ref(), installed.as_ref());

    // Round trip 3: the index (or, with nothing new for this target, the one
    // installed), the genesis if the replica lacks it, and the proofs.
    let old_index = replica.as_ref().and_then(|r| r.index.clone());
    // The index to read from the mirror: the new build's, or the installed
    // one's when the replica lost it (the next update reuses through it).
    let fetch_index = newer || old_index.is_none();
    let index_at = if fetch_index { Some(release.index) } else { old_index.as_ref().map(|i| i.at) };
    let index_bound = 2 * MAX_LISTING + (1 << 20) + 64;
    if index_at.is_some_and(|i| i.length > index_bound) {
        return Err(UpdateError::BadDigest(format!("the manifest names an index of {} bytes", release.index.length)));
    }
    let n = top.size();
    let mut top_leaves = BTreeSet::from([0, n - 1]);
    top_leaves.extend(index_at.map(|i| i.leaf));
    // The installed private index the replica kept, when it is the one used:
    // its exchange stays in the replica too.
    let old_exchange = old_index
        .as_ref()
        .filter(|_| !fetch_index)
        .and_then(|i| i.sealed.as_ref())
        .map(|s| (s.exchange_leaf, leaf_hash(&frame_header(&s.exchange).unwrap_or_default())));
    top_leaves.extend(old_exchange.map(|x| x.0));
    // The replica keeps these leaves (not the keys leaves), with their own proof.
    let replica_leaves = top_leaves.clone();
    // Every keys leaf walked is proven in the signed tree with the rest.
    top_leaves.extend(walk.chain.iter().map(|k| k.at.leaf));
    let known = replica.as_ref().map(|r| r.nodes.clone()).unwrap_or_default();
    let mut rplan = ProofPlan::with_known(&top.map, &Frontier::new(), &top_leaves, &known).map_err(plan_error)?;
    let mut splan = ProofPlan::with_known(&top.map, &Frontier::new(), &replica_leaves, &known).map_err(plan_error)?;
    let mut cplan = ProofPlan::new(&top.map, &old, &BTreeSet::from([n - 1])).map_err(plan_error)?;
    resolve_slots(mirrors, &mut fetched, &mut [&mut rplan, &mut splan, &mut cplan]).await?;
    let mut wanted = rplan.ranges();
    wanted.extend(splan.ranges());
    wanted.extend(cplan.ranges());
    if fetch_index {
        // A client with the previous listing reads only the index's header and patch.
        let end = match (release.head, &old_index) {
            (Some(h), Some(_)) if h < release.index.length => release.index.offset + h,
            _ => release.index.end(),
        };
        wanted.push((release.index.offset, end));
    }
    let genesis_have = replica.as_ref().map(|r| r.genesis.clone());
    if genesis_have.is_none() {
        wanted.push((0, GENESIS_GUESS.min(seal.len)));
    }
    fetch_into(mirrors, &mut fetched, wanted, index_bound + (1 << 20)).await?;
    // The stored tree, with just the manifest, must extend to the signed root.
    if old.size() > 0 {
        let nodes = cplan.nodes(|s, l| fetched.get(s, l)).map_err(|e| UpdateError::BadDigest(e.to_string()))?;
        match cplan.root(&BTreeMap::from([(n - 1, top.manifest_leaf)]), &nodes) {
            Ok(r) if r == seal.checkpoint.root => {}
            other => return Err(fork(mirrors, &seal, &old, other.map(|r| to_hex(&r)).map_err(|e| e.to_string()))),
        }
    }
    let genesis = match genesis_have {
        Some(g) => g,
        None => genesis_frame(mirrors, &mut fetched, &seal).await?,
    };
    let index = if fetch_index {
        match read_index(&fetched, &release, old_index.as_ref())? {
            Some(i) => Some(i),
            None => {
                // The patch is against another listing: the rest of the frame.
                let from = release.index.offset + release.head.unwrap_or(0);
                fetch_into(mirrors, &mut fetched, vec![(from, release.index.end())], index_bound).await?;
                read_index(&fetched, &release, None)?
            }
        }
    } else {
        old_index.clone()
    };
    let mut leaves =
        BTreeMap::from([(0, leaf_hash(&frame_header(&genesis).unwrap_or_default())), (n - 1, top.manifest_leaf)]);
    if let Some(ix) = &index {
        leaves.insert(ix.at.leaf, ix.header_hash());
    }
    if let Some((leaf, hash)) = old_exchange {
        leaves.insert(leaf, hash);
    }
    for k in &walk.chain {
        leaves.insert(k.at.leaf, leaf_hash(&k.header));
    }
    let rnodes = rplan.nodes(|s, l| fetched.get(s, l)).map_err(|e| UpdateError::BadDigest(e.to_string()))?;
    match rplan.root(&leaves, &rnodes) {
        Ok(r) if r == seal.checkpoint.root => {}
        _ if !walk.chain.is_empty() => {
            return Err(UpdateError::Rotation(format!(
                "the index of {} {} {}, the genesis or the keys leaves {:?} are not in the signed tree (from {})",
                release.channel,
                release.target,
                release.version,
                walk.chain.iter().map(|k| k.at.leaf).collect::<Vec<_>>(),
                mirrors.names().join(", ")
            )));
        }
        _ => {
            return Err(UpdateError::BadDigest(format!(
                "the index of {} {} {} (or the genesis) is not in the signed tree (from {})",
                release.channel,
                release.target,
                release.version,
                mirrors.names().join(", ")
            )));
        }
    }
    let snodes = splan.nodes(|s, l| fetched.get(s, l)).map_err(|e| UpdateError::BadDigest(e.to_string()))?;
    let replica_leaf_hashes: BTreeMap<u64, Hash> =
        leaves.iter().filter(|(i, _)| replica_leaves.contains(i)).map(|(i, h)| (*i, *h)).collect();
    if splan.root(&replica_leaf_hashes, &snodes).ok() != Some(seal.checkpoint.root) {
        return Err(UpdateError::BadDigest(format!(
            "the tile hashes proving the replica's leaves do not give the signed root (from {})",
            mirrors.names().join(", ")
        )));
    }
    // A private index just read: its release's key opens it (an identity
    // that is not a recipient stops here, before any payload is fetched),
    // and the replica keeps its exchange with it.
    let mut index = index;
    let (splan, snodes) = match index.as_mut() {
        Some(ix) if ix.index.sealed.is_some() && ix.sealed.is_none() => {
            let mut known = known;
            known.extend(snodes.iter().map(|(k, v)| (*k, *v)));
            known.extend(rnodes.iter().map(|(k, v)| (*k, *v)));
            open_private(cfg, mirrors, &mut fetched, &top, ix, &replica_leaf_hashes, &known).await?
        }
        _ => (splan, snodes),
    };
    let manifest_bytes = frame_bytes(&fetched, &top.manifest_frame)?;
    let seal_bytes = frame_bytes(&fetched, &top.seal.frame)?;
    let replica_parts = |index| ReplicaParts {
        genesis: &genesis,
        index,
        manifest: &manifest_bytes,
        seal: &seal_bytes,
        top: &top,
        plan: &splan,
        nodes: &snodes,
    };
    if !newer {
        // Nothing new for this target: keep the newer tree.
        write_replica(cfg, &replica_parts(index.as_ref()))?;
        save_state(cfg, &top, installed.clone(), state.as_ref().map(|s| s.origin.clone()), &walk)?;
        return Ok(outcome(Status::UpToDate, &release.version, &tally, None));
    }
    let new_index = index.as_ref().ok_or_else(|| UpdateError::State("the index was not read".into()))?;
    let mut tally = tally;

    // Round trip 4: what the installed build lacks.
    let staging = cfg.state_dir.join("staging");
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| UpdateError::io("clearing", &staging, e))?;
    }
    fs::create_dir(&staging).map_err(|e| UpdateError::io("creating", &staging, e))?;
    let result = async {
        let mut incoming = Incoming::new(&cfg.install_dir, &release.version)?;
        let old_build = old_index.as_ref().map(|i| i.files.as_slice());
        let mut needs = plan_files(&mut incoming, &new_index.files, old_build, &cfg.install_dir, &mut tally)?;
        progress(
            cfg,
            Event::Found { version: release.version.clone(), bytes: needs.values().map(|n| n.at().length).sum() },
        );
        let mut staged =
            fetch_contents(cfg, mirrors, &top, &mut fetched, (&leaves, &rnodes), &mut needs, &staging, &mut tally)
                .await?;
        // A delta that did not give its signed content: the whole entry instead.
        let failed: Vec<Sha256Hex> = needs.iter().filter(|(s, _)| !staged.contains_key(*s)).map(|(s, _)| *s).collect();
        if !failed.is_empty() {
            let mut retry: BTreeMap<Sha256Hex, Need> = BTreeMap::new();
            for sha in failed {
                let need = needs.remove(&sha).ok_or_else(|| UpdateError::State("a need vanished".into()))?;
                tracing::warn!(sha = %sha, "a delta did not produce its signed content; fetching the whole entry");
                retry.insert(sha, Need::Full { at: need.entry(), key: need.entry_key(), paths: need.into_paths() });
            }
            staged.extend(
                fetch_contents(cfg, mirrors, &top, &mut fetched, (&leaves, &rnodes), &mut retry, &staging, &mut tally)
                    .await?,
            );
            needs.extend(retry);
        }
        progress(cfg, Event::Installing);
        for (sha, need) in &needs {
            let file =
                staged.get(sha).ok_or_else(|| UpdateError::BadDigest(format!("content {sha} did not arrive")))?;
            let paths = need.paths();
            for (i, (path, mode)) in paths.iter().enumerate() {
                incoming.place(path, file, *mode, i + 1 == paths.len())?;
            }
        }
        incoming.commit()
    }
    .await;
    let _ = fs::remove_dir_all(&staging);
    let install_path = result?;
    write_replica(cfg, &replica_parts(index.as_ref()))?;
    let installed =
        Installed { target: cfg.target.clone(), channel: cfg.channel.clone(), version: release.version.clone() };
    save_state(cfg, &top, Some(installed), state.as_ref().map(|s| s.origin.clone()), &walk)?;
    Ok(outcome(Status::Updated, &release.version, &tally, Some(install_path)))
}

fn progress(cfg: &Config, e: Event) {
    if let Some(p) = &cfg.progress {
        p.event(e);
    }
}

/// An exclusive lock on the state directory for the whole update.
/// Locks the state dir for this update. A lock that stays busy for
/// [`LOCK_WAIT`] is another update's; a shorter wait covers this process's
/// own fork: a child forked on another thread holds a copy of the lock's
/// descriptor until it execs (and closes it), so right after an update the
/// next one can find the lock held for a moment.
async fn lock_state(dir: &Path) -> Result<File, UpdateError> {
    let path = dir.join("lock");
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| UpdateError::io("opening", &path, e))?;
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(std::fs::TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(UpdateError::State(format!("{} is locked by another update", dir.display())));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(UpdateError::io("locking", &path, e)),
        }
    }
}

/// How long an update waits for the state lock before it says another
/// update holds it.
const LOCK_WAIT: Duration = Duration::from_secs(2);

fn plan_error(e: PlanError) -> UpdateError {
    UpdateError::BadSignature(format!("the signed map cannot locate its proof material: {e}"))
}

fn describe_available(top: &SignedTop) -> String {
    let list: Vec<String> =
        top.manifest.releases.iter().map(|r| format!("{} on {} ({})", r.target, r.channel, r.version)).collect();
    if list.is_empty() { "no releases".into() } else { list.join(", ") }
}

fn is_newer(release: &Release, installed: Option<&Installed>) -> Result<bool, UpdateError> {
    let new_version = semver::Version::parse(&release.version)
        .map_err(|e| UpdateError::BadDigest(format!("the signed manifest has a bad version: {e}")))?;
    let Some(i) = installed else { return Ok(true) };
    let have = semver::Version::parse(&i.version).map_err(|e| UpdateError::State(e.to_string()))?;
    match new_version.cmp_precedence(&have) {
        std::cmp::Ordering::Greater => Ok(true),
        std::cmp::Ordering::Equal => Ok(false),
        std::cmp::Ordering::Less => {
            Err(UpdateError::Rollback(format!("the signed manifest offers {new_version} but {have} is installed")))
        }
    }
}

fn check_origin(cfg: &Config, state: Option<&State>, found: &str) -> Result<(), UpdateError> {
    let expected = cfg.origin.as_deref().or(state.map(|s| s.origin.as_str()));
    match expected {
        Some(e) if e != found => Err(UpdateError::WrongOrigin { expected: e.to_string(), found: found.to_string() }),
        _ => Ok(()),
    }
}

fn check_freshness(cfg: &Config, signed: u64, now: u64) -> Result<(), UpdateError> {
    client::check_signed_time(signed, now, client::MAX_CLOCK_SKEW).map_err(UpdateError::FutureTime)?;
    let age = now.saturating_sub(signed);
    if age > cfg.max_age.as_secs() {
        return Err(UpdateError::Freeze { age_secs: age, max_age_secs: cfg.max_age.as_secs() });
    }
    Ok(())
}

fn check_against_stored(state: Option<&State>, seal: &SignedSeal, now: u64) -> Result<(), UpdateError> {
    let Some(s) = state else { return Ok(()) };
    let n = seal.size();
    if n < s.size {
        return Err(UpdateError::Rollback(format!(
            "the mirror's tree has {n} leaves, but this client already verified {}",
            s.size
        )));
    }
    if n == s.size && seal.checkpoint.root != s.root {
        return Err(UpdateError::Fork(format!(
            "two signed trees of {n} leaves with different roots ({} stored, {} now)",
            to_hex(&s.root),
            to_hex(&seal.checkpoint.root)
        )));
    }
    // A stored time from the future (a publisher's mistake this client
    // accepted before it checked) orders nothing: the tree size and the
    // consistency proof still refuse rollbacks.
    if seal.seal.time < s.time && client::stored_time_binds(s.time, now) {
        return Err(UpdateError::Rollback(format!(
            "the mirror's seal was signed at {}, before the stored one at {}",
            seal.seal.time, s.time
        )));
    }
    Ok(())
}

fn fork(mirrors: &Mirrors, seal: &SignedSeal, old: &Frontier, detail: Result<String, String>) -> UpdateError {
    let why = match detail {
        Ok(root) => format!("the consistency proof gives root {root}"),
        Err(e) => e,
    };
    UpdateError::Fork(format!(
        "cannot prove the signed tree of {} leaves extends the stored tree of {} leaves: {why} \
         (the log forked, or {} serves bad tiles)",
        seal.size(),
        old.size(),
        mirrors.names().join(", ")
    ))
}

/// Fetches a suffix of the container (more if the seal reaches further back)
/// and reads the seal; its signatures are checked once the trust root in
/// effect is known ([`walk_rotations`]).
async fn fetch_seal(mirrors: &Mirrors, hint: u64) -> Result<(TailSeal, Fetched), UpdateError> {
    let mut sink = BufferSink::new(MAX_SEAL);
    mirrors.fetch(&[ByteRange::Suffix(hint)], &mut sink).await.map_err(network)?;
    let (mut start, mut bytes, total) = sink.single()?;
    let len = total.unwrap_or(start + bytes.len() as u64);
    if start + bytes.len() as u64 != len {
        return Err(UpdateError::BadSignature("the mirror's suffix does not end at the end of the container".into()));
    }
    loop {
        let window = Window::new(start, &bytes);
        match client::read_tail(&window, len).map_err(tail_error)? {
            TailRead::Complete(seal) => {
                let mut fetched = Fetched::new();
                fetched.insert(start, bytes);
                return Ok((*seal, fetched));
            }
            TailRead::NeedMore { start: want } => {
                if want >= start || len - want > MAX_SEAL {
                    return Err(UpdateError::BadSignature(format!(
                        "the container's last seal needs {} bytes, more than the {MAX_SEAL} allowed",
                        len - want
                    )));
                }
                let mut more = BufferSink::new(MAX_SEAL);
                mirrors.fetch(&[ByteRange::Span { start: want, end: start }], &mut more).await.map_err(network)?;
                let (_, mut head, _) = more.single()?;
                head.extend_from_slice(&bytes);
                bytes = head;
                start = want;
            }
        }
    }
}

/// With witnesses configured, the checkpoint needs their threshold of
/// valid cosignatures (lines the seal's note carries beside the publisher's).
fn check_witnesses(cfg: &Config, seal: &SignedSeal) -> Result<(), UpdateError> {
    let Some(policy) = &cfg.witnesses else { return Ok(()) };
    let note = dare_container::note::Note::parse(seal.seal.checkpoint.as_bytes())
        .map_err(|e| UpdateError::BadSignature(e.to_string()))?;
    policy.check(&note).map(drop).map_err(|e| {
        let names: Vec<&str> = policy.keys().iter().map(|k| k.name()).collect();
        UpdateError::Witness(format!(
            "the checkpoint of tree size {}: {e} (witnesses: {})",
            seal.size(),
            names.join(", ")
        ))
    })
}

/// The trust root this client starts from: the one it stored (after the
/// rotations it walked), unless it was configured with other keys since.
fn trusted_root(cfg: &Config, state: Option<&State>) -> Result<Trusted, UpdateError> {
    let configured = TrustRoot::new(cfg.trust.clone(), cfg.threshold)
        .map_err(|e| UpdateError::Config(format!("the trusted keys: {e}")))?;
    let pinned = configured.fingerprint();
    match state.and_then(|s| s.trust.clone()) {
        Some(t) if t.pinned == pinned => Ok(t),
        Some(_) => {
            tracing::info!("the trusted keys changed since the last update: starting from them");
            Ok(Trusted { root: configured, keys: None, pinned })
        }
        None => Ok(Trusted { root: configured, keys: None, pinned }),
    }
}

/// The rotations between the trust root a client holds and today's.
struct Walk {
    /// The root in effect at the signed tree.
    root: TrustRoot,
    /// The keys leaves read, oldest first (all proven in the signed tree).
    chain: Vec<KeysLeaf>,
    /// How many of them were rotations from the client's root on.
    walked: usize,
    /// The latest keys leaf (the manifest's), where the root came from.
    latest: Option<LeafRef>,
    /// The configured keys' fingerprint.
    pinned: String,
}

impl Walk {
    fn none(t: &Trusted) -> Walk {
        Walk { root: t.root.clone(), chain: Vec::new(), walked: 0, latest: t.keys, pinned: t.pinned.clone() }
    }

    fn rotations(&self) -> u64 {
        self.walked as u64
    }
}

/// Follows the key rotations from this client's root to the one in effect
/// for the signed tree ([`RotationWalk`]): one bounded read per `keys` leaf.
async fn walk_rotations(
    mirrors: &Mirrors,
    fetched: &mut Fetched,
    tail: &TailSeal,
    latest: Option<LeafRef>,
    trusted: &Trusted,
) -> Result<Walk, UpdateError> {
    let refused = |e: seal::RotationError| UpdateError::Rotation(format!("{e} (from {})", mirrors.names().join(", ")));
    let mut walk = RotationWalk::new(trusted.root.clone(), trusted.keys, latest, tail.size(), tail.frame.offset);
    while let Some(at) = walk.next_read().map_err(refused)? {
        fetch_into(mirrors, fetched, vec![(at.offset, at.end())], at.length).await?;
        walk.feed(&*fetched).map_err(refused)?;
    }
    let (root, chain) = walk.finish(&tail.checkpoint.origin).map_err(refused)?;
    Ok(Walk { root, walked: chain.len(), chain, latest, pinned: trusted.pinned.clone() })
}

/// Fetches the map and manifest a seal read from the tail names.
async fn fetch_tail_top(mirrors: &Mirrors, tail: &TailSeal, fetched: &mut Fetched) -> Result<(), UpdateError> {
    let ranges = client::tail_top_ranges(tail).map_err(tail_error)?;
    let cap = ranges.iter().map(|(s, e)| e - s).sum();
    fetch_into(mirrors, fetched, ranges, cap).await
}

/// Fetches the map and manifest the seal names and verifies the manifest.
async fn fetch_top(mirrors: &Mirrors, seal: SignedSeal, fetched: &mut Fetched) -> Result<SignedTop, UpdateError> {
    let ranges = top_ranges(&seal).map_err(tail_error)?;
    let cap = ranges.iter().map(|(s, e)| e - s).sum();
    fetch_into(mirrors, fetched, ranges, cap).await?;
    read_top(seal, &*fetched).map_err(tail_error)
}

/// Fetches the parts of `ranges` not already in `fetched`, at most `cap` bytes.
async fn fetch_into(
    mirrors: &Mirrors,
    fetched: &mut Fetched,
    ranges: Vec<(u64, u64)>,
    cap: u64,
) -> Result<(), UpdateError> {
    let missing = fetched.missing(merge_ranges(ranges));
    if missing.is_empty() {
        return Ok(());
    }
    let req: Vec<ByteRange> = missing.iter().map(|(start, end)| ByteRange::Span { start: *start, end: *end }).collect();
    let mut sink = BufferSink::new(cap);
    mirrors.fetch(&req, &mut sink).await.map_err(network)?;
    for (start, bytes) in sink.parts {
        fetched.insert(start, bytes);
    }
    Ok(())
}

/// Reads the page slots the plans need (tiles listed in a page), if any.
async fn resolve_slots(
    mirrors: &Mirrors,
    fetched: &mut Fetched,
    plans: &mut [&mut ProofPlan],
) -> Result<(), UpdateError> {
    let slots: Vec<(u64, u64)> = plans.iter().flat_map(|p| p.slot_ranges()).collect();
    fetch_into(mirrors, fetched, slots, 1 << 20).await?;
    for p in plans.iter_mut() {
        p.resolve_slots(|s, l| fetched.get(s, l)).map_err(|e| UpdateError::BadDigest(e.to_string()))?;
    }
    Ok(())
}

fn tail_error(e: TailError) -> UpdateError {
    match e {
        TailError::Unsealed(_) => UpdateError::Unsealed(e.to_string()),
        TailError::Damaged(_) => UpdateError::Damaged(e.to_string()),
        // The seal verified, but what it names is not a frame there: a shifted or damaged copy.
        TailError::Frame(f) => UpdateError::Damaged(format!(
            "the frames the signed seal names are not where it places them ({f}): the mirror serves a shifted or damaged file"
        )),
        e => UpdateError::BadSignature(e.to_string()),
    }
}

fn network(e: FetchError) -> UpdateError {
    match e {
        FetchError::Refused(s) => UpdateError::BadDigest(s.0),
        other => UpdateError::Network(other),
    }
}

fn frame_header(frame_bytes: &[u8]) -> Option<Vec<u8>> {
    let f = read_frame_at(frame_bytes, 0, frame_bytes.len() as u64).ok()?;
    read_header(frame_bytes, &f).ok()
}

/// The genesis frame (leaf 0) from what was fetched, fetching more if it is longer than guessed.
async fn genesis_frame(mirrors: &Mirrors, fetched: &mut Fetched, seal: &SignedSeal) -> Result<Vec<u8>, UpdateError> {
    let bad = |m: String| UpdateError::BadDigest(format!("genesis frame: {m}"));
    let frame = match read_frame_at(&*fetched, 0, seal.len) {
        Ok(f) => f,
        Err(dare_container::frame::FrameError::Truncated { needed, .. }) if needed <= 1 << 20 => {
            fetch_into(mirrors, fetched, vec![(0, needed.min(seal.len))], 1 << 20).await?;
            read_frame_at(&*fetched, 0, seal.len).map_err(|e| bad(e.to_string()))?
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    let header = read_header(&*fetched, &frame).map_err(|e| bad(e.to_string()))?;
    match Header::parse(&header) {
        Ok(Header::Genesis(g)) if g.origin == seal.checkpoint.origin => {}
        Ok(Header::Genesis(g)) => return Err(bad(format!("its origin {} is not the checkpoint's", g.origin))),
        Ok(h) => return Err(bad(format!("frame 0 is a {} frame", h.kind()))),
        Err(e) => return Err(bad(e.to_string())),
    }
    Ok(fetched.get(0, frame.len()).ok_or_else(|| bad("not fetched".into()))?.to_vec())
}

/// An index read from a mirror or the replica: its header (the leaf), its
/// listing and files.
#[derive(Clone)]
struct IndexRead {
    at: LeafRef,
    header: Vec<u8>,
    index: Index,
    listing: Vec<u8>,
    files: Vec<FileRecord>,
    /// A private index, opened: what the replica keeps of it and its key.
    /// `None` for a private index not yet opened (no listing, no files).
    sealed: Option<SealedIndex>,
}

/// What a private index brings besides its listing (FORMAT.md 13.3).
#[derive(Clone)]
struct SealedIndex {
    /// The `exchange` frame as stored, and its leaf.
    exchange: Vec<u8>,
    exchange_leaf: u64,
    /// The index's whole frame as stored: a replica keeps its listing sealed.
    frame: Vec<u8>,
}

impl IndexRead {
    fn header_hash(&self) -> Hash {
        leaf_hash(&self.header)
    }
}

/// Reads this target's index from what was fetched: the header the manifest
/// promised, and its listing, checked against the header's digests: from the
/// whole frame, or from the patch against `old` (the installed build's
/// listing) when only the frame's head was fetched. `Ok(None)`: the head is
/// not enough (the patch is against another listing); fetch the rest.
fn read_index(fetched: &Fetched, release: &Release, old: Option<&IndexRead>) -> Result<Option<IndexRead>, UpdateError> {
    let at = release.index;
    let bad = |m: String| UpdateError::BadDigest(format!("the index of {} {}: {m}", release.target, release.version));
    let whole = fetched.has(at.offset, at.length);
    let frame = if whole {
        read_frame_at(fetched, at.offset, at.end()).map_err(|e| bad(e.to_string()))?
    } else {
        read_frame_head(fetched, at.offset, at.length).map_err(|e| bad(e.to_string()))?
    };
    if frame.len() != at.length {
        return Err(bad("the frame is not the length the manifest says".into()));
    }
    let header = read_header(fetched, &frame).map_err(|e| bad(e.to_string()))?;
    let index = check_index_header(&header, release).map_err(bad)?;
    if frame.payload_len != index.payload_len() {
        return Err(bad("the payload is not the length the header says".into()));
    }
    if index.sealed.is_some() {
        // A private index has no patch: its whole frame, opened later
        // ([`open_private`]) once its release's key is unwrapped.
        if !whole {
            return Ok(None);
        }
        return Ok(Some(IndexRead { at, header, index, listing: Vec::new(), files: Vec::new(), sealed: None }));
    }
    let listing = if whole {
        content::listing_bytes(fetched, &frame, &index).map_err(|e| bad(e.to_string()))?
    } else {
        match (index.patch, old) {
            (Some(p), Some(o)) if p.base == o.index.sha256 => {
                content::listing_from_patch(fetched, frame.payload_offset, &index, &o.listing)
                    .map_err(|e| bad(e.to_string()))?
            }
            _ => return Ok(None),
        }
    };
    let files = content::parse(&listing, &index).map_err(|e| bad(e.to_string()))?;
    Ok(Some(IndexRead { at, header, index, listing, files, sealed: None }))
}

#[cfg(feature = "encryption")]
type Ids = dare_container::crypt::Identities;
#[cfg(not(feature = "encryption"))]
type Ids = std::convert::Infallible;

/// The identities that open `what`, a private channel's release: refused
/// (before anything of it is fetched) when there are none.
fn identities<'a>(cfg: &'a Config, what: &str) -> Result<&'a Ids, UpdateError> {
    #[cfg(feature = "encryption")]
    {
        cfg.identities.as_deref().ok_or_else(|| {
            UpdateError::Identity(format!(
                "{what} is on a private channel: it needs an identity that is one of its recipients (--identity)"
            ))
        })
    }
    #[cfg(not(feature = "encryption"))]
    {
        let _ = cfg;
        Err(UpdateError::Identity(format!(
            "{what} is on a private channel: this updater was built without dare-updater's `encryption` feature, \
             which opens it with an identity"
        )))
    }
}

/// The content key an exchange payload wraps to one of `ids`.
fn unwrap_key(ids: &Ids, exchange: &[u8], what: &str) -> Result<ContentKey, UpdateError> {
    #[cfg(feature = "encryption")]
    {
        use dare_container::crypt::{CryptError, unwrap_content_key};
        match unwrap_content_key(exchange, ids) {
            Ok(k) => Ok(k),
            Err(CryptError::NotARecipient) => Err(UpdateError::Identity(format!(
                "{what} is on a private channel and no identity given is one of its recipients"
            ))),
            Err(e) => Err(UpdateError::BadDigest(format!("the key exchange of {what}: {e}"))),
        }
    }
    #[cfg(not(feature = "encryption"))]
    {
        let _ = (exchange, what);
        match *ids {}
    }
}

/// An `exchange` frame's header and payload, checked against its ref and
/// its stored digest (not yet proven in the tree): `(header, payload)`.
fn read_exchange<R: ReadAt + ?Sized>(src: &R, at: (u64, u64), channel: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    let frame = read_frame_at(src, at.0, at.0 + at.1).map_err(|e| e.to_string())?;
    if frame.len() != at.1 {
        return Err("the frame is not the length its index's `sealed` says".into());
    }
    let header = read_header(src, &frame).map_err(|e| e.to_string())?;
    let x = match Header::parse(&header) {
        Ok(Header::Exchange(x)) => x,
        Ok(h) => return Err(format!("a {} frame, not an exchange", h.kind())),
        Err(e) => return Err(e.to_string()),
    };
    if x.channel != channel {
        return Err(format!("it keys channel {}, not {channel}", x.channel));
    }
    if frame.payload_len != x.stored_size || x.stored_size > MAX_EXCHANGE {
        return Err("the payload is not the length the header says".into());
    }
    let mut payload = vec![0u8; frame.payload_len as usize];
    src.read_exact_at(&mut payload, frame.payload_offset).map_err(|e| e.to_string())?;
    if dare_container::hashio::sha256(&payload) != x.stored_sha256.0 {
        return Err("the payload does not hash to the header's stored_sha256".into());
    }
    Ok((header, payload))
}

/// Opens a private index (FORMAT.md 13): with an identity (else
/// [`UpdateError::Identity`] before anything more is fetched), reads its
/// release's `exchange` frame and proves it in the signed tree with the
/// replica's leaves, unwraps the content key (a non-recipient is
/// [`UpdateError::Identity`] too), then opens and checks the listing.
/// Returns the plan and nodes proving the replica's leaves with the exchange.
#[allow(clippy::too_many_arguments)]
async fn open_private(
    cfg: &Config,
    mirrors: &Mirrors,
    fetched: &mut Fetched,
    top: &SignedTop,
    ix: &mut IndexRead,
    replica_leaves: &BTreeMap<u64, Hash>,
    known: &HashMap<NodeId, Hash>,
) -> Result<(ProofPlan, HashMap<NodeId, Hash>), UpdateError> {
    let what = format!("{} {} {}", ix.index.channel, ix.index.target, ix.index.version);
    let bad = |m: String| UpdateError::BadDigest(format!("the private index of {what}: {m}"));
    let xref = ix.index.sealed.ok_or_else(|| UpdateError::State("not a private index".into()))?;
    let ids = identities(cfg, &what)?;
    if xref.leaf >= ix.at.leaf || xref.end() > ix.at.offset {
        return Err(bad("its key exchange does not precede it".into()));
    }
    if xref.length > MAX_EXCHANGE + MAX_HEADER_LEN {
        return Err(bad(format!("its key exchange is {} bytes", xref.length)));
    }
    let mut want: BTreeSet<u64> = replica_leaves.keys().copied().collect();
    want.insert(xref.leaf);
    let mut plan = ProofPlan::with_known(&top.map, &Frontier::new(), &want, known).map_err(plan_error)?;
    resolve_slots(mirrors, fetched, &mut [&mut plan]).await?;
    let mut ranges = plan.ranges();
    ranges.push((xref.offset, xref.end()));
    fetch_into(mirrors, fetched, ranges, xref.length + (1 << 22)).await?;
    let (header, payload) = read_exchange(&*fetched, (xref.offset, xref.length), &ix.index.channel)
        .map_err(|m| bad(format!("its key exchange: {m}")))?;
    let mut leaves = replica_leaves.clone();
    leaves.insert(xref.leaf, leaf_hash(&header));
    let nodes = plan.nodes(|s, l| fetched.get(s, l)).map_err(|e| UpdateError::BadDigest(e.to_string()))?;
    if plan.root(&leaves, &nodes).ok() != Some(top.seal.checkpoint.root) {
        return Err(bad(format!(
            "its key exchange (leaf {}) is not in the signed tree (from {})",
            xref.leaf,
            mirrors.names().join(", ")
        )));
    }
    let key = unwrap_key(ids, &payload, &what)?;
    let frame = read_frame_at(&*fetched, ix.at.offset, ix.at.end()).map_err(|e| bad(e.to_string()))?;
    let listing = content::sealed_listing_bytes(&*fetched, &frame, &ix.index, ix.at.leaf, &key)
        .map_err(|e| bad(e.to_string()))?;
    ix.files = content::parse(&listing, &ix.index).map_err(|e| bad(e.to_string()))?;
    ix.listing = listing;
    let exchange = fetched.get(xref.offset, xref.length).ok_or_else(|| bad("not fetched".into()))?.to_vec();
    let whole = fetched.get(ix.at.offset, ix.at.length).ok_or_else(|| bad("not fetched".into()))?.to_vec();
    ix.sealed = Some(SealedIndex { exchange, exchange_leaf: xref.leaf, frame: whole });
    Ok((plan, nodes))
}

/// What the replica holds that this session can use: the genesis frame and
/// the installed build's index, verified against the stored checkpoint.
struct OldReplica {
    genesis: Vec<u8>,
    index: Option<IndexRead>,
    /// The node hashes that proved the replica's leaves in the stored tree:
    /// checked, and they never change.
    nodes: HashMap<NodeId, Hash>,
}

/// Reads and verifies the replica. Anything wrong with it only costs reuse:
/// the genesis is fetched again and every file is fetched.
fn load_replica(cfg: &Config, state: Option<&State>, installed: Option<&Installed>) -> Option<OldReplica> {
    let state = state?;
    let path = replica_path(&cfg.state_dir);
    // The replica's seal answers to the root the state holds (after the
    // rotations walked); a state from before that, to the configured keys.
    let opts = match &state.trust {
        Some(t) => ScanOptions::default().with_replica_trust(Some(t.root.clone())),
        None => ScanOptions::default().with_pins(Some(cfg.trust.clone())),
    };
    let scan = match dare_container::scan_file(&path, &opts) {
        Ok(s) if s.partial && s.size == state.size && s.last_seal.checkpoint.root == state.root => s,
        Ok(_) => {
            tracing::warn!(replica = %path.display(), "the replica is not of the stored tree; not reusing it");
            return None;
        }
        Err(e) => {
            tracing::warn!(replica = %path.display(), error = %e, "the replica does not verify; not reusing it");
            return None;
        }
    };
    let file = File::open(&path).ok()?;
    let g = read_frame_at(&file, 0, scan.sealed_len).ok()?;
    let mut genesis = vec![0u8; g.len() as usize];
    file.read_exact_at(&mut genesis, 0).ok()?;
    let index = installed.and_then(|i| {
        let rec = scan
            .indexes
            .iter()
            .find(|r| r.index.target == i.target && r.index.channel == i.channel && r.index.version == i.version)?;
        // The index's place in the upstream container, as the manifest of the stored tree named it.
        let at = scan.manifest.release(&rec.index.channel, &rec.index.target)?.index;
        let header = read_header(&file, &rec.frame).ok()?;
        if let Some(xref) = rec.index.sealed {
            // A private index: its whole frame, right after its exchange.
            let what = format!("{} {} {}", i.channel, i.target, i.version);
            let ids = identities(cfg, &what).ok()?;
            let x = read_frame_before(&file, 0, rec.frame.offset).ok()?;
            let (_, payload) = read_exchange(&file, (x.offset, x.len()), &i.channel).ok()?;
            let key = unwrap_key(ids, &payload, &what).ok()?;
            let listing = content::sealed_listing_bytes(&file, &rec.frame, &rec.index, at.leaf, &key).ok()?;
            let files = content::parse(&listing, &rec.index).ok()?;
            let mut exchange = vec![0u8; x.len() as usize];
            file.read_exact_at(&mut exchange, x.offset).ok()?;
            let mut whole = vec![0u8; rec.frame.len() as usize];
            file.read_exact_at(&mut whole, rec.frame.offset).ok()?;
            let sealed = SealedIndex { exchange, exchange_leaf: xref.leaf, frame: whole };
            return Some(IndexRead { at, header, index: rec.index.clone(), listing, files, sealed: Some(sealed) });
        }
        let listing = if rec.frame.payload_len == 0 {
            // The listing frame that follows it (checked by the scan).
            let l = read_frame_at(&file, rec.frame.end(), scan.sealed_len).ok()?;
            let mut b = vec![0u8; l.payload_len as usize];
            file.read_exact_at(&mut b, l.payload_offset).ok()?;
            b
        } else {
            content::listing_bytes(&file, &rec.frame, &rec.index).ok()?
        };
        Some(IndexRead { at, header, index: rec.index.clone(), listing, files: rec.files.clone(), sealed: None })
    });
    let nodes = proof_nodes(&file, &scan).unwrap_or_default();
    Some(OldReplica { genesis, index, nodes })
}

/// The nodes of the replica's proof frame that its scan used to prove its
/// leaves against the stored root (an unused node was never checked).
fn proof_nodes(file: &File, scan: &dare_container::verify::Scan) -> Option<HashMap<NodeId, Hash>> {
    let seal = scan.last_seal.frame.offset;
    let p = read_frame_before(file, 0, seal).ok()?;
    let Ok(Header::Proof(proof)) = Header::parse(&read_header(file, &p).ok()?) else { return None };
    let mut raw = vec![0u8; p.payload_len as usize];
    file.read_exact_at(&mut raw, p.payload_offset).ok()?;
    let leaves: BTreeSet<u64> = proof.leaves.iter().copied().collect();
    let used: BTreeSet<NodeId> =
        dare_container::merkle::plan_nodes(proof.size, &Frontier::new(), &leaves).ok()?.into_iter().collect();
    Some(
        proof
            .nodes
            .iter()
            .zip(raw.chunks_exact(32))
            .map(|((height, index), h)| (NodeId { height: *height, index: *index }, h.try_into().unwrap_or([0; 32])))
            .filter(|(id, _)| used.contains(id))
            .collect(),
    )
}

/// Where the replica's frames come from.
struct ReplicaParts<'a> {
    genesis: &'a [u8],
    index: Option<&'a IndexRead>,
    manifest: &'a [u8],
    seal: &'a [u8],
    top: &'a SignedTop,
    plan: &'a ProofPlan,
    nodes: &'a HashMap<NodeId, Hash>,
}

/// Replaces the replica: genesis, index, manifest, proof, seal.
fn write_replica(cfg: &Config, p: &ReplicaParts<'_>) -> Result<(), UpdateError> {
    let mut w = ReplicaWriter::create(&replica_path(&cfg.state_dir))?;
    let written = (|| {
        let n = p.top.size();
        w.append_frames(&mut &p.genesis[..], p.genesis.len() as u64)?;
        let mut leaves = vec![0];
        if let Some(SealedIndex { exchange, exchange_leaf, frame }) = p.index.and_then(|ix| ix.sealed.as_ref()) {
            // A private index: its exchange, then its whole frame (the
            // listing stays sealed; FORMAT.md 13.3).
            w.append_frames(&mut exchange.as_slice(), exchange.len() as u64)?;
            leaves.push(*exchange_leaf);
            w.append_frames(&mut frame.as_slice(), frame.len() as u64)?;
            leaves.extend(p.index.map(|ix| ix.at.leaf));
        } else if let Some(ix) = p.index {
            // The index's header (its leaf), then its listing, plain.
            let frame =
                encode_frame(&ix.header, b"").ok_or_else(|| UpdateError::State("index header too large".into()))?;
            w.append_frames(&mut frame.as_slice(), frame.len() as u64)?;
            let l = Header::Listing(Listing { size: ix.listing.len() as u64, sha256: ix.index.sha256 })
                .to_bytes()
                .map_err(|e| UpdateError::State(e.to_string()))?;
            let frame = encode_frame(&l, &ix.listing).ok_or_else(|| UpdateError::State("listing too large".into()))?;
            w.append_frames(&mut frame.as_slice(), frame.len() as u64)?;
            leaves.push(ix.at.leaf);
        }
        w.append_frames(&mut &p.manifest[..], p.manifest.len() as u64)?;
        leaves.push(n - 1);
        let nodes: Vec<(NodeId, Hash)> =
            p.plan.node_ids().into_iter().filter_map(|id| p.nodes.get(&id).map(|h| (id, *h))).collect();
        w.append_proof(n, &leaves, &nodes)?;
        w.append_frames(&mut &p.seal[..], p.seal.len() as u64)?;
        Ok::<_, UpdateError>(())
    })();
    match written {
        Ok(()) => {
            w.commit()?;
            Ok(())
        }
        Err(e) => {
            let _ = w.abort();
            Err(e)
        }
    }
}

/// A frame of the top (manifest or seal) as fetched.
fn frame_bytes(fetched: &Fetched, f: &FrameInfo) -> Result<Vec<u8>, UpdateError> {
    fetched
        .get(f.offset, f.len())
        .map(<[u8]>::to_vec)
        .ok_or_else(|| UpdateError::State("a tail frame is missing".into()))
}

/// A heartbeat: the same tree with a fresher seal. The replica gets the new
/// seal in place of its old one, and the state its time.
fn refresh_seal(cfg: &Config, s: &State, seal: &SignedSeal, fetched: &Fetched) -> Result<(), UpdateError> {
    let path = replica_path(&cfg.state_dir);
    let sbytes = fetched
        .get(seal.frame.offset, seal.frame.len())
        .ok_or_else(|| UpdateError::State("the seal was not kept".into()))?
        .to_vec();
    if let Ok(old) = fs::read(&path)
        && let Ok(last) = read_frame_before(old.as_slice(), 0, old.len() as u64)
    {
        let mut w = ReplicaWriter::create(&path)?;
        let r = w
            .append_frames(&mut &old[..last.offset as usize], last.offset)
            .and_then(|()| w.append_frames(&mut sbytes.as_slice(), sbytes.len() as u64));
        match r {
            Ok(()) => {
                w.commit()?;
            }
            Err(e) => {
                let _ = w.abort();
                return Err(e.into());
            }
        }
    }
    let mut next = s.clone();
    next.checkpoint = seal.seal.checkpoint.clone();
    next.time = seal.seal.time;
    next.seal_len = seal.frame.len();
    next.save(&cfg.state_dir)
}

fn save_state(
    cfg: &Config,
    top: &SignedTop,
    installed: Option<Installed>,
    origin: Option<String>,
    walk: &Walk,
) -> Result<(), UpdateError> {
    let frontier = top.frontier().map_err(|e| UpdateError::State(e.to_string()))?;
    let state = State {
        origin: origin.unwrap_or_else(|| top.seal.checkpoint.origin.clone()),
        checkpoint: top.seal.seal.checkpoint.clone(),
        size: top.size(),
        root: top.seal.checkpoint.root,
        time: top.seal.seal.time,
        frontier,
        seal_len: top.seal.frame.len(),
        installed,
        trust: Some(Trusted { root: walk.root.clone(), keys: walk.latest, pinned: walk.pinned.clone() }),
    };
    state.save(&cfg.state_dir)
}

/// How one content of the new build arrives.
#[derive(Clone, Debug)]
enum Need {
    /// The whole entry (with its payload key, in a private channel).
    Full { at: LeafRef, key: Option<PayloadKey>, paths: Vec<(String, u32)> },
    /// A delta against an installed file that hashes to its base (the
    /// delta's payload key is in its ref; the entry's is `entry_key`).
    Delta { delta: DeltaRef, base: PathBuf, entry: LeafRef, entry_key: Option<PayloadKey>, paths: Vec<(String, u32)> },
}

impl Need {
    fn at(&self) -> LeafRef {
        match self {
            Need::Full { at, .. } => *at,
            Need::Delta { delta, .. } => delta.at(),
        }
    }

    /// The payload key of what is fetched (a private channel's), if any.
    fn key(&self) -> Option<PayloadKey> {
        match self {
            Need::Full { key, .. } => *key,
            Need::Delta { delta, .. } => delta.key,
        }
    }

    fn entry_key(&self) -> Option<PayloadKey> {
        match self {
            Need::Full { key, .. } => *key,
            Need::Delta { entry_key, .. } => *entry_key,
        }
    }

    fn entry(&self) -> LeafRef {
        match self {
            Need::Full { at, .. } => *at,
            Need::Delta { entry, .. } => *entry,
        }
    }

    fn paths(&self) -> &[(String, u32)] {
        match self {
            Need::Full { paths, .. } | Need::Delta { paths, .. } => paths,
        }
    }

    fn into_paths(self) -> Vec<(String, u32)> {
        match self {
            Need::Full { paths, .. } | Need::Delta { paths, .. } => paths,
        }
    }

    fn paths_mut(&mut self) -> &mut Vec<(String, u32)> {
        match self {
            Need::Full { paths, .. } | Need::Delta { paths, .. } => paths,
        }
    }
}

/// Decides, file by file, what the installed build gives and what must be
/// fetched: installed content is taken (and hashed) into `incoming` at once;
/// a changed file whose installed version hashes to a delta's base gets that
/// delta; anything else its whole entry. Each content is fetched once.
fn plan_files(
    incoming: &mut Incoming,
    files: &[FileRecord],
    old_build: Option<&[FileRecord]>,
    install_dir: &Path,
    tally: &mut Tally,
) -> Result<BTreeMap<Sha256Hex, Need>, UpdateError> {
    let current = current_dir(install_dir);
    let mut installed: HashMap<Sha256Hex, Vec<&FileRecord>> = HashMap::new();
    if let (Some(old), Some(_)) = (old_build, &current) {
        for f in old {
            installed.entry(f.sha256).or_default().push(f);
        }
    }
    // Installed files checked so far: path to whether it hashes as its index says.
    let mut checked: HashMap<String, bool> = HashMap::new();
    let mut base_ok = |f: &FileRecord| -> bool {
        let Some(dir) = &current else { return false };
        *checked.entry(f.path.clone()).or_insert_with(|| {
            f.size <= MAX_DELTA_SIZE
                && hash_file(&dir.join(&f.path)).is_ok_and(|(sha, n)| sha == f.sha256 && n == f.size)
        })
    };
    let mut needs: BTreeMap<Sha256Hex, Need> = BTreeMap::new();
    for f in files {
        if let (Some(dir), Some(olds)) = (&current, installed.get(&f.sha256)) {
            let mut reused = false;
            for old in olds {
                if incoming.reuse(&f.path, &dir.join(&old.path), f.mode, f.sha256)? {
                    reused = true;
                    break;
                }
            }
            if reused {
                tally.reused += f.size;
                continue;
            }
        }
        if let Some(n) = needs.get_mut(&f.sha256) {
            n.paths_mut().push((f.path.clone(), f.mode));
            continue;
        }
        let paths = vec![(f.path.clone(), f.mode)];
        let delta = f.deltas.iter().find_map(|d| {
            let base = installed.get(&d.base)?.iter().find(|b| base_ok(b))?;
            Some((*d, current.as_ref()?.join(&base.path)))
        });
        let need = match delta {
            Some((delta, base)) => Need::Delta { delta, base, entry: f.entry, entry_key: f.key, paths },
            None => Need::Full { at: f.entry, key: f.key, paths },
        };
        needs.insert(f.sha256, need);
    }
    Ok(needs)
}

/// Fetches the contents `needs` names, verifies each into `staging/<sha>`,
/// and proves every entry and delta in the signed tree. Returns the staged
/// files; a delta that failed to give its content is left out (the caller
/// fetches its whole entry).
#[allow(clippy::too_many_arguments)]
async fn fetch_contents(
    cfg: &Config,
    mirrors: &Mirrors,
    top: &SignedTop,
    fetched: &mut Fetched,
    (known, known_nodes): (&BTreeMap<u64, Hash>, &HashMap<NodeId, Hash>),
    needs: &mut BTreeMap<Sha256Hex, Need>,
    staging: &Path,
    tally: &mut Tally,
) -> Result<HashMap<Sha256Hex, PathBuf>, UpdateError> {
    if needs.is_empty() {
        return Ok(HashMap::new());
    }
    let mut leaves: BTreeSet<u64> = known.keys().copied().collect();
    leaves.extend(needs.values().map(|n| n.at().leaf));
    let mut plan = ProofPlan::with_known(&top.map, &Frontier::new(), &leaves, known_nodes).map_err(plan_error)?;
    resolve_slots(mirrors, fetched, &mut [&mut plan]).await?;
    let hash_ranges = fetched.missing(plan.ranges());
    let mut sink = ContentSink::new(cfg, needs, staging)?;
    let content_ranges = contiguous(needs.values().map(|n| n.at()));
    let mut hash_sink = BufferSink::new(1 << 24);
    let content_req: Vec<ByteRange> =
        content_ranges.iter().map(|(s, e)| ByteRange::Span { start: *s, end: *e }).collect();
    let hash_req: Vec<ByteRange> = hash_ranges.iter().map(|(s, e)| ByteRange::Span { start: *s, end: *e }).collect();
    let mut jobs: Vec<(Vec<ByteRange>, &mut dyn RangeSink)> = vec![(content_req, &mut sink)];
    if !hash_req.is_empty() {
        jobs.push((hash_req, &mut hash_sink));
    }
    let all_fetched = mirrors.fetch_all(jobs).await;
    // A full disk is the local disk's fault, not the mirror's.
    if let Some(e) = sink.local.take() {
        return Err(e);
    }
    all_fetched.map_err(network)?;
    for (start, bytes) in hash_sink.parts {
        fetched.insert(start, bytes);
    }
    let done = sink.finish()?;
    tally.full += done.full;
    tally.delta += done.delta;
    let mut all = known.clone();
    all.extend(done.leaves);
    let nodes = plan.nodes(|s, l| fetched.get(s, l)).map_err(|e| UpdateError::BadDigest(e.to_string()))?;
    match plan.root(&all, &nodes) {
        Ok(r) if r == top.seal.checkpoint.root => {
            let mut staged = done.staged;
            for d in done.deltas {
                let out = staging.join(d.sha.to_string());
                match apply_delta(&d, &out) {
                    Ok(()) => {
                        staged.insert(d.sha, out);
                    }
                    // A delta that does not give its content: the whole entry instead.
                    Err(e) => {
                        tracing::warn!(sha = %d.sha, error = %e, "a delta did not produce its signed content");
                        let _ = fs::remove_file(&out);
                    }
                }
                let _ = fs::remove_file(&d.payload);
            }
            Ok(staged)
        }
        Ok(r) => Err(UpdateError::BadDigest(format!(
            "the fetched entries and proof hashes give root {}, not the signed {} (from {})",
            to_hex(&r),
            to_hex(&top.seal.checkpoint.root),
            mirrors.names().join(", ")
        ))),
        Err(e) => Err(UpdateError::BadDigest(format!("{e} (from {})", mirrors.names().join(", ")))),
    }
}

/// Groups frames into contiguous byte ranges.
fn contiguous(frames: impl Iterator<Item = LeafRef>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut sorted: Vec<LeafRef> = frames.collect();
    sorted.sort_by_key(|e| e.offset);
    sorted.dedup();
    for e in sorted {
        match out.last_mut() {
            Some(last) if last.1 == e.offset => last.1 = e.end(),
            _ => out.push((e.offset, e.end())),
        }
    }
    out
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
            return Err(SinkError(format!("more than the {} bytes of metadata and proof expected", self.cap)));
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

/// What one content frame must be.
struct Expect {
    sha: Sha256Hex,
    leaf: u64,
    length: u64,
    /// For a delta: its base's SHA-256 and the installed file holding it.
    base: Option<(Sha256Hex, PathBuf)>,
    /// A private channel's payload key (from the opened listing): the frame
    /// must be sealed, and it is opened with this key.
    key: Option<PayloadKey>,
}

/// What [`ContentSink`] verified.
struct Done {
    leaves: BTreeMap<u64, Hash>,
    staged: HashMap<Sha256Hex, PathBuf>,
    deltas: Vec<PendingDelta>,
    full: u64,
    delta: u64,
}

/// Streams entry and delta frames: checks each header against what the
/// index promised, hashes the stored bytes, decompresses (against the
/// installed base for a delta) into `staging/<sha>` while hashing the
/// content, and checks both digests at the frame's end.
struct ContentSink<'a> {
    cfg: &'a Config,
    expected: HashMap<u64, Expect>,
    staging: PathBuf,
    stream: FrameStream,
    current: Option<Current>,
    done: Done,
    received: u64,
    /// An OS error writing a staging file (a full disk): reported as itself.
    local: Option<UpdateError>,
}

/// An error of the staging file `path`: an OS error (no space, file too
/// large, I/O error) is kept in `local` as what it is; anything else (more
/// bytes than signed, bad zstd) is the mirror's, a message.
fn staging_error(local: &mut Option<UpdateError>, path: &Path, e: std::io::Error) -> String {
    let message = format!("{}: {e}", path.display());
    if e.raw_os_error().is_some() && local.is_none() {
        *local = Some(UpdateError::io("writing", path, e));
    }
    message
}

struct Current {
    offset: u64,
    leaf: u64,
    header_hash: Hash,
    is_delta: bool,
    sha: Sha256Hex,
    spec: PayloadSpec,
    /// The payload's checks, writing the content (or, for a delta, the
    /// payload, to apply once it verified) to the staging file.
    check: PayloadCheck<'static, BufWriter<File>>,
    /// For a delta: its base and the installed file holding it.
    base: Option<(Sha256Hex, PathBuf)>,
    staged: PathBuf,
}

/// A payload check's failure as the sink reports it: a staging file's I/O
/// error is kept as the local error; a mismatch is the mirror's fault.
fn payload_error(local: &mut Option<UpdateError>, path: &Path, sha: &Sha256Hex, e: PayloadError) -> String {
    match e {
        PayloadError::Write(e) => staging_error(local, path, e),
        e => format!("the entry of {sha}: {e}"),
    }
}

/// Reads a delta's base into memory and checks it is still what was hashed.
fn load_base(path: &Path, sha: Sha256Hex) -> Result<Vec<u8>, String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_DELTA_SIZE || dare_container::hashio::sha256(&bytes) != sha.0 {
        return Err(format!("{} changed on disk", path.display()));
    }
    Ok(bytes)
}

/// Applies a verified delta payload (in `payload`) to the installed base,
/// into `out`, checking the content's size and digest.
fn apply_delta(p: &PendingDelta, out: &Path) -> Result<(), String> {
    let base = load_base(&p.base_path, p.base)?;
    let file = File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut check =
        PayloadCheck::with_base(p.spec, &base, BufWriter::with_capacity(1 << 20, file)).map_err(|e| e.to_string())?;
    let mut input = File::open(&p.payload).map_err(|e| format!("{}: {e}", p.payload.display()))?;
    std::io::copy(&mut input, &mut check).map_err(|e| format!("the patched content: {e}"))?;
    let w = check.finish().map_err(|e| format!("the patched content: {e}"))?;
    let f = w.into_inner().map_err(|e| e.error().to_string())?;
    f.sync_all().map_err(|e| e.to_string())
}

/// A delta whose stored bytes verified, waiting to be applied.
struct PendingDelta {
    sha: Sha256Hex,
    spec: PayloadSpec,
    base: Sha256Hex,
    base_path: PathBuf,
    payload: PathBuf,
}

impl<'a> ContentSink<'a> {
    fn new(cfg: &'a Config, needs: &BTreeMap<Sha256Hex, Need>, staging: &Path) -> Result<Self, UpdateError> {
        let expected = needs
            .iter()
            .map(|(sha, n)| {
                let at = n.at();
                let base = match n {
                    Need::Delta { delta, base, .. } => Some((delta.base, base.clone())),
                    Need::Full { .. } => None,
                };
                (at.offset, Expect { sha: *sha, leaf: at.leaf, length: at.length, base, key: n.key() })
            })
            .collect();
        Ok(ContentSink {
            cfg,
            expected,
            staging: staging.to_path_buf(),
            stream: FrameStream::new(0),
            current: None,
            done: Done { leaves: BTreeMap::new(), staged: HashMap::new(), deltas: Vec::new(), full: 0, delta: 0 },
            received: 0,
            local: None,
        })
    }

    fn finish(self) -> Result<Done, UpdateError> {
        if !self.stream.at_boundary() || self.current.is_some() {
            return Err(UpdateError::BadDigest("the entries ended in the middle of a frame".into()));
        }
        if self.done.leaves.len() != self.expected.len() {
            return Err(UpdateError::BadDigest(format!(
                "{} of {} entries arrived",
                self.done.leaves.len(),
                self.expected.len()
            )));
        }
        Ok(self.done)
    }

    fn handle(&mut self, ev: FrameEvent<'_>) -> Result<(), String> {
        match ev {
            FrameEvent::Header { offset, header, payload_len } => {
                let x = self.expected.get(&offset).ok_or_else(|| format!("an unexpected frame at byte {offset}"))?;
                let parsed = Header::parse(header).map_err(|e| format!("the entry at byte {offset}: {e}"))?;
                // A private frame's header carries keyed digests under the
                // content key of the release that stored it (maybe an earlier
                // one): it is checked by opening it with the key the listing
                // gives and hashing the plaintext to the listing's digest.
                let (spec, is_delta) = match (&parsed, &x.base, x.key) {
                    (Header::Entry(e), None, None) if e.sealed.is_none() && e.sha256 == x.sha => {
                        (PayloadSpec::entry(e), false)
                    }
                    (Header::Entry(e), None, Some(key)) if e.sealed.is_some() => {
                        (PayloadSpec::entry(e).opened(key, x.sha), false)
                    }
                    (Header::Delta(d), Some((base, _)), key)
                        if d.sealed.is_some() == key.is_some()
                            && (key.is_some() || (d.sha256 == x.sha && d.base == *base)) =>
                    {
                        if d.size > MAX_DELTA_SIZE || d.base_size > MAX_DELTA_SIZE {
                            return Err(format!("the delta at byte {offset} is over {MAX_DELTA_SIZE} bytes"));
                        }
                        let spec = PayloadSpec::delta(d);
                        (key.map_or(spec, |k| spec.opened(k, x.sha)), true)
                    }
                    _ => {
                        return Err(format!(
                            "the frame at byte {offset} is not the content the index names ({})",
                            x.sha
                        ));
                    }
                };
                if payload_len != spec.stored_size {
                    return Err(format!(
                        "the entry at byte {offset}: payload is {payload_len} bytes, the header says {}",
                        spec.stored_size
                    ));
                }
                let name = if is_delta { format!("{}.delta", x.sha) } else { x.sha.to_string() };
                let staged = self.staging.join(name);
                let file = File::create(&staged).map_err(|e| staging_error(&mut self.local, &staged, e))?;
                let out = BufWriter::with_capacity(1 << 20, file);
                let check = if is_delta {
                    PayloadCheck::stored_only(spec, out)
                } else {
                    PayloadCheck::new(spec, out).map_err(|e| format!("the entry of {}: {e}", x.sha))?
                };
                self.current = Some(Current {
                    offset,
                    leaf: x.leaf,
                    header_hash: leaf_hash(header),
                    is_delta,
                    sha: x.sha,
                    spec,
                    check,
                    base: x.base.clone(),
                    staged,
                });
            }
            FrameEvent::Payload(bytes) => {
                let c = self.current.as_mut().ok_or("payload without a header")?;
                c.check.feed(bytes).map_err(|e| payload_error(&mut self.local, &c.staged, &c.sha, e))?;
                self.received += bytes.len() as u64;
                if let Some(p) = &self.cfg.progress {
                    p.event(Event::Fetched { bytes: self.received });
                }
            }
            FrameEvent::End(frame) => {
                let c = self.current.take().ok_or("a frame ended without a header")?;
                let out = c.check.finish().map_err(|e| payload_error(&mut self.local, &c.staged, &c.sha, e))?;
                let x = self.expected.get(&c.offset).ok_or("an unexpected frame")?;
                if frame.len() != x.length {
                    return Err(format!(
                        "the entry of {}: the frame is {} bytes, the index says {}",
                        c.sha,
                        frame.len(),
                        x.length
                    ));
                }
                self.done.leaves.insert(c.leaf, c.header_hash);
                if c.is_delta {
                    self.done.delta += frame.len();
                    let (base, base_path) = c.base.ok_or("a delta without a base")?;
                    self.done.deltas.push(PendingDelta {
                        sha: c.sha,
                        spec: c.spec,
                        base,
                        base_path,
                        payload: c.staged,
                    });
                    return Ok(());
                }
                self.done.full += frame.len();
                let f = out.into_inner().map_err(|e| staging_error(&mut self.local, &c.staged, e.into_error()))?;
                f.sync_all().map_err(|e| staging_error(&mut self.local, &c.staged, e))?;
                self.done.staged.insert(c.sha, c.staged);
            }
        }
        Ok(())
    }
}

impl RangeSink for ContentSink<'_> {
    fn begin(&mut self, _index: usize, start: u64, _total: Option<u64>) -> Result<(), SinkError> {
        if !self.stream.at_boundary() || self.current.is_some() {
            return Err(SinkError("a range began in the middle of a frame".into()));
        }
        self.stream = FrameStream::new(start);
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        let mut stream = std::mem::replace(&mut self.stream, FrameStream::new(0));
        let r = stream.feed(bytes, &mut |ev| self.handle(ev));
        self.stream = stream;
        r.map_err(|e| SinkError(e.to_string()))
    }
}
