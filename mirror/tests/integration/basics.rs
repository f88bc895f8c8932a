//! Full GET, HEAD, methods, overlays, the access log.

use std::sync::Arc;

use bytes::Bytes;
use dare_mirror::{Overlay, OverlayBody};

use crate::support::{Options, TestServer, content, request};

#[tokio::test]
async fn full_get() {
    let server = TestServer::start().await;
    let data = server.file("app.dare", &content(200_000));
    let reply = server.get("/app.dare", &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, data);
    assert_eq!(reply.content_length(), Some(200_000));
    assert_eq!(reply.header("accept-ranges"), Some("bytes"));
    assert_eq!(reply.header("content-type"), Some("application/octet-stream"));
    assert_eq!(reply.header("content-range"), None);
    let etag = reply.header("etag").expect("etag");
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2, "strong etag: {etag}");
    let modified = reply.header("last-modified").expect("last-modified");
    httpdate::parse_http_date(modified).expect("an HTTP date");
    server.stop().await;
}

#[tokio::test]
async fn nested_paths_and_escapes() {
    let server = TestServer::start().await;
    let data = server.file("sub dir/é.dare", b"nested");
    let reply = server.get("/sub%20dir/%C3%A9.dare", &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, data);
    // The query is not part of the path.
    let reply = server.get("/sub%20dir/%C3%A9.dare?x=1", &[]).await;
    assert_eq!(reply.body, data);
    server.stop().await;
}

#[tokio::test]
async fn head_has_the_headers_of_get_and_no_body() {
    let server = TestServer::start().await;
    server.file("app.dare", &content(100_000));
    let mut client = server.client().await;
    for range in [None, Some("bytes=10-19"), Some("bytes=0-0,50-50"), Some("bytes=999999-")] {
        let headers: Vec<(&str, &str)> = range.map(|r| ("Range", r)).into_iter().collect();
        let get = client.request(&request("GET", "/app.dare", &headers)).await;
        let head = client.request(&request("HEAD", "/app.dare", &headers)).await;
        assert_eq!(head.status, get.status, "{range:?}");
        assert!(head.body.is_empty());
        let (mut get_headers, mut head_headers) = (get.headers_without_date(), head.headers_without_date());
        // Multipart boundaries differ per response.
        for h in [&mut get_headers, &mut head_headers] {
            for (name, value) in h.iter_mut() {
                if name == "content-type" && value.starts_with("multipart/") {
                    *value = "multipart".into();
                }
            }
        }
        assert_eq!(head_headers, get_headers, "{range:?}");
    }
    // The connection is still in step: HEAD sent no body bytes.
    let reply = client.request(&request("GET", "/app.dare", &[("Range", "bytes=0-3")])).await;
    assert_eq!(reply.status, 206);
    assert_eq!(reply.body, content(4));
    server.stop().await;
}

#[tokio::test]
async fn other_methods_are_not_allowed() {
    let server = TestServer::start().await;
    server.file("app.dare", b"x");
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let raw = format!("{method} /app.dare HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n");
        let reply = server.request(&raw).await;
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    }
    server.stop().await;
}

#[tokio::test]
async fn empty_file() {
    let server = TestServer::start().await;
    server.file("empty", b"");
    let reply = server.get("/empty", &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_length(), Some(0));
    let reply = server.get("/empty", &[("Range", "bytes=0-")]).await;
    assert_eq!(reply.status, 416);
    assert_eq!(reply.header("content-range"), Some("bytes */0"));
    let reply = server.get("/empty", &[("Range", "bytes=-5")]).await;
    assert_eq!(reply.status, 416);
    server.stop().await;
}

struct Checkpoint;

impl Overlay for Checkpoint {
    fn lookup(&self, path: &str) -> Option<OverlayBody> {
        match path {
            "/checkpoint" => Some(OverlayBody::text("example.com/app\n42\nabc=\n")),
            "/tile/0/000" => Some(OverlayBody::binary(Bytes::from_static(&[7u8; 64]))),
            _ => None,
        }
    }
}

#[tokio::test]
async fn overlay_answers_first_and_falls_through() {
    let server = TestServer::with(Options { overlay: Some(Arc::new(Checkpoint)), ..Options::default() }).await;
    server.file("app.dare", b"file");
    server.file("checkpoint", b"shadowed by the overlay");

    let reply = server.get("/checkpoint", &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"example.com/app\n42\nabc=\n");
    assert_eq!(reply.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(reply.header("etag"), None);

    let reply = server.get("/checkpoint", &[("Range", "bytes=16-17")]).await;
    assert_eq!(reply.status, 206);
    assert_eq!(reply.body, b"42");
    assert_eq!(reply.header("content-range"), Some("bytes 16-17/24"));

    let reply = server.get("/tile/0/000", &[]).await;
    assert_eq!(reply.header("content-type"), Some("application/octet-stream"));
    assert_eq!(reply.body, [7u8; 64]);

    let reply = server.get("/app.dare", &[]).await;
    assert_eq!(reply.body, b"file");
    // Overlay paths go through the same path checks.
    assert_eq!(server.get("/x/../checkpoint", &[]).await.status, 400);
    server.stop().await;
}

#[tokio::test]
async fn http_1_0_clients() {
    let server = TestServer::start().await;
    let data = server.file("app.dare", &content(300_000));
    let mut client = server.client().await;
    client.send(b"GET /app.dare HTTP/1.0\r\nRange: bytes=100-200099\r\n\r\n").await;
    let reply = client.reply(false).await.unwrap();
    assert_eq!(reply.status, 206);
    assert_eq!(reply.body, &data[100..200_100]);
    // Without keep-alive the server closes after the response.
    assert!(client.closed_within(std::time::Duration::from_secs(2)).await);
    server.stop().await;
}
