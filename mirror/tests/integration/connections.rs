//! Keep-alive, timeouts, the connection limit, graceful shutdown.

use std::time::{Duration, Instant};

use dare_mirror::ServerConfig;
use tokio::io::AsyncReadExt;

use crate::support::{Client, TestServer, content, request};

fn short_timeouts() -> ServerConfig {
    ServerConfig {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(600),
        send_timeout: Duration::from_millis(600),
        ..ServerConfig::default()
    }
}

#[tokio::test]
async fn keep_alive_reuses_the_connection() {
    let server = TestServer::start().await;
    let data = server.file("app.dare", &content(100_000));
    let mut client = server.client().await;
    for i in 0..5 {
        let header = format!("bytes={}-{}", i * 1000, i * 1000 + 99);
        let reply = client.request(&request("GET", "/app.dare", &[("Range", &header)])).await;
        assert_eq!(reply.status, 206);
        assert_eq!(reply.body, &data[i * 1000..i * 1000 + 100]);
    }
    // Pipelined requests are answered in order.
    let two = format!(
        "{}{}",
        request("GET", "/app.dare", &[("Range", "bytes=0-0")]),
        request("GET", "/app.dare", &[("Range", "bytes=1-1")])
    );
    client.send(two.as_bytes()).await;
    assert_eq!(client.reply(false).await.unwrap().body, &data[0..1]);
    assert_eq!(client.reply(false).await.unwrap().body, &data[1..2]);
    // Connection: close is honoured.
    let reply = client.request(&request("GET", "/app.dare", &[("Connection", "close"), ("Range", "bytes=0-0")])).await;
    assert_eq!(reply.status, 206);
    assert!(client.closed_within(Duration::from_secs(2)).await);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_dropped() {
    let server = TestServer::with_config(short_timeouts()).await;
    server.file("app.dare", b"x");
    let started = Instant::now();
    let mut client = server.client().await;
    client.send(b"GET /app.dare HTTP/1.1\r\nHost: test\r\nX-Slow: ").await;
    // Trickle bytes: progress on the socket does not extend the deadline.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        client.send(b"a").await;
    }
    assert!(client.closed_within(Duration::from_secs(5)).await);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(250), "closed after {elapsed:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_dropped() {
    let server = TestServer::with_config(short_timeouts()).await;
    let started = Instant::now();
    let mut client = server.client().await;
    assert!(client.closed_within(Duration::from_secs(5)).await);
    assert!(started.elapsed() >= Duration::from_millis(250));
    server.stop().await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let server = TestServer::with_config(short_timeouts()).await;
    server.file("app.dare", b"x");
    let mut client = server.client().await;
    assert_eq!(client.request(&request("GET", "/app.dare", &[])).await.status, 200);
    // Still usable right after a response...
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(client.request(&request("GET", "/app.dare", &[])).await.status, 200);
    // ...and closed once idle for the timeout.
    assert!(client.closed_within(Duration::from_secs(5)).await);
    server.stop().await;
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let server = TestServer::with_config(short_timeouts()).await;
    server.file("app.dare", b"x");
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    let conn = tokio::spawn(conn);
    let response = sender
        .send_request(hyper::Request::get(server.url("/app.dare")).body(Empty::<bytes::Bytes>::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("the server closes an idle HTTP/2 connection")
        .unwrap()
        .ok();
    assert!(started.elapsed() >= Duration::from_millis(400));
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped() {
    let server = TestServer::with_config(short_timeouts()).await;
    let len = 32 << 20;
    server.file("big.dare", &content(len));
    let mut client = server.client().await;
    client.send(request("GET", "/big.dare", &[]).as_bytes()).await;
    // Read nothing for well over the send timeout.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let received =
        tokio::time::timeout(Duration::from_secs(10), client.read_to_close()).await.expect("the connection ends");
    assert!(received.len() < len, "got {} of {len} bytes", received.len());
    server.stop().await;
}

#[tokio::test]
async fn the_connection_limit_makes_clients_wait_while_every_connection_is_busy() {
    let server = TestServer::with_config(ServerConfig { max_connections: 1, ..ServerConfig::default() }).await;
    server.file("app.dare", b"x");
    server.file("big.dare", &content(32 << 20));
    // A request in progress: a large response the client does not read.
    let mut first = server.client().await;
    first.send(request("GET", "/big.dare", &[]).as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut second = Client::connect(server.addr).await;
    second.send(request("GET", "/app.dare", &[]).as_bytes()).await;
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), second.stream.read(&mut byte)).await;
    assert!(early.is_err(), "the second connection waits while the first is busy");
    drop(first);
    let reply = tokio::time::timeout(Duration::from_secs(5), second.reply(false))
        .await
        .expect("served once the first connection closed")
        .unwrap();
    assert_eq!(reply.status, 200);
    server.stop().await;
}

/// An HTTP/2 connection that pings after its request holds a slot only for
/// the idle timeout: pings are not requests.
#[tokio::test]
async fn a_pinging_idle_http2_connection_is_closed() {
    let server = TestServer::with_config(short_timeouts()).await;
    server.file("app.dare", b"x");
    let (_sender, conn) = pinging_h2(&server, Duration::from_millis(100)).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the server closes an HTTP/2 connection that only pings")
        .ok();
    assert!(started.elapsed() >= Duration::from_millis(400));
    server.stop().await;
}

/// An h2c connection that made one request and then pings every `every`:
/// its sender and its connection task (which ends when the server closes it).
async fn pinging_h2(
    server: &TestServer,
    every: Duration,
) -> (hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>, tokio::task::JoinHandle<()>) {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(every)
        .keep_alive_timeout(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let response = sender
        .send_request(hyper::Request::get(server.url("/app.dare")).body(Empty::<bytes::Bytes>::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    (sender, conn)
}

/// Every slot held by h2c connections that ping (and make no request):
/// honest requests are still served, at once, by closing the connection
/// idle the longest; the idle timeout (60 s) never comes into it.
#[tokio::test]
async fn pinging_connections_do_not_starve_honest_requests() {
    let slots = 16;
    let server = TestServer::with_config(ServerConfig { max_connections: slots, ..ServerConfig::default() }).await;
    server.file("app.dare", b"x");
    let mut pingers = Vec::new();
    for _ in 0..slots {
        pingers.push(pinging_h2(&server, Duration::from_millis(200)).await);
    }
    // Let them ping a few times.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for i in 0..5 {
        let reply = tokio::time::timeout(Duration::from_secs(10), server.get("/app.dare", &[]))
            .await
            .unwrap_or_else(|_| panic!("honest request {i} timed out: the pinging connections hold every slot"));
        assert_eq!(reply.status, 200);
    }
    let closed = || pingers.iter().filter(|(_, conn)| conn.is_finished()).count();
    let t = Instant::now();
    while closed() == 0 && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let closed = closed();
    assert!((1..=5).contains(&closed), "{closed} pinging connections closed for 5 honest ones");
    drop(pingers);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_the_response_in_flight() {
    let mut server = TestServer::start().await;
    let len = 16 << 20;
    let data = server.file("big.dare", &content(len));
    let mut idle = server.client().await;
    assert_eq!(idle.request(&request("HEAD", "/big.dare", &[])).await.status, 200);
    let mut busy = server.client().await;
    busy.send(request("GET", "/big.dare", &[]).as_bytes()).await;
    let (status, _) = busy.head().await.unwrap();
    assert_eq!(status, 200);
    let mut body = vec![0u8; 1 << 20];
    busy.stream.read_exact(&mut body).await.unwrap();

    server.begin_shutdown();
    // The idle connection is closed at once.
    assert!(idle.closed_within(Duration::from_secs(2)).await);
    // No new connections are accepted.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
    // The response in flight completes, slowly read.
    let mut rest = vec![0u8; len - body.len()];
    for chunk in rest.chunks_mut(4 << 20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        busy.stream.read_exact(chunk).await.unwrap();
    }
    body.extend_from_slice(&rest);
    assert!(body == data);
    assert!(busy.closed_within(Duration::from_secs(2)).await);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_gives_up_on_a_stuck_client_after_its_timeout() {
    let mut server = TestServer::with_config(ServerConfig {
        shutdown_timeout: Duration::from_millis(500),
        ..ServerConfig::default()
    })
    .await;
    server.file("big.dare", &content(32 << 20));
    let mut stuck = server.client().await;
    stuck.send(request("GET", "/big.dare", &[]).as_bytes()).await;
    stuck.head().await.unwrap();
    let started = Instant::now();
    server.begin_shutdown();
    server.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let rest = stuck.read_to_close().await;
    assert!(rest.len() < 32 << 20);
}
