//! Fixtures shared by the container's API tests: deterministic keys and
//! times, a builder of multi-target containers through the [`Appender`], the
//! frame layout of a container, and [`Forge`], an independent low-level writer
//! for containers the appender would refuse to write.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use dare_container::frame::{FrameInfo, Frames, encode_frame, payload_start, read_header};
use dare_container::hashio::sha256;
use dare_container::header::{
    Compression, Entry, EntryRef, FORMAT_VERSION, FrameRef, Genesis, Header, Manifest, Release, Seal, Sha256Hex, Tile,
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

/// An entry header for `content` and the bytes to store for it.
pub fn entry(
    target: &str,
    version: &str,
    channel: &str,
    path: &str,
    content: &[u8],
    compression: Compression,
) -> (Entry, Vec<u8>) {
    let stored = match compression {
        Compression::None => content.to_vec(),
        Compression::Zstd => zstd::encode_all(content, 3).expect("zstd compresses in memory"),
    };
    let e = Entry {
        target: target.into(),
        version: version.into(),
        channel: channel.into(),
        path: path.into(),
        mode: if path.starts_with("bin/") { 0o755 } else { 0o644 },
        size: content.len() as u64,
        sha256: Sha256Hex(sha256(content)),
        stored_size: stored.len() as u64,
        stored_sha256: Sha256Hex(sha256(&stored)),
        compression,
        delta_base: None,
    };
    (e, stored)
}

/// Appends one file through the appender.
pub fn append(
    app: &mut Appender,
    target: &str,
    version: &str,
    channel: &str,
    path: &str,
    content: &[u8],
    compression: Compression,
) -> Result<EntryRef, dare_container::Error> {
    let (e, stored) = entry(target, version, channel, path, content, compression);
    app.append_entry(e, &mut stored.as_slice())
}

/// One file a fixture published.
#[derive(Clone, Debug)]
pub struct Published {
    pub channel: String,
    pub target: String,
    pub version: String,
    pub path: String,
    pub content: Vec<u8>,
    pub compression: Compression,
    pub at: EntryRef,
}

/// A container built by [`Builder`].
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub key: SigningKey,
    /// The seal of `create`, then one per release.
    pub seals: Vec<SealSummary>,
    /// Every file, in file order.
    pub files: Vec<Published>,
}

impl Fixture {
    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).expect("fixture is readable")
    }
}

/// Builds a container of `releases` releases of `targets`, each with
/// `files` files of about `size` bytes, mixing stored and zstd payloads.
/// Release `i` is version `1.i.0` on `stable`, signed at `T0 + 1000 (i + 1)`.
#[derive(Clone, Debug)]
pub struct Builder {
    pub releases: usize,
    pub targets: usize,
    pub files: usize,
    pub size: usize,
    /// Also publish `2.i.0-beta` of the first target on `beta` in every release.
    pub beta: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder { releases: 3, targets: 3, files: 3, size: 120, beta: true }
    }
}

impl Builder {
    pub fn build(&self) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("app.dare");
        let key = key_a();
        let mut seals = vec![Appender::create(&path, genesis(trust(&[&key], 1)), &[&key], T0).expect("create")];
        let mut files = Vec::new();
        for r in 0..self.releases {
            let mut app = Appender::open(&path, false).expect("open");
            let mut plan: Vec<(String, String, String)> = TARGETS[..self.targets]
                .iter()
                .map(|t| ("stable".to_string(), t.to_string(), format!("1.{r}.0")))
                .collect();
            if self.beta {
                plan.push(("beta".into(), TARGETS[0].into(), format!("2.{r}.0-beta")));
            }
            for (ti, (channel, target, version)) in plan.iter().enumerate() {
                for (fi, file) in FILES.iter().cycle().take(self.files).enumerate() {
                    let file = if fi < FILES.len() { file.to_string() } else { format!("{file}.{fi}") };
                    let seed = (r * 1000 + ti * 100 + fi) as u64;
                    let body = content(seed, self.size + (seed as usize * 7) % 50);
                    let compression = if fi % 2 == 0 { Compression::None } else { Compression::Zstd };
                    let at = append(&mut app, target, version, channel, &file, &body, compression).expect("append");
                    files.push(Published {
                        channel: channel.clone(),
                        target: target.clone(),
                        version: version.clone(),
                        path: file,
                        content: body,
                        compression,
                        at,
                    });
                }
            }
            seals.push(app.seal(&[&key], T0 + 1000 * (r as u64 + 1)).expect("seal"));
        }
        Fixture { dir, path, key, seals, files }
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

/// Scans bytes in memory.
pub fn scan(bytes: &[u8], payloads: bool) -> Result<Scan, VerifyError> {
    dare_container::verify::scan(bytes, bytes.len() as u64, &ScanOptions { payloads, pins: None })
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
        Problem::Manifest(_) => "Manifest",
        Problem::LeafHash { .. } => "LeafHash",
        Problem::Tile(_) => "Tile",
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

/// A low-level container writer that follows the frame format but none of
/// the log's rules: it writes whatever leaves, manifests and seals a test
/// asks for, computing tiles, proofs and checkpoints the way the format
/// defines them. Written independently of the [`Appender`], so tests can also
/// check the two agree byte for byte.
pub struct Forge {
    pub bytes: Vec<u8>,
    pub tree: MemoryTree,
    /// Offset and length of every frame, by frame index.
    pub frames: Vec<FrameRef>,
    origin: String,
    /// Tile (level, index, width) to the offset of its first hash.
    tiles: HashMap<(u8, u64, u16), u64>,
    sealed_size: u64,
    manifest: Option<FrameRef>,
    /// (channel, target) to (version, entries) of the newest release.
    latest: BTreeMap<(String, String), (semver::Version, Vec<EntryRef>)>,
}

impl Forge {
    pub fn new(origin: &str) -> Self {
        Forge {
            bytes: Vec::new(),
            tree: MemoryTree::new(),
            frames: Vec::new(),
            origin: origin.into(),
            tiles: HashMap::new(),
            sealed_size: 0,
            manifest: None,
            latest: BTreeMap::new(),
        }
    }

    /// A forge whose first frame is the genesis of `g`.
    pub fn with_genesis(g: &Genesis) -> Self {
        let mut f = Forge::new(&g.origin);
        f.leaf(&Header::Genesis(g.clone()).to_bytes().expect("genesis"), b"");
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

    /// Appends a leaf frame: its header bytes are the leaf data.
    pub fn leaf(&mut self, header: &[u8], payload: &[u8]) -> EntryRef {
        let leaf = self.tree.size();
        self.tree.push(leaf_hash(header));
        let r = self.frame(header, payload);
        EntryRef { leaf, offset: r.offset, length: r.length }
    }

    /// Appends an entry and records it as the newest release of its target.
    pub fn entry(&mut self, e: &Entry, stored: &[u8]) -> EntryRef {
        let r = self.leaf(&Header::Entry(e.clone()).to_bytes().expect("entry header"), stored);
        let v = semver::Version::parse(&e.version).expect("semver");
        let slot = self.latest.entry((e.channel.clone(), e.target.clone())).or_insert_with(|| (v.clone(), Vec::new()));
        if slot.0 != v {
            *slot = (v, Vec::new());
        }
        slot.1.push(r);
        r
    }

    /// The manifest the log's rules call for: the newest release of every
    /// (channel, target) entered so far.
    pub fn honest_manifest(&self) -> Manifest {
        Manifest {
            releases: self
                .latest
                .iter()
                .map(|((channel, target), (v, entries))| Release {
                    channel: channel.clone(),
                    target: target.clone(),
                    version: v.to_string(),
                    entries: entries.clone(),
                })
                .collect(),
        }
    }

    /// The tile frames of the current tree that are not written yet: new
    /// full tiles, then the right edge.
    pub fn tiles(&mut self) {
        let n = self.tree.size();
        let mut written = BTreeSet::new();
        for t in tiles::new_full_tiles(self.sealed_size, n).into_iter().chain(tiles::right_edge(n)) {
            if !written.insert(t) || self.tiles.contains_key(&(t.level, t.index, t.width)) {
                continue;
            }
            let payload = tiles::tile_bytes(&tiles::tile_hashes(&self.tree, t).expect("tile of the tree"));
            let header = Header::Tile(Tile { level: t.level, index: t.index, width: t.width }).to_bytes().unwrap();
            let r = self.frame(&header, &payload);
            let at = r.offset + payload_start(header.len() as u64, payload.len() as u64).expect("frame fits");
            self.tiles.insert((t.level, t.index, t.width), at);
        }
    }

    /// The tiles and then the manifest frame of a release, in the order the
    /// format lays them out: the manifest's leaf is in the tiles.
    pub fn manifest_bytes(&mut self, mbytes: &[u8]) -> FrameRef {
        self.tree.push(leaf_hash(mbytes));
        self.tiles();
        let r = self.frame(mbytes, b"");
        self.manifest = Some(r);
        r
    }

    /// Tiles and the honest manifest.
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
        let mut offsets: Vec<Vec<u64>> = Vec::new();
        for t in tiles::tiles_at(n) {
            let level = t.level as usize;
            if offsets.len() <= level {
                offsets.resize(level + 1, Vec::new());
            }
            offsets[level].push(self.tiles[&(t.level, t.index, t.width)]);
        }
        Seal {
            checkpoint: String::from_utf8(note.to_bytes()).expect("utf-8"),
            time,
            manifest: self.manifest.expect("a manifest before the seal"),
            manifest_proof: self.tree.inclusion_proof(n - 1, n).expect("proof").into_iter().map(Sha256Hex).collect(),
            tiles: offsets,
        }
    }

    /// Appends a seal frame.
    pub fn push_seal(&mut self, seal: &Seal) -> FrameRef {
        let r = self.frame(&Header::Seal(seal.clone()).to_bytes().expect("seal"), b"");
        self.sealed_size = self.tree.size();
        r
    }

    /// Appends the seal the format calls for.
    pub fn seal(&mut self, keys: &[&SigningKey], time: u64) -> FrameRef {
        let s = self.seal_header(keys, time);
        self.push_seal(&s)
    }
}
