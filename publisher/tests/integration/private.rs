//! Private channels on the publishing side: what a release seals, what a
//! reader without a key can still check, who can open it, and what the
//! publisher reuses.

use std::fs;
use std::path::{Path, PathBuf};

use dare_container::crypt::{ContentKey, Identities, Recipients, unwrap_content_key};
use dare_container::header::{FORMAT_VERSION, FileRecord, Genesis, Index, LeafRef};
use dare_container::keys::{SigningKey, TrustRoot};
use dare_container::verify::{ScanOptions, Stored};
use dare_container::{Appender, scan_file};
use dare_publisher::{Artifact, PublishOptions, PublishReport, publish};
use tempfile::TempDir;

const LINUX: &str = "x86_64-unknown-linux-gnu";
const T0: u64 = 1_764_057_600;

struct Fx {
    dir: TempDir,
    container: PathBuf,
    key: SigningKey,
}

impl Fx {
    fn new() -> Fx {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let container = dir.path().join("app.dare");
        let key = SigningKey::from_seed("release", [1; 32]).expect("a key");
        let trust = TrustRoot::new(vec![key.verifier()], 1).expect("a trust root");
        let genesis =
            Genesis { format: FORMAT_VERSION, origin: "example.com/app".into(), product: "app".into(), trust };
        Appender::create(&container, genesis, &[&key], T0).expect("creating a container");
        Fx { dir, container, key }
    }

    /// A build directory `name` holding `files`.
    fn build(&self, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let root = self.dir.path().join(name);
        for (rel, content) in files {
            let p = root.join(rel);
            fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
            fs::write(&p, content).expect("writing a build file");
        }
        root
    }

    fn publish(
        &self,
        channel: &str,
        version: &str,
        build: &Path,
        to: Option<&Identities>,
        me: Option<&Identities>,
    ) -> PublishReport {
        let art: Artifact = format!("{LINUX}={}", build.display()).parse().expect("an artifact");
        let mut opts = PublishOptions::new(version, vec![art], T0 + 60);
        opts.channel = channel.into();
        if let Some(to) = to {
            opts = opts.encrypt_to(to.recipients());
        }
        if let Some(me) = me {
            opts = opts.identities(me.clone());
        }
        publish(&self.container, &[&self.key], &opts, &mut |_| {}).expect("publishing")
    }

    fn appender(&self) -> Appender {
        Appender::open(&self.container).expect("opening the container")
    }

    /// The live index of `channel`.
    fn live(&self, channel: &str) -> (LeafRef, Index) {
        let a = self.appender();
        let r = a.manifest().release(channel, LINUX).expect("a release").index;
        let (ix, _) = a.read_index(r).expect("the index");
        (r, ix)
    }

    /// The content key of `channel`'s live release, for `who`.
    fn content_key(&self, channel: &str, who: &Identities) -> Result<ContentKey, dare_container::crypt::CryptError> {
        let (_, ix) = self.live(channel);
        let x = ix.sealed.expect("a private index");
        unwrap_content_key(&self.appender().exchange_payload(x).expect("the exchange"), who)
    }

    /// The live listing of `channel`, opened as `who`.
    fn listing(&self, channel: &str, who: &Identities) -> Vec<FileRecord> {
        let key = self.content_key(channel, who).expect("a recipient");
        let (at, _) = self.live(channel);
        let (_, files) = self.appender().read_index_with(at, &|_| Some(key)).expect("the listing opens");
        files
    }
}

/// The recipients of these identities.
fn recipients_of(ids: &[&Identities]) -> Recipients {
    let texts: Vec<String> = ids.iter().flat_map(|i| i.recipients().to_strings()).collect();
    Recipients::parse(texts.iter().map(String::as_str)).expect("recipients")
}

fn sha(bytes: &[u8]) -> String {
    dare_container::hashio::to_hex(&dare_container::hashio::sha256(bytes))
}

#[test]
fn a_private_release_hides_paths_and_digests_and_verifies_without_a_key() {
    let fx = Fx::new();
    let alice = Identities::generate();
    let secret = b"the licensed build, compressible compressible compressible compressible".repeat(50);
    let build = fx.build("b1", &[("bin/secret-tool", &secret), ("share/readme.txt", b"hello")]);
    fx.publish("internal", "1.0.0", &build, Some(&alice), None);

    // No plaintext digest, path or content anywhere in the file.
    let raw = fs::read(&fx.container).expect("reading the container");
    let text = String::from_utf8_lossy(&raw);
    for needle in [sha(&secret), sha(b"hello"), "secret-tool".into(), "readme.txt".into()] {
        assert!(!text.contains(&needle), "{needle} is in the clear");
    }
    assert!(!raw.windows(40).any(|w| w == &secret[..40]), "the content is in the clear");

    // A keyless full verification passes and sees the sealed frames.
    let scan = scan_file(&fx.container, &ScanOptions::full()).expect("verifies without a key");
    assert_eq!(scan.indexes.len(), 1);
    assert!(scan.indexes[0].index.sealed.is_some() && scan.indexes[0].files.is_empty());
    assert!(scan.entries.iter().all(|e| matches!(&e.stored, Stored::Entry(en) if en.sealed.is_some())));

    // The recipient opens the listing and every entry to the original bytes.
    let files = fx.listing("internal", &alice);
    let a = fx.appender();
    for f in &files {
        let want: &[u8] = if f.path == "bin/secret-tool" { &secret } else { b"hello" };
        assert_eq!(f.sha256.to_string(), sha(want));
        let got = a.sealed_entry_bytes(f.entry, f.key.expect("a key"), f.sha256, 1 << 20).expect("opens");
        assert_eq!(got, want);
    }
    drop(a);
    // Anyone else is not a recipient.
    assert!(matches!(
        fx.content_key("internal", &Identities::generate()),
        Err(dare_container::crypt::CryptError::NotARecipient)
    ));
}

#[test]
fn a_flipped_ciphertext_byte_is_refused_by_a_keyless_verify() {
    let fx = Fx::new();
    let alice = Identities::generate();
    let build = fx.build("b1", &[("bin/app", &b"x".repeat(100_000))]);
    fx.publish("internal", "1.0.0", &build, Some(&alice), None);
    let scan = scan_file(&fx.container, &ScanOptions::full()).expect("verifies");
    let e = &scan.entries[0];
    let mut raw = fs::read(&fx.container).expect("reading");
    raw[(e.frame.payload_offset + 3) as usize] ^= 0x40;
    fs::write(&fx.container, &raw).expect("writing");
    let err = scan_file(&fx.container, &ScanOptions::full()).expect_err("a flipped byte");
    assert!(err.to_string().contains("SHA-256"), "{err}");
}

#[test]
fn recipients_change_at_the_next_release_and_a_removed_one_cannot_read_it() {
    let fx = Fx::new();
    let (publisher, alice, bob) = (Identities::generate(), Identities::generate(), Identities::generate());
    let both = recipients_of(&[&publisher, &alice, &bob]);
    let art = |b: &Path| -> Vec<Artifact> { vec![format!("{LINUX}={}", b.display()).parse().expect("artifact")] };
    let b1 = fx.build("b1", &[("bin/app", b"version one"), ("lib/shared", &b"s".repeat(5000))]);
    let mut opts = PublishOptions::new("1.0.0", art(&b1), T0 + 60).encrypt_to(both).identities(publisher.clone());
    opts.channel = "internal".into();
    publish(&fx.container, &[&fx.key], &opts, &mut |_| {}).expect("1.0.0");
    assert_eq!(fx.listing("internal", &bob).len(), 2);

    // Bob is removed: 1.0.1 goes to the publisher and alice only.
    let without_bob = recipients_of(&[&publisher, &alice]);
    let b2 = fx.build("b2", &[("bin/app", b"version two"), ("lib/shared", &b"s".repeat(5000))]);
    let mut opts =
        PublishOptions::new("1.0.1", art(&b2), T0 + 60).encrypt_to(without_bob).identities(publisher.clone());
    opts.channel = "internal".into();
    let report = publish(&fx.container, &[&fx.key], &opts, &mut |_| {}).expect("1.0.1");
    // The publisher reused the unchanged file it could read back.
    assert_eq!(report.targets[LINUX].shared, 1);
    assert!(matches!(fx.content_key("internal", &bob), Err(dare_container::crypt::CryptError::NotARecipient)));
    let files = fx.listing("internal", &alice);
    let app = files.iter().find(|f| f.path == "bin/app").expect("bin/app");
    let got = fx.appender().sealed_entry_bytes(app.entry, app.key.expect("key"), app.sha256, 1 << 20).expect("opens");
    assert_eq!(got, b"version two");
    // The reused entry opens with the key the new listing gives.
    let shared = files.iter().find(|f| f.path == "lib/shared").expect("lib/shared");
    let got = fx
        .appender()
        .sealed_entry_bytes(shared.entry, shared.key.expect("key"), shared.sha256, 1 << 20)
        .expect("opens");
    assert_eq!(got, b"s".repeat(5000));
}

#[test]
fn deltas_and_reuse_stay_inside_the_private_channel() {
    let fx = Fx::new();
    let (me, alice) = (Identities::generate(), Identities::generate());
    let mut big: Vec<u8> = (0..400_000u32).flat_map(|i| (i % 1000).to_le_bytes()).collect();
    let common = b"the same bytes on both channels".repeat(100);
    let b1 = fx.build("b1", &[("bin/app", &big), ("share/common", &common)]);
    // The same content on a plain channel first: a private release must not point at it.
    fx.publish("stable", "1.0.0", &b1, None, None);
    let recipients = recipients_of(&[&me, &alice]);
    let to = |v: &str, b: &Path| {
        let art: Artifact = format!("{LINUX}={}", b.display()).parse().expect("artifact");
        let mut opts = PublishOptions::new(v, vec![art], T0 + 60).encrypt_to(recipients.clone()).identities(me.clone());
        opts.channel = "internal".into();
        publish(&fx.container, &[&fx.key], &opts, &mut |_| {}).expect("a private publish")
    };
    let r1 = to("1.0.0", &b1);
    assert_eq!(r1.targets[LINUX].shared, 0, "a private release stores its own entries");
    big[1000] ^= 1;
    let b2 = fx.build("b2", &[("bin/app", &big), ("share/common", &common)]);
    let r2 = to("1.0.1", &b2);
    assert_eq!(r2.targets[LINUX].shared, 1, "the unchanged file is reused from the private 1.0.0");
    assert_eq!(r2.targets[LINUX].deltas, 1, "the changed one gets a private delta");
    let files = fx.listing("internal", &alice);
    let app = files.iter().find(|f| f.path == "bin/app").expect("bin/app");
    assert_eq!(app.deltas.len(), 1);
    assert!(app.deltas[0].key.is_some());
    // A plain release after them reuses nothing private.
    let plain = fx.build("b3", &[("bin/app", &big)]);
    let r3 = fx.publish("stable", "1.0.1", &plain, None, None);
    assert_eq!(r3.targets[LINUX].shared, 0);
    scan_file(&fx.container, &ScanOptions::full()).expect("the whole container verifies without a key");
    // Every sealed frame's header carries no plaintext digest.
    let scan = scan_file(&fx.container, &ScanOptions::full()).expect("verifies");
    for e in &scan.entries {
        if let Stored::Delta(d) = &e.stored
            && d.sealed.is_some()
        {
            assert_ne!(d.sha256.to_string(), sha(&big));
        }
    }
}

#[test]
fn without_its_identity_the_publisher_stores_a_private_release_whole() {
    let fx = Fx::new();
    let alice = Identities::generate();
    let b1 = fx.build("b1", &[("bin/app", &b"a".repeat(10_000))]);
    fx.publish("internal", "1.0.0", &b1, Some(&alice), None);
    let r2 = fx.publish("internal", "1.0.1", &b1, Some(&alice), None);
    assert_eq!(r2.targets[LINUX].shared, 0);
    assert!(r2.targets[LINUX].stored > 0);
}
