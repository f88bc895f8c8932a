//! Fixtures shared by the container's API tests: deterministic keys, times
//! and contents, a builder of multi-target containers through the
//! [`Appender`] (content stored once, deltas, one index per build), the frame
//! layout of a container, and [`Forge`], an independent low-level writer for
//! containers the appender would refuse to write.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use dare_container::frame::{FrameInfo, Frames, encode_frame, payload_start, read_frame_at, read_header};
use dare_container::hashio::sha256;
use dare_container::header::{
    Compression, Delta, DeltaRef, Entry, FORMAT_VERSION, FileRecord, FrameRef, Genesis, Header, Index, Keys, LeafRef,
    Manifest, Map, Page, Patch, Release, Seal, Sha256Hex, Tile, listing_bytes,
};
use dare_container::keys::{SigningKey, TrustRoot};
use dare_container::merkle::{MemoryTree, leaf_hash};
use dare_container::note::{Checkpoint, Note};
use dare_container::tiles;
use dare_container::verify::{Problem, Scan, ScanOptions, VerifyError};
use dare_container::{Appender, SealSummary};

/// The container's origin in every fixture.
pub const ORIGIN: &str = "example.com/app";
/// The time `create` signs; releases follow at `T0 + 1000 * (i + 1)`.
pub const T0: u64 = 1_700_000_000;
/// Targets the fixtures publish for.
pub const TARGETS: [&str; 3] = ["x86_64-unknown-linux-gnu", "aarch64-apple-darwin", "x86_64-pc-windows-msvc"];
/// Files each target gets in a release (even index: stored, odd: zstd).
/// The third is the same for every target and changes every other release.
pub const FILES: [&str; 3] = ["bin/app", "lib/libapp.so", "share/doc/README"];

/// A key with a fixed seed.
pub fn key(name: &str, seed: u8) -> SigningKey {
    SigningKey::from_seed(name, [seed; 32]).expect("valid key name")
}

/// The publisher key of most fixtures.
pub fn key_a() -> SigningKey {
    key("publisher-a", 1)
}

/// A second key, outside the trust root unless a test puts it there.
pub fn key_b() -> SigningKey {
    key("publisher-b", 2)
}

/// A third key.
pub fn key_c() -> SigningKey {
    key("publisher-c", 3)
}

/// A trust root of `keys` with `threshold`.
pub fn trust(keys: &[&SigningKey], threshold: u32) -> TrustRoot {
    TrustRoot::new(keys.iter().map(|k| k.verifier()).collect(), threshold).expect("valid trust root")
}

/// The genesis of a fixture container.
pub fn genesis(trust: TrustRoot) -> Genesis {
    Genesis { format: FORMAT_VERSION, origin: ORIGIN.into(), product: "app".into(), trust }
}

/// Deterministic, somewhat compressible content of `len` bytes.
pub fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|i| {
            if i % 4 == 0 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            if i % 3 == 0 { b'a' + (x % 7) as u8 } else { (x >> (i % 4 * 8)) as u8 }
        })
        .collect()
}

/// The SHA-256 of `bytes` as a header value.
pub fn digest(bytes: &[u8]) -> Sha256Hex {
    Sha256Hex(sha256(bytes))
}

/// An entry header for `content` and the bytes to store for it.
pub fn stage(content: &[u8], compression: Compression) -> (Entry, Vec<u8>) {
    let stored = match compression {
        Compression::None => content.to_vec(),
        Compression::Zstd => zstd::encode_all(content, 3).expect("zstd compresses in memory"),
    };
    let e = Entry {
        sealed: None,
        size: content.len() as u64,
        sha256: digest(content),
        stored_size: stored.len() as u64,
        stored_sha256: digest(&stored),
        compression,
    };
    (e, stored)
}

/// A zstd patch-from delta producing `new` from `base`, and its payload.
pub fn diff(base: &[u8], new: &[u8]) -> (Delta, Vec<u8>) {
    let mut enc = zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), 3, base).expect("a zstd encoder");
    // As `zstd --patch-from` does: a window covering the base and the result.
    let span = (base.len().max(new.len()).max(1)) as u64;
    enc.window_log((64 - span.leading_zeros() + 1).clamp(10, 31)).expect("a zstd parameter");
    enc.long_distance_matching(true).expect("a zstd parameter");
    enc.include_checksum(false).expect("a zstd parameter");
    enc.write_all(new).expect("zstd compresses in memory");
    let payload = enc.finish().expect("zstd compresses in memory");
    let d = Delta {
        sealed: None,
        base: digest(base),
        base_size: base.len() as u64,
        size: new.len() as u64,
        sha256: digest(new),
        stored_size: payload.len() as u64,
        stored_sha256: digest(&payload),
    };
    (d, payload)
}

/// The mode the fixtures give a path.
pub fn mode_of(path: &str) -> u32 {
    if path.starts_with("bin/") { 0o755 } else { 0o644 }
}

/// A file record for `content` at `path`, stored at `entry`.
pub fn record(path: &str, content: &[u8], entry: LeafRef, mut deltas: Vec<DeltaRef>) -> FileRecord {
    deltas.sort_by_key(|d| d.base);
    FileRecord {
        key: None,
        path: path.into(),
        mode: mode_of(path),
        size: content.len() as u64,
        sha256: digest(content),
        entry,
        deltas,
    }
}

/// A delta ref for the delta from `base` at `at`.
pub fn delta_ref(base: &[u8], at: LeafRef) -> DeltaRef {
    DeltaRef { key: None, base: digest(base), leaf: at.leaf, offset: at.offset, length: at.length }
}

/// Appends one content through the appender.
pub fn put(app: &mut Appender, content: &[u8], compression: Compression) -> Result<LeafRef, dare_container::Error> {
    let (e, stored) = stage(content, compression);
    app.append_entry(e, &mut stored.as_slice())
}

/// Appends the delta from `base` to `new` through the appender.
pub fn put_delta(app: &mut Appender, base: &[u8], new: &[u8]) -> Result<DeltaRef, dare_container::Error> {
    let (d, payload) = diff(base, new);
    let at = app.append_delta(d, &mut payload.as_slice())?;
    Ok(delta_ref(base, at))
}

/// Appends `content` and an index of one file `path` holding it.
pub fn put_build(
    app: &mut Appender,
    channel: &str,
    target: &str,
    version: &str,
    path: &str,
    content: &[u8],
) -> Result<LeafRef, dare_container::Error> {
    let at = put(app, content, Compression::Zstd)?;
    app.append_index(channel, target, version, &[record(path, content, at, vec![])])
}

/// What a [`Builder`] appended, in order.
#[derive(Clone, Debug)]
pub enum Op {
    /// A new content.
    Entry { content: Vec<u8>, compression: Compression, at: LeafRef },
    /// A delta from `base` to `content`.
    Delta { base: Vec<u8>, content: Vec<u8>, at: LeafRef },
    /// An index.
    Index { channel: String, target: String, version: String, files: Vec<FileRecord>, at: LeafRef },
    /// A seal at `time`.
    Seal { time: u64 },
}

/// One build a fixture published.
#[derive(Clone, Debug)]
pub struct Build {
    pub release: usize,
    pub channel: String,
    pub target: String,
    pub version: String,
    pub index: LeafRef,
    pub files: Vec<FileRecord>,
    /// Each file's content, by path.
    pub contents: BTreeMap<String, Vec<u8>>,
}

/// A container built by [`Builder`].
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub key: SigningKey,
    /// The seal of `create`, then one per release.
    pub seals: Vec<SealSummary>,
    /// What was appended, in file order.
    pub ops: Vec<Op>,
    /// Every build, in file order.
    pub builds: Vec<Build>,
}

impl Fixture {
    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).expect("fixture is readable")
    }

    /// Every content stored, by SHA-256.
    pub fn contents(&self) -> HashMap<Sha256Hex, Vec<u8>> {
        self.builds.iter().flat_map(|b| b.contents.values().map(|c| (digest(c), c.clone()))).collect()
    }

    pub fn entries(&self) -> usize {
        self.ops.iter().filter(|o| matches!(o, Op::Entry { .. })).count()
    }

    pub fn deltas(&self) -> usize {
        self.ops.iter().filter(|o| matches!(o, Op::Delta { .. })).count()
    }
}

/// Builds a container of `releases` releases of `targets`, each with
/// `files` files of about `size` bytes, mixing stored and zstd payloads.
/// Release `i` is version `1.i.0` on `stable`, signed at `T0 + 1000 (i + 1)`.
/// Each content is stored once (the third file is shared by every build of
/// a release and changes every other release); with `deltas`, a changed file
/// also gets a delta from its previous version.
#[derive(Clone, Debug)]
pub struct Builder {
    pub releases: usize,
    pub targets: usize,
    pub files: usize,
    pub size: usize,
    /// Also publish `2.i.0-beta` of the first target on `beta` in every release.
    pub beta: bool,
    pub deltas: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder { releases: 3, targets: 3, files: 3, size: 120, beta: true, deltas: true }
    }
}

impl Builder {
    /// The content of file `fi` of build `ti` (in the release's plan) in release `r`.
    pub fn body(&self, r: usize, ti: usize, fi: usize) -> Vec<u8> {
        if fi == 2 {
            return content(7000 + (r / 2) as u64, self.size + 11);
        }
        let seed = (ti * 100 + fi + 1) as u64;
        let mut body = content(seed, self.size + (ti * 7 + fi * 13) % 50);
        if r > 0 && body.len() >= 4 {
            let at = (r * 17 + fi) % (body.len() - 3);
            body[at..at + 4].copy_from_slice(&(0xA5A5_0000u32 + r as u32).to_le_bytes());
        }
        body
    }

    pub fn path(fi: usize) -> String {
        let file = FILES[fi % FILES.len()];
        if fi < FILES.len() { file.to_string() } else { format!("{file}.{fi}") }
    }

    pub fn build(&self) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("app.dare");
        let key = key_a();
        let mut seals = vec![Appender::create(&path, genesis(trust(&[&key], 1)), &[&key], T0).expect("create")];
        let mut ops = Vec::new();
        let mut builds: Vec<Build> = Vec::new();
        let mut stored: HashMap<Sha256Hex, LeafRef> = HashMap::new();
        let mut deltas: HashMap<(Sha256Hex, Sha256Hex), DeltaRef> = HashMap::new();
        for r in 0..self.releases {
            let mut app = Appender::open(&path).expect("open");
            let mut plan: Vec<(String, String, String)> = TARGETS[..self.targets]
                .iter()
                .map(|t| ("stable".to_string(), t.to_string(), format!("1.{r}.0")))
                .collect();
            if self.beta {
                plan.push(("beta".into(), TARGETS[0].into(), format!("2.{r}.0-beta")));
            }
            for (ti, (channel, target, version)) in plan.into_iter().enumerate() {
                let previous = builds.iter().rev().find(|b| b.channel == channel && b.target == target).cloned();
                let mut files = Vec::new();
                let mut contents = BTreeMap::new();
                for fi in 0..self.files {
                    let name = Self::path(fi);
                    let body = self.body(r, ti, fi);
                    let compression = if fi % 2 == 0 { Compression::None } else { Compression::Zstd };
                    let sha = digest(&body);
                    let entry = match stored.get(&sha) {
                        Some(at) => *at,
                        None => {
                            let at = put(&mut app, &body, compression).expect("append an entry");
                            ops.push(Op::Entry { content: body.clone(), compression, at });
                            stored.insert(sha, at);
                            at
                        }
                    };
                    let mut drefs = Vec::new();
                    let old = previous.as_ref().and_then(|p| p.contents.get(&name));
                    if let Some(old) = old.filter(|o| self.deltas && digest(o) != sha) {
                        let d = match deltas.get(&(digest(old), sha)) {
                            Some(d) => *d,
                            None => {
                                let d = put_delta(&mut app, old, &body).expect("append a delta");
                                ops.push(Op::Delta { base: old.clone(), content: body.clone(), at: d.at() });
                                deltas.insert((digest(old), sha), d);
                                d
                            }
                        };
                        drefs.push(d);
                    }
                    files.push(record(&name, &body, entry, drefs));
                    contents.insert(name, body);
                }
                files.sort_by(|a, b| a.path.cmp(&b.path));
                let at = app.append_index(&channel, &target, &version, &files).expect("append an index");
                ops.push(Op::Index {
                    channel: channel.clone(),
                    target: target.clone(),
                    version: version.clone(),
                    files: files.clone(),
                    at,
                });
                builds.push(Build { release: r + 1, channel, target, version, index: at, files, contents });
            }
            let time = T0 + 1000 * (r as u64 + 1);
            seals.push(app.seal(&[&key], time).expect("seal"));
            ops.push(Op::Seal { time });
        }
        Fixture { dir, path, key, seals, ops, builds }
    }
}

/// One frame of a container and its parsed header.
#[derive(Clone, Debug)]
pub struct Framed {
    pub index: u64,
    pub info: FrameInfo,
    pub header: Header,
}

impl Framed {
    pub fn kind(&self) -> &'static str {
        self.header.kind()
    }
}

/// The frames of well-formed container bytes.
pub fn layout(bytes: &[u8]) -> Vec<Framed> {
    Frames::new(bytes, 0, bytes.len() as u64)
        .enumerate()
        .map(|(i, f)| {
            let info = f.expect("fixture frames are well formed");
            let header = Header::parse(&read_header(bytes, &info).expect("header")).expect("fixture headers parse");
            Framed { index: i as u64, info, header }
        })
        .collect()
}

/// The frame at `offset` of well-formed container bytes.
pub fn frame_at(bytes: &[u8], offset: u64) -> FrameInfo {
    read_frame_at(bytes, offset, bytes.len() as u64).expect("a frame at that offset")
}

/// Scans bytes in memory.
pub fn scan(bytes: &[u8], payloads: bool) -> Result<Scan, VerifyError> {
    dare_container::verify::scan(bytes, bytes.len() as u64, &ScanOptions::default().with_payloads(payloads))
}

/// The verification error inside a crate error.
pub fn verify_error(e: dare_container::Error) -> VerifyError {
    match e {
        dare_container::Error::Verify(v) => v,
        other => panic!("expected a verification error, got {other:?}"),
    }
}

/// A short name of a problem's variant, for assertion messages.
pub fn problem_kind(p: &Problem) -> &'static str {
    match p {
        Problem::Frame(_) => "Frame",
        Problem::Header(_) => "Header",
        Problem::NotGenesis(_) => "NotGenesis",
        Problem::ExtraGenesis => "ExtraGenesis",
        Problem::Payload(_) => "Payload",
        Problem::Entry(_) => "Entry",
        Problem::Index(_) => "Index",
        Problem::Manifest(_) => "Manifest",
        Problem::LeafHash { .. } => "LeafHash",
        Problem::Tile(_) => "Tile",
        Problem::Map(_) => "Map",
        Problem::Seal(_) => "Seal",
        Problem::Signature(_) => "Signature",
        Problem::Proof(_) => "Proof",
        Problem::Unexpected(_) => "Unexpected",
        Problem::NoSeal => "NoSeal",
        Problem::Io(_) => "Io",
        _ => "other",
    }
}

/// Writes bytes next to a fixture and returns the path.
pub fn write_beside(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write");
    p
}

/// The number of tile levels of a tree of `n` leaves, computed here rather
/// than taken from the crate.
fn tile_levels(n: u64) -> usize {
    (0..8u32).take_while(|l| n >> (8 * l) > 0).count()
}

fn be(offsets: &[u64]) -> Vec<u8> {
    offsets.iter().flat_map(|o| o.to_be_bytes()).collect()
}

/// The newest build of a channel and target in a [`Forge`].
#[derive(Clone, Debug)]
pub struct Newest {
    pub version: String,
    pub index: LeafRef,
    /// The bytes from the index frame's start to the end of its listing patch, if it has one.
    pub head: Option<u64>,
    /// Its listing (the base of the next build's patch).
    pub listing: Vec<u8>,
}

/// `listing` as one zstd frame compressed with `base` as its raw prefix, as
/// the format's writers make a listing patch.
pub fn patch_listing(base: &[u8], listing: &[u8]) -> Vec<u8> {
    let span = base.len().max(listing.len()).max(1) as u64;
    let mut enc = zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), 19, base).expect("a zstd encoder");
    enc.window_log((64 - span.leading_zeros() + 1).clamp(10, 31)).expect("a zstd parameter");
    enc.include_checksum(false).expect("a zstd parameter");
    enc.set_pledged_src_size(Some(listing.len() as u64)).expect("a zstd parameter");
    enc.write_all(listing).expect("zstd compresses in memory");
    enc.finish().expect("zstd compresses in memory")
}

/// No lie: the bytes as the format defines them.
pub fn honest(_: &mut Vec<u8>) {}

/// No lie in any page.
pub fn honest_page(_: u8, _: u64, _: &mut Vec<u8>) {}

/// A low-level container writer that follows the frame format but none of
/// the log's rules: it writes whatever leaves, indexes, manifests, maps and
/// seals a test asks for, computing tiles, pages, maps and checkpoints the
/// way the format defines them. Written independently of the [`Appender`],
/// so tests can also check the two agree byte for byte.
#[derive(Clone)]
pub struct Forge {
    pub bytes: Vec<u8>,
    pub tree: MemoryTree,
    /// Offset and length of every frame, by frame index.
    pub frames: Vec<FrameRef>,
    origin: String,
    /// The tree size whose full tiles are written.
    tiled: u64,
    /// Per tile level: the payload offsets of its full tiles, by index.
    pub full: Vec<Vec<u64>>,
    /// Per tile level: the payload offsets of its pages, by index.
    pub pages: Vec<Vec<u64>>,
    /// The manifest frame the next seal names.
    pub manifest: Option<FrameRef>,
    /// The map frame the next seal names.
    pub map: Option<FrameRef>,
    /// Every map frame written.
    pub maps: Vec<FrameRef>,
    /// (channel, target) to its newest build.
    latest: BTreeMap<(String, String), Newest>,
    /// The latest keys leaf.
    keys: Option<LeafRef>,
    /// The trust root in effect (after the latest keys leaf).
    trust: Option<TrustRoot>,
}

impl Forge {
    pub fn new(origin: &str) -> Self {
        Forge {
            bytes: Vec::new(),
            tree: MemoryTree::new(),
            frames: Vec::new(),
            origin: origin.into(),
            tiled: 0,
            full: Vec::new(),
            pages: Vec::new(),
            manifest: None,
            map: None,
            maps: Vec::new(),
            latest: BTreeMap::new(),
            keys: None,
            trust: None,
        }
    }

    /// A forge whose first frame is the genesis of `g`.
    pub fn with_genesis(g: &Genesis) -> Self {
        let mut f = Forge::new(&g.origin);
        f.leaf(&Header::Genesis(g.clone()).to_bytes().expect("genesis"), b"");
        f.trust = Some(g.trust.clone());
        f
    }

    /// Appends any frame; not a leaf.
    pub fn frame(&mut self, header: &[u8], payload: &[u8]) -> FrameRef {
        let bytes = encode_frame(header, payload).expect("frame fits");
        let r = FrameRef { offset: self.bytes.len() as u64, length: bytes.len() as u64 };
        self.bytes.extend_from_slice(&bytes);
        self.frames.push(r);
        r
    }

    /// Appends a non-leaf frame; returns its payload offset.
    fn payload_frame(&mut self, header: &Header, payload: &[u8]) -> u64 {
        let h = header.to_bytes().expect("a valid header");
        let r = self.frame(&h, payload);
        r.offset + payload_start(h.len() as u64, payload.len() as u64).expect("frame fits")
    }

    /// Appends a leaf frame: its header bytes are the leaf data.
    pub fn leaf(&mut self, header: &[u8], payload: &[u8]) -> LeafRef {
        let leaf = self.tree.size();
        self.tree.push(leaf_hash(header));
        let r = self.frame(header, payload);
        LeafRef { leaf, offset: r.offset, length: r.length }
    }

    /// The index of the frame at `offset`.
    pub fn index_of(&self, offset: u64) -> usize {
        self.frames.iter().position(|f| f.offset == offset).expect("a frame at that offset")
    }

    /// The index of the frame holding byte `offset`.
    pub fn holding(&self, offset: u64) -> usize {
        self.frames.iter().position(|f| f.offset <= offset && offset < f.offset + f.length).expect("a frame there")
    }

    /// Appends an entry frame as given.
    pub fn entry(&mut self, e: &Entry, stored: &[u8]) -> LeafRef {
        self.leaf(&Header::Entry(e.clone()).to_bytes().expect("entry header"), stored)
    }

    /// Appends `content` as an entry.
    pub fn put(&mut self, content: &[u8], compression: Compression) -> LeafRef {
        let (e, stored) = stage(content, compression);
        self.entry(&e, &stored)
    }

    /// Appends a delta frame as given.
    pub fn delta(&mut self, d: &Delta, payload: &[u8]) -> LeafRef {
        self.leaf(&Header::Delta(d.clone()).to_bytes().expect("delta header"), payload)
    }

    /// Appends the delta from `base` to `new`.
    pub fn put_delta(&mut self, base: &[u8], new: &[u8]) -> DeltaRef {
        let (d, payload) = diff(base, new);
        delta_ref(base, self.delta(&d, &payload))
    }

    /// An index header and payload without a listing patch: the listing
    /// zstd-compressed at level 19 when that is smaller (when `compress`),
    /// `previous` naming the newest index of the channel and target.
    pub fn index_header(
        &self,
        channel: &str,
        target: &str,
        version: &str,
        files: &[FileRecord],
        compress: bool,
    ) -> (Index, Vec<u8>) {
        let listing = listing_bytes(files).expect("a valid listing");
        let packed = if compress { zstd::bulk::compress(&listing, 19).expect("zstd") } else { listing.clone() };
        let (payload, compression) = if packed.len() < listing.len() {
            (packed, Compression::Zstd)
        } else {
            (listing.clone(), Compression::None)
        };
        let ix = Index {
            sealed: None,
            channel: channel.into(),
            target: target.into(),
            version: version.into(),
            files: files.len() as u64,
            size: listing.len() as u64,
            sha256: digest(&listing),
            stored_size: payload.len() as u64,
            stored_sha256: digest(&payload),
            compression,
            previous: self.newest(channel, target).map(|n| n.index),
            patch: None,
        };
        (ix, payload)
    }

    /// The index header and payload the format calls for: [`Self::index_header`],
    /// with the listing also as a patch against the previous build's listing,
    /// before it in the payload, when the patch is smaller than the listing as stored.
    pub fn patched_index_header(
        &self,
        channel: &str,
        target: &str,
        version: &str,
        files: &[FileRecord],
    ) -> (Index, Vec<u8>) {
        let (mut ix, stored) = self.index_header(channel, target, version, files, true);
        let Some(prev) = self.newest(channel, target) else { return (ix, stored) };
        let p = patch_listing(&prev.listing, &listing_bytes(files).expect("a valid listing"));
        if p.len() >= stored.len() {
            return (ix, stored);
        }
        ix.patch = Some(Patch { base: digest(&prev.listing), stored_size: p.len() as u64, stored_sha256: digest(&p) });
        (ix, [p, stored].concat())
    }

    /// The newest build of `channel` and `target` so far.
    pub fn newest(&self, channel: &str, target: &str) -> Option<&Newest> {
        self.latest.get(&(channel.to_string(), target.to_string()))
    }

    /// Appends an index frame as given and records it as the newest build
    /// of its channel and target.
    pub fn index_frame(&mut self, ix: &Index, payload: &[u8]) -> LeafRef {
        let header = Header::Index(ix.clone()).to_bytes().expect("index header");
        let at = self.leaf(&header, payload);
        let patch = ix.patch.map_or(0, |p| p.stored_size as usize).min(payload.len());
        let stored = &payload[patch..];
        let listing = match ix.compression {
            Compression::None => stored.to_vec(),
            Compression::Zstd => zstd::decode_all(stored).unwrap_or_default(),
        };
        let head = ix
            .patch
            .map(|p| payload_start(header.len() as u64, payload.len() as u64).expect("frame fits") + p.stored_size);
        let newest = Newest { version: ix.version.clone(), index: at, head, listing };
        self.latest.insert((ix.channel.clone(), ix.target.clone()), newest);
        at
    }

    /// Appends the index the format calls for.
    pub fn index(&mut self, channel: &str, target: &str, version: &str, files: &[FileRecord]) -> LeafRef {
        let (ix, payload) = self.patched_index_header(channel, target, version, files);
        self.index_frame(&ix, &payload)
    }

    /// Appends a keys leaf, its rotation signed by every fixture key
    /// (a, b, c) of the root in effect and of the new one.
    pub fn keys(&mut self, trust: TrustRoot) -> LeafRef {
        let (a, b, c) = (key_a(), key_b(), key_c());
        let old = self.trust.clone().expect("a genesis before a keys leaf");
        let signers: Vec<&SigningKey> =
            [&a, &b, &c].into_iter().filter(|k| old.contains(&k.verifier()) || trust.contains(&k.verifier())).collect();
        self.keys_signed(trust, &signers)
    }

    /// Appends a keys leaf whose rotation note (for the root in effect) is
    /// signed by `signers` alone.
    pub fn keys_signed(&mut self, trust: TrustRoot, signers: &[&SigningKey]) -> LeafRef {
        let old = self.trust.clone().expect("a genesis before a keys leaf");
        let text = dare_container::seal::rotation_text(&self.origin, &old, &trust);
        let note = Note::sign(&text, signers).expect("rotation note");
        let rotation = String::from_utf8(note.to_bytes()).expect("utf-8");
        let header = Keys { trust: trust.clone(), previous: self.keys, rotation };
        let at = self.leaf(&Header::Keys(header).to_bytes().expect("keys header"), b"");
        self.keys = Some(at);
        self.trust = Some(trust);
        at
    }

    /// The manifest the log's rules call for: the newest build of every
    /// (channel, target) indexed so far, and the latest keys leaf.
    pub fn honest_manifest(&self) -> Manifest {
        Manifest {
            releases: self
                .latest
                .iter()
                .map(|((channel, target), n)| Release {
                    channel: channel.clone(),
                    target: target.clone(),
                    version: n.version.clone(),
                    index: n.index,
                    head: n.head,
                })
                .collect(),
            keys: self.keys,
        }
    }

    /// The tiles completed since the last seal, the pages they fill, the
    /// right-edge tiles and the map of the current tree, in the order the
    /// format lays them out; `map_lie` and `page_lie` may change the map's
    /// and each new page's payload before it is written.
    pub fn tiles_and_map(&mut self, map_lie: &dyn Fn(&mut Vec<u8>), page_lie: &dyn Fn(u8, u64, &mut Vec<u8>)) {
        let n = self.tree.size();
        let levels = tile_levels(n);
        self.full.resize(levels.max(self.full.len()), Vec::new());
        self.pages.resize(levels.max(self.pages.len()), Vec::new());
        for t in tiles::new_full_tiles(self.tiled.min(n), n) {
            let payload = tiles::tile_bytes(&tiles::tile_hashes(&self.tree, t).expect("tile of the tree"));
            let at =
                self.payload_frame(&Header::Tile(Tile { level: t.level, index: t.index, width: t.width }), &payload);
            let level = &mut self.full[usize::from(t.level)];
            assert_eq!(level.len() as u64, t.index, "full tiles are written in order");
            level.push(at);
        }
        for l in 0..levels {
            while self.full[l].len() >= (self.pages[l].len() + 1) * 256 {
                let p = self.pages[l].len();
                let mut payload = be(&self.full[l][p * 256..(p + 1) * 256]);
                page_lie(l as u8, p as u64, &mut payload);
                let at = self.payload_frame(&Header::Page(Page { level: l as u8, index: p as u64 }), &payload);
                self.pages[l].push(at);
            }
        }
        let mut edges: Vec<Option<u64>> = vec![None; levels];
        for t in tiles::right_edge(n) {
            let payload = tiles::tile_bytes(&tiles::tile_hashes(&self.tree, t).expect("tile of the tree"));
            let at =
                self.payload_frame(&Header::Tile(Tile { level: t.level, index: t.index, width: t.width }), &payload);
            edges[usize::from(t.level)] = Some(at);
        }
        self.tiled = n;
        let before = self.tree.frontier_at(n - 1).expect("a frontier");
        let mut payload: Vec<u8> = before.hashes().concat();
        for (l, edge) in edges.iter().enumerate() {
            let paged = self.pages[l].len() * 256;
            payload.extend(be(&self.pages[l]));
            payload.extend(be(&self.full[l][paged..]));
            payload.extend(be(&edge.iter().copied().collect::<Vec<_>>()));
        }
        map_lie(&mut payload);
        let h = Header::Map(Map { size: n }).to_bytes().expect("map header");
        let r = self.frame(&h, &payload);
        self.map = Some(r);
        self.maps.push(r);
    }

    /// The manifest leaf `mbytes`, then the tiles, pages and map (lied about
    /// as asked), then the manifest frame: the tail of a release.
    pub fn tail_with(
        &mut self,
        mbytes: &[u8],
        map_lie: &dyn Fn(&mut Vec<u8>),
        page_lie: &dyn Fn(u8, u64, &mut Vec<u8>),
    ) -> FrameRef {
        self.tree.push(leaf_hash(mbytes));
        self.tiles_and_map(map_lie, page_lie);
        let r = self.frame(mbytes, b"");
        self.manifest = Some(r);
        r
    }

    /// The tail of a release with the manifest `mbytes`.
    pub fn manifest_bytes(&mut self, mbytes: &[u8]) -> FrameRef {
        self.tail_with(mbytes, &honest, &honest_page)
    }

    /// The tail of a release with the honest manifest.
    pub fn manifest(&mut self) -> FrameRef {
        let m = self.honest_manifest();
        self.manifest_bytes(&Header::Manifest(m).to_bytes().expect("manifest"))
    }

    /// The seal the format calls for over the current tree, signed by `keys`.
    pub fn seal_header(&self, keys: &[&SigningKey], time: u64) -> Seal {
        let n = self.tree.size();
        let root = self.tree.root_at(n).expect("root");
        let cp = Checkpoint { origin: self.origin.clone(), size: n, root, time: Some(time), extensions: vec![] };
        let note = Note::sign(&cp.to_text(), keys).expect("sign");
        Seal {
            checkpoint: String::from_utf8(note.to_bytes()).expect("utf-8"),
            time,
            manifest: self.manifest.expect("a manifest before the seal"),
            map: self.map.expect("a map before the seal"),
        }
    }

    /// Appends a seal frame.
    pub fn push_seal(&mut self, seal: &Seal) -> FrameRef {
        self.frame(&Header::Seal(seal.clone()).to_bytes().expect("seal"), b"")
    }

    /// Appends the seal the format calls for.
    pub fn seal(&mut self, keys: &[&SigningKey], time: u64) -> FrameRef {
        let s = self.seal_header(keys, time);
        self.push_seal(&s)
    }
}
