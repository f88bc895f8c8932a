//! Witness cosignatures on the client: with witnesses configured, a
//! checkpoint needs the threshold of valid cosignatures, or the update (and
//! the check) is refused with its own error and nothing is installed.

use std::sync::Arc;

use crate::support::*;
use dare_container::cosign::WitnessSigningKey;
use dare_container::keys::SigningKey;
use dare_publisher::{Artifact, PublishOptions};
use dare_updater::transport::MemoryTransport;
use dare_updater::{Status, UpdateError};

fn witness(seed: u8) -> WitnessSigningKey {
    WitnessSigningKey::from_seed(&format!("witness{seed}.example"), [seed; 32]).unwrap()
}

/// Publishes `version` of a Linux build cosigned by `cosigners`.
fn publish_cosigned(p: &Publisher, dir: &std::path::Path, version: &str, time: u64, cosigners: &[&WitnessSigningKey]) {
    let build = dir.join(format!("build-{version}"));
    std::fs::create_dir_all(&build).unwrap();
    std::fs::write(build.join("app"), app_bytes(LINUX, version, 4096)).unwrap();
    set_mode(&build.join("app"), 0o755);
    let opts = PublishOptions::new(version, vec![Artifact { target: LINUX.into(), path: build }], time);
    let signers: Vec<&SigningKey> = p.keys.iter().collect();
    dare_publisher::publish_cosigned(&p.container, &signers, &opts, &mut |_| {}, &mut |req| {
        Ok(cosigners.iter().map(|w| w.cosign(req.note().text(), time)).collect())
    })
    .unwrap();
}

fn client(dir: &std::path::Path, name: &str, p: &Publisher) -> Client {
    Client::new(dir, name, LINUX, p.verifiers())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_needs_the_threshold_of_witness_cosignatures() {
    let dir = tempfile::tempdir().unwrap();
    let p = Publisher::small(dir.path());
    let ws = [witness(1), witness(2), witness(3)];
    publish_cosigned(&p, dir.path(), "1.0.0", T0 + 60, &[&ws[0], &ws[1]]);
    let t = Arc::new(MemoryTransport::new("memory", p.bytes()));
    let with = |c: &Client, k: usize| {
        let mut b = c.builder().transport(t.clone()).witness_threshold(k);
        for w in &ws {
            b = b.witness(w.verifier());
        }
        b.build().unwrap()
    };

    // Three required, two cosigned: refused, for the check too, nothing installed.
    let c = client(dir.path(), "three", &p);
    let before = c.snapshot();
    for e in [with(&c, 3).check().await.unwrap_err(), with(&c, 3).update().await.unwrap_err()] {
        assert!(matches!(e, UpdateError::Witness(_)), "{e:?}");
        assert!(e.is_verification_failure());
        assert_eq!(e.kind(), "witness");
        assert!(e.to_string().contains("2 witness(es), 3 required"), "{e}");
    }
    assert_eq!(c.snapshot(), before);

    // Two of three: installed.
    let c = client(dir.path(), "two", &p);
    let o = with(&c, 2).update().await.unwrap();
    assert_eq!(o.status, Status::Updated);

    // A seal no witness cosigned (an uncosigned heartbeat) is refused by that client.
    p.heartbeat(T0 + 120);
    let t2 = Arc::new(MemoryTransport::new("memory", p.bytes()));
    let mut b = c.builder().transport(t2.clone()).witness_threshold(2);
    for w in &ws {
        b = b.witness(w.verifier());
    }
    let e = b.build().unwrap().update().await.unwrap_err();
    assert!(matches!(e, UpdateError::Witness(_)), "{e:?}");
    // A client that requires no witness takes it.
    let plain = client(dir.path(), "plain", &p);
    assert_eq!(plain.update(&t2).await.unwrap().status, Status::Updated);
}

#[test]
fn witness_settings_are_checked_when_building() {
    let dir = tempfile::tempdir().unwrap();
    let p = Publisher::small(dir.path());
    let t = Arc::new(MemoryTransport::new("memory", p.bytes()));
    let c = client(dir.path(), "c", &p);
    let e = c.builder().transport(t.clone()).witness_threshold(1).build().unwrap_err();
    assert!(matches!(e, UpdateError::Config(_)), "{e:?}");
    let e = c.builder().transport(t.clone()).witness(witness(1).verifier()).witness_threshold(2).build().unwrap_err();
    assert!(matches!(e, UpdateError::Config(_)), "{e:?}");
    let e = c.builder().transport(t).witness(witness(1).verifier()).witness(witness(1).verifier()).build().unwrap_err();
    assert!(matches!(e, UpdateError::Config(_)), "{e:?}");
}
