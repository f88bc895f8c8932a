#!/usr/bin/env bash
# What embedding the updater costs an app, next to what it already pays for
# HTTPS: the stripped release size of `updater/examples/embed_blocking.rs`
# (built against dare-updater's own dependencies only, default features) and
# of a program that makes one HTTPS GET with reqwest + rustls (blocking, ring,
# the system's roots). Both are built here, in a temporary directory, with the
# same release profile (strip = true); the generated projects are thrown away
# afterwards. Also prints how many crates the updater's normal dependency tree
# has.
#
# usage: benches/embed-size.sh      (KEEP=1 keeps the temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
W=$(mktemp -d /tmp/dare-embed-size.XXXXXX)
trap 'if [ -n "${KEEP:-}" ]; then echo "kept $W"; else rm -rf "$W"; fi' EXIT
export CARGO_TARGET_DIR="$W/target"
PROFILE='[profile.release]
strip = true'

# The example as the binary of a project of its own, so that no
# dev-dependency of the workspace (test servers, tokio's multi-threaded
# runtime) adds features to it; the workspace's lock file pins the versions.
mkdir -p "$W/embed"
cat > "$W/embed/Cargo.toml" <<TOML
[package]
name = "embed-blocking"
version = "0.0.0"
edition = "2024"
publish = false

[[bin]]
name = "embed_blocking"
path = "$REPO/updater/examples/embed_blocking.rs"

[dependencies]
dare-updater = { path = "$REPO/updater" }
dare-container = { path = "$REPO/container" }

$PROFILE

[workspace]
TOML
cp Cargo.lock "$W/embed/Cargo.lock"

mkdir -p "$W/reference/src"
cat > "$W/reference/Cargo.toml" <<TOML
[package]
name = "https-get"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
reqwest = { version = "0.12", default-features = false, features = ["blocking", "rustls-tls-native-roots"] }

$PROFILE

[workspace]
TOML
cat > "$W/reference/src/main.rs" <<'RS'
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "https://example.com/".into());
    let body = reqwest::blocking::get(url)?.error_for_status()?.bytes()?;
    println!("{} bytes", body.len());
    Ok(())
}
RS

echo "building the updater example and the reqwest reference (release, stripped)..." >&2
cargo build --quiet --release --manifest-path "$W/embed/Cargo.toml"
cargo build --quiet --release --manifest-path "$W/reference/Cargo.toml"
updater=$(stat -c %s "$CARGO_TARGET_DIR/release/embed_blocking")
reference=$(stat -c %s "$CARGO_TARGET_DIR/release/https-get")
# Distinct packages: cargo tree marks a repeated subtree with " (*)", which
# must not count twice.
count() { cargo tree --locked -p dare-updater -e normal --prefix none "$@" | sed 's/ (\*)$//' | sort -u | wc -l; }
crates=$(count)
crates_webpki=$(count --no-default-features --features webpki-roots)

printf '%-46s %10s bytes\n' "embed_blocking (dare-updater, native roots)" "$updater"
printf '%-46s %10s bytes\n' "one HTTPS GET (reqwest, rustls, native roots)" "$reference"
awk -v a="$updater" -v b="$reference" \
  'BEGIN { printf "ratio %.2fx (a difference of %.0f KiB)\n", a / b, (a - b) / 1024 }'
echo "crates in dare-updater's normal tree (dare-updater included): $crates (default features), $crates_webpki (webpki-roots only)"
echo "  counted by: cargo tree -p dare-updater -e normal --prefix none [--no-default-features --features webpki-roots] | sed 's/ (\*)\$//' | sort -u | wc -l"
