//! One length per response: ServedLengths caps it, and a file that grows or
//! shrinks while it is sent never changes what the response announced.

use std::time::Duration;

use dare_mirror::ServedLengths;
use tokio::io::AsyncReadExt;

use crate::support::{Options, TestServer, append, content, request};

#[tokio::test]
async fn served_lengths_cap_the_representation() {
    let lengths = ServedLengths::default();
    let server = TestServer::with(Options { lengths: Some(lengths.clone()), ..Options::default() }).await;
    let data = server.file("app.dare", &content(1000));
    server.file("other.dare", &content(1000));
    lengths.set("/app.dare", 600);

    let reply = server.get("/app.dare", &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_length(), Some(600));
    assert_eq!(reply.body, &data[..600]);

    for (header, first, last) in [("bytes=500-", 500, 599), ("bytes=-50", 550, 599), ("bytes=590-700", 590, 599)] {
        let reply = server.get("/app.dare", &[("Range", header)]).await;
        assert_eq!(reply.status, 206, "{header}");
        assert_eq!(reply.header("content-range"), Some(format!("bytes {first}-{last}/600").as_str()));
        assert_eq!(reply.body, &data[first..=last]);
    }
    for header in ["bytes=600-", "bytes=700-800"] {
        let reply = server.get("/app.dare", &[("Range", header)]).await;
        assert_eq!(reply.status, 416, "{header}");
        assert_eq!(reply.header("content-range"), Some("bytes */600"));
    }
    let reply = server.get("/app.dare", &[("Range", "bytes=0-0,700-800,590-")]).await;
    let parts = crate::support::multipart(&reply);
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[1].0, "bytes 590-599/600");

    // Other paths are not capped; a cap above the file length changes nothing.
    assert_eq!(server.get("/other.dare", &[]).await.body.len(), 1000);
    lengths.set("/app.dare", 5000);
    assert_eq!(server.get("/app.dare", &[]).await.body.len(), 1000);
    // The sync raises the cap as it verifies more.
    lengths.set("/app.dare", 800);
    assert_eq!(server.get("/app.dare", &[]).await.body, &data[..800]);
    lengths.remove("/app.dare");
    assert_eq!(server.get("/app.dare", &[]).await.body, data);
    server.stop().await;
}

#[tokio::test]
async fn a_file_growing_during_a_response_sends_the_announced_length() {
    let server = TestServer::start().await;
    let len = 8 << 20;
    let data = server.file("app.dare", &content(len));
    let mut client = server.client().await;
    client.send(request("GET", "/app.dare", &[]).as_bytes()).await;
    let (status, headers) = client.head().await.unwrap();
    assert_eq!(status, 200);
    assert!(headers.contains(&("content-length".into(), len.to_string())));
    // Let the server fill the socket buffers, then grow the file.
    let mut body = vec![0u8; 64 * 1024];
    client.stream.read_exact(&mut body).await.unwrap();
    append(&server.root().join("app.dare"), &vec![0xEE; 2 << 20]);
    let mut rest = vec![0u8; len - body.len()];
    client.stream.read_exact(&mut rest).await.unwrap();
    body.extend_from_slice(&rest);
    assert!(body == data, "the body is the file as it was at the start");
    // Nothing more came on the connection: the next reply is in step.
    let reply = client.request(&request("GET", "/app.dare", &[("Range", "bytes=-4")])).await;
    assert_eq!(
        reply.header("content-range"),
        Some(format!("bytes {}-{}/{}", len + (2 << 20) - 4, len + (2 << 20) - 1, len + (2 << 20)).as_str())
    );
    assert_eq!(reply.body, [0xEE; 4]);
    server.stop().await;
}

#[tokio::test]
async fn a_file_shrinking_during_a_response_aborts_it() {
    let server = TestServer::start().await;
    let len = 16 << 20;
    let data = server.file("app.dare", &content(len));
    let mut client = server.client().await;
    client.send(request("GET", "/app.dare", &[]).as_bytes()).await;
    let (status, _) = client.head().await.unwrap();
    assert_eq!(status, 200);
    let mut start = vec![0u8; 4096];
    client.stream.read_exact(&mut start).await.unwrap();
    std::fs::File::options().write(true).open(server.root().join("app.dare")).unwrap().set_len(1 << 20).unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(10), client.read_to_close())
        .await
        .expect("the server closes the connection");
    start.extend_from_slice(&rest);
    assert!(start.len() < len, "fewer bytes than announced: the client can tell");
    // Bytes below the new length are intact. Past it, bytes already queued
    // with sendfile may read as zeros (they reference the page cache, as with
    // nginx); the connection is cut, so the short body shows it.
    let kept = start.len().min(1 << 20);
    assert!(start[..kept] == data[..kept]);
    server.stop().await;
}

#[tokio::test]
async fn a_replaced_or_deleted_file_is_seen_after_the_open_file_ttl() {
    let server = TestServer::with(Options {
        config: dare_mirror::ServerConfig { open_file_ttl: Duration::from_millis(200), ..Default::default() },
        ..Options::default()
    })
    .await;
    server.file("app.dare", b"old");
    assert_eq!(server.get("/app.dare", &[]).await.body, b"old");
    // Growth shows at once: the descriptor is stat'ed for every response.
    append(&server.root().join("app.dare"), b"+");
    assert_eq!(server.get("/app.dare", &[]).await.body, b"old+");
    // A file renamed over the path shows once the descriptor has expired.
    std::fs::write(server.dir.path().join("next"), b"new").unwrap();
    std::fs::rename(server.dir.path().join("next"), server.root().join("app.dare")).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.get("/app.dare", &[]).await.body, b"new");
    std::fs::remove_file(server.root().join("app.dare")).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.get("/app.dare", &[]).await.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn without_the_open_file_cache_a_replacement_shows_at_once() {
    let server = TestServer::with(Options {
        config: dare_mirror::ServerConfig { open_file_ttl: Duration::ZERO, ..Default::default() },
        ..Options::default()
    })
    .await;
    server.file("app.dare", b"old");
    assert_eq!(server.get("/app.dare", &[]).await.body, b"old");
    std::fs::write(server.dir.path().join("next"), b"new").unwrap();
    std::fs::rename(server.dir.path().join("next"), server.root().join("app.dare")).unwrap();
    assert_eq!(server.get("/app.dare", &[]).await.body, b"new");
    server.stop().await;
}
