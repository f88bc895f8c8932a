//! A C2SP tlog-witness (<https://c2sp.org/tlog-witness>): `dare witness`.
//!
//! A [`Witness`] holds a `cosignature/v1` key, the verifier keys of the logs
//! it witnesses (by origin), and, in a state directory, the latest checkpoint
//! it cosigned for each log. It answers `POST /add-checkpoint`: a body of
//! `old <size>`, a consistency proof and a checkpoint note (see
//! [`AddCheckpoint`]). It checks, in the spec's order:
//!
//! | refusal | status |
//! |---|---|
//! | malformed body, note or checkpoint | 400 |
//! | origin not configured | 404 |
//! | no signature from a configured key of that log verifies | 403 |
//! | old size larger than the checkpoint's size | 400 |
//! | old size is not the size it last cosigned (body: that size) | 409, `text/x.tlog.size` |
//! | same size as last cosigned, another root hash (a fork) | 409 |
//! | consistency proof does not verify (a fork, or a bad proof) | 422 |
//!
//! then writes the checkpoint to the state directory (temporary file, fsync,
//! rename, fsync of the directory) and only then answers 200 with its
//! cosignature line, timestamped with the server's clock. Requests for one
//! log are serialized, so two can never both advance from the same state.
//! Other paths are 404 and other methods 405.
//!
//! The HTTP side is HTTP/1.1 with the mirror's habits: an already bound
//! listener and a shutdown future, bounded bodies
//! ([`WitnessConfig::max_body`]), timeouts for slow request heads and
//! bodies, a connection limit, and graceful shutdown.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fs::File;
use std::future::Future;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dare_container::cosign::{AddCheckpoint, WitnessSigningKey, cosignature_lines};
use dare_container::keys::VerifierKey;
use dare_container::merkle::{Hash, empty_root, to_hex, verify_consistency};
use dare_container::note::{Checkpoint, Note, NoteSignature};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest as _, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::error::MirrorError;

/// The one path a witness answers.
pub const ADD_CHECKPOINT_PATH: &str = "/add-checkpoint";

/// The `Content-Type` of a 409 answer whose body is the size the witness
/// last cosigned.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// The name of the lock file that keeps a second witness off a state
/// directory.
const LOCK_FILE: &str = ".lock";

/// Limits and timeouts of a [`Witness`] server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WitnessConfig {
    /// A client must send a complete request head within this time; also
    /// how long a kept-alive connection may wait for its next request.
    /// Default 10 s.
    pub header_read_timeout: Duration,
    /// A request body must arrive whole within this time of its head.
    /// Default 30 s.
    pub body_timeout: Duration,
    /// The largest request body accepted (413 above). Default: the largest
    /// [`AddCheckpoint`] body, 1 MiB and 4 KiB.
    pub max_body: usize,
    /// At most this many connections are served at once; more wait in the
    /// listen backlog. Default 256.
    pub max_connections: usize,
    /// A connection is closed (gracefully, after its request in progress)
    /// this long after it opened, so a client that never reads its answers
    /// cannot hold a slot for ever. Default 5 min.
    pub connection_lifetime: Duration,
    /// On shutdown, and after [`connection_lifetime`](Self::connection_lifetime),
    /// a request in progress gets this long to finish. Default 10 s.
    pub shutdown_timeout: Duration,
}

impl Default for WitnessConfig {
    fn default() -> WitnessConfig {
        WitnessConfig {
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_body: dare_container::cosign::MAX_ADD_CHECKPOINT_SIZE,
            max_connections: 256,
            connection_lifetime: Duration::from_secs(300),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl WitnessConfig {
    /// With [`header_read_timeout`](Self::header_read_timeout) set.
    pub fn with_header_read_timeout(mut self, d: Duration) -> Self {
        self.header_read_timeout = d;
        self
    }

    /// With [`body_timeout`](Self::body_timeout) set.
    pub fn with_body_timeout(mut self, d: Duration) -> Self {
        self.body_timeout = d;
        self
    }

    /// With [`max_body`](Self::max_body) set.
    pub fn with_max_body(mut self, n: usize) -> Self {
        self.max_body = n;
        self
    }

    /// With [`max_connections`](Self::max_connections) set.
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// With [`connection_lifetime`](Self::connection_lifetime) set.
    pub fn with_connection_lifetime(mut self, d: Duration) -> Self {
        self.connection_lifetime = d;
        self
    }

    /// With [`shutdown_timeout`](Self::shutdown_timeout) set.
    pub fn with_shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }
}

/// Why a witness refused an `add-checkpoint` request; each maps to the
/// status the tlog-witness spec requires ([`Refusal::status`]).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The body, the note or the checkpoint is malformed, or the old size is
    /// larger than the checkpoint's size. 400.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The checkpoint's origin is not a log this witness witnesses. 404.
    #[error("unknown log origin {0:?}")]
    UnknownOrigin(String),
    /// No signature from a configured key of the log verifies. 403.
    #[error("no valid signature from a configured key of log {0:?}")]
    Unsigned(String),
    /// The old size is not the size last cosigned for this log. 409 with
    /// that size.
    #[error("old size {old} is not the size last cosigned, {stored}")]
    SizeMismatch {
        /// The old size the client sent.
        old: u64,
        /// The size of the latest checkpoint cosigned for this log.
        stored: u64,
    },
    /// The checkpoint has the size last cosigned but another root hash: the
    /// log forked. 409.
    #[error("checkpoint of size {size} has another root hash than the one cosigned at that size: a fork")]
    Fork {
        /// The tree size.
        size: u64,
    },
    /// The consistency proof from the cosigned checkpoint to this one does
    /// not verify. 422.
    #[error("consistency proof from size {old} to {size} does not verify: {reason}")]
    Inconsistent {
        /// The old size.
        old: u64,
        /// The new size.
        size: u64,
        /// What failed.
        reason: String,
    },
    /// The new state could not be written; nothing was cosigned. 500.
    #[error("cannot record the checkpoint: {0}")]
    State(#[source] io::Error),
}

impl Refusal {
    /// The HTTP status of this refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::UnknownOrigin(_) => StatusCode::NOT_FOUND,
            Refusal::Unsigned(_) => StatusCode::FORBIDDEN,
            Refusal::SizeMismatch { .. } | Refusal::Fork { .. } => StatusCode::CONFLICT,
            Refusal::Inconsistent { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::State(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The latest checkpoint cosigned for one log.
#[derive(Debug, Clone)]
struct Cosigned {
    size: u64,
    root: Hash,
}

/// One witnessed log: its keys, and its state behind the lock that
/// serializes its requests.
#[derive(Debug)]
struct Log {
    keys: Vec<VerifierKey>,
    state_file: PathBuf,
    latest: Mutex<Option<Cosigned>>,
}

struct Inner {
    key: WitnessSigningKey,
    logs: HashMap<String, Log>,
    state_dir: PathBuf,
    config: WitnessConfig,
    /// Held (locked) for the witness's lifetime.
    _lock: File,
}

/// A tlog-witness: a key, the logs it witnesses, and their state.
///
/// Cheap to clone; clones share the state and its locks.
#[derive(Clone)]
pub struct Witness {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("key", &self.inner.key)
            .field("logs", &self.inner.logs.keys().collect::<Vec<_>>())
            .field("state_dir", &self.inner.state_dir)
            .finish_non_exhaustive()
    }
}

/// The state file of a log: the hex SHA-256 of its origin, so any origin
/// makes a safe file name.
fn state_file_name(origin: &str) -> String {
    let digest: Hash = Sha256::digest(origin.as_bytes()).into();
    format!("{}.checkpoint", to_hex(&digest))
}

fn state_error(path: &Path, source: io::Error) -> MirrorError {
    MirrorError::WitnessState { path: path.to_path_buf(), source }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads a state file: the log's checkpoint note as last cosigned.
fn load_state(path: &Path, origin: &str) -> Result<Option<Cosigned>, MirrorError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(state_error(path, e)),
    };
    let note = Note::parse(&bytes).map_err(|e| state_error(path, invalid(format!("not a checkpoint note: {e}"))))?;
    let cp =
        Checkpoint::parse(note.text()).map_err(|e| state_error(path, invalid(format!("not a checkpoint: {e}"))))?;
    if cp.origin != origin {
        return Err(state_error(path, invalid(format!("holds a checkpoint of {:?}, not {origin:?}", cp.origin))));
    }
    Ok(Some(Cosigned { size: cp.size, root: cp.root }))
}

/// Replaces `path` with `bytes` whole or not at all, durably.
fn write_state(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        dare_container::fsys::sync_dir(dir)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Witness {
    /// A witness signing with `key` for the logs in `logs` (origin and a
    /// verifier key; an origin may come with several keys, and a checkpoint
    /// signed validly by any one of them is accepted), keeping its state in
    /// `state_dir` (created if missing). Fails if the directory cannot be
    /// created or locked (another witness uses it), or if a log's state file
    /// there is unreadable or damaged.
    pub fn open(
        key: WitnessSigningKey,
        logs: impl IntoIterator<Item = (String, VerifierKey)>,
        state_dir: impl Into<PathBuf>,
        config: WitnessConfig,
    ) -> Result<Witness, MirrorError> {
        let state_dir = state_dir.into();
        std::fs::create_dir_all(&state_dir).map_err(|e| state_error(&state_dir, e))?;
        let lock_path = state_dir.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| state_error(&lock_path, e))?;
        lock.try_lock().map_err(|e| {
            let source = match e {
                std::fs::TryLockError::WouldBlock => {
                    io::Error::new(io::ErrorKind::WouldBlock, "another witness is using this state directory")
                }
                std::fs::TryLockError::Error(e) => e,
            };
            state_error(&state_dir, source)
        })?;
        let mut keys: HashMap<String, Vec<VerifierKey>> = HashMap::new();
        for (origin, key) in logs {
            let list = keys.entry(origin).or_default();
            if !list.contains(&key) {
                list.push(key);
            }
        }
        let mut witnessed = HashMap::new();
        for (origin, keys) in keys {
            let state_file = state_dir.join(state_file_name(&origin));
            let latest = load_state(&state_file, &origin)?;
            witnessed.insert(origin, Log { keys, state_file, latest: Mutex::new(latest) });
        }
        Ok(Witness { inner: Arc::new(Inner { key, logs: witnessed, state_dir, config, _lock: lock }) })
    }

    /// The size and root hash of the latest checkpoint cosigned for
    /// `origin`, if any.
    pub fn latest(&self, origin: &str) -> Option<(u64, Hash)> {
        let log = self.inner.logs.get(origin)?;
        let latest = log.latest.lock().unwrap_or_else(PoisonError::into_inner);
        latest.as_ref().map(|c| (c.size, c.root))
    }

    /// Handles one `add-checkpoint` body: checks it (see the module docs),
    /// records the checkpoint, and returns the cosignature lines. Blocking:
    /// it writes and syncs a file.
    pub fn add_checkpoint(&self, body: &[u8]) -> Result<Vec<NoteSignature>, Refusal> {
        let req = AddCheckpoint::parse(body).map_err(|e| Refusal::BadRequest(e.to_string()))?;
        let note = Note::parse(&req.note).map_err(|e| Refusal::BadRequest(format!("checkpoint note: {e}")))?;
        let cp = Checkpoint::parse(note.text()).map_err(|e| Refusal::BadRequest(format!("checkpoint: {e}")))?;
        let log = self.inner.logs.get(&cp.origin).ok_or_else(|| Refusal::UnknownOrigin(cp.origin.clone()))?;
        // Lines from other keys (witnesses, other logs) are ignored; one
        // valid line from a configured key suffices.
        let signed = note.signatures().iter().any(|sig| {
            log.keys.iter().any(|k| {
                k.name() == sig.name && k.key_id() == sig.key_id && k.verify(note.text().as_bytes(), &sig.signature)
            })
        });
        if !signed {
            return Err(Refusal::Unsigned(cp.origin));
        }
        if req.old_size > cp.size {
            return Err(Refusal::BadRequest(format!(
                "old size {} is larger than the checkpoint's size {}",
                req.old_size, cp.size
            )));
        }
        let mut latest = log.latest.lock().unwrap_or_else(PoisonError::into_inner);
        let stored = latest.as_ref().map_or(0, |c| c.size);
        if req.old_size != stored {
            return Err(Refusal::SizeMismatch { old: req.old_size, stored });
        }
        let inconsistent = |reason: String| Refusal::Inconsistent { old: req.old_size, size: cp.size, reason };
        match latest.as_ref() {
            Some(c) if c.size == cp.size && c.root != cp.root => return Err(Refusal::Fork { size: cp.size }),
            Some(c) => verify_consistency(c.size, cp.size, &c.root, &cp.root, &req.proof)
                .map_err(|e| inconsistent(e.to_string()))?,
            // Never cosigned: old is 0, and nothing is consistent with the
            // empty tree but an empty proof.
            None if !req.proof.is_empty() => {
                return Err(inconsistent("the proof from size 0 must be empty".to_owned()));
            }
            None if cp.size == 0 && cp.root != empty_root() => {
                return Err(inconsistent("a tree of size 0 has the empty root hash".to_owned()));
            }
            None => {}
        }
        write_state(&self.inner.state_dir, &log.state_file, &req.note).map_err(Refusal::State)?;
        *latest = Some(Cosigned { size: cp.size, root: cp.root });
        drop(latest);
        Ok(vec![self.inner.key.cosign(note.text(), now())])
    }

    /// Serves `POST /add-checkpoint` on `listener` until `shutdown`
    /// completes; then stops accepting, lets requests in progress finish (up
    /// to [`WitnessConfig::shutdown_timeout`]) and returns. Fails only when
    /// the listener is unusable.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), MirrorError> {
        let addr = listener.local_addr().map_err(MirrorError::Listener)?;
        tracing::info!(%addr, key = %self.inner.key.verifier(), "witnessing");
        let config = self.inner.config.clone();
        let limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
        let (stop_tx, stop_rx) = watch::channel(());
        let mut connections = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                biased;
                () = &mut shutdown => break,
                permit = limit.clone().acquire_owned() => permit.expect("the connection semaphore is never closed"),
            };
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
                        () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            };
            while connections.try_join_next().is_some() {}
            connections.spawn(self.clone().serve_connection(stream, peer, stop_rx.clone(), permit));
        }
        drop(listener);
        stop_tx.send_replace(());
        let drained =
            tokio::time::timeout(config.shutdown_timeout, async { while connections.join_next().await.is_some() {} })
                .await;
        if drained.is_err() {
            connections.shutdown().await;
        }
        Ok(())
    }

    async fn serve_connection(
        self,
        stream: TcpStream,
        peer: std::net::SocketAddr,
        mut stop: watch::Receiver<()>,
        _permit: OwnedSemaphorePermit,
    ) {
        let config = self.inner.config.clone();
        let _ = stream.set_nodelay(true);
        let witness = self.clone();
        let service = service_fn(move |req| {
            let witness = witness.clone();
            async move { Ok::<_, Infallible>(witness.respond(req).await) }
        });
        let mut builder = http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(config.header_read_timeout).keep_alive(true);
        let mut conn = std::pin::pin!(builder.serve_connection(TokioIo::new(stream), service));
        let deadline = tokio::time::sleep(config.connection_lifetime);
        let mut deadline = std::pin::pin!(deadline);
        let mut closing = false;
        loop {
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = deadline.as_mut() => {
                    if closing {
                        tracing::debug!(%peer, "closing a connection that does not finish");
                        return;
                    }
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                    deadline.as_mut().reset(tokio::time::Instant::now() + config.shutdown_timeout);
                }
                _ = stop.changed(), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                    deadline.as_mut().reset(tokio::time::Instant::now() + config.shutdown_timeout);
                }
            }
        }
    }

    async fn respond(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.uri().path() != ADD_CHECKPOINT_PATH {
            return text(StatusCode::NOT_FOUND, "not found\n");
        }
        if req.method() != Method::POST {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
            r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("POST"));
            return r;
        }
        let config = &self.inner.config;
        let declared =
            req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > config.max_body as u64) {
            return text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
        }
        let body = Limited::new(req.into_body(), config.max_body).collect();
        let body = match tokio::time::timeout(config.body_timeout, body).await {
            Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "request body too slow\n"),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
            }
            Ok(Err(_)) => return text(StatusCode::BAD_REQUEST, "cannot read the request body\n"),
            Ok(Ok(collected)) => collected.to_bytes(),
        };
        let witness = self.clone();
        let handled = tokio::task::spawn_blocking(move || witness.add_checkpoint(&body)).await;
        match handled {
            Ok(Ok(sigs)) => {
                tracing::info!(target: "dare_mirror::witness", status = 200, "cosigned");
                let mut r = Response::new(Full::new(Bytes::from(cosignature_lines(&sigs))));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
                r
            }
            Ok(Err(refusal)) => {
                let status = refusal.status();
                tracing::info!(target: "dare_mirror::witness", status = status.as_u16(), reason = %refusal, "refused");
                match refusal {
                    Refusal::SizeMismatch { stored, .. } => {
                        let mut r = Response::new(Full::new(Bytes::from(format!("{stored}\n"))));
                        *r.status_mut() = status;
                        r.headers_mut()
                            .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(SIZE_CONTENT_TYPE));
                        r
                    }
                    Refusal::State(e) => {
                        tracing::error!(error = %e, "cannot record a checkpoint");
                        text(status, "internal error\n")
                    }
                    refusal => text(status, &format!("{refusal}\n")),
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "add-checkpoint task failed");
                text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
            }
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_names_are_safe() {
        for origin in ["example.com/app", "../../etc/passwd", "a/b\\c", "", "é"] {
            let name = state_file_name(origin);
            assert_eq!(name.len(), 64 + ".checkpoint".len());
            assert!(name.bytes().all(|b| b.is_ascii_hexdigit() || b == b'.' || b.is_ascii_lowercase()));
        }
        assert_ne!(state_file_name("a"), state_file_name("b"));
    }
}
