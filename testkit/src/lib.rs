//! Test fixtures for dare. Not published; a dev-dependency only.
//!
//! [`HostileMirror`] serves one container file over HTTP/1.1 on `127.0.0.1` (a port of its own),
//! honestly (RFC 9110 single and multiple ranges, suffixes, 416) or in one of the hostile
//! [`Mode`]s a lying mirror uses: a lying length, endless bodies, a drip, stalls, truncation, bad
//! redirects. It is raw HTTP over tokio's `TcpListener`, so every byte and every pause is under the
//! test's control, and it runs on a thread of its own, so both `#[test]` and `#[tokio::test]`
//! functions can use it. It counts requests and bytes sent, and stops (closing every connection)
//! when dropped.
//!
//! ```no_run
//! use dare_testkit::{HostileMirror, Mode};
//!
//! let bad = HostileMirror::start("app.dare", Mode::LyingLength);
//! let good = HostileMirror::start("app.dare", Mode::Honest);
//! // dare update --from {bad.url()} --from {good.url()} ...
//! // dare serve DIR --upstream {bad.url()} ...
//! println!("{} {}", bad.url(), good.url());
//! bad.set_mode(Mode::Drip(std::time::Duration::from_millis(100)));
//! assert!(bad.stats().requests <= 1);
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The interval of [`Mode::Drip`] that defeats a 30 s no-progress timeout: 29 s.
pub const DEFAULT_DRIP: Duration = Duration::from_secs(29);

/// The length [`Mode::LyingLength`] claims: 2^62 bytes.
pub const LYING_LENGTH: u64 = 1 << 62;

/// How the mirror answers each request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// An honest range server: `206` for one range, `multipart/byteranges` for several, `416` past
    /// the end, `200` without a Range header; keep-alive.
    Honest,
    /// Ignores Range: `200` with `Content-Length: 2^62` and zeros without end.
    LyingLength,
    /// Ignores Range: `200`, chunked (no length), the file and then zeros without end.
    Endless200,
    /// `206` with the right `Content-Range` for the first requested range and no Content-Length,
    /// whose body runs on past that range (the rest of the file, then zeros) without end.
    Endless206,
    /// The honest response, with the body sent one byte per interval (see [`DEFAULT_DRIP`]).
    Drip(Duration),
    /// Reads the request and never answers.
    StallBeforeHeaders,
    /// Sends the honest headers and then nothing, keeping the connection open.
    StallAfterHeaders,
    /// Sends the honest headers and half of the promised body, then nothing, keeping the
    /// connection open.
    TruncateKeepOpen,
    /// `302 Found` to this location (a `file://` URL, another mirror, an `http://` downgrade...).
    RedirectTo(String),
}

impl Mode {
    /// [`Mode::Drip`] with [`DEFAULT_DRIP`].
    pub fn drip() -> Mode {
        Mode::Drip(DEFAULT_DRIP)
    }

    /// Every dishonest mode (the redirect to `file:///etc/passwd` standing for the redirects), with
    /// their default settings.
    pub fn hostile() -> Vec<Mode> {
        vec![
            Mode::LyingLength,
            Mode::Endless200,
            Mode::Endless206,
            Mode::drip(),
            Mode::StallBeforeHeaders,
            Mode::StallAfterHeaders,
            Mode::TruncateKeepOpen,
            Mode::RedirectTo("file:///etc/passwd".into()),
        ]
    }

    /// A short name for test output.
    pub fn name(&self) -> String {
        match self {
            Mode::Drip(every) => format!("Drip({}ms)", every.as_millis()),
            Mode::RedirectTo(to) => format!("RedirectTo({to})"),
            other => format!("{other:?}"),
        }
    }
}

/// What the mirror has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests read (complete request heads).
    pub requests: u64,
    /// Bytes written: status lines, headers and bodies.
    pub bytes_sent: u64,
    /// Connections accepted.
    pub connections: u64,
}

struct Shared {
    path: PathBuf,
    mode: Mutex<Mode>,
    requests: AtomicU64,
    bytes_sent: AtomicU64,
    connections: AtomicU64,
}

impl Shared {
    fn mode(&self) -> Mode {
        self.mode.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// An HTTP/1.1 server of one file on `127.0.0.1:0`, honest or hostile; stopped when dropped.
pub struct HostileMirror {
    addr: SocketAddr,
    name: String,
    shared: Arc<Shared>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HostileMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostileMirror").field("url", &self.url()).field("mode", &self.shared.mode()).finish()
    }
}

impl HostileMirror {
    /// Serves the file at `path` (read again for every request, so it may grow) in `mode`, at
    /// [`HostileMirror::url`]. Any request path is answered with the file.
    ///
    /// # Panics
    /// When no loopback port can be bound or the server thread cannot start (a broken test host).
    pub fn start(path: impl AsRef<Path>, mode: Mode) -> HostileMirror {
        let path = path.as_ref().to_path_buf();
        let name = path.file_name().map_or_else(|| "c.dare".into(), |n| n.to_string_lossy().into_owned());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the bound address");
        let shared = Arc::new(Shared {
            path,
            mode: Mutex::new(mode),
            requests: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("hostile-mirror-{}", addr.port()))
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a tokio runtime for the mirror");
                    // Dropping the runtime at the end drops every connection task, closing its socket.
                    runtime.block_on(serve(listener, shared, stopped));
                })
                .expect("spawning the mirror thread")
        };
        HostileMirror { addr, name, shared, stop: Some(stop), thread: Some(thread) }
    }

    /// The container's URL: `http://127.0.0.1:PORT/NAME`.
    pub fn url(&self) -> String {
        format!("http://{}/{}", self.addr, self.name)
    }

    /// The address listened on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes how later requests are answered.
    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap_or_else(|p| p.into_inner()) = mode;
    }

    /// Requests, bytes and connections so far.
    pub fn stats(&self) -> Stats {
        Stats {
            requests: self.shared.requests.load(Ordering::Relaxed),
            bytes_sent: self.shared.bytes_sent.load(Ordering::Relaxed),
            connections: self.shared.connections.load(Ordering::Relaxed),
        }
    }
}

impl Drop for HostileMirror {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: std::net::TcpListener, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let Ok(listener) = TcpListener::from_std(listener) else { return };
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                shared.connections.fetch_add(1, Ordering::Relaxed);
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, Arc::clone(&shared)));
            }
        }
    }
}

/// A request head, at most.
const MAX_HEAD: usize = 16 * 1024;
/// Zeros written per write in the endless modes.
const ZEROS: usize = 16 * 1024;

/// One connection: requests until the client closes, a mode ends it, or a write fails.
async fn connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buf = Vec::new();
    loop {
        let Some(head) = read_head(&mut stream, &mut buf).await else { return };
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let request = Request::parse(&head);
        let keep = answer(&mut stream, &shared, &request).await.unwrap_or(false);
        if !keep {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// Reads up to the empty line; leftover bytes stay in `buf` for the next request.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            return Some(head);
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

struct Request {
    head_only: bool,
    range: Option<String>,
}

impl Request {
    fn parse(head: &str) -> Request {
        let mut lines = head.split("\r\n");
        let method = lines.next().unwrap_or("").split(' ').next().unwrap_or("");
        let range = lines.find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim().eq_ignore_ascii_case("range").then(|| value.trim().to_owned())
        });
        Request { head_only: method.eq_ignore_ascii_case("HEAD"), range }
    }
}

/// An honest response: the head and the body.
struct Response {
    head: String,
    body: Vec<u8>,
}

impl Response {
    fn new(status: &str, headers: &[(&str, String)], body: Vec<u8>) -> Response {
        let mut head = format!("HTTP/1.1 {status}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        Response { head, body }
    }
}

/// The honest answer to `range` for `file` (RFC 9110 section 14).
fn honest(file: &[u8], range: Option<&str>) -> Response {
    let total = file.len() as u64;
    let whole = || {
        Response::new(
            "200 OK",
            &[("Content-Length", total.to_string()), ("Accept-Ranges", "bytes".into())],
            file.to_vec(),
        )
    };
    let Some(spec) = range.and_then(|r| r.strip_prefix("bytes=")) else { return whole() };
    let mut spans = Vec::new();
    for part in spec.split(',') {
        let Some((first, last)) = part.trim().split_once('-') else { return whole() };
        let span = match (first.parse::<u64>().ok(), last.parse::<u64>().ok()) {
            (None, Some(n)) if first.is_empty() && n > 0 => (total.saturating_sub(n), total),
            (Some(a), None) if last.is_empty() => (a, total),
            (Some(a), Some(b)) if a <= b => (a, (b + 1).min(total)),
            _ => return whole(),
        };
        if span.0 < span.1 {
            spans.push(span);
        }
    }
    if spans.is_empty() {
        return Response::new(
            "416 Range Not Satisfiable",
            &[("Content-Range", format!("bytes */{total}")), ("Content-Length", "0".into())],
            Vec::new(),
        );
    }
    if let [(start, end)] = spans[..] {
        return Response::new(
            "206 Partial Content",
            &[
                ("Content-Range", format!("bytes {start}-{}/{total}", end - 1)),
                ("Content-Length", (end - start).to_string()),
            ],
            file[start as usize..end as usize].to_vec(),
        );
    }
    let boundary = "dare-testkit-boundary";
    let mut body = Vec::new();
    for (start, end) in spans {
        body.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {start}-{}/{total}\r\n\r\n",
                end - 1
            )
            .as_bytes(),
        );
        body.extend_from_slice(&file[start as usize..end as usize]);
    }
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Response::new(
        "206 Partial Content",
        &[
            ("Content-Type", format!("multipart/byteranges; boundary={boundary}")),
            ("Content-Length", body.len().to_string()),
        ],
        body,
    )
}

/// Answers one request in the mirror's mode. `Ok(true)`: the connection may serve another request.
async fn answer(stream: &mut TcpStream, shared: &Shared, request: &Request) -> std::io::Result<bool> {
    let mode = shared.mode();
    let file = std::fs::read(&shared.path).unwrap_or_default();
    let honest = || {
        let mut response = honest(&file, request.range.as_deref());
        if request.head_only {
            response.body.clear();
        }
        response
    };
    let mut out = Writer { stream, shared };
    match mode {
        Mode::Honest => {
            let response = honest();
            out.write(response.head.as_bytes()).await?;
            out.write(&response.body).await?;
            Ok(true)
        }
        Mode::LyingLength => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {LYING_LENGTH}\r\n\r\n");
            out.write(head.as_bytes()).await?;
            out.zeros_forever().await
        }
        Mode::Endless200 => {
            out.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").await?;
            out.chunk(&file).await?;
            let zeros = vec![0u8; ZEROS];
            loop {
                out.chunk(&zeros).await?;
            }
        }
        Mode::Endless206 => {
            let response = honest();
            // The Content-Range of the (first) part the honest server would send.
            let first = match response.head.contains("multipart/byteranges") {
                true => first_part_range(&response.body),
                false => response.head.lines().find_map(|l| l.strip_prefix("Content-Range: bytes ")).map(str::to_owned),
            };
            let Some(first) = first else {
                // Nothing to lie about (no range, or unsatisfiable): answer honestly.
                out.write(response.head.as_bytes()).await?;
                out.write(&response.body).await?;
                return Ok(true);
            };
            let start: usize = first.split('-').next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let head =
                format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {first}\r\nConnection: close\r\n\r\n");
            out.write(head.as_bytes()).await?;
            out.write(&file[start.min(file.len())..]).await?;
            out.zeros_forever().await
        }
        Mode::Drip(every) => {
            let response = honest();
            out.write(response.head.as_bytes()).await?;
            for byte in &response.body {
                tokio::time::sleep(every).await;
                out.write(std::slice::from_ref(byte)).await?;
            }
            Ok(true)
        }
        Mode::StallBeforeHeaders => hold(out.stream).await,
        Mode::StallAfterHeaders => {
            out.write(honest().head.as_bytes()).await?;
            hold(out.stream).await
        }
        Mode::TruncateKeepOpen => {
            let response = honest();
            out.write(response.head.as_bytes()).await?;
            out.write(&response.body[..response.body.len() / 2]).await?;
            hold(out.stream).await
        }
        Mode::RedirectTo(location) => {
            let head = format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n");
            out.write(head.as_bytes()).await?;
            Ok(true)
        }
    }
}

/// The `Content-Range` value of the first part of a multipart body.
fn first_part_range(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
    text.lines().find_map(|l| l.strip_prefix("Content-Range: bytes ")).map(str::to_owned)
}

/// Keeps the connection open, sending nothing, until the client closes it or the mirror stops.
async fn hold(stream: &mut TcpStream) -> std::io::Result<bool> {
    let mut sink = [0u8; 1024];
    loop {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => return Ok(false),
            Ok(_) => {}
        }
    }
}

/// Writes to the client, counting the bytes.
struct Writer<'a> {
    stream: &'a mut TcpStream,
    shared: &'a Shared,
}

impl Writer<'_> {
    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.shared.bytes_sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn chunk(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.write(format!("{:x}\r\n", bytes.len()).as_bytes()).await?;
        self.write(bytes).await?;
        self.write(b"\r\n").await
    }

    /// Zeros until the client goes away (the write fails).
    async fn zeros_forever(&mut self) -> std::io::Result<bool> {
        let zeros = vec![0u8; ZEROS];
        loop {
            self.write(&zeros).await?;
        }
    }
}
