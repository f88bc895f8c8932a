#!/usr/bin/env python3
"""An independent reader and verifier for dare release containers, format 2.

Written from docs/FORMAT.md alone, never from dare's Rust source. Section
numbers in comments are FORMAT.md's.

Usage: dare_reader.py CONTAINER [--identity FILE [--extract DIR]]

Prints "OK: full|partial container, N frames, tree size S, root HEX" as its
last line and exits 0, or "BAD: frame I at byte O: what" and exits 1. With
--identity (an age identity file, section 13.1) it also opens every key
exchange the identity is a recipient of, and checks the private listings and
payloads of those releases (13.3); if it is a recipient of none, the last line
is "NOT A RECIPIENT: ..." and it exits 3 (after checking everything a reader
without a key checks). --extract DIR writes each file of an opened private
listing to DIR/CHANNEL/TARGET/VERSION/PATH. Before
the OK line it prints a "stats:" line (counts of what it checked) and, for an
accepted torn tail (section 10), a "warning:" line. N counts the frames of the
sealed part. Needs the `cryptography` and `zstandard` modules.

What it checks, for a full container: both walks (2.2, 2.3) over the sealed
part; every header (1.1, 3); every payload (entries decompressed, deltas
applied to their base, index listings decompressed and parsed, index patches
applied to the previous listing); the release and content rules (7.1, 7.2);
every manifest against the recomputation, heads included (7.4); every seal
(8.2: note, checkpoint, thresholds and rotation, tiles, pages, the map,
consistency with the previous seal); and bytes after the last seal against
CONTAINER.pending (10). For a partial container (a replica): section 11,
header-only indexes with their `listing` frames (3.13) included.

Where FORMAT.md leaves a choice open, the reader: treats any frame whose
header names kind "seal" as the end of the sealed part (so an invalid last
seal is an error, not a torn tail); allows a zstd window of up to 2^31 bytes
for entries as for deltas; ignores proof nodes the recomputation does not use
(incomplete or repeated ones too) but rejects a node given twice with
different hashes; checks an index's patch bytes against patch.stored_sha256
in partial containers too; and does not require a partial container's leaves
in increasing leaf order.

Private channels (13): without a key it checks each exchange, private
entry, delta and index's stored bytes and length rule, the `sealed` refs
(exactly an earlier exchange; an index's, its channel's since the last seal)
and the release rules. In a partial container leaf numbers are known only at
the seal, so there it checks a private frame's stored bytes, that a private
entry or delta shares its segment with a private index, and no key is used.
The age v1 file of an exchange is opened here from the C2SP age spec
(X25519 stanzas, header MAC, STREAM payload) with `cryptography`'s X25519,
HKDF, HMAC and ChaCha20-Poly1305; the Bech32 of the identity is decoded here.
"""

import base64
import hashlib
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
import zstandard

U64 = 2**64 - 1
MAX_LEN = 2**63 - 1  # 2.1: every length, and a frame's total length
HEADER_CAP = 1 << 20  # 2.1: the header record is at most 1 MiB
NOTE_CAP = 1 << 20  # 6.2
CHECKPOINT_CAP = 65536  # 3.11
LISTING_CAP = 64 << 20  # 3.5
DELTA_CAP = 1 << 30  # 3.4
WINDOW_CAP = 2**31  # 3.4 (also used for entries: see the report)
FRAME_TAGS = {0xF4: 1, 0xF5: 2, 0xF6: 4, 0xF7: 8}  # tag -> width of the length
RECORD_TAGS = {0xF0: 1, 0xF1: 2, 0xF2: 4, 0xF3: 8}
MIN_FOR_WIDTH = {1: 0, 2: 256, 4: 65536, 8: 2**32}  # 2.1: smallest width
EXCHANGE_CAP = 1 << 20  # 3.14
CHUNK, TAG = 65536, 16  # 13.2
LEAF_KINDS = {"genesis", "entry", "delta", "index", "manifest", "keys", "exchange"}  # 3, 4
FULL_ONLY, PARTIAL_ONLY = ("tile", "page", "map"), ("proof", "listing")  # 3.12, 3.13, 11


class Invalid(Exception):
    """A rule violation; `frame` is set when it is not the frame being read."""

    def __init__(self, what, frame=None):
        super().__init__(what)
        self.frame = frame


class Bad(Exception):
    """A located rule violation: the text of the BAD line."""

    def __init__(self, index, offset, what):
        super().__init__(f"frame {index} at byte {offset}: {what}")


def sha256(*parts):
    return hashlib.sha256(b"".join(parts)).digest()


# ---------------------------------------------------------------- 2. frames


@dataclass(eq=False)
class Frame:
    index: int  # position in the file, from 0
    offset: int  # first byte
    length: int  # total length, tags included
    header: bytes  # the header record's bytes: the leaf data (4)
    payload_offset: int  # 5: the first payload byte
    payload_length: int
    kind: str = ""
    h: dict | None = None  # the parsed header, without "kind"
    leaf: int | None = None  # leaf index (from the proof frame in partial containers)
    listing: list | None = field(default=None, repr=False)  # index frames: the parsed listing
    listing_raw: bytes | None = field(default=None, repr=False)  # index frames: the listing's bytes
    header_only: bool = False  # partial containers: an index kept without its payload (3.13)

    def ref(self):
        return {"leaf": self.leaf, "offset": self.offset, "length": self.length}


def read_length(data, pos, w, little=False):
    """A w-byte length, checked against the smallest-width rule and 2^63-1 (2.1)."""
    n = int.from_bytes(data[pos : pos + w], "little" if little else "big")
    if n < MIN_FOR_WIDTH[w] or n > MAX_LEN:
        raise Invalid(f"length {n} is not minimal for {w} byte(s) or exceeds 2^63-1")
    return n


def read_frame(data, o, end, index):
    """The frame at o, which must fit in [o, end): section 2.2 steps 1-5."""
    if end - o < 2 or data[o] not in FRAME_TAGS:
        raise Invalid("truncated frame" if end - o < 2 else f"bad frame tag 0x{data[o]:02x}")
    w = FRAME_TAGS[data[o]]
    if end - o < 1 + w:
        raise Invalid("truncated frame length")
    body_len = read_length(data, o + 1, w)
    total = body_len + 2 + 2 * w
    if total > MAX_LEN or total > end - o:
        raise Invalid(f"truncated frame: needs {total} bytes, {end - o} left")
    t = o + 1 + w + body_len  # the trailing copy of the length
    if int.from_bytes(data[t : t + w], "little") != body_len or data[t + w] != data[o]:
        raise Invalid("trailing length or tag differs from the leading one")
    pos, records = o + 1 + w, []
    for i in (1, 2):  # exactly two records: header, payload
        if pos >= t or data[pos] not in RECORD_TAGS or t - pos < 1 + RECORD_TAGS[data[pos]]:
            raise Invalid(f"record {i}: missing, bad tag, or length past the body")
        rw = RECORD_TAGS[data[pos]]
        rlen = read_length(data, pos + 1, rw)
        if i == 1 and rlen > HEADER_CAP:
            raise Invalid(f"header record of {rlen} bytes exceeds 1 MiB")
        pos += 1 + rw
        if rlen > t - pos:
            raise Invalid(f"record {i} runs past the body")
        records.append((pos, rlen))
        pos += rlen
    if pos != t:
        raise Invalid("the two records do not exactly fill the body")
    (hpos, hlen), (ppos, plen) = records
    return Frame(index, o, total, bytes(data[hpos : hpos + hlen]), ppos, plen)


def read_frame_backward(data, e, s):
    """2.3: the frame ending just before e and starting at or after s."""
    w = FRAME_TAGS.get(data[e - 1]) if e > s else None
    if w is None or e - s < 1 + w:
        raise Invalid(f"backward walk: no frame tag and length before byte {e}")
    o = e - (read_length(data, e - 1 - w, w, little=True) + 2 + 2 * w)
    if o < s:
        raise Invalid(f"backward walk: the frame ending at {e} starts before {s}")
    return read_frame(data, o, e, -1)  # the leading tag and length must match too


def walk_backward(data, end):
    """2.3: the frame offsets of data[0:end], read from end to 0."""
    offsets, e = [], end
    while e > 0:
        e = read_frame_backward(data, e, 0).offset
        offsets.append(e)
    return offsets[::-1]


# ------------------------------------------------------------ 1.1, 3. headers


def parse_json(raw, top=dict):
    """1.1: one strict JSON value of type `top`; no duplicate members;
    non-negative integers only; no lone surrogates."""

    def pairs(items):
        if len({k for k, _ in items}) != len(items):
            raise Invalid("duplicate member")
        return dict(items)

    def no_number(s):
        raise Invalid(f"not a non-negative integer: {s}")

    try:  # strict UTF-8 first (json itself rejects a BOM); no 1.0, 1e2, -0, NaN, Infinity
        v = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=pairs,
            parse_float=no_number,
            parse_int=lambda s: no_number(s) if s[0] == "-" else int(s),
            parse_constant=no_number,
        )
        json.dumps(v, ensure_ascii=False).encode()  # lone surrogates (\ud800) fail here
    except ValueError as e:  # UnicodeError and JSONDecodeError are ValueErrors
        raise Invalid(f"not strict JSON: {e}") from None
    if type(v) is not top:
        raise Invalid(f"not a JSON {'object' if top is dict else 'array'}")
    return v


class Opt:
    """An optional member's schema."""

    def __init__(self, spec):
        self.spec = spec


class Pair:
    """A 2-element array of two integer ranges (3.12 nodes)."""

    def __init__(self, a, b):
        self.a, self.b = a, b


def conform(v, spec):
    """Check a parsed JSON value against a schema (1.1, 3): a dict is an
    object with exactly those members (unknown ones are rejected; Opt ones may
    be absent), a tuple (item, least, most) an array, a range an integer, a
    Pair a 2-element integer array, a function a string rule."""
    if type(spec) is dict:
        need = {k for k, s in spec.items() if type(s) is not Opt}
        if type(v) is not dict or not need <= set(v) <= set(spec):
            raise Invalid(f"members {sorted(v) if type(v) is dict else v!r} are not {sorted(spec)}")
        for k, x in v.items():
            s = spec[k]
            try:
                conform(x, s.spec if type(s) is Opt else s)
            except Invalid as e:
                raise Invalid(f"{k}: {e}") from None
    elif type(spec) is tuple:
        if type(v) is not list or not spec[1] <= len(v) <= spec[2]:
            raise Invalid(f"not an array of {spec[1]} to {spec[2]} items")
        for x in v:
            conform(x, spec[0])
    elif type(spec) is Pair:
        if type(v) is not list or len(v) != 2:
            raise Invalid(f"{v!r} is not a 2-element array")
        conform(v[0], spec.a)
        conform(v[1], spec.b)
    elif type(spec) is range:
        if type(v) is not int or v not in spec:  # excludes bool: type(True) is bool
            raise Invalid(f"{v!r} is not an integer in {spec.start}..{spec.stop - 1}")
    elif type(v) is not str or not spec(v):
        raise Invalid(f"{v!r} breaks its value rule")


def has_cc(s):
    """Unicode category Cc: U+0000..U+001F, U+007F..U+009F."""
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in s)


def nbytes(s):
    return len(s.encode())


def is_path(s):  # 3.1; a leading "/" gives an empty first segment
    bad_segments = {"", ".", ".."} & set(s.split("/"))
    return 1 <= nbytes(s) <= 4096 and not has_cc(s) and "\\" not in s and not bad_segments


def parse_semver(s):
    """SemVer 2.0.0 (3.1): None if s is not a version, else a key that sorts by
    precedence (SemVer 11): numbers; a release above its pre-releases; then
    identifiers, numeric below alphanumeric, a prefix first. No build metadata."""
    num, ids = r"(0|[1-9][0-9]*)", r"([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)"
    m = re.fullmatch(rf"{num}\.{num}\.{num}(?:-{ids})?(?:\+{ids})?", s)
    if not m or max(int(m[1]), int(m[2]), int(m[3])) > U64:
        return None
    pre = m[4].split(".") if m[4] else []
    if any(p.isdigit() and len(p) > 1 and p[0] == "0" for p in pre):
        return None  # numeric pre-release identifiers have no leading zeros
    key = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre)
    return int(m[1]), int(m[2]), int(m[3]), (0, key) if pre else (1,)


def matches(pattern):
    return lambda s: re.fullmatch(pattern, s) is not None


# The value rules of 3.1, and integer ranges (1.1).
is_origin = matches(r"[\x21-\x7e]{1,256}")
is_channel = matches(r"[a-z0-9][a-z0-9._-]{0,63}")
is_digest = matches(r"[0-9a-f]{64}")
is_triple = matches(r"[a-z0-9_.]+(-[a-z0-9_.]+){1,4}")  # 2 to 5 parts
is_product = lambda s: 1 <= nbytes(s) <= 256 and not has_cc(s)  # noqa: E731
is_target = lambda s: nbytes(s) <= 128 and is_triple(s)  # noqa: E731
is_version = lambda s: parse_semver(s) is not None  # noqa: E731
is_compression = lambda s: s in ("none", "zstd")  # noqa: E731
any_string = lambda s: True  # noqa: E731

U8, U16, U32, UINT64 = range(2**8), range(2**16), range(2**32), range(2**64)
TRUST = {"keys": (any_string, 0, U64), "threshold": U32}  # keys: see parse_trust (6.4)
LEAF_REF = {"leaf": UINT64, "offset": UINT64, "length": UINT64}  # 3
FRAME_REF = {"offset": UINT64, "length": UINT64}
RELEASE = {"channel": is_channel, "target": is_target, "version": is_version, "index": LEAF_REF, "head": Opt(UINT64)}
PATCH = {"base": is_digest, "stored_size": range(LISTING_CAP + 1), "stored_sha256": is_digest}  # 3.5
DELTA_REF = {"base": is_digest, "leaf": UINT64, "offset": UINT64, "length": UINT64}
FILE = {  # 3.5: an index listing's file object
    "path": is_path,
    "mode": range(0o7777 + 1),
    "size": UINT64,
    "sha256": is_digest,
    "entry": LEAF_REF,
    "deltas": (DELTA_REF, 0, U64),
}
# 3.5, 13.3: a private listing's file object and delta ref also give the payload key, required there.
PRIVATE_FILE = dict(FILE, key=is_digest, deltas=(dict(DELTA_REF, key=is_digest), 0, U64))
SCHEMAS = {  # 3.2 - 3.12
    "genesis": {"format": range(2, 3), "origin": is_origin, "product": is_product, "trust": TRUST},
    "entry": {
        "size": UINT64,
        "sha256": is_digest,
        "stored_size": UINT64,
        "stored_sha256": is_digest,
        "compression": is_compression,
        "sealed": Opt(LEAF_REF),
    },
    "delta": {
        "base": is_digest,
        "base_size": range(DELTA_CAP + 1),
        "size": range(DELTA_CAP + 1),
        "sha256": is_digest,
        "stored_size": UINT64,
        "stored_sha256": is_digest,
        "sealed": Opt(LEAF_REF),
    },
    "index": {
        "channel": is_channel,
        "target": is_target,
        "version": is_version,
        "files": range(1, 2**64),
        "size": range(LISTING_CAP + 1),
        "sha256": is_digest,
        "stored_size": range(LISTING_CAP + 1),
        "stored_sha256": is_digest,
        "compression": is_compression,
        "previous": Opt(LEAF_REF),
        "patch": Opt(PATCH),
        "sealed": Opt(LEAF_REF),
    },
    "exchange": {"channel": is_channel, "stored_size": range(EXCHANGE_CAP + 1), "stored_sha256": is_digest},
    "manifest": {"releases": (RELEASE, 0, U64), "keys": Opt(LEAF_REF)},
    "keys": {"trust": TRUST, "previous": Opt(LEAF_REF), "rotation": any_string},
    "tile": {"level": range(8), "index": UINT64, "width": range(1, 257)},
    "page": {"level": range(8), "index": UINT64},
    "map": {"size": range(1, 2**64)},
    "seal": {
        "checkpoint": lambda s: nbytes(s) <= CHECKPOINT_CAP,
        "time": UINT64,
        "manifest": FRAME_REF,
        "map": FRAME_REF,
    },
    "proof": {"size": UINT64, "leaves": (UINT64, 0, U64), "nodes": (Pair(range(64), UINT64), 0, U64)},
    "listing": {"size": range(LISTING_CAP + 1), "sha256": is_digest},
}


def increasing(xs):
    return all(a < b for a, b in zip(xs, xs[1:]))


def parse_header(f):
    """Parse and schema-check f's header (3); check its payload length."""
    h = parse_json(f.header)
    kind = h.pop("kind", None)
    if type(kind) is not str or kind not in SCHEMAS:
        raise Invalid(f"missing or unknown kind {kind!r}")
    conform(h, SCHEMAS[kind])
    if "sealed" in h:  # 13.2, 13.3: a sealed payload's length is one some plaintext seals to
        plain = opened_len(h["stored_size"])
        if plain is None:
            raise Invalid(f"stored_size {h['stored_size']} is no length a sealed payload has")
        if kind != "delta" and h["compression"] == "none" and plain != h["size"]:
            raise Invalid("a sealed payload stored as is opens to other than size bytes")
        if "patch" in h:
            raise Invalid("a sealed index has a patch")
    elif kind in ("entry", "index") and h["compression"] == "none":  # 3.3, 3.5
        if (h["size"], h["sha256"]) != (h["stored_size"], h["stored_sha256"]):
            raise Invalid("compression none but size/sha256 differ from the stored ones")
    if kind == "delta" and h["base"] == h["sha256"]:  # 3.4
        raise Invalid("delta base equals its result")
    if kind == "index" and "patch" in h:  # 3.5
        if "previous" not in h or h["patch"]["base"] == h["sha256"]:
            raise Invalid("a patch without previous, or against the listing itself")
    if kind == "manifest":  # 3.6
        if not increasing([(r["channel"].encode(), r["target"].encode()) for r in h["releases"]]):
            raise Invalid("releases not strictly increasing by (channel, target)")
    if kind == "proof" and any(x >= h["size"] for x in h["leaves"]):  # 3.12
        raise Invalid("proof leaf index >= size")
    want = {
        "entry": h.get("stored_size"),
        "delta": h.get("stored_size"),
        "exchange": h.get("stored_size"),
        "index": h.get("stored_size", 0) + h.get("patch", {}).get("stored_size", 0),
        "listing": h.get("size"),
        "tile": 32 * h.get("width", 0),
        "page": 2048,
        "map": map_length(h["size"]) if kind == "map" else 0,
        "proof": 32 * len(h.get("nodes", [])),
    }.get(kind, 0)
    if kind == "index" and f.payload_length == 0:
        f.header_only = True  # 3.13: allowed in partial containers only, followed by a listing frame
    elif f.payload_length != want:
        raise Invalid(f"{kind} payload is {f.payload_length} bytes, not {want}")
    f.kind, f.h = kind, h


def kind_of(f):
    """The kind a frame's header names, if it parses at all (for section 10)."""
    try:
        h = parse_json(f.header)
    except Invalid:
        return None
    return h.get("kind")


# ------------------------------------------------------------- zstd payloads


def zstd_frame_length(buf):
    """RFC 8878 3.1.1: the length of the one zstd frame at the start of buf.
    Raises Invalid for anything else (a skippable frame, a reserved bit or
    block type, a frame cut short)."""
    if len(buf) < 5 or buf[:4] != b"\x28\xb5\x2f\xfd":
        raise Invalid("payload does not start with a zstd frame")
    fhd = buf[4]
    if fhd & 0x08:
        raise Invalid("zstd frame header has its reserved bit set")
    single = fhd >> 5 & 1
    pos = 5 + (1 - single) + (0, 1, 2, 4)[fhd & 3] + (single, 2, 4, 8)[fhd >> 6]
    while True:
        if pos + 3 > len(buf):
            raise Invalid("zstd frame cut short")
        bh = int.from_bytes(buf[pos : pos + 3], "little")
        last, btype, bsize = bh & 1, bh >> 1 & 3, bh >> 3
        if btype == 3:
            raise Invalid("zstd block of the reserved type")
        pos += 3 + (1 if btype == 1 else bsize)
        if last:
            break
    pos += 4 if fhd & 0x04 else 0  # the content checksum
    if pos > len(buf):
        raise Invalid("zstd frame cut short")
    return pos


def unzstd(payload, size, base=None):
    """3.3, 3.4: exactly one complete zstd frame, decompressed (with `base` as
    a raw-content prefix for a delta) into exactly `size` bytes; stops as soon
    as more than `size` bytes come out."""
    if zstd_frame_length(payload) != len(payload):
        raise Invalid("payload is not exactly one zstd frame")
    if base:
        d = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        dctx = zstandard.ZstdDecompressor(dict_data=d, max_window_size=WINDOW_CAP)
    else:
        dctx = zstandard.ZstdDecompressor(max_window_size=WINDOW_CAP)
    out = bytearray()
    try:
        reader = dctx.stream_reader(payload, read_across_frames=False)
        while chunk := reader.read(min(1 << 20, size + 1 - len(out))):
            out += chunk
            if len(out) > size:
                raise Invalid(f"zstd frame decompresses to more than {size} bytes")
    except zstandard.ZstdError as e:
        raise Invalid(f"zstd frame does not decompress: {e}") from None
    return bytes(out)


def stored_payload(data, f):
    """3.3-3.5: the payload (an index's: after its patch), checked against
    stored_size and stored_sha256."""
    skip = f.h.get("patch", {}).get("stored_size", 0) if f.kind == "index" else 0
    p = data[f.payload_offset + skip : f.payload_offset + f.payload_length]
    if len(p) != f.h["stored_size"] or sha256(p).hex() != f.h["stored_sha256"]:
        raise Invalid("payload differs from stored_size/stored_sha256")
    return p


def index_patch(data, f):
    """3.5: an index's patch (the first bytes of its payload), checked against
    patch.stored_size and patch.stored_sha256."""
    p = data[f.payload_offset : f.payload_offset + f.h["patch"]["stored_size"]]
    if len(p) != f.h["patch"]["stored_size"] or sha256(p).hex() != f.h["patch"]["stored_sha256"]:
        raise Invalid("index patch differs from patch.stored_size/stored_sha256")
    return p


def content_of(data, f):
    """3.3, 3.5: an entry's content or an index's listing bytes, checked."""
    p = stored_payload(data, f)
    c = p if f.h["compression"] == "none" else unzstd(p, f.h["size"])
    if len(c) != f.h["size"] or sha256(c).hex() != f.h["sha256"]:
        raise Invalid("content differs from size/sha256")
    return c


def parse_listing(data, f, raw=None):
    """3.5: an index's listing (`raw`, else its payload's): `files` file
    objects, strictly increasing by path, no path a directory of another,
    deltas strictly increasing by base. A private listing's (13.3) give
    every payload's key."""
    f.listing_raw = content_of(data, f) if raw is None else raw
    listing = parse_json(f.listing_raw, list)
    conform(listing, (PRIVATE_FILE if "sealed" in f.h else FILE, f.h["files"], f.h["files"]))
    paths = [x["path"] for x in listing]
    if not increasing([p.encode() for p in paths]):
        raise Invalid("listing not strictly increasing by path")
    present = set(paths)
    for p in paths:
        parts = p.split("/")
        if any("/".join(parts[:i]) in present for i in range(1, len(parts))):
            raise Invalid(f"listing path {p!r} is inside another listed path")
    for x in listing:
        bases = [d["base"] for d in x["deltas"]]
        if not increasing(bases) or x["sha256"] in bases:
            raise Invalid(f"{x['path']}: deltas not strictly increasing by base, or one from itself")
    return listing


# ------------------------------------------------------ 13. private channels


class NotRecipient(Exception):
    """13.1: the identity unwraps no stanza of an exchange."""


def opened_len(n):
    """13.2: the plaintext length of a sealed payload of n bytes, or None if
    no plaintext seals to n bytes (p + 16 * max(1, ceil(p / 65536)))."""
    full, rest = divmod(n, CHUNK + TAG)
    if rest == 0:
        return full * CHUNK if full else None
    if rest < TAG or (rest == TAG and full):  # a chunk too short, or an empty last chunk after full ones
        return None
    return full * CHUNK + rest - TAG


def stream_open(key, sealed):
    """13.2 (and age's payload): the plaintext of 64 KiB ChaCha20-Poly1305
    chunks under `key`, nonce u88be(n) || last flag, no associated data."""
    if opened_len(len(sealed)) is None:
        raise Invalid(f"{len(sealed)} bytes is no length a sealed payload has")
    aead, out, n, pos = ChaCha20Poly1305(key), bytearray(), 0, 0
    while True:
        last = len(sealed) - pos <= CHUNK + TAG
        piece = sealed[pos : pos + CHUNK + TAG]
        try:
            out += aead.decrypt(n.to_bytes(11, "big") + bytes([last]), piece, None)
        except InvalidTag:
            raise Invalid(f"sealed chunk {n} does not authenticate (tampered, or another key)") from None
        if last:
            return bytes(out)
        pos, n = pos + CHUNK + TAG, n + 1


def hkdf(ikm, info, salt=None):
    """RFC 5869 HKDF-SHA256, 32 bytes (an absent salt is 32 zero bytes)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def hmac_sha256(key, msg):
    m = hmac.HMAC(key, hashes.SHA256())
    m.update(msg)
    return m.finalize()


def payload_key(k, leaf):  # 13.1 PK(K, i)
    return hkdf(k, b"dare/v2 payload key" + leaf.to_bytes(8, "big"))


def keyed_digest(k, digest):  # 13.1 KD(K, d), as hex
    return hmac_sha256(hkdf(k, b"dare/v2 digest key"), digest).hex()


BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def bech32_decode(s):
    """BIP 173 Bech32 (age's keys: no length limit): (hrp, bytes); raises
    ValueError. All one case; the checksum constant is 1."""
    if s.lower() != s and s.upper() != s:
        raise ValueError("mixed case")
    s = s.lower()
    pos = s.rfind("1")
    if pos < 1 or pos + 7 > len(s):
        raise ValueError("no separator or checksum")
    hrp, data = s[:pos], [BECH32.find(c) for c in s[pos + 1 :]]
    if -1 in data or any(not 33 <= ord(c) <= 126 for c in hrp):
        raise ValueError("a character outside the Bech32 alphabet")
    chk = 1
    for v in [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + data:
        top, chk = chk >> 25, (chk & 0x1FFFFFF) << 5 ^ v
        for i, g in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)):
            chk ^= g if top >> i & 1 else 0
    if chk != 1:
        raise ValueError("bad checksum")
    acc, bits, out = 0, 0, bytearray()
    for v in data[:-6]:  # 5-bit groups to bytes; the padding must be fewer than 5 zero bits
        acc, bits = acc << 5 | v, bits + 5
        if bits >= 8:
            bits -= 8
            out.append(acc >> bits & 0xFF)
    if bits >= 5 or acc & ((1 << bits) - 1):
        raise ValueError("bad padding")
    return hrp, bytes(out)


def read_identities(path):
    """13.1: the X25519 identities of an identity file (AGE-SECRET-KEY-1...
    lines; blank lines and lines starting with # skipped)."""
    ids = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            hrp, key = bech32_decode(line)
        except ValueError as e:
            raise ValueError(f"an identity line that is not Bech32: {e}") from None
        if hrp != "age-secret-key-" or len(key) != 32:
            raise ValueError(f"not an age X25519 identity (AGE-SECRET-KEY-1...): {line[:16]}...")
        ids.append(X25519PrivateKey.from_private_bytes(key))
    if not ids:
        raise ValueError("no AGE-SECRET-KEY-1... line")
    return ids


def b64_unpadded(s):
    """age's base64: standard alphabet, no padding, canonical."""
    if not re.fullmatch(r"[A-Za-z0-9+/]*", s) or len(s) % 4 == 1:
        raise Invalid("age header: not unpadded base64")
    raw = base64.b64decode(s + "=" * (-len(s) % 4))
    if base64.b64encode(raw).decode().rstrip("=") != s:
        raise Invalid("age header: non-canonical base64")
    return raw


def age_decrypt(data, ids):
    """The C2SP age v1 format, X25519 recipients: the plaintext of the age
    file `data` for the first identity in `ids` that unwraps a stanza.
    Raises NotRecipient if none does, Invalid for a malformed file."""
    lines, pos = [], 0
    while True:  # the header: text lines up to and including the "---" line
        end = data.find(b"\n", pos)
        if end < 0:
            raise Invalid("age header: no MAC line")
        try:
            line = data[pos:end].decode("ascii")
        except UnicodeDecodeError:
            raise Invalid("age header: not ASCII") from None
        lines.append((pos, line))
        pos = end + 1
        if line.startswith("---"):
            break
    if lines[0][1] != "age-encryption.org/v1":
        raise Invalid("not an age v1 file")
    stanzas, i = [], 1
    while i < len(lines) - 1:
        head = lines[i][1]
        if not head.startswith("-> "):
            raise Invalid("age header: a line that starts no stanza")
        args, body, i = head[3:].split(" "), "", i + 1
        if any(not a for a in args):
            raise Invalid("age header: an empty stanza argument")
        while True:  # body lines of 64 columns; the last one shorter (maybe empty)
            if i >= len(lines) - 1:
                raise Invalid("age header: a stanza body that does not end")
            part, i = lines[i][1], i + 1
            if len(part) > 64:
                raise Invalid("age header: a stanza body line longer than 64 columns")
            body += part
            if len(part) < 64:
                break
        stanzas.append((args, b64_unpadded(body)))
    mac_at, mac_line = lines[-1]
    if not mac_line.startswith("--- "):
        raise Invalid("age header: a bad MAC line")
    mac = b64_unpadded(mac_line[4:])
    if len(mac) != 32:
        raise Invalid("age header: the MAC is not 32 bytes")
    file_key = None
    for args, body in stanzas:
        if args[0] != "X25519":
            continue  # another recipient type
        if len(args) != 2 or len(body) != 32:
            raise Invalid("age header: a malformed X25519 stanza")
        share = b64_unpadded(args[1])
        if len(share) != 32:
            raise Invalid("age header: an X25519 share that is not 32 bytes")
        for ident in ids:
            ours = ident.public_key().public_bytes_raw()
            shared = ident.exchange(X25519PublicKey.from_public_bytes(share))
            if shared == bytes(32):
                raise Invalid("age header: an X25519 share of low order")
            wrap = hkdf(shared, b"age-encryption.org/v1/X25519", salt=share + ours)
            try:
                file_key = ChaCha20Poly1305(wrap).decrypt(bytes(12), body, None)
            except InvalidTag:
                continue
            break
        if file_key is not None:
            break
    if file_key is None:
        raise NotRecipient("the identity unwraps no stanza of this age file")
    header = data[: mac_at + 3]  # up to and including "---"
    if hmac_sha256(hkdf(file_key, b"header", salt=b""), header) != mac:
        raise Invalid("age header: the MAC does not verify")
    nonce = data[pos : pos + 16]
    if len(nonce) != 16:
        raise Invalid("age payload: no 16-byte nonce")
    return stream_open(hkdf(file_key, b"payload", salt=nonce), data[pos + 16 :])


# ------------------------------------------------ 6. keys, notes, checkpoints

P = 2**255 - 19
ED_D = -121665 * pow(121666, P - 2, P) % P
ED_L = 2**252 + 27742317777372353535851937790883648493


def decode_point(b):
    """RFC 8032 5.1.3: (x, y), or None if b is no canonical curve point."""
    y = int.from_bytes(b, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= P:
        return None
    u, v = (y * y - 1) % P, (ED_D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if v * x * x % P == (-u) % P:
        x = x * pow(2, (P - 1) // 4, P) % P
    if v * x * x % P != u or (x == 0 and sign):
        return None
    return (P - x if x & 1 != sign else x), y


def small_order(pt):
    """[8]P is the identity (doubling with the complete Edwards addition law)."""
    for _ in range(3):
        (x, y), t = pt, ED_D * pt[0] ** 2 * pt[1] ** 2 % P
        pt = (2 * x * y * pow(1 + t, P - 2, P) % P, (y * y + x * x) * pow(1 - t, P - 2, P) % P)
    return pt == (0, 1)


def valid_key_name(s):  # 6.1; str.isspace is White_Space plus some Cc characters
    return s != "" and "+" not in s and not has_cc(s) and not any(c.isspace() for c in s)


def canonical_b64(s):
    """1: standard alphabet with padding, canonical (decode + encode = s)."""
    try:
        raw = base64.b64decode(s.encode("ascii"), validate=True)
    except ValueError:  # binascii.Error and UnicodeEncodeError are ValueErrors
        raise Invalid(f"bad base64 {s!r}") from None
    if base64.b64encode(raw).decode() != s:
        raise Invalid(f"non-canonical base64 {s!r}")
    return raw


def canonical_u64(s):
    """1: decimal with no sign and no leading zeros, at most 2^64-1."""
    if not re.fullmatch(r"0|[1-9][0-9]*", s) or int(s) > U64:
        raise Invalid(f"bad decimal {s!r}")
    return int(s)


def key_id(name, pub):
    """6.1: the first 4 bytes of H(name || 0x0A || 0x01 || public key)."""
    return sha256(name.encode(), b"\n\x01", pub)[:4].hex()


def parse_verifier_key(text):
    """6.1: name+hexid+base64(0x01 || public key) -> (name, key id, public key)."""
    name, _, rest = text.partition("+")
    hexid, _, b64 = rest.partition("+")
    if not valid_key_name(name) or not re.fullmatch(r"[0-9a-f]{8}", hexid):
        raise Invalid(f"bad verifier key {text!r}")
    data = canonical_b64(b64)
    if len(data) != 33 or data[0] != 1:
        raise Invalid(f"verifier key {text!r} is not 0x01 and 32 bytes")
    point = decode_point(data[1:])
    if point is None or small_order(point):
        raise Invalid(f"verifier key {text!r} is not a valid point of large order")
    if key_id(name, data[1:]) != hexid:
        raise Invalid(f"verifier key {text!r} has the wrong key id")
    return name, hexid, data[1:]


def parse_trust(t):
    """6.4: distinct keys; 1 <= threshold <= number of keys."""
    keys = [parse_verifier_key(k) for k in t["keys"]]
    if len({k[:2] for k in keys}) != len(keys) or len({k[2] for k in keys}) != len(keys):
        raise Invalid("trust root has two keys with the same name and id, or public key")
    if not 1 <= t["threshold"] <= len(keys):
        raise Invalid("trust root threshold out of range")
    return keys, t["threshold"]


def fingerprint(t):
    """6.4: H(decimal(threshold) \\n k_1 \\n ... k_n \\n), keys sorted by bytes."""
    keys = sorted(k.encode() for k in t["keys"])
    return sha256(str(t["threshold"]).encode(), b"\n", b"".join(k + b"\n" for k in keys)).hex()


def verify_strict(pub, sig, msg):
    """6.2 step 2: RFC 8032, rejecting S >= L and a non-canonical or small-order R."""
    r = decode_point(sig[:32])
    if r is None or small_order(r) or int.from_bytes(sig[32:], "little") >= ED_L:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
        return True
    except InvalidSignature:
        return False


def parse_note(note):
    """6.2: (text, [(name, key id hex, signature bytes)])."""
    if nbytes(note) > NOTE_CAP or any(c < " " and c != "\n" for c in note):
        raise Invalid("note too long or has a control character")
    cut = note.rfind("\n\n")  # the text ends with the \n before the last \n\n
    if cut < 0 or not note.endswith("\n") or cut + 2 == len(note):
        raise Invalid("note has no signature lines or does not end with a newline")
    text, lines = note[: cut + 1], note[cut + 2 : -1].split("\n")
    if len(lines) > 100:
        raise Invalid("note has more than 100 signature lines")
    sigs = []
    for line in lines:
        m = re.fullmatch(r"\u2014 ([^ ]+) ([^ ]+)", line)
        if not m or not valid_key_name(m[1]) or len(blob := canonical_b64(m[2])) < 5:
            raise Invalid(f"bad signature line {line!r}")
        sigs.append((m[1], blob[:4].hex(), blob[4:]))
    return text, sigs


def verify_note(note, roots):
    """6.2: parse a signed note, check it against every (keys, threshold) in
    `roots`, and return its text."""
    text, sigs = parse_note(note)
    for keys, threshold in roots:
        good = set()
        for name, kid, sig in sigs:
            for kname, kkid, pub in keys:
                if (name, kid) == (kname, kkid):  # lines of other keys are ignored
                    if len(sig) != 64 or not verify_strict(pub, sig, text.encode()):
                        raise Invalid(f"invalid signature by {name}")
                    good.add(pub)  # a key counts once
        if len(good) < threshold:
            raise Invalid(f"{len(good)} valid signature(s), threshold {threshold}")
    return text


def parse_checkpoint(text):
    """6.3: (origin, size, root, time); `time N` is the first extension line."""
    lines = text[:-1].split("\n")
    if len(lines) < 3 or "" in lines:
        raise Invalid("checkpoint needs origin, size and root lines, none empty")
    if len(root := canonical_b64(lines[2])) != 32:
        raise Invalid("checkpoint root is not 32 bytes")
    timed = [x for x in lines[3:] if x == "time" or x.startswith("time ")]
    if len(lines) < 4 or not lines[3].startswith("time ") or len(timed) != 1:
        raise Invalid("checkpoint time line missing, misplaced or repeated")
    return lines[0], canonical_u64(lines[1]), root, canonical_u64(lines[3][5:])


# ------------------------------------------------------ 4, 5. Merkle tree


def node_hash(a, b):
    return sha256(b"\x01", a, b)


def split(n):
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def frontier_nodes(n):
    """4: (height, index) of the frontier of tree n, largest first."""
    return [(h, (n >> h) - 1) for h in range(63, -1, -1) if n >> h & 1]


class Tree:
    """RFC 9162 section 2.1 over the leaf hashes seen so far."""

    def __init__(self):
        self.leaves, self.cache = [], {}

    def mth(self, lo, hi):
        """MTH(D[lo:hi]); complete subtrees are cached (they never change)."""
        n = hi - lo
        if n == 1:
            return self.leaves[lo]
        if (lo, hi) in self.cache:
            return self.cache[(lo, hi)]
        h = node_hash(self.mth(lo, lo + split(n)), self.mth(lo + split(n), hi))
        if n & (n - 1) == 0:
            self.cache[(lo, hi)] = h
        return h

    def node(self, h, k):
        """4: node(h, k), the root of leaves [k 2^h, (k+1) 2^h)."""
        return self.mth(k << h, (k + 1) << h)

    def subproof(self, m, lo, hi, b):
        """SUBPROOF(m, D[lo:hi], b) (RFC 9162 2.1.4.1); PROOF is b = True."""
        if m == hi - lo:
            return [] if b else [self.mth(lo, hi)]
        k = split(hi - lo)
        if m <= k:
            return self.subproof(m, lo, lo + k, b) + [self.mth(lo + k, hi)]
        return self.subproof(m - k, lo + k, hi, False) + [self.mth(lo, lo + k)]


def verify_inclusion(m, n, leaf, proof, root):
    """RFC 9162 2.1.3.2, as written out in section 4."""
    fn, sn, x = m, n - 1, leaf
    for c in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            x = node_hash(c, x)
            while fn & 1 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            x = node_hash(x, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and x == root


def verify_consistency(m, n, old, new, proof):
    """RFC 9162 2.1.4.2, for 0 < m < n."""
    if not proof:
        return False
    if m & (m - 1) == 0:
        proof = [old] + proof
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn & 1 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old and sr == new and sn == 0


def map_slots(n):
    """5.2: the slots of the map of tree n, in order: ("page", L, P) or
    ("tile", L, N, W)."""
    slots = []
    for lvl in range(8):
        m = n >> (8 * lvl)
        if m == 0:
            break
        full = m // 256
        slots += [("page", lvl, p) for p in range(full // 256)]
        slots += [("tile", lvl, 256 * (full // 256) + i, 256) for i in range(full % 256)]
        if m % 256:
            slots.append(("tile", lvl, full, m % 256))
    return slots


def map_length(n):
    """5.2: 32 popcount(n-1) + 8 S."""
    return 32 * bin(n - 1).count("1") + 8 * len(map_slots(n))


def tile_path(level, index, width):
    """5: the C2SP path of a tile (for messages)."""
    groups = f"{index:d}"
    groups = groups.zfill((len(groups) + 2) // 3 * 3)
    parts = [groups[i : i + 3] for i in range(0, len(groups), 3)]
    name = "/".join("x" + p for p in parts[:-1]) + ("/" if len(parts) > 1 else "") + parts[-1]
    return f"tile/{level}/{name}" + (f".p/{width}" if width < 256 else "")


# ------------------------------------------------------ 7, 8, 11. verification


class Verifier:
    """Checks the frames of the sealed part in file order (8.2; 11 for
    partial containers)."""

    def __init__(self, data, partial, ids=None, extract=None):
        self.data, self.partial = data, partial
        # 13: the identities to open exchanges with, and where to write what private listings name
        self.ids, self.extract = ids, extract
        self.fresh_exchanges = {}  # channel -> its exchange frame since the last seal (3.14)
        self.content_keys = {}  # exchange frame index -> K, or None when the identity is not a recipient
        self.private = {}  # plaintext sha256 hex -> (entry frame, payload key), from opened listings
        self.tree = Tree()  # full containers: every leaf hash
        self.stats = Counter()
        self.genesis = self.roots = None  # genesis header; trust root in effect
        self.seg = []  # frames since the previous seal
        self.prev = None  # the previous seal's (size, root, time)
        self.manifest = None  # the last manifest frame
        self.map = None  # the last map frame
        self.leaf_count = 0
        self.by_leaf = {}  # full: leaf index -> frame
        self.contents = {}  # sha256 hex -> entry frames holding that content
        # 7.1, 7.4 (full containers)
        self.latest = {}  # (channel, target) -> (version, index ref), now
        self.sealed_latest = {}  # the same, as of the previous seal
        self.release_keys = set()  # (channel, target) of this release's indexes
        self.named = set()  # leaves of entries and deltas named by this release's indexes
        self.named_before = set()  # leaves of entries named by earlier indexes
        self.keys_ref = None  # the last keys leaf so far
        # 5, 8.2 steps 6, 10: checked tile and page frames, by payload offset
        self.tiles = {}  # -> (level, index, width)
        self.pages = {}  # -> (level, index)
        self.computed = {}  # partial: (height, index) -> hash, from the last root recomputation
        self.frontier = {}  # partial: (height, index) -> hash, frontier of the previous seal's tree
        self.awaiting = None  # partial: an index without its payload, before its listing frame (3.13)

    def run(self, frames):
        for f in frames:
            try:
                if (f.index == 0) != (f.kind == "genesis"):
                    raise Invalid("frame 0 must be the genesis, and no other frame")
                if f.kind in (FULL_ONLY if self.partial else PARTIAL_ONLY):
                    raise Invalid(f"a {f.kind} frame in a {'partial' if self.partial else 'full'} container")
                if self.awaiting and f.kind != "listing":  # 3.13
                    raise Invalid("an index without its payload is not followed by a listing frame", self.awaiting)
                if f.kind in LEAF_KINDS and not self.partial:
                    f.leaf, self.leaf_count = self.leaf_count, self.leaf_count + 1
                    self.by_leaf[f.leaf] = f
                    self.tree.leaves.append(sha256(b"\x00", f.header))  # 4: leaf hash
                if handler := getattr(self, "on_" + f.kind, None):
                    handler(f)
                self.stats[f.kind] += 1
                if f.kind == "seal":
                    self.seg = []
                else:
                    self.seg.append(f)
            except Invalid as e:
                g = e.frame or f
                raise Bad(g.index, g.offset, str(e)) from None
        if self.prev is None:
            raise Bad(len(frames), frames[-1].offset + frames[-1].length, "no seal")
        return self.prev

    # ---- leaves

    def on_genesis(self, f):  # 3.2
        self.genesis, self.roots = f.h, parse_trust(f.h["trust"])
        self.trust_dict, self.last_keys = f.h["trust"], None

    def on_exchange(self, f):  # 3.14, 13.1
        if f.h["channel"] in self.fresh_exchanges:
            raise Invalid(f"a second exchange of channel {f.h['channel']} between two seals")
        self.fresh_exchanges[f.h["channel"]] = f
        payload = stored_payload(self.data, f)
        if self.ids is None:
            return
        try:
            k = age_decrypt(payload, self.ids)
        except NotRecipient:
            self.content_keys[f.index] = None
            self.stats["exchange-not-recipient"] += 1
            return
        if len(k) != 32:
            raise Invalid(f"the exchange's plaintext is {len(k)} bytes, not a 32-byte content key")
        self.content_keys[f.index] = k
        self.stats["exchange-opened"] += 1

    def exchange_of(self, f, channel=None):
        """13.3: the exchange leaf f's `sealed` names exactly (an earlier
        one; an index's: its channel's since the last seal). A partial
        container's leaf numbers are known at its seal only: there the
        reader takes a private frame as it is (see the report)."""
        x = f.h["sealed"]
        if self.partial:
            return None
        g = self.by_leaf.get(x["leaf"])
        if g is None or g.kind != "exchange" or (g.offset, g.length) != (x["offset"], x["length"]):
            raise Invalid(f"sealed names no earlier exchange leaf exactly: {x}")
        if channel is not None and self.fresh_exchanges.get(channel) is not g:
            raise Invalid(f"a private index of {channel} names an exchange not of its channel's release")
        return g

    def content_key(self, g):
        """K of the exchange frame g, if the identity opened it."""
        return None if g is None else self.content_keys.get(g.index)

    def on_entry(self, f):  # 3.3
        if "sealed" in f.h:  # 13.3: the stored bytes only; key holders check the rest through a listing
            stored_payload(self.data, f)
            f.exchange = self.exchange_of(f)
            self.stats["entry-sealed"] += 1
            return
        content = content_of(self.data, f)
        self.contents.setdefault(f.h["sha256"], []).append(f)
        self.stats["entry-zstd" if f.h["compression"] == "zstd" else "entry-none"] += 1
        del content

    def base_content(self, sha, size):
        """The content of an earlier entry with this sha256 and size, or None."""
        g = next((g for g in self.contents.get(sha, []) if g.h["size"] == size), None)
        return None if g is None else content_of(self.data, g)

    def on_delta(self, f):  # 3.4
        h = f.h
        p = stored_payload(self.data, f)
        if "sealed" in h:  # 13.3: base and result are checked by key holders, through a listing
            f.exchange = self.exchange_of(f)
            self.stats["delta-sealed"] += 1
            return
        base = self.base_content(h["base"], h["base_size"])
        has_result = any(g.h["size"] == h["size"] for g in self.contents.get(h["sha256"], []))
        if not self.partial and (base is None or not has_result):
            raise Invalid("delta: no earlier entry holds its base, or its result")
        if base is None:
            self.stats["delta-unapplied"] += 1  # 11 step 6: only the stored bytes
            return
        out = unzstd(p, h["size"], base)
        if len(out) != h["size"] or sha256(out).hex() != h["sha256"]:
            raise Invalid("delta applied to its base differs from size/sha256")
        self.stats["delta-applied"] += 1

    def on_index(self, f):  # 3.5; 7.1 in full containers
        sealed = "sealed" in f.h
        if f.header_only:
            if not self.partial:
                raise Invalid(f"index payload is 0 bytes, not {f.h['stored_size']} (a full container)")
            if sealed:
                raise Invalid("a private index without its payload (13.3: a replica keeps the whole frame)")
            self.awaiting = f  # 3.13: its listing frame comes next
            return
        if sealed:
            stored_payload(self.data, f)
            self.stats["index-sealed"] += 1
            f.listing = self.open_listing(f, self.exchange_of(f, f.h["channel"]))
        else:
            f.listing = parse_listing(self.data, f)
        if f.listing is not None:
            self.stats["files"] += len(f.listing)
        if self.partial:
            if "patch" in f.h:
                index_patch(self.data, f)  # its base (the previous listing) may be absent
            return  # 11 step 4, at the seal
        h, key = f.h, (f.h["channel"], f.h["target"])
        if key in self.release_keys:
            raise Invalid(f"a second index of {key} in one release")  # 7.1.1
        prev = self.sealed_latest.get(key)  # 7.1.2
        if prev is not None:
            if parse_semver(h["version"]) <= parse_semver(prev[0]):
                raise Invalid(f"version {h['version']} of {key} is not newer than {prev[0]}")
            if h.get("previous") != prev[1]:
                raise Invalid(f"previous is not the index of {key} {prev[0]}, {prev[1]}")
        elif "previous" in h:
            raise Invalid(f"previous given for the first index of {key}")
        if "patch" in f.h:  # 3.5, 7.1.2: the patch applied to the previous listing gives this one
            base = self.by_leaf[prev[1]["leaf"]]
            if f.h["patch"]["base"] != base.h["sha256"]:
                raise Invalid("patch.base is not the previous index's sha256")
            out = unzstd(index_patch(self.data, f), f.h["size"], base.listing_raw)
            if out != f.listing_raw:
                raise Invalid("the patch applied to the previous listing is not this listing")
            self.stats["index-patches"] += 1
        if sealed:
            if f.listing is not None:
                self.check_private_listing(f)
        else:
            self.check_listing(f)
        self.release_keys.add(key)
        head = f.payload_offset - f.offset + h["patch"]["stored_size"] if "patch" in h else None  # 3.6
        self.latest[key] = (h["version"], f.ref(), head)

    def check_listing(self, f):
        """7.1.3, 7.1.4: a plain listing names earlier plain entries and deltas."""
        for x in f.listing:
            e = x["entry"]
            g = self.by_leaf.get(e["leaf"])
            if g is None or g.kind != "entry" or (g.offset, g.length) != (e["offset"], e["length"]):
                raise Invalid(f"{x['path']}: entry ref {e} is not an earlier entry frame")
            if "sealed" in g.h:
                raise Invalid(f"{x['path']}: a plain listing names the private entry at leaf {g.leaf}")
            if (g.h["size"], g.h["sha256"]) != (x["size"], x["sha256"]):
                raise Invalid(f"{x['path']}: the entry at leaf {g.leaf} holds another content")
            self.stats["files-shared" if g.leaf in self.named_before or g.leaf in self.named else "files-new"] += 1
            self.named.add(g.leaf)
            for d in x["deltas"]:
                g = self.by_leaf.get(d["leaf"])
                if g is None or g.kind != "delta" or (g.offset, g.length) != (d["offset"], d["length"]):
                    raise Invalid(f"{x['path']}: delta ref {d} is not an earlier delta frame")
                if "sealed" in g.h:
                    raise Invalid(f"{x['path']}: a plain listing names the private delta at leaf {g.leaf}")
                if (g.h["base"], g.h["sha256"]) != (d["base"], x["sha256"]):
                    raise Invalid(f"{x['path']}: the delta at leaf {g.leaf} has another base or result")
                self.named.add(g.leaf)
                self.stats["delta-refs"] += 1

    def open_listing(self, f, xf):
        """13.3: a private index's listing, opened under PK(K, leaf) when the
        identity opened its exchange `xf`; else None."""
        k = self.content_key(xf)
        if k is None:
            return None
        plain = stream_open(payload_key(k, f.leaf), stored_payload(self.data, f))
        raw = plain if f.h["compression"] == "none" else unzstd(plain, f.h["size"])
        if len(raw) != f.h["size"] or keyed_digest(k, sha256(raw)) != f.h["sha256"]:
            raise Invalid("the opened listing differs from size / the keyed digest sha256")
        self.stats["listing-opened"] += 1
        return parse_listing(self.data, f, raw)

    def open_entry(self, g, key, size, sha):
        """13.3: the content of the private entry g, opened under `key`,
        checked against the listing's plaintext size and sha256 (and, when
        its release's K is known, the header's keyed digest)."""
        if g.h["size"] != size:
            raise Invalid(f"the private entry at leaf {g.leaf} holds {g.h['size']} bytes, not {size}")
        k = self.content_key(g.exchange)
        if k is not None and keyed_digest(k, bytes.fromhex(sha)) != g.h["sha256"]:
            raise Invalid(f"the private entry at leaf {g.leaf}: its sha256 is not KD(K, the listing's sha256)", g)
        try:
            plain = stream_open(bytes.fromhex(key), stored_payload(self.data, g))
            content = plain if g.h["compression"] == "none" else unzstd(plain, size)
        except Invalid as e:
            raise Invalid(f"the private entry at leaf {g.leaf}: {e}", g) from None
        if len(content) != size or sha256(content).hex() != sha:
            raise Invalid(f"the private entry at leaf {g.leaf} opens to another content than the listing's", g)
        return content

    def check_private_listing(self, f):
        """13.3 with K: every entry and delta a private listing names is a
        private one, opens under its key and gives the file's content."""
        for x in f.listing:
            e = x["entry"]
            g = self.by_leaf.get(e["leaf"])
            if g is None or g.kind != "entry" or (g.offset, g.length) != (e["offset"], e["length"]):
                raise Invalid(f"{x['path']}: entry ref {e} is not an earlier entry frame")
            if "sealed" not in g.h:
                raise Invalid(f"{x['path']}: a private listing names the plain entry at leaf {g.leaf}")
            content = self.open_entry(g, x["key"], x["size"], x["sha256"])
            self.private.setdefault(x["sha256"], (g, x["key"]))
            self.stats["files-opened"] += 1
            self.stats["files-shared" if g.leaf in self.named_before or g.leaf in self.named else "files-new"] += 1
            self.named.add(g.leaf)
            if self.extract is not None:
                h = f.h
                out = Path(self.extract, h["channel"], h["target"], h["version"], x["path"])
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(content)
            for d in x["deltas"]:
                g = self.by_leaf.get(d["leaf"])
                if g is None or g.kind != "delta" or (g.offset, g.length) != (d["offset"], d["length"]):
                    raise Invalid(f"{x['path']}: delta ref {d} is not an earlier delta frame")
                if "sealed" not in g.h:
                    raise Invalid(f"{x['path']}: a private listing names the plain delta at leaf {g.leaf}")
                k = self.content_key(g.exchange)
                if k is not None and (g.h["base"], g.h["sha256"]) != (
                    keyed_digest(k, bytes.fromhex(d["base"])),
                    keyed_digest(k, bytes.fromhex(x["sha256"])),
                ):
                    raise Invalid(f"{x['path']}: the delta at leaf {g.leaf} has another base or result", g)
                if g.h["size"] != x["size"]:
                    raise Invalid(f"{x['path']}: the delta at leaf {g.leaf} makes {g.h['size']} bytes", g)
                self.named.add(g.leaf)
                self.stats["delta-refs"] += 1
                base = self.private.get(d["base"])
                if base is None:  # its base is in a release this identity cannot read
                    self.stats["delta-unapplied"] += 1
                    continue
                base_content = self.open_entry(base[0], base[1], base[0].h["size"], d["base"])
                if len(base_content) != g.h["base_size"]:
                    raise Invalid(f"{x['path']}: the delta at leaf {g.leaf} has another base size", g)
                try:
                    patch = stream_open(bytes.fromhex(d["key"]), stored_payload(self.data, g))
                    out = unzstd(patch, x["size"], base_content)
                except Invalid as e:
                    raise Invalid(f"the private delta at leaf {g.leaf}: {e}", g) from None
                if out != content:
                    raise Invalid(f"{x['path']}: the delta at leaf {g.leaf} applied to its base is not the file", g)
                self.stats["delta-applied"] += 1

    def on_listing(self, f):  # 3.13
        idx, self.awaiting = self.awaiting, None
        if idx is None:
            raise Invalid("a listing frame not right after an index without its payload")
        if (f.h["size"], f.h["sha256"]) != (idx.h["size"], idx.h["sha256"]):
            raise Invalid("listing size/sha256 differ from its index's")
        raw = self.data[f.payload_offset : f.payload_offset + f.payload_length]
        if sha256(raw).hex() != f.h["sha256"]:
            raise Invalid("listing payload differs from its sha256")
        idx.listing = parse_listing(self.data, idx, raw)
        self.stats["files"] += len(idx.listing)

    def on_manifest(self, f):  # 7.4
        self.manifest = f
        if self.partial:
            return
        order = sorted(self.latest, key=lambda k: (k[0].encode(), k[1].encode()))
        want = {"releases": []}
        for c, t in order:
            version, ref, head = self.latest[(c, t)]
            want["releases"].append({"channel": c, "target": t, "version": version, "index": ref})
            if head is not None:
                want["releases"][-1]["head"] = head
        if self.keys_ref is not None:
            want["keys"] = self.keys_ref
        if f.h != want:
            raise Invalid("manifest differs from the one recomputed from the indexes and keys")

    def on_keys(self, f):  # 3.7
        if any(g.kind == "keys" for g in self.seg):
            raise Invalid("more than one keys frame between two seals")
        new = f.h["trust"]
        parse_trust(new)
        # 3.7: it names the keys leaf before it (a replica may not hold that one).
        if not self.partial and f.h.get("previous") != self.last_keys:
            raise Invalid("the keys leaf does not name the keys leaf before it")
        # 6.5: the rotation note, signed by the root in effect and the new one.
        text = verify_note(f.h["rotation"], [self.roots, parse_trust(new)])
        origin = self.genesis["origin"]
        if text != f"dare-rotation/v1\n{origin}\nfrom {fingerprint(self.trust_dict)}\nto {fingerprint(new)}\n":
            raise Invalid("the rotation note's text is not the rotation of the root in effect to the new one")
        self.last_keys = f.ref()
        if not self.partial:
            self.keys_ref = f.ref()

    # ---- non-leaves

    def on_map(self, f):
        self.map = f

    def on_proof(self, f):
        if any(g.kind == "proof" for g in self.seg):
            raise Invalid("more than one proof frame before a seal")

    def on_seal(self, f):
        """8.2 steps 2, 5, 8, 9 and 8.3; then per container kind."""
        h, keys = f.h, [g for g in self.seg if g.kind == "keys"]
        roots = [self.roots] + [parse_trust(g.h["trust"]) for g in keys]  # 8.3: both roots
        text = verify_note(h["checkpoint"], roots)
        origin, n, root, t = parse_checkpoint(text)
        if origin != self.genesis["origin"]:
            raise Invalid(f"checkpoint origin {origin!r} is not the genesis origin")
        if t != h["time"] or (self.prev and t < self.prev[2]):
            raise Invalid("seal time differs from the checkpoint's, or goes back")
        if self.manifest is None or h["manifest"]["length"] != self.manifest.length:
            raise Invalid("seal.manifest.length is not the last manifest frame's length")
        (self.seal_partial if self.partial else self.seal_full)(f, n, root)
        if self.prev and (n, root) == self.prev[:2]:
            self.stats["heartbeat"] += 1
        self.roots, self.prev = roots[-1], (n, root, t)
        if keys:
            self.trust_dict = keys[-1].h["trust"]
        self.sealed_latest = dict(self.latest)
        self.fresh_exchanges = {}
        self.named_before |= self.named
        self.release_keys, self.named = set(), set()

    def seal_full(self, f, n, root):
        """8.2 steps 3, 4, 6, 7, 10, 11."""
        h, m, tree = f.h, self.manifest, self.tree
        for g in self.seg:  # step 3 (7.2)
            if g.kind not in ("entry", "delta") or ("sealed" in g.h and self.content_key(g.exchange) is None):
                continue  # 13.3: who names a private payload is known to key holders only
            if g.leaf not in self.named:
                raise Invalid(f"{g.kind} at leaf {g.leaf} is named by no index of its release", g)
        if n != len(tree.leaves) or n < 2:
            raise Invalid(f"checkpoint size {n} is not the {len(tree.leaves)} leaves before the seal")
        if m.leaf != n - 1 or h["manifest"]["offset"] != m.offset:  # step 4
            raise Invalid("the last leaf is not the manifest seal.manifest names")
        if tree.mth(0, n) != root:  # step 7
            raise Invalid("checkpoint root differs from the tree of the leaves")
        for g in self.seg:  # step 6: tiles (5)
            if g.kind == "tile":
                lvl, idx, w = g.h["level"], g.h["index"], g.h["width"]
                if idx * 256 + w > n >> (8 * lvl):
                    raise Invalid(f"{tile_path(lvl, idx, w)} is not complete in tree {n}", g)
                want = b"".join(tree.node(8 * lvl, j) for j in range(idx * 256, idx * 256 + w))
                if self.data[g.payload_offset : g.payload_offset + 32 * w] != want:
                    raise Invalid(f"{tile_path(lvl, idx, w)} differs from tree {n}", g)
                self.tiles[g.payload_offset] = (lvl, idx, w)
        for g in self.seg:  # step 6: pages (5.1)
            if g.kind == "page":
                lvl, idx = g.h["level"], g.h["index"]
                raw = self.data[g.payload_offset : g.payload_offset + 2048]
                for i in range(256):
                    off = int.from_bytes(raw[8 * i : 8 * i + 8], "big")
                    if self.tiles.get(off) != (lvl, idx * 256 + i, 256):
                        raise Invalid(f"page ({lvl}, {idx}) slot {i} is not the payload of its full tile", g)
                self.pages[g.payload_offset] = (lvl, idx)
        mp = self.map  # step 10
        if mp is None or (h["map"]["offset"], h["map"]["length"]) != (mp.offset, mp.length):
            raise Invalid("seal.map is not the last map frame")
        if mp.h["size"] != n:
            raise Invalid(f"the map describes tree {mp.h['size']}, not {n}", mp)
        raw = self.data[mp.payload_offset : mp.payload_offset + mp.payload_length]
        want = b"".join(tree.node(ht, k) for ht, k in frontier_nodes(n - 1))
        if raw[: len(want)] != want:
            raise Invalid(f"the map's frontier is not that of tree {n - 1}", mp)
        for i, slot in enumerate(map_slots(n)):
            at = len(want) + 8 * i
            off = int.from_bytes(raw[at : at + 8], "big")
            found = self.pages.get(off) if slot[0] == "page" else self.tiles.get(off)
            if found != slot[1:]:
                raise Invalid(f"map slot {i} ({slot}) points at {off}: {found}", mp)
        if self.prev:  # step 11: consistency with the previous seal's tree
            pm, proot, _ = self.prev
            if pm > n:
                raise Invalid(f"tree {n} is smaller than the previous seal's {pm}")
            proof = tree.subproof(pm, 0, n, True) if pm < n else []
            if not (proot == root if pm == n else verify_consistency(pm, n, proot, root, proof)):
                raise Invalid(f"tree {n} is not consistent with the previous seal's tree {pm}")

    def seal_partial(self, f, n, root):
        """11: the segment's leaves, proven against the checkpoint."""
        leaves = [g for g in self.seg if g.kind in LEAF_KINDS]
        proof = next((g for g in self.seg if g.kind == "proof"), None)
        if not leaves and not proof:  # step 2: a heartbeat repeats the previous tree
            if self.prev is None or self.prev[:2] != (n, root):
                raise Invalid("a seal without new leaves does not repeat the previous tree")
            return
        if proof is None or self.seg[-1] is not proof or not leaves:  # step 3
            raise Invalid("a segment's leaf frames, then its proof frame right before the seal")
        if proof.h["size"] != n or (self.prev and n < self.prev[0]):
            raise Invalid(f"proof size {proof.h['size']} is not the checkpoint's {n}, or the tree shrank")
        idx = proof.h["leaves"]
        if len(idx) != len(set(idx)) or len(idx) != len(leaves):
            raise Invalid("proof.leaves is not one distinct index per leaf frame of the segment", proof)
        for g, i in zip(leaves, idx):
            g.leaf = i
            if (g.kind == "genesis") != (i == 0):
                raise Invalid("leaf 0 must be the genesis, and no other leaf", g)
        m = leaves[-1]
        if (m.kind, m.leaf) != ("manifest", n - 1) or m is not self.manifest:
            raise Invalid("the segment's last leaf is not a manifest at leaf n-1", m)
        releases = {
            (r["channel"], r["target"]): (r["version"], r["index"]["leaf"], r["index"]["length"])
            for r in m.h["releases"]
        }
        refs = {}  # step 4: (leaf, frame length) -> (kind, sha256) the listings name
        private = any("sealed" in g.h for g in leaves if g.kind == "index")
        for g in (g for g in leaves if g.kind == "index"):
            length = None if g.header_only else g.length  # a header-only copy's length is not upstream's
            named = releases.get((g.h["channel"], g.h["target"]))
            if named is None or (named[0], named[1]) != (g.h["version"], g.leaf) or length not in (None, named[2]):
                raise Invalid("index is not the one the segment's manifest names", g)
            for x in g.listing or []:  # 13.3: a private listing is not opened in a replica
                refs[(x["entry"]["leaf"], x["entry"]["length"])] = ("entry", x["sha256"])
                for d in x["deltas"]:
                    refs[(d["leaf"], d["length"])] = ("delta", x["sha256"])
        for g in (g for g in leaves if g.kind in ("entry", "delta")):
            if "sealed" in g.h:  # 13.3: accepted when a private index is in the same segment
                if not private:
                    raise Invalid(f"a private {g.kind} without a private index in its segment", g)
                continue
            if refs.get((g.leaf, g.length)) != (g.kind, g.h["sha256"]):
                raise Invalid(f"{g.kind} is not named by an index of the segment", g)
        nodes = {}  # step 5: the root from the old frontier, the leaves and the proof's nodes
        for i, (ht, k) in enumerate(proof.h["nodes"]):  # unused nodes are ignored (incomplete ones too)
            at = proof.payload_offset + 32 * i
            if nodes.setdefault((ht, k), self.data[at : at + 32]) != self.data[at : at + 32]:
                raise Invalid(f"proof node ({ht}, {k}) given twice with different hashes", proof)
        known = {g.leaf: sha256(b"\x00", g.header) for g in leaves}
        self.computed = {}
        if self.root_from(0, n, self.prev[0] if self.prev else 0, known, nodes) != root:
            raise Invalid("the root from the leaves and this proof is not the checkpoint's", proof)
        self.frontier = {node: self.computed[node] for node in frontier_nodes(n)}

    def root_from(self, lo, hi, old, known, nodes):
        """9.2 step 5: MTH(D[lo:hi]) from the previous frontier (of tree `old`),
        the known leaf hashes and the proof's complete nodes. A range over no
        known leaf that is a complete node and does not straddle `old` is
        taken as one hash; a stored node over known leaves is recomputed and
        must match."""
        size = hi - lo
        node = (size.bit_length() - 1, lo // size) if size & (size - 1) == 0 else None
        stored = nodes.get(node)
        if node in self.frontier:
            if stored not in (None, self.frontier[node]):
                raise Invalid(f"proof node {node} differs from the previous frontier")
            stored = self.frontier[node]
        if node and not any(lo <= i < hi for i in known) and not lo < old < hi:
            if stored is None:
                raise Invalid(f"no hash for node {node} of tree {hi}")
            x = stored
        else:
            if size == 1:
                x = known[lo]
            else:
                k = split(size)
                x = node_hash(
                    self.root_from(lo, lo + k, old, known, nodes), self.root_from(lo + k, hi, old, known, nodes)
                )
            if stored is not None and stored != x:
                raise Invalid(f"node {node} differs from the one recomputed from leaves")
        if node:
            self.computed[node] = x
        return x


# ------------------------------------------------------------ the whole file


def read_pending(path):
    """10: CONTAINER.pending's sealed_len, or None if there is none (or it is
    not exactly one JSON object {"sealed_len":N} and a newline)."""
    try:
        raw = Path(str(path) + ".pending").read_bytes()
        if not raw.endswith(b"\n"):
            return None
        v = parse_json(raw[:-1])
        conform(v, {"sealed_len": UINT64})
        return v["sealed_len"]
    except (OSError, Invalid):
        return None


def verify(path, ids=None, extract=None):
    """8.4, 10, 11: walk both ways, then check every frame; the output lines
    and the exit code. With `ids` (13), the private listings and payloads of
    every exchange they open are checked too; each file they name is written
    under `extract`/CHANNEL/TARGET/VERSION/PATH if given."""
    data = Path(path).read_bytes()
    frames, o, broken = [], 0, None
    while o < len(data):  # 2.2: the forward walk, up to the first unreadable frame
        try:
            frames.append(read_frame(data, o, len(data), len(frames)))
        except Invalid as e:
            broken = Bad(len(frames), o, str(e))
            break
        o += frames[-1].length
    if not frames:  # 10: a problem in frame 0 is always an error
        raise broken or Bad(0, 0, "empty file")
    seals = [f.index for f in frames if f.index > 0 and kind_of(f) == "seal"]
    if not seals:  # 10: a container with no seal is always an error; say why
        for f in frames:
            try:
                parse_header(f)
            except Invalid as e:
                raise Bad(f.index, f.offset, f"{e} (and no seal)") from None
        if frames[0].kind != "genesis":
            raise Bad(0, 0, "frame 0 must be the genesis")
        raise broken or Bad(len(frames), len(data), "no seal")
    sealed = frames[: seals[-1] + 1]
    sealed_len = sealed[-1].offset + sealed[-1].length
    lines = []
    if sealed_len < len(data):  # 10: a torn tail, or an error
        try:
            last = read_frame_backward(data, len(data), sealed_len)
        except Invalid:
            last = None
        if broken and last is not None and kind_of(last) == "seal":
            raise broken  # the file ends with a seal: not cut short by a crash
        at = len(sealed)
        pending = read_pending(path)
        if pending != sealed_len:
            why = "no CONTAINER.pending" if pending is None else f"CONTAINER.pending says sealed_len {pending}"
            raise Bad(at, sealed_len, f"torn tail of {len(data) - sealed_len} bytes after the last seal, {why}")
        lines.append(
            f"warning: torn tail of {len(data) - sealed_len} bytes at {sealed_len}, explained by CONTAINER.pending"
        )
    for f in sealed:
        try:
            parse_header(f)
        except Invalid as e:
            raise Bad(f.index, f.offset, str(e)) from None
    try:  # 8.4: the backward walk over the sealed part finds the same frames
        backward = walk_backward(data, sealed_len)
    except Invalid as e:
        raise Bad(len(sealed) - 1, sealed[-1].offset, str(e)) from None
    if backward != [f.offset for f in sealed]:
        i = next(i for i, f in enumerate(sealed) if i >= len(backward) or backward[i] != f.offset)
        raise Bad(i, sealed[i].offset, "forward and backward walks disagree here")
    proofs = [f for f in sealed if f.kind == "proof"]  # 11: a partial container has proof frames,
    tiles = [f for f in sealed if f.kind in FULL_ONLY]  # a full one tiles, pages, maps
    if proofs and tiles:
        f = proofs[0] if tiles[0].index < proofs[0].index else tiles[0]
        raise Bad(f.index, f.offset, f"a {f.kind} frame after a {'tile' if f is proofs[0] else 'proof'} frame (3.12)")
    partial = bool(proofs)
    v = Verifier(data, partial, ids, extract)
    n, root, _ = v.run(sealed)
    s = v.stats
    counts = {
        "entries": s["entry"],
        "entries_zstd": s["entry-zstd"],
        "deltas": s["delta"],
        "deltas_applied": s["delta-applied"],
        "indexes": s["index"],
        "files": s["files"],
        "files_shared": s["files-shared"],
        "delta_refs": s["delta-refs"],
        "index_patches": s["index-patches"],
        "listings": s["listing"],
        "header_only_indexes": sum(1 for f in sealed if f.kind == "index" and f.header_only),
        "keys": s["keys"],
        "seals": s["seal"],
        "heartbeats": s["heartbeat"],
        "tiles": s["tile"],
        "pages": s["page"],
        "maps": s["map"],
        "proofs": s["proof"],
        "exchanges": s["exchange"],
        "sealed_entries": s["entry-sealed"],
        "sealed_deltas": s["delta-sealed"],
        "sealed_indexes": s["index-sealed"],
        "exchanges_opened": s["exchange-opened"],
        "exchanges_not_recipient": s["exchange-not-recipient"],
        "listings_opened": s["listing-opened"],
        "files_opened": s["files-opened"],
        "deltas_unapplied": s["delta-unapplied"],
    }
    lines.append(
        "stats: " + " ".join(f"{k}={x}" for k, x in counts.items()) + f" fingerprint={fingerprint(v.genesis['trust'])}"
    )
    kind = "partial" if partial else "full"
    if ids is not None and s["exchange"] and not s["exchange-opened"]:
        lines.append(
            f"NOT A RECIPIENT: the identity opens none of the {s['exchange']} key exchanges "
            f"(the {kind} container verifies without a key: {len(sealed)} frames, tree size {n})"
        )
        return lines, 3
    lines.append(f"OK: {kind} container, {len(sealed)} frames, tree size {n}, root {root.hex()}")
    return lines, 0


USAGE = "usage: dare_reader.py CONTAINER [--identity FILE [--extract DIR]]"


def main(argv):
    args, opts = [], {}
    it = iter(argv[1:])
    for a in it:
        if a in ("--identity", "--extract"):
            opts[a] = next(it, None)
            if opts[a] is None:
                print(USAGE, file=sys.stderr)
                return 2
        else:
            args.append(a)
    if len(args) != 1 or ("--extract" in opts and "--identity" not in opts):
        print(USAGE, file=sys.stderr)
        return 2
    ids = None
    if "--identity" in opts:
        try:
            ids = read_identities(opts["--identity"])
        except (OSError, ValueError) as e:
            print(f"BAD IDENTITY: {opts['--identity']}: {e}")
            return 2
    try:
        lines, code = verify(args[0], ids, opts.get("--extract"))
        print("\n".join(lines))
        return code
    except Bad as e:
        print(f"BAD: {e}")
    except OSError as e:
        print(f"BAD: frame 0 at byte 0: cannot read {args[0]}: {e.strerror}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
