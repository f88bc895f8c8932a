#!/usr/bin/env python3
"""Writes format-2 containers from docs/FORMAT.md alone (no dare code), each
valid or breaking one rule, to check that dare and the reader agree with the
document on cases dare's own writer never produces.

Usage: conformance.py OUTDIR [CASE...]

Writes OUTDIR/ok-NAME.dare (FORMAT.md says a verifier accepts it) and
OUTDIR/bad-NAME.dare (it breaks the rule the NAME and the line printed for
it say), and prints one line per case: "ok-NAME: why" or "bad-NAME: rule".
The keys are fixed seeds, so the files are the same at every run.
"""

import base64
import json
import sys
from pathlib import Path

import zstandard
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import dare_reader as r  # noqa: E402

LINUX, MAC = "x86_64-unknown-linux-gnu", "aarch64-apple-darwin"
T0 = 1_750_000_000


class Key:
    def __init__(self, name, seed_byte):
        self.name = name
        self.sk = Ed25519PrivateKey.from_private_bytes(bytes([seed_byte]) * 32)
        self.pub = self.sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.kid = r.key_id(name, self.pub)
        self.text = f"{name}+{self.kid}+" + base64.b64encode(b"\x01" + self.pub).decode()

    def line(self, text):
        return f"\u2014 {self.name} " + base64.b64encode(bytes.fromhex(self.kid) + self.sk.sign(text)).decode() + "\n"


K1, K2, K3 = Key("example.com/conf", 1), Key("example.com/conf-next", 2), Key("witness.example/w", 3)


def compact(obj, order=None, pretty=False):
    """1.1: compact JSON, members in the given order; `order="reverse"`
    reverses every object's members (kind last); `pretty` adds whitespace."""
    if order == "reverse":

        def rev(v):
            if type(v) is dict:
                return dict(reversed([(k, rev(x)) for k, x in v.items()]))
            if type(v) is list:
                return [rev(x) for x in v]
            return v

        obj = rev(obj)
    if pretty:
        return json.dumps(obj, indent=1, ensure_ascii=False).encode()
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def encode_frame(header, payload, wide=False):
    """2.1; `wide` writes the frame length one width too wide (not minimal)."""

    def width(n, bump=False):
        ws = [(0, 1), (1, 2), (2, 4), (3, 8)]
        i = next(i for i, (t, w) in enumerate(ws) if n < 1 << (8 * w))
        return ws[min(i + bump, 3)]

    body = b""
    for record in (header, payload):
        t, w = width(len(record))
        body += bytes([0xF0 + t]) + len(record).to_bytes(w, "big") + record
    t, w = width(len(body), wide)
    return bytes([0xF4 + t]) + len(body).to_bytes(w, "big") + body + len(body).to_bytes(w, "little") + bytes([0xF4 + t])


def zstd(data, prefix=None):
    if prefix:
        d = zstandard.ZstdCompressionDict(prefix, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        return zstandard.ZstdCompressor(level=19, dict_data=d, write_content_size=True).compress(data)
    return zstandard.ZstdCompressor(level=3).compress(data)


def hexsha(b):
    return r.sha256(b).hex()


class Writer:
    """Appends frames as FORMAT.md sections 3, 5, 7, 8 and 9.1 describe."""

    def __init__(self, keys=(K1,), threshold=1, origin="example.com/conf", fmt=None):
        self.out = bytearray()
        self.tree = r.Tree()
        self.origin, self.signers = origin, list(keys)
        self.fmt = fmt or {}  # compact() options for every header
        self.latest, self.sealed_latest = {}, {}
        self.keys_ref = None
        self.tiles = {}  # (level, index) -> payload offset of the full tile
        self.pages = {}  # (level, index) -> payload offset
        self.sealed_size, self.seal_refs = 0, None
        self.contents = {}  # sha256 hex -> entry ref
        self.listings = {}  # index leaf -> its listing
        trust = {"keys": [k.text for k in keys], "threshold": threshold}
        self.trust = trust
        self.leaf({"kind": "genesis", "format": 2, "origin": origin, "product": "conf", "trust": trust})
        self.seal(T0)

    def frame(self, header, payload=b"", wide=False):
        """Appends a frame; returns (offset, length, payload offset, header bytes)."""
        raw = header if type(header) is bytes else compact(header, **self.fmt)
        at = len(self.out)
        f = encode_frame(raw, payload, wide)
        self.out += f
        w = 1 << (f[0] & 3)  # the payload ends before the trailing length and tag
        return at, len(f), at + len(f) - (w + 1) - len(payload), raw

    def leaf(self, header, payload=b"", wide=False):
        at, length, self.last_payload_offset, raw = self.frame(header, payload, wide)
        self.tree.leaves.append(r.sha256(b"\x00", raw))
        return {"leaf": len(self.tree.leaves) - 1, "offset": at, "length": length}

    def entry(self, content, compression="none", header=None, payload=None):
        stored = zstd(content) if compression == "zstd" else content
        stored = stored if payload is None else payload
        h = {"kind": "entry", "size": len(content), "sha256": hexsha(content), "stored_size": len(stored),
             "stored_sha256": hexsha(stored), "compression": compression}
        h.update(header or {})
        ref = self.leaf(h, stored)
        self.contents.setdefault(hexsha(content), ref)
        return ref

    def delta(self, base, content, header=None):
        patch = zstd(content, prefix=base)
        h = {"kind": "delta", "base": hexsha(base), "base_size": len(base), "size": len(content),
             "sha256": hexsha(content), "stored_size": len(patch), "stored_sha256": hexsha(patch)}
        h.update(header or {})
        return self.leaf(h, patch)

    def index(self, channel, target, version, files, compression="zstd", header=None, listing=None,
              listing_fmt=None, listing_raw=None, patch=False, patch_base=None, head=lambda h: h):
        """`files`: (path, content, entry ref, [(base content, delta ref)...]);
        `patch` also stores the listing as a patch against the previous
        index's listing (3.5), or against `patch_base`; `head` can change
        the manifest's head (3.6)."""
        items = [{"path": p, "mode": 0o644, "size": len(c), "sha256": hexsha(c), "entry": e,
                  "deltas": [{"base": hexsha(b), **d} for b, d in ds]} for p, c, e, ds in files]
        raw = listing_raw or compact(items if listing is None else listing, **(listing_fmt or self.fmt))
        stored = zstd(raw) if compression == "zstd" else raw
        h = {"kind": "index", "channel": channel, "target": target, "version": version, "files": len(items),
             "size": len(raw), "sha256": hexsha(raw), "stored_size": len(stored), "stored_sha256": hexsha(stored),
             "compression": compression}
        prev = self.sealed_latest.get((channel, target))
        if prev:
            h["previous"] = prev[1]
        diff = b""
        if patch:
            base = self.listings[prev[1]["leaf"]] if patch_base is None else patch_base
            diff = zstd(raw, prefix=base)
            h["patch"] = {"base": hexsha(base), "stored_size": len(diff), "stored_sha256": hexsha(diff)}
        h.update(header or {})
        h = {k: v for k, v in h.items() if v is not None}
        ref = self.leaf(h, diff + stored)
        self.listings[ref["leaf"]] = raw
        at_head = self.last_payload_offset - ref["offset"] + len(diff) if patch else None
        self.latest[(channel, target)] = (version, ref, head(at_head))
        return ref

    def keys(self, keys, threshold=1, signers=None, origin=None, previous="auto"):
        """3.7 and 6.5: a keys leaf naming the one before it, its rotation note
        signed by the signers of the root in effect and the new keys."""
        new = {"keys": [k.text for k in keys], "threshold": threshold}
        text = (f"dare-rotation/v1\n{origin or self.origin}\nfrom {r.fingerprint(self.trust)}\n"
                f"to {r.fingerprint(new)}\n")
        if signers is None:
            signers = list(dict.fromkeys(self.signers + list(keys)))
        h = {"kind": "keys", "trust": new}
        prev = self.keys_ref if previous == "auto" else previous
        if prev:
            h["previous"] = prev
        h["rotation"] = text + "\n" + "".join(k.line(text.encode()) for k in signers)
        self.keys_ref = self.leaf(h)
        self.next_signers = list(keys)
        self.trust = new
        return self.keys_ref

    def manifest_header(self, extra=None):
        rel = [dict({"channel": c, "target": t, "version": v, "index": ref}, **({} if hd is None else {"head": hd}))
               for (c, t), (v, ref, hd) in sorted(self.latest.items(), key=lambda x: (x[0][0].encode(), x[0][1].encode()))]
        h = {"kind": "manifest", "releases": rel}
        if self.keys_ref:
            h["keys"] = self.keys_ref
        h.update(extra or {})
        return {k: v for k, v in h.items() if v is not None}

    def manifest(self, extra=None):
        """A manifest leaf now (the seal writes the last one itself)."""
        return self.leaf(self.manifest_header(extra))

    def tail(self, manifest):
        """5.3: new full tiles, pages, right-edge tiles, the map of tree n."""
        raw = compact(manifest, **self.fmt)
        t = r.Tree()
        t.leaves = self.tree.leaves + [r.sha256(b"\x00", raw)]
        n = len(t.leaves)
        for lvl in range(8):
            m_old, m = self.sealed_size >> (8 * lvl), n >> (8 * lvl)
            for i in range(m_old // 256, m // 256):
                payload = b"".join(t.node(8 * lvl, j) for j in range(256 * i, 256 * i + 256))
                self.tiles[(lvl, i)] = self.frame({"kind": "tile", "level": lvl, "index": i, "width": 256}, payload)[2]
        for lvl in range(8):
            full = (n >> (8 * lvl)) // 256
            for p in range(full // 256):
                if (lvl, p) not in self.pages:
                    payload = b"".join(self.tiles[(lvl, 256 * p + i)].to_bytes(8, "big") for i in range(256))
                    self.pages[(lvl, p)] = self.frame({"kind": "page", "level": lvl, "index": p}, payload)[2]
        edge = {}
        for lvl in range(8):
            m = n >> (8 * lvl)
            if m % 256:
                i, w = m // 256, m % 256
                payload = b"".join(t.node(8 * lvl, j) for j in range(256 * i, 256 * i + w))
                edge[lvl] = self.frame({"kind": "tile", "level": lvl, "index": i, "width": w}, payload)[2]
        payload = b"".join(t.node(h, k) for h, k in r.frontier_nodes(n - 1))
        for slot in r.map_slots(n):
            off = self.pages[slot[1:]] if slot[0] == "page" else (
                self.tiles[slot[1:3]] if slot[3] == 256 else edge[slot[1]])
            payload += off.to_bytes(8, "big")
        at, length, _, _ = self.frame({"kind": "map", "size": n}, payload)
        return {"offset": at, "length": length}

    def seal(self, time, signers=None, extra_lines="", extra_sigs=(), manifest=None, after_manifest=None,
             seal_header=None, refs=None, time_first=True, root_b64=None, size_text=str):
        """Writes the tail and the manifest when there are new leaves (unless
        `refs` gives the manifest and map already written), then the seal;
        `after_manifest` writes frames between manifest and seal; explicit
        `signers` may repeat a key."""
        if refs:
            self.seal_refs = refs
        elif len(self.tree.leaves) != self.sealed_size or self.seal_refs is None:
            h = self.manifest_header(manifest)
            mp = self.tail(h)
            self.seal_refs = (self.leaf(h), mp)
            if after_manifest:
                after_manifest(self)
        ref, mp = self.seal_refs
        n = len(self.tree.leaves)
        root = base64.b64encode(self.tree.mth(0, n)).decode()
        root = root_b64(root) if root_b64 else root
        ext = f"time {time}\n{extra_lines}" if time_first else f"{extra_lines}time {time}\n"
        text = f"{self.origin}\n{size_text(n)}\n{root}\n{ext}"
        if signers is None:
            signers = list(dict.fromkeys(self.signers + getattr(self, "next_signers", [])))
        lines = "".join(k.line(text.encode()) for k in signers) + "".join(extra_sigs)
        h = {"kind": "seal", "checkpoint": text + "\n" + lines, "time": time,
             "manifest": {"offset": ref["offset"], "length": ref["length"]}, "map": mp}
        h.update(seal_header or {})
        self.frame(h)
        if getattr(self, "next_signers", None):
            self.signers, self.next_signers = self.next_signers, []
        self.sealed_size, self.sealed_latest = n, dict(self.latest)


# ------------------------------------------------------------------ the cases

A1, A2 = b"#!/bin/sh\necho one\n" * 50, b"#!/bin/sh\necho one, two\n" * 50
README = "".join(f"line {i} of the readme\n" for i in range(300)).encode()


def release_one(w, **kw):
    """1.0.0 of two targets; README is shared."""
    a, rd, m = w.entry(A1, **kw), w.entry(README, "zstd"), w.entry(b"mac app\n")
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, []), ("share/README", README, rd, [])])
    w.index("stable", MAC, "1.0.0", [("bin/app", b"mac app\n", m, []), ("share/README", README, rd, [])])
    w.seal(T0 + 10)
    return a, rd


def release_two(w, a1):
    """1.1.0 of linux: bin/app changed, with a delta against 1.0.0."""
    a2 = w.entry(A2)
    d = w.delta(A1, A2)
    w.index("stable", LINUX, "1.1.0", [("bin/app", A2, a2, [(A1, d)]), ("share/README", README, w.contents[hexsha(README)], [])])
    w.seal(T0 + 20)


CASES = {}


def case(name, why):
    def register(fn):
        CASES[name] = (why, fn)
        return fn

    return register


@case("ok-baseline", "two releases, a delta, shared content, a heartbeat")
def _(w):
    a, _ = release_one(w)
    release_two(w, a)
    w.seal(T0 + 30)


@case("ok-member-order", "1.1: members in reverse order in every header and listing")
def _(w):
    w.fmt = {"order": "reverse"}
    a, _ = release_one(w)
    release_two(w, a)


@case("ok-whitespace", "1.1: whitespace between tokens in every header and listing")
def _(w):
    w.fmt = {"pretty": True}
    a, _ = release_one(w)
    release_two(w, a)


@case("ok-index-uncompressed", "3.5: an index with compression none")
def _(w):
    a = w.entry(A1)
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])], compression="none")
    w.seal(T0 + 10)


@case("ok-duplicate-content", "7.2: the same content stored by two entries")
def _(w):
    a, b = w.entry(A1), w.entry(A1, "zstd")
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])])
    w.index("stable", MAC, "1.0.0", [("bin/app", A1, b, [])])
    w.seal(T0 + 10)


@case("ok-empty-file", "3.3: an entry of 0 bytes, stored as is and as zstd")
def _(w):
    a, b = w.entry(b""), w.entry(b"", "zstd")
    w.index("stable", LINUX, "1.0.0", [("a", b"", a, []), ("b", b"", b, [])])
    w.seal(T0 + 10)


@case("ok-paths", "3.1, 3.5: byte-wise path order, escapes and non-ASCII in a listing")
def _(w):
    a = w.entry(A1)
    files = [("a", A1, a, []), ("a-b", A1, a, []), ("a.c/d", A1, a, []), ("b/\u00e9t\u00e9", A1, a, []),
             ("b/\u7af9", A1, a, [])]
    w.index("stable", LINUX, "1.0.0", files)
    w.seal(T0 + 10)


@case("ok-checkpoint-extension", "6.3: another extension line after the time line")
def _(w):
    release_one(w)
    w.seal(T0 + 20, extra_lines="example.com/ext 1 2 3\n")


@case("ok-cosignature", "6.2: a signature line of a key outside the trust root is ignored")
def _(w):
    release_one(w)
    w.seal(T0 + 20, extra_sigs=[K3.line(b"something else entirely\n")])


@case("ok-tail-order", "8.2: tiles and the map may follow the manifest (9.1 is not required)")
def _(w):
    a = w.entry(A1)
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])])
    h = w.manifest_header()
    ref = w.leaf(h)
    t = r.Tree()
    t.leaves = list(w.tree.leaves)
    n = len(t.leaves)
    off = w.frame({"kind": "tile", "level": 0, "index": 0, "width": n}, b"".join(t.leaves))[2]
    mp_payload = b"".join(t.node(hh, k) for hh, k in r.frontier_nodes(n - 1)) + off.to_bytes(8, "big")
    at, length, _, _ = w.frame({"kind": "map", "size": n}, mp_payload)
    w.seal(T0 + 10, refs=(ref, {"offset": at, "length": length}))


@case("ok-two-manifests", "7.4: a manifest in the middle of a release equals the recomputation there")
def _(w):
    a = w.entry(A1)
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])])
    w.manifest()
    m = w.entry(b"mac app\n")
    w.index("stable", MAC, "1.0.0", [("bin/app", b"mac app\n", m, [])])
    w.seal(T0 + 10)


@case("ok-interleaved", "9.1 is not required: entries of both builds before both indexes")
def _(w):
    a, m = w.entry(A1), w.entry(b"mac app\n")
    w.index("stable", MAC, "1.0.0", [("bin/app", b"mac app\n", m, [])])
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])])
    w.seal(T0 + 10)


@case("ok-build-metadata", "3.1: 1.0.1+build.5 is newer than 1.0.0+build.9")
def _(w):
    a = w.entry(A1)
    w.index("stable", LINUX, "1.0.0+build.9", [("bin/app", A1, a, [])])
    w.seal(T0 + 10)
    w.index("stable", LINUX, "1.0.1+build.05", [("bin/app", A1, a, [])])
    w.seal(T0 + 20)


@case("ok-prerelease-order", "3.1: 1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-beta.2 < 1.0.0-beta.11 < 1.0.0")
def _(w):
    a = w.entry(A1)
    for i, v in enumerate(["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0"]):
        w.index("stable", LINUX, v, [("bin/app", A1, a, [])])
        w.seal(T0 + 10 * i + 10)


@case("ok-rotation", "8.3: a keys leaf, a seal by both roots, then seals by the new root")
def _(w):
    release_one(w)
    w.keys([K2])
    w.seal(T0 + 20)
    w.seal(T0 + 30)


@case("ok-threshold-2", "6.2: a 2-of-3 root, two distinct keys signing (one of them twice)")
def _(w):
    w.signers = [K1, K2]
    release_one(w)
    w.seal(T0 + 20, signers=[K1, K1, K2])


@case("ok-delta-from-older", "3.4: a delta whose base is from two releases ago")
def _(w):
    a, _ = release_one(w)
    w.index("stable", LINUX, "1.0.1", [("bin/app", A1, a, [])])
    w.seal(T0 + 15)
    release_two(w, a)


@case("ok-page", "5.1: 65 536 leaves, so level 0 has a page")
def _(w):
    ents = []
    for i in range(65532):
        c = b"%d\n" % i
        ents.append((f"f{i:05}", c, w.entry(c), []))
    w.index("stable", LINUX, "1.0.0", ents, compression="zstd")
    w.seal(T0 + 10)
    m = w.entry(b"mac app\n")
    w.index("stable", MAC, "1.0.0", [("bin/app", b"mac app\n", m, [])])
    w.seal(T0 + 20)


# ---- one rule broken each


@case("bad-version-not-newer", "7.1.2: 1.0.0+b after 1.0.0+a has equal precedence")
def _(w):
    a = w.entry(A1)
    w.index("stable", LINUX, "1.0.0+a", [("bin/app", A1, a, [])])
    w.seal(T0 + 10)
    w.index("stable", LINUX, "1.0.0+b", [("bin/app", A1, a, [])])
    w.seal(T0 + 20)


@case("bad-previous-missing", "7.1.2: a second release's index without previous")
def _(w):
    a = w.entry(A1)
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])])
    w.seal(T0 + 10)
    w.index("stable", LINUX, "1.0.1", [("bin/app", A1, a, [])], header={"previous": None})
    w.seal(T0 + 20)


@case("bad-previous-on-first", "7.1.2: previous on the first index of a (channel, target)")
def _(w):
    a = w.entry(A1)
    ix = w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])])
    w.index("stable", MAC, "1.0.0", [("bin/app", A1, a, [])], header={"previous": ix})
    w.seal(T0 + 10)


@case("bad-two-indexes-one-key", "7.1.1: two indexes of one (channel, target) in a release")
def _(w):
    a = w.entry(A1)
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])])
    w.index("stable", LINUX, "1.0.1", [("bin/app", A1, a, [])])
    w.seal(T0 + 10)


@case("bad-unnamed-entry", "7.2: an entry no index of its release names")
def _(w):
    a = w.entry(A1)
    w.entry(b"nobody's\n")
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])])
    w.seal(T0 + 10)


@case("bad-entry-of-later-release", "7.2: an entry named only by a later release")
def _(w):
    a = w.entry(A1)
    b = w.entry(b"later\n")
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])])
    w.seal(T0 + 10)
    w.index("stable", LINUX, "1.0.1", [("bin/app", b"later\n", b, [])])
    w.seal(T0 + 20)


@case("bad-delta-before-result", "3.4: the delta's result entry must precede it")
def _(w):
    a1 = w.entry(A1)
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a1, [])])
    w.seal(T0 + 10)
    d = w.delta(A1, A2)
    a2 = w.entry(A2)
    w.index("stable", LINUX, "1.1.0", [("bin/app", A2, a2, [(A1, d)])])
    w.seal(T0 + 20)


@case("bad-delta-wrong-result", "3.4: a delta whose output is not its sha256")
def _(w):
    a1, a2 = w.entry(A1), w.entry(A2)
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a1, [])])
    w.seal(T0 + 10)
    patch = zstd(A1 + b"x", prefix=A1)
    d = w.leaf({"kind": "delta", "base": hexsha(A1), "base_size": len(A1), "size": len(A2), "sha256": hexsha(A2),
                "stored_size": len(patch), "stored_sha256": hexsha(patch)}, patch)
    w.index("stable", LINUX, "1.1.0", [("bin/app", A2, a2, [(A1, d)])])
    w.seal(T0 + 20)


@case("bad-delta-ref-base", "7.1.4: a delta ref whose base is not the delta's")
def _(w):
    a1 = w.entry(A1)
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a1, [])])
    w.seal(T0 + 10)
    a2, d = w.entry(A2), w.delta(A1, A2)
    w.index("stable", LINUX, "1.1.0", [("bin/app", A2, a2, [(README, d)])])
    w.seal(T0 + 20)


@case("bad-entry-ref-offset", "7.1.3: an entry ref with the right leaf but another offset")
def _(w):
    a = w.entry(A1)
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, dict(a, offset=a["offset"] + 1), [])])
    w.seal(T0 + 10)


@case("bad-entry-ref-content", "7.1.3: an entry ref to an entry of another content")
def _(w):
    a, b = w.entry(A1), w.entry(A2)
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, b, []), ("bin/b", A2, a, [])])
    w.seal(T0 + 10)


@case("bad-path-directory", "3.5: a path that is a directory of another")
def _(w):
    a = w.entry(A1)
    w.index("stable", LINUX, "1.0.0", [("a", A1, a, []), ("a-b", A1, a, []), ("a/b", A1, a, [])])
    w.seal(T0 + 10)


@case("bad-path-order", "3.5: a listing not increasing by path")
def _(w):
    a = w.entry(A1)
    w.index("stable", LINUX, "1.0.0", [("b", A1, a, []), ("a", A1, a, [])])
    w.seal(T0 + 10)


@case("bad-path-dotdot", "3.1: a path with a .. segment")
def _(w):
    a = w.entry(A1)
    w.index("stable", LINUX, "1.0.0", [("a/../b", A1, a, [])])
    w.seal(T0 + 10)


@case("bad-deltas-order", "3.5: deltas not increasing by base")
def _(w):
    a1, a2, a3 = w.entry(A1), w.entry(A2), w.entry(README)
    w.index("stable", LINUX, "1.0.0", [("a", A1, a1, []), ("b", A2, a2, []), ("c", README, a3, [])])
    w.seal(T0 + 10)
    d1, d2 = w.delta(A1, README), w.delta(A2, README)
    ds = sorted([(A1, d1), (A2, d2)], key=lambda x: hexsha(x[0]), reverse=True)
    w.index("stable", LINUX, "1.1.0", [("c", README, a3, ds)])
    w.seal(T0 + 20)


@case("bad-files-count", "3.5: files differs from the listing's length")
def _(w):
    a = w.entry(A1)
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])], header={"files": 2})
    w.seal(T0 + 10)


@case("bad-listing-member", "3.5: an unknown member in a listing's file object")
def _(w):
    a = w.entry(A1)
    item = {"path": "bin/app", "mode": 420, "size": len(A1), "sha256": hexsha(A1), "entry": a, "deltas": [],
            "owner": "root"}
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])], listing=[item])
    w.seal(T0 + 10)


@case("bad-listing-duplicate-member", "1.1: a duplicate member in a listing")
def _(w):
    a = w.entry(A1)
    item = {"path": "bin/app", "mode": 420, "size": len(A1), "sha256": hexsha(A1), "entry": a, "deltas": []}
    w.index("stable", LINUX, "1.0.0", [], listing_raw=compact([item])[:-2] + b',"mode":420}]', header={"files": 1})
    w.seal(T0 + 10)


@case("bad-mode", "3.5: mode 4096")
def _(w):
    a = w.entry(A1)
    item = {"path": "bin/app", "mode": 4096, "size": len(A1), "sha256": hexsha(A1), "entry": a, "deltas": []}
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])], listing=[item])
    w.seal(T0 + 10)


@case("bad-upper-hex", "1: an upper-case digest")
def _(w):
    a = w.entry(A1, header={"sha256": hexsha(A1).upper(), "stored_sha256": hexsha(A1).upper()})
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])])
    w.seal(T0 + 10)


@case("bad-version-leading-zero", "3.1: version 01.0.0")
def _(w):
    a = w.entry(A1)
    w.index("stable", LINUX, "01.0.0", [("bin/app", A1, a, [])])
    w.seal(T0 + 10)


@case("bad-prerelease-leading-zero", "3.1: version 1.0.0-rc.01")
def _(w):
    a = w.entry(A1)
    w.index("stable", LINUX, "1.0.0-rc.01", [("bin/app", A1, a, [])])
    w.seal(T0 + 10)


@case("bad-target", "3.1: a target of one part")
def _(w):
    a = w.entry(A1)
    w.index("stable", "linux", "1.0.0", [("bin/app", A1, a, [])])
    w.seal(T0 + 10)


@case("bad-manifest-order", "3.6: releases not increasing by (channel, target)")
def _(w):
    a = w.entry(A1)
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])])
    w.index("stable", MAC, "1.0.0", [("bin/app", A1, a, [])])
    rel = w.manifest_header()["releases"]
    w.seal(T0 + 10, manifest={"releases": rel[::-1]})


@case("bad-manifest-version", "7.4: a release's version differs from its index's")
def _(w):
    a = w.entry(A1)
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])])
    rel = w.manifest_header()["releases"]
    rel[0]["version"] = "1.0.0+x"
    w.seal(T0 + 10, manifest={"releases": rel})


@case("bad-manifest-no-keys", "7.4: after a rotation the manifest must name the keys leaf")
def _(w):
    release_one(w)
    w.keys([K2])
    w.seal(T0 + 20, manifest={"keys": None})


@case("bad-keys-after-manifest", "8.2 step 4: the manifest must be the last leaf")
def _(w):
    a, _ = release_one(w)
    w.index("stable", LINUX, "1.0.1", [("bin/app", A1, a, [])])
    w.next_signers = [K2]
    w.seal(T0 + 20, after_manifest=lambda w: w.keys([K2]))


@case("bad-two-keys", "3.7: two keys leaves between two seals")
def _(w):
    release_one(w)
    w.keys([K2])
    w.keys([K3])
    w.seal(T0 + 20, signers=[K1, K2, K3])


@case("bad-rotation-old-only", "8.3: the rotation's seal signed by the old root only")
def _(w):
    release_one(w)
    w.keys([K2])
    w.seal(T0 + 20, signers=[K1])


@case("bad-rotation-new-only", "8.3: the rotation's seal signed by the new root only")
def _(w):
    release_one(w)
    w.keys([K2])
    w.seal(T0 + 20, signers=[K2])


@case("bad-after-rotation-old", "8.3: after the rotation, a seal by the old root only")
def _(w):
    release_one(w)
    w.keys([K2])
    w.seal(T0 + 20)
    w.seal(T0 + 30, signers=[K1])


@case("bad-threshold", "6.2: a 2-of-2 root and one signature (twice)")
def _(w):
    w.signers = [K1, K2]
    release_one(w)
    w.seal(T0 + 20, signers=[K1, K1])


@case("bad-checkpoint-time-twice", "6.3: a second time line")
def _(w):
    release_one(w)
    w.seal(T0 + 20, extra_lines=f"time {T0 + 20}\n")


@case("bad-time-backwards", "8.2 step 8: a seal older than the previous one")
def _(w):
    release_one(w)
    w.seal(T0 + 5)


@case("bad-seal-map", "8.2 step 10: seal.map not the last map frame")
def _(w):
    a, _ = release_one(w)
    old_map = w.seal_refs[1]
    release_two(w, a)
    w.seal(T0 + 30, seal_header={"map": old_map})


@case("bad-nonminimal-frame", "2.1: a frame length written one width too wide")
def _(w):
    a = w.leaf({"kind": "entry", "size": len(A1), "sha256": hexsha(A1), "stored_size": len(A1),
                "stored_sha256": hexsha(A1), "compression": "none"}, A1, wide=True)
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])])
    w.seal(T0 + 10)


@case("bad-zstd-two-frames", "3.3: an entry payload of two zstd frames")
def _(w):
    half = len(A1) // 2
    a = w.entry(A1, "zstd", payload=zstd(A1[:half]) + zstd(A1[half:]))
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])])
    w.seal(T0 + 10)


@case("bad-zstd-trailing", "3.3: an entry payload of one zstd frame and a byte")
def _(w):
    a = w.entry(A1, "zstd", payload=zstd(A1) + b"\0")
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])])
    w.seal(T0 + 10)


@case("bad-delta-size", "3.4: a delta's size over 2^30")
def _(w):
    a1 = w.entry(A1)
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a1, [])])
    w.seal(T0 + 10)
    a2, d = w.entry(A2), w.delta(A1, A2, header={"base_size": 2**30 + 1})
    w.index("stable", LINUX, "1.1.0", [("bin/app", A2, a2, [(A1, d)])])
    w.seal(T0 + 20)



@case("ok-equal-time", "8.2 step 8: a seal with the previous seal's time")
def _(w):
    release_one(w)
    w.seal(T0 + 10)


@case("ok-unknown-key-id", "6.2: a line with the root key's name but another key ID is ignored")
def _(w):
    release_one(w)
    w.seal(T0 + 20, extra_sigs=[f"\u2014 {K1.name} " + base64.b64encode(b"\0\0\0\0" + bytes(64)).decode() + "\n"])


@case("ok-channels", "7.1: versions go up per (channel, target): beta 2.0.0, then stable 1.0.0")
def _(w):
    a = w.entry(A1)
    w.index("beta", LINUX, "2.0.0", [("bin/app", A1, a, [])])
    w.seal(T0 + 10)
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])])
    w.seal(T0 + 20)


@case("ok-superseded-map", "8.2 step 10: only the last map before a seal is checked")
def _(w):
    a = w.entry(A1)
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])])
    w.frame({"kind": "map", "size": 3}, bytes(r.map_length(3)))
    w.seal(T0 + 10)


@case("bad-superseded-tile", "8.2 step 6: every tile frame since the previous seal holds the tree's hashes")
def _(w):
    a = w.entry(A1)
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])])
    w.frame({"kind": "tile", "level": 0, "index": 0, "width": 1}, bytes(32))
    w.seal(T0 + 10)


@case("bad-proof-in-full", "3.12: a proof frame in a full container")
def _(w):
    release_one(w)
    w.frame({"kind": "proof", "size": 1, "leaves": [], "nodes": []})
    w.seal(T0 + 20)


@case("bad-one-bad-line", "6.2 step 2: a failing line of a root key rejects the note, valid lines or not")
def _(w):
    release_one(w)
    w.seal(T0 + 20, extra_sigs=[f"\u2014 {K1.name} " + base64.b64encode(bytes.fromhex(K1.kid) + bytes(64)).decode() + "\n"])


@case("bad-signature-length", "6.2 step 2: a root key's line with 65 signature bytes")
def _(w):
    release_one(w)
    w.seal(T0 + 20, signers=[], extra_sigs=[f"\u2014 {K1.name} " + base64.b64encode(bytes.fromhex(K1.kid) + bytes(65)).decode() + "\n"])


@case("bad-signature-s", "6.2 step 2: S >= L (the valid signature with L added to S)")
def _(w):
    release_one(w)

    class Malleable(Key):
        def line(self, text):
            sig = self.sk.sign(text)
            s_plus = (int.from_bytes(sig[32:], "little") + r.ED_L).to_bytes(32, "little")
            return f"\u2014 {self.name} " + base64.b64encode(bytes.fromhex(self.kid) + sig[:32] + s_plus).decode() + "\n"

    w.seal(T0 + 20, signers=[Malleable(K1.name, 1)])


@case("bad-time-not-first", "6.3: the time line is not the first extension line")
def _(w):
    release_one(w)
    w.seal(T0 + 20, extra_lines="example.com/ext 1\n", time_first=False)


@case("bad-root-noncanonical", "1, 6.3: the root in base64 with non-zero unused bits")
def _(w):
    release_one(w)
    w.seal(T0 + 20, root_b64=lambda b: b[:-2] + chr(ord(b[-2]) + 1) + b[-1] if b[-2] in "AEIMQUYcgkosw048" else b)


@case("bad-size-leading-zero", "6.3: the tree size written 07")
def _(w):
    release_one(w)
    w.seal(T0 + 20, size_text=lambda n: "0" + str(n))


@case("bad-origin", "6.3: a checkpoint origin that is not the genesis origin")
def _(w):
    release_one(w)
    w.origin = "example.com/other"
    w.seal(T0 + 20)


@case("bad-small-order-key", "6.1: a trust root key that is a small-order point")
def _(w):
    w.out.clear()
    w.tree = r.Tree()
    pub = (1).to_bytes(32, "little")  # the identity
    text = f"example.com/zero+{r.key_id('example.com/zero', pub)}+" + base64.b64encode(b"\x01" + pub).decode()
    trust = {"keys": [K1.text, text], "threshold": 1}
    w.leaf({"kind": "genesis", "format": 2, "origin": w.origin, "product": "conf", "trust": trust})
    w.sealed_size, w.seal_refs = 0, None
    w.seal(T0)


@case("bad-format-1", "3.2: a genesis of format 1")
def _(w):
    w.out.clear()
    w.tree = r.Tree()
    trust = {"keys": [K1.text], "threshold": 1}
    w.leaf({"kind": "genesis", "format": 1, "origin": w.origin, "product": "conf", "trust": trust})
    w.sealed_size, w.seal_refs = 0, None
    w.seal(T0)


@case("bad-keys-threshold", "6.4: a keys leaf with threshold 0")
def _(w):
    release_one(w)
    w.keys_ref = w.leaf({"kind": "keys", "trust": {"keys": [K2.text], "threshold": 0}})
    w.seal(T0 + 20, signers=[K1, K2])


@case("bad-keys-duplicate", "6.4: a keys leaf naming one key twice")
def _(w):
    release_one(w)
    w.keys_ref = w.leaf({"kind": "keys", "trust": {"keys": [K2.text, K2.text], "threshold": 1}})
    w.seal(T0 + 20, signers=[K1, K2])


@case("bad-delta-base-size", "3.4: no earlier entry has the delta's base with its base_size")
def _(w):
    a1 = w.entry(A1)
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a1, [])])
    w.seal(T0 + 10)
    a2, d = w.entry(A2), w.delta(A1, A2, header={"base_size": len(A1) + 1})
    w.index("stable", LINUX, "1.1.0", [("bin/app", A2, a2, [(A1, d)])])
    w.seal(T0 + 20)


@case("bad-zstd-skippable", "3.3: an entry payload of a skippable frame and a zstd frame")
def _(w):
    a = w.entry(A1, "zstd", payload=b"\x50\x2a\x4d\x18\x04\0\0\0abcd" + zstd(A1))
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])])
    w.seal(T0 + 10)


def listing_case(name, why, text):
    @case(name, why)
    def _(w):
        a = w.entry(A1)
        raw = text.replace("ENTRY", json.dumps(a, separators=(",", ":"))).replace("SIZE", str(len(A1)))
        raw = raw.replace("SHA", hexsha(A1)).encode()
        w.index("stable", LINUX, "1.0.0", [], listing_raw=raw, header={"files": 1})
        w.seal(T0 + 10)


ITEM = '{"path":PATH,"mode":MODE,"size":SIZE,"sha256":"SHA","entry":ENTRY,"deltas":[]}'
listing_case("ok-listing-escapes", "1.1: a listing path written with escapes", "[" + ITEM.replace("PATH", '"bin\\/\\u0061pp"').replace("MODE", "420") + "]")
listing_case("bad-listing-float", "1.1: mode 420.0", "[" + ITEM.replace("PATH", '"bin/app"').replace("MODE", "420.0") + "]")
listing_case("bad-listing-exponent", "1.1: mode 4.2e2", "[" + ITEM.replace("PATH", '"bin/app"').replace("MODE", "4.2e2") + "]")
listing_case("bad-listing-negative-zero", "1.1: mode -0", "[" + ITEM.replace("PATH", '"bin/app"').replace("MODE", "-0") + "]")
listing_case("bad-listing-surrogate", "1.1: a lone surrogate in a path", "[" + ITEM.replace("PATH", '"bin/\\ud800"').replace("MODE", "420") + "]")
listing_case("bad-listing-bom", "1.1: a byte-order mark before the listing", "\ufeff[" + ITEM.replace("PATH", '"bin/app"').replace("MODE", "420") + "]")
listing_case("bad-listing-backslash", "3.1: a path with a backslash", "[" + ITEM.replace("PATH", '"bin\\\\app"').replace("MODE", "420") + "]")
listing_case("bad-listing-trailing-slash", "3.1: a path ending in /", "[" + ITEM.replace("PATH", '"bin/app/"').replace("MODE", "420") + "]")
listing_case("bad-listing-absolute", "3.1: a path starting with /", "[" + ITEM.replace("PATH", '"/bin/app"').replace("MODE", "420") + "]")
listing_case("bad-listing-bool", "1.1: mode true", "[" + ITEM.replace("PATH", '"bin/app"').replace("MODE", "true") + "]")



@case("ok-index-patch", "3.5, 3.6: indexes stored with patches against the previous listing, and heads")
def _(w):
    a, rd = release_one(w)
    a2, d = w.entry(A2), w.delta(A1, A2)
    w.index("stable", LINUX, "1.1.0", [("bin/app", A2, a2, [(A1, d)]), ("share/README", README, rd, [])], patch=True)
    w.seal(T0 + 20)
    w.index("stable", LINUX, "1.1.1", [("bin/app", A1, a, []), ("share/README", README, rd, [])], patch=True,
            compression="none")
    w.seal(T0 + 30)


@case("bad-patch-base", "3.5: patch.base is not the previous index's sha256")
def _(w):
    a, rd = release_one(w)
    w.index("stable", LINUX, "1.1.0", [("bin/app", A1, a, [])], patch=True, patch_base=compact([]))
    w.seal(T0 + 20)


@case("bad-patch-result", "3.5: the patch does not give the listing")
def _(w):
    a, rd = release_one(w)
    prev_ref = w.sealed_latest[("stable", LINUX)][1]
    prev = w.listings[prev_ref["leaf"]]
    good = compact([{"path": "bin/app", "mode": 0o644, "size": len(A1), "sha256": hexsha(A1), "entry": a,
                     "deltas": []}])
    wrong = zstd(good.replace(b"420", b"493"), prefix=prev)  # a valid patch, to another listing
    stored = zstd(good)
    h = {"kind": "index", "channel": "stable", "target": LINUX, "version": "1.1.0", "files": 1, "size": len(good),
         "sha256": hexsha(good), "stored_size": len(stored), "stored_sha256": hexsha(stored), "compression": "zstd",
         "previous": prev_ref, "patch": {"base": hexsha(prev), "stored_size": len(wrong), "stored_sha256": hexsha(wrong)}}
    ref = w.leaf(h, wrong + stored)
    w.latest[("stable", LINUX)] = ("1.1.0", ref, w.last_payload_offset - ref["offset"] + len(wrong))
    w.seal(T0 + 20)


@case("bad-patch-on-first", "3.5: a patch without previous")
def _(w):
    a = w.entry(A1)
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])], patch=True, patch_base=b"[]")
    w.seal(T0 + 10)


@case("bad-head-missing", "3.6: no head for an index with a patch")
def _(w):
    a, rd = release_one(w)
    w.index("stable", LINUX, "1.1.0", [("bin/app", A1, a, [])], patch=True, head=lambda h: None)
    w.seal(T0 + 20)


@case("bad-head-wrong", "3.6: a head one byte short")
def _(w):
    a, rd = release_one(w)
    w.index("stable", LINUX, "1.1.0", [("bin/app", A1, a, [])], patch=True, head=lambda h: h - 1)
    w.seal(T0 + 20)


@case("bad-head-without-patch", "3.6: a head for an index without a patch")
def _(w):
    a, rd = release_one(w)
    w.index("stable", LINUX, "1.1.0", [("bin/app", A1, a, [])], head=lambda h: 100)
    w.seal(T0 + 20)


@case("bad-listing-frame-in-full", "3.13: a listing frame in a full container")
def _(w):
    a = w.entry(A1)
    w.index("stable", LINUX, "1.0.0", [("bin/app", A1, a, [])])
    raw = w.listings[w.latest[("stable", LINUX)][1]["leaf"]]
    w.frame({"kind": "listing", "size": len(raw), "sha256": hexsha(raw)}, raw)
    w.seal(T0 + 10)


@case("bad-header-only-index-in-full", "3.13, 11: an index without its payload in a full container")
def _(w):
    a = w.entry(A1)
    items = [{"path": "bin/app", "mode": 0o644, "size": len(A1), "sha256": hexsha(A1), "entry": a, "deltas": []}]
    raw = compact(items)
    ref = w.leaf({"kind": "index", "channel": "stable", "target": LINUX, "version": "1.0.0", "files": 1,
                  "size": len(raw), "sha256": hexsha(raw), "stored_size": len(raw), "stored_sha256": hexsha(raw),
                  "compression": "none"})
    w.frame({"kind": "listing", "size": len(raw), "sha256": hexsha(raw)}, raw)
    w.latest[("stable", LINUX)] = ("1.0.0", ref, None)
    w.seal(T0 + 10)


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name, (why, fn) in CASES.items():
        if len(argv) > 2 and name not in argv[2:]:
            continue
        w = Writer(keys=(K1, K2, K3) if name in ("ok-threshold-2",) else (K1, K2) if name == "bad-threshold" else (K1,),
                   threshold=2 if name in ("ok-threshold-2", "bad-threshold") else 1)
        fn(w)
        (out / f"{name}.dare").write_bytes(bytes(w.out))
        print(f"{name}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
