//! The server as curl sees it.

use std::process::Command;

use crate::support::{Reply, TestServer, content, multipart};

fn curl_available() -> bool {
    Command::new("curl").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Runs curl off the runtime thread, which serves its requests.
async fn run(mut command: Command) -> bool {
    tokio::task::spawn_blocking(move || command.status().expect("run curl").success()).await.expect("curl thread")
}

#[tokio::test]
async fn curl_multi_range() {
    if !crate::support::require_tool(curl_available(), "curl", "apt-get install -y curl") {
        return;
    }
    let server = TestServer::start().await;
    let data = server.file("app.dare", &content(100_000));
    let url = server.url("/app.dare");
    let out = server.dir.path().join("out");
    let headers = server.dir.path().join("headers");
    let mut multi = Command::new("curl");
    multi.args(["-sS", "--fail", "-r", "0-99,5000-5999,-10"]).arg("-o").arg(&out).arg("-D").arg(&headers).arg(&url);
    assert!(run(multi).await);
    let head = std::fs::read_to_string(&headers).unwrap();
    let mut lines = head.lines();
    assert!(lines.next().unwrap().contains(" 206"));
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned())).collect();
    let reply = Reply { status: 206, headers, body: std::fs::read(&out).unwrap() };
    let parts = multipart(&reply);
    let want = [(0, 99), (5000, 5999), (99_990, 99_999)];
    assert_eq!(parts.len(), 3);
    for ((range, _, bytes), (first, last)) in parts.iter().zip(want) {
        assert_eq!(range, &format!("bytes {first}-{last}/100000"));
        assert_eq!(bytes, &data[first..=last]);
    }

    // A single range resumes a download the way curl -C does.
    let partial = server.dir.path().join("partial");
    std::fs::write(&partial, &data[..40_000]).unwrap();
    let mut resume = Command::new("curl");
    resume.args(["-sS", "--fail", "-C", "-", "-o"]).arg(&partial).arg(&url);
    assert!(run(resume).await);
    assert!(std::fs::read(&partial).unwrap() == data);
    server.stop().await;
}
