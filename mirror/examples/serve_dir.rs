//! Serves a directory with [`dare_mirror::Server`] until SIGINT or SIGTERM.
//!
//! ```text
//! cargo run --release -p dare-mirror --example serve_dir -- DIR [ADDR] [--threads N] [--per-core]
//! ```
//! `ADDR` defaults to `127.0.0.1:8080`; port 0 picks a free one. The chosen
//! address is printed as `listening on http://ADDR`. `--threads` sets the
//! number of threads (default: one per core).
//!
//! By default the threads form one multi-threaded tokio runtime serving one
//! listener. With `--per-core`, each thread runs its own single-threaded
//! runtime and its own `SO_REUSEPORT` listener on the same address, and the
//! kernel spreads connections over them (nginx's `listen ... reuseport`).
//! No task ever moves between threads, which measured faster on small range
//! requests than one multi-threaded runtime. `dare serve` also runs one
//! single-threaded runtime per thread, but all accept from one shared
//! listener, which measured faster still (`bench/range_bench.sh`).
//!
//! Logging follows `RUST_LOG` (default `warn`; `dare_mirror::access=info`
//! for an access log).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use dare_mirror::{Server, ServerConfig};
use tokio::net::{TcpListener, TcpSocket};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

const USAGE: &str = "usage: serve_dir DIR [ADDR] [--threads N] [--per-core]";

struct Args {
    dir: PathBuf,
    addr: String,
    threads: usize,
    per_core: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut addr = None;
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut per_core = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => {
                let n = args.next().context("--threads needs a number")?;
                threads = n.parse().context("--threads")?;
            }
            "--per-core" => per_core = true,
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ if addr.is_none() => addr = Some(arg),
            _ => bail!(USAGE),
        }
    }
    Ok(Args {
        dir: dir.context(USAGE)?,
        addr: addr.unwrap_or_else(|| "127.0.0.1:8080".to_owned()),
        threads: threads.max(1),
        per_core,
    })
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let server = Server::new(&args.dir, ServerConfig::default());
    if args.per_core {
        serve_per_core(server, &args)
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()?.block_on(async {
            let listener = TcpListener::bind(&args.addr).await.with_context(|| format!("binding {}", args.addr))?;
            println!("listening on http://{}", listener.local_addr()?);
            server.run(listener, stop_signal()?).await.context("serving")
        })
    }
}

/// One single-threaded runtime and one `SO_REUSEPORT` listener per thread,
/// all serving the same directory and stopping together.
fn serve_per_core(server: Server, args: &Args) -> anyhow::Result<()> {
    let addr: SocketAddr = args.addr.parse().context("ADDR must be IP:PORT")?;
    // The first socket picks the port when ADDR has port 0.
    let first = reuseport_socket(addr)?;
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..args.threads {
        sockets.push(reuseport_socket(addr)?);
    }
    let (stop, stopped) = watch::channel(());
    let threads: Vec<_> = sockets
        .into_iter()
        .map(|socket| {
            let server = server.clone();
            let mut stopped = stopped.clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(async move {
                    let listener = socket.listen(1024)?;
                    let shutdown = async move {
                        let _ = stopped.changed().await;
                    };
                    server.run(listener, shutdown).await.context("serving")
                })
            })
        })
        .collect();
    println!("listening on http://{addr}");
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
        stop_signal()?.await;
        anyhow::Ok(())
    })?;
    stop.send_replace(());
    for thread in threads {
        thread.join().map_err(|_| anyhow::anyhow!("a server thread panicked"))??;
    }
    Ok(())
}

fn reuseport_socket(addr: SocketAddr) -> anyhow::Result<TcpSocket> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseport(true)?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr).with_context(|| format!("binding {addr}"))?;
    Ok(socket)
}

/// Completes on SIGINT or SIGTERM.
fn stop_signal() -> anyhow::Result<impl Future<Output = ()> + Send> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}
