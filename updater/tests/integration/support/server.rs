//! A small HTTP/1.1 range server for tests (hyper 1 on 127.0.0.1:0): single,
//! suffix and multiple ranges (multipart/byteranges), 416, and fault knobs:
//! ignore ranges, drop the connection after N body bytes for the first K
//! requests, and serve different content depending on the request count.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Chooses the content served to request number `n` (counted from 0).
pub type Pick = Arc<dyn Fn(u64) -> Arc<[u8]> + Send + Sync>;

/// Faults the server injects.
#[derive(Clone, Debug, Default)]
pub struct Knobs {
    /// Answer 200 with the whole file whatever the Range header says.
    pub ignore_ranges: bool,
    /// Drop the connection after this many body bytes ...
    pub drop_after: u64,
    /// ... of each of the first this many requests.
    pub drop_requests: u64,
}

struct Shared {
    pick: Pick,
    knobs: Mutex<Knobs>,
    requests: AtomicU64,
    bytes: AtomicU64,
    log: Mutex<Vec<String>>,
}

/// A running server; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
}

impl TestServer {
    /// Serves `content` with no faults.
    pub async fn start(content: Vec<u8>) -> TestServer {
        let content: Arc<[u8]> = content.into();
        TestServer::start_with(Arc::new(move |_| Arc::clone(&content)), Knobs::default()).await
    }

    /// Serves what `pick` chooses per request, with `knobs`.
    pub async fn start_with(pick: Pick, knobs: Knobs) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            pick,
            knobs: Mutex::new(knobs),
            requests: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
        });
        let (stop, mut stopped) = oneshot::channel::<()>();
        let s = Arc::clone(&shared);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let s = Arc::clone(&s);
                        tokio::spawn(async move {
                            let service = service_fn(move |req| {
                                let s = Arc::clone(&s);
                                async move { Ok::<_, Infallible>(respond(&s, req)) }
                            });
                            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                        });
                    }
                }
            }
        });
        TestServer { addr, shared, stop: Some(stop) }
    }

    /// The URL of the container.
    pub fn url(&self) -> String {
        format!("http://{}/app.dare", self.addr)
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Body bytes handed to the connection so far.
    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::SeqCst)
    }

    /// The Range header of every request (`-` when there was none).
    pub fn log(&self) -> Vec<String> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Changes the knobs of later requests.
    pub fn set_knobs(&self, knobs: Knobs) {
        *self.shared.knobs.lock().unwrap() = knobs;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A parsed Range header: the satisfiable spans `[start, end)`, or `None` when it is absent or malformed
/// (then the whole file is served), or `Some(empty)` when nothing is satisfiable.
fn parse_ranges(value: &str, len: u64) -> Option<Vec<(u64, u64)>> {
    let specs = value.trim().strip_prefix("bytes=")?;
    let mut out = Vec::new();
    for spec in specs.split(',') {
        let (a, b) = spec.trim().split_once('-')?;
        if a.is_empty() {
            let n: u64 = b.parse().ok()?;
            if n > 0 && len > 0 {
                out.push((len - n.min(len), len));
            }
        } else {
            let start: u64 = a.parse().ok()?;
            let last = if b.is_empty() { u64::MAX - 1 } else { b.parse::<u64>().ok()? };
            if last < start {
                return None;
            }
            if start < len {
                out.push((start, (last + 1).min(len)));
            }
        }
    }
    Some(out)
}

const BOUNDARY: &str = "DARE_TEST_BOUNDARY_5f1c";

fn respond(s: &Shared, req: Request<Incoming>) -> Response<TestBody> {
    let n = s.requests.fetch_add(1, Ordering::SeqCst);
    let knobs = s.knobs.lock().unwrap().clone();
    let content = (s.pick)(n);
    let len = content.len() as u64;
    let range = req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    s.log.lock().unwrap().push(range.clone().unwrap_or_else(|| "-".into()));
    let spans = if knobs.ignore_ranges { None } else { range.as_deref().and_then(|r| parse_ranges(r, len)) };
    let mut builder = Response::builder().header(header::ACCEPT_RANGES, "bytes");
    let body: Vec<u8> = match spans.as_deref() {
        None => {
            builder = builder.status(StatusCode::OK).header(header::CONTENT_TYPE, "application/octet-stream");
            content.to_vec()
        }
        Some([]) => {
            let body = TestBody::new(Vec::new(), None);
            return builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                .body(body)
                .unwrap();
        }
        Some([(a, b)]) => {
            builder = builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_RANGE, format!("bytes {a}-{}/{len}", b - 1));
            content[*a as usize..*b as usize].to_vec()
        }
        Some(many) => {
            builder = builder.status(StatusCode::PARTIAL_CONTENT).header(
                header::CONTENT_TYPE,
                HeaderValue::from_str(&format!("multipart/byteranges; boundary={BOUNDARY}")).unwrap(),
            );
            let mut body = Vec::new();
            for (a, b) in many {
                body.extend_from_slice(
                    format!(
                        "\r\n--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {a}-{}/{len}\r\n\r\n",
                        b - 1
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(&content[*a as usize..*b as usize]);
            }
            body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
            body
        }
    };
    let full = body.len() as u64;
    let cut = (n < knobs.drop_requests && full > knobs.drop_after).then_some(knobs.drop_after);
    let sent = cut.unwrap_or(full);
    s.bytes.fetch_add(sent, Ordering::SeqCst);
    let mut body = body;
    body.truncate(sent as usize);
    builder.header(header::CONTENT_LENGTH, full).body(TestBody::new(body, cut)).unwrap()
}

/// A response body sent in 16 KiB chunks; when cut, it pauses (so what was
/// written is flushed) and then fails, which makes hyper drop the connection.
pub struct TestBody {
    chunks: VecDeque<Bytes>,
    cut: bool,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TestBody {
    fn new(bytes: Vec<u8>, cut: Option<u64>) -> TestBody {
        let bytes = Bytes::from(bytes);
        let mut chunks = VecDeque::new();
        let mut at = 0;
        while at < bytes.len() {
            let end = (at + 16 * 1024).min(bytes.len());
            chunks.push_back(bytes.slice(at..end));
            at = end;
        }
        TestBody { chunks, cut: cut.is_some(), pause: None }
    }
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(chunk) = self.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if !self.cut {
            return Poll::Ready(None);
        }
        let pause = self.pause.get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(30))));
        match pause.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(Some(Err(std::io::Error::other("the test server drops the connection")))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty() && !self.cut
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ranges;

    #[test]
    fn ranges() {
        assert_eq!(parse_ranges("bytes=0-9", 100), Some(vec![(0, 10)]));
        assert_eq!(parse_ranges("bytes=-10", 100), Some(vec![(90, 100)]));
        assert_eq!(parse_ranges("bytes=-1000", 100), Some(vec![(0, 100)]));
        assert_eq!(parse_ranges("bytes=95-", 100), Some(vec![(95, 100)]));
        assert_eq!(parse_ranges("bytes=0-0, 5-200", 100), Some(vec![(0, 1), (5, 100)]));
        assert_eq!(parse_ranges("bytes=200-300", 100), Some(vec![]));
        assert_eq!(parse_ranges("items=0-1", 100), None);
    }
}
