//! The access log: one INFO event per request, target `dare_mirror::access`.
//!
//! This binary runs many servers at once, and tracing caches per-callsite
//! interest process-wide, so a subscriber scoped to this test could miss
//! events that other test threads reached first. The capture is one global
//! subscriber instead, installed once for the whole binary; this test picks
//! its own lines out by paths no other test uses.

use std::sync::{Arc, Mutex, OnceLock};

use crate::support::{TestServer, content, request};

/// Collects formatted tracing output.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The access log of every server in this test binary.
fn access_log() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("dare_mirror::access=info")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other test sets a global subscriber");
        captured
    })
}

#[tokio::test]
async fn one_access_log_line_per_request() {
    let captured = access_log();
    let server = TestServer::start().await;
    server.file("access-log.dare", &content(1000));
    let mut client = server.client().await;
    client.request(&request("GET", "/access-log.dare", &[("Range", "bytes=10-19")])).await;
    client.request(&request("HEAD", "/access-log.dare", &[])).await;
    client.request(&request("GET", "/access-log-missing", &[])).await;
    drop(client);
    server.stop().await;
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("path=/access-log")).collect();
    assert_eq!(lines.len(), 3, "{log}");
    for (line, want) in lines.iter().zip([
        ["method=GET", "path=/access-log.dare", "status=206", "bytes=10", "range=\"bytes=10-19\""],
        ["method=HEAD", "path=/access-log.dare", "status=200", "bytes=0", "range=\"-\""],
        ["method=GET", "path=/access-log-missing", "status=404", "bytes=10", "range=\"-\""],
    ]) {
        for field in want {
            assert!(line.contains(field), "{field} missing in {line}");
        }
        assert!(line.contains("duration_us="), "{line}");
    }
}
