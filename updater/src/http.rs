//! HTTP(S) range requests on hyper-util's pooled client (HTTP/1.1 keep-alive) and rustls with the ring
//! provider and the root certificates [`TlsRoots`] picks.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::multipart::{
    AsmError, Assembler, ContentRange, Flow, Mode, MultipartParser, byteranges_boundary, parse_content_range,
    parse_number,
};
use crate::transport::{
    BoxFuture, ByteRange, Counters, Ended, Exchange, RangeSink, TransferStats, Transport, TransportError, exchange_all,
    invalid, protocol,
};

/// How long to wait before giving up on an HTTP mirror, and how slow it may be.
///
/// Four bounds, each with a `dare update` flag, so that a mirror that lies about lengths, stalls or
/// drips costs a bounded time before the next mirror is tried:
///
/// | field | default | `dare update` flag |
/// |---|---|---|
/// | [`connect`](Self::connect) | 10 s | `--connect-timeout SECS` |
/// | [`idle`](Self::idle) | 30 s | `--idle-timeout SECS` |
/// | [`min_rate`](Self::min_rate) over [`rate_window`](Self::rate_window) | 1024 bytes/s over 10 s | `--min-rate BYTES_PER_SEC` |
/// | [`mirror_deadline`](Self::mirror_deadline) | 30 s + 1 s per `min_rate` bytes requested | `--mirror-deadline SECS` |
///
/// The rate floor catches a drip that never trips the idle timeout (a byte every 29 s); the window
/// lets a short pause pass. The deadline bounds everything one mirror may cost one run (retries and
/// resumptions included): a fixed 30 s for the signed tail and proofs, which are small, plus the
/// time the [minimum rate](Self::min_rate) needs for every byte asked of that mirror, so a big build
/// on a slow but honest link (above the floor) still finishes, and a mirror that stalls just under
/// the idle timeout between bursts does not keep the run (and the state lock) forever. With the
/// defaults a dishonest first mirror is given up within about 31 s for a check, leaving time for an
/// honest second one within a minute.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Timeouts {
    /// To open a connection, TLS included (10 s by default).
    pub connect: Duration,
    /// Without any progress: response headers (after the connection is open) or body bytes
    /// (30 s by default).
    pub idle: Duration,
    /// The slowest transfer accepted, in bytes per second, measured over each
    /// [`rate_window`](Self::rate_window) of a response body while bytes are still wanted
    /// (1024 by default; 0 turns the check off and the deadline's per-byte allowance with it).
    pub min_rate: u64,
    /// The window over which [`min_rate`](Self::min_rate) is measured (10 s by default).
    pub rate_window: Duration,
    /// The fixed part of the time one mirror may take in one run (30 s by default); each fetch adds
    /// one second per [`min_rate`](Self::min_rate) bytes it asks of that mirror. Zero: no deadline.
    /// Enforced over all requests by [`Mirrors::with_deadline`](crate::fetch::Mirrors::with_deadline)
    /// (an [`Updater`](crate::Updater) always does), not by one [`HttpTransport`] request.
    pub mirror_deadline: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            idle: Duration::from_secs(30),
            min_rate: 1024,
            rate_window: Duration::from_secs(10),
            mirror_deadline: Duration::from_secs(30),
        }
    }
}

/// The root certificates an HTTPS mirror's certificate is checked against.
///
/// Which stores exist depends on the crate's features: `native-roots` (on by default) reads the
/// system's store with rustls-native-certs; `webpki-roots` compiles in Mozilla's roots (no system
/// files read: containers, minimal images). [`TlsRoots::Custom`] takes the caller's own (a private
/// CA). The default is the system store when `native-roots` is on, else Mozilla's.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TlsRoots {
    /// The operating system's root certificates (feature `native-roots`).
    #[cfg(feature = "native-roots")]
    Native,
    /// Mozilla's root certificates, compiled in (feature `webpki-roots`).
    #[cfg(feature = "webpki-roots")]
    WebPki,
    /// Exactly these roots.
    Custom(rustls::RootCertStore),
}

impl Default for TlsRoots {
    fn default() -> Self {
        #[cfg(feature = "native-roots")]
        return TlsRoots::Native;
        #[cfg(all(not(feature = "native-roots"), feature = "webpki-roots"))]
        return TlsRoots::WebPki;
        #[cfg(not(any(feature = "native-roots", feature = "webpki-roots")))]
        return TlsRoots::Custom(rustls::RootCertStore::empty());
    }
}

impl TlsRoots {
    /// The store; empty when the system has none (then HTTPS is refused, HTTP still works).
    fn load(&self) -> rustls::RootCertStore {
        match self {
            #[cfg(feature = "native-roots")]
            TlsRoots::Native => {
                let loaded = rustls_native_certs::load_native_certs();
                for error in &loaded.errors {
                    tracing::debug!(%error, "loading system root certificates");
                }
                let mut roots = rustls::RootCertStore::empty();
                let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
                tracing::debug!(added, ignored, "system root certificates");
                roots
            }
            #[cfg(feature = "webpki-roots")]
            TlsRoots::WebPki => rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
            TlsRoots::Custom(roots) => roots.clone(),
        }
    }
}

impl Timeouts {
    /// With [`connect`](Self::connect) set to `d`.
    pub fn with_connect(mut self, d: Duration) -> Self {
        self.connect = d;
        self
    }

    /// With [`idle`](Self::idle) set to `d`.
    pub fn with_idle(mut self, d: Duration) -> Self {
        self.idle = d;
        self
    }

    /// With [`min_rate`](Self::min_rate) set to `bytes_per_sec`.
    pub fn with_min_rate(mut self, bytes_per_sec: u64) -> Self {
        self.min_rate = bytes_per_sec;
        self
    }

    /// With [`rate_window`](Self::rate_window) set to `d`.
    pub fn with_rate_window(mut self, d: Duration) -> Self {
        self.rate_window = d;
        self
    }

    /// With [`mirror_deadline`](Self::mirror_deadline) set to `d`.
    pub fn with_mirror_deadline(mut self, d: Duration) -> Self {
        self.mirror_deadline = d;
        self
    }
}

/// Redirects followed, at most.
const MAX_REDIRECTS: usize = 5;
/// After the last requested byte, this much more of a 206 body is read so the connection can be
/// reused; past it the connection is dropped.
const TAIL_CAP: usize = 4096;

/// A container served over HTTP or HTTPS by any range-capable server.
pub struct HttpTransport {
    url: String,
    uri: Uri,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeouts: Timeouts,
    counters: Counters,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport").field("url", &self.url).field("timeouts", &self.timeouts).finish()
    }
}

impl HttpTransport {
    /// A transport for the container at `url` (`http://` or `https://`), trusting the default
    /// [`TlsRoots`] (the system's root certificates with the `native-roots` feature).
    pub fn new(url: &str, timeouts: Timeouts) -> Result<Self, TransportError> {
        Self::with_roots(url, timeouts, &TlsRoots::default())
    }

    /// A transport for the container at `url` that checks HTTPS servers against `roots`.
    pub fn with_roots(url: &str, timeouts: Timeouts, roots: &TlsRoots) -> Result<Self, TransportError> {
        let uri = parse_url(url)?;
        let roots = roots.load();
        if roots.is_empty() && uri.scheme() == Some(&hyper::http::uri::Scheme::HTTPS) {
            return Err(invalid(url, "no root certificates found to check the server with".into()));
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(url, format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self::with_tls_config(url, timeouts, tls)
    }

    /// A transport for the container at `url` with a TLS configuration of the caller's (a private CA,
    /// pinned roots).
    pub fn with_tls_config(url: &str, timeouts: Timeouts, tls: rustls::ClientConfig) -> Result<Self, TransportError> {
        let uri = parse_url(url)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeouts.connect));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .build(connector);
        Ok(HttpTransport { url: url.to_owned(), uri, client, timeouts, counters: Counters::default() })
    }

    /// Sends a GET for `ranges`, following redirects; returns the final URL and the response.
    async fn send(&self, ranges: &[ByteRange]) -> Result<(Uri, Response<Incoming>), TransportError> {
        let range = range_header(ranges);
        let mut uri = self.uri.clone();
        for _ in 0..=MAX_REDIRECTS {
            let request = Request::get(uri.clone())
                .header(header::RANGE, &range)
                .header(header::ACCEPT_ENCODING, "identity")
                .header(header::USER_AGENT, concat!("dare-updater/", env!("CARGO_PKG_VERSION")))
                .body(Empty::new())
                .map_err(|e| invalid(&self.url, format!("cannot build the request: {e}")))?;
            self.counters.request();
            tracing::debug!(url = %uri, %range, "GET");
            let wait = self.timeouts.connect + self.timeouts.idle;
            let response = match tokio::time::timeout(wait, self.client.request(request)).await {
                Err(_) => {
                    return Err(TransportError::Timeout {
                        url: self.url.clone(),
                        what: "response headers",
                        after: wait,
                    });
                }
                Ok(Err(e)) => return Err(request_error(&self.url, e, self.timeouts.connect)),
                Ok(Ok(response)) => response,
            };
            let status = response.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let location = response.headers().get(header::LOCATION).map(|v| v.as_bytes().to_vec());
                let location = location.ok_or_else(|| protocol(&self.url, format!("{status} without a Location")))?;
                uri = redirect(&uri, &location).map_err(|reason| protocol(&self.url, reason))?;
                tracing::debug!(url = %uri, "redirected");
                continue;
            }
            return Ok((uri, response));
        }
        Err(protocol(&self.url, format!("more than {MAX_REDIRECTS} redirects")))
    }

    async fn request(&self, ranges: &[ByteRange], sink: &mut dyn RangeSink) -> Result<Ended, TransportError> {
        let (_, response) = self.send(ranges).await?;
        let (parts, body) = response.into_parts();
        let url = self.url.as_str();
        let headers = &parts.headers;
        match parts.status {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => {}
            StatusCode::NOT_FOUND | StatusCode::GONE => return Err(TransportError::NotFound { url: url.to_owned() }),
            StatusCode::RANGE_NOT_SATISFIABLE => {
                let len = match headers.get(header::CONTENT_RANGE).and_then(|v| parse_content_range(v.as_bytes())) {
                    Some(ContentRange::Unsatisfied { total }) => Some(total),
                    _ => None,
                };
                return Err(TransportError::RangeNotSatisfiable { url: url.to_owned(), len });
            }
            status => return Err(TransportError::Status { url: url.to_owned(), status: status.as_u16() }),
        }
        if let Some(encoding) = headers.get(header::CONTENT_ENCODING)
            && !encoding.as_bytes().eq_ignore_ascii_case(b"identity")
        {
            return Err(protocol(url, format!("unrequested Content-Encoding {encoding:?}")));
        }
        let length = content_length(headers).map_err(|reason| protocol(url, reason))?;
        let mut body = BodyReader::new(body, url, self.timeouts, &self.counters);
        if parts.status == StatusCode::OK {
            // The server ignored Range: read the container from byte 0 up to the last requested byte.
            tracing::debug!(url, "the server ignored the Range header");
            let mut asm = Assembler::new(ranges, sink, Mode::Whole);
            let result = async {
                asm.set_total(length)?;
                asm.begin_part(0, length)?;
                if !body.feed(|chunk| asm.data(chunk)).await? {
                    asm.end_of_body()?;
                }
                Ok(())
            };
            return finish(url, result.await);
        }
        let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()).unwrap_or_default();
        let boundary = byteranges_boundary(content_type).map_err(|reason| protocol(url, reason))?;
        let mut asm = Assembler::new(ranges, sink, Mode::Parts);
        let result = async {
            match boundary {
                Some(boundary) => {
                    let framing_cap = 64 * 1024 + 1024 * ranges.len() as u64;
                    let mut parser = MultipartParser::new(&boundary, framing_cap);
                    let done = body.feed(|chunk| parser.feed(chunk, &mut asm)).await?;
                    if !done {
                        parser.finish(&asm)?;
                    }
                }
                None => {
                    let Some(ContentRange::Bytes { first, last, total }) =
                        headers.get(header::CONTENT_RANGE).and_then(|v| parse_content_range(v.as_bytes()))
                    else {
                        return Err(AsmError::Protocol(format!(
                            "206 with a missing or bad Content-Range {:?}",
                            headers.get(header::CONTENT_RANGE)
                        )));
                    };
                    if length.is_some_and(|length| length != last - first + 1) {
                        return Err(AsmError::Protocol(format!(
                            "Content-Length {length:?} does not match Content-Range bytes {first}-{last}"
                        )));
                    }
                    asm.set_total(total)?;
                    asm.begin_part(first, Some(last + 1))?;
                    let done = body.feed(|chunk| asm.data(chunk)).await?;
                    if !done {
                        asm.end_part()?;
                    }
                }
            }
            body.drain_tail().await;
            Ok(())
        };
        finish(url, result.await)
    }
}

fn finish(url: &str, result: Result<(), AsmError>) -> Result<Ended, TransportError> {
    match result {
        Ok(()) => Ok(Ended::Clean),
        Err(e) => e.into_ended(url),
    }
}

/// A response body read with the idle timeout and the minimum rate, counting bytes.
struct BodyReader<'a> {
    body: Incoming,
    url: &'a str,
    timeouts: Timeouts,
    counters: &'a Counters,
    /// When the last bytes arrived.
    last: Instant,
    /// The current rate window: when it started and the bytes received in it.
    window: (Instant, u64),
}

impl<'a> BodyReader<'a> {
    fn new(body: Incoming, url: &'a str, timeouts: Timeouts, counters: &'a Counters) -> Self {
        let now = Instant::now();
        BodyReader { body, url, timeouts, counters, last: now, window: (now, 0) }
    }

    /// Passes the body's bytes to `f` until it says `Done` (returns true) or the body ends (false).
    async fn feed(&mut self, mut f: impl FnMut(&[u8]) -> Result<Flow, AsmError>) -> Result<bool, AsmError> {
        while let Some(chunk) = self.next().await? {
            if f(&chunk)? == Flow::Done {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The next bytes, within the idle timeout and no slower than the minimum rate.
    async fn next(&mut self) -> Result<Option<Bytes>, AsmError> {
        let rate = self.timeouts.min_rate > 0 && !self.timeouts.rate_window.is_zero();
        loop {
            let idle_end = self.last + self.timeouts.idle;
            let window_end = self.window.0 + self.timeouts.rate_window;
            let wake = if rate { idle_end.min(window_end) } else { idle_end };
            let polled = tokio::time::timeout_at(wake.into(), self.body.frame()).await;
            let now = Instant::now();
            if rate && now >= window_end {
                self.close_window(now)?;
            }
            let frame = match polled {
                Err(_) if now >= idle_end => return Err(AsmError::Timeout(self.timeouts.idle)),
                Err(_) => continue,
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => return Err(AsmError::Interrupted(chain(&e))),
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                self.counters.bytes(data.len());
                if !data.is_empty() {
                    self.last = now;
                    self.window.1 += data.len() as u64;
                    return Ok(Some(data));
                }
            }
        }
    }

    /// Ends the rate window: fewer bytes in it than the minimum rate asks is too slow.
    fn close_window(&mut self, now: Instant) -> Result<(), AsmError> {
        let bytes = self.window.1;
        let window = self.timeouts.rate_window;
        let needed = (self.timeouts.min_rate as u128 * window.as_millis() / 1000) as u64;
        if bytes < needed {
            return Err(AsmError::TooSlow { bytes, window, min_rate: self.timeouts.min_rate });
        }
        self.window = (now, 0);
        Ok(())
    }

    /// Reads what is already there of the rest of the body, up to [`TAIL_CAP`] bytes, so that a
    /// complete response leaves its connection in the pool.
    async fn drain_tail(&mut self) {
        let mut read = 0;
        while read <= TAIL_CAP {
            // A zero timeout polls the body once: take only what has already arrived.
            match tokio::time::timeout(Duration::ZERO, self.body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.counters.bytes(data.len());
                        read += data.len();
                    }
                }
                _ => return,
            }
        }
        tracing::debug!(url = self.url, "dropping the connection after {read} bytes past the requested ranges");
    }
}

impl Exchange for HttpTransport {
    fn url(&self) -> &str {
        &self.url
    }

    fn exchange<'a>(
        &'a self,
        ranges: &'a [ByteRange],
        sink: &'a mut dyn RangeSink,
    ) -> BoxFuture<'a, Result<Ended, TransportError>> {
        Box::pin(self.request(ranges, sink))
    }
}

impl Transport for HttpTransport {
    fn name(&self) -> &str {
        &self.url
    }

    fn fetch<'a>(
        &'a self,
        ranges: &'a [ByteRange],
        sink: &'a mut dyn RangeSink,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(exchange_all(self, ranges, sink))
    }

    fn stats(&self) -> TransferStats {
        self.counters.snapshot()
    }
}

/// `bytes=a-b,c-d,-n`.
fn range_header(ranges: &[ByteRange]) -> String {
    let specs: Vec<String> = ranges
        .iter()
        .map(|r| match *r {
            ByteRange::Span { start, end } => format!("{start}-{}", end - 1),
            ByteRange::Suffix(n) => format!("-{n}"),
        })
        .collect();
    format!("bytes={}", specs.join(","))
}

fn parse_url(url: &str) -> Result<Uri, TransportError> {
    let uri: Uri = url.parse().map_err(|e| invalid(url, format!("not a URL: {e}")))?;
    let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
    if !matches!(scheme.as_deref(), Some("http" | "https")) {
        return Err(invalid(url, "not an http:// or https:// URL".into()));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid(url, "the URL has no host".into()));
    }
    Ok(uri)
}

/// The target of a redirect: an absolute `http(s)://` URL (any host: mirrors use CDNs) or an
/// absolute path on the same server. Never another scheme (`file://` and the like), never from
/// `https` down to plain `http` (that would hand the rest of the transfer to anyone on the path).
fn redirect(from: &Uri, location: &[u8]) -> Result<Uri, String> {
    let shown = String::from_utf8_lossy(location).into_owned();
    let bad = || format!("bad redirect Location {shown:?}");
    let location = std::str::from_utf8(location).map_err(|_| bad())?.trim();
    if location.starts_with('/') && !location.starts_with("//") {
        let mut parts = from.clone().into_parts();
        parts.path_and_query = Some(location.parse().map_err(|_| bad())?);
        return Uri::from_parts(parts).map_err(|_| bad());
    }
    // RFC 3986: scheme ":" ..., the scheme a letter then letters, digits, "+", "-" or ".".
    let scheme = location.split_once(':').map(|(scheme, _)| scheme).filter(|scheme| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    let scheme = scheme.ok_or_else(bad)?.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https") {
        return Err(format!("redirect to {shown:?} refused: only http:// and https:// redirects are followed"));
    }
    let uri: Uri = location.parse().map_err(|_| bad())?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad());
    }
    if scheme == "http" && from.scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("https")) {
        return Err(format!("redirect from https:// down to {shown:?} refused: a downgrade to plain http"));
    }
    Ok(uri)
}

fn content_length(headers: &HeaderMap) -> Result<Option<u64>, String> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| parse_number(v.trim()))
            .map(Some)
            .ok_or_else(|| format!("bad Content-Length {value:?}")),
    }
}

fn request_error(url: &str, error: hyper_util::client::legacy::Error, connect: Duration) -> TransportError {
    let mut source: Option<&(dyn StdError + 'static)> = error.source();
    let mut parse_error = false;
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
            && error.is_connect()
        {
            return TransportError::Timeout { url: url.to_owned(), what: "connect", after: connect };
        }
        if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
            // A head too large is a parse error too.
            parse_error |= hyper.is_parse() || hyper.is_parse_status();
        }
        source = e.source();
    }
    if error.is_connect() {
        TransportError::Connect { url: url.to_owned(), reason: connect_reason(&error), source: Box::new(error) }
    } else if parse_error {
        protocol(url, format!("malformed response: {}", chain(&error)))
    } else {
        TransportError::Interrupted { url: url.to_owned(), reason: chain(&error) }
    }
}

/// Why a connection could not be made, in a few words: the TLS or I/O error at the bottom of the
/// chain, not hyper's "client error (Connect)".
fn connect_reason(error: &(dyn StdError + 'static)) -> String {
    let mut dns = false;
    let mut reason = None;
    let mut source = Some(error);
    while let Some(e) = source {
        // hyper-util's connector says "dns error" for a failed lookup.
        dns |= e.to_string().starts_with("dns error");
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return format!("TLS handshake failed: {tls}");
        }
        if let Some(mut io) = e.downcast_ref::<std::io::Error>() {
            // An I/O error may wrap another, or the TLS error (its `source` skips the wrapped one).
            while let Some(inner) = io.get_ref() {
                if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                    return format!("TLS handshake failed: {tls}");
                }
                match inner.downcast_ref::<std::io::Error>() {
                    Some(next) => io = next,
                    None => break,
                }
            }
            use std::io::ErrorKind::*;
            reason = Some(match io.kind() {
                ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected | AddrNotAvailable
                | HostUnreachable | NetworkUnreachable | NetworkDown | TimedOut => io.kind().to_string(),
                _ => without_os_code(&io.to_string()),
            });
        }
        source = e.source();
    }
    let reason = reason.unwrap_or_else(|| chain(error));
    if dns { format!("DNS lookup failed: {reason}") } else { reason }
}

/// "Connection refused (os error 111)" -> "Connection refused".
fn without_os_code(text: &str) -> String {
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_owned(),
        _ => text.to_owned(),
    }
}

/// An error and its sources, joined.
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_headers() {
        let ranges =
            [ByteRange::Span { start: 0, end: 100 }, ByteRange::Suffix(5), ByteRange::Span { start: 7, end: 8 }];
        assert_eq!(range_header(&ranges), "bytes=0-99,-5,7-7");
    }

    #[test]
    fn urls_and_redirects() {
        assert!(parse_url("http://example.com/c.dare").is_ok());
        assert!(parse_url("HTTPS://example.com:8443/a/c.dare?x=1").is_ok());
        for bad in ["ftp://example.com/x", "http:///x", "example.com/x", "http://exa mple.com/"] {
            assert!(matches!(parse_url(bad), Err(TransportError::Invalid { .. })), "{bad}");
        }
        let from: Uri = "https://a.example/x/c.dare?q".parse().unwrap();
        assert_eq!(redirect(&from, b"/y/c.dare").unwrap().to_string(), "https://a.example/y/c.dare");
        assert_eq!(redirect(&from, b"https://cdn.example/z").unwrap().to_string(), "https://cdn.example/z");
        let plain: Uri = "http://a.example/c.dare".parse().unwrap();
        assert_eq!(redirect(&plain, b"http://b.example/z").unwrap().to_string(), "http://b.example/z");
        assert_eq!(redirect(&plain, b"https://b.example/z").unwrap().to_string(), "https://b.example/z");
        let downgrade = redirect(&from, b"http://b.example/z").unwrap_err();
        assert!(downgrade.contains("downgrade"), "{downgrade}");
        for other in [&b"file:///etc/passwd"[..], b"ftp://b.example/z", b"FILE:///etc/passwd", b"gopher://x/"] {
            let refused = redirect(&from, other).unwrap_err();
            assert!(refused.contains("only http:// and https://"), "{refused}");
        }
        assert!(redirect(&from, b"//b.example/z").is_err());
        assert!(redirect(&from, b"relative").is_err());
        assert!(redirect(&from, b"http:///nohost").is_err());
    }

    #[test]
    fn content_lengths() {
        let mut headers = HeaderMap::new();
        assert_eq!(content_length(&headers), Ok(None));
        headers.insert(header::CONTENT_LENGTH, "42".parse().unwrap());
        assert_eq!(content_length(&headers), Ok(Some(42)));
        headers.insert(header::CONTENT_LENGTH, "-1".parse().unwrap());
        assert!(content_length(&headers).is_err());
    }

    #[cfg(feature = "webpki-roots")]
    #[test]
    fn mozillas_roots_are_compiled_in() {
        assert!(TlsRoots::WebPki.load().len() > 100);
    }

    #[test]
    fn a_custom_store_is_used_as_given() {
        assert!(TlsRoots::Custom(rustls::RootCertStore::empty()).load().is_empty());
    }
}
