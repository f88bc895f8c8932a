//! Typed frame headers (DESIGN.md 3.2).
//!
//! A header is one UTF-8 JSON object with a `"kind"` field. The bytes as stored
//! are what is hashed and signed: [`Header::parse`] reads them, and writers
//! produce them once with [`Header::to_bytes`]; nothing is re-serialized to
//! verify. Parsing is strict: unknown fields, duplicate fields and values
//! outside the rules below are refused.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::crypt::PayloadKey;
use crate::hashio::{Digest32, digest_from_hex, to_hex};
use crate::keys::TrustRoot;

/// The format version written in the genesis frame.
pub const FORMAT_VERSION: u32 = 2;

/// Why a header is not acceptable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// Not a JSON object of a known kind with the right fields.
    #[error("header is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// A field holds a value the format does not allow.
    #[error("header field `{field}`: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn field(field: &'static str, reason: impl Into<String>) -> HeaderError {
    HeaderError::Field { field, reason: reason.into() }
}

/// A SHA-256 digest, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Sha256Hex(pub Digest32);

impl fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}

impl FromStr for Sha256Hex {
    type Err = HeaderError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        digest_from_hex(s).map(Sha256Hex).ok_or_else(|| field("sha256", "not 64 lowercase hex digits"))
    }
}

impl Serialize for Sha256Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_hex(&self.0))
    }
}

impl<'de> Deserialize<'de> for Sha256Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        digest_from_hex(&s).map(Sha256Hex).ok_or_else(|| serde::de::Error::custom("not 64 lowercase hex digits"))
    }
}

/// Every frame header, by its `"kind"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Header {
    /// Frame 0: what the container is and who signs it.
    Genesis(Genesis),
    /// One content, stored once.
    Entry(Entry),
    /// One content as a patch against another.
    Delta(Delta),
    /// One build of one target on one channel: its file listing.
    Index(Index),
    /// The newest release of every target on every channel.
    Manifest(Manifest),
    /// A new trust root.
    Keys(Keys),
    /// A private channel's content key, wrapped to its recipients.
    Exchange(Exchange),
    /// A tlog tile (not a leaf).
    Tile(Tile),
    /// Where 256 full tiles are (not a leaf).
    Page(Page),
    /// The frontier before the manifest and where the tiles are (not a leaf).
    Map(Map),
    /// A signed checkpoint and where its manifest and map are (not a leaf).
    Seal(Seal),
    /// Proof material in a partial container (not a leaf).
    Proof(Proof),
    /// An index's listing, plain, in a partial container (not a leaf).
    Listing(Listing),
}

impl Header {
    /// Parses and validates stored header bytes.
    pub fn parse(bytes: &[u8]) -> Result<Header, HeaderError> {
        let h: Header = serde_json::from_slice(bytes)?;
        h.validate()?;
        Ok(h)
    }

    /// The bytes to store for this header. Validates first.
    pub fn to_bytes(&self) -> Result<Vec<u8>, HeaderError> {
        self.validate()?;
        Ok(serde_json::to_vec(self)?)
    }

    /// Whether frames of this kind are leaves of the Merkle tree.
    pub fn is_leaf(&self) -> bool {
        matches!(
            self,
            Header::Genesis(_)
                | Header::Entry(_)
                | Header::Delta(_)
                | Header::Index(_)
                | Header::Manifest(_)
                | Header::Keys(_)
                | Header::Exchange(_)
        )
    }

    /// The `"kind"` string.
    pub fn kind(&self) -> &'static str {
        match self {
            Header::Genesis(_) => "genesis",
            Header::Entry(_) => "entry",
            Header::Delta(_) => "delta",
            Header::Index(_) => "index",
            Header::Manifest(_) => "manifest",
            Header::Keys(_) => "keys",
            Header::Exchange(_) => "exchange",
            Header::Tile(_) => "tile",
            Header::Page(_) => "page",
            Header::Map(_) => "map",
            Header::Seal(_) => "seal",
            Header::Proof(_) => "proof",
            Header::Listing(_) => "listing",
        }
    }

    /// Checks the rules serde cannot express.
    pub fn validate(&self) -> Result<(), HeaderError> {
        match self {
            Header::Genesis(g) => g.validate(),
            Header::Entry(e) => e.validate(),
            Header::Delta(d) => d.validate(),
            Header::Index(i) => i.validate(),
            Header::Manifest(m) => m.validate(),
            Header::Keys(k) => {
                if k.rotation.len() > crate::note::MAX_NOTE_SIZE {
                    return Err(field("rotation", format!("at most {} bytes", crate::note::MAX_NOTE_SIZE)));
                }
                k.trust.validate().map_err(|e| field("trust", e.to_string()))
            }
            Header::Exchange(x) => {
                validate_channel(&x.channel)?;
                if x.stored_size > MAX_EXCHANGE {
                    return Err(field("stored_size", format!("an exchange is at most {MAX_EXCHANGE} bytes")));
                }
                Ok(())
            }
            Header::Tile(t) => t.validate(),
            Header::Page(p) => p.validate(),
            Header::Map(_) => Ok(()),
            Header::Seal(s) => s.validate(),
            Header::Proof(p) => p.validate(),
            Header::Listing(l) => {
                if l.size > MAX_LISTING {
                    return Err(field("size", format!("a listing is at most {MAX_LISTING} bytes")));
                }
                Ok(())
            }
        }
    }
}

/// The first frame of every container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// [`FORMAT_VERSION`].
    pub format: u32,
    /// The container's unique name, also the checkpoint origin (e.g. `example.com/myapp`).
    pub origin: String,
    /// The product's display name.
    pub product: String,
    /// Who may sign checkpoints.
    pub trust: TrustRoot,
}

impl Genesis {
    fn validate(&self) -> Result<(), HeaderError> {
        if self.format != FORMAT_VERSION {
            return Err(field(
                "format",
                format!("version {} is not supported (this reader knows {FORMAT_VERSION})", self.format),
            ));
        }
        validate_origin(&self.origin)?;
        if self.product.is_empty() || self.product.len() > 256 || self.product.chars().any(char::is_control) {
            return Err(field("product", "must be 1 to 256 bytes without control characters"));
        }
        self.trust.validate().map_err(|e| field("trust", e.to_string()))
    }
}

/// Checks a checkpoint origin: a non-empty line of printable ASCII without spaces.
pub fn validate_origin(origin: &str) -> Result<(), HeaderError> {
    if origin.is_empty() || origin.len() > 256 || !origin.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(field(
            "origin",
            "must be 1 to 256 printable ASCII characters without spaces, e.g. example.com/myapp",
        ));
    }
    Ok(())
}

/// How an entry's payload is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// The payload is the content.
    None,
    /// The payload is one zstd frame of the content.
    Zstd,
}

/// One file's content, stored once however many builds hold it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Content length.
    pub size: u64,
    /// Content SHA-256: what the container stores once.
    pub sha256: Sha256Hex,
    /// Payload length as stored.
    pub stored_size: u64,
    /// Payload SHA-256 as stored.
    pub stored_sha256: Sha256Hex,
    /// How the payload is stored.
    pub compression: Compression,
    /// In a private channel: the `exchange` leaf whose content key seals
    /// the payload (FORMAT.md 3.14). `sha256` members are then keyed digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<LeafRef>,
}

impl Entry {
    fn validate(&self) -> Result<(), HeaderError> {
        if self.sealed.is_some() {
            return validate_sealed(self.compression, self.size, self.stored_size);
        }
        if self.compression == Compression::None && (self.size != self.stored_size || self.sha256 != self.stored_sha256)
        {
            return Err(field("compression", "an uncompressed payload must have the content's size and sha256"));
        }
        Ok(())
    }
}

/// A file's content as a zstd patch against another content (its `base`):
/// the payload is one zstd frame compressed with the base's bytes as a raw
/// prefix (`zstd --patch-from`). The base and the result are both stored in
/// full elsewhere in the container, so a delta is never needed and never chained.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delta {
    /// SHA-256 of the base content.
    pub base: Sha256Hex,
    /// Length of the base content.
    pub base_size: u64,
    /// Length of the content this delta produces.
    pub size: u64,
    /// SHA-256 of the content this delta produces.
    pub sha256: Sha256Hex,
    /// Payload length.
    pub stored_size: u64,
    /// Payload SHA-256.
    pub stored_sha256: Sha256Hex,
    /// In a private channel: the `exchange` leaf whose content key seals
    /// the payload (FORMAT.md 3.14). `sha256` members are then keyed digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<LeafRef>,
}

/// The length rules of a sealed payload: a whole number of sealed chunks,
/// and with `"none"` exactly the content sealed.
fn validate_sealed(compression: Compression, size: u64, stored_size: u64) -> Result<(), HeaderError> {
    match (compression, crate::crypt::opened_len(stored_size)) {
        (_, None) => Err(field("stored_size", "not the length of a sealed payload")),
        (Compression::None, Some(n)) if n != size => {
            Err(field("stored_size", "a sealed uncompressed payload is the content sealed"))
        }
        _ => Ok(()),
    }
}

impl Delta {
    fn validate(&self) -> Result<(), HeaderError> {
        if self.sealed.is_some() && crate::crypt::opened_len(self.stored_size).is_none() {
            return Err(field("stored_size", "not the length of a sealed payload"));
        }
        if self.base == self.sha256 {
            return Err(field("base", "a delta's base is not its result"));
        }
        Ok(())
    }
}

/// Where one leaf frame sits: its leaf index, byte offset and total length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeafRef {
    /// Its leaf index.
    pub leaf: u64,
    /// Byte offset of the frame.
    pub offset: u64,
    /// Byte length of the frame.
    pub length: u64,
}

impl LeafRef {
    /// One past the frame's last byte.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.length)
    }
}

/// The largest exchange payload (1 MiB: some 5,000 recipients).
pub const MAX_EXCHANGE: u64 = 1 << 20;

/// A private channel's content key for one release, wrapped to every
/// recipient: the payload is an age file whose plaintext is the 32-byte key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    /// The channel whose release it keys.
    pub channel: String,
    /// Payload length.
    pub stored_size: u64,
    /// Payload SHA-256.
    pub stored_sha256: Sha256Hex,
}

/// One build of one target on one channel: the header of its file listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    /// The channel.
    pub channel: String,
    /// The target triple.
    pub target: String,
    /// The release's version.
    pub version: String,
    /// How many files the listing holds.
    pub files: u64,
    /// Length of the listing (the JSON array of [`FileRecord`]s).
    pub size: u64,
    /// SHA-256 of the listing.
    pub sha256: Sha256Hex,
    /// Payload length as stored.
    pub stored_size: u64,
    /// Payload SHA-256 as stored.
    pub stored_sha256: Sha256Hex,
    /// How the listing is stored.
    pub compression: Compression,
    /// The index of the previous release of this channel and target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<LeafRef>,
    /// The listing as a zstd patch against the previous release's listing,
    /// stored before the listing in the payload: a client that holds the
    /// previous listing reads only the header and the patch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<Patch>,
    /// In a private channel: the `exchange` leaf whose content key seals
    /// the payload (FORMAT.md 3.14). `sha256` members are then keyed digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<LeafRef>,
}

/// A listing as a zstd patch against another listing (its `base`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    /// SHA-256 of the base listing (the previous index's `sha256`).
    pub base: Sha256Hex,
    /// Length of the patch.
    pub stored_size: u64,
    /// SHA-256 of the patch.
    pub stored_sha256: Sha256Hex,
}

/// The largest file listing a reader accepts, decompressed (64 MiB: some
/// 200,000 files).
pub const MAX_LISTING: u64 = 64 << 20;

impl Index {
    fn validate(&self) -> Result<(), HeaderError> {
        validate_channel(&self.channel)?;
        validate_target(&self.target)?;
        validate_version(&self.version)?;
        if self.sealed.is_some() {
            if self.patch.is_some() {
                return Err(field("patch", "a sealed listing has no patch"));
            }
            validate_sealed(self.compression, self.size, self.stored_size)?;
        } else if self.compression == Compression::None
            && (self.size != self.stored_size || self.sha256 != self.stored_sha256)
        {
            return Err(field("compression", "an uncompressed listing must have the listing's size and sha256"));
        }
        if self.size > MAX_LISTING {
            return Err(field("size", format!("a listing is at most {MAX_LISTING} bytes")));
        }
        if self.files == 0 {
            return Err(field("files", "a build has at least one file"));
        }
        if let Some(p) = &self.patch {
            if self.previous.is_none() {
                return Err(field("patch", "a patch needs a previous index"));
            }
            if p.stored_size > MAX_LISTING || p.base == self.sha256 {
                return Err(field("patch", "at most 64 MiB, and not a patch against the listing itself"));
            }
        }
        Ok(())
    }

    /// The payload length: the patch, then the listing as stored.
    pub fn payload_len(&self) -> u64 {
        self.patch.map_or(0, |p| p.stored_size) + self.stored_size
    }

    /// The parsed version.
    pub fn semver(&self) -> semver::Version {
        // Validated at parse time.
        semver::Version::parse(&self.version).unwrap_or_else(|_| semver::Version::new(0, 0, 0))
    }
}

/// A delta that produces a file's content from another content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaRef {
    /// SHA-256 of the base content.
    pub base: Sha256Hex,
    /// The delta's leaf.
    pub leaf: u64,
    /// Byte offset of its frame.
    pub offset: u64,
    /// Byte length of its frame.
    pub length: u64,
    /// In a private listing: the key of that payload (FORMAT.md 3.14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PayloadKey>,
}

impl DeltaRef {
    /// Where the delta frame sits.
    pub fn at(&self) -> LeafRef {
        LeafRef { leaf: self.leaf, offset: self.offset, length: self.length }
    }
}

/// One file of a build, in an index's listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    /// The file's relative path, `/`-separated.
    pub path: String,
    /// Unix permission bits (`0o644` or `0o755` as written by dare).
    pub mode: u32,
    /// Content length.
    pub size: u64,
    /// Content SHA-256.
    pub sha256: Sha256Hex,
    /// The entry holding the content in full.
    pub entry: LeafRef,
    /// Deltas producing the content from earlier versions of the file.
    pub deltas: Vec<DeltaRef>,
    /// In a private listing: the key of the entry's payload (FORMAT.md 3.14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PayloadKey>,
}

/// Parses and validates a file listing (the decompressed payload of an index).
pub fn parse_listing(bytes: &[u8], files: u64) -> Result<Vec<FileRecord>, HeaderError> {
    let list: Vec<FileRecord> = serde_json::from_slice(bytes)?;
    if list.len() as u64 != files {
        return Err(field("files", format!("the index says {files} files, the listing has {}", list.len())));
    }
    validate_listing(&list)?;
    Ok(list)
}

/// Parses a plain listing: no file or delta carries a key.
pub fn parse_plain_listing(bytes: &[u8], files: u64) -> Result<Vec<FileRecord>, HeaderError> {
    let list = parse_listing(bytes, files)?;
    if list.iter().any(|f| f.key.is_some() || f.deltas.iter().any(|d| d.key.is_some())) {
        return Err(field("key", "a plain listing names no keys"));
    }
    Ok(list)
}

/// The bytes of a listing. Validates first.
pub fn listing_bytes(list: &[FileRecord]) -> Result<Vec<u8>, HeaderError> {
    validate_listing(list)?;
    Ok(serde_json::to_vec(list)?)
}

/// Parses a private listing: every file and delta carries its payload's key.
pub fn parse_sealed_listing(bytes: &[u8], files: u64) -> Result<Vec<FileRecord>, HeaderError> {
    let list = parse_listing(bytes, files)?;
    if list.iter().any(|f| f.key.is_none() || f.deltas.iter().any(|d| d.key.is_none())) {
        return Err(field("key", "a sealed listing gives the key of every entry and delta it names"));
    }
    Ok(list)
}

fn validate_listing(list: &[FileRecord]) -> Result<(), HeaderError> {
    for f in list {
        validate_path(&f.path)?;
        if f.mode > 0o7777 {
            return Err(field("mode", "must be at most 0o7777"));
        }
        if f.deltas.iter().any(|d| d.base == f.sha256) {
            return Err(field("deltas", format!("{}: a delta's base is not the file's own content", f.path)));
        }
        if f.deltas.windows(2).any(|w| w[0].base >= w[1].base) {
            return Err(field("deltas", format!("{}: sorted by base, without repeats", f.path)));
        }
    }
    for w in list.windows(2) {
        if w[0].path >= w[1].path {
            return Err(field("path", "the listing must be sorted by path, without repeats"));
        }
    }
    // A file `a` and a file `a/b` cannot both be written.
    let paths: std::collections::HashSet<&str> = list.iter().map(|f| f.path.as_str()).collect();
    for f in list {
        if let Some((i, _)) = f.path.match_indices('/').find(|(i, _)| paths.contains(&f.path[..*i])) {
            return Err(field("path", format!("{} is a file and also holds {}", &f.path[..i], f.path)));
        }
    }
    Ok(())
}

/// The newest release of one target on one channel, and where its index is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// The channel.
    pub channel: String,
    /// The target triple.
    pub target: String,
    /// The newest version.
    pub version: String,
    /// Its index leaf.
    pub index: LeafRef,
    /// When the index has a patch: the bytes from the index frame's first
    /// byte to the end of the patch (what a client holding the previous
    /// listing reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<u64>,
}

/// The last leaf of every signed tree: the newest version of every target on
/// every channel, and where each one's index is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// One release per (channel, target), sorted by channel then target.
    pub releases: Vec<Release>,
    /// The latest `keys` leaf (the trust root in effect), if the genesis root
    /// was ever rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<LeafRef>,
}

impl Manifest {
    fn validate(&self) -> Result<(), HeaderError> {
        for w in self.releases.windows(2) {
            if (&w[0].channel, &w[0].target) >= (&w[1].channel, &w[1].target) {
                return Err(field("releases", "must be sorted by channel then target, without repeats"));
            }
        }
        for r in &self.releases {
            validate_channel(&r.channel)?;
            validate_target(&r.target)?;
            validate_version(&r.version)?;
        }
        Ok(())
    }

    /// The release of `target` on `channel`.
    pub fn release(&self, channel: &str, target: &str) -> Option<&Release> {
        self.releases.iter().find(|r| r.channel == channel && r.target == target)
    }
}

/// A new trust root, taking effect at the seal that first covers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    /// The new trust root.
    pub trust: TrustRoot,
    /// The `keys` leaf before this one; absent on the first rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<LeafRef>,
    /// The rotation note: [`crate::seal::rotation_text`] signed by a
    /// threshold of the root it replaces and of the new root.
    pub rotation: String,
}

/// A C2SP tlog tile; its payload is the tile's `width` hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tile {
    /// Tile level (level L holds hashes of tree height 8L).
    pub level: u8,
    /// Tile index within the level.
    pub index: u64,
    /// Number of hashes, 1 to 256.
    pub width: u16,
}

impl Tile {
    fn validate(&self) -> Result<(), HeaderError> {
        if self.level > 7 || self.width == 0 || self.width > 256 {
            return Err(field("width", "a tile has level 0 to 7 and 1 to 256 hashes"));
        }
        Ok(())
    }
}

/// Where 256 full tiles of one level are: the payload is 256 big-endian
/// `u64`s, the payload offsets of tiles `index * 256 ..` of `level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// The tile level.
    pub level: u8,
    /// The page's position among that level's pages.
    pub index: u64,
}

impl Page {
    fn validate(&self) -> Result<(), HeaderError> {
        if self.level > 7 {
            return Err(field("level", "a page is for tile level 0 to 7"));
        }
        Ok(())
    }
}

/// The proof material of one tree (not a leaf): the frontier before its
/// manifest, and where every tile is. Its payload's layout is a function of
/// `size` alone ([`crate::tiles::MapLayout`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Map {
    /// The tree size it describes.
    pub size: u64,
}

/// Where a frame sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameRef {
    /// Byte offset of the frame.
    pub offset: u64,
    /// Byte length of the frame.
    pub length: u64,
}

impl FrameRef {
    /// One past the frame's last byte.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.length)
    }
}

/// The longest signed checkpoint (signature lines included) a seal holds:
/// [`MAX_SEAL_CHECKPOINT`].
pub const MAX_CHECKPOINT_LEN: usize = MAX_SEAL_CHECKPOINT;

/// The last frame after every publish: the signed checkpoint, and where its
/// manifest and map are. Small, so an up-to-date check reads only this.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seal {
    /// The C2SP signed note of the checkpoint, signature lines included.
    pub checkpoint: String,
    /// The signed time (Unix seconds); equal to the checkpoint's `time` line.
    pub time: u64,
    /// The manifest frame (leaf n-1).
    pub manifest: FrameRef,
    /// The map frame of tree n.
    pub map: FrameRef,
}

/// Cosignatures a seal has room for besides the publisher's: signed-note's
/// minimum ("verifiers MUST accept at least up to 16 signatures").
pub const SEAL_COSIGNATURES: usize = 16;

/// Bytes budgeted for one signature line of a seal: em dash, space, a key
/// name of up to 256 bytes, space, the base64 of a 4-byte key ID, an 8-byte
/// timestamp and an ML-DSA-87 signature (4627 bytes), newline. The largest
/// post-quantum cosignature signed-note expects.
pub const SEAL_SIGNATURE_LINE_BUDGET: usize = 3 + 1 + 256 + 1 + (4 + 8 + 4627usize).div_ceil(3) * 4 + 1;

/// Bytes budgeted for a seal's checkpoint text and blank line (origin of up
/// to 256 bytes, size, root, `time` and `supersedes-time` lines: about 400).
const SEAL_TEXT_BUDGET: usize = 1024;

/// The most bytes a seal's `checkpoint` (the whole signed note) may have:
/// the publisher's signature line and [`SEAL_COSIGNATURES`] post-quantum
/// ones ([`SEAL_SIGNATURE_LINE_BUDGET`] each) and the text, rounded up to a
/// multiple of 64 KiB (128 KiB). Well under the 1 MiB note limit.
pub const MAX_SEAL_CHECKPOINT: usize =
    ((1 + SEAL_COSIGNATURES) * SEAL_SIGNATURE_LINE_BUDGET + SEAL_TEXT_BUDGET).next_multiple_of(64 * 1024);

/// The most bytes a seal frame may have, so the most a reader looking for
/// the last seal needs to read: the header's JSON escapes at most every byte
/// of the checkpoint into two (a note has no control character but newline),
/// plus the other members and the frame's records (under 1 KiB).
pub const MAX_SEAL_FRAME: u64 = 2 * MAX_SEAL_CHECKPOINT as u64 + 1024;

const _: () = assert!(MAX_SEAL_CHECKPOINT <= crate::note::MAX_NOTE_SIZE);
const _: () = assert!(MAX_SEAL_FRAME <= crate::frame::MAX_HEADER_LEN);

impl Seal {
    fn validate(&self) -> Result<(), HeaderError> {
        if self.checkpoint.len() > MAX_SEAL_CHECKPOINT {
            return Err(field(
                "checkpoint",
                format!("{} bytes, over the {MAX_SEAL_CHECKPOINT}-byte limit", self.checkpoint.len()),
            ));
        }
        Ok(())
    }
}

/// In a partial container, the listing of the index frame just before it,
/// plain: a replica keeps an index's header (its leaf) and its listing, not
/// the payload as upstream stored it. The payload is the listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listing {
    /// Its length.
    pub size: u64,
    /// Its SHA-256 (the index's `sha256`).
    pub sha256: Sha256Hex,
}

/// Proof material in a partial container: the leaf index of every leaf frame
/// since the previous seal, in file order, and the node hashes (in the
/// payload, 32 bytes each, in the order of `nodes`) that, with those leaves and
/// the previous seal's tree, give the root of the next seal's tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    /// The tree size of the seal that follows.
    pub size: u64,
    /// Leaf index of each leaf frame since the previous seal, in file order.
    pub leaves: Vec<u64>,
    /// `[height, index]` of each node hash in the payload.
    pub nodes: Vec<(u8, u64)>,
}

impl Proof {
    fn validate(&self) -> Result<(), HeaderError> {
        if self.leaves.iter().any(|l| *l >= self.size) || self.nodes.iter().any(|(h, _)| *h > 63) {
            return Err(field("leaves", "leaf index past the tree size or node height over 63"));
        }
        Ok(())
    }
}

/// Checks a target triple as the format defines it: 2 to 5 non-empty
/// `-`-separated parts of `a-z 0-9 _ .`, at most 128 bytes. Readers apply only
/// this rule, so a container never stops verifying when a triple library
/// learns new targets; [`validate_known_target`] is the stricter check for
/// what publishers and updaters are given.
pub fn validate_target(target: &str) -> Result<(), HeaderError> {
    let parts: Vec<&str> = target.split('-').collect();
    let ok = target.len() <= 128
        && (2..=5).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.".contains(&b))
        });
    if ok { Ok(()) } else { Err(field("target", format!("`{target}` is not a target triple"))) }
}

/// The target triples rustc knows (`rustc +nightly --print target-list`,
/// checked in beside this file with the command that regenerates it).
const RUSTC_TARGETS: &str = include_str!("rustc-targets.txt");

/// The triples of [`RUSTC_TARGETS`], without its comment lines.
pub fn rustc_targets() -> impl Iterator<Item = &'static str> {
    RUSTC_TARGETS.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// The stricter check for what writers are given (`dare publish`'s
/// artifacts, the updater's `--target`): [`validate_target`], and the triple
/// is written in its canonical form, which is either one rustc lists
/// ([`rustc_targets`]) or one target-lexicon parses with a known
/// architecture and prints back unchanged. Anything else is refused,
/// suggesting the canonical form when one is found (`x86_64-linux-gnu`:
/// did you mean `x86_64-unknown-linux-gnu`?), because a build stored under
/// another spelling is never found by a client asking for its target.
pub fn validate_known_target(target: &str) -> Result<(), HeaderError> {
    validate_target(target)?;
    if rustc_targets().any(|t| t == target) {
        return Ok(());
    }
    let parsed = target_lexicon::Triple::from_str(target)
        .ok()
        .filter(|t| t.architecture != target_lexicon::Architecture::Unknown);
    let Some(triple) = parsed else {
        return Err(field(
            "target",
            format!("`{target}` is not a known target triple (`rustc --print target-list` lists them)"),
        ));
    };
    let canonical = triple.to_string();
    if canonical == target {
        return Ok(());
    }
    let accepted = validate_target(&canonical).is_ok()
        && (rustc_targets().any(|t| t == canonical)
            || target_lexicon::Triple::from_str(&canonical).is_ok_and(|t| t.to_string() == canonical));
    let hint = if accepted {
        format!("did you mean `{canonical}`? (clients look a build up by its canonical triple)")
    } else {
        "`rustc --print target-list` lists the known triples".to_string()
    };
    Err(field("target", format!("`{target}` is not a target triple in canonical form: {hint}")))
}

/// A path as a case-insensitive, normalizing file system (macOS, Windows)
/// compares it: Unicode NFC, then lowercase.
fn folded_path(path: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    path.nfc().collect::<String>().to_lowercase()
}

/// Finds two paths of one build that are one file on macOS or Windows
/// (equal after Unicode NFC normalization, or differing only by case), or a
/// file whose name, so compared, is a directory of another file's path: on
/// those systems the second would overwrite the first or could not be
/// written. Writers refuse such a build; readers accept any listing the
/// format allows (section 3 of docs/FORMAT.md). Returns a message naming both.
pub fn find_name_collision<'a>(paths: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let paths: Vec<&str> = paths.into_iter().collect();
    let mut seen: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
    for p in &paths {
        if let Some(other) = seen.insert(folded_path(p), p) {
            return Some(format!(
                "the files `{other}` and `{p}` are the same file on macOS and Windows (equal after Unicode \
                 normalization or differing only by case); rename one"
            ));
        }
    }
    for p in &paths {
        let folded = folded_path(p);
        for (i, _) in folded.match_indices('/') {
            if let Some(other) = seen.get(&folded[..i]) {
                return Some(format!(
                    "`{other}` is a file, but `{p}` needs a directory of that name (on macOS and Windows, where \
                     names are compared after Unicode normalization and without case)"
                ));
            }
        }
    }
    None
}

/// Checks a semver version.
pub fn validate_version(version: &str) -> Result<(), HeaderError> {
    semver::Version::parse(version)
        .map(drop)
        .map_err(|e| field("version", format!("`{version}` is not a semver version: {e}")))
}

/// Checks a channel name: 1 to 64 of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn validate_channel(channel: &str) -> Result<(), HeaderError> {
    let ok = !channel.is_empty()
        && channel.len() <= 64
        && channel.as_bytes()[0].is_ascii_alphanumeric()
        && channel.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok { Ok(()) } else { Err(field("channel", format!("`{channel}` must be 1 to 64 of a-z 0-9 . _ -"))) }
}

/// Checks an entry path: relative, `/`-separated, no empty, `.` or `..`
/// segment, no backslash or control character, at most 4096 bytes.
pub fn validate_path(path: &str) -> Result<(), HeaderError> {
    let bad = |why: &str| Err(field("path", format!("`{}`: {why}", path.escape_debug())));
    if path.is_empty() || path.len() > 4096 {
        return bad("must be 1 to 4096 bytes");
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return bad("contains a control character or backslash");
    }
    if path.starts_with('/') {
        return bad("is absolute");
    }
    if path.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return bad("has an empty, `.` or `..` segment");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(b: &[u8]) -> Sha256Hex {
        Sha256Hex(crate::hashio::sha256(b))
    }

    fn index() -> Index {
        Index {
            sealed: None,
            channel: "stable".into(),
            target: "x86_64-unknown-linux-gnu".into(),
            version: "1.2.3-rc.1".into(),
            files: 1,
            size: 3,
            sha256: digest(b"abc"),
            stored_size: 3,
            stored_sha256: digest(b"abc"),
            compression: Compression::None,
            previous: None,
            patch: None,
        }
    }

    fn file(path: &str) -> FileRecord {
        FileRecord {
            key: None,
            path: path.into(),
            mode: 0o755,
            size: 3,
            sha256: digest(b"abc"),
            entry: LeafRef { leaf: 1, offset: 10, length: 20 },
            deltas: Vec::new(),
        }
    }

    #[test]
    fn index_bytes_are_stable_and_kind_comes_first() {
        let h = Header::Index(index());
        let b = h.to_bytes().unwrap();
        let s = std::str::from_utf8(&b).unwrap();
        assert!(s.starts_with(r#"{"kind":"index","channel":"stable","target":"x86_64-unknown-linux-gnu""#), "{s}");
        assert!(!s.contains("previous"));
        assert_eq!(Header::parse(&b).unwrap(), h);
    }

    #[test]
    fn rejects_unknown_and_duplicate_fields() {
        let b = Header::Index(index()).to_bytes().unwrap();
        let s = String::from_utf8(b).unwrap();
        let extra = s.replacen("{", r#"{"extra":1,"#, 1);
        assert!(Header::parse(extra.as_bytes()).is_err());
        let dup = s.replacen(r#""files":1"#, r#""files":1,"files":2"#, 1);
        assert!(Header::parse(dup.as_bytes()).is_err());
        assert!(Header::parse(br#"{"kind":"nope"}"#).is_err());
        assert!(Header::parse(br#"[1]"#).is_err());
    }

    #[test]
    fn rejects_bad_index_values() {
        type Mutation = Box<dyn Fn(&mut Index)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("target", Box::new(|e| e.target = "x86_64".into())),
            ("target", Box::new(|e| e.target = "not a triple".into())),
            ("target", Box::new(|e| e.target = "x86_64--linux".into())),
            ("version", Box::new(|e| e.version = "1.2".into())),
            ("channel", Box::new(|e| e.channel = "Stable".into())),
            ("compression", Box::new(|e| e.stored_size = 4)),
            ("files", Box::new(|e| e.files = 0)),
        ];
        for (what, f) in cases {
            let mut e = index();
            f(&mut e);
            let err = Header::Index(e).to_bytes().unwrap_err();
            assert!(err.to_string().contains(what), "{what}: {err}");
        }
    }

    #[test]
    fn rejects_bad_listings() {
        for (what, list) in [
            ("path", vec![file("../etc/passwd")]),
            ("path", vec![file("/etc/passwd")]),
            ("path", vec![file("a//b")]),
            ("path", vec![file("a/./b")]),
            ("path", vec![file("a\\b")]),
            ("path", vec![file("b"), file("a")]),
            ("path", vec![file("a"), file("a")]),
            ("path", vec![file("a"), file("a/b")]),
            ("path", vec![file("a"), file("a.txt"), file("a/b")]),
        ] {
            let err = listing_bytes(&list).unwrap_err();
            assert!(err.to_string().contains(what), "{what}: {err}");
        }
        let mut f = file("a");
        f.mode = 0o10000;
        assert!(listing_bytes(&[f]).unwrap_err().to_string().contains("mode"));
        let mut f = file("a");
        f.deltas = vec![DeltaRef { key: None, base: f.sha256, leaf: 2, offset: 0, length: 1 }];
        assert!(listing_bytes(&[f]).unwrap_err().to_string().contains("deltas"));
        let ok = vec![file("a.txt"), file("a/b"), file("b")];
        let bytes = listing_bytes(&ok).unwrap();
        assert_eq!(parse_listing(&bytes, 3).unwrap(), ok);
        assert!(parse_listing(&bytes, 2).is_err());
    }

    #[test]
    fn deltas_and_entries_have_their_own_rules() {
        let e = Entry {
            sealed: None,
            size: 3,
            sha256: digest(b"abc"),
            stored_size: 4,
            stored_sha256: digest(b"abcd"),
            compression: Compression::None,
        };
        assert!(Header::Entry(e).to_bytes().unwrap_err().to_string().contains("compression"));
        let d = Delta {
            sealed: None,
            base: digest(b"abc"),
            base_size: 3,
            size: 3,
            sha256: digest(b"abc"),
            stored_size: 1,
            stored_sha256: digest(b"x"),
        };
        assert!(Header::Delta(d).to_bytes().unwrap_err().to_string().contains("base"));
    }

    #[test]
    fn publishers_get_the_stricter_triple_check() {
        for t in ["x86_64-unknown-linux-gnu", "aarch64-apple-darwin", "x86_64-pc-windows-msvc", "wasm32-wasip1"] {
            assert!(validate_known_target(t).is_ok(), "{t}");
        }
        for t in ["x86_64-unknown-linux-gnux", "frobnicator-unknown-linux-gnu", "unknown-unknown"] {
            assert!(validate_known_target(t).is_err(), "{t}");
        }
        // Triples target-lexicon does not know yet, in rustc's current list.
        for t in ["arm64e-apple-darwin", "arm64ec-pc-windows-msvc"] {
            assert!(validate_known_target(t).is_ok(), "{t}");
        }
        // The format rule alone accepts a well-formed triple a library may not know yet.
        assert!(validate_target("riscv128-unknown-linux-gnu").is_ok());
    }

    #[test]
    fn every_rustc_target_is_accepted() {
        let all: Vec<&str> = rustc_targets().collect();
        assert!(all.len() > 300, "the checked-in list has {} triples", all.len());
        let refused: Vec<String> =
            all.iter().filter_map(|t| validate_known_target(t).err().map(|e| format!("{t}: {e}"))).collect();
        assert!(refused.is_empty(), "{refused:#?}");
    }

    #[test]
    fn only_the_canonical_spelling_is_accepted() {
        for (given, canonical) in [
            ("x86_64-linux-gnu", "x86_64-unknown-linux-gnu"),
            ("aarch64-linux-gnu", "aarch64-unknown-linux-gnu"),
            ("x86_64-unknown-linux-android", "x86_64-linux-android"),
        ] {
            let e = validate_known_target(given).unwrap_err().to_string();
            assert!(e.contains(&format!("did you mean `{canonical}`")), "{given}: {e}");
            assert!(validate_known_target(canonical).is_ok(), "{canonical}");
        }
    }

    #[test]
    fn digests_must_be_lowercase_hex() {
        let s = String::from_utf8(Header::Index(index()).to_bytes().unwrap()).unwrap();
        let upper = s.replacen("ba7816bf", "BA7816BF", 1);
        assert!(Header::parse(upper.as_bytes()).is_err());
    }

    #[test]
    fn manifest_must_be_sorted() {
        let r = |c: &str, t: &str| Release {
            channel: c.into(),
            target: t.into(),
            version: "1.0.0".into(),
            index: LeafRef { leaf: 1, offset: 10, length: 20 },
            head: None,
        };
        let ok = Manifest {
            releases: vec![r("beta", "x86_64-unknown-linux-gnu"), r("stable", "aarch64-apple-darwin")],
            keys: None,
        };
        assert!(Header::Manifest(ok.clone()).to_bytes().is_ok());
        let mut bad = ok;
        bad.releases.reverse();
        assert!(Header::Manifest(bad).to_bytes().is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        for s in ["", "{", "null", r#"{"kind":"seal"}"#, r#"{"kind":"tile","level":9,"index":0,"width":0}"#] {
            assert!(Header::parse(s.as_bytes()).is_err());
        }
    }

    #[test]
    fn a_seal_holds_sixteen_post_quantum_cosignatures() {
        let seal = |checkpoint: String| Seal {
            checkpoint,
            time: 1,
            manifest: FrameRef { offset: 0, length: 1 },
            map: FrameRef { offset: 1, length: 1 },
        };
        // The budget covers real lines: a 256-byte name and an ML-DSA-87
        // timestamped cosignature.
        let pq = format!("\u{2014} {} {}\n", "n".repeat(256), "A".repeat((4 + 8 + 4627usize).div_ceil(3) * 4));
        assert_eq!(pq.len(), SEAL_SIGNATURE_LINE_BUDGET);
        assert!(17 * pq.len() + 1024 <= MAX_SEAL_CHECKPOINT);
        assert_eq!(MAX_SEAL_CHECKPOINT, 128 * 1024);
        let at_cap = "x".repeat(MAX_SEAL_CHECKPOINT);
        let bytes = Header::Seal(seal(at_cap.clone())).to_bytes().unwrap();
        assert!(matches!(Header::parse(&bytes).unwrap(), Header::Seal(s) if s.checkpoint == at_cap));
        let over = Header::Seal(seal(format!("{at_cap}x")));
        assert!(over.to_bytes().unwrap_err().to_string().contains("checkpoint"));
        // The frame bound holds for the worst JSON escaping of a checkpoint.
        let escaped = Header::Seal(seal("\"".repeat(MAX_SEAL_CHECKPOINT))).to_bytes().unwrap();
        let frame = crate::frame::encode_frame(&escaped, b"").unwrap();
        assert!(frame.len() as u64 <= MAX_SEAL_FRAME, "{}", frame.len());
    }
}
