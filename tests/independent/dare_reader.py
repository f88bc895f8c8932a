#!/usr/bin/env python3
"""An independent reader and verifier for dare release containers.

Written from docs/FORMAT.md (format version 1) and DESIGN.md section 3 only,
never from dare's Rust source. Section numbers in comments are FORMAT.md's.

Usage: dare_reader.py CONTAINER. Prints "OK: full|partial container, N frames,
tree size S, root HEX" and exits 0, or "BAD: frame I at byte O: what" and
exits 1. Needs the `cryptography` package; zstd payloads are decompressed only
if the optional `zstandard` module is installed (else a note says so).
Stricter than `dare verify`: bytes after the last seal are always an error
(no CONTAINER.pending allowance, section 10), and so is `"delta_base": null`.
"""

import base64
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

try:
    import zstandard
except ImportError:
    zstandard = None

U64 = 2**64 - 1
MAX_LEN = 2**63 - 1  # 2.1: every length, and a frame's total length
HEADER_CAP = 1 << 20  # 2.1: the header record is at most 1 MiB
FRAME_TAGS = {0xF4: 1, 0xF5: 2, 0xF6: 4, 0xF7: 8}  # tag -> width of the length
RECORD_TAGS = {0xF0: 1, 0xF1: 2, 0xF2: 4, 0xF3: 8}
MIN_FOR_WIDTH = {1: 0, 2: 256, 4: 65536, 8: 2**32}  # 2.1: smallest width
LEAF_KINDS = {"genesis", "entry", "manifest", "keys"}  # 3, 4

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

@dataclass
class Frame:
    index: int  # position in the file, from 0
    offset: int  # first byte
    length: int  # total length, tags included
    header: bytes  # the header record's bytes: the leaf data (4)
    payload_offset: int
    payload_length: int
    kind: str = ""
    h: dict | None = None  # the parsed header, without "kind"
    leaf: int | None = None  # leaf index (from the proof frame in partial containers)

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

def walk_forward(data):
    """2.2: every frame from offset 0 to the end of the file."""
    frames, o = [], 0
    while o < len(data):
        try:
            frames.append(read_frame(data, o, len(data), len(frames)))
        except Invalid as e:
            raise Bad(len(frames), o, str(e)) from None
        o += frames[-1].length
    return frames

def walk_backward(data):
    """2.3: the frame offsets, read from the end of the file to 0."""
    offsets, e = [], len(data)
    while e > 0:
        w = FRAME_TAGS.get(data[e - 1])
        if w is None or e < 1 + w:
            raise Invalid(f"backward walk: no frame tag and length before byte {e}")
        o = e - (read_length(data, e - 1 - w, w, little=True) + 2 + 2 * w)
        if o < 0:
            raise Invalid(f"backward walk: the frame ending at {e} starts before 0")
        read_frame(data, o, e, -1)  # the leading tag and length must match too
        offsets.append(o)
        e = o
    return offsets[::-1]


# ------------------------------------------------------------ 1.1, 3. headers

def parse_json(raw):
    """1.1: one strict JSON object; no duplicate members; integers only."""

    def pairs(items):
        if len({k for k, _ in items}) != len(items):
            raise Invalid("duplicate member")
        return dict(items)

    def no_number(s):
        raise Invalid(f"not a non-negative integer: {s}")

    try:  # strict UTF-8 (json itself rejects a BOM); no 1.0, 1e2, -0, NaN, Infinity
        v = json.loads(raw.decode("utf-8"), object_pairs_hook=pairs, parse_float=no_number,
                       parse_int=lambda s: no_number(s) if s[0] == "-" else int(s),
                       parse_constant=no_number)
        json.dumps(v, ensure_ascii=False).encode()  # lone surrogates (\ud800) fail here
    except ValueError as e:  # UnicodeError and JSONDecodeError are ValueErrors
        raise Invalid(f"header is not strict JSON: {e}") from None
    if type(v) is not dict:
        raise Invalid("header is not a JSON object")
    return v

def conform(v, spec):
    """Check a parsed JSON value against a schema (1.1, 3): a dict is an
    object with exactly those members (unknown ones are rejected), a tuple
    (item, least, most) an array, a range an integer, a function a string rule."""
    if type(spec) is dict:
        if type(v) is not dict or set(v) != set(spec):
            raise Invalid(f"members {sorted(v) if type(v) is dict else v!r} are not {sorted(spec)}")
        for k, s in spec.items():
            try:
                conform(v[k], s)
            except Invalid as e:
                raise Invalid(f"{k}: {e}") from None
    elif type(spec) is tuple:
        if type(v) is not list or not spec[1] <= len(v) <= spec[2]:
            raise Invalid(f"not an array of {spec[1]} to {spec[2]} items")
        for x in v:
            conform(x, spec[0])
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

U32, UINT64 = range(2**32), range(2**64)
TRUST = {"keys": (lambda s: True, 0, U64), "threshold": U32}  # keys: see parse_trust
ENTRY_REF = {"leaf": UINT64, "offset": UINT64, "length": UINT64}
RELEASE = {"channel": is_channel, "target": is_target, "version": is_version,
           "entries": (ENTRY_REF, 1, U64)}
SCHEMAS = {  # 3.2 - 3.8; `delta_base` (reserved) is rejected as unknown
    "genesis": {"format": range(1, 2), "origin": is_origin, "product": is_product, "trust": TRUST},
    "entry": {"target": is_target, "version": is_version, "channel": is_channel, "path": is_path,
              "mode": range(0o10000), "size": UINT64, "sha256": is_digest,
              "stored_size": UINT64, "stored_sha256": is_digest,
              "compression": lambda s: s in ("none", "zstd")},
    "manifest": {"releases": (RELEASE, 0, U64)},
    "keys": {"trust": TRUST},
    "tile": {"level": range(8), "index": UINT64, "width": range(1, 257)},
    "seal": {"checkpoint": lambda s: nbytes(s) <= 65536, "time": UINT64,
             "manifest": {"offset": UINT64, "length": UINT64},
             "manifest_proof": (is_digest, 0, 64), "tiles": ((UINT64, 0, U64), 0, 8)},
    "proof": {"size": UINT64, "leaves": (UINT64, 0, U64), "nodes": ((UINT64, 2, 2), 0, U64)},
}

def increasing(xs):
    return all(a < b for a, b in zip(xs, xs[1:]))

def parse_header(f):
    """Parse and schema-check f's header (3); check its payload length."""
    h = parse_json(f.header)
    kind = h.pop("kind", None)
    if kind not in SCHEMAS:
        raise Invalid(f"missing or unknown kind {kind!r}")
    conform(h, SCHEMAS[kind])
    if kind == "manifest":  # 3.4 orderings
        if not increasing([(r["channel"].encode(), r["target"].encode()) for r in h["releases"]]):
            raise Invalid("releases not strictly increasing by (channel, target)")
        if not all(increasing([e["leaf"] for e in r["entries"]]) for r in h["releases"]):
            raise Invalid("entries not strictly increasing by leaf")
    if kind == "entry" and h["compression"] == "none":  # 3.3
        if (h["size"], h["sha256"]) != (h["stored_size"], h["stored_sha256"]):
            raise Invalid("compression none but size/sha256 differ from the stored ones")
    if kind == "proof":  # 3.8
        if any(x >= h["size"] for x in h["leaves"]) or any(n[0] > 63 for n in h["nodes"]):
            raise Invalid("proof leaf index >= size, or node height > 63")
    want = {"entry": h.get("stored_size"), "tile": 32 * h.get("width", 0),
            "proof": 32 * len(h.get("nodes", []))}.get(kind, 0)
    if f.payload_length != want:
        raise Invalid(f"{kind} payload is {f.payload_length} bytes, not {want}")
    f.kind, f.h = kind, h


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
    if sha256(name.encode(), b"\n\x01", data[1:])[:4].hex() != hexid:
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

def verify_note(note, roots):
    """6.2: parse a signed note, check it against every (keys, threshold) in
    `roots`, and return its text."""
    if nbytes(note) > HEADER_CAP or any(c < " " and c != "\n" for c in note):
        raise Invalid("note too long or has a control character")
    cut = note.rfind("\n\n")  # the text ends with the \n before the last \n\n
    if cut < 0 or not note.endswith("\n"):
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
    if len(lines) < 4 or "" in lines:
        raise Invalid("checkpoint needs origin, size, root and time lines, none empty")
    if len(root := canonical_b64(lines[2])) != 32:
        raise Invalid("checkpoint root is not 32 bytes")
    if not lines[3].startswith("time ") or any(x.split(" ")[0] == "time" for x in lines[4:]):
        raise Invalid("checkpoint time line missing, misplaced or repeated")
    return lines[0], canonical_u64(lines[1]), root, canonical_u64(lines[3][5:])


# ------------------------------------------------------ 4, 5. Merkle tree

def node_hash(a, b):
    return sha256(b"\x01", a, b)

def split(n):
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)

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

    def path(self, m, lo, hi):
        """PATH(m, D[lo:hi]) (RFC 9162 2.1.3.1), m relative to lo."""
        if hi - lo <= 1:
            return []
        k = split(hi - lo)
        if m < k:
            return self.path(m, lo, lo + k) + [self.mth(lo + k, hi)]
        return self.path(m - k, lo + k, hi) + [self.mth(lo, lo + k)]

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

def tiles_of(n):
    """5: the tiles (level, index, width) of tree n, one list per level."""
    sizes = [n >> (8 * lvl) for lvl in range(8) if n >> (8 * lvl)]
    return [[(lvl, i, min(256, m - 256 * i)) for i in range((m + 255) // 256)]
            for lvl, m in enumerate(sizes)]


# ---------------------------------------------------- 3.3 entry payloads

def check_payload(data, f, notes):
    """3.3: the stored digest; with zstd, the decompressed size and digest."""
    h, payload = f.h, data[f.payload_offset : f.payload_offset + f.payload_length]
    if sha256(payload).hex() != h["stored_sha256"]:
        raise Invalid("payload SHA-256 differs from stored_sha256")
    if h["compression"] == "zstd" and zstandard is None:
        notes.add("the zstandard module is missing: zstd payloads checked by stored digest only")
    elif h["compression"] == "zstd":
        reader = zstandard.ZstdDecompressor().stream_reader(payload, read_across_frames=True)
        content, size = hashlib.sha256(), 0
        try:
            while size <= h["size"] and (chunk := reader.read(1 << 20)):  # stop past `size`
                content.update(chunk)
                size += len(chunk)
        except zstandard.ZstdError as e:
            raise Invalid(f"zstd payload does not decompress: {e}") from None
        if size != h["size"] or content.hexdigest() != h["sha256"]:
            raise Invalid("decompressed content differs from size/sha256")


# ------------------------------------------------------ 7, 8, 11. verification

class Verifier:
    """Checks the frames in file order (8.2; 11 for partial containers)."""

    def __init__(self, data, partial):
        self.data, self.partial = data, partial
        self.tree = Tree()  # full containers: every leaf hash
        self.notes = set()
        self.genesis = self.roots = None  # genesis header; trust root in effect
        self.seg = []  # frames since the previous seal
        self.prev = None  # the previous seal's (size, root, time)
        self.frontier = {}  # partial: (height, index) -> hash, frontier of prev
        self.latest = {}  # 7.2: (channel, target) -> (version, [entry refs])
        self.sealed = {}  # 7.1: (channel, target) -> version of earlier releases
        self.paths = set()  # 7.1 rule 3: (channel, target, version, path)
        self.tiles = {}  # checked tile payload offset -> (level, index, width)
        self.manifest = None  # the last manifest frame
        self.leaf_count = 0

    def run(self, frames):
        for f in frames:
            try:
                if (f.index == 0) != (f.kind == "genesis"):
                    raise Invalid("frame 0 must be the genesis, and no other frame")
                if f.kind == ("tile" if self.partial else "proof"):
                    raise Invalid("tile and proof frames in one container")
                if f.kind in LEAF_KINDS:
                    f.leaf, self.leaf_count = self.leaf_count, self.leaf_count + 1
                if handler := getattr(self, "on_" + f.kind, None):
                    handler(f)  # tile frames are checked at the next seal (8.2 step 5)
                if f.kind in LEAF_KINDS and not self.partial:
                    self.tree.leaves.append(sha256(b"\x00", f.header))  # 4: leaf hash
                if f.kind == "seal":
                    self.seg = []
                else:
                    self.seg.append(f)
            except Invalid as e:
                g = e.frame or f
                raise Bad(g.index, g.offset, str(e)) from None
        if self.prev is None:
            raise Bad(len(frames), frames[-1].offset if frames else 0, "no seal")
        return self.prev

    def on_genesis(self, f):
        self.genesis, self.roots = f.h, parse_trust(f.h["trust"])

    def on_keys(self, f):  # 3.5
        if any(g.kind == "keys" for g in self.seg):
            raise Invalid("more than one keys frame between two seals")
        parse_trust(f.h["trust"])

    def on_entry(self, f):
        h = f.h
        key, ver = (h["channel"], h["target"]), h["version"]
        if not self.partial:  # 7.1 release rules
            same = [g.h["version"] for g in self.seg
                    if g.kind == "entry" and (g.h["channel"], g.h["target"]) == key]
            if same and same[0] != ver:
                raise Invalid(f"a second version of {key} in one release")
            old = self.sealed.get(key) if not same else None
            if old and parse_semver(ver) <= parse_semver(old):
                raise Invalid(f"version {ver} is not newer than {old}")
            if key + (ver, h["path"]) in self.paths:
                raise Invalid(f"path {h['path']} twice in {key} {ver}")
            self.paths.add(key + (ver, h["path"]))
        check_payload(self.data, f, self.notes)
        if self.latest.get(key, (None,))[0] != ver:  # 7.2
            self.latest[key] = (ver, [])
        self.latest[key][1].append({"leaf": f.leaf, "offset": f.offset, "length": f.length})

    def on_manifest(self, f):
        if not self.partial:  # 7.2: it must equal the manifest recomputed from the entries
            order = sorted(self.latest, key=lambda k: (k[0].encode(), k[1].encode()))
            want = [{"channel": c, "target": t, "version": self.latest[(c, t)][0],
                     "entries": self.latest[(c, t)][1]} for c, t in order]
            if f.h["releases"] != want:
                raise Invalid("manifest differs from the one recomputed from the entries")
        self.manifest = f

    def on_proof(self, f):
        if any(g.kind == "proof" for g in self.seg):
            raise Invalid("more than one proof frame before a seal")

    def on_seal(self, f):
        """8.2 steps 2, 4, 7, 8 and 8.3; then per container kind."""
        h, keys = f.h, [g for g in self.seg if g.kind == "keys"]
        roots = [self.roots] + [parse_trust(g.h["trust"]) for g in keys]  # 8.3: both roots
        origin, n, root, t = parse_checkpoint(verify_note(h["checkpoint"], roots))
        if origin != self.genesis["origin"]:
            raise Invalid(f"checkpoint origin {origin!r} is not the genesis origin")
        if t != h["time"] or (self.prev and t < self.prev[2]):
            raise Invalid("seal time differs from the checkpoint's, or goes back")
        if self.manifest is None or h["manifest"]["length"] != self.manifest.length:
            raise Invalid("seal.manifest.length is not the last manifest frame's length")
        (self.seal_partial if self.partial else self.seal_full)(f, n, root)
        for g in self.seg:  # 7.1 rule 2: this release's versions are now sealed
            if g.kind == "entry":
                self.sealed[(g.h["channel"], g.h["target"])] = g.h["version"]
        self.roots, self.prev = roots[-1], (n, root, t)

    def seal_full(self, f, n, root):
        """8.2 steps 3, 5, 6, 9, 10, 11."""
        h, m, tree = f.h, self.manifest, self.tree
        if n != len(tree.leaves) or m.leaf != n - 1 or h["manifest"]["offset"] != m.offset:
            raise Invalid(f"size {n} or seal.manifest is not the last leaf, a manifest")
        if tree.mth(0, n) != root:
            raise Invalid("checkpoint root differs from the tree of the leaves")
        if [bytes.fromhex(x) for x in h["manifest_proof"]] != tree.path(n - 1, 0, n):
            raise Invalid("manifest_proof is not PATH(n-1, D[0:n])")
        for g in self.seg:  # 5: tile frames since the previous seal
            if g.kind == "tile":
                lvl, idx, w = g.h["level"], g.h["index"], g.h["width"]
                if idx * 256 + w > n >> (8 * lvl):
                    raise Invalid(f"tile is not complete in tree {n}", g)
                s = 1 << (8 * lvl)  # level lvl: the roots of subtrees of 2^(8 lvl) leaves
                want = b"".join(tree.mth(j * s, j * s + s) for j in range(idx * 256, idx * 256 + w))
                if self.data[g.payload_offset : g.payload_offset + 32 * w] != want:
                    raise Invalid(f"tile ({lvl}, {idx}, {w}) differs from tree {n}", g)
                self.tiles[g.payload_offset] = (lvl, idx, w)
        if [[self.tiles.get(off) for off in row] for row in h["tiles"]] != tiles_of(n):
            raise Invalid(f"seal.tiles does not locate the tiles of tree {n}")
        if self.prev:  # 8.2 step 11: consistency with the previous seal's tree
            pm, proot, _ = self.prev
            proof = tree.subproof(pm, 0, n, True) if 0 < pm < n else []
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
        if not leaves or proof is None or proof.h["size"] != n or (self.prev and n < self.prev[0]):
            raise Invalid("no proof frame of the checkpoint size, or the tree shrank")
        idx = proof.h["leaves"]  # one index per leaf frame; the proof follows them (as dare writes)
        if len(idx) != len(set(idx)) or len(idx) != len(leaves) or leaves[-1].index > proof.index:
            raise Invalid("proof.leaves is not one distinct index per leaf frame before it", proof)
        for g, i in zip(leaves, idx):
            g.leaf = i
            if (g.kind == "genesis") != (i == 0):
                raise Invalid("leaf 0 must be the genesis, and no other leaf", g)
        m = leaves[-1]  # step 3: the manifest, leaf n-1 by manifest_proof
        mhash, mproof = sha256(b"\x00", m.header), [bytes.fromhex(x) for x in f.h["manifest_proof"]]
        is_last = (m.kind, m.leaf) == ("manifest", n - 1)
        if not is_last or not verify_inclusion(n - 1, n, mhash, mproof, root):
            raise Invalid("the segment's last leaf is not a manifest proven as leaf n-1")
        listed = {(r["channel"], r["target"], r["version"], e["leaf"], e["length"])
                  for r in m.h["releases"] for e in r["entries"]}
        for g in (g for g in leaves if g.kind == "entry"):  # step 4 (copies: the length too)
            if (g.h["channel"], g.h["target"], g.h["version"], g.leaf, g.length) not in listed:
                raise Invalid("entry is not listed by the segment's manifest", g)
        nodes = {}  # step 5: the root from the old frontier, the leaves and the proof's nodes
        for i, (ht, k) in enumerate(proof.h["nodes"]):
            if (k + 1) << ht > n or (ht, k) in nodes:
                raise Invalid(f"proof node ({ht}, {k}) repeated or not complete in tree {n}", proof)
            at = proof.payload_offset + 32 * i
            nodes[(ht, k)] = self.data[at : at + 32]
        known = {g.leaf: sha256(b"\x00", g.header) for g in leaves}
        if self.root_from(0, n, self.prev[0] if self.prev else 0, known, nodes) != root:
            raise Invalid("the root from the leaves and this proof is not the checkpoint's", proof)
        # Keep the frontier of tree n: manifest_proof is that of n-1, smallest first (4),
        # then push the manifest's leaf hash, merging nodes of equal height.
        nodes_n1 = [(b, ((n - 1) >> b) - 1) for b in range(64) if (n - 1) >> b & 1]
        self.frontier = dict(zip(nodes_n1, mproof))
        x, ht, k = mhash, 0, n - 1
        while k & 1:
            x, ht, k = node_hash(self.frontier.pop((ht, k - 1)), x), ht + 1, k >> 1
        self.frontier[(ht, k)] = x

    def root_from(self, lo, hi, old, known, nodes):
        """9.2 step 6: MTH(D[lo:hi]) from the previous frontier (of tree `old`),
        the known leaf hashes and the proof's complete nodes. A stored node
        over known leaves is recomputed and must match."""
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
            return stored
        if size == 1:
            x = known[lo]
        else:
            k = split(size)
            x = node_hash(self.root_from(lo, lo + k, old, known, nodes),
                          self.root_from(lo + k, hi, old, known, nodes))
        if stored is not None and stored != x:
            raise Invalid(f"node {node} differs from the one recomputed from leaves")
        return x


# ------------------------------------------------------------ the whole file

def verify(path):
    """8.4, 10, 11: walk both ways, then check every frame; the output lines."""
    data = Path(path).read_bytes()
    frames = walk_forward(data)  # 10: an unreadable frame, even after the last seal, is an error
    for f in frames:
        try:
            parse_header(f)
        except Invalid as e:
            raise Bad(f.index, f.offset, str(e)) from None
    seals = [f for f in frames if f.kind == "seal"]
    if seals and seals[-1] is not frames[-1]:  # 10: a torn tail, never trusted
        f = frames[seals[-1].index + 1]
        raise Bad(f.index, f.offset, f"{len(data) - f.offset} bytes after the last seal")
    try:
        backward = walk_backward(data)
    except Invalid as e:
        raise Bad(len(frames) - 1, frames[-1].offset, str(e)) from None
    if backward != [f.offset for f in frames]:
        i = next(i for i, f in enumerate(frames) if i >= len(backward) or backward[i] != f.offset)
        raise Bad(i, frames[i].offset, "forward and backward walks disagree here")
    partial = any(f.kind == "proof" for f in frames)  # 11
    v = Verifier(data, partial)
    n, root, _ = v.run(frames)
    kind = "partial" if partial else "full"
    return [f"note: {x}" for x in sorted(v.notes)] + [
        f"OK: {kind} container, {len(frames)} frames, tree size {n}, root {root.hex()}"
    ]

def main(argv):
    if len(argv) != 2:
        print("usage: dare_reader.py CONTAINER", file=sys.stderr)
        return 2
    try:
        print("\n".join(verify(argv[1])))
        return 0
    except Bad as e:
        print(f"BAD: {e}")
    except OSError as e:
        print(f"BAD: frame 0 at byte 0: cannot read {argv[1]}: {e.strerror}")
    return 1

if __name__ == "__main__":
    sys.exit(main(sys.argv))
