//! `dare serve`: serve a directory of containers over HTTP with byte ranges,
//! optionally keeping some in sync with upstreams, verified.
//!
//! Requests are served by one thread per worker, each with its own
//! single-threaded runtime accepting from one shared listening socket, as
//! nginx's workers do: a connection stays on the thread that accepted it and
//! no task ever moves between threads. On random 64 KiB ranges
//! (`mirror/bench/range_bench.sh`) this measured faster than one
//! multi-threaded runtime, and faster than one `SO_REUSEPORT` listener per
//! thread. Syncs, local logs and signals run on the main thread's own
//! runtime, so verifying a sync never takes a server thread.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use dare_mirror::sync::{SyncConfig, Syncer};
use dare_mirror::tlog::TlogOverlay;
use dare_mirror::{ServedLengths, Server, ServerConfig, local_logs};
use dare_updater::transport::{Timeouts, transport_for};
use tokio::net::TcpSocket;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, watch};

use super::load_verifiers;

/// The listen backlog of each listener.
const BACKLOG: u32 = 1024;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to serve.
    dir: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Keep a verified copy of this container (its http:// or https:// URL) at DIR/NAME. Repeat to fail over.
    #[arg(long, value_name = "URL")]
    upstream: Vec<String>,
    /// Seconds between syncs.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    sync_interval: u64,
    /// Publisher keys (text or file) that must sign the first sync (otherwise trusted on first use).
    #[arg(long, value_name = "PUB")]
    trust: Vec<String>,
    /// Server threads, each with its own listener on ADDR [default: one per core].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
}

pub fn run(a: Args) -> Result<()> {
    if !a.dir.is_dir() {
        bail!("{} is not a directory", a.dir.display());
    }
    let pins = if a.trust.is_empty() { None } else { Some(load_verifiers(&a.trust)?) };
    // Upstreams of the same container name fail over to each other.
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for url in &a.upstream {
        let name = url
            .split(['?', '#'])
            .next()
            .and_then(|u| u.rsplit('/').next())
            .filter(|n| !n.is_empty() && *n != "." && *n != "..")
            .with_context(|| format!("--upstream {url}: the URL must end with the container's file name"))?;
        groups.entry(name.to_string()).or_default().push(url.clone());
    }
    let workers =
        a.workers.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), usize::from).max(1);
    let control = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    let entered = control.enter();
    // Signals are caught from here on, before anyone learns where we listen.
    let signals = Signals::new().context("catching SIGINT and SIGTERM")?;

    let lengths = ServedLengths::default();
    let tlog = TlogOverlay::new();
    let mut syncers = Vec::new();
    let synced: Vec<String> = groups.keys().cloned().collect();
    for (name, upstreams) in groups {
        let upstreams = upstreams
            .iter()
            .map(|url| transport_for(url, Timeouts::default()).with_context(|| format!("--upstream {url}")))
            .collect::<Result<Vec<_>>>()?;
        let cfg = SyncConfig::new(upstreams, a.dir.join(&name), format!("/{name}")).with_pins(pins.clone());
        let syncer = Syncer::open(cfg, lengths.clone(), tlog.clone()).with_context(|| format!("opening {name}"))?;
        if syncer.verified_len() == 0 {
            // Nothing to serve until the first sync verifies.
            lengths.set(&format!("/{name}"), 0);
        }
        syncers.push(syncer);
    }

    let listener = listen(a.listen).with_context(|| format!("binding {}", a.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let server =
        Server::new(a.dir.clone(), ServerConfig::default()).lengths(lengths).overlay(std::sync::Arc::new(tlog.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    // Each server thread says when it ended (early only when it failed).
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<Result<()>>();
    let mut threads = Vec::new();
    let mut started = Ok(());
    for i in 0..workers {
        let (server, shutdown, ended) = (server.clone(), stopped(), ended_tx.clone());
        let spawned = listener.try_clone().context("sharing the listener").and_then(|listener| {
            std::thread::Builder::new()
                .name(format!("dare-serve-{i}"))
                .spawn(move || {
                    let _ = ended.send(serve_one(listener, server, shutdown));
                })
                .context("starting a server thread")
        });
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(e) => {
                started = Err(e);
                break;
            }
        }
    }
    drop((listener, ended_tx));
    drop(entered);
    let result = match started {
        Ok(()) => {
            crate::outln!("listening on http://{addr}");
            let _ = std::io::stdout().flush();
            control.block_on(async {
                let interval = Duration::from_secs(a.sync_interval.max(1));
                // A syncer ends early only when its first sync fails for
                // good (wrong keys, not a container, not found).
                let (failed_tx, mut failed_rx) = mpsc::unbounded_channel::<anyhow::Error>();
                let mut tasks = Vec::new();
                for syncer in syncers {
                    let (failed, stop) = (failed_tx.clone(), stopped());
                    tasks.push(tokio::spawn(async move {
                        if let Err(e) = syncer.run(interval, stop).await {
                            let _ = failed.send(anyhow!(e));
                        }
                    }));
                }
                drop(failed_tx);
                tasks.push(tokio::spawn(local_logs::follow(a.dir.clone(), synced, tlog, interval, stopped())));
                let result = tokio::select! {
                    () = signals.wait() => {
                        tracing::info!("shutting down");
                        Ok(())
                    }
                    // A server thread only ends early when it fails.
                    ended = ended_rx.recv() => ended.unwrap_or(Ok(())),
                    Some(e) = failed_rx.recv() => Err(e),
                };
                let _ = stop_tx.send(true);
                for t in tasks {
                    let _ = t.await;
                }
                result
            })
        }
        Err(e) => {
            let _ = stop_tx.send(true);
            Err(e)
        }
    };
    for thread in threads {
        thread.join().map_err(|_| anyhow!("a server thread panicked"))?;
    }
    // A verification cut short by the shutdown may still run on the blocking
    // pool: do not wait for it (its staging file is removed next start).
    control.shutdown_timeout(Duration::from_millis(100));
    // Any server thread's error, if the signal came first.
    while let Ok(ended) = ended_rx.try_recv() {
        ended?;
    }
    result
}

/// Runs one server on its own single-threaded runtime until `shutdown`.
fn serve_one(
    listener: std::net::TcpListener,
    server: Server,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<()> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting a server runtime")?;
    runtime.block_on(async move {
        // This thread's runtime watches the shared socket too.
        let listener = tokio::net::TcpListener::from_std(listener).context("watching the listener")?;
        server.run(listener, shutdown).await.context("serving")
    })
}

/// The listening socket every server thread accepts from, non-blocking.
fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    // Registered with the runtime entered here only until handed on.
    socket.listen(BACKLOG)?.into_std()
}

/// SIGINT and SIGTERM, caught from creation on.
struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    /// Needs a runtime context.
    fn new() -> std::io::Result<Signals> {
        Ok(Signals { int: signal(SignalKind::interrupt())?, term: signal(SignalKind::terminate())? })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}
