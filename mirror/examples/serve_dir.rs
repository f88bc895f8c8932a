//! Serves a directory with [`dare_mirror::Server`] until SIGINT or SIGTERM.
//!
//! ```text
//! cargo run --release -p dare-mirror --example serve_dir -- DIR [ADDR] [--threads N]
//! ```
//! `ADDR` defaults to `127.0.0.1:8080`; port 0 picks a free one. The chosen
//! address is printed as `listening on http://ADDR`. `--threads` sets the
//! number of runtime worker threads (default: one per core). Logging follows
//! `RUST_LOG` (default `warn`; `dare_mirror::access=info` for an access log).

use std::path::PathBuf;

use anyhow::{Context, bail};
use dare_mirror::{Server, ServerConfig};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut addr = "127.0.0.1:8080".to_owned();
    let mut threads = None;
    let mut positional = 0;
    while let Some(arg) = args.next() {
        if arg == "--threads" {
            let n = args.next().context("--threads needs a number")?;
            threads = Some(n.parse::<usize>().context("--threads")?);
        } else if positional == 0 {
            dir = Some(PathBuf::from(arg));
            positional += 1;
        } else if positional == 1 {
            addr = arg;
            positional += 1;
        } else {
            bail!("usage: serve_dir DIR [ADDR] [--threads N]");
        }
    }
    let dir = dir.context("usage: serve_dir DIR [ADDR] [--threads N]")?;

    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        runtime.worker_threads(n);
    }
    runtime.enable_all().build()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("binding {addr}"))?;
        println!("listening on http://{}", listener.local_addr()?);
        let mut term = signal(SignalKind::terminate())?;
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        Server::new(dir, ServerConfig::default()).run(listener, shutdown).await.context("serving")
    })
}
