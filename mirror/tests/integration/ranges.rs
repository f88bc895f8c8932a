//! Single, open, suffix and multiple ranges; 416; ignored headers.

use crate::support::{TestServer, content, multipart, parse_content_range};

const LEN: usize = 300_000;

async fn server() -> (TestServer, Vec<u8>) {
    let server = TestServer::start().await;
    let data = server.file("app.dare", &content(LEN));
    (server, data)
}

#[tokio::test]
async fn single_ranges() {
    let (server, data) = server().await;
    let total = data.len();
    for (header, first, last) in [
        ("bytes=0-0", 0, 0),
        ("bytes=10-19", 10, 19),
        ("bytes=1000-", 1000, total - 1),
        ("bytes=-500", total - 500, total - 1),
        ("bytes=-999999999", 0, total - 1),
        ("bytes=299990-999999999999", 299_990, total - 1),
        // Spans several chunks.
        ("bytes=12345-250000", 12_345, 250_000),
        ("BYTES=5-6", 5, 6),
        ("bytes= 7-8 ,", 7, 8),
    ] {
        let reply = server.get("/app.dare", &[("Range", header)]).await;
        assert_eq!(reply.status, 206, "{header}");
        assert_eq!(reply.header("content-range"), Some(format!("bytes {first}-{last}/{total}").as_str()), "{header}");
        assert_eq!(reply.content_length(), Some((last - first + 1) as u64));
        assert_eq!(reply.header("content-type"), Some("application/octet-stream"));
        assert_eq!(reply.body, &data[first..=last], "{header}");
    }
    server.stop().await;
}

#[tokio::test]
async fn multiple_ranges_are_multipart() {
    let (server, data) = server().await;
    let reply = server.get("/app.dare", &[("Range", "bytes=100-199, 5000-5099,-10,200000-270000")]).await;
    assert_eq!(reply.status, 206);
    assert_eq!(reply.header("content-range"), None);
    assert_eq!(reply.content_length(), Some(reply.body.len() as u64));
    let parts = multipart(&reply);
    let want = [(100, 199), (5000, 5099), (LEN - 10, LEN - 1), (200_000, 270_000)];
    assert_eq!(parts.len(), want.len());
    for ((range, ctype, bytes), (first, last)) in parts.iter().zip(want) {
        assert_eq!(range, &format!("bytes {first}-{last}/{LEN}"));
        assert_eq!(ctype, "application/octet-stream");
        assert_eq!(bytes, &data[first..=last]);
    }
    // Boundaries differ between responses.
    let again = server.get("/app.dare", &[("Range", "bytes=0-0,10-10")]).await;
    assert_ne!(again.header("content-type"), reply.header("content-type"));
    server.stop().await;
}

#[tokio::test]
async fn overlapping_and_close_ranges_are_coalesced() {
    let (server, data) = server().await;
    // Overlapping ranges merge into one part: a single-range 206.
    let reply = server.get("/app.dare", &[("Range", "bytes=0-99,50-149,100-120")]).await;
    assert_eq!(reply.status, 206);
    assert_eq!(reply.header("content-range"), Some(format!("bytes 0-149/{LEN}").as_str()));
    assert_eq!(reply.body, &data[..150]);
    // A small gap is bridged; far ranges stay apart, in request order.
    let reply = server.get("/app.dare", &[("Range", "bytes=9000-9099,0-9,20-29,9000-9000")]).await;
    let parts = multipart(&reply);
    let ranges: Vec<_> = parts.iter().map(|(r, _, _)| parse_content_range(r)).collect();
    assert_eq!(ranges, [(9000, 9099, LEN as u64), (0, 29, LEN as u64)]);
    assert_eq!(parts[1].2, &data[..30]);
    // The same range many times costs no more than once.
    let many = vec!["0-99999"; 50].join(",");
    let reply = server.get("/app.dare", &[("Range", &format!("bytes={many}"))]).await;
    assert_eq!(reply.status, 206);
    assert_eq!(reply.body.len(), 100_000);
    server.stop().await;
}

#[tokio::test]
async fn unsatisfiable_is_416() {
    let (server, _) = server().await;
    for header in ["bytes=300000-", "bytes=300000-400000", "bytes=-0", "bytes=999999-,400000-500000"] {
        let reply = server.get("/app.dare", &[("Range", header)]).await;
        assert_eq!(reply.status, 416, "{header}");
        assert_eq!(reply.header("content-range"), Some(format!("bytes */{LEN}").as_str()));
        assert!(reply.body.is_empty());
    }
    // An unsatisfiable range next to a satisfiable one is dropped.
    let reply = server.get("/app.dare", &[("Range", "bytes=999999-,0-0")]).await;
    assert_eq!(reply.status, 206);
    assert_eq!(reply.header("content-range"), Some(format!("bytes 0-0/{LEN}").as_str()));
    server.stop().await;
}

#[tokio::test]
async fn malformed_or_foreign_ranges_are_ignored() {
    let (server, data) = server().await;
    for header in ["bytes=", "bytes=abc", "bytes=5-1", "bytes=0-1,5-1", "bytes=--5", "bytes 0-5", "items=0-5", "0-5"] {
        let reply = server.get("/app.dare", &[("Range", header)]).await;
        assert_eq!(reply.status, 200, "{header}");
        assert_eq!(reply.body, data, "{header}");
    }
    // Two Range headers: ignored too.
    let reply = server.get("/app.dare", &[("Range", "bytes=0-0"), ("Range", "bytes=1-1")]).await;
    assert_eq!(reply.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn more_than_64_ranges_send_the_whole_file() {
    let (server, data) = server().await;
    let specs: Vec<String> = (0..65).map(|i| format!("{}-{}", i * 1000, i * 1000)).collect();
    let reply = server.get("/app.dare", &[("Range", &format!("bytes={}", specs.join(",")))]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, data);
    let reply = server.get("/app.dare", &[("Range", &format!("bytes={}", specs[..64].join(",")))]).await;
    assert_eq!(reply.status, 206);
    let parts = multipart(&reply);
    assert_eq!(parts.len(), 64);
    for (i, (_, _, bytes)) in parts.iter().enumerate() {
        assert_eq!(bytes, &data[i * 1000..=i * 1000]);
    }
    server.stop().await;
}

#[tokio::test]
async fn http2_ranges() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let (server, data) = server().await;
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.expect("h2c handshake");
    let conn = tokio::spawn(conn);
    for (range, want) in
        [(None, &data[..]), (Some("bytes=1000-250000"), &data[1000..=250_000]), (Some("bytes=-7"), &data[LEN - 7..])]
    {
        let mut req = hyper::Request::get(server.url("/app.dare"));
        if let Some(range) = range {
            req = req.header("range", range);
        }
        let response = sender.send_request(req.body(Empty::<bytes::Bytes>::new()).unwrap()).await.expect("h2 response");
        assert_eq!(response.status(), if range.is_some() { 206 } else { 200 });
        let body = response.into_body().collect().await.expect("h2 body").to_bytes();
        assert_eq!(&body[..], want, "{range:?}");
    }
    drop(sender);
    let _ = conn.await;
    server.stop().await;
}
