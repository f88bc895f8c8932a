#!/usr/bin/env python3
"""Checks the worked examples of docs/FORMAT.md section 12 byte for byte.

Usage: worked_examples.py FORMAT.md INIT.dare PUBLISHED.dare

INIT.dare is what `dare init` made with the key of 12.1, PUBLISHED.dare the
same container after the publish and heartbeat of 12.2. Every value the
section states (hex dumps, frame tables, byte tables, headers, listings,
hashes, keys, the signed note, offsets) is taken from the document text,
recomputed independently (hashes, keys, signatures, the tree) and compared
with the files. Prints "OK: N checks" and exits 0, or one "MISMATCH: ..." line
per difference and exits 1.
"""

import base64
import re
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import dare_reader as r  # noqa: E402


class Checker:
    def __init__(self):
        self.count, self.failures, self.errata = 0, [], []

    def eq(self, what, got, want):
        self.count += 1
        if got != want:
            self.failures.append(f"{what}: the file has {got!r}, FORMAT.md says {want!r}")

    def erratum(self, what, got, want, known_wrong):
        """Like eq, but a known error of FORMAT.md (`want == known_wrong`) is
        reported as an ERRATUM line rather than a mismatch."""
        self.count += 1
        show = lambda v: v.hex() if isinstance(v, bytes) else v  # noqa: E731
        if got != want and want == known_wrong:
            self.errata.append(f"{what}: FORMAT.md says {show(want)!r}, the correct value is {show(got)!r}")
        elif got != want:
            self.failures.append(f"{what}: the file has {got!r}, FORMAT.md says {want!r}")

    def true(self, what, ok):
        self.count += 1
        if not ok:
            self.failures.append(what)


def one(pattern, text, what, flags=0):
    """The single match of pattern in text (its groups), or exit with why not."""
    found = re.findall(pattern, text, flags)
    if len(found) != 1:
        sys.exit(f"MISMATCH: FORMAT.md section 12: expected one {what}, found {len(found)}")
    return found[0]


def frames_of(data):
    out, o = [], 0
    while o < len(data):
        f = r.read_frame(data, o, len(data), len(out))
        r.parse_header(f)
        out.append(f)
        o += f.length
    leaf = 0
    for f in out:
        if f.kind in r.LEAF_KINDS:
            f.leaf, leaf = leaf, leaf + 1
    return out


def dumps(text):
    """xxd lines -> {offset: bytes}, checking each line's ASCII column too."""
    out = {}
    for m in re.finditer(r"^([0-9a-f]{8}): ((?:[0-9a-f]{2,4} )*[0-9a-f]{2,4})  +(.*)$", text, re.M):
        raw = bytes.fromhex(m[2].replace(" ", ""))
        ascii_col = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in raw)
        out[int(m[1], 16)] = (raw, ascii_col == m[3], m[0])
    return out


def byte_tables(text):
    """Rows "| `f4 71` (188) |" and "| `b772…cd75` (239–270) |"."""
    for m in re.finditer(r"^\| `([0-9a-f ]+)` \((\d+)\) ", text, re.M):
        yield bytes.fromhex(m[1].replace(" ", "")), int(m[2]), None
    for m in re.finditer(r"^\| `([0-9a-f]+)…([0-9a-f]+)` \((\d+)–(\d+)\) ", text, re.M):
        yield (bytes.fromhex(m[1]), bytes.fromhex(m[2])), int(m[3]), int(m[4])


def main(argv):
    if len(argv) != 4:
        print("usage: worked_examples.py FORMAT.md INIT.dare PUBLISHED.dare", file=sys.stderr)
        return 2
    doc = Path(argv[1]).read_text()
    init, full = Path(argv[2]).read_bytes(), Path(argv[3]).read_bytes()
    s12 = doc[doc.index("## 12. Worked examples") :]
    s121, s122 = s12[: s12.index("### 12.2")], s12[s12.index("### 12.2") :]
    c = Checker()
    H = lambda *p: r.sha256(*p)  # noqa: E731

    # ---- 12.1: the key
    seed = bytes.fromhex(one(r"- seed `([0-9a-f]{64})`", s121, "seed"))
    name = one(r"- name `([^`]+)`", s121, "key name")
    sk = Ed25519PrivateKey.from_private_bytes(seed)
    pub = sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    c.eq("public key", pub.hex(), one(r"- public key `([0-9a-f]{64})`", s121, "public key"))
    kid_hash = H(name.encode(), b"\n\x01", pub).hex()
    stated = one(r"`([0-9a-f]+)…`, whose first 4 bytes give `([0-9a-f]{8})`", s121, "key ID hash")
    c.true(f"key ID hash {kid_hash} does not start with {stated[0]}", kid_hash.startswith(stated[0]))
    c.eq("key ID", kid_hash[:8], stated[1])
    c.eq("key ID (reader)", r.key_id(name, pub), stated[1])
    prefix = one(r"public key `([0-9a-f]{8})…([0-9a-f]{6})`", s121, "abbreviated public key")
    c.true("abbreviated public key", pub.hex().startswith(prefix[0]) and pub.hex().endswith(prefix[1]))
    c.eq("name, newline, algorithm byte, key: 50 bytes", len(name) + 2 + 32, 50)
    signer = one(r"`(PRIVATE\+KEY\+[^`]+)`", s121, "signer key")
    c.eq("signer key file", signer, f"PRIVATE+KEY+{name}+{stated[1]}+" + base64.b64encode(b"\x01" + seed).decode())
    verifier = one(r"- verifier key:\s+`([^`]+)`", s121, "verifier key")
    c.eq("verifier key", verifier, f"{name}+{stated[1]}+" + base64.b64encode(b"\x01" + pub).decode())
    c.eq("verifier key parses", r.parse_verifier_key(verifier), (name, stated[1], pub))

    # ---- 12.1: the file, its frames, dumps and tables
    size, count = one(r"gives a (\d+)-byte file of (\w+) frames", s121, "file size")
    c.eq("init file length", len(init), int(size))
    fs = frames_of(init)
    words = {"five": 5, "six": 6, "four": 4}
    c.eq("init frame count", len(fs), words.get(count, count))
    rows = re.findall(r"^\| (\d+) \| (\d+) +\| (\d+) +\| (\w+) +\| (\d+|–) +\|$", s121, re.M)
    c.eq("rows of the 12.1 frame table", len(rows), len(fs))
    for (i, off, length, kind, leaf), f in zip(rows, fs):
        c.eq(f"12.1 frame {i}", (f.index, f.offset, f.length, f.kind, f.leaf),
             (int(i), int(off), int(length), kind, None if leaf == "–" else int(leaf)))
    d = dumps(s121)
    pos = 0
    for off in sorted(d):
        raw, ascii_ok, line = d[off]
        c.eq(f"dump offset (contiguous) {line[:9]}", off, pos)
        c.eq(f"dump bytes at {off}", init[off : off + len(raw)], raw)
        c.true(f"dump ASCII column of {line!r}", ascii_ok)
        pos = off + len(raw)
    c.eq("the dumps cover the whole init file", pos, len(init))
    for want, at, end in byte_tables(s121):
        if end is None:
            c.eq(f"byte table row at {at}", init[at : at + len(want)], want)
        else:
            got = init[at : end + 1]
            c.true(f"byte table row {at}–{end}: {got.hex()[:16]}… vs {want[0].hex()}…", got.startswith(want[0]))
            # Known: 12.1 frame 1 abbreviates hash 1 (bytes 271-302) as `1013…0971`; it ends in 2009
            # (0x71 at 303 is the trailing length).
            known = bytes.fromhex("0971") if (at, end) == (271, 302) else None
            c.erratum(f"last bytes of the byte table row {at}–{end}", got[-len(want[1]) :], want[1], known)
    genesis = one(r'^(\{"kind":"genesis".*\})$', s121, "genesis header", re.M)
    c.eq("genesis header", fs[0].header.decode(), genesis)
    c.eq("genesis header length", len(fs[0].header), int(one(r"the (\d+)-byte genesis header", s121, "genesis length")))
    leaf0 = H(b"\x00", fs[0].header)
    c.eq("leaf 0", leaf0.hex(), one(r"Leaf 0 = .*?=\s+`([0-9a-f]{64})`", s121, "leaf 0", re.S))
    trust = fs[0].h["trust"]
    fp_text = one(r'Trust-root fingerprint = `H\("([^"]+)"\)`', s121, "fingerprint input").replace("\\n", "\n")
    c.eq("fingerprint input", fp_text, f"{trust['threshold']}\n" + "".join(k + "\n" for k in sorted(trust["keys"])))
    c.eq("fingerprint", r.fingerprint(trust), one(r"Trust-root fingerprint = .*?=\s+`([0-9a-f]{64})`", s121, "fp", re.S))
    manifest = one(r"header of (\d+) bytes `(\{\"kind\":\"manifest\"[^`]*\})`", s121, "empty manifest")
    c.eq("12.1 manifest header", fs[3].header.decode(), manifest[1])
    c.eq("12.1 manifest header length", len(fs[3].header), int(manifest[0]))
    leaf1 = H(b"\x00", fs[3].header)
    leaf1_doc = one(r"Leaf 1 = `H\(00 ([0-9a-f]+)\)` =\s+`([0-9a-f]{64})`", s121, "leaf 1")
    c.eq("leaf 1 data", fs[3].header.hex(), leaf1_doc[0])
    c.eq("leaf 1", leaf1.hex(), leaf1_doc[1])
    root2 = r.node_hash(leaf0, leaf1)
    root_doc = one(r"`H\(01 \|\| leaf 0 \|\| leaf 1\)` =\s+`([0-9a-f]{64})`,\s+base64 `([^`]+)`", s121, "root 2")
    c.eq("root of tree 2", root2.hex(), root_doc[0])
    c.eq("root of tree 2, base64", base64.b64encode(root2).decode(), root_doc[1])
    tile = fs[1]
    c.eq("tile payload offset", tile.payload_offset, int(one(r"the payload offset is (\d+)", s121, "tile payload")))
    c.eq("tile payload", init[tile.payload_offset : tile.payload_offset + 64], leaf0 + leaf1)
    mp = fs[2]
    mhead = one(r"Header `(\{\"kind\":\"map\"[^`]*\})` \((\d+) bytes\); payload (\d+) bytes at (\d+)", s121, "map")
    c.eq("12.1 map", (mp.header.decode(), len(mp.header), mp.payload_length, mp.payload_offset),
         (mhead[0], int(mhead[1]), int(mhead[2]), int(mhead[3])))
    slot = one(r"one slot: `([0-9a-f]{16})` = (\d+)", s121, "map slot")
    c.eq("12.1 map payload", init[mp.payload_offset : mp.payload_offset + 40], leaf0 + bytes.fromhex(slot[0]))
    c.eq("12.1 map slot", int(slot[0], 16), int(slot[1]))
    c.eq("12.1 map slot is the tile's payload", int(slot[1]), tile.payload_offset)
    seal = fs[4]
    c.eq("seal header length", len(seal.header), int(one(r"the header is (\d+) bytes", s121, "seal length")))
    note_doc = one(r"decodes to this note:\n\n```\n(.*?)```", s121, "note", re.S)
    c.eq("the note", seal.h["checkpoint"], note_doc)
    text, sigs = r.parse_note(seal.h["checkpoint"])
    c.eq("signed text length", len(text.encode()), int(one(r"the first four lines, (\d+) bytes", s121, "text length")))
    c.eq("one signature line", len(sigs), 1)
    sig_doc = one(r"the Ed25519 signature\s+`([0-9a-f]{128})`", s121, "signature")
    c.eq("signature line key", sigs[0][:2], (name, stated[1]))
    c.eq("signature", sigs[0][2].hex(), sig_doc)
    c.eq("signature (deterministic, from the seed)", sk.sign(text.encode()).hex(), sig_doc)
    c.true("signature verifies strictly", r.verify_strict(pub, bytes.fromhex(sig_doc), text.encode()))
    c.eq("checkpoint", r.parse_checkpoint(text), ("example.com/demo", 2, root2, seal.h["time"]))
    for member in re.findall(r'`("(?:manifest|map)":\{"offset":\d+,"length":\d+\})`: frame \d', s121):
        c.true(f"the seal header holds {member}", member.encode() in seal.header)
    c.eq("seal refs", (seal.h["manifest"], seal.h["map"]),
         ({"offset": fs[3].offset, "length": fs[3].length}, {"offset": mp.offset, "length": mp.length}))

    # ---- 12.2
    c.eq("12.2 starts with the 12.1 file", full[: len(init)], init)
    gs = frames_of(full)
    rows = re.findall(r"^\| (\d+)–(\d+) +\| (\w+|…) +\| ([\d, –]+?) +\|", s122, re.M)
    c.true("the 12.2 table has rows", len(rows) > 5)
    rest = [f for f in gs if f.offset >= len(init)]
    c.eq("rows of the 12.2 table after 12.1", len(rows) - 1, len(rest))
    c.eq("first row: the 12.1 file", (rows[0][0], rows[0][1]), ("0", str(len(init))))
    for (start, end, kind, leaf), f in zip(rows[1:], rest):
        c.eq(f"12.2 frame at {start}", (f.offset, f.offset + f.length, f.kind, f.leaf),
             (int(start), int(end), kind, None if leaf.strip() == "–" else int(leaf)))
    c.eq("12.2 file length", len(full), int(rows[-1][1]))
    by_leaf = {f.leaf: f for f in gs if f.leaf is not None}
    entry = one(r'^(\{"kind":"entry".*\})$', s122, "entry header", re.M)
    c.eq("leaf 2 header", by_leaf[2].header.decode(), entry)
    index = one(r'^(\{"kind":"index".*\})$', s122, "index header", re.M)
    c.eq("leaf 3 header", by_leaf[3].header.decode(), index)
    listing = one(r'^(\[\{"path".*\])$', s122, "listing", re.M)
    ix = by_leaf[3]
    raw_listing = r.content_of(full, ix)
    c.eq("leaf 3 listing", raw_listing.decode(), listing)
    sizes = one(r"listing zstd-compressed \((\d+) → (\d+) bytes\)", s122, "listing sizes")
    c.eq("listing sizes", (ix.h["size"], ix.h["stored_size"], ix.h["compression"]),
         (int(sizes[0]), int(sizes[1]), "zstd"))
    content = r.content_of(full, by_leaf[2])
    c.eq("leaf 2 content", content, b"#!/bin/sh\necho hello\n")
    c.eq("leaf 4 content", r.content_of(full, by_leaf[4]), b"#!/bin/sh\necho hi\n")
    manifest = one(r'^(\{"kind":"manifest".*\})$', s122, "manifest", re.M)
    c.eq("leaf 6 header", by_leaf[6].header.decode(), manifest)
    tree = r.Tree()
    tree.leaves = [H(b"\x00", by_leaf[i].header) for i in range(7)]
    hashes = re.findall(r"^\| (?:`([^`]+)`|(leaf \d+)) \| `([0-9a-f]{64})`", s122, re.M)
    c.true("the 12.2 hash table has rows", len(hashes) >= 8)
    for code, leaf, want in hashes:
        label = code or leaf
        if m := re.fullmatch(r"leaf (\d+)", label):
            got = tree.leaves[int(m[1])]
        elif m := re.match(r"node\((\d+),(\d+)\)", label):
            got = tree.node(int(m[1]), int(m[2]))
        elif label.startswith("root(7)"):
            got = tree.mth(0, 7)
        else:
            got = None
        c.eq(f"hash {label}", got.hex() if got else None, want)
    root7 = one(r"root\(7\)[^|]*\| `[0-9a-f]{64}` = `([^`]+)`", s122, "root(7) base64")
    c.eq("root(7) base64", base64.b64encode(tree.mth(0, 7)).decode(), root7)
    c.eq("node(1,0) is the root of 12.1", tree.node(1, 0), root2)
    seals = [f for f in gs if f.kind == "seal"][1:]
    c.eq("two seals of size 7", [r.parse_checkpoint(r.parse_note(s.h["checkpoint"])[0])[:3] for s in seals],
         [("example.com/demo", 7, tree.mth(0, 7))] * 2)
    c.eq("seal times", [s.h["time"] for s in seals],
         [int(x) for x in re.findall(r"--time (\d+)", s122)])
    refs = one(r'`("manifest":\{[^`]*\})` and `("map":\{[^`]*\})`', s122, "seal refs")
    for s in seals:
        c.true(f"seal at {s.offset} holds {refs}", all(x.encode() in s.header for x in refs))
    c.eq("heartbeat length", seals[1].length, int(one(r"by reading just its\s+(\d+) bytes", s122, "heartbeat")))
    c.eq("heartbeat repeats the refs", (seals[1].h["manifest"], seals[1].h["map"]), (seals[0].h["manifest"], seals[0].h["map"]))
    mp7 = [f for f in gs if f.kind == "map"][-1]
    slot7 = int(one(r"one slot, the\s+payload offset (\d+) of the width-7 tile", s122, "map slot"))
    tile7 = [f for f in gs if f.kind == "tile"][-1]
    c.eq("12.2 tile payload offset", tile7.payload_offset, slot7)
    c.eq("12.2 map payload", full[mp7.payload_offset : mp7.payload_offset + mp7.payload_length],
         tree.node(2, 0) + tree.node(1, 2) + slot7.to_bytes(8, "big"))
    proof = tree.subproof(2, 0, 7, True)  # RFC 9162 2.1.4.1
    c.true("consistency proof 2 -> 7 verifies", r.verify_consistency(2, 7, root2, tree.mth(0, 7), proof))
    named = one(r"The consistency proof from tree 2 to tree 7 is `\[([^\]]*)\]`", s122, "proof 2 -> 7")
    labels = [x.strip() for x in " ".join(named.split()).split(", ")]

    def label_hash(label):
        if m := re.fullmatch(r"leaf (\d+)", label):
            return f"leaf {m[1]}"
        if m := re.fullmatch(r"node\((\d+),(\d+)\)", label):
            return f"node({m[1]},{m[2]})"
        return label

    def proof_label(x):
        for h in range(3):
            for k in range(7 >> h):
                if tree.node(h, k) == x:
                    return f"leaf {k}" if h == 0 else f"node({h},{k})"
        return "H(01‖node(1,2)‖leaf 6)" if x == r.node_hash(tree.node(1, 2), tree.leaves[6]) else x.hex()

    # Known: 12.2 gives [node(1,1), node(1,2), leaf 6], but RFC 9162 PROOF(2, D[0:7]) is
    # [node(1,1), MTH(D[4:7])] = [node(1,1), H(01‖node(1,2)‖leaf 6)]: two hashes.
    c.erratum("consistency proof from tree 2 to tree 7 (RFC 9162 2.1.4.1)", [proof_label(x) for x in proof],
              [label_hash(x) for x in labels], ["node(1,1)", "node(1,2)", "leaf 6"])

    for x in c.errata:
        print(f"ERRATUM: {x}")
    for x in c.failures:
        print(f"MISMATCH: {x}")
    if c.failures:
        return 1
    print(f"OK: {c.count} checks")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
