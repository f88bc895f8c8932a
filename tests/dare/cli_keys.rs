//! `dare keygen` and `dare init`.

use crate::support::{Sandbox, T0, assert_private, signing_key, verifier};

#[test]
fn keygen_writes_a_private_key_and_its_verifier_key() {
    let sb = Sandbox::new();
    let run = sb.dare(&["keygen", "--out", "release.key"]);
    run.ok();
    let key = sb.path("release.key");
    assert_private(&key);
    let public = std::fs::read_to_string(sb.path("release.key.pub")).unwrap();
    assert_eq!(public.lines().count(), 1, "{public:?}");
    assert!(public.ends_with('\n'));
    let v = verifier(&public);
    // name+hexid+base64, the name taken from the file name.
    let parts: Vec<&str> = public.trim().splitn(3, '+').collect();
    assert_eq!(parts[0], "release");
    assert_eq!(parts[1], format!("{:08x}", v.key_id()));
    assert_eq!(v.name(), "release");
    // It prints the verifier key, and the private key matches it.
    assert_eq!(run.stdout, public);
    assert_eq!(signing_key(&key).verifier(), v);
    assert!(std::fs::read_to_string(&key).unwrap().starts_with("PRIVATE+KEY+release+"));
}

#[test]
fn keygen_refuses_to_overwrite_without_force() {
    let sb = Sandbox::new();
    sb.keygen("k");
    let (key, public) = (std::fs::read(sb.path("k")).unwrap(), std::fs::read(sb.path("k.pub")).unwrap());
    let line = sb.dare(&["keygen", "--out", "k"]).error().to_string();
    assert!(line.contains("already exists") && line.contains("--force"), "{line}");
    assert_eq!(std::fs::read(sb.path("k")).unwrap(), key);
    assert_eq!(std::fs::read(sb.path("k.pub")).unwrap(), public);
    // A leftover verifier key alone is not overwritten either.
    std::fs::write(sb.path("other.pub"), "keep me\n").unwrap();
    sb.dare(&["keygen", "--out", "other"]).error();
    assert_eq!(std::fs::read_to_string(sb.path("other.pub")).unwrap(), "keep me\n");
    assert!(!sb.path("other").exists());
}

#[test]
fn keygen_force_replaces_both_files() {
    let sb = Sandbox::new();
    let (_, first) = sb.keygen("k");
    let run = sb.dare(&["keygen", "--out", "k", "--force"]);
    run.ok();
    let second = run.stdout.trim();
    assert_ne!(first, second, "a new key");
    assert_eq!(std::fs::read_to_string(sb.path("k.pub")).unwrap().trim(), second);
    assert_eq!(signing_key(&sb.path("k")).verifier(), verifier(second));
    assert_private(&sb.path("k"));
}

#[test]
fn keygen_name_sets_the_key_name() {
    let sb = Sandbox::new();
    let run = sb.dare(&["keygen", "--out", "k", "--name", "example.com/app"]);
    run.ok();
    assert!(run.stdout.starts_with("example.com/app+"), "{}", run.stdout);
    assert_eq!(signing_key(&sb.path("k")).name(), "example.com/app");
    // A name the note format cannot carry.
    let line = sb.dare(&["keygen", "--out", "k2", "--name", "a+b"]).error().to_string();
    assert!(line.contains("name"), "{line}");
    assert!(!sb.path("k2").exists() && !sb.path("k2.pub").exists());
}

#[test]
fn init_creates_a_container_that_verifies() {
    let sb = Sandbox::new();
    sb.keygen("k");
    let run = sb.dare(&["init", "app.dare", "--key", "k", "--origin", "example.com/app", "--time", "1700000000"]);
    run.ok();
    let fingerprint = run
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "fingerprint")
        .nth(1)
        .expect("init prints the trust fingerprint")
        .to_string();
    assert_eq!(fingerprint.len(), 64);
    let v = sb.dare(&["verify", "app.dare"]);
    v.ok();
    assert!(v.stdout.contains("app.dare: OK"), "{}", v.stdout);
    assert!(v.stdout.contains(&fingerprint), "{}", v.stdout);
    assert!(v.stdout.contains("example.com/app (app)"), "{}", v.stdout);
    let j = sb.dare(&["verify", "app.dare", "--json"]).json();
    assert_eq!(j["trust_fingerprint"], fingerprint.as_str());
    assert_eq!((j["leaves"].as_u64(), j["seals"].as_u64(), j["time"].as_u64()), (Some(2), Some(1), Some(T0)));
    assert_eq!(j["product"], "app");
}

#[test]
fn init_refuses_an_existing_file() {
    let sb = Sandbox::new();
    sb.keygen("k");
    let c = sb.init("app.dare", "k");
    let before = std::fs::read(&c).unwrap();
    let line = sb.dare(&["init", "app.dare", "--key", "k", "--origin", "example.com/other"]).error().to_string();
    assert!(line.contains("already exists"), "{line}");
    assert_eq!(std::fs::read(&c).unwrap(), before);
    std::fs::write(sb.path("notes.txt"), "mine").unwrap();
    sb.dare(&["init", "notes.txt", "--key", "k", "--origin", "example.com/app"]).error();
    assert_eq!(std::fs::read_to_string(sb.path("notes.txt")).unwrap(), "mine");
}

#[test]
fn init_with_a_threshold_needs_enough_keys() {
    let sb = Sandbox::new();
    let (_, a) = sb.keygen("a");
    let (_, b) = sb.keygen("b");
    let args = ["init", "app.dare", "--origin", "example.com/app", "--threshold", "2", "--time", "1700000000"];
    let line = sb.dare(&[&args[..], &["--key", "a", "--trust", "b.pub"]].concat()).error().to_string();
    assert!(line.contains("needs 2 distinct signing keys; 1 given"), "{line}");
    assert!(!sb.path("app.dare").exists());
    sb.dare(&[&args[..], &["--key", "a", "--key", "b"]].concat()).ok();
    let j = sb.dare(&["verify", "app.dare", "--json"]).json();
    assert_eq!(j["signers"], serde_json::json!([a, b]));
    // --trust as literal text, and a threshold above the number of keys.
    let line = sb
        .dare(&["init", "c.dare", "--origin", "example.com/app", "--key", "a", "--trust", &b, "--threshold", "3"])
        .error()
        .to_string();
    assert!(line.contains("threshold"), "{line}");
    sb.dare(&["init", "d.dare", "--origin", "example.com/app", "--key", "a", "--trust", &b]).ok();
    let v = sb.dare(&["verify", "d.dare"]);
    assert!(v.ok().stdout.contains("1 of 2 key(s)"), "{}", v.stdout);
}

#[test]
fn init_is_deterministic_for_the_same_inputs_and_time() {
    let sb = Sandbox::new();
    sb.keygen("k");
    for name in ["one.dare", "two.dare"] {
        sb.dare(&["init", name, "--key", "k", "--origin", "example.com/app", "--name", "App", "--time", "1700000123"])
            .ok();
    }
    let one = std::fs::read(sb.path("one.dare")).unwrap();
    assert_eq!(one, std::fs::read(sb.path("two.dare")).unwrap());
    let j = sb.dare(&["verify", "one.dare", "--json"]).json();
    assert_eq!((j["time"].as_u64(), j["product"].as_str()), (Some(1_700_000_123), Some("App")));
}

#[test]
fn init_honours_source_date_epoch() {
    let sb = Sandbox::new();
    sb.keygen("k");
    let init = ["init", "app.dare", "--key", "k", "--origin", "example.com/app"];
    sb.dare_env(&init, &[("SOURCE_DATE_EPOCH", "1600000000")]).ok();
    let j = sb.dare(&["verify", "app.dare", "--json"]).json();
    assert_eq!(j["time"].as_u64(), Some(1_600_000_000));
    // --time wins over SOURCE_DATE_EPOCH.
    sb.dare_env(&["init", "b.dare", "--key", "k", "--origin", "x.org/b", "--time", "5"], &[("SOURCE_DATE_EPOCH", "9")])
        .ok();
    assert_eq!(sb.dare(&["verify", "b.dare", "--json"]).json()["time"].as_u64(), Some(5));
    // Two runs with the same SOURCE_DATE_EPOCH are identical.
    sb.dare_env(
        &["init", "c.dare", "--key", "k", "--origin", "example.com/app"],
        &[("SOURCE_DATE_EPOCH", "1600000000")],
    )
    .ok();
    assert_eq!(std::fs::read(sb.path("app.dare")).unwrap(), std::fs::read(sb.path("c.dare")).unwrap());
    let line = sb
        .dare_env(&["init", "d.dare", "--key", "k", "--origin", "example.com/app"], &[("SOURCE_DATE_EPOCH", "soon")])
        .error()
        .to_string();
    assert!(line.contains("SOURCE_DATE_EPOCH"), "{line}");
    assert!(!sb.path("d.dare").exists());
}

#[test]
fn init_reports_a_missing_or_bad_key_in_one_line() {
    let sb = Sandbox::new();
    let line = sb.dare(&["init", "app.dare", "--key", "nope", "--origin", "example.com/app"]).error().to_string();
    assert!(line.contains("nope"), "{line}");
    std::fs::write(sb.path("bad"), "not a key\n").unwrap();
    sb.dare(&["init", "app.dare", "--key", "bad", "--origin", "example.com/app"]).error();
    sb.keygen("k");
    let line = sb.dare(&["init", "app.dare", "--key", "k", "--origin", "has space"]).error().to_string();
    assert!(line.contains("origin"), "{line}");
    assert!(!sb.path("app.dare").exists());
}
