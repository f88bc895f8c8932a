//! `dare serve`: serve a directory of containers over HTTP with byte ranges,
//! optionally keeping some in sync with upstreams, verified.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use dare_mirror::sync::{SyncConfig, Syncer};
use dare_mirror::tlog::TlogOverlay;
use dare_mirror::{ServedLengths, Server, ServerConfig, local_logs};

use super::load_verifiers;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to serve.
    dir: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Keep a verified copy of this container (its http:// URL) at DIR/NAME. Repeat to fail over.
    #[arg(long, value_name = "URL")]
    upstream: Vec<String>,
    /// Seconds between syncs.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    sync_interval: u64,
    /// Publisher keys (text or file) that must sign the first sync (otherwise trusted on first use).
    #[arg(long, value_name = "PUB")]
    trust: Vec<String>,
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
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async move {
        let lengths = ServedLengths::default();
        let tlog = TlogOverlay::new();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let interval = Duration::from_secs(a.sync_interval.max(1));
        let mut tasks = Vec::new();
        let synced: Vec<String> = groups.keys().cloned().collect();
        for (name, upstreams) in groups {
            let cfg = SyncConfig {
                upstreams,
                local: a.dir.join(&name),
                url_path: format!("/{name}"),
                pins: pins.clone(),
                max_fetch: u64::MAX,
                idle_timeout: Duration::from_secs(30),
            };
            let syncer = Syncer::open(cfg, lengths.clone(), tlog.clone()).with_context(|| format!("opening {name}"))?;
            if syncer.verified_len() == 0 {
                // Nothing to serve until the first sync verifies.
                lengths.set(&format!("/{name}"), 0);
            }
            tasks.push(tokio::spawn(syncer.run(interval, stopped())));
        }
        tasks.push(tokio::spawn(local_logs::follow(a.dir.clone(), synced, tlog.clone(), interval, stopped())));
        let listener =
            tokio::net::TcpListener::bind(a.listen).await.with_context(|| format!("binding {}", a.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        crate::outln!("listening on http://{addr}");
        let _ = std::io::stdout().flush();
        let server =
            Server::new(a.dir.clone(), ServerConfig::default()).lengths(lengths).overlay(std::sync::Arc::new(tlog));
        let shutdown = async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        };
        server.run(listener, shutdown).await.context("serving")?;
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    })
}

async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
