//! Key rotation with `dare keys rotate`, and updaters that follow it: a
//! client offline through several rotations updates once and ends on
//! today's keys; a rotation below a threshold is refused; a removed key
//! signs nothing a client accepts; a mirror that hides a rotation is refused.

use std::path::Path;

use dare_container::frame::{Frames, encode_frame, read_frame_before, read_header};
use dare_container::header::Header;
use dare_container::keys::{SigningKey, TrustRoot};
use dare_container::note::{Checkpoint, Note};

use crate::support::{Run, Sandbox, T0, signing_key, verifier};

const LINUX: &str = "x86_64-unknown-linux-gnu";

/// A sandbox with keys a, b, c, d, a container signed by a, and release
/// 1.0.0 that a client has installed (its state in `state`).
struct Offline {
    sb: Sandbox,
}

impl Offline {
    fn new() -> Offline {
        let sb = Sandbox::new();
        for k in ["a", "b", "c", "d"] {
            sb.keygen(&format!("{k}.key"));
        }
        sb.init("app.dare", "a.key");
        let o = Offline { sb };
        o.publish("1.0.0", &["a.key"], 10);
        o.update(&[]).ok();
        o
    }

    fn publish(&self, version: &str, keys: &[&str], at: u64) {
        let dir = self.sb.path(&format!("build-{version}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("app"), format!("app {version}\n")).unwrap();
        let artifact = format!("{LINUX}={}", dir.display());
        let time = (T0 + at).to_string();
        let mut args = vec!["publish", "app.dare", "--version", version, "--artifact", &artifact, "--time", &time];
        for k in keys {
            args.extend(["--key", k]);
        }
        self.sb.dare(&args).ok();
    }

    /// `dare keys rotate` to `new` (verifier key files) with `threshold`, signed by `keys`.
    fn rotate(&self, keys: &[&str], new: &[&str], threshold: u32, at: u64) -> Run {
        let time = (T0 + at).to_string();
        let threshold = threshold.to_string();
        let mut args = vec!["keys", "rotate", "app.dare", "--threshold", &threshold, "--time", &time];
        for k in keys {
            args.extend(["--key", k]);
        }
        for n in new {
            args.extend(["--new-trust", n]);
        }
        self.sb.dare(&args)
    }

    /// `dare update` of the client trusting a, from `from` (default the container).
    fn update_from(&self, from: &str, extra: &[&str]) -> Run {
        let mut args = vec![
            "update",
            "--from",
            from,
            "--trust",
            "a.key.pub",
            "--state",
            "state",
            "--install",
            "install",
            "--target",
            LINUX,
            "--max-age",
            "2000000000",
            "--json",
        ];
        args.extend_from_slice(extra);
        self.sb.dare(&args)
    }

    fn update(&self, extra: &[&str]) -> Run {
        self.update_from("app.dare", extra)
    }

    fn state(&self) -> String {
        std::fs::read_to_string(self.sb.path("state/state.json")).unwrap()
    }

    fn root(&self, keys: &[&str], threshold: u32) -> TrustRoot {
        let keys = keys.iter().map(|k| verifier(&std::fs::read_to_string(self.sb.path(k)).unwrap())).collect();
        TrustRoot::new(keys, threshold).unwrap()
    }

    /// The installed `app`, through `current` (a link on Unix, a pointer file on Windows).
    fn installed(&self) -> std::path::PathBuf {
        dare_updater::current_dir(&self.sb.path("install")).expect("an installed build").join("app")
    }

    fn key(&self, name: &str) -> SigningKey {
        signing_key(&self.sb.path(name))
    }
}

#[test]
fn a_client_offline_through_several_rotations_updates_once_and_ends_on_todays_keys() {
    let o = Offline::new();
    // Add b; remove a; then hand over to c and d, 2 of 2.
    o.rotate(&["a.key"], &["a.key.pub", "b.key.pub"], 1, 20).ok();
    o.rotate(&["b.key"], &["b.key.pub"], 1, 30).ok();
    o.rotate(&["b.key", "c.key", "d.key"], &["c.key.pub", "d.key.pub"], 2, 40).ok();
    o.publish("2.0.0", &["c.key", "d.key"], 50);
    let verify = o.sb.dare(&["verify", "app.dare"]);
    verify.ok();
    let today = o.root(&["c.key.pub", "d.key.pub"], 2);
    assert!(verify.stdout.contains(&format!("fingerprint {} (the root in effect)", today.fingerprint())), "{verify:?}");

    // A check reports the pending rotations and moves nothing.
    let before = o.state();
    let run = o.update(&["--check"]);
    run.ok();
    let v = run.json();
    assert_eq!(v["status"], "available", "{v}");
    assert_eq!(v["rotations"], 3, "{v}");
    assert_eq!(v["trust_fingerprint"], today.fingerprint().as_str(), "{v}");
    assert!(run.stderr.contains("key rotation pending"), "{}", run.stderr);
    assert_eq!(o.state(), before);

    // One update walks the three rotations and installs 2.0.0.
    let run = o.update(&[]);
    run.ok();
    let v = run.json();
    assert_eq!(
        (v["status"].as_str(), v["version"].as_str(), v["rotations"].as_u64()),
        (Some("updated"), Some("2.0.0"), Some(3))
    );
    assert_eq!(v["trust_fingerprint"], today.fingerprint().as_str(), "{v}");
    let state: serde_json::Value = serde_json::from_str(&o.state()).unwrap();
    let stored: TrustRoot = serde_json::from_value(state["trust"].clone()).unwrap();
    assert_eq!(stored.fingerprint(), today.fingerprint());
    assert_eq!(std::fs::read_to_string(o.installed()).unwrap_or_default(), "app 2.0.0\n");
    // Nothing more to walk the next time.
    let v = o.update(&[]).json();
    assert_eq!((v["status"].as_str(), v["rotations"].as_u64()), (Some("up-to-date"), Some(0)), "{v}");

    // A fresh client given today's keys needs no walk; one given the
    // genesis key walks them all.
    let fresh = |trust: &[&str], threshold: &str, state: &str| {
        let mut args = vec!["update", "--from", "app.dare", "--state", state, "--install", state, "--check"];
        args.extend(["--target", LINUX, "--max-age", "2000000000", "--json", "--threshold", threshold]);
        for t in trust {
            args.extend(["--trust", t]);
        }
        o.sb.dare(&args)
    };
    let v = fresh(&["c.key.pub", "d.key.pub"], "2", "fresh-today").json();
    assert_eq!(v["rotations"], 0, "{v}");
    let v = fresh(&["a.key.pub"], "1", "fresh-genesis").json();
    assert_eq!(v["rotations"], 3, "{v}");
    // Keys whose root the log never had start from the genesis, and the
    // first rotation was not signed by them.
    let line = fresh(&["c.key.pub"], "1", "fresh-c").refused().to_string();
    assert!(line.contains("key rotation refused"), "{line}");
}

/// The container with one more seal, signed by `key` alone at `time`: what
/// someone holding a key removed by a rotation could make.
fn forged_heartbeat(container: &Path, key: &SigningKey, time: u64) -> Vec<u8> {
    let mut bytes = std::fs::read(container).unwrap();
    let last = read_frame_before(bytes.as_slice(), 0, bytes.len() as u64).unwrap();
    let Header::Seal(mut seal) = Header::parse(&read_header(bytes.as_slice(), &last).unwrap()).unwrap() else {
        panic!("the last frame is a seal")
    };
    let note = Note::parse(seal.checkpoint.as_bytes()).unwrap();
    let mut cp = Checkpoint::parse(note.text()).unwrap();
    cp.time = Some(time);
    seal.checkpoint = String::from_utf8(Note::sign(&cp.to_text(), &[key]).unwrap().to_bytes()).unwrap();
    seal.time = time;
    bytes.extend(encode_frame(&Header::Seal(seal).to_bytes().unwrap(), b"").unwrap());
    bytes
}

#[test]
fn a_key_removed_by_a_rotation_signs_nothing_a_client_accepts() {
    let o = Offline::new();
    o.rotate(&["a.key", "b.key"], &["b.key.pub"], 1, 20).ok();
    o.publish("2.0.0", &["b.key"], 30);
    o.update(&[]).ok();
    // The publisher refuses a by now.
    let line = o.sb.dare(&["seal", "app.dare", "--key", "a.key", "--time", &(T0 + 40).to_string()]).error().to_string();
    assert!(line.contains("not in the container's trust root"), "{line}");
    // A heartbeat forged with a: the client, which walked to b, refuses it,
    // and so does a full verification.
    let forged = forged_heartbeat(&o.sb.path("app.dare"), &o.key("a.key"), T0 + 40);
    std::fs::write(o.sb.path("forged.dare"), &forged).unwrap();
    let before = o.state();
    let line = o.update_from("forged.dare", &[]).refused().to_string();
    assert!(line.contains("bad signature"), "{line}");
    assert_eq!(o.state(), before);
    let line = o.sb.dare(&["verify", "forged.dare"]).refused().to_string();
    assert!(line.contains("signature"), "{line}");
    // The same forged by b verifies and is taken.
    let honest = forged_heartbeat(&o.sb.path("app.dare"), &o.key("b.key"), T0 + 40);
    std::fs::write(o.sb.path("honest.dare"), &honest).unwrap();
    o.sb.dare(&["verify", "honest.dare"]).ok();
    o.update_from("honest.dare", &[]).ok();
}

#[test]
fn a_mirror_that_hides_or_alters_a_rotation_is_refused() {
    let o = Offline::new();
    o.rotate(&["a.key", "b.key"], &["b.key.pub"], 1, 20).ok();
    o.rotate(&["b.key", "c.key"], &["c.key.pub"], 1, 30).ok();
    o.publish("2.0.0", &["c.key"], 40);
    let bytes = std::fs::read(o.sb.path("app.dare")).unwrap();
    let keys: Vec<_> = Frames::new(bytes.as_slice(), 0, bytes.len() as u64)
        .map(Result::unwrap)
        .filter(|f| matches!(Header::parse(&read_header(bytes.as_slice(), f).unwrap()), Ok(Header::Keys(_))))
        .collect();
    assert_eq!(keys.len(), 2);
    let first = keys[0];
    let header = first.header_offset as usize..(first.header_offset + first.header_len) as usize;
    let text = String::from_utf8(bytes[header.clone()].to_vec()).unwrap();
    // (what the mirror does to the first rotation, the edited header)
    // A byte of the last signature line's Ed25519 signature (after the em
    // dash, a space, the one-letter key name, a space and the key ID).
    let sig = text.rfind('\u{2014}').expect("a signature line") + 40;
    let mut resigned = text.clone().into_bytes();
    resigned[sig] = if resigned[sig] == b'A' { b'B' } else { b'A' };
    let other_root = text.replacen("\"threshold\":1", "\"threshold\":2", 1);
    let cases = [("a flipped signature", resigned), ("another root", other_root.into_bytes())];
    let before = o.state();
    for (what, edited) in cases {
        let mut copy = bytes.clone();
        copy[header.clone()].copy_from_slice(&edited);
        std::fs::write(o.sb.path("mirror.dare"), &copy).unwrap();
        let run = o.update_from("mirror.dare", &[]);
        let line = run.refused();
        assert!(line.contains("key rotation refused"), "{what}: {line}");
        assert_eq!(o.state(), before, "{what}");
        assert_eq!(std::fs::read_to_string(o.installed()).unwrap_or_default(), "app 1.0.0\n", "{what}");
    }
    // The honest container is taken.
    let v = o.update(&[]).json();
    assert_eq!((v["version"].as_str(), v["rotations"].as_u64()), (Some("2.0.0"), Some(2)), "{v}");
}

#[test]
fn a_rotation_below_a_threshold_is_refused_and_changes_nothing() {
    let o = Offline::new();
    // From a, to b and c 2 of 2.
    o.rotate(&["a.key", "b.key", "c.key"], &["b.key.pub", "c.key.pub"], 2, 20).ok();
    let before = std::fs::read(o.sb.path("app.dare")).unwrap();
    for (what, keys, expect) in [
        ("one of two current keys", vec!["b.key", "d.key"], "current trust root needs 2"),
        ("no key of the new root", vec!["b.key", "c.key"], "new trust root needs 1"),
        ("a stranger", vec!["b.key", "c.key", "d.key", "a.key"], "in neither"),
    ] {
        let new: &[&str] = if what == "no key of the new root" { &["d.key.pub"] } else { &["d.key.pub", "b.key.pub"] };
        let line = o.rotate(&keys, new, 1, 30).error().to_string();
        assert!(line.contains(expect), "{what}: {line}");
        assert_eq!(std::fs::read(o.sb.path("app.dare")).unwrap(), before, "{what}");
    }
    o.sb.dare(&["verify", "app.dare"]).ok();
}

#[test]
fn a_client_walks_at_most_the_cap_of_rotations() {
    let o = Offline::new();
    // From a to b, then between b and c: MAX_ROTATIONS + 1 rotations, none
    // back to a.
    let n = dare_container::seal::MAX_ROTATIONS + 1;
    o.rotate(&["a.key", "b.key"], &["b.key.pub"], 1, 20).ok();
    for i in 1..n {
        let (from, to) = if i % 2 == 1 { ("b.key", "c.key") } else { ("c.key", "b.key") };
        o.rotate(&[from, to], &[&format!("{to}.pub")], 1, 20 + i as u64).ok();
    }
    let line = o.update(&[]).refused().to_string();
    assert!(line.contains(&format!("more than {} key rotations", dare_container::seal::MAX_ROTATIONS)), "{line}");
    // A client given the current keys reads one keys leaf and walks none.
    let now = if n % 2 == 1 { "b.key.pub" } else { "c.key.pub" };
    let run = o.sb.dare(&[
        "update",
        "--from",
        "app.dare",
        "--trust",
        now,
        "--state",
        "fresh",
        "--install",
        "fresh-install",
        "--target",
        LINUX,
        "--max-age",
        "2000000000",
        "--json",
    ]);
    let v = run.json();
    assert_eq!((v["status"].as_str(), v["rotations"].as_u64()), (Some("updated"), Some(0)), "{run:?}");
}
