//! Hostile request targets never reach a file outside the served directory.

use crate::support::TestServer;

const SECRET: &[u8] = b"the key to everything";

/// A server whose directory sits next to `secret.txt`, with symlinks that lead
/// out of it and one that stays inside.
async fn server() -> TestServer {
    let server = TestServer::start().await;
    std::fs::write(server.dir.path().join("secret.txt"), SECRET).unwrap();
    server.file("app.dare", b"public");
    server.file("sub/inner.dare", b"inner");
    std::fs::create_dir(server.root().join("empty-dir")).unwrap();
    let root = server.root();
    std::os::unix::fs::symlink(server.dir.path().join("secret.txt"), root.join("escape")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", root.join("relative-escape")).unwrap();
    std::os::unix::fs::symlink(server.dir.path(), root.join("parent-dir")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
    std::os::unix::fs::symlink("app.dare", root.join("alias.dare")).unwrap();
    server
}

#[tokio::test]
async fn traversal_is_refused() {
    let server = server().await;
    let secret_path = server.dir.path().join("secret.txt");
    let absolute = format!("/{}", secret_path.display());
    for target in [
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/.%2e/secret.txt",
        "/sub/%2e%2e/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/..%2Fsecret.txt",
        "/sub%2F..%2F..%2Fsecret.txt",
        "/..%5csecret.txt",
        "/..\\secret.txt",
        "/app.dare%00.txt",
        "/%zz",
        "/./app.dare",
        "//secret.txt",
        "//../secret.txt",
        absolute.as_str(),
        "/escape",
        "/relative-escape",
        "/parent-dir/secret.txt",
        "/etc/passwd",
        "/etc/hostname",
    ] {
        for method in ["GET", "HEAD"] {
            let reply = server.request(&format!("{method} {target} HTTP/1.1\r\nHost: test\r\n\r\n")).await;
            assert!(reply.status == 400 || reply.status == 404, "{method} {target}: {}", reply.status);
            assert!(!reply.body.windows(SECRET.len()).any(|w| w == SECRET), "{target}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn absolute_form_targets_are_checked_too() {
    let server = server().await;
    let reply = server.request("GET http://test/../secret.txt HTTP/1.1\r\nHost: test\r\n\r\n").await;
    assert_eq!(reply.status, 400);
    let reply = server.request("GET http://test/app.dare HTTP/1.1\r\nHost: test\r\n\r\n").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"public");
    server.stop().await;
}

#[tokio::test]
async fn directories_and_hidden_files_are_not_served() {
    let server = server().await;
    server.file(".hidden", b"temporary");
    server.file("sub/.partial", b"temporary");
    for target in
        ["/", "/sub", "/sub/", "/empty-dir", "/empty-dir/", "/.hidden", "/sub/.partial", "/missing", "/app.dare/"]
    {
        let reply = server.get(target, &[]).await;
        assert_eq!(reply.status, 404, "{target}");
    }
    // A regular file below a file is not there either.
    assert_eq!(server.get("/app.dare/x", &[]).await.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn symlinks_inside_the_root_are_followed() {
    let server = server().await;
    let reply = server.get("/alias.dare", &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"public");
    assert_eq!(server.get("/sub/inner.dare", &[]).await.body, b"inner");
    server.stop().await;
}

#[tokio::test]
async fn special_files_are_not_served() {
    let server = server().await;
    // Opening a FIFO would block; it must be refused before that.
    let fifo = server.root().join("fifo");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status();
    if crate::support::require_tool(matches!(status, Ok(s) if s.success()), "mkfifo", "apt-get install -y coreutils") {
        let reply = tokio::time::timeout(std::time::Duration::from_secs(5), server.get("/fifo", &[]))
            .await
            .expect("a FIFO does not hang the server");
        assert_eq!(reply.status, 404);
    }
    std::os::unix::fs::symlink("/dev/zero", server.root().join("zero")).unwrap();
    assert_eq!(server.get("/zero", &[]).await.status, 404);
    server.stop().await;
}
