//! `dare update --identity` and `dare extract --identity` on a private
//! channel (FORMAT.md section 13): the identity file as age-keygen writes
//! it opens the build; no identity, or one that is not a recipient, fails
//! with the `identity` kind (exit 1: not an attack); `dare verify` checks
//! the container and the client's replica with no key.
//!
//! The release is written with the container's appender as section 13.3
//! lays it out (an exchange, sealed entries, a sealed index).

use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use dare_container::Appender;
use dare_container::crypt::{self, ContentKey, Identities, Recipients};
use dare_container::hashio::sha256;
use dare_container::header::{Compression, Entry, FileRecord, Sha256Hex};
use dare_container::keys::SigningKey;

use crate::support::{Run, Sandbox, signing_key};

const LINUX: &str = "x86_64-unknown-linux-gnu";
const CHANNEL: &str = "licensed";

/// An identity file as `age-keygen` wrote it (a key made for these tests).
const AGE_KEYGEN_IDENTITY: &str = "# created: 2026-12-05T14:06:51Z
# public key: age1dw0dzdd8s8w7wcsmvf5x7vk65lhxpr2lcj47ynjhyzlkwzxyrgfq8pgfgf
AGE-SECRET-KEY-1YLLCHSTU8AAMY7QGFSN5VDGM0K8Y0ULMYJWS96XZXFX4TKNA23MSSFZ602
";
const AGE_KEYGEN_RECIPIENT: &str = "age1dw0dzdd8s8w7wcsmvf5x7vk65lhxpr2lcj47ynjhyzlkwzxyrgfq8pgfgf";

fn build() -> Vec<(&'static str, Vec<u8>)> {
    let app: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    vec![("bin/app", app), ("share/readme.txt", b"a licensed build\n".repeat(100))]
}

/// Appends `version` of `files` for [`LINUX`] on [`CHANNEL`], sealed to `to`.
fn publish_private(container: &Path, key: &SigningKey, version: &str, files: &[(&str, Vec<u8>)], to: &Recipients) {
    let mut a = Appender::open(container).unwrap();
    let k = ContentKey::generate().unwrap();
    let x = a.append_exchange(CHANNEL, &crypt::wrap_content_key(&k, to).unwrap()).unwrap();
    let mut records = Vec::new();
    for (path, bytes) in files {
        let sha = Sha256Hex(sha256(bytes));
        let pk = k.payload_key(a.next_leaf());
        let sealed = crypt::seal_all(&pk, &zstd::bulk::compress(bytes, 3).unwrap());
        let e = Entry {
            size: bytes.len() as u64,
            sha256: k.keyed_digest(&sha),
            stored_size: sealed.len() as u64,
            stored_sha256: Sha256Hex(sha256(&sealed)),
            compression: Compression::Zstd,
            sealed: Some(x),
        };
        let entry = a.append_entry(e, &mut sealed.as_slice()).unwrap();
        records.push(FileRecord {
            path: (*path).into(),
            mode: 0o644,
            size: bytes.len() as u64,
            sha256: sha,
            entry,
            deltas: Vec::new(),
            key: Some(pk),
        });
    }
    a.append_sealed_index(CHANNEL, LINUX, version, &records, &k, x).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    a.seal(&[key], now - 60).unwrap();
}

fn update(sb: &Sandbox, public: &str, client: &str, identity: Option<&str>) -> Run {
    let (state, install) = (format!("{client}/state"), format!("{client}/install"));
    let mut args = vec!["update", "--from", "app.dare", "--trust", public, "--state", &state, "--install", &install];
    args.extend(["--target", LINUX, "--channel", CHANNEL, "--json"]);
    if let Some(id) = identity {
        args.extend(["--identity", id]);
    }
    sb.dare(&args)
}

/// The live build of a client's install dir (a `current` link on Unix, a
/// pointer file on Windows).
fn live(sb: &Sandbox, client: &str) -> std::path::PathBuf {
    dare_updater::current_dir(&sb.path(&format!("{client}/install"))).expect("a build is installed")
}

fn assert_files(dir: &Path, files: &[(&str, Vec<u8>)]) {
    for (path, bytes) in files {
        assert_eq!(&fs::read(dir.join(path)).unwrap(), bytes, "{path}");
    }
}

#[test]
fn update_and_extract_open_a_private_build_with_an_identity_and_only_with_one() {
    let sb = Sandbox::new();
    let (key, public) = sb.keygen("pub.key");
    let container = sb.init("app.dare", "pub.key");
    let stranger = Identities::generate();
    let member = Identities::generate();
    let to = Recipients::parse([AGE_KEYGEN_RECIPIENT, &member.recipients().to_strings()[0]]).unwrap();
    let files = build();
    publish_private(&container, &signing_key(&key), "1.0.0", &files, &to);
    fs::write(sb.path("age-keygen.txt"), AGE_KEYGEN_IDENTITY).unwrap();
    fs::write(sb.path("stranger.txt"), stranger.to_file_text()).unwrap();
    fs::write(sb.path("public.txt"), AGE_KEYGEN_RECIPIENT).unwrap();

    // Anyone verifies the container: no key needed.
    sb.dare(&["verify", "app.dare"]).ok();

    // No identity, or one that is not a recipient: the identity kind, exit 1, nothing installed.
    for (client, id) in [("none", None), ("stranger", Some("stranger.txt"))] {
        let run = update(&sb, &public, client, id);
        assert_eq!(run.code, 1, "{run:?}");
        let v = run.json();
        assert_eq!((v["status"].as_str(), v["kind"].as_str()), (Some("error"), Some("identity")), "{v}");
        assert!(v["error"].as_str().unwrap().contains("private channel"), "{v}");
        assert!(
            dare_updater::current_dir(&sb.path(&format!("{client}/install"))).is_none(),
            "{client}: nothing installed"
        );
    }
    // A recipient (age1...) given as the identity is refused, naming the mistake.
    let run = update(&sb, &public, "mistake", Some("public.txt"));
    assert_eq!(run.json()["kind"], "identity", "{run:?}");

    // The age-keygen identity installs the build.
    let run = update(&sb, &public, "member", Some("age-keygen.txt"));
    run.ok();
    let v = run.json();
    assert_eq!((v["status"].as_str(), v["version"].as_str()), (Some("updated"), Some("1.0.0")), "{v}");
    assert_files(&live(&sb, "member"), &files);
    // Its replica keeps the listing sealed and verifies with no key.
    sb.dare(&["verify", "member/state/replica.dare"]).ok();

    // dare extract: refused without an identity or with a stranger's, then written with one.
    let line =
        sb.dare(&["extract", "app.dare", "--target", LINUX, "--channel", CHANNEL, "--out", "x1"]).error().to_string();
    assert!(line.contains("private channel") && line.contains("--identity"), "{line}");
    let args = ["extract", "app.dare", "--target", LINUX, "--channel", CHANNEL, "--out", "x2", "--identity"];
    let line = sb.dare(&[&args[..], &["stranger.txt"]].concat()).error().to_string();
    assert!(line.contains("recipients"), "{line}");
    assert!(!sb.path("x2/bin/app").exists());
    sb.dare(&[&args[..], &["age-keygen.txt"]].concat()).ok();
    assert_files(&sb.path("x2"), &files);
}

/// Writes the build of `version` (one changed line in `bin/app` per version, a README that
/// stays) and returns its `--artifact` argument.
fn cli_build(sb: &Sandbox, version: &str) -> (String, Vec<(&'static str, Vec<u8>)>) {
    let dir = sb.path(&format!("build/{version}"));
    fs::create_dir_all(dir.join("bin")).unwrap();
    let app: Vec<u8> = (0..100_000u32)
        .flat_map(|i| if i == 500 { format!("{version}\n") } else { format!("line {i}\n") }.into_bytes())
        .collect();
    let files = vec![("bin/app", app), ("README", b"a licensed build\n".to_vec())];
    for (path, bytes) in &files {
        fs::write(dir.join(path), bytes).unwrap();
    }
    (format!("{LINUX}={}", dir.display()), files)
}

#[test]
fn dare_publish_encrypt_to_then_update_identity_applies_deltas_and_reuses_within_the_channel() {
    let sb = Sandbox::new();
    let (_, public) = sb.keygen("k");
    sb.init("app.dare", "k");
    fs::write(sb.path("id"), AGE_KEYGEN_IDENTITY).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let publish = |version: &str, time: u64| {
        let (artifact, files) = cli_build(&sb, version);
        let t = time.to_string();
        sb.dare(&[
            "publish",
            "app.dare",
            "--key",
            "k",
            "--version",
            version,
            "--channel",
            CHANNEL,
            "--time",
            &t,
            "--artifact",
            &artifact,
            "--encrypt-to",
            AGE_KEYGEN_RECIPIENT,
            "--identity",
            "id",
        ])
        .ok();
        files
    };
    let v1 = publish("1.0.0", now - 120);
    let run = update(&sb, &public, "c", Some("id"));
    run.ok();
    assert_eq!(run.json()["version"], "1.0.0");
    assert_files(&live(&sb, "c"), &v1);

    let v2 = publish("1.0.1", now - 60);
    let run = update(&sb, &public, "c", Some("id"));
    run.ok();
    let v = run.json();
    assert_eq!((v["status"].as_str(), v["version"].as_str()), (Some("updated"), Some("1.0.1")), "{v}");
    assert_files(&live(&sb, "c"), &v2);
    // The README is reused from the installed build, the app arrives as a delta.
    assert_eq!(v["bytes_reused"], 17, "{v}");
    assert!(v["bytes_delta"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["bytes_full"], 0, "{v}");
    sb.dare(&["verify", "c/state/replica.dare"]).ok();
    sb.dare(&["verify", "app.dare"]).ok();
}
