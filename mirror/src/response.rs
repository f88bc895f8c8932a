//! From one request to one response: routing, preconditions, ranges.

use std::collections::VecDeque;
use std::fs::File;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode, Version};

use crate::body::{AccessLog, CHUNK, Piece, ResponseBody};
use crate::files::{OpenFile, PathRejection, RecentFiles, RequestPath, ServedDir, ServedLengths};
use crate::overlay::{Overlay, OverlayBody};
use crate::range::{ByteRange, RangeRequest, Resolution};
use crate::sealed::SealedPrefixes;
use crate::sendfile::SendQueue;
use crate::validator::{Precondition, Validators};

const OCTET_STREAM: &str = "application/octet-stream";

/// What the server serves, shared by all connections.
pub(crate) struct Site {
    pub dir: ServedDir,
    pub recent: RecentFiles,
    pub sealed: SealedPrefixes,
    pub lengths: ServedLengths,
    pub overlay: Option<Arc<dyn Overlay>>,
    pub max_ranges: usize,
    boundaries: Boundaries,
}

impl Site {
    pub fn new(
        dir: ServedDir,
        lengths: ServedLengths,
        overlay: Option<Arc<dyn Overlay>>,
        max_ranges: usize,
        open_file_ttl: Duration,
    ) -> Site {
        Site {
            dir,
            recent: RecentFiles::new(open_file_ttl),
            sealed: SealedPrefixes::default(),
            lengths,
            overlay,
            max_ranges,
            boundaries: Boundaries { seed: RandomState::new(), counter: AtomicU64::new(0) },
        }
    }
}

/// Multipart boundaries: unpredictable enough that a file's bytes do not
/// contain them by accident, and different for every response.
struct Boundaries {
    seed: RandomState,
    counter: AtomicU64,
}

impl Boundaries {
    fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("dare-{:016x}{:016x}", self.seed.hash_one(n), self.seed.hash_one(!n))
    }
}

/// Answers one request. Never fails: every problem is a status code.
/// `send_queue` is the connection's, used for HTTP/1 requests.
pub(crate) fn respond<B>(site: &Site, req: Request<B>, send_queue: Option<Arc<SendQueue>>) -> Response<ResponseBody> {
    let (parts, _body) = req.into_parts();
    // Placeholders must never reach HTTP/2, which copies bodies into frames.
    let send_queue = send_queue.filter(|_| parts.version <= Version::HTTP_11);
    let log = tracing::enabled!(target: "dare_mirror::access", tracing::Level::INFO).then(|| AccessLog {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        status: 0,
        range: parts.headers.get(header::RANGE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        start: Instant::now(),
        bytes: 0,
    });
    let response = route(site, parts, send_queue);
    let log = log.map(|log| AccessLog { status: response.status().as_u16(), ..log });
    response.map(|body| body.with_log(log))
}

fn route(site: &Site, parts: Parts, send_queue: Option<Arc<SendQueue>>) -> Response<ResponseBody> {
    if parts.method != Method::GET && parts.method != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let path = match RequestPath::parse(parts.uri.path()) {
        Ok(path) => path,
        Err(PathRejection::BadRequest) => return plain(StatusCode::BAD_REQUEST, "bad request\n"),
        Err(PathRejection::NotFound) => return not_found(),
    };
    if let Some(overlay) = &site.overlay
        && let Some(body) = overlay.lookup(path.as_str())
    {
        return answer(site, &parts, Representation::memory(body), None);
    }
    let cap = site.lengths.get(path.as_str());
    // Opening, stat'ing and (without sendfile) reading the first chunk run
    // inline, as in nginx: these are microseconds on a warm cache, less than
    // a hop to the blocking pool costs (measured with bench/range_bench.sh).
    match OpenFile::open(&site.dir, &site.recent, &site.sealed, &path, cap) {
        Ok(Some(file)) => answer(site, &parts, Representation::from_file(file), send_queue),
        Ok(None) => not_found(),
        Err(e) => {
            tracing::warn!(path = path.as_str(), error = %e, "cannot open");
            internal_error()
        }
    }
}

/// A representation: a file (length fixed at open) or an overlay body.
struct Representation {
    len: u64,
    etag: Option<String>,
    last_modified: Option<SystemTime>,
    content_type: &'static str,
    cache_control: Option<&'static str>,
    source: Source,
}

enum Source {
    File(Arc<File>),
    Memory(Bytes),
}

impl Representation {
    fn from_file(file: OpenFile) -> Representation {
        Representation {
            len: file.len,
            etag: Some(file.etag),
            last_modified: Some(file.last_modified),
            content_type: OCTET_STREAM,
            cache_control: None,
            source: Source::File(file.file),
        }
    }

    fn memory(body: OverlayBody) -> Representation {
        Representation {
            len: body.bytes.len() as u64,
            etag: None,
            last_modified: None,
            content_type: body.content_type,
            cache_control: body.cache_control,
            source: Source::Memory(body.bytes),
        }
    }

    fn piece(&self, range: ByteRange) -> Piece {
        match &self.source {
            Source::File(_) => Piece::File { offset: range.start, len: range.len() },
            // Lengths of memory bodies fit in usize.
            Source::Memory(bytes) => Piece::Bytes(bytes.slice(range.start as usize..range.end as usize)),
        }
    }

    fn open_file(&self) -> Option<&Arc<File>> {
        match &self.source {
            Source::File(file) => Some(file),
            Source::Memory(_) => None,
        }
    }

    /// ETag and Last-Modified.
    fn validator_headers(&self, headers: &mut header::HeaderMap) {
        if let Some(etag) = &self.etag
            && let Ok(value) = HeaderValue::from_str(etag)
        {
            headers.insert(header::ETAG, value);
        }
        if let Some(modified) = self.last_modified
            && let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(modified))
        {
            headers.insert(header::LAST_MODIFIED, value);
        }
    }
}

/// Answers a GET or HEAD for an existing representation. Without a send
/// queue, this reads the first chunk of a file body.
fn answer(
    site: &Site,
    parts: &Parts,
    rep: Representation,
    send_queue: Option<Arc<SendQueue>>,
) -> Response<ResponseBody> {
    let validators = Validators { etag: rep.etag.as_deref(), last_modified: rep.last_modified };
    let range_allowed = match validators.evaluate(&parts.headers, SystemTime::now()) {
        Precondition::Failed => return plain(StatusCode::PRECONDITION_FAILED, ""),
        Precondition::NotModified => {
            let mut response = Response::new(ResponseBody::empty());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            rep.validator_headers(response.headers_mut());
            return response;
        }
        Precondition::Proceed { range_allowed } => range_allowed,
    };
    let ranges = range_allowed
        .then(|| single_value(parts, header::RANGE))
        .flatten()
        .and_then(|value| RangeRequest::parse(value.as_bytes(), site.max_ranges))
        .map(|request| request.resolve(rep.len));

    let mut headers = header::HeaderMap::new();
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    rep.validator_headers(&mut headers);
    if let Some(value) = rep.cache_control {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    }
    let (status, pieces) = match ranges {
        None => {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(rep.content_type));
            let all = ByteRange { start: 0, end: rep.len };
            let pieces = if rep.len == 0 { VecDeque::new() } else { VecDeque::from([rep.piece(all)]) };
            (StatusCode::OK, pieces)
        }
        Some(Resolution::Unsatisfiable) => {
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{}", rep.len)) {
                headers.insert(header::CONTENT_RANGE, value);
            }
            (StatusCode::RANGE_NOT_SATISFIABLE, VecDeque::new())
        }
        Some(Resolution::Ranges(ranges)) if ranges.len() == 1 => {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(rep.content_type));
            if let Ok(value) = HeaderValue::from_str(&ranges[0].content_range(rep.len)) {
                headers.insert(header::CONTENT_RANGE, value);
            }
            (StatusCode::PARTIAL_CONTENT, VecDeque::from([rep.piece(ranges[0])]))
        }
        Some(Resolution::Ranges(ranges)) => {
            let boundary = site.boundaries.next();
            if let Ok(value) = HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}")) {
                headers.insert(header::CONTENT_TYPE, value);
            }
            (StatusCode::PARTIAL_CONTENT, multipart(&rep, &ranges, &boundary))
        }
    };
    let len: u64 = pieces.iter().map(Piece::len).sum();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let body = if parts.method == Method::HEAD {
        ResponseBody::empty()
    } else if send_queue.is_some() {
        ResponseBody::new(pieces, rep.open_file().cloned()).with_send_queue(send_queue)
    } else {
        match prefetch(pieces, rep.open_file()) {
            Ok(pieces) => ResponseBody::new(pieces, rep.open_file().cloned()),
            Err(e) => {
                tracing::warn!(path = parts.uri.path(), error = %e, "cannot read");
                return internal_error();
            }
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// The body of a `multipart/byteranges` response (RFC 9110 section 14.6).
fn multipart(rep: &Representation, ranges: &[ByteRange], boundary: &str) -> VecDeque<Piece> {
    let mut pieces = VecDeque::with_capacity(2 * ranges.len() + 1);
    for (i, range) in ranges.iter().enumerate() {
        let head = format!(
            "{}--{boundary}\r\nContent-Type: {}\r\nContent-Range: {}\r\n\r\n",
            if i == 0 { "" } else { "\r\n" },
            rep.content_type,
            range.content_range(rep.len),
        );
        pieces.push_back(Piece::Bytes(Bytes::from(head)));
        pieces.push_back(rep.piece(*range));
    }
    pieces.push_back(Piece::Bytes(Bytes::from(format!("\r\n--{boundary}--\r\n"))));
    pieces
}

/// Reads file pieces now, while the request is on a blocking thread anyway,
/// as long as they add up to at most one chunk. Later ones stream.
fn prefetch(pieces: VecDeque<Piece>, file: Option<&Arc<File>>) -> io::Result<VecDeque<Piece>> {
    let Some(file) = file else {
        return Ok(pieces);
    };
    let mut budget = CHUNK;
    pieces
        .into_iter()
        .map(|piece| match piece {
            Piece::File { offset, len } if len <= budget => {
                budget -= len;
                // len <= CHUNK fits in usize.
                Ok(Piece::Bytes(crate::files::read_exact_at(file, offset, len as usize)?))
            }
            piece => Ok(piece),
        })
        .collect()
}

/// The header's value if it occurs exactly once.
fn single_value(parts: &Parts, name: header::HeaderName) -> Option<&HeaderValue> {
    let mut values = parts.headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

fn plain(status: StatusCode, text: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::bytes(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    response
}

fn not_found() -> Response<ResponseBody> {
    plain(StatusCode::NOT_FOUND, "not found\n")
}

fn internal_error() -> Response<ResponseBody> {
    plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
}
