//! Signed time against the client's clock: a seal from the future is
//! refused with its own error, and a stored time from the future (accepted
//! by a client whose clock was ahead, or before clients checked) does not
//! make every honest later seal a rollback.

use std::sync::Arc;

use crate::support::*;
use dare_container::client::MAX_CLOCK_SKEW;
use dare_updater::transport::MemoryTransport;
use dare_updater::{Status, UpdateError};

fn mem(p: &Publisher) -> Arc<MemoryTransport> {
    Arc::new(MemoryTransport::new("memory", p.bytes()))
}

/// The publisher's mistake: a heartbeat ten days ahead of the clients' clock.
const FUTURE: u64 = T0 + 10 * DAY;

fn ahead() -> u64 {
    FUTURE
}

/// Two hours after the genesis: the clock is right again.
fn honest() -> u64 {
    T0 + 7200
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seal_from_the_future_is_refused_and_a_stored_one_is_superseded() {
    let dir = tempfile::tempdir().unwrap();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let mut c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&mem(&p)).await.unwrap();
    p.heartbeat(FUTURE);

    // A client whose clock is right refuses it, not as a rollback or freeze.
    let before = c.snapshot();
    match c.update(&mem(&p)).await.unwrap_err() {
        UpdateError::FutureTime(f) => {
            assert_eq!((f.signed, f.now, f.skew), (FUTURE, now(), MAX_CLOCK_SKEW));
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(c.snapshot(), before, "nothing changed");
    // Within the skew is clock drift, accepted.
    assert!(FUTURE - MAX_CLOCK_SKEW > now());

    // A client whose clock was that far ahead accepted and stored it.
    let mut skewed = Client::new(dir.path(), "skewed", LINUX, p.verifiers());
    skewed.clock = ahead;
    skewed.update(&mem(&p)).await.unwrap();
    assert_eq!(skewed.state().unwrap().time, FUTURE);

    // The way out: a seal at the right time that supersedes the future one.
    let signers: Vec<_> = p.keys.iter().collect();
    let mut opts = dare_publisher::SealOptions::new(honest());
    opts.supersede_future_time = true;
    // The publisher library checks the real clock, which is years after T0.
    dare_publisher::seal(&p.container, &signers, &opts).unwrap();
    p.scan();

    // Its clock fixed, the client takes the honest seal (the same tree):
    // the stored future time is not a reason to call it a rollback.
    skewed.clock = honest;
    let out = skewed.update(&mem(&p)).await.unwrap();
    assert_eq!(out.status, Status::UpToDate);
    assert_eq!(skewed.state().unwrap().time, honest(), "the stored time from the future is replaced");
    // And later releases install as usual, for both clients.
    p.publish("1.1.0", honest() + 60);
    skewed.update(&mem(&p)).await.unwrap();
    c.clock = honest;
    let out = c.update(&mem(&p)).await.unwrap();
    assert_eq!((out.status, out.version.as_str()), (Status::Updated, "1.1.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_time_within_the_skew_still_refuses_an_older_seal() {
    // The rule is not looser than it must be: a stored time that is not
    // from the future still orders seals.
    let dir = tempfile::tempdir().unwrap();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let old = p.bytes();
    p.heartbeat(T0 + 120);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&mem(&p)).await.unwrap();
    let replay = Arc::new(MemoryTransport::new("replay", old));
    assert!(matches!(c.update(&replay).await.unwrap_err(), UpdateError::Rollback(_)));
}
