//! Verifying a partial container (an updater's replica, see [`crate::replica`]).
//!
//! The leaves present are checked by inclusion: at every seal, the proof frame
//! before it names the leaf index of every leaf frame since the previous
//! seal, and its node hashes, with those leaves and the previous seal's tree,
//! must give the signed root. A seal with no new leaves must repeat the
//! previous root. Every index present must be the one its seal's manifest
//! names, and every entry present must be named by an index present.

use std::collections::{BTreeMap, HashMap};

use crate::content;
use crate::frame::{FrameInfo, Frames, ReadAt, read_header};
use crate::header::{FileRecord, Genesis, Header, Keys, Manifest, Proof, Seal};
use crate::keys::{TrustRoot, VerifierKey};
use crate::merkle::{Frontier, Hash, MemoryTree, NodeId, leaf_hash, root_from_nodes};
use crate::seal::{Previous, SealRules, check_seal};
use crate::verify::{
    EntryRecord, IndexRecord, Problem, Scan, ScanOptions, SealState, Stored, Tail, VerifyError, content_problem,
};

struct Leaf {
    index: u64,
    frame: FrameInfo,
    hash: Hash,
    header: Header,
    /// An index's files.
    files: Vec<FileRecord>,
}

/// Scans a partial container: see the module documentation.
pub(crate) fn scan_partial<R: ReadAt + Sync + ?Sized>(
    src: &R,
    len: u64,
    opts: &ScanOptions,
    ends_with_seal: bool,
) -> Result<Scan, VerifyError> {
    let mut genesis: Option<(Genesis, Vec<u8>)> = None;
    let mut trust: Option<TrustRoot> = None;
    let mut pins: Option<Vec<VerifierKey>> = opts.pins.clone();
    let mut segment: Vec<Leaf> = Vec::new();
    let mut proof: Option<(u64, FrameInfo, Proof, Vec<Hash>)> = None;
    // The previous seal's tree: size, root, frontier.
    let mut prev: Option<(u64, Hash, Frontier)> = None;
    let mut last_seal: Option<SealState> = None;
    let mut entries: Vec<EntryRecord> = Vec::new();
    let mut indexes: Vec<IndexRecord> = Vec::new();
    let mut manifest: Option<(FrameInfo, Manifest)> = None;
    let mut seals = 0u64;
    let mut sealed_len = 0u64;
    let mut sealed_frames = 0u64;
    let mut torn: Option<String> = None;

    for (index, frame) in Frames::new(src, 0, len).enumerate() {
        let index = index as u64;
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                let err = VerifyError { frame: index, offset: sealed_len, problem: Problem::Frame(e) };
                if ends_with_seal || last_seal.is_none() {
                    return Err(err);
                }
                torn = Some(err.to_string());
                break;
            }
        };
        let err = |problem| VerifyError { frame: index, offset: frame.offset, problem };
        let bytes = read_header(src, &frame).map_err(|e| err(Problem::Frame(e)))?;
        let header = Header::parse(&bytes).map_err(|e| err(Problem::Header(e)))?;
        if index == 0 {
            let Header::Genesis(g) = header else { return Err(err(Problem::NotGenesis(header.kind()))) };
            trust = Some(opts.replica_trust.clone().unwrap_or_else(|| g.trust.clone()));
            segment.push(Leaf {
                index: 0,
                frame,
                hash: leaf_hash(&bytes),
                header: Header::Genesis(g.clone()),
                files: Vec::new(),
            });
            genesis = Some((g, bytes));
            continue;
        }
        match header {
            Header::Genesis(_) => return Err(err(Problem::ExtraGenesis)),
            Header::Entry(ref e) => {
                if frame.payload_len != e.stored_size {
                    return Err(err(Problem::Payload("the payload is not stored_size bytes".into())));
                }
                if opts.payloads {
                    content::check_entry(src, &frame, e).map_err(|e| err(content_problem(e)))?;
                }
                segment.push(Leaf { index: u64::MAX, frame, hash: leaf_hash(&bytes), header, files: Vec::new() });
            }
            Header::Delta(ref d) => {
                if frame.payload_len != d.stored_size {
                    return Err(err(Problem::Payload("the payload is not stored_size bytes".into())));
                }
                // Its base is not here: only the stored bytes can be checked.
                if opts.payloads {
                    content::check_delta_stored(src, &frame, d).map_err(|e| err(content_problem(e)))?;
                }
                segment.push(Leaf { index: u64::MAX, frame, hash: leaf_hash(&bytes), header, files: Vec::new() });
            }
            Header::Index(ref ix) => {
                // A replica keeps an index's header and, in the listing frame
                // after it, its listing; a copy of the whole frame also does.
                let files = if frame.payload_len == 0 {
                    Vec::new()
                } else if ix.sealed.is_some() {
                    // A private listing: only its stored bytes can be checked here.
                    if opts.payloads {
                        let spec = content::PayloadSpec {
                            stored_size: ix.stored_size,
                            stored_sha256: ix.stored_sha256,
                            compression: ix.compression,
                            size: ix.size,
                            sha256: ix.sha256,
                            sealed: true,
                            key: None,
                            digest_key: None,
                        };
                        content::check_sealed_stored(src, &frame, spec, "a private index")
                            .map_err(|e| err(content_problem(e)))?;
                    }
                    Vec::new()
                } else {
                    content::listing(src, &frame, ix).map_err(|e| err(content_problem(e)))?
                };
                segment.push(Leaf { index: u64::MAX, frame, hash: leaf_hash(&bytes), header, files });
            }
            Header::Listing(l) => {
                let Some(Leaf { header: Header::Index(ix), files, frame: ixf, .. }) = segment.last_mut() else {
                    return Err(err(Problem::Unexpected("listing (it follows the index it lists)")));
                };
                if ix.sealed.is_some() {
                    return Err(err(Problem::Unexpected("listing (a private index's listing stays sealed)")));
                }
                if ixf.payload_len != 0 || !files.is_empty() || l.sha256 != ix.sha256 || l.size != ix.size {
                    return Err(err(Problem::Payload(
                        "the listing frame is not the listing of the index before it".into(),
                    )));
                }
                if frame.payload_len != l.size {
                    return Err(err(Problem::Payload("the listing frame's payload is not `size` bytes".into())));
                }
                let mut raw = vec![0u8; frame.payload_len as usize];
                src.read_exact_at(&mut raw, frame.payload_offset).map_err(|e| err(Problem::Io(e)))?;
                if crate::hashio::sha256(&raw) != l.sha256.0 {
                    return Err(err(Problem::Payload("the listing does not hash to the index's sha256".into())));
                }
                *files = content::parse(&raw, ix).map_err(|e| err(content_problem(e)))?;
                if files.is_empty() {
                    return Err(err(Problem::Payload("an empty listing".into())));
                }
            }
            Header::Exchange(ref x) => {
                if frame.payload_len != x.stored_size {
                    return Err(err(Problem::Payload("the payload is not stored_size bytes".into())));
                }
                segment.push(Leaf { index: u64::MAX, frame, hash: leaf_hash(&bytes), header, files: Vec::new() });
            }
            Header::Manifest(_) | Header::Keys(_) => {
                if frame.payload_len != 0 {
                    return Err(err(Problem::Payload("this frame kind has an empty payload".into())));
                }
                segment.push(Leaf { index: u64::MAX, frame, hash: leaf_hash(&bytes), header, files: Vec::new() });
            }
            Header::Tile(_) | Header::Page(_) | Header::Map(_) => {
                return Err(err(Problem::Unexpected("tile, page or map (a partial container keeps proof frames)")));
            }
            Header::Proof(p) => {
                if proof.is_some() {
                    return Err(err(Problem::Unexpected("second proof")));
                }
                if p.leaves.len() != segment.len() {
                    return Err(err(Problem::Seal(format!(
                        "the proof names {} leaves but {} leaf frames precede it",
                        p.leaves.len(),
                        segment.len()
                    ))));
                }
                if frame.payload_len != p.nodes.len() as u64 * 32 {
                    return Err(err(Problem::Payload("a proof frame holds 32 bytes per node".into())));
                }
                let mut raw = vec![0u8; frame.payload_len as usize];
                src.read_exact_at(&mut raw, frame.payload_offset).map_err(|e| err(Problem::Io(e)))?;
                let hashes = raw
                    .chunks_exact(32)
                    .map(|c| {
                        let mut h = [0u8; 32];
                        h.copy_from_slice(c);
                        h
                    })
                    .collect();
                for (leaf, i) in segment.iter_mut().zip(&p.leaves) {
                    leaf.index = *i;
                }
                proof = Some((index, frame, p, hashes));
            }
            Header::Seal(s) => {
                let genesis = genesis.as_ref().map(|g| &g.0).ok_or_else(|| err(Problem::NotGenesis("seal")))?;
                let root = trust.as_ref().ok_or_else(|| err(Problem::NotGenesis("seal")))?;
                let rotated = segment.iter().find_map(|l| match &l.header {
                    Header::Keys(k) => Some(k.trust.clone()),
                    _ => None,
                });
                let state = check_sealed(SealCheck {
                    index,
                    frame,
                    seal: s,
                    genesis,
                    trust: root,
                    pins: pins.as_deref(),
                    segment: &segment,
                    proof: proof.as_ref(),
                    prev: prev.as_ref(),
                    last: last_seal.as_ref(),
                })?;
                if let Some(new_root) = rotated {
                    // From here on seals answer to the new root only.
                    trust = Some(new_root);
                    pins = None;
                }
                for leaf in segment.drain(..) {
                    match leaf.header {
                        Header::Entry(e) => {
                            entries.push(EntryRecord { leaf: leaf.index, frame: leaf.frame, stored: Stored::Entry(e) })
                        }
                        Header::Delta(d) => {
                            entries.push(EntryRecord { leaf: leaf.index, frame: leaf.frame, stored: Stored::Delta(d) })
                        }
                        Header::Index(index) => {
                            indexes.push(IndexRecord { leaf: leaf.index, frame: leaf.frame, index, files: leaf.files })
                        }
                        Header::Manifest(m) => manifest = Some((leaf.frame, m)),
                        _ => {}
                    }
                }
                prev = Some((state.1, state.2, state.3));
                proof = None;
                seals += 1;
                sealed_len = frame.end();
                sealed_frames = index + 1;
                last_seal = Some(state.0);
            }
        }
    }
    let Some(last_seal) = last_seal else {
        return Err(VerifyError { frame: 0, offset: len, problem: Problem::NoSeal });
    };
    let (genesis, genesis_bytes) = genesis.ok_or(VerifyError { frame: 0, offset: 0, problem: Problem::NoSeal })?;
    let (manifest_frame, manifest) =
        manifest.ok_or(VerifyError { frame: 0, offset: 0, problem: Problem::Seal("no manifest".into()) })?;
    let tail = if sealed_len == len {
        Tail::Clean
    } else {
        let reason = torn.unwrap_or_else(|| "frames after the last seal are not sealed".into());
        Tail::Torn { offset: sealed_len, len: len - sealed_len, reason }
    };
    let size = last_seal.checkpoint.size;
    Ok(Scan {
        trust: trust.unwrap_or_else(|| genesis.trust.clone()),
        genesis,
        genesis_bytes,
        file_len: len,
        sealed_len,
        frames: sealed_frames,
        size,
        tree: MemoryTree::new(),
        partial: true,
        last_seal,
        seals,
        manifest,
        manifest_frame,
        entries,
        indexes,
        tiles: HashMap::new(),
        tail,
        walked_backward: false,
    })
}

struct SealCheck<'a> {
    index: u64,
    frame: FrameInfo,
    seal: Seal,
    genesis: &'a Genesis,
    trust: &'a TrustRoot,
    pins: Option<&'a [VerifierKey]>,
    segment: &'a [Leaf],
    proof: Option<&'a (u64, FrameInfo, Proof, Vec<Hash>)>,
    prev: Option<&'a (u64, Hash, Frontier)>,
    last: Option<&'a SealState>,
}

/// Checks one seal of a partial container; returns its state and its tree's size, root and frontier.
fn check_sealed(c: SealCheck<'_>) -> Result<(SealState, u64, Hash, Frontier), VerifyError> {
    let err = |problem| VerifyError { frame: c.index, offset: c.frame.offset, problem };
    let seal_err = |m: String| err(Problem::Seal(m));
    // A rotation: the keys leaf is signed by the root it replaces and the
    // new one, and the seal that first covers it satisfies both roots.
    let rotations: Vec<&Keys> = c
        .segment
        .iter()
        .filter_map(|l| match &l.header {
            Header::Keys(k) => Some(k),
            _ => None,
        })
        .collect();
    if rotations.len() > 1 {
        return Err(err(Problem::Unexpected("second keys")));
    }
    if let Some(k) = rotations.first() {
        crate::seal::check_rotation(k, &c.genesis.origin, c.trust, c.pins, Some(c.trust))
            .map_err(|e| err(Problem::Rotation(e.to_string())))?;
    }
    // The one rule for seal times; a replica knows only the seal before.
    let earlier = c.last.map(|last| std::collections::BTreeSet::from([last.seal.time]));
    let previous = match (c.last, &earlier) {
        (Some(last), Some(earlier)) => Previous::Seal { time: last.seal.time, earlier },
        _ => Previous::Unknown,
    };
    let rules = SealRules::new(c.trust)
        .origin(&c.genesis.origin)
        .pins(c.pins)
        .rotation(rotations.first().map(|k| &k.trust))
        .previous(previous);
    let checked = check_seal(&c.seal, &rules).map_err(|e| err(e.into()))?;
    let (cp, signers) = (checked.checkpoint, checked.signers);
    let n = cp.size;
    let state = |frontier: Frontier| {
        (
            SealState {
                frame_index: c.index,
                frame: c.frame,
                seal: c.seal.clone(),
                checkpoint: cp.clone(),
                signers: signers.clone(),
            },
            n,
            cp.root,
            frontier,
        )
    };
    // A seal with no new leaves repeats the previous tree.
    if c.segment.is_empty() && c.proof.is_none() {
        let Some((m, root, frontier)) = c.prev else { return Err(seal_err("the first seal needs leaves".into())) };
        if n != *m || cp.root != *root {
            return Err(seal_err(format!("a seal without new leaves must repeat the tree of {m} leaves")));
        }
        return Ok(state(frontier.clone()));
    }
    let (_, _, proof, hashes) = c.proof.ok_or_else(|| seal_err("no proof frame before the seal".into()))?;
    if proof.size != n {
        return Err(seal_err(format!("the proof is for {} leaves, the checkpoint for {n}", proof.size)));
    }
    // The manifest: the last leaf.
    let last = c.segment.last().ok_or_else(|| seal_err("no leaves before the seal".into()))?;
    let Header::Manifest(ref manifest) = last.header else {
        return Err(seal_err("the last leaf before a seal must be its manifest".into()));
    };
    if last.index != n - 1 || c.seal.manifest.length != last.frame.len() {
        return Err(seal_err(format!("the manifest must be leaf {} of the signed tree", n - 1)));
    }
    // Every leaf present, with the proof's nodes and the previous tree, gives the signed root.
    let old = c.prev.map_or_else(Frontier::new, |p| p.2.clone());
    let mut leaves: BTreeMap<u64, Hash> = BTreeMap::new();
    for l in c.segment {
        if leaves.insert(l.index, l.hash).is_some() {
            return Err(seal_err(format!("leaf {} appears twice", l.index)));
        }
    }
    let unlisted = |l: &Leaf| match &l.header {
        Header::Index(ix) => l.files.is_empty() && (ix.sealed.is_none() || l.frame.payload_len != ix.payload_len()),
        _ => false,
    };
    if c.segment.iter().any(unlisted) {
        return Err(seal_err("an index without its listing".into()));
    }
    check_listed(manifest, c.segment).map_err(seal_err)?;
    let nodes: HashMap<NodeId, Hash> = proof
        .nodes
        .iter()
        .zip(hashes)
        .map(|((height, index), h)| (NodeId { height: *height, index: *index }, *h))
        .collect();
    let root = root_from_nodes(n, &old, &leaves, &nodes).map_err(|e| err(Problem::Proof(e)))?;
    if root != cp.root {
        return Err(seal_err(format!(
            "the leaves present and the proof give a root that is not the signed one (tree of {n} leaves)"
        )));
    }
    // The next seal builds on this tree: its frontier, from the nodes that made the root.
    let frontier = frontier_of(n, &old, &leaves, &nodes).map_err(|e| err(Problem::Proof(e)))?;
    Ok(state(frontier))
}

/// Every index present is the one the manifest names for its channel and
/// target; every entry present is named by an index present.
fn check_listed(manifest: &Manifest, segment: &[Leaf]) -> Result<(), String> {
    let mut named: Vec<(u64, u64)> = Vec::new();
    for l in segment {
        if let Header::Index(ix) = &l.header {
            match manifest.release(&ix.channel, &ix.target) {
                // A header-only copy (with its listing frame) is shorter than upstream's frame.
                Some(r)
                    if r.index.leaf == l.index
                        && (l.frame.payload_len == 0 || r.index.length == l.frame.len())
                        && r.version == ix.version => {}
                _ => {
                    return Err(format!(
                        "the index of {} {} {} (leaf {}) is not the one its seal's manifest names",
                        ix.channel, ix.target, ix.version, l.index
                    ));
                }
            }
            for f in &l.files {
                named.push((f.entry.leaf, f.entry.length));
                named.extend(f.deltas.iter().map(|d| (d.leaf, d.length)));
            }
        }
    }
    // Who names a private entry is sealed: a private index present must vouch for it.
    let private = segment.iter().any(|l| matches!(&l.header, Header::Index(ix) if ix.sealed.is_some()));
    for l in segment {
        let sealed = match &l.header {
            Header::Entry(e) => e.sealed.is_some(),
            Header::Delta(d) => d.sealed.is_some(),
            _ => false,
        };
        if sealed && private {
            continue;
        }
        if matches!(l.header, Header::Entry(_) | Header::Delta(_)) && !named.contains(&(l.index, l.frame.len())) {
            return Err(format!("the entry at leaf {} is not named by an index present", l.index));
        }
    }
    Ok(())
}

/// The frontier of tree `n`, each of its nodes computed from what proved the root.
fn frontier_of(
    n: u64,
    old: &Frontier,
    leaves: &BTreeMap<u64, Hash>,
    nodes: &HashMap<NodeId, Hash>,
) -> Result<Frontier, crate::merkle::ProofError> {
    let hashes = Frontier::from_parts(n, vec![[0; 32]; n.count_ones() as usize])?
        .nodes()
        .into_iter()
        .map(|id| crate::merkle::subtree_from_nodes(id, old, leaves, nodes))
        .collect::<Result<Vec<_>, _>>()?;
    Frontier::from_parts(n, hashes)
}
