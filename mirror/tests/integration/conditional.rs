//! ETag, Last-Modified, If-Range, If-None-Match, If-Modified-Since.

use std::time::{Duration, SystemTime};

use crate::support::{TestServer, append, content, request};

/// A server with `app.dare` last modified an hour ago, so that its date is a
/// strong validator.
async fn server() -> (TestServer, Vec<u8>) {
    let server = TestServer::start().await;
    let data = server.file("app.dare", &content(10_000));
    let file = std::fs::File::options().write(true).open(server.root().join("app.dare")).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(3600)).unwrap();
    (server, data)
}

#[tokio::test]
async fn if_range_with_the_etag() {
    let (server, data) = server().await;
    let etag = server.get("/app.dare", &[]).await.header("etag").unwrap().to_owned();
    let reply = server.get("/app.dare", &[("Range", "bytes=0-9"), ("If-Range", &etag)]).await;
    assert_eq!(reply.status, 206);
    assert_eq!(reply.body, &data[..10]);
    // Another tag, or ours marked weak, sends the whole representation.
    let weak = format!("W/{etag}");
    for other in ["\"something-else\"", weak.as_str(), "not-a-tag-or-date"] {
        let reply = server.get("/app.dare", &[("Range", "bytes=0-9"), ("If-Range", other)]).await;
        assert_eq!(reply.status, 200, "{other}");
        assert_eq!(reply.body, data);
    }
    server.stop().await;
}

#[tokio::test]
async fn if_range_with_a_date() {
    let (server, data) = server().await;
    let modified = server.get("/app.dare", &[]).await.header("last-modified").unwrap().to_owned();
    let reply = server.get("/app.dare", &[("Range", "bytes=5-9"), ("If-Range", &modified)]).await;
    assert_eq!(reply.status, 206);
    assert_eq!(reply.body, &data[5..10]);
    let earlier = httpdate::fmt_http_date(httpdate::parse_http_date(&modified).unwrap() - Duration::from_secs(1));
    let reply = server.get("/app.dare", &[("Range", "bytes=5-9"), ("If-Range", &earlier)]).await;
    assert_eq!(reply.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn if_none_match_gives_304() {
    let (server, _) = server().await;
    let full = server.get("/app.dare", &[]).await;
    let etag = full.header("etag").unwrap();
    let mut client = server.client().await;
    for (method, value) in [
        ("GET", etag.to_owned()),
        ("HEAD", etag.to_owned()),
        ("GET", format!("\"other\", W/{etag}")),
        ("GET", "*".to_owned()),
    ] {
        let reply =
            client.request(&request(method, "/app.dare", &[("If-None-Match", &value), ("Range", "bytes=0-0")])).await;
        assert_eq!(reply.status, 304, "{method} {value}");
        assert_eq!(reply.header("etag"), Some(etag));
        assert_eq!(reply.header("last-modified"), full.header("last-modified"));
        assert!(reply.body.is_empty());
    }
    let reply = client.request(&request("GET", "/app.dare", &[("If-None-Match", "\"other\"")])).await;
    assert_eq!(reply.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn if_modified_since_and_if_match() {
    let (server, _) = server().await;
    let full = server.get("/app.dare", &[]).await;
    let modified = full.header("last-modified").unwrap();
    assert_eq!(server.get("/app.dare", &[("If-Modified-Since", modified)]).await.status, 304);
    let earlier = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(7200));
    assert_eq!(server.get("/app.dare", &[("If-Modified-Since", &earlier)]).await.status, 200);
    assert_eq!(server.get("/app.dare", &[("If-Match", "\"other\"")]).await.status, 412);
    assert_eq!(server.get("/app.dare", &[("If-Unmodified-Since", &earlier)]).await.status, 412);
    let etag = full.header("etag").unwrap();
    assert_eq!(server.get("/app.dare", &[("If-Match", etag)]).await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_growing_file_gets_a_new_etag() {
    let (server, _) = server().await;
    let before = server.get("/app.dare", &[]).await;
    append(&server.root().join("app.dare"), b"one more frame");
    let after = server.get("/app.dare", &[]).await;
    assert_eq!(after.content_length(), Some(10_014));
    assert_ne!(after.header("etag"), before.header("etag"));
    // A range conditioned on the old tag now gets the whole new file.
    let reply = server.get("/app.dare", &[("Range", "bytes=0-9"), ("If-Range", before.header("etag").unwrap())]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 10_014);
    // The old tag no longer matches If-None-Match.
    let reply = server.get("/app.dare", &[("If-None-Match", before.header("etag").unwrap())]).await;
    assert_eq!(reply.status, 200);
    server.stop().await;
}
