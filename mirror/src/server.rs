//! Accepting connections: limits, timeouts, graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::error::MirrorError;
use crate::files::{ServedDir, ServedLengths};
use crate::overlay::Overlay;
use crate::response::{Site, respond};
use crate::sendfile::SendQueue;

/// How long to wait before accepting again after `accept` failed (out of
/// file descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Limits and timeouts of a [`Server`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// A client must send a complete request head within this time of
    /// starting one (HTTP/1) or of connecting. For HTTP/1 hyper also runs
    /// this timer while a kept-alive connection waits for its next request,
    /// so it bounds idle HTTP/1 connections too. Default 10 s.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress for this long is closed,
    /// whatever else it sends (HTTP/2 pings, window updates); one with a
    /// request in progress whose response makes no progress for this long
    /// too. Default 60 s.
    pub idle_timeout: Duration,
    /// A client that accepts no bytes of a response for this long is
    /// dropped. Default 60 s.
    pub send_timeout: Duration,
    /// At most this many connections are served at once. When all are
    /// taken and a client is waiting, the connection idle the longest (no
    /// request in progress) is closed to make room, as nginx reclaims
    /// kept-alive connections at `worker_connections`; when every connection
    /// has a request in progress, clients wait in the kernel's listen
    /// backlog. Default 1024.
    pub max_connections: usize,
    /// On shutdown, in-flight responses get this long to finish before their
    /// connections are cut. Default 10 s.
    pub shutdown_timeout: Duration,
    /// A `Range` header with more range-specs than this is ignored and the
    /// whole representation is sent, as nginx's `max_ranges` does.
    /// Default 64.
    pub max_ranges: usize,
    /// An opened file's descriptor is reused by requests for the same path
    /// for this long (at most 256 files). Each response still reads the
    /// file's length and validators anew, so a growing file is served
    /// correctly; a file replaced or deleted is served as it was for up to
    /// this long. Zero opens the file for every request. Default 100 ms.
    pub open_file_ttl: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            max_connections: 1024,
            shutdown_timeout: Duration::from_secs(10),
            max_ranges: 64,
            open_file_ttl: Duration::from_millis(100),
        }
    }
}

impl ServerConfig {
    /// With [`header_read_timeout`](Self::header_read_timeout) set.
    pub fn with_header_read_timeout(mut self, d: Duration) -> Self {
        self.header_read_timeout = d;
        self
    }

    /// With [`idle_timeout`](Self::idle_timeout) set.
    pub fn with_idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// With [`send_timeout`](Self::send_timeout) set.
    pub fn with_send_timeout(mut self, d: Duration) -> Self {
        self.send_timeout = d;
        self
    }

    /// With [`max_connections`](Self::max_connections) set.
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// With [`shutdown_timeout`](Self::shutdown_timeout) set.
    pub fn with_shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }

    /// With [`max_ranges`](Self::max_ranges) set.
    pub fn with_max_ranges(mut self, n: usize) -> Self {
        self.max_ranges = n;
        self
    }

    /// With [`open_file_ttl`](Self::open_file_ttl) set.
    pub fn with_open_file_ttl(mut self, d: Duration) -> Self {
        self.open_file_ttl = d;
        self
    }
}

/// An HTTP/1.1 (and cleartext HTTP/2) range server for one directory.
///
/// Built with [`Server::new`] and the optional [`Server::lengths`] and
/// [`Server::overlay`], then driven by [`Server::run`]. A clone shares the
/// lengths and the overlay: to serve several listeners (one per core with
/// `SO_REUSEPORT`, say), run one clone on each.
#[derive(Clone)]
pub struct Server {
    root: PathBuf,
    config: ServerConfig,
    lengths: ServedLengths,
    overlay: Option<Arc<dyn Overlay>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("root", &self.root)
            .field("config", &self.config)
            .field("lengths", &self.lengths)
            .field("overlay", &self.overlay.is_some())
            .finish()
    }
}

impl Server {
    /// A server for the regular files under `root`.
    pub fn new(root: impl Into<PathBuf>, config: ServerConfig) -> Server {
        Server { root: root.into(), config, lengths: ServedLengths::default(), overlay: None }
    }

    /// Caps the served length of some paths; the caller keeps a clone to
    /// change them while the server runs.
    pub fn lengths(mut self, lengths: ServedLengths) -> Server {
        self.lengths = lengths;
        self
    }

    /// Answers some paths from memory first.
    pub fn overlay(mut self, overlay: Arc<dyn Overlay>) -> Server {
        self.overlay = Some(overlay);
        self
    }

    /// Serves connections from `listener` until `shutdown` completes; then
    /// stops accepting, lets in-flight responses finish (up to
    /// [`ServerConfig::shutdown_timeout`]) and returns.
    ///
    /// Fails only at start, when the root directory or the listener is
    /// unusable; errors of single connections are logged and survived.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), MirrorError> {
        let dir =
            ServedDir::open(&self.root).map_err(|source| MirrorError::Root { path: self.root.clone(), source })?;
        let addr = listener.local_addr().map_err(MirrorError::Listener)?;
        tracing::info!(%addr, root = %dir.path().display(), "serving");
        let config = self.config;
        let site = Arc::new(Site::new(dir, self.lengths, self.overlay, config.max_ranges, config.open_file_ttl));
        let builder = Arc::new(http_builder(&config));
        let timeouts =
            Timeouts { header_read: config.header_read_timeout, idle: config.idle_timeout, send: config.send_timeout };
        let limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
        let (stop_tx, stop_rx) = watch::channel(());
        let mut connections = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);

        let idle = Arc::new(IdleConnections::default());
        loop {
            let accepted = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            };
            // A client is waiting: take a free slot, or make one by closing
            // the connection idle the longest; if every connection is busy,
            // wait for one to end.
            let permit = match limit.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    if idle.reclaim_one() {
                        tracing::debug!("connection slots full: closed the connection idle the longest");
                    }
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        permit = limit.clone().acquire_owned() => {
                            permit.expect("the connection semaphore is never closed")
                        }
                    }
                }
            };
            while let Some(done) = connections.try_join_next() {
                log_join(done);
            }
            connections.spawn(serve_connection(Connection {
                stream,
                peer,
                builder: builder.clone(),
                site: site.clone(),
                timeouts,
                stop: stop_rx.clone(),
                idle: idle.clone(),
                _permit: permit,
            }));
        }

        drop(listener);
        tracing::info!(connections = connections.len(), "shutting down: finishing in-flight requests");
        stop_tx.send_replace(());
        let drained = tokio::time::timeout(config.shutdown_timeout, async {
            while let Some(done) = connections.join_next().await {
                log_join(done);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(connections = connections.len(), "shutdown timeout: closing connections still open");
            connections.shutdown().await;
        }
        Ok(())
    }
}

fn http_builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(config.header_read_timeout).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        // Bounds memory: each stream holds at most one read chunk plus
        // this much queued output.
        .max_concurrent_streams(32)
        .max_send_buf_size(128 * 1024);
    builder
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(error = %e, "connection task panicked");
    }
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header_read: Duration,
    idle: Duration,
    send: Duration,
}

struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    builder: Arc<auto::Builder<TokioExecutor>>,
    site: Arc<Site>,
    timeouts: Timeouts,
    stop: watch::Receiver<()>,
    idle: Arc<IdleConnections>,
    /// Held for the connection's lifetime.
    _permit: OwnedSemaphorePermit,
}

async fn serve_connection(c: Connection) {
    let Connection { stream, peer, builder, site, timeouts, mut stop, idle, _permit } = c;
    // Headers and small bodies go out in one write; do not let Nagle delay
    // the last segment of a response.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
    }
    let activity = Arc::new(Activity::new());
    let _registered = idle.register(activity.clone());
    let send_queue = Arc::new(SendQueue::default());
    let io = TokioIo::new(Watched { inner: stream, activity: activity.clone(), send_queue: send_queue.clone() });
    let requests = activity.clone();
    let service = service_fn(move |req| {
        let guard = InFlight::begin(requests.clone());
        let send_queue = cfg!(target_os = "linux").then(|| send_queue.clone());
        let response = respond(&site, req, send_queue).map(|body| body.with_guard(Box::new(guard)));
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let mut conn = std::pin::pin!(builder.serve_connection(io, service));
    let mut watchdog = std::pin::pin!(watchdog(&activity, timeouts));
    let mut stopping = false;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = activity.reclaimed.notified() => {
                tracing::debug!(%peer, "closing an idle connection: every slot is taken and a client waits");
                return;
            }
            reason = &mut watchdog => {
                tracing::debug!(%peer, reason, "closing connection");
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Resolves when the connection should be dropped, with the reason.
async fn watchdog(activity: &Activity, timeouts: Timeouts) -> &'static str {
    // hyper times HTTP/1 request heads, but not the time before it knows the
    // protocol, nor HTTP/2: the first request must come within the header
    // timeout in every case.
    tokio::time::sleep_until((activity.epoch + timeouts.header_read).into()).await;
    if activity.requests.load(Ordering::Relaxed) == 0 {
        return "no request within the header read timeout";
    }
    loop {
        // Idle means no request in progress, whatever bytes the client sends
        // meanwhile (HTTP/2 pings would otherwise hold a slot for ever).
        let busy = activity.in_flight.load(Ordering::Relaxed) > 0;
        let blocked = busy && activity.write_blocked.load(Ordering::Relaxed);
        let (since, limit) = match (busy, blocked) {
            (false, _) => (activity.last_request_end(), timeouts.idle),
            (true, true) => (activity.last_progress(), timeouts.send),
            (true, false) => (activity.last_progress(), timeouts.idle),
        };
        let deadline = since + limit;
        if Instant::now() >= deadline {
            return match (busy, blocked) {
                (false, _) => "idle timeout: no request in progress",
                (true, true) => "send timeout",
                (true, false) => "idle timeout: the response made no progress",
            };
        }
        // Every change moves the deadline later: look again then.
        tokio::time::sleep_until(deadline.into()).await;
    }
}

/// What the watchdog knows of a connection's traffic.
struct Activity {
    epoch: Instant,
    /// Microseconds after `epoch` of the last byte read or written.
    progress: AtomicU64,
    /// The last write found the socket's send buffer full.
    write_blocked: AtomicBool,
    requests: AtomicU64,
    /// Requests whose response has not been sent (or dropped) yet.
    in_flight: AtomicU64,
    /// Microseconds after `epoch` when the last request ended.
    request_end: AtomicU64,
    /// Told when the server closes this connection to make room.
    reclaimed: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            progress: AtomicU64::new(0),
            write_blocked: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            request_end: AtomicU64::new(0),
            reclaimed: tokio::sync::Notify::new(),
        }
    }

    fn now_micros(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn touch(&self) {
        self.progress.store(self.now_micros(), Ordering::Relaxed);
    }

    fn last_progress(&self) -> Instant {
        self.epoch + Duration::from_micros(self.progress.load(Ordering::Relaxed))
    }

    fn last_request_end(&self) -> Instant {
        self.epoch + Duration::from_micros(self.request_end.load(Ordering::Relaxed))
    }

    /// How long the connection has had no request in progress, if none is.
    fn idle_for(&self) -> Option<Duration> {
        (self.in_flight.load(Ordering::Relaxed) == 0).then(|| self.last_request_end().elapsed())
    }

    fn wrote(&self, result: &Poll<io::Result<usize>>) {
        match result {
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.touch();
                self.write_blocked.store(false, Ordering::Relaxed);
            }
            Poll::Pending => self.write_blocked.store(true, Ordering::Relaxed),
            Poll::Ready(_) => {}
        }
    }
}

/// One request in progress on a connection, from its head to the end (or
/// drop) of its response body.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: Arc<Activity>) -> InFlight {
        activity.requests.fetch_add(1, Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.request_end.store(a.now_micros(), Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The open connections, so that a full server can close the one idle the
/// longest when a client is waiting.
#[derive(Default)]
struct IdleConnections {
    next: AtomicU64,
    open: std::sync::Mutex<std::collections::HashMap<u64, Arc<Activity>>>,
}

impl IdleConnections {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Arc<Activity>>> {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a connection until the returned value is dropped.
    fn register(self: &Arc<Self>, activity: Arc<Activity>) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, activity);
        Registered { set: self.clone(), id }
    }

    /// Tells the connection with no request in progress for the longest
    /// time to close; false when every connection is busy.
    fn reclaim_one(&self) -> bool {
        let mut open = self.lock();
        let oldest =
            open.iter().filter_map(|(id, a)| a.idle_for().map(|d| (d, *id))).max_by_key(|(d, _)| *d).map(|(_, id)| id);
        match oldest.and_then(|id| open.remove(&id)) {
            Some(activity) => {
                activity.reclaimed.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A connection's place in [`IdleConnections`].
struct Registered {
    set: Arc<IdleConnections>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.set.lock().remove(&self.id);
    }
}

/// A stream that reports its progress to the watchdog and sends file
/// placeholders with `sendfile(2)`.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    send_queue: Arc<SendQueue>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = match SendQueue::plain_prefix(bufs) {
            Some(n) => Pin::new(&mut this.inner).poll_write_vectored(cx, &bufs[..n]),
            None => this.send_queue.poll_send(&this.inner, cx, &bufs[0]),
        };
        this.activity.wrote(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
