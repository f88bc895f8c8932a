//! A small HTTP/1.1 range server on raw tokio TCP whose behaviour tests can turn hostile, and a
//! recording sink.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dare_updater::transport::{ByteRange, RangeSink, SinkError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How the server answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// RFC 9110 ranges: 206 single part, multipart/byteranges, 416.
    #[default]
    Honour,
    /// 200 with the whole file.
    Ignore,
    /// One 206 part from the first requested byte to the last.
    Coalesce,
    /// Multipart parts in reverse order.
    Reorder,
    /// 404.
    NotFound,
    /// 416 with `Content-Range: bytes */LEN`.
    Unsatisfiable,
    /// 206 with a malformed Content-Range.
    BadContentRange,
    /// 206 with a Content-Range for bytes nobody asked for.
    WrongRange,
    /// 206 whose Content-Length is larger than its Content-Range.
    LongerThanRange,
    /// A single 206 part with only the last requested range.
    LastOnly,
    /// Never answers.
    StallHeaders,
}

/// Knobs; change them between requests with [`Server::set`].
#[derive(Clone, Debug, Default)]
pub struct Knobs {
    pub mode: Mode,
    /// Close the connection after this many body bytes, for the next this-many requests.
    pub drop_after: Option<(usize, u32)>,
    /// Stop sending (but keep the connection) after this many body bytes.
    pub stall_after: Option<usize>,
    /// Junk sent after the body, beyond what Content-Length says.
    pub extra_bytes: usize,
    /// Write the body in pieces of this size (0: at once), waiting `write_delay` between them.
    pub write_chunk: usize,
    pub write_delay: Duration,
}

/// What the server saw and did for one request.
#[derive(Clone, Debug)]
pub struct Logged {
    pub path: String,
    pub range: Option<String>,
    pub status: u16,
    /// The body as planned (Content-Length).
    pub body_len: usize,
}

struct Shared {
    content: Mutex<Vec<u8>>,
    knobs: Mutex<Knobs>,
    log: Mutex<Vec<Logged>>,
    connections: AtomicU64,
}

/// A server on 127.0.0.1; stopped when dropped.
pub struct Server {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A byte stream to speak HTTP on.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Turns an accepted TCP connection into the stream to speak HTTP on (TLS, in one test).
pub type Wrap = Arc<dyn Fn(TcpStream) -> Pin<Box<dyn Future<Output = Option<Box<dyn Stream>>> + Send>> + Send + Sync>;

impl Server {
    /// Serves `content` at every path (and a 301 at `/moved` to `/c.dare`).
    pub async fn start(content: Vec<u8>) -> Server {
        Self::start_with(content, None).await
    }

    pub async fn start_with(content: Vec<u8>, wrap: Option<Wrap>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            content: Mutex::new(content),
            knobs: Mutex::new(Knobs::default()),
            log: Mutex::new(Vec::new()),
            connections: AtomicU64::new(0),
        });
        let state = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else { return };
                state.connections.fetch_add(1, Ordering::Relaxed);
                let state = Arc::clone(&state);
                let wrap = wrap.clone();
                connections.spawn(async move {
                    match wrap {
                        None => serve(socket, state).await,
                        Some(wrap) => {
                            if let Some(stream) = wrap(socket).await {
                                serve(stream, state).await
                            }
                        }
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Server { addr, shared, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/c.dare", self.addr)
    }

    pub fn set(&self, f: impl FnOnce(&mut Knobs)) {
        f(&mut self.shared.knobs.lock().unwrap());
    }

    pub fn set_content(&self, content: Vec<u8>) {
        *self.shared.content.lock().unwrap() = content;
    }

    pub fn log(&self) -> Vec<Logged> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    pub fn ranges_seen(&self) -> Vec<Option<String>> {
        self.log().into_iter().map(|l| l.range).collect()
    }
}

async fn serve(mut socket: impl AsyncRead + AsyncWrite + Unpin, shared: Arc<Shared>) {
    let mut buf = Vec::new();
    loop {
        let head = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = buf.drain(..i + 4).collect();
                break String::from_utf8_lossy(&head).into_owned();
            }
            if buf.len() > 16 * 1024 {
                return;
            }
            match socket.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let mut lines = head.split("\r\n");
        let path = lines.next().and_then(|l| l.split(' ').nth(1)).unwrap_or("/").to_owned();
        let range = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("range"))
            .map(|(_, v)| v.trim().to_owned());
        let knobs = {
            let mut knobs = shared.knobs.lock().unwrap();
            let current = knobs.clone();
            if let Some((bytes, left)) = knobs.drop_after {
                knobs.drop_after = (left > 1).then_some((bytes, left - 1));
            }
            current
        };
        let content = shared.content.lock().unwrap().clone();
        let (status, headers, body) = respond(&path, range.as_deref(), &content, knobs.mode);
        shared.log.lock().unwrap().push(Logged { path, range, status, body_len: body.len() });
        if knobs.mode == Mode::StallHeaders {
            std::future::pending::<()>().await;
        }
        let mut out = format!("HTTP/1.1 {status} X\r\n").into_bytes();
        for (name, value) in &headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if !headers.iter().any(|(n, _)| n == "Content-Length") {
            out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if socket.write_all(&out).await.is_err() {
            return;
        }
        let mut limit = body.len();
        let mut cut = false;
        if let Some((n, _)) = knobs.drop_after {
            cut |= n < limit;
            limit = limit.min(n);
        }
        let stall = knobs.stall_after.is_some_and(|n| n < body.len());
        if let Some(n) = knobs.stall_after {
            limit = limit.min(n);
        }
        let chunk = if knobs.write_chunk == 0 { limit.max(1) } else { knobs.write_chunk };
        for piece in body[..limit].chunks(chunk) {
            if socket.write_all(piece).await.is_err() {
                return;
            }
            if !knobs.write_delay.is_zero() {
                tokio::time::sleep(knobs.write_delay).await;
            }
        }
        if stall {
            let _ = socket.flush().await;
            std::future::pending::<()>().await;
        }
        if cut {
            let _ = socket.flush().await;
            let _ = socket.shutdown().await;
            return;
        }
        if knobs.extra_bytes > 0 {
            let _ = socket.write_all(&vec![b'!'; knobs.extra_bytes]).await;
        }
        if socket.flush().await.is_err() {
            return;
        }
    }
}

type Response = (u16, Vec<(String, String)>, Vec<u8>);

fn respond(path: &str, range: Option<&str>, content: &[u8], mode: Mode) -> Response {
    let len = content.len() as u64;
    let h = |name: &str, value: String| (name.to_owned(), value);
    if path == "/moved" {
        return (301, vec![h("Location", "/c.dare".into())], Vec::new());
    }
    if path == "/to-http" {
        // Plain http (nothing listens on port 1): a downgrade when this server speaks https.
        return (302, vec![h("Location", "http://127.0.0.1:1/c.dare".into())], Vec::new());
    }
    match mode {
        Mode::NotFound => return (404, vec![], b"not here".to_vec()),
        Mode::Unsatisfiable => return (416, vec![h("Content-Range", format!("bytes */{len}"))], Vec::new()),
        Mode::Ignore => return (200, vec![], content.to_vec()),
        _ => {}
    }
    let Some(spans) = range.and_then(|r| parse_range(r, len)) else {
        return (200, vec![], content.to_vec());
    };
    if spans.is_empty() {
        return (416, vec![h("Content-Range", format!("bytes */{len}"))], Vec::new());
    }
    let single = |s: u64, e: u64| -> Response {
        (206, vec![h("Content-Range", format!("bytes {s}-{}/{len}", e - 1))], content[s as usize..e as usize].to_vec())
    };
    match mode {
        Mode::BadContentRange => {
            let (s, e) = spans[0];
            (
                206,
                vec![h("Content-Range", format!("bytes {}-{s}/{len}", e + 5))],
                content[s as usize..e as usize].to_vec(),
            )
        }
        Mode::WrongRange => {
            let (s, e) = spans[0];
            // The same length, just after the requested bytes (or at the start).
            if e + (e - s) <= len { single(e, e + (e - s)) } else { single(0, 1) }
        }
        Mode::LongerThanRange => {
            let (s, e) = spans[0];
            let body = content[s as usize..(e as usize + 10).min(content.len())].to_vec();
            (206, vec![h("Content-Range", format!("bytes {s}-{}/{len}", e - 1))], body)
        }
        Mode::LastOnly => {
            let (s, e) = spans[spans.len() - 1];
            single(s, e)
        }
        Mode::Coalesce => {
            let s = spans.iter().map(|s| s.0).min().unwrap();
            let e = spans.iter().map(|s| s.1).max().unwrap();
            single(s, e)
        }
        _ if spans.len() == 1 => single(spans[0].0, spans[0].1),
        _ => {
            let mut parts = spans.clone();
            if mode == Mode::Reorder {
                parts.reverse();
            }
            let boundary = "3d6b6a416f9b5";
            let mut body = Vec::new();
            for (s, e) in parts {
                body.extend_from_slice(
                    format!(
                        "\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {s}-{}/{len}\r\n\r\n",
                        e - 1
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(&content[s as usize..e as usize]);
            }
            body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            (206, vec![h("Content-Type", format!("multipart/byteranges; boundary={boundary}"))], body)
        }
    }
}

/// The satisfiable ranges of a Range header (`None`: not a bytes range, ignore it).
fn parse_range(value: &str, len: u64) -> Option<Vec<(u64, u64)>> {
    let specs = value.strip_prefix("bytes=")?;
    let mut spans = Vec::new();
    for spec in specs.split(',') {
        let (a, b) = spec.trim().split_once('-')?;
        let span = if a.is_empty() {
            let n: u64 = b.parse().ok()?;
            (n > 0 && len > 0).then(|| (len - n.min(len), len))
        } else {
            let a: u64 = a.parse().ok()?;
            let b: u64 = if b.is_empty() { len.saturating_sub(1) } else { b.parse().ok()? };
            (a < len && a <= b).then(|| (a, b.min(len - 1) + 1))
        };
        spans.extend(span);
    }
    Some(spans)
}

// ---------------------------------------------------------------------------------------------------------

/// One range as the sink saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Got {
    pub index: usize,
    pub start: u64,
    pub total: Option<u64>,
    pub bytes: Vec<u8>,
}

/// Records everything; refuses data once `refuse_after` bytes have arrived (when set).
#[derive(Debug, Default)]
pub struct Collect {
    pub got: Vec<Got>,
    pub refuse_after: Option<u64>,
    pub seen: u64,
    pub data_calls: u64,
}

impl Collect {
    pub fn refusing_after(n: u64) -> Self {
        Collect { refuse_after: Some(n), ..Collect::default() }
    }
}

impl RangeSink for Collect {
    fn begin(&mut self, index: usize, start: u64, total: Option<u64>) -> Result<(), SinkError> {
        self.got.push(Got { index, start, total, bytes: Vec::new() });
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        self.seen += bytes.len() as u64;
        self.data_calls += 1;
        if self.refuse_after.is_some_and(|n| self.seen > n) {
            return Err(SinkError("digest mismatch".into()));
        }
        match self.got.last_mut() {
            Some(got) => got.bytes.extend_from_slice(bytes),
            None => return Err(SinkError("data before begin".into())),
        }
        Ok(())
    }
}

/// What a sink must have seen for `ranges` of `content`: one `begin` per range, in order, and the bytes.
pub fn expected(content: &[u8], ranges: &[ByteRange]) -> Vec<Got> {
    let total = content.len() as u64;
    ranges
        .iter()
        .enumerate()
        .map(|(index, r)| {
            let (s, e) = match *r {
                ByteRange::Span { start, end } => (start, end),
                ByteRange::Suffix(n) => (total - n.min(total), total),
            };
            Got { index, start: s, total: Some(total), bytes: content[s as usize..e as usize].to_vec() }
        })
        .collect()
}

/// Deterministic, position-dependent bytes.
pub fn content(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

pub fn span(start: u64, end: u64) -> ByteRange {
    ByteRange::Span { start, end }
}

/// A port on 127.0.0.1 with nothing listening (bound and closed).
pub fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}
