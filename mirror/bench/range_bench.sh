#!/usr/bin/env bash
# Random 64 KiB range requests against `dare serve` and nginx: same file,
# same machine, same run.
#
#   mirror/bench/range_bench.sh                   # defaults below
#   RUNS=10 DURATION=5s CONNS=32 mirror/bench/range_bench.sh
#   ACCESS_LOG=1 mirror/bench/range_bench.sh      # also dare serve logging every request
#   DARE_ALT=/tmp/dare-old DARE_ALT_ARGS= mirror/bench/range_bench.sh
#                                                 # also another dare binary (ARGS default: --workers N)
#
# Servers, each with two workers, sharing the machine's cores with wrk:
#   dare          target/release/dare serve DIR --listen 127.0.0.1:PORT --workers 2,
#                 with DARE_LOG=warn (no access log)
#   nginx         worker_processes 2, sendfile on, one shared listener
#   nginx-rp      as nginx, with `listen ... reuseport`
#   dare-log      (ACCESS_LOG=1) as dare, with the default INFO access log
#                 written to a file
#   dare-alt      (DARE_ALT=BIN) as dare, run from another binary
# Ratios compare dare with nginx and with nginx-rp.
#
# Every run measures each server once, in an order that rotates, and the
# summary gives medians, so load from other processes hits all alike. The CPU
# time each server spends per request (user + system, from /proc/PID/stat)
# does not depend on how busy the machine is. Peak RSS is VmHWM.
#
# Needs nginx and wrk (Debian: apt-get install -y nginx wrk). Only loopback
# addresses are used; everything started is stopped on exit.
set -euo pipefail

RUNS=${RUNS:-6}
DURATION=${DURATION:-5s}
WARM=${WARM:-2s}
CONNS=${CONNS:-32}
WRK_THREADS=${WRK_THREADS:-2}
SIZE_MIB=${SIZE_MIB:-256}
RANGE_LEN=${RANGE_LEN:-65536}
WORKERS=${WORKERS:-2}
ACCESS_LOG=${ACCESS_LOG:-}
DARE_ALT=${DARE_ALT:-}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

for tool in nginx wrk curl python3; do
    command -v "$tool" >/dev/null || {
        echo "range_bench: $tool not found (apt-get install -y nginx wrk curl)" >&2
        exit 1
    }
done

echo "building dare (release)..."
(cd "$repo" && cargo build --release --quiet --bin dare)
dare="$repo/target/release/dare"

tmp=$(mktemp -d -t dare-range-bench.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    for conf in nginx nginx-rp; do
        [ -s "$tmp/$conf.pid" ] && kill "$(cat "$tmp/$conf.pid")" 2>/dev/null || true
    done
    sleep 0.3
    rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/www"
echo "creating a ${SIZE_MIB} MiB random file..."
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$tmp/www/file.bin"
size=$(stat -c %s "$tmp/www/file.bin")

declare -A url cpu_pids

# A port the kernel just handed out and released.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_dare() { # name, binary, DARE_LOG, extra args...
    local name=$1 bin=$2 log=$3 port
    shift 3
    port=$(free_port)
    DARE_LOG=$log "$bin" serve "$tmp/www" --listen "127.0.0.1:$port" "$@" \
        > "$tmp/$name.out" 2> "$tmp/$name.err" &
    pids+=($!)
    cpu_pids[$name]=$!
    for _ in $(seq 50); do
        grep -q '^listening on' "$tmp/$name.out" 2>/dev/null && break
        sleep 0.1
    done
    url[$name]=$(sed -n 's/^listening on //p' "$tmp/$name.out")
    [ "${url[$name]}" = "http://127.0.0.1:$port" ] || {
        echo "$name did not start on port $port:" >&2
        cat "$tmp/$name.out" "$tmp/$name.err" >&2
        exit 1
    }
}

start_nginx() { # name, listen options
    local name=$1 options=$2 port user_line=""
    port=$(free_port)
    [ "$(id -u)" = 0 ] && user_line="user $(id -un) $(id -gn);"
    mkdir -p "$tmp/$name"
    cat > "$tmp/$name.conf" <<CONF
$user_line
worker_processes $WORKERS;
pid $tmp/$name.pid;
error_log $tmp/$name/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    # tcp_nopush stays off (nginx's default): on loopback it delayed the
    # last segment of every range response by ~40 ms.
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path $tmp/$name/body;
    proxy_temp_path $tmp/$name/proxy;
    fastcgi_temp_path $tmp/$name/fastcgi;
    uwsgi_temp_path $tmp/$name/uwsgi;
    scgi_temp_path $tmp/$name/scgi;
    server {
        listen 127.0.0.1:$port $options;
        root $tmp/www;
    }
}
CONF
    nginx -p "$tmp/$name" -c "$tmp/$name.conf" -e "$tmp/$name/error.log"
    for _ in $(seq 50); do [ -s "$tmp/$name.pid" ] && break; sleep 0.1; done
    sleep 0.2
    url[$name]="http://127.0.0.1:$port"
    cpu_pids[$name]=$(pgrep -P "$(cat "$tmp/$name.pid")" | tr '\n' ' ')
}

start_dare dare "$dare" warn --workers "$WORKERS"
start_nginx nginx ""
start_nginx nginx-rp reuseport
names=(dare nginx nginx-rp)
if [ -n "$ACCESS_LOG" ]; then
    start_dare dare-log "$dare" info --workers "$WORKERS"
    names+=(dare-log)
fi
if [ -n "$DARE_ALT" ]; then
    # shellcheck disable=SC2086 # DARE_ALT_ARGS is a list of words.
    start_dare dare-alt "$DARE_ALT" warn ${DARE_ALT_ARGS---workers $WORKERS}
    names+=(dare-alt)
fi

# Every server must answer a range with 206 and the exact bytes.
head -c 66536 "$tmp/www/file.bin" | tail -c 65536 > "$tmp/expected"
for name in "${names[@]}"; do
    got=$(curl -s -o "$tmp/check" -w '%{http_code}' -r 1000-66535 "${url[$name]}/file.bin")
    if [ "$got" != 206 ] || ! cmp -s "$tmp/check" "$tmp/expected"; then
        echo "range_bench: $name did not serve the range correctly (status $got)" >&2
        exit 1
    fi
done

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
        first = math.random(0, size - len)                        -- unaligned
    end
    return wrk.format("GET", "/file.bin", { Range = "bytes=" .. first .. "-" .. (first + len - 1) })
end
LUA

cat "$tmp/www/file.bin" > /dev/null # page cache

# Clock ticks of user + system time of the given processes, threads included.
ticks() {
    local total=0 p
    for p in "$@"; do
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
    done
    echo "$total"
}
hz=$(getconf CLK_TCK)

# One timed run against a server: prints "req/s cpu_us_per_request".
measure() {
    local name=$1 before after out rps
    before=$(ticks ${cpu_pids[$name]})
    out=$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" -s "$tmp/ranges.lua" "${url[$name]}/file.bin")
    after=$(ticks ${cpu_pids[$name]})
    if grep -q -e 'Non-2xx' -e 'Socket errors' <<<"$out"; then
        echo "range_bench: errors against $name:" >&2
        echo "$out" >&2
    fi
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    awk -v r="$rps" -v t=$((after - before)) -v hz="$hz" -v s="${DURATION%s}" \
        'BEGIN { printf "%s %.1f\n", r, t / hz * 1e6 / (r * s) }'
}

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

echo "wrk -t$WRK_THREADS -c$CONNS -d$DURATION, random ${RANGE_LEN}-byte ranges of a ${SIZE_MIB} MiB file, $WORKERS workers per server, $RUNS runs"
for name in "${names[@]}"; do
    wrk -t"$WRK_THREADS" -c"$CONNS" -d"$WARM" -s "$tmp/ranges.lua" "${url[$name]}/file.bin" > /dev/null
done

printf '%-4s' run
for name in "${names[@]}"; do printf ' %13s' "$name"; done
printf '   (req/s)\n'
for run in $(seq "$RUNS"); do
    printf '%-4s' "$run"
    declare -A line=()
    # Rotate who goes first.
    for i in "${!names[@]}"; do
        name=${names[$(((i + run) % ${#names[@]}))]}
        read -r rps cpu < <(measure "$name")
        echo "$rps" >> "$tmp/$name.rps"
        echo "$cpu" >> "$tmp/$name.cpu"
        line[$name]=$rps
    done
    for name in "${names[@]}"; do printf ' %13s' "${line[$name]}"; done
    printf '\n'
    awk -v d="${line[dare]}" -v n="${line[nginx]}" 'BEGIN { print d / n }' >> "$tmp/ratio"
    awk -v d="${line[dare]}" -v n="${line[nginx-rp]}" 'BEGIN { print d / n }' >> "$tmp/ratio-rp"
done

echo
printf '%-13s %12s %16s %14s\n' server "median req/s" "median CPU us/req" "peak RSS KiB"
for name in "${names[@]}"; do
    rss=0
    for p in ${cpu_pids[$name]}; do rss=$((rss + $(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status"))); done
    printf '%-13s %12.0f %16.1f %14s\n' "$name" "$(median < "$tmp/$name.rps")" "$(median < "$tmp/$name.cpu")" "$rss"
done
echo "(nginx RSS: sum of its workers)"
printf 'ratio dare/nginx:    median %.3f, mean %.3f\n' \
    "$(median < "$tmp/ratio")" "$(awk '{ s += $1 } END { print s / NR }' "$tmp/ratio")"
printf 'ratio dare/nginx-rp: median %.3f, mean %.3f\n' \
    "$(median < "$tmp/ratio-rp")" "$(awk '{ s += $1 } END { print s / NR }' "$tmp/ratio-rp")"
