//! HTTP(S) range requests on hyper-util's pooled client (HTTP/1.1 keep-alive) and rustls with the ring
//! provider and the system's root certificates.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

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

/// How long to wait before giving up.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// To open a connection (10 s by default).
    pub connect: Duration,
    /// Without any progress: response headers or body bytes (30 s by default).
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { connect: Duration::from_secs(10), idle: Duration::from_secs(30) }
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
    /// A transport for the container at `url` (`http://` or `https://`), trusting the system's root
    /// certificates.
    pub fn new(url: &str, timeouts: Timeouts) -> Result<Self, TransportError> {
        let uri = parse_url(url)?;
        let loaded = rustls_native_certs::load_native_certs();
        for error in &loaded.errors {
            tracing::debug!(%error, "loading system root certificates");
        }
        let mut roots = rustls::RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
        tracing::debug!(added, ignored, "system root certificates");
        if roots.is_empty() && uri.scheme() == Some(&hyper::http::uri::Scheme::HTTPS) {
            return Err(invalid(url, "no system root certificates found to check the server with".into()));
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
                Err(_) => return Err(TransportError::Timeout { url: self.url.clone(), what: "response headers" }),
                Ok(Err(e)) => return Err(request_error(&self.url, e)),
                Ok(Ok(response)) => response,
            };
            let status = response.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let location = response.headers().get(header::LOCATION).map(|v| v.as_bytes().to_vec());
                let location = location.ok_or_else(|| protocol(&self.url, format!("{status} without a Location")))?;
                uri = redirect(&uri, &location).ok_or_else(|| {
                    protocol(&self.url, format!("bad redirect Location {:?}", String::from_utf8_lossy(&location)))
                })?;
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
        let mut body = BodyReader { body, url, idle: self.timeouts.idle, counters: &self.counters };
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

/// A response body read with the idle timeout, counting bytes.
struct BodyReader<'a> {
    body: Incoming,
    url: &'a str,
    idle: Duration,
    counters: &'a Counters,
}

impl BodyReader<'_> {
    /// Passes the body's bytes to `f` until it says `Done` (returns true) or the body ends (false).
    async fn feed(&mut self, mut f: impl FnMut(&[u8]) -> Result<Flow, AsmError>) -> Result<bool, AsmError> {
        while let Some(chunk) = self.next().await? {
            if f(&chunk)? == Flow::Done {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn next(&mut self) -> Result<Option<Bytes>, AsmError> {
        loop {
            let frame = match tokio::time::timeout(self.idle, self.body.frame()).await {
                Err(_) => return Err(AsmError::Timeout),
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => return Err(AsmError::Interrupted(chain(&e))),
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                self.counters.bytes(data.len());
                if !data.is_empty() {
                    return Ok(Some(data));
                }
            }
        }
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

/// The target of a redirect: an absolute http(s) URL or an absolute path on the same server.
fn redirect(from: &Uri, location: &[u8]) -> Option<Uri> {
    let location = std::str::from_utf8(location).ok()?.trim();
    if location.starts_with('/') && !location.starts_with("//") {
        let mut parts = from.clone().into_parts();
        parts.path_and_query = Some(location.parse().ok()?);
        return Uri::from_parts(parts).ok();
    }
    let uri: Uri = location.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    (matches!(scheme.as_str(), "http" | "https") && uri.host().is_some()).then_some(uri)
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

fn request_error(url: &str, error: hyper_util::client::legacy::Error) -> TransportError {
    let mut source: Option<&(dyn StdError + 'static)> = error.source();
    let mut parse_error = false;
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
            && error.is_connect()
        {
            return TransportError::Timeout { url: url.to_owned(), what: "connect" };
        }
        if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
            parse_error |= hyper.is_parse() || hyper.is_parse_status() || hyper.is_parse_too_large();
        }
        source = e.source();
    }
    if error.is_connect() {
        TransportError::Connect { url: url.to_owned(), source: Box::new(error) }
    } else if parse_error {
        protocol(url, format!("malformed response: {}", chain(&error)))
    } else {
        TransportError::Interrupted { url: url.to_owned(), reason: chain(&error) }
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
        assert_eq!(redirect(&from, b"http://b.example/z").unwrap().to_string(), "http://b.example/z");
        assert!(redirect(&from, b"//b.example/z").is_none());
        assert!(redirect(&from, b"ftp://b.example/z").is_none());
        assert!(redirect(&from, b"relative").is_none());
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
}
