#!/usr/bin/env python3
"""Writes a partial container (FORMAT.md section 11) with several segments
from a full container, to check that readers accept what section 11 allows
beyond dare's own single-segment replicas.

Usage: make_partial.py FULL OUT SEGMENT...

Each SEGMENT is `S:KEYS[:FLAGS]`: S is the number (from 0) of a seal of
FULL; KEYS a comma-separated list of channel/target whose index (the one the
seal's manifest names) the segment holds, or empty for a seal alone (a
heartbeat: it must repeat the previous segment's tree). FLAGS, comma-separated:
`entries` also copies every entry and delta those indexes name; `keys` copies
the keys leaf the manifest names; `extra` adds a proof node nothing needs; `repeat` repeats
the first proof node (`conflict`: with another hash); `incomplete` adds a node not complete in the tree;
`reverse` writes the leaves before the manifest, and the proof's nodes, in
reverse order; `header-only` keeps each index as its header with an empty
payload, followed by a `listing` frame (3.13), as dare's updater does. A segment is the copied leaf frames
(in leaf order: the genesis first in the first segment, then entries, indexes,
the manifest), a proof frame with the node hashes section 9.2 step 5 needs
given the previous segment's tree, and a copy of the seal.
"""

import json
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import dare_reader as r  # noqa: E402


def encode_frame(header, payload):
    """2.1: a frame with minimal-width lengths."""

    def width(n):
        return next((t, w) for t, w in ((0, 1), (1, 2), (2, 4), (3, 8)) if n < 1 << (8 * w))

    body = b""
    for record in (header, payload):
        t, w = width(len(record))
        body += bytes([0xF0 + t]) + len(record).to_bytes(w, "big") + record
    t, w = width(len(body))
    return bytes([0xF4 + t]) + len(body).to_bytes(w, "big") + body + len(body).to_bytes(w, "little") + bytes([0xF4 + t])


def needed(lo, hi, old, known, frontier, out):
    """The complete nodes the recomputation of 9.2 step 5 takes as one hash:
    ranges over no known leaf that do not straddle `old`, other than the
    previous tree's frontier nodes."""
    size = hi - lo
    node = (size.bit_length() - 1, lo // size) if size & (size - 1) == 0 else None
    if node and not any(lo <= i < hi for i in known) and not lo < old < hi:
        if node not in frontier:
            out.append(node)
        return
    if size > 1:
        k = r.split(size)
        needed(lo, lo + k, old, known, frontier, out)
        needed(lo + k, hi, old, known, frontier, out)


def main(argv):
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    data = Path(argv[1]).read_bytes()
    frames, o = [], 0
    while o < len(data):
        f = r.read_frame(data, o, len(data), len(frames))
        r.parse_header(f)
        frames.append(f)
        o += f.length
    tree, by_leaf = r.Tree(), {}
    for f in frames:
        if f.kind in r.LEAF_KINDS:
            f.leaf = len(tree.leaves)
            by_leaf[f.leaf] = f
            tree.leaves.append(r.sha256(b"\x00", f.header))
    seals = [f for f in frames if f.kind == "seal"]
    out, old, frontier = b"", 0, set()
    for spec in argv[3:]:
        number, keys, *flags = spec.split(":")
        seal = seals[int(number)]
        n = r.parse_checkpoint(r.parse_note(seal.h["checkpoint"])[0])[1]
        if not keys:
            out += data[seal.offset : seal.offset + seal.length]
            continue
        flags = flags[0].split(",") if flags else []
        manifest = by_leaf[n - 1]
        releases = {f"{x['channel']}/{x['target']}": x["index"]["leaf"] for x in manifest.h["releases"]}
        leaves = {0} if not out else set()
        for key in keys.split(","):
            index = by_leaf[releases[key]]
            leaves.add(index.leaf)
            if "entries" in flags:
                for x in r.parse_listing(data, index):
                    leaves.add(x["entry"]["leaf"])
                    leaves.update(d["leaf"] for d in x["deltas"])
        if "keys" in flags and "keys" in manifest.h:
            leaves.add(manifest.h["keys"]["leaf"])
        order = sorted(leaves - {n - 1})
        nodes = []
        needed(0, n, old, set(order) | {n - 1}, frontier, nodes)
        if "extra" in flags:  # a child of a node taken whole: never used
            h, k = next(x for x in nodes if x[0] > 0)
            nodes.append((h - 1, 2 * k))
        if "repeat" in flags or "conflict" in flags:
            nodes.append(nodes[0])
        if "incomplete" in flags:
            nodes.append((n.bit_length(), 0))
        if "reverse" in flags:
            order, nodes = order[:1] + order[1:][::-1] if order[:1] == [0] else order[::-1], nodes[::-1]
        order.append(n - 1)
        for i in order:
            f = by_leaf[i]
            if f.kind == "index" and "header-only" in flags:
                listing = r.content_of(data, f)
                out += encode_frame(f.header, b"")
                out += encode_frame(json.dumps({"kind": "listing", "size": len(listing), "sha256": f.h["sha256"]},
                                               separators=(",", ":")).encode(), listing)
            else:
                out += data[f.offset : f.offset + f.length]
        header = {"kind": "proof", "size": n, "leaves": order, "nodes": [list(x) for x in nodes]}
        hashes = [tree.node(*x) if (x[1] + 1) << x[0] <= n else bytes(32) for x in nodes]
        if "conflict" in flags:
            hashes[-1] = bytes(32)
        out += encode_frame(json.dumps(header, separators=(",", ":")).encode(), b"".join(hashes))
        out += data[seal.offset : seal.offset + seal.length]
        old, frontier = n, set(r.frontier_nodes(n))
    Path(argv[2]).write_bytes(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
