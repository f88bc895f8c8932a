#!/usr/bin/env bash
# What a private channel costs: publishing and updating ~300 MB of real build
# output (ELF files and shared libraries from this machine's /usr) through
# an encrypted channel vs a plain one, and next to `age -r` encrypting the
# same bytes, all in the same run. Medians of RUNS (default 3) runs each.
#
# usage: benches/private.sh            needs: age (apt-get install -y age)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v age >/dev/null && command -v age-keygen >/dev/null ||
  { echo "benches/private.sh needs age and age-keygen (apt-get install -y age)"; exit 1; }
RUNS=${RUNS:-3}
SIZE_MB=${SIZE_MB:-300}
# DARE=path/to/dare uses a dare already built (release); otherwise it is built.
if [ -z "${DARE:-}" ]; then
  cargo build --release --quiet
  DARE=$PWD/target/release/dare
fi
T=x86_64-unknown-linux-gnu
W=$(mktemp -d /tmp/dare-private.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$W"' EXIT

# The build: real binaries and libraries, up to SIZE_MB.
mkdir -p "$W/build"
total=0
while IFS= read -r f; do
  s=$(stat -c %s "$f")
  [ $((total + s)) -gt $((SIZE_MB << 20)) ] && break
  rel=${f#/}
  mkdir -p "$W/build/$(dirname "$rel")"
  cp "$f" "$W/build/$rel"
  total=$((total + s))
done < <(find /usr/lib /usr/bin /usr/libexec -type f -size +64k 2>/dev/null | LC_ALL=C sort)
tar -C "$W" -cf "$W/build.tar" build
echo "build: $(find "$W/build" -type f | wc -l) files, $((total >> 20)) MiB"

"$DARE" keygen --out "$W/k" >/dev/null
age-keygen -o "$W/id" 2>/dev/null
R=$(grep -o 'age1[a-z0-9]*' "$W/id")

now() { date +%s.%N; }
median() { LC_ALL=C sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# One timed run of "$@", in seconds.
timed() {
  local t0 t1
  t0=$(now)
  # A failed command fails the bench (this runs in a subshell: leave a mark).
  "$@" >/dev/null || { echo "benches/private.sh: failed: $*" >&2; touch "$W/failed"; }
  t1=$(now)
  echo "$t1 - $t0" | bc -l
}

publish() { # mode run
  local c=$W/$1-$2.dare extra=()
  rm -f "$c"
  "$DARE" init "$c" --key "$W/k" --origin example.com/bench >/dev/null
  [ "$1" = private ] && extra=(--encrypt-to "$R")
  timed "$DARE" publish "$c" --key "$W/k" --version 1.0.0 --artifact "$T=$W/build" "${extra[@]}"
}

update() { # mode run
  local c=$W/$1-1.dare s=$W/state-$1-$2 i=$W/install-$1-$2 extra=()
  rm -rf "$s" "$i"
  [ "$1" = private ] && extra=(--identity "$W/id")
  timed "$DARE" update --from "$c" --trust "$W/k.pub" --state "$s" --install "$i" --target "$T" \
    --max-age 999999999 "${extra[@]}"
}

ager() { timed sh -c "age -r $R < '$W/build.tar' > '$W/build.tar.age'"; }

declare -A res
for mode in plain private; do
  res[publish-$mode]=$(for r in $(seq 1 "$RUNS"); do publish "$mode" "$r"; done | median)
done
# Update from the first run's container of each mode.
for mode in plain private; do
  cp "$W/$mode-1.dare" "$W/$mode-keep.dare"
  res[update-$mode]=$(for r in $(seq 1 "$RUNS"); do update "$mode" "$r"; done | median)
done
res[age]=$(for r in $(seq 1 "$RUNS"); do ager; done | median)
[ ! -e "$W/failed" ] || { echo "benches/private.sh: a run failed (above)"; exit 1; }
# The same files, byte for byte and mode for mode (not tar: mtimes differ).
listing() { (cd "$1" && find . -type f -printf '%m %p\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); }
[ "$(find "$W/install-plain-1/current/" -type f | wc -l)" -gt 0 ] || { echo "the plain install is empty"; exit 1; }
cmp <(listing "$W/install-private-1/current/") <(listing "$W/install-plain-1/current/") >/dev/null ||
  { echo "the private and plain installs differ"; exit 1; }

ratio() { echo "scale=3; $1 / $2" | bc -l; }
printf '%-34s %8s s\n' "publish, plain channel" "${res[publish-plain]}"
printf '%-34s %8s s   %sx plain (goal <= 1.1)\n' "publish, private channel" "${res[publish-private]}" \
  "$(ratio "${res[publish-private]}" "${res[publish-plain]}")"
printf '%-34s %8s s   private publish = %sx age -r\n' "age -r of the same bytes (tar)" "${res[age]}" \
  "$(ratio "${res[publish-private]}" "${res[age]}")"
printf '%-34s %8s s\n' "update (first install), plain" "${res[update-plain]}"
printf '%-34s %8s s   %sx plain (goal <= 1.1)\n' "update (first install), private" "${res[update-private]}" \
  "$(ratio "${res[update-private]}" "${res[update-plain]}")"
printf 'containers: plain %s bytes, private %s bytes\n' "$(stat -c %s "$W/plain-1.dare")" "$(stat -c %s "$W/private-1.dare")"
