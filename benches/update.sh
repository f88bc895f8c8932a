#!/usr/bin/env bash
# The updater's costs through nginx, counted from nginx's access log:
#   20 targets, 20 releases of one 256 KiB file each; a client syncs at
#   release 10, then updates one target to release 20. Bytes beyond the
#   payload, requests, and an up-to-date check. Then the peak RSS of
#   `dare update` installing a 1 GiB build.
# For comparison, measured on exactly this workload (see the issue): TUF
# (tuftool, python-tuf) fetches 80,840 bytes beyond the payload in 5
# requests; TUF with a delegated role per platform 10,044 bytes in 5.
#
# usage: benches/update.sh            (needs nginx; root may apt-get install -y nginx)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "nginx is not installed (apt-get install -y nginx)"; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release --quiet
DARE=$PWD/target/release/dare
W=$(mktemp -d /tmp/dare-update-bench.XXXXXX)
chmod 755 "$W"   # nginx's workers run as another user
trap '[ -f "$W/nginx.pid" ] && kill "$(cat "$W/nginx.pid")" 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$W"' EXIT
cd "$W"

TARGETS="x86_64-unknown-linux-gnu x86_64-unknown-linux-musl aarch64-unknown-linux-gnu aarch64-unknown-linux-musl
armv7-unknown-linux-gnueabihf i686-unknown-linux-gnu riscv64gc-unknown-linux-gnu powerpc64le-unknown-linux-gnu
s390x-unknown-linux-gnu x86_64-apple-darwin aarch64-apple-darwin x86_64-pc-windows-msvc aarch64-pc-windows-msvc
i686-pc-windows-msvc x86_64-pc-windows-gnu x86_64-unknown-freebsd aarch64-linux-android x86_64-linux-android
wasm32-wasip1 loongarch64-unknown-linux-gnu"
CLIENT=aarch64-apple-darwin
T0=$(date +%s)
"$DARE" keygen --out k --name bench.example/app >/dev/null
"$DARE" init c.dare --key k --origin bench.example/app --time "$T0" >/dev/null
for r in $(seq 1 20); do
  args=()
  for t in $TARGETS; do
    mkdir -p "a/$t"; head -c 262144 /dev/urandom > "a/$t/app"; args+=(--artifact "$t=a/$t/app")
  done
  "$DARE" publish c.dare --key k --version "1.0.$r" --time $((T0 + r)) "${args[@]}" >/dev/null
  if [ "$r" = 10 ]; then cp c.dare c10.dare; fi
done

# nginx on a free loopback port, logging bytes per request.
mkdir -p www logs && chmod 755 www
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > nginx.conf <<CONF
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
URL="http://127.0.0.1:$PORT/app.dare"
update() { "$DARE" update --from "$URL" --trust k.pub --state st --install inst --target $CLIENT --json "$@" 2>/dev/null; }
# nginx writes a log line just after the response; give it a moment.
log_since() { sleep 0.3; tail -n +$(( $1 + 1 )) logs/access.log; }
lines() { wc -l < logs/access.log; }

cp c10.dare www/.app.tmp && chmod 644 www/.app.tmp && mv www/.app.tmp www/app.dare
update >/dev/null                                  # the client syncs at release 10
cp c.dare www/.app.tmp && chmod 644 www/.app.tmp && mv www/.app.tmp www/app.dare
mark=$(lines); out=$(update)                       # and updates to release 20
reqs=$(log_since "$mark" | wc -l)
body=$(log_since "$mark" | awk '{s+=$3} END {print s}')
wire=$(log_since "$mark" | awk '{s+=$4} END {print s}')
payload=262144
mark=$(lines); update --check >/dev/null
check_reqs=$(log_since "$mark" | wc -l); check_body=$(log_since "$mark" | awk '{s+=$3} END {print s}')

echo "update through nginx: 20 targets x 20 releases of a 256 KiB file; client at release 10 updates $CLIENT to 20"
echo "  dare update said:     $out"
echo "  requests (nginx log): $reqs   (the seal; the map and manifest; the index and proof hashes; the rest of the index when its patch is against a newer listing than the client's; the entry and its proof hashes in parallel)"
echo "  response bodies:      $body bytes; beyond the 262144-byte payload: $((body - payload)) bytes (goal <= 16384)"
echo "  with HTTP headers:    $wire bytes; beyond the payload: $((wire - payload)) bytes"
echo "  TUF on this workload: 80840 bytes beyond the payload in 5 requests -> dare uses $(python3 -c "print(f'{($body-$payload)/80840:.3f}')")x the bytes"
echo "  TUF, delegated roles: 10044 bytes in 5 requests                  -> dare uses $(python3 -c "print(f'{($body-$payload)/10044:.3f}')")x the bytes"
echo "  up-to-date check:     $check_reqs request(s), $check_body bytes"

# Peak memory while updating a 1 GiB build.
head -c $((1024 * 1024 * 1024)) /dev/urandom > big
"$DARE" publish c.dare --key k --version 2.0.0 --time $((T0 + 30)) --artifact $CLIENT=big >/dev/null
cp c.dare www/.app.tmp && chmod 644 www/.app.tmp && mv www/.app.tmp www/app.dare
rss=$( { /usr/bin/time -f '%M' "$DARE" update --from "$URL" --trust k.pub --state st --install inst --target $CLIENT >/dev/null; } 2>&1 | tail -1)
cmp -s big inst/current/big && ok=identical || ok=DIFFERENT
echo "1 GiB build through nginx: peak RSS of dare update $((rss / 1024)) MiB (goal <= 64 MiB); installed file $ok"
