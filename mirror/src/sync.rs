//! Keeping a local copy of an upstream container in sync, verified.
//!
//! Every interval the syncer asks an upstream for its bytes from the start of
//! the local copy's last seal, checks that they begin with that very seal (so
//! a fork is caught even when it has the same length), streams the rest into
//! a staging file, and verifies the local copy plus the staged bytes as one
//! container: every new frame's structure
//! and header, every new payload's digests, the tiles, every new seal's
//! signatures (against the local genesis trust root, or `--trust` keys on the
//! very first sync) and its consistency with the seals before. Only the
//! bytes up to the last verified seal are then appended to the served file,
//! and only then does the server serve them. A tampered, forked, truncated or
//! rolled-back upstream is refused and logged; the local copy stays as it was.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dare_container::frame::ReadAt;
use dare_container::keys::VerifierKey;
use dare_container::verify::{Scan, ScanOptions, Tail, scan_from};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::files::ServedLengths;
use crate::tlog::TlogOverlay;

/// Why one sync round did not append anything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The upstream could not be reached or answered wrongly.
    #[error("upstream {url}: {reason}")]
    Upstream {
        /// The upstream URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The upstream's bytes do not verify as an extension of the local copy.
    #[error("refused {url}: {reason}")]
    Refused {
        /// The upstream URL.
        url: String,
        /// What failed verification.
        reason: String,
    },
    /// The upstream is shorter than the verified local copy: a rollback.
    #[error("refused {url}: it has {upstream} bytes, fewer than the {local} already verified (rollback?)")]
    Rollback {
        /// The upstream URL.
        url: String,
        /// Its length.
        upstream: u64,
        /// The local verified length.
        local: u64,
    },
    /// Local files.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// What one sync round did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncReport {
    /// The verified length before.
    pub before: u64,
    /// The verified length after.
    pub after: u64,
    /// The tree size after.
    pub size: u64,
}

/// Settings of one synced container.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// Upstream URLs of the container (`http://`), tried in order.
    pub upstreams: Vec<String>,
    /// The local copy.
    pub local: PathBuf,
    /// The URL path it is served at (`/NAME`).
    pub url_path: String,
    /// Keys that must sign the first sync's seals (otherwise the upstream
    /// genesis is trusted on first use).
    pub pins: Option<Vec<VerifierKey>>,
    /// The most bytes one round fetches.
    pub max_fetch: u64,
    /// A response that makes no progress for this long is abandoned.
    pub idle_timeout: Duration,
}

/// Syncs one container from its upstreams.
pub struct Syncer {
    cfg: SyncConfig,
    lengths: ServedLengths,
    tlog: TlogOverlay,
    client: Client<HttpConnector, Empty<Bytes>>,
    verified: u64,
    /// The tree size of the verified copy.
    size: u64,
    /// Where the verified copy's last seal starts. Each round asks from
    /// there and compares the seal with the upstream's bytes, so an upstream
    /// that forked, even to the same length, is caught.
    anchor: u64,
    preferred: usize,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer").field("local", &self.cfg.local).field("verified", &self.verified).finish()
    }
}

impl Syncer {
    /// Opens the local copy (verifying it whole, cutting any unverified
    /// tail) and publishes its verified length and log.
    pub fn open(cfg: SyncConfig, lengths: ServedLengths, tlog: TlogOverlay) -> Result<Syncer, SyncError> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let mut s = Syncer { cfg, lengths, tlog, client, verified: 0, size: 0, anchor: 0, preferred: 0 };
        if s.cfg.local.exists() {
            let file = File::open(&s.cfg.local).map_err(|e| io_err("opening", &s.cfg.local, e))?;
            let len = file.metadata().map_err(|e| io_err("reading", &s.cfg.local, e))?.len();
            let opts = ScanOptions { payloads: true, pins: s.cfg.pins.clone() };
            let scan = scan_from(&file, len, &opts, 0).map_err(|e| SyncError::Refused {
                url: s.cfg.local.display().to_string(),
                reason: format!("the local copy does not verify: {e}"),
            })?;
            if let Tail::Torn { offset, .. } = scan.tail {
                drop(file);
                let f = OpenOptions::new()
                    .write(true)
                    .open(&s.cfg.local)
                    .map_err(|e| io_err("opening", &s.cfg.local, e))?;
                f.set_len(offset).map_err(|e| io_err("cutting back", &s.cfg.local, e))?;
                f.sync_all().map_err(|e| io_err("syncing", &s.cfg.local, e))?;
                tracing::warn!(local = %s.cfg.local.display(), offset, "cut an unverified tail off the local copy");
            }
            s.publish(&scan);
        }
        Ok(s)
    }

    /// The verified length of the local copy.
    pub fn verified_len(&self) -> u64 {
        self.verified
    }

    fn publish(&mut self, scan: &Scan) {
        self.verified = scan.sealed_len;
        self.size = scan.size();
        self.anchor = scan.last_seal.frame.offset;
        self.lengths.set(&self.cfg.url_path, scan.sealed_len);
        self.tlog.set(
            &self.cfg.url_path,
            scan.last_seal.seal.checkpoint.clone(),
            Arc::new(scan.tree.clone()),
            scan.size(),
        );
    }

    /// One round: tries each upstream (the last good one first) until one
    /// yields a verified extension or says there is nothing new.
    pub async fn sync_once(&mut self) -> Result<SyncReport, SyncError> {
        let n = self.cfg.upstreams.len();
        let mut last = None;
        for i in 0..n {
            let idx = (self.preferred + i) % n;
            let url = self.cfg.upstreams[idx].clone();
            match self.sync_from(&url).await {
                Ok(r) => {
                    self.preferred = idx;
                    return Ok(r);
                }
                Err(e) => {
                    tracing::warn!(upstream = %url, error = %e, "sync failed");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| SyncError::Upstream { url: String::new(), reason: "no upstream configured".into() }))
    }

    async fn sync_from(&mut self, url: &str) -> Result<SyncReport, SyncError> {
        let staging = staging_path(&self.cfg.local);
        let result = self.sync_through(url, &staging).await;
        // Unverified bytes never stay behind, whether they were refused or
        // the round failed midway.
        let _ = fs::remove_file(&staging);
        result
    }

    async fn sync_through(&mut self, url: &str, staging: &Path) -> Result<SyncReport, SyncError> {
        let before = self.verified;
        let overlap = self.last_seal_bytes()?;
        let fetched = self.fetch(url, &overlap, staging).await?;
        if fetched == 0 {
            return Ok(SyncReport { before, after: before, size: self.size });
        }
        let local = &self.cfg.local;
        let first = before == 0;
        let staged =
            OpenOptions::new().read(true).write(true).open(staging).map_err(|e| io_err("opening", staging, e))?;
        let base = if first { None } else { Some(File::open(local).map_err(|e| io_err("opening", local, e))?) };
        let total = before + fetched;
        let pins = if first { self.cfg.pins.clone() } else { None };
        // Verifying hashes every new payload: blocking work, off the runtime.
        let (scan, staged) = tokio::task::spawn_blocking(move || {
            let joined = Joined { first: base.as_ref(), first_len: before, second: &staged };
            let r = scan_from(&joined, total, &ScanOptions { payloads: true, pins }, before);
            (r, staged)
        })
        .await
        .map_err(|e| SyncError::Upstream { url: url.to_string(), reason: format!("verification task failed: {e}") })?;
        let scan = scan.map_err(|e| SyncError::Refused { url: url.to_string(), reason: e.to_string() })?;
        if first && self.cfg.pins.is_none() {
            tracing::warn!(
                upstream = %url,
                fingerprint = %scan.genesis_fingerprint(),
                "first sync: trusting the upstream's genesis trust root on first use (pass --trust to pin it)"
            );
        }
        if scan.sealed_len <= before {
            return Ok(SyncReport { before, after: before, size: scan.size() });
        }
        // Append exactly the verified bytes.
        let add = scan.sealed_len - before;
        if first {
            staged.set_len(add).map_err(|e| io_err("cutting", staging, e))?;
            staged.sync_all().map_err(|e| io_err("syncing", staging, e))?;
            fs::rename(staging, local).map_err(|e| io_err("moving into place", local, e))?;
        } else {
            let mut out = OpenOptions::new().write(true).open(local).map_err(|e| io_err("opening", local, e))?;
            // Whatever lies past the verified length (a failed append's
            // bytes) is not part of the copy: write the new bytes over it.
            out.set_len(before).map_err(|e| io_err("cutting back", local, e))?;
            out.seek(SeekFrom::Start(before)).map_err(|e| io_err("seeking in", local, e))?;
            let mut src = io::Read::take(&staged, add);
            io::copy(&mut src, &mut out).map_err(|e| io_err("appending to", local, e))?;
            out.sync_all().map_err(|e| io_err("syncing", local, e))?;
        }
        if let Some(dir) = local.parent() {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        self.publish(&scan);
        tracing::info!(upstream = %url, before, after = scan.sealed_len, size = scan.size(), "synced");
        Ok(SyncReport { before, after: scan.sealed_len, size: scan.size() })
    }

    /// The verified copy's bytes from its last seal to its end.
    fn last_seal_bytes(&self) -> Result<Vec<u8>, SyncError> {
        if self.verified == 0 {
            return Ok(Vec::new());
        }
        let local = &self.cfg.local;
        let file = File::open(local).map_err(|e| io_err("opening", local, e))?;
        let mut buf = vec![0u8; (self.verified - self.anchor) as usize];
        file.read_exact_at(&mut buf, self.anchor).map_err(|e| io_err("reading", local, e))?;
        Ok(buf)
    }

    /// Asks the upstream for its bytes from the start of `overlap` (the
    /// verified copy's last seal), checks that they begin with `overlap`,
    /// and streams the rest into the staging file; returns how many.
    async fn fetch(&self, url: &str, overlap: &[u8], staging: &Path) -> Result<u64, SyncError> {
        let up = |reason: String| SyncError::Upstream { url: url.to_string(), reason };
        let before = self.verified;
        let from = before - overlap.len() as u64;
        let rollback = |upstream: u64| SyncError::Rollback { url: url.to_string(), upstream, local: before };
        let uri: hyper::Uri = url.parse().map_err(|e| up(format!("not a URL: {e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(up(
                "only http:// upstreams are supported (put a TLS terminator in front, or sync from a local path)"
                    .into(),
            ));
        }
        let req = hyper::Request::get(uri)
            .header(hyper::header::RANGE, format!("bytes={from}-"))
            .header(hyper::header::ACCEPT_ENCODING, "identity")
            .body(Empty::new())
            .map_err(|e| up(e.to_string()))?;
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.request(req))
            .await
            .map_err(|_| up("no response within 30 s".into()))?
            .map_err(|e| up(e.to_string()))?;
        let status = resp.status().as_u16();
        let mut skip = 0u64;
        match status {
            206 => {
                let cr = resp
                    .headers()
                    .get(hyper::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| up("206 without Content-Range".into()))?;
                let (start, total) = parse_content_range(cr).ok_or_else(|| up(format!("bad Content-Range {cr}")))?;
                if start != from {
                    return Err(up(format!("asked for bytes from {from}, got a range from {start}")));
                }
                if let Some(total) = total
                    && total < before
                {
                    return Err(rollback(total));
                }
            }
            200 => skip = from,
            416 => {
                let len = resp
                    .headers()
                    .get(hyper::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes */"))
                    .and_then(|v| v.parse::<u64>().ok());
                // The range starts inside the verified copy, so a 416 means
                // the upstream is shorter (or, before the first sync, empty).
                return match len {
                    Some(l) if l < before => Err(rollback(l)),
                    _ if before == 0 => Ok(0),
                    _ => Err(up(format!("416 for bytes from {from}, which it should hold"))),
                };
            }
            s => return Err(up(format!("HTTP status {s}"))),
        }
        let mut out = File::create(staging).map_err(|e| io_err("creating", staging, e))?;
        let mut body = resp.into_body();
        let mut written = 0u64;
        let mut matched = 0usize;
        loop {
            let frame = tokio::time::timeout(self.cfg.idle_timeout, body.frame())
                .await
                .map_err(|_| up(format!("no progress for {:?}", self.cfg.idle_timeout)))?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| up(e.to_string()))?;
            let Ok(mut data) = frame.into_data() else { continue };
            if skip > 0 {
                let n = skip.min(data.len() as u64) as usize;
                data = data.slice(n..);
                skip -= n as u64;
            }
            if matched < overlap.len() {
                let n = data.len().min(overlap.len() - matched);
                if let Some(i) = data[..n].iter().zip(&overlap[matched..]).position(|(a, b)| a != b) {
                    return Err(SyncError::Refused {
                        url: url.to_string(),
                        reason: format!(
                            "its byte {} differs from the verified copy's last seal: a fork, or another container",
                            from + (matched + i) as u64
                        ),
                    });
                }
                matched += n;
                data = data.slice(n..);
            }
            if data.is_empty() {
                continue;
            }
            written += data.len() as u64;
            if written > self.cfg.max_fetch {
                return Err(up(format!("more than {} bytes in one sync", self.cfg.max_fetch)));
            }
            // A local write of one network chunk: short, so done in place.
            out.write_all(&data).map_err(|e| io_err("writing", staging, e))?;
        }
        if skip > 0 {
            return Err(rollback(from - skip));
        }
        if matched < overlap.len() {
            return Err(rollback(from + matched as u64));
        }
        out.sync_all().map_err(|e| io_err("syncing", staging, e))?;
        Ok(written)
    }

    /// Syncs every `interval` until `shutdown`, backing off after failures.
    pub async fn run(mut self, interval: Duration, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(wait) => {}
            }
            wait = match self.sync_once().await {
                Ok(_) => interval,
                Err(e) => {
                    tracing::warn!(local = %self.cfg.local.display(), error = %e, "sync round failed; the local copy is unchanged");
                    // Back off, but never wait longer than the interval.
                    (wait * 2).clamp(Duration::from_secs(1), interval.max(Duration::from_secs(1)))
                }
            };
        }
    }
}

fn staging_path(local: &Path) -> PathBuf {
    let name = local.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    local.with_file_name(format!(".{name}.sync"))
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> SyncError {
    SyncError::Io { op, path: path.to_path_buf(), source }
}

/// `bytes FIRST-LAST/TOTAL`: the first byte and the total, if known (`*`).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    let total = if total == "*" { None } else { Some(total.parse().ok()?) };
    Some((start.parse().ok()?, total))
}

/// The verified local copy followed by the staged bytes, read as one file.
struct Joined<'a> {
    first: Option<&'a File>,
    first_len: u64,
    second: &'a File,
}

impl ReadAt for Joined<'_> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let rest = &mut buf[done..];
            if at < self.first_len {
                let first = self.first.ok_or(io::ErrorKind::UnexpectedEof)?;
                let n = rest.len().min((self.first_len - at) as usize);
                first.read_exact_at(&mut rest[..n], at)?;
                done += n;
            } else {
                self.second.read_exact_at(rest, at - self.first_len)?;
                done = buf.len();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("bytes 10-19/100"), Some((10, Some(100))));
        assert_eq!(parse_content_range("bytes 10-19/*"), Some((10, None)));
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(parse_content_range("bytes 10-19/x"), None);
        assert_eq!(parse_content_range("items 10-19/100"), None);
    }
}
