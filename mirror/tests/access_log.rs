//! The access log: one INFO event per request, target `dare_mirror::access`.
//!
//! Its own test binary: tracing caches per-callsite interest process-wide,
//! and a scoped subscriber set while other test threads first hit the same
//! callsites can miss events.

use std::sync::{Arc, Mutex};

#[allow(dead_code)]
#[path = "http/support.rs"]
mod support;

use support::{TestServer, content, request};

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

#[tokio::test]
async fn one_access_log_line_per_request() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("dare_mirror::access=info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The test runtime is single-threaded: the server logs on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = TestServer::start().await;
    server.file("app.dare", &content(1000));
    let mut client = server.client().await;
    client.request(&request("GET", "/app.dare", &[("Range", "bytes=10-19")])).await;
    client.request(&request("HEAD", "/app.dare", &[])).await;
    client.request(&request("GET", "/missing", &[])).await;
    drop(client);
    server.stop().await;
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    for (line, want) in lines.iter().zip([
        ["method=GET", "path=/app.dare", "status=206", "bytes=10", "range=\"bytes=10-19\""],
        ["method=HEAD", "path=/app.dare", "status=200", "bytes=0", "range=\"-\""],
        ["method=GET", "path=/missing", "status=404", "bytes=10", "range=\"-\""],
    ]) {
        for field in want {
            assert!(line.contains(field), "{field} missing in {line}");
        }
        assert!(line.contains("duration_us="), "{line}");
    }
}
