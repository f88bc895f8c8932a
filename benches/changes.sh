#!/usr/bin/env bash
# What a release costs when little changed, on real builds.
#
# Real multi-platform builds: the wheels of two consecutive releases of ruff
# (one ~25 MB binary, renamed with the version in its path) and of numpy
# (~900 files, most unchanged) for 6 platforms, from PyPI, cached outside the
# repository. Each platform's unpacked wheel is one target's artifact.
# For each package: publish the old release for all 6 targets, then the new
# one; a client of one target installs the old release through nginx, then
# updates; then an up-to-date check. Bytes and requests come from nginx's
# access log. Side by side, in the same run: `zstd -19 --long --patch-from`
# and `bsdiff` of each changed file (paired by path, or by the path with the
# version in it, or by a unique file name, as the publisher pairs them), zstd
# -19 of the whole build, and the container's growth against the changed
# files' compressed size plus their deltas. Then the scale part: publish
# time, seal size and check bytes at 1k, 100k and 1M leaves
# (`cargo bench --bench scale`).
#
# usage: benches/changes.sh [ruff|numpy|scale]...   (default: all three)
#   needs nginx, zstd, bsdiff, python3 with pip; the first run downloads
#   ~310 MB of wheels into ${DARE_BENCH_CACHE:-~/.cache/dare-bench}.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for tool in "$NGINX" zstd bsdiff python3; do
  command -v "$tool" >/dev/null || { echo "benches/changes.sh needs $tool (apt-get install -y nginx zstd bsdiff python3-pip)"; exit 1; }
done
CACHE=${DARE_BENCH_CACHE:-$HOME/.cache/dare-bench}
PARTS=${*:-ruff numpy scale}
cargo build --release --quiet
DARE=$ROOT/target/release/dare
CLIENT=x86_64-unknown-linux-gnu
W=$(mktemp -d /tmp/dare-changes.XXXXXX)
chmod 755 "$W"   # nginx's workers run as another user
trap '[ -f "$W/nginx.pid" ] && kill "$(cat "$W/nginx.pid")" 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$W"' EXIT

# package old new: the releases measured; triple=platform tag for each package.
declare -A OLD=([ruff]=0.17.5 [numpy]=2.4.5) NEW=([ruff]=0.17.6 [numpy]=2.4.6)
declare -A PLAT_ruff=(
  [x86_64-unknown-linux-gnu]=manylinux_2_17_x86_64 [aarch64-unknown-linux-gnu]=manylinux_2_17_aarch64
  [x86_64-apple-darwin]=macosx_10_12_x86_64 [aarch64-apple-darwin]=macosx_11_0_arm64
  [x86_64-pc-windows-msvc]=win_amd64 [x86_64-unknown-linux-musl]=musllinux_1_2_x86_64)
declare -A PLAT_numpy=(
  [x86_64-unknown-linux-gnu]=manylinux_2_28_x86_64 [aarch64-unknown-linux-gnu]=manylinux_2_28_aarch64
  [x86_64-apple-darwin]=macosx_10_13_x86_64 [aarch64-apple-darwin]=macosx_11_0_arm64
  [x86_64-pc-windows-msvc]=win_amd64 [x86_64-unknown-linux-musl]=musllinux_1_2_x86_64)

# The unpacked build of package $1, version $2, triple $3 (downloaded once).
build_dir() {
  local pkg=$1 ver=$2 triple=$3 plat dir out
  local -n plats="PLAT_$pkg"
  plat=${plats[$triple]}
  out=$CACHE/$pkg/$ver/$triple
  if [ ! -d "$out" ]; then
    dir=$CACHE/wheels/$pkg-$ver-$plat
    if ! ls "$dir"/*.whl >/dev/null 2>&1; then
      local abi=(); [ "$pkg" = numpy ] && abi=(--abi cp312)
      python3 -m pip download --quiet --no-deps --only-binary=:all: --platform "$plat" --python-version 3.12 \
        --implementation cp "${abi[@]}" "$pkg==$ver" -d "$dir" >&2
    fi
    python3 - "$dir"/*.whl "$out" <<'PY'
import os, sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
tmp = out + ".tmp"
with zipfile.ZipFile(whl) as z:
    for info in z.infolist():
        if info.is_dir():
            continue
        p = os.path.join(tmp, info.filename)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with z.open(info) as src, open(p, "wb") as dst:
            dst.write(src.read())
        os.chmod(p, 0o755 if (info.external_attr >> 16) & 0o111 else 0o644)
os.rename(tmp, out)
PY
  fi
  echo "$out"
}

# References for one target: pairs changed files like the publisher does and
# prints JSON sums (zstd -19 patch-from, bsdiff, zstd -19 and -3 of the
# changed/new files, zstd -19 of the whole build).
references() {
  python3 - "$1" "$2" "$3" "$4" "$5" <<'PY'
import hashlib, json, os, subprocess, sys, tempfile
old, new, old_v, new_v, want_bsdiff = sys.argv[1:6]
def files(root):
    out = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = p
    return out
def sha(p):
    return hashlib.sha256(open(p, "rb").read()).hexdigest()
def size_of(cmd):
    with tempfile.TemporaryDirectory() as t:
        out = os.path.join(t, "o")
        subprocess.run(cmd(out), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return os.path.getsize(out)
o, n = files(old), files(new)
old_shas = {sha(p) for p in o.values()}
names = {}
for rel in o:
    names.setdefault(os.path.basename(rel), []).append(rel)
r = {"patch_from": 0, "bsdiff": 0, "changed": 0, "new": 0, "new_z19": 0, "changed_z3": 0, "full_z19": 0, "build": 0}
seen = set()
for rel, p in sorted(n.items()):
    r["build"] += os.path.getsize(p)
    r["full_z19"] += size_of(lambda out: ["zstd", "-q", "-19", "--long=31", p, "-o", out])
    s = sha(p)
    if s in old_shas or s in seen:
        continue
    seen.add(s)
    base = o.get(rel) or o.get(rel.replace(new_v, old_v))
    if base is None and len(names.get(os.path.basename(rel), [])) == 1:
        base = o[names[os.path.basename(rel)][0]]
    r["changed_z3"] += size_of(lambda out: ["zstd", "-q", "-3", p, "-o", out])
    if base is None:
        r["new"] += 1
        r["new_z19"] += size_of(lambda out: ["zstd", "-q", "-19", "--long=31", p, "-o", out])
        continue
    r["changed"] += 1
    r["patch_from"] += size_of(lambda out: ["zstd", "-q", "-19", "--long=31", "--patch-from=" + base, p, "-o", out])
    if want_bsdiff == "1":
        r["bsdiff"] += size_of(lambda out: ["bsdiff", base, p, out])
print(json.dumps(r))
PY
}

start_nginx() {
  mkdir -p "$W/www" "$W/logs" && chmod 755 "$W/www"
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > "$W/nginx.conf" <<CONF
worker_processes 1;
pid $W/nginx.pid;
error_log $W/logs/error.log;
events { worker_connections 64; }
http {
  log_format bench '\$request_method \$status \$body_bytes_sent \$bytes_sent "\$http_range"';
  access_log $W/logs/access.log bench;
  client_body_temp_path $W/logs; proxy_temp_path $W/logs; fastcgi_temp_path $W/logs;
  uwsgi_temp_path $W/logs; scgi_temp_path $W/logs;
  server { listen 127.0.0.1:$PORT; root $W/www; location / { } }
}
CONF
  "$NGINX" -c "$W/nginx.conf" -p "$W" -e "$W/logs/error.log"
}
serve() { cp "$1" "$W/www/.tmp" && chmod 644 "$W/www/.tmp" && mv "$W/www/.tmp" "$W/www/$2"; }
lines() { wc -l < "$W/logs/access.log"; }
# Requests and response bytes since log line $1 (nginx logs just after responding).
since() { sleep 0.3; tail -n +$(( $1 + 1 )) "$W/logs/access.log" | awk '{n++; b+=$3; w+=$4} END {print n+0, b+0, w+0}'; }
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.3f}x' if b else 'n/a')" "$1" "$2"; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

package() {
  local pkg=$1 old=${OLD[$1]} new=${NEW[$1]} d=$W/$1 t args_old=() args_new=()
  local -n plats="PLAT_$pkg"
  mkdir -p "$d"
  for t in "${!plats[@]}"; do
    args_old+=(--artifact "$t=$(build_dir "$pkg" "$old" "$t")")
    args_new+=(--artifact "$t=$(build_dir "$pkg" "$new" "$t")")
  done
  local T0; T0=$(date +%s)
  "$DARE" keygen --out "$d/k" --name "bench.example/$pkg" >/dev/null
  "$DARE" init "$d/c.dare" --key "$d/k" --origin "bench.example/$pkg" --time "$T0" >/dev/null
  "$DARE" publish "$d/c.dare" --key "$d/k" --version "$old" --time $((T0 + 1)) "${args_old[@]}" >/dev/null
  cp "$d/c.dare" "$d/old.dare"
  local len_old len_new t_pub0 t_pub
  len_old=$(stat -c %s "$d/c.dare")
  t_pub0=$(date +%s.%N)
  "$DARE" publish "$d/c.dare" --key "$d/k" --version "$new" --time $((T0 + 2)) "${args_new[@]}" > "$d/publish.txt"
  t_pub=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t_pub0" "$(date +%s.%N)")
  len_new=$(stat -c %s "$d/c.dare")

  # The client: installs the old release, then updates, then checks.
  serve "$d/old.dare" "$pkg.dare"
  local url="http://127.0.0.1:$PORT/$pkg.dare" st=$d/state inst=$d/install mark upd chk
  local up=("$DARE" update --from "$url" --trust "$d/k.pub" --state "$st" --install "$inst" --target "$CLIENT" --json)
  mark=$(lines); "${up[@]}" > "$d/first.json" 2>/dev/null; read -r first_reqs first_body _ <<< "$(since "$mark")"
  serve "$d/c.dare" "$pkg.dare"
  mark=$(lines); upd=$("${up[@]}" 2>/dev/null); read -r upd_reqs upd_body upd_wire <<< "$(since "$mark")"
  mark=$(lines); chk=$("${up[@]}" --check 2>/dev/null); read -r chk_reqs chk_body chk_wire <<< "$(since "$mark")"
  local installed state payload
  installed=$(du -sb "$inst/versions/$new" | cut -f1)
  state=$(du -sb "$st" | cut -f1)
  payload=$(( $(field "$upd" bytes_full) + $(field "$upd" bytes_delta) ))

  # References, in this run: the client's target, then growth over all targets.
  local ref ref_patch ref_bsdiff ref_full ref_new
  ref=$(references "$(build_dir "$pkg" "$old" "$CLIENT")" "$(build_dir "$pkg" "$new" "$CLIENT")" "$old" "$new" 1)
  ref_patch=$(field "$ref" patch_from); ref_bsdiff=$(field "$ref" bsdiff); ref_full=$(field "$ref" full_z19)
  ref_new=$(field "$ref" new_z19)
  local growth_ref=0 r
  for t in "${!plats[@]}"; do
    r=$(references "$(build_dir "$pkg" "$old" "$t")" "$(build_dir "$pkg" "$new" "$t")" "$old" "$new" 0)
    growth_ref=$(( growth_ref + $(field "$r" changed_z3) + $(field "$r" patch_from) ))
  done

  echo "== $pkg $old -> $new, 6 targets; client $CLIENT through nginx"
  echo "   build: $(field "$ref" build) bytes in $(find "$(build_dir "$pkg" "$new" "$CLIENT")" -type f | wc -l) files;" \
       "changed $(field "$ref" changed), new $(field "$ref" new) (paired by path, versioned path or file name)"
  echo "   up-to-date check:          $chk_body bytes in $chk_reqs request(s) ($chk_wire with HTTP headers)   goal: <= 1024 in 1"
  echo "   first install:             $first_body bytes in $first_reqs requests"
  echo "   update:                    $upd_body bytes in $upd_reqs requests ($upd_wire with HTTP headers):" \
       "$(field "$upd" bytes_full) whole entries, $(field "$upd" bytes_delta) deltas, $(field "$upd" bytes_reused) reused"
  echo "     beyond the payload:      $((upd_body - payload)) bytes (index, manifest, map, seal, proof hashes)"
  echo "     vs zstd -19 --long --patch-from of the changed files + zstd -19 of new ones ($((ref_patch + ref_new))):" \
       "$(ratio "$upd_body" $((ref_patch + ref_new)))   goal: <= 1.1x + 4 KiB ($(( (ref_patch + ref_new) * 11 / 10 + 4096 )))"
  echo "     vs bsdiff of the changed files + zstd -19 of new ones ($((ref_bsdiff + ref_new))): $(ratio "$upd_body" $((ref_bsdiff + ref_new)))"
  echo "     vs the whole build, zstd -19 --long per file ($ref_full): $(ratio "$upd_body" "$ref_full")"
  echo "   container growth:          $((len_new - len_old)) bytes for the release of 6 targets;" \
       "changed files' zstd -3 + their patch-from deltas: $growth_ref ($(ratio $((len_new - len_old)) "$growth_ref"))   goal: <= 1x"
  echo "   publish of the new release: ${t_pub}s (zstd -19 deltas included)"
  echo "   client state:              $state bytes; installed build $installed bytes ($(ratio "$state" "$installed"))   goal: <= 1.1x + 1 MiB"
  sed 's/^/   | /' "$d/publish.txt"
}

start_nginx
for p in $PARTS; do
  case $p in
    ruff | numpy) package "$p" ;;
    scale) (cd "$ROOT" && cargo bench --quiet --bench scale) ;;
    *) echo "unknown part $p (ruff, numpy, scale)"; exit 2 ;;
  esac
done
