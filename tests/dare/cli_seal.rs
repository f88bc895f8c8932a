//! `dare seal` and `dare publish` against a signed time from the future,
//! the way out of one, repairs, damaged tails, files that are not
//! containers, and private keys given where public ones belong.

use std::path::Path;

use crate::support::{LINUX, Sandbox, app, publish, signing_key};

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A container with one release, sealed a minute ago.
fn released() -> (Sandbox, std::path::PathBuf) {
    let sb = Sandbox::new();
    let (key, _) = sb.keygen("k");
    let c = sb.init("app.dare", "k");
    let bin = app(LINUX, "1.0.0");
    publish(&c, &signing_key(&key), "stable", "1.0.0", &[(LINUX, &[("bin/app", &bin)])], now() - 60);
    (sb, c)
}

#[test]
fn a_signed_time_from_the_future_is_refused() {
    let (sb, c) = released();
    let before = std::fs::read(&c).unwrap();
    let millis = (now() * 1000).to_string();
    let line = sb.dare(&["seal", s(&c), "--key", "k", "--time", &millis]).error().to_string();
    assert!(line.contains("ahead of the clock") && line.contains("it looks like milliseconds"), "{line}");
    let line = sb.dare_env(&["seal", s(&c), "--key", "k"], &[("SOURCE_DATE_EPOCH", &millis)]).error().to_string();
    assert!(line.contains("it looks like milliseconds"), "{line}");
    let hour = (now() + 3600).to_string();
    let line = sb.dare(&["seal", s(&c), "--key", "k", "--time", &hour, "--max-skew", "86401"]).error().to_string();
    assert!(line.contains("more than the limit of 86400 s"), "{line}");
    let dir = sb.path("build");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("app"), b"app").unwrap();
    let artifact = format!("{LINUX}={}", dir.display());
    let line = sb
        .dare(&["publish", s(&c), "--key", "k", "--version", "2.0.0", "--artifact", &artifact, "--time", &hour])
        .error()
        .to_string();
    assert!(line.contains("more than the allowed skew of 300 s"), "{line}");
    let line = sb
        .dare(&["init", "other.dare", "--key", "k", "--origin", "example.com/other", "--time", &millis])
        .error()
        .to_string();
    assert!(line.contains("it looks like milliseconds"), "{line}");
    assert_eq!(std::fs::read(&c).unwrap(), before, "nothing was written");
    // Backdating (reproducible builds) is fine, after the last seal.
    sb.dare(&["seal", s(&c), "--key", "k", "--time", &(now() - 30).to_string()]).ok();
}

#[test]
fn a_seal_from_the_future_is_superseded_with_a_flag() {
    let (sb, c) = released();
    // A publisher whose clock ran 20 hours ahead, with the widest skew.
    let future = (now() + 20 * 3600).to_string();
    sb.dare(&["seal", s(&c), "--key", "k", "--time", &future, "--max-skew", "86400"]).ok();
    let line = sb.dare(&["verify", s(&c)]).refused().to_string();
    assert!(line.contains("is from the future") && line.contains("--supersede-future-time"), "{line}");
    let line = sb.dare(&["seal", s(&c), "--key", "k"]).error().to_string();
    assert!(line.contains("--supersede-future-time"), "{line}");
    sb.dare(&["seal", s(&c), "--key", "k", "--supersede-future-time"]).ok();
    sb.dare(&["verify", s(&c)]).ok();
    // And the log goes on.
    sb.dare(&["seal", s(&c), "--key", "k"]).ok();
    sb.dare(&["verify", s(&c)]).ok();
}

#[test]
fn a_cut_off_seal_is_repaired_and_a_client_that_saw_it_goes_on() {
    let (sb, c) = released();
    // A client installs from the container as it is.
    let update = |check: bool| {
        let mut args = vec![
            "update",
            "--from",
            s(&c),
            "--trust",
            "k.pub",
            "--state",
            "state",
            "--install",
            "install",
            "--target",
            LINUX,
            "--json",
        ];
        if check {
            args.push("--check");
        }
        sb.dare(&args)
    };
    update(false).ok();
    let saw = sb.dare(&["ls", s(&c), "--json"]).ok().json();
    // The last seal is cut off mid-frame (a copy or a disk lost the end).
    let len = std::fs::metadata(&c).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&c).unwrap().set_len(len - 30).unwrap();
    // Publish and seal refuse to build on it, saying how to check and repair.
    let line = sb.dare(&["seal", s(&c), "--key", "k"]).error().to_string();
    assert!(line.contains(&format!("dare verify {}", s(&c))) && line.contains("--repair"), "{line}");
    let line = sb.dare(&["verify", s(&c)]).refused().to_string();
    assert!(line.contains("torn tail") && line.contains("--repair"), "{line}");
    let run = sb.dare(&["seal", s(&c), "--key", "k", "--repair"]);
    run.ok();
    assert!(run.stderr.contains("repaired"), "{}", run.stderr);
    sb.dare(&["verify", s(&c)]).ok();
    let repaired = sb.dare(&["ls", s(&c), "--json"]).ok().json();
    assert_eq!(saw["seal"]["size"], repaired["seal"]["size"], "{saw} {repaired}");
    assert_eq!(saw["seal"]["root"], repaired["seal"]["root"], "{saw} {repaired}");
    // The client that saw the lost seal accepts the new one: the same tree.
    let v = update(true).ok().json();
    assert_eq!(v["status"], "up-to-date", "{v}");
    // And the next release extends the same tree (a consistency proof from it).
    let bin = app(LINUX, "1.1.0");
    publish(&c, &signing_key(&sb.path("k")), "stable", "1.1.0", &[(LINUX, &[("bin/app", &bin)])], now());
    let v = update(false).ok().json();
    assert_eq!((v["status"].as_str(), v["version"].as_str()), (Some("updated"), Some("1.1.0")), "{v}");
}

#[test]
fn publish_and_seal_refuse_a_corrupt_tail() {
    let (sb, c) = released();
    let mut bytes = std::fs::read(&c).unwrap();
    let n = bytes.len();
    bytes[n - 40] ^= 0x01;
    std::fs::write(&c, &bytes).unwrap();
    let dir = sb.path("build");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("app"), b"app").unwrap();
    let artifact = format!("{LINUX}={}", dir.display());
    for args in [
        vec!["seal", s(&c), "--key", "k"],
        vec!["publish", s(&c), "--key", "k", "--version", "2.0.0", "--artifact", &artifact],
    ] {
        let line = sb.dare(&args).error().to_string();
        assert!(line.contains("damaged") && line.contains(&format!("dare verify {}", s(&c))), "{line}");
        assert!(line.contains("--repair"), "{line}");
        assert_eq!(std::fs::read(&c).unwrap(), bytes, "nothing was written");
    }
}

#[test]
fn a_file_that_is_not_a_container_says_so() {
    let sb = Sandbox::new();
    sb.keygen("k");
    let zip = sb.path("app.zip");
    std::fs::write(&zip, b"PK\x03\x04\x14\x00 an archive").unwrap();
    let out = sb.path("out");
    for args in [
        vec!["verify", s(&zip)],
        vec!["ls", s(&zip)],
        vec!["extract", s(&zip), "--target", LINUX, "--out", s(&out)],
        vec!["seal", s(&zip), "--key", "k"],
        vec!["seal", s(&zip), "--key", "k", "--repair"],
        vec!["publish", s(&zip), "--key", "k", "--version", "1.0.0", "--artifact", "x86_64-unknown-linux-gnu=k.pub"],
    ] {
        let line = sb.dare(&args).error().to_string();
        assert!(line.contains(&format!("{} is not a dare container", s(&zip))), "{args:?}: {line}");
        assert!(line.contains("starts with `PK\\x03\\x04"), "{args:?}: {line}");
    }
}

#[test]
fn a_private_key_given_to_trust_says_so() {
    let sb = Sandbox::new();
    sb.keygen("k");
    let c = sb.init("app.dare", "k");
    let secret = std::fs::read_to_string(sb.path("k")).unwrap();
    for trust in ["k", secret.trim()] {
        let line = sb.dare(&["verify", s(&c), "--trust", trust]).error().to_string();
        assert!(line.contains("private signing key") && line.contains(".pub"), "{line}");
        assert!(!line.contains(secret.trim()), "the secret is not echoed: {line}");
    }
    sb.dare(&["verify", s(&c), "--trust", "k.pub"]).ok();
}
