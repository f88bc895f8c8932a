//! A container that a publisher appends to while it is served: clients see
//! exactly its sealed prefix, with the length, `Content-Range` and `ETag` of
//! that prefix, until the new seal is complete.

use std::io::Write;
use std::path::Path;

use dare_container::Appender;
use dare_container::header::{FORMAT_VERSION, Genesis};
use dare_container::keys::{SigningKey, TrustRoot};
use dare_publisher::{Artifact, PublishOptions, publish};

use crate::support::{TestServer, content};

const T0: u64 = 1_764_057_600;

/// A container's bytes after its first release, and after its second.
fn two_releases(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let key = SigningKey::from_seed("release", [7; 32]).unwrap();
    let trust = TrustRoot::new(vec![key.verifier()], 1).unwrap();
    let genesis = Genesis { format: FORMAT_VERSION, origin: "example.com/app".into(), product: "app".into(), trust };
    let container = dir.join("c.dare");
    Appender::create(&container, genesis, &[&key], T0).unwrap();
    let mut releases = Vec::new();
    for (i, version) in ["1.0.0", "1.1.0"].iter().enumerate() {
        let build = dir.join(format!("build{i}"));
        std::fs::create_dir_all(&build).unwrap();
        let mut bytes = content(40_000);
        bytes[0] = i as u8;
        std::fs::write(build.join("app"), bytes).unwrap();
        let artifacts = vec![Artifact { target: "x86_64-unknown-linux-gnu".into(), path: build }];
        publish(&container, &[&key], &PublishOptions::new(*version, artifacts, T0 + 1 + i as u64), &mut |_| {})
            .unwrap();
        releases.push(std::fs::read(&container).unwrap());
    }
    (releases.remove(0), releases.remove(0))
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

/// The served representation is exactly `want`: whole, a suffix, and past
/// its end; returns its `ETag`.
async fn assert_served(server: &TestServer, path: &str, want: &[u8], what: &str) -> String {
    let len = want.len();
    let whole = server.get(path, &[]).await;
    assert_eq!(whole.status, 200, "{what}");
    assert_eq!(whole.content_length(), Some(len as u64), "{what}: Content-Length");
    assert!(whole.body == want, "{what}: the body is the sealed prefix");
    let etag = whole.header("etag").expect("an ETag").to_string();

    let tail = server.get(path, &[("Range", "bytes=-64")]).await;
    assert_eq!(tail.status, 206, "{what}");
    assert_eq!(tail.header("content-range"), Some(format!("bytes {}-{}/{len}", len - 64, len - 1).as_str()), "{what}");
    assert_eq!(tail.body, &want[len - 64..], "{what}: the suffix ends with the seal");
    assert_eq!(tail.header("etag"), Some(etag.as_str()), "{what}: one ETag for one representation");

    let past = server.get(path, &[("Range", &format!("bytes={len}-"))]).await;
    assert_eq!(past.status, 416, "{what}");
    assert_eq!(past.header("content-range"), Some(format!("bytes */{len}").as_str()), "{what}");
    etag
}

#[tokio::test]
async fn a_container_being_appended_to_is_served_up_to_its_last_seal() {
    let server = TestServer::start().await;
    let (v1, v2) = two_releases(server.dir.path());
    assert!(v2.len() > v1.len() + 1000);
    server.file("app.dare", &v1);
    let file = server.root().join("app.dare");
    let before = assert_served(&server, "/app.dare", &v1, "before the publish").await;

    // The publish appends frame after frame: a partial frame, whole frames,
    // the seal but its last byte.
    let mut at = v1.len();
    for cut in [v1.len() + 1, v1.len() + 9, (v1.len() + v2.len()) / 2, v2.len() - 1] {
        append(&file, &v2[at..cut]);
        at = cut;
        let etag = assert_served(&server, "/app.dare", &v1, &format!("{cut} of {} bytes", v2.len())).await;
        assert_eq!(etag, before, "the ETag of the sealed prefix stays while the publish runs");
        // A client resuming with If-Range gets its range.
        let resumed = server.get("/app.dare", &[("Range", "bytes=10-19"), ("If-Range", &before)]).await;
        assert_eq!((resumed.status, resumed.body.as_slice()), (206, &v1[10..20]));
    }
    // The seal is complete: the new release is served.
    append(&file, &v2[at..]);
    let after = assert_served(&server, "/app.dare", &v2, "after the publish").await;
    assert_ne!(after, before);

    // A server that first sees a container mid-publish finds its last seal too.
    server.file("cold.dare", &v2[..v1.len() + 5000]);
    assert_served(&server, "/cold.dare", &v1, "a container first seen mid-publish").await;
    server.stop().await;
}

#[tokio::test]
async fn a_dare_file_that_is_not_a_container_is_served_whole() {
    let server = TestServer::start().await;
    for (name, bytes) in [("notes.dare", b"hello, not a container\n".to_vec()), ("data.dare", content(100_000))] {
        server.file(name, &bytes);
        let reply = server.get(&format!("/{name}"), &[]).await;
        assert_eq!((reply.status, reply.body.len()), (200, bytes.len()), "{name}");
    }
    server.stop().await;
}
