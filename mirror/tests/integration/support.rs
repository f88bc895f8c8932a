//! A server on `127.0.0.1:0` over a temporary directory, and a raw HTTP/1.1
//! client that sends exactly the bytes a test writes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dare_mirror::{MirrorError, Overlay, ServedLengths, Server, ServerConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Deterministic bytes that differ at every offset modulo 251.
pub fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i / 251) as u8).collect()
}

pub struct TestServer {
    pub addr: SocketAddr,
    /// Holds `root/` (served) and anything a test puts beside it.
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), MirrorError>>>,
}

#[derive(Default)]
pub struct Options {
    pub config: ServerConfig,
    pub lengths: Option<ServedLengths>,
    pub overlay: Option<Arc<dyn Overlay>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::with(Options::default()).await
    }

    pub async fn with_config(config: ServerConfig) -> TestServer {
        TestServer::with(Options { config, ..Options::default() }).await
    }

    pub async fn with(options: Options) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::create_dir(dir.path().join("root")).expect("root directory");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let mut server = Server::new(dir.path().join("root"), options.config);
        if let Some(lengths) = options.lengths {
            server = server.lengths(lengths);
        }
        if let Some(overlay) = options.overlay {
            server = server.overlay(overlay);
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(listener, async {
            let _ = stopped.await;
        }));
        TestServer { addr, dir, stop: Some(stop), task: Some(task) }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Writes `root/name` and returns its contents.
    pub fn file(&self, name: &str, bytes: &[u8]) -> Vec<u8> {
        let path = self.root().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(&path, bytes).expect("write test file");
        bytes.to_vec()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }

    /// One request on a new connection.
    pub async fn request(&self, raw: &str) -> Reply {
        self.client().await.request(raw).await
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request(&request("GET", path, headers)).await
    }

    /// Triggers shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down and waits for `run` to return.
    pub async fn stop(mut self) {
        self.begin_shutdown();
        let task = self.task.take().expect("stopped once");
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("server stops within 20 s")
            .expect("server task did not panic")
            .expect("server returned Ok");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// `METHOD path HTTP/1.1` with a Host header and `headers`.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("\r\n");
    raw
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut values = self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let first = values.next().map(|(_, v)| v.as_str());
        assert!(values.next().is_none(), "header {name} repeated");
        first
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length").map(|v| v.parse().expect("numeric content-length"))
    }

    /// The headers except `Date`, for comparing two responses.
    pub fn headers_without_date(&self) -> Vec<(String, String)> {
        let mut headers: Vec<_> =
            self.headers.iter().filter(|(n, _)| !n.eq_ignore_ascii_case("date")).cloned().collect();
        headers.sort();
        headers
    }
}

pub struct Client {
    pub stream: BufReader<TcpStream>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        Client { stream: BufReader::new(stream) }
    }

    pub async fn send(&mut self, raw: &[u8]) {
        self.stream.get_mut().write_all(raw).await.expect("send request");
    }

    pub async fn request(&mut self, raw: &str) -> Reply {
        self.send(raw.as_bytes()).await;
        let head = raw.starts_with("HEAD ");
        self.reply(head).await.expect("a complete reply")
    }

    /// Reads a status line and headers.
    pub async fn head(&mut self) -> std::io::Result<(u16, Vec<(String, String)>)> {
        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status =
            line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let line = line.trim_end_matches("\r\n");
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header line");
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        Ok((status, headers))
    }

    /// Reads one response; its body is `Content-Length` bytes unless the
    /// request was HEAD or the status has no body.
    pub async fn reply(&mut self, head_request: bool) -> std::io::Result<Reply> {
        let (status, headers) = self.head().await?;
        let mut reply = Reply { status, headers, body: Vec::new() };
        if !head_request && status != 304 && status != 204 {
            let len = reply.content_length().expect("content-length on every body");
            reply.body = vec![0; len as usize];
            self.stream.read_exact(&mut reply.body).await?;
        }
        Ok(reply)
    }

    /// Reads until the server closes; returns what came.
    pub async fn read_to_close(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        // A reset after the server dropped the connection ends it too.
        let _ = self.stream.read_to_end(&mut rest).await;
        rest
    }

    /// Whether the server closed the connection within `limit`.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let mut buf = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }
}

/// The parts of a `multipart/byteranges` body, checked to be well formed:
/// `(Content-Range, Content-Type, bytes)` in order.
pub fn multipart(reply: &Reply) -> Vec<(String, String, Vec<u8>)> {
    let content_type = reply.header("content-type").expect("content-type");
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("not multipart: {content_type}"));
    let delimiter = format!("--{boundary}");
    let mut rest: &[u8] = &reply.body;
    let mut parts = Vec::new();
    rest = rest.strip_prefix(delimiter.as_bytes()).expect("body opens with the boundary");
    loop {
        if let Some(end) = rest.strip_prefix(b"--\r\n") {
            assert!(end.is_empty(), "nothing after the closing boundary");
            return parts;
        }
        rest = rest.strip_prefix(b"\r\n").expect("CRLF after a boundary");
        let head_end = find(rest, b"\r\n\r\n").expect("part headers end");
        let head = std::str::from_utf8(&rest[..head_end]).expect("ASCII part headers");
        rest = &rest[head_end + 4..];
        let mut range = None;
        let mut ctype = None;
        for line in head.split("\r\n") {
            let (name, value) = line.split_once(':').expect("part header line");
            match name.to_ascii_lowercase().as_str() {
                "content-range" => range = Some(value.trim().to_owned()),
                "content-type" => ctype = Some(value.trim().to_owned()),
                other => panic!("unexpected part header {other}"),
            }
        }
        let range = range.expect("part has Content-Range");
        let (first, last, _) = parse_content_range(&range);
        let len = (last - first + 1) as usize;
        parts.push((range, ctype.expect("part has Content-Type"), rest[..len].to_vec()));
        rest = &rest[len..];
        rest = rest.strip_prefix(b"\r\n").expect("CRLF before a boundary");
        rest = rest.strip_prefix(delimiter.as_bytes()).expect("boundary after a part");
    }
}

/// `bytes first-last/total`.
pub fn parse_content_range(value: &str) -> (u64, u64, u64) {
    let spec = value.strip_prefix("bytes ").expect("bytes unit");
    let (range, total) = spec.split_once('/').expect("range/total");
    let (first, last) = range.split_once('-').expect("first-last");
    (first.parse().expect("first"), last.parse().expect("last"), total.parse().expect("total"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).expect("open for append");
    file.write_all(bytes).expect("append");
}

/// Whether `present` (a tool the test needs is installed). A missing tool
/// fails the test under `CI=true` (a test must not pass by skipping there),
/// with `hint`, the install command; elsewhere the test prints it and skips.
pub fn require_tool(present: bool, tool: &str, hint: &str) -> bool {
    if !present {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
            "{tool} is not installed, and CI=true: {hint}"
        );
        eprintln!("skipped: {tool} is not installed ({hint})");
    }
    present
}
