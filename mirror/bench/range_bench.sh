#!/usr/bin/env bash
# Random 64 KiB range requests against dare-mirror and nginx, same file,
# same machine, same run. Prints requests/s for each, the ratio dare/nginx,
# the CPU time each server spent per request, and the servers' peak RSS.
#
#   mirror/bench/range_bench.sh            # defaults below
#   RUNS=10 DURATION=5s CONNS=32 mirror/bench/range_bench.sh
#
# The runs alternate between the servers (who goes first alternates too) and
# the summary gives medians, so that load from other processes on the
# machine hits both alike. CPU time per request (user + system, from
# /proc/PID/stat) does not depend on how busy the machine is.
#
# Needs nginx and wrk (Debian: apt-get install -y nginx wrk). Both servers get
# two workers (dare: a 2-thread tokio runtime; nginx: worker_processes 2) and
# share the machine's cores with wrk. Only loopback addresses are used.
set -euo pipefail

RUNS=${RUNS:-8}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-32}
WRK_THREADS=${WRK_THREADS:-2}
SIZE_MIB=${SIZE_MIB:-256}
RANGE_LEN=${RANGE_LEN:-65536}
SERVER_THREADS=${SERVER_THREADS:-2}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

for tool in nginx wrk python3; do
    command -v "$tool" >/dev/null || {
        echo "range_bench: $tool not found (apt-get install -y nginx wrk)" >&2
        exit 1
    }
done

echo "building dare-mirror (release)..."
(cd "$repo" && cargo build --release --quiet -p dare-mirror --example serve_dir)
serve_dir="$repo/target/release/examples/serve_dir"

tmp=$(mktemp -d -t dare-range-bench.XXXXXX)
dare_pid=""
cleanup() {
    [ -n "$dare_pid" ] && kill "$dare_pid" 2>/dev/null && wait "$dare_pid" 2>/dev/null
    [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null
    sleep 0.2
    rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/www"
echo "creating a ${SIZE_MIB} MiB random file..."
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$tmp/www/file.bin"
size=$(stat -c %s "$tmp/www/file.bin")

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- dare ---------------------------------------------------------------
"$serve_dir" "$tmp/www" 127.0.0.1:0 --threads "$SERVER_THREADS" > "$tmp/dare.out" 2> "$tmp/dare.err" &
dare_pid=$!
for _ in $(seq 50); do
    grep -q '^listening on' "$tmp/dare.out" 2>/dev/null && break
    sleep 0.1
done
dare_url=$(sed -n 's/^listening on //p' "$tmp/dare.out")
[ -n "$dare_url" ] || { echo "dare did not start:" >&2; cat "$tmp/dare.err" >&2; exit 1; }

# --- nginx --------------------------------------------------------------
nginx_port=$(free_port)
user_line=""
[ "$(id -u)" = 0 ] && user_line="user $(id -un) $(id -gn);"
mkdir -p "$tmp/nginx"
cat > "$tmp/nginx.conf" <<CONF
$user_line
worker_processes $SERVER_THREADS;
pid $tmp/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    # tcp_nopush stays off (nginx's default): with ranges it delays the
    # last segment of each response by ~40 ms on loopback.
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    server {
        listen 127.0.0.1:$nginx_port;
        root $tmp/www;
    }
}
CONF
nginx -p "$tmp/nginx" -c "$tmp/nginx.conf" -e "$tmp/nginx/error.log"
for _ in $(seq 50); do [ -s "$tmp/nginx.pid" ] && break; sleep 0.1; done
nginx_url="http://127.0.0.1:$nginx_port"

# --- load ---------------------------------------------------------------
cat > "$tmp/ranges.lua" <<LUA
local size, len = $size, $RANGE_LEN
local counter = 0
function setup(thread)
    counter = counter + 1
    thread:set("id", counter)
end
function init(args)
    math.randomseed(os.time() * 1000 + id)
end
function request()
    local first
    if math.random(2) == 1 then
        first = math.random(0, math.floor(size / len) - 1) * len  -- aligned
    else
        first = math.random(0, size - len)             -- unaligned
    end
    return wrk.format("GET", "/file.bin", { Range = "bytes=" .. first .. "-" .. (first + len - 1) })
end
LUA

# Both must answer a range with 206 and the exact bytes.
for url in "$dare_url" "$nginx_url"; do
    got=$(curl -s -o "$tmp/check" -w '%{http_code}' -r 1000-66535 "$url/file.bin")
    [ "$got" = 206 ] && cmp -s "$tmp/check" <(tail -c +1001 "$tmp/www/file.bin" | head -c 65536) || {
        echo "range_bench: $url did not serve the range correctly (status $got)" >&2
        exit 1
    }
done

cat "$tmp/www/file.bin" > /dev/null  # page cache

run_wrk() { # url -> requests/s
    local out
    out=$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" -s "$tmp/ranges.lua" "$1/file.bin")
    if grep -q -e 'Non-2xx' -e 'Socket errors' <<<"$out"; then
        echo "range_bench: errors against $1:" >&2
        echo "$out" >&2
    fi
    awk '/^Requests\/sec:/ { print $2 }' <<<"$out"
}

hwm() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# Clock ticks of user + system time of the given processes (threads included).
ticks() {
    local total=0 p
    for p in "$@"; do
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
    done
    echo "$total"
}
hz=$(getconf CLK_TCK)
nginx_workers=$(pgrep -P "$(cat "$tmp/nginx.pid")" | tr '\n' ' ')

# One timed run: prints "req/s cpu_us_per_request".
measure() { # url pids...
    local url=$1 before after rps secs
    shift
    before=$(ticks "$@")
    rps=$(run_wrk "$url")
    after=$(ticks "$@")
    secs=${DURATION%s}
    awk -v r="$rps" -v t=$((after - before)) -v hz="$hz" -v s="$secs" \
        'BEGIN { printf "%s %.1f\n", r, t / hz * 1e6 / (r * s) }'
}

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

echo "wrk -t$WRK_THREADS -c$CONNS -d$DURATION, random ${RANGE_LEN}-byte ranges of a ${SIZE_MIB} MiB file, $RUNS runs each"
echo "warm-up..."
WARM=${WARM:-3s}
wrk -t"$WRK_THREADS" -c"$CONNS" -d"$WARM" -s "$tmp/ranges.lua" "$dare_url/file.bin" > /dev/null
wrk -t"$WRK_THREADS" -c"$CONNS" -d"$WARM" -s "$tmp/ranges.lua" "$nginx_url/file.bin" > /dev/null

printf '%-4s %12s %12s %7s %14s %14s\n' run dare_req/s nginx_req/s ratio dare_cpu_us/req nginx_cpu_us/req
: > "$tmp/results"
for run in $(seq "$RUNS"); do
    if [ $((run % 2)) = 1 ]; then
        read -r d dc < <(measure "$dare_url" "$dare_pid")
        read -r n nc < <(measure "$nginx_url" $nginx_workers)
    else
        read -r n nc < <(measure "$nginx_url" $nginx_workers)
        read -r d dc < <(measure "$dare_url" "$dare_pid")
    fi
    ratio=$(awk -v d="$d" -v n="$n" 'BEGIN { printf "%.3f", d / n }')
    printf '%-4s %12s %12s %7s %14s %14s\n' "$run" "$d" "$n" "$ratio" "$dc" "$nc"
    echo "$d $n $ratio $dc $nc" >> "$tmp/results"
done
col() { awk -v c="$1" '{ print $c }' "$tmp/results" | median; }
printf 'median: dare %.0f req/s, nginx %.0f req/s, ratio dare/nginx %.3f (mean %.3f)\n' \
    "$(col 1)" "$(col 2)" "$(col 3)" "$(awk '{ s += $3 } END { print s / NR }' "$tmp/results")"
printf 'median CPU per request: dare %s us, nginx %s us\n' "$(col 4)" "$(col 5)"
nginx_hwm=0
for p in $nginx_workers; do nginx_hwm=$((nginx_hwm + $(hwm "$p"))); done
echo "peak RSS: dare $(hwm "$dare_pid") KiB; nginx workers $nginx_hwm KiB (sum), master $(hwm "$(cat "$tmp/nginx.pid")") KiB"
