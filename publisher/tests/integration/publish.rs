//! The publisher's public API: publish, heartbeat and extract, on real files
//! in temporary directories.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use dare_container::frame::{Frames, read_header};
use dare_container::header::{Compression, Delta, Entry, FORMAT_VERSION, FileRecord, Genesis, Header};
use dare_container::keys::{SigningKey, TrustRoot};
use dare_container::verify::{IndexRecord, Scan, ScanOptions, Stored, Tail};
use dare_container::{Appender, pending_path, pending_publish, scan_file};
use dare_publisher::{
    Artifact, ExtractOptions, PublishError, PublishOptions, PublishReport, extract, heartbeat, publish,
};
use tempfile::TempDir;

const LINUX: &str = "x86_64-unknown-linux-gnu";
const MAC: &str = "aarch64-apple-darwin";
const WINDOWS: &str = "x86_64-pc-windows-msvc";
const T0: u64 = 1_764_057_600;

fn key(name: &str, seed: u8) -> SigningKey {
    SigningKey::from_seed(name, [seed; 32]).expect("a valid key name")
}

/// A container created with `keys`' verifiers in its trust root.
fn create(path: &Path, keys: &[&SigningKey], threshold: u32) {
    let trust = TrustRoot::new(keys.iter().map(|k| k.verifier()).collect(), threshold).expect("a valid trust root");
    let genesis = Genesis { format: FORMAT_VERSION, origin: "example.com/app".into(), product: "app".into(), trust };
    Appender::create(path, genesis, keys, T0).expect("creating a container");
}

struct Fixture {
    dir: TempDir,
    container: PathBuf,
    key: SigningKey,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let container = dir.path().join("app.dare");
        let key = key("release", 1);
        create(&container, &[&key], 1);
        Fixture { dir, container, key }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A one-file build for `target` with `content`, at `builds/NAME`.
    fn build(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.path(&format!("builds/{name}"));
        write(&p, content, 0o755);
        p
    }

    fn publish(&self, version: &str, artifacts: &[(&str, &Path)]) -> Result<PublishReport, PublishError> {
        self.publish_on("stable", version, artifacts)
    }

    fn publish_on(
        &self,
        channel: &str,
        version: &str,
        artifacts: &[(&str, &Path)],
    ) -> Result<PublishReport, PublishError> {
        let mut opts = PublishOptions::new(version, arts(artifacts), T0 + 60);
        opts.channel = channel.into();
        publish(&self.container, &[&self.key], &opts, &mut |_| {})
    }

    fn scan(&self) -> Scan {
        scan_file(&self.container, &ScanOptions::full()).expect("the container verifies")
    }

    fn extract(&self, target: &str, version: Option<&str>, out: &Path) -> Result<Vec<String>, PublishError> {
        let opts = ExtractOptions::new(target, out).version(version.map(Into::into));
        extract(&self.container, &opts).map(|r| r.files)
    }
}

fn arts(list: &[(&str, &Path)]) -> Vec<Artifact> {
    list.iter().map(|(t, p)| Artifact { target: (*t).to_string(), path: p.to_path_buf() }).collect()
}

fn write(path: &Path, content: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().expect("a parent")).expect("creating directories");
    fs::write(path, content).expect("writing a file");
    dare_container::fsys::set_mode(path, mode).expect("setting the mode");
}

/// A file's permission bits; on Windows, which keeps only a read-only
/// attribute, `0o444` or `0o666`.
fn mode_of(meta: &fs::Metadata) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o777
    }
    #[cfg(windows)]
    {
        if meta.permissions().readonly() { 0o444 } else { 0o666 }
    }
}

/// Text that zstd shrinks well: code-like lines.
fn compressible(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = seed;
    while out.len() < len {
        out.extend_from_slice(
            format!("fn item_{i}(x: u64) -> u64 {{ x.wrapping_mul({}) ^ 0x{:x} }}\n", i % 97, i).as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

/// Bytes zstd cannot shrink: xorshift64* output.
fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        out.extend_from_slice(&s.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Every regular file under `dir`: relative path -> (content, permission bits).
fn tree(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, (Vec<u8>, u32)>) {
        for e in fs::read_dir(dir).expect("reading a directory") {
            let e = e.expect("a directory entry");
            let name = e.file_name().into_string().expect("a UTF-8 name");
            let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let meta = fs::symlink_metadata(e.path()).expect("metadata");
            if meta.is_dir() {
                walk(&e.path(), &rel, out);
            } else {
                assert!(meta.is_file(), "{rel} is not a regular file");
                out.insert(rel, (fs::read(e.path()).expect("reading"), mode_of(&meta)));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, "", &mut out);
    out
}

/// A build directory for `target` with nested directories and an executable.
fn build_dir(root: &Path, target: &str) {
    // The program starts like one (ELF): on Windows, which has no exec bit,
    // that is how the publisher knows it is one. The same bytes for every
    // target, so it is stored once.
    let exe = if target.contains("windows") { "bin/app.exe" } else { "bin/app" };
    let program = [b"\x7fELF".to_vec(), compressible(200_000, 1), incompressible(50_000, 2)].concat();
    write(&root.join(exe), &program, 0o755);
    write(&root.join("bin/helper.sh"), format!("#!/bin/sh\necho {target}\n").as_bytes(), 0o755);
    write(&root.join("share/doc/README.md"), &compressible(30_000, 3), 0o644);
    write(&root.join("share/doc/deep/er/notes.txt"), format!("notes for {target}\n").as_bytes(), 0o644);
    write(&root.join("lib/data.bin"), &incompressible(70_000, target.len() as u64), 0o644);
    write(&root.join("empty.txt"), b"", 0o644);
}

/// Runs `f`, which must fail, and checks the container did not change and
/// no pending file was left. Returns the error's message.
fn refused(fx: &Fixture, f: impl FnOnce() -> Result<PublishReport, PublishError>) -> String {
    let before = fs::read(&fx.container).expect("reading the container");
    let err = match f() {
        Ok(r) => panic!("expected a refusal, but {} was published", r.version),
        Err(e) => e,
    };
    assert_eq!(fs::read(&fx.container).expect("reading the container"), before, "the container changed: {err}");
    assert!(!pending_path(&fx.container).exists(), "a pending file was left behind: {err}");
    err.to_string()
}

fn assert_contains(message: &str, parts: &[&str]) {
    for p in parts {
        assert!(message.contains(p), "message `{message}` does not contain `{p}`");
    }
}

#[test]
fn three_targets_with_directories_and_exec_bits_round_trip() {
    let fx = Fixture::new();
    let targets = [LINUX, MAC, WINDOWS];
    for t in targets {
        build_dir(&fx.path(&format!("builds/{t}")), t);
    }
    let dirs: Vec<PathBuf> = targets.iter().map(|t| fx.path(&format!("builds/{t}"))).collect();
    let list: Vec<(&str, &Path)> = targets.iter().copied().zip(dirs.iter().map(PathBuf::as_path)).collect();
    let report = fx.publish("1.0.0", &list).expect("publishing");
    assert_eq!(report.targets.len(), 3);
    for t in targets {
        assert_eq!(report.targets[t].files, 6, "{t}");
    }
    let scan = fx.scan();
    for (t, dir) in targets.iter().zip(&dirs) {
        let out = fx.path(&format!("out/{t}"));
        let files = fx.extract(t, Some("1.0.0"), &out).expect("extracting");
        assert_eq!(files.len(), 6);
        let want = tree(dir);
        let got = tree(&out);
        assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{t}: file lists differ");
        for (path, (content, mode)) in &want {
            assert!(got[path].0 == *content, "{t} {path}: content differs");
            assert_eq!(got[path].1, *mode, "{t} {path}: mode {:o}, want {mode:o}", got[path].1);
        }
        // The index records the modes too.
        let exe = if t.contains("windows") { "bin/app.exe" } else { "bin/app" };
        assert_eq!(file_of(&scan, t, "1.0.0", exe).mode, 0o755);
        assert_eq!(file_of(&scan, t, "1.0.0", "share/doc/README.md").mode, 0o644);
        // The newest is the default.
        let latest = fx.path(&format!("latest/{t}"));
        fx.extract(t, None, &latest).expect("extracting the newest");
        assert_eq!(tree(&latest), want);
    }
    // Each target's new entries are next to each other, in path order, just
    // before its index: [entries of A][index A][entries of B][index B]...
    let indexes: Vec<&IndexRecord> = scan.indexes.iter().collect();
    assert_eq!(indexes.iter().map(|i| i.index.target.as_str()).collect::<Vec<_>>(), targets);
    let mut seen = std::collections::HashSet::new();
    // Leaves 0 and 1 are the genesis and the empty manifest.
    let mut from = 1;
    for ix in &indexes {
        let mut want = Vec::new();
        for f in &ix.files {
            if seen.insert(f.sha256) {
                want.push(f.sha256);
            }
        }
        let got: Vec<_> =
            scan.entries.iter().filter(|e| e.leaf > from && e.leaf < ix.leaf).map(|e| e.stored.sha256()).collect();
        assert_eq!(got, want, "{}: the entries before its index", ix.index.target);
        assert_eq!(
            scan.entries.iter().filter(|e| e.leaf > from && e.leaf < ix.leaf).count() as u64,
            ix.leaf - from - 1
        );
        from = ix.leaf;
    }
    // The three builds share bin/app (bin/app.exe on Windows), README.md and
    // empty.txt: each is stored once.
    assert_eq!(scan.entries.len(), 3 + 3 * 3, "{:#?}", scan.entries);
    for t in [MAC, WINDOWS] {
        assert_eq!(report.targets[t].shared, 3, "{t}");
    }
}

/// An empty file's entry has 0 stored bytes; it is new all the same.
#[test]
fn an_empty_file_new_to_the_container_is_reported_stored_not_shared() {
    let fx = Fixture::new();
    let dir = fx.build_tree("1", &[("empty", b""), ("app", b"app")]);
    let report = fx.publish("1.0.0", &[(LINUX, &dir)]).expect("publishing");
    let scan = fx.scan();
    assert_eq!(scan.entries.len(), 2, "both contents are new entries");
    let t = &report.targets[LINUX];
    assert_eq!((t.files, t.shared, t.shared_bytes), (2, 0, 0), "TargetReport: {t:?}");
}

#[test]
fn compressible_files_are_stored_zstd_and_incompressible_ones_as_is() {
    let fx = Fixture::new();
    let dir = fx.path("builds/mixed");
    write(&dir.join("text.txt"), &compressible(300_000, 7), 0o644);
    write(&dir.join("random.bin"), &incompressible(300_000, 8), 0o644);
    write(&dir.join("zeros.bin"), &vec![0u8; 1 << 20], 0o644);
    write(&dir.join("tiny"), b"x", 0o644);
    write(&dir.join("empty"), b"", 0o644);
    let report = fx.publish("1.0.0", &[(LINUX, &dir)]).expect("publishing");
    let scan = fx.scan();
    let ix = scan.index("stable", LINUX, None).expect("the index");
    let by_path: BTreeMap<&str, &Entry> = ix.files.iter().map(|f| (f.path.as_str(), entry_of(&scan, f))).collect();
    for (path, want) in [
        ("text.txt", Compression::Zstd),
        ("zeros.bin", Compression::Zstd),
        ("random.bin", Compression::None),
        ("tiny", Compression::None),
        ("empty", Compression::None),
    ] {
        let e = by_path[path];
        assert_eq!(e.compression, want, "{path}");
        match want {
            Compression::Zstd => assert!(e.stored_size * 3 < e.size, "{path}: {} of {}", e.stored_size, e.size),
            Compression::None => {
                assert_eq!((e.stored_size, e.stored_sha256), (e.size, e.sha256), "{path}");
            }
        }
    }
    let t = &report.targets[LINUX];
    assert_eq!(t.size, 300_000 * 2 + (1 << 20) + 1);
    assert_eq!(t.stored, scan.entries.iter().map(|e| e.stored.stored_size()).sum::<u64>());
    let out = fx.path("out");
    fx.extract(LINUX, None, &out).expect("extracting");
    assert_eq!(tree(&out), tree(&dir));
}

#[test]
fn refuses_an_unknown_target_triple() {
    let fx = Fixture::new();
    let app = fx.build("app", b"app");
    let err = format!("x86_64-unknown-linux-gnux={}", app.display()).parse::<Artifact>().expect_err("refused");
    assert_contains(&err.to_string(), &["x86_64-unknown-linux-gnux", "not a known target triple"]);
    // The library refuses it too when an Artifact is built by hand.
    let msg = refused(&fx, || fx.publish("1.0.0", &[("x86_64-unknown-linux-gnux", &app)]));
    assert_contains(&msg, &["x86_64-unknown-linux-gnux", "not a known target triple"]);
    let msg = refused(&fx, || fx.publish("1.0.0", &[("Linux", &app)]));
    assert_contains(&msg, &["`Linux` is not a target triple"]);
}

#[test]
fn refuses_a_version_that_is_not_semver() {
    let fx = Fixture::new();
    let app = fx.build("app", b"app");
    for v in ["1.0", "v1.0.0", "", "1.0.0.0", "latest"] {
        let msg = refused(&fx, || fx.publish(v, &[(LINUX, &app)]));
        assert_contains(&msg, &[&format!("`{v}` is not a semver version")]);
    }
}

#[test]
fn refuses_a_version_not_greater_than_the_published_one() {
    let fx = Fixture::new();
    let app = fx.build("app", b"app 1");
    fx.publish("1.0.0", &[(LINUX, &app), (MAC, &app)]).expect("publishing 1.0.0");
    for v in ["1.0.0", "1.0.0+build2", "0.9.0", "1.0.0-rc.9"] {
        let msg = refused(&fx, || fx.publish(v, &[(LINUX, &app)]));
        let shown = semver::Version::parse(v).expect("semver");
        assert_contains(&msg, &[&format!("version {shown} is not greater than 1.0.0"), LINUX, "stable"]);
    }
    // One target that is not newer refuses the whole release: nothing of
    // the newer target is appended either.
    let msg = refused(&fx, || fx.publish("1.0.0", &[(WINDOWS, &app), (MAC, &app)]));
    assert_contains(&msg, &["not greater than 1.0.0", MAC]);
    fx.publish("1.0.1", &[(LINUX, &app)]).expect("a greater version");
}

#[test]
fn a_pre_release_comes_before_its_release() {
    let fx = Fixture::new();
    let app = fx.build("app", b"app");
    fx.publish("1.0.0-rc.1", &[(LINUX, &app)]).expect("publishing rc.1");
    fx.publish("1.0.0-rc.2", &[(LINUX, &app)]).expect("publishing rc.2");
    fx.publish("1.0.0", &[(LINUX, &app)]).expect("the release after its candidates");
    let msg = refused(&fx, || fx.publish("1.0.0-rc.3", &[(LINUX, &app)]));
    assert_contains(&msg, &["version 1.0.0-rc.3 is not greater than 1.0.0"]);
    let scan = fx.scan();
    assert_eq!(scan.manifest.release("stable", LINUX).expect("listed").version, "1.0.0");
    // Three builds of the same file: three indexes, one entry.
    assert_eq!(scan.indexes.len(), 3);
    assert_eq!(scan.entries.len(), 1);
}

#[test]
fn refuses_a_missing_file() {
    let fx = Fixture::new();
    let app = fx.build("app", b"app");
    let missing = fx.path("builds/nope");
    let msg = refused(&fx, || fx.publish("1.0.0", &[(LINUX, &app), (MAC, &missing)]));
    let not_found = if cfg!(windows) { "(os error 2)" } else { "No such file" };
    assert_contains(&msg, &[&missing.display().to_string(), not_found]);
}

#[cfg(unix)] // Making a symlink needs a privilege on Windows.
#[test]
fn refuses_a_symlink_inside_a_directory_and_names_it() {
    let fx = Fixture::new();
    let dir = fx.path("builds/linked");
    write(&dir.join("bin/app"), b"app", 0o755);
    std::os::unix::fs::symlink("app", dir.join("bin/app-latest")).expect("a symlink");
    let msg = refused(&fx, || fx.publish("1.0.0", &[(LINUX, &dir)]));
    assert_contains(&msg, &["bin/app-latest -> app", "symlinks are not published", "cp -L"]);
    // A symlink given as the artifact itself, too.
    let link = fx.path("builds/link");
    std::os::unix::fs::symlink(dir.join("bin/app"), &link).expect("a symlink");
    let msg = refused(&fx, || fx.publish("1.0.0", &[(LINUX, &link)]));
    assert_contains(&msg, &[&link.display().to_string(), "symlinks are not published"]);
}

#[test]
fn refuses_a_target_given_twice() {
    let fx = Fixture::new();
    let bin = fx.build("bin", b"a file named bin");
    let dir = fx.path("builds/dir");
    write(&dir.join("bin/tool"), b"tool", 0o755);
    let msg = refused(&fx, || fx.publish("1.0.0", &[(LINUX, &bin), (LINUX, &dir)]));
    assert_contains(&msg, &[&format!("the target {LINUX} is given twice"), &bin.display().to_string()]);
    // Different targets may use the same paths.
    fx.publish("1.0.0", &[(LINUX, &bin), (MAC, &dir)]).expect("publishing");
}

#[test]
fn refuses_names_that_collide_on_macos_and_windows() {
    let fx = Fixture::new();
    // Differing only by case. (Windows folds case: there these two
    // fixtures, and the file-or-directory one below, cannot be made.)
    #[cfg(unix)]
    {
        let dir = fx.path("builds/case");
        write(&dir.join("bin/App"), b"one", 0o755);
        write(&dir.join("bin/app"), b"two", 0o755);
        let msg = refused(&fx, || fx.publish("1.0.0", &[(LINUX, &dir)]));
        assert_contains(&msg, &["`bin/App` and `bin/app` are the same file on macOS and Windows"]);
    }
    // Equal after Unicode normalization: e + combining acute, and é.
    let dir = fx.path("builds/nfc");
    write(&dir.join("caf\u{65}\u{301}.txt"), b"decomposed", 0o644);
    write(&dir.join("caf\u{e9}.txt"), b"composed", 0o644);
    let msg = refused(&fx, || fx.publish("1.0.0", &[(LINUX, &dir)]));
    assert_contains(&msg, &["caf\u{65}\u{301}.txt", "caf\u{e9}.txt", "Unicode normalization"]);
    // A file whose name, folded, is another file's directory.
    #[cfg(unix)]
    {
        let dir = fx.path("builds/dirfile");
        write(&dir.join("Lib"), b"a file", 0o644);
        write(&dir.join("lib/x.so"), b"a library", 0o644);
        let msg = refused(&fx, || fx.publish("1.0.0", &[(LINUX, &dir)]));
        assert_contains(&msg, &["`Lib` is a file, but `lib/x.so` needs a directory of that name"]);
    }
    assert!(fx.scan().manifest.release("stable", LINUX).is_none(), "nothing was published");
}

#[test]
fn refuses_a_triple_not_in_canonical_form() {
    let fx = Fixture::new();
    let bin = fx.build("app", b"app");
    let msg = refused(&fx, || fx.publish("1.0.0", &[("x86_64-linux-gnu", &bin)]));
    assert_contains(&msg, &["`x86_64-linux-gnu`", "did you mean `x86_64-unknown-linux-gnu`"]);
    // Triples rustc knows that target-lexicon does not are accepted.
    fx.publish("1.0.0", &[("arm64e-apple-darwin", &bin), ("arm64ec-pc-windows-msvc", &bin)]).expect("publishing");
}

#[test]
fn refuses_an_empty_directory() {
    let fx = Fixture::new();
    let dir = fx.path("builds/empty");
    fs::create_dir_all(dir.join("only/subdirs")).expect("directories");
    let app = fx.build("app", b"app");
    let msg = refused(&fx, || fx.publish("1.0.0", &[(LINUX, &app), (MAC, &dir)]));
    assert_contains(&msg, &[&dir.display().to_string(), "the directory has no files"]);
}

#[test]
fn refuses_a_key_not_in_the_trust_root() {
    let fx = Fixture::new();
    let app = fx.build("app", b"app");
    let stranger = key("stranger", 9);
    let opts = PublishOptions::new("1.0.0", arts(&[(LINUX, &app)]), T0 + 60);
    let msg = refused(&fx, || publish(&fx.container, &[&stranger], &opts, &mut |_| {}));
    assert_contains(&msg, &[&format!("key {} is not in the container's trust root", stranger.verifier())]);
    // Alongside a trusted key, too.
    let msg = refused(&fx, || publish(&fx.container, &[&fx.key, &stranger], &opts, &mut |_| {}));
    assert_contains(&msg, &["stranger", "is not in the container's trust root"]);
    let msg = refused(&fx, || publish(&fx.container, &[], &opts, &mut |_| {}));
    assert_contains(&msg, &["no --key given"]);
}

#[test]
fn threshold_two_needs_two_distinct_keys() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let container = dir.path().join("app.dare");
    let (a, b) = (key("alice", 1), key("bob", 2));
    create(&container, &[&a, &b], 2);
    let fx = Fixture { dir, container, key: a.clone() };
    let app = fx.build("app", b"app");
    let opts = PublishOptions::new("1.0.0", arts(&[(LINUX, &app)]), T0 + 60);
    for keys in [vec![&a], vec![&a, &a]] {
        let msg = refused(&fx, || publish(&fx.container, &keys, &opts, &mut |_| {}));
        assert_contains(&msg, &["the trust root needs 2 signing keys", "1 given"]);
    }
    let msg = refused(&fx, || heartbeat(&fx.container, &[&b], T0 + 60).map(|_| unreachable_report()));
    assert_contains(&msg, &["the trust root needs 2 signing keys"]);
    publish(&fx.container, &[&a, &b], &opts, &mut |_| {}).expect("publishing with both keys");
    let scan = fx.scan();
    assert_eq!(scan.last_seal.signers.len(), 2);
}

fn unreachable_report() -> PublishReport {
    panic!("expected a refusal, but the heartbeat succeeded")
}

/// The offset of the first byte of `needle` in the container at or after `from`.
fn find(bytes: &[u8], needle: &[u8], from: usize) -> usize {
    from + bytes[from..].windows(needle.len()).position(|w| w == needle).expect("the needle is in the container")
}

/// The index of the frame at `offset` among all frames of `bytes`.
fn frame_index(bytes: &[u8], offset: u64) -> usize {
    let mut frames = Frames::new(bytes, 0, bytes.len() as u64);
    Iterator::position(&mut frames, |f| f.expect("a frame").offset == offset).expect("a frame starts there")
}

#[test]
fn a_damaged_sealed_frame_is_found_by_verify_and_extract_while_publish_reads_only_the_tail() {
    let fx = Fixture::new();
    let app = fx.build("app", b"version one of the app");
    fx.publish("1.0.0", &[(LINUX, &app)]).expect("publishing 1.0.0");
    fx.publish("1.1.0", &[(LINUX, &app)]).expect("publishing 1.1.0");
    let good = fs::read(&fx.container).expect("reading");
    let entry = fx.scan().entries[0].frame;
    let i = frame_index(&good, entry.offset);
    // `{"kind"` -> `{"jind"` in the entry's header, which two seals cover.
    let mut bad = good.clone();
    assert_eq!(bad[entry.header_offset as usize + 2], b'k');
    bad[entry.header_offset as usize + 2] ^= 0x01;
    fs::write(&fx.container, &bad).expect("writing");
    let err = scan_file(&fx.container, &ScanOptions::default()).expect_err("the damage is found");
    assert_contains(&err.to_string(), &[&format!("frame {i} at byte {}: header", entry.offset)]);
    let out = fx.path("out");
    let err = fx.extract(LINUX, Some("1.0.0"), &out).expect_err("extract verifies first");
    assert_contains(&err.to_string(), &[&format!("frame {i} at byte {}", entry.offset)]);
    assert!(!out.exists() || is_empty_dir(&out), "nothing is written");
    // Appending reads the genesis and the tail only (the live index, the
    // map, the last seal): the damage in the middle does not stop a release
    // that does not need the damaged frame, and is still there afterwards.
    let report = fx.publish("2.0.0", &[(LINUX, &app)]).expect("publishing reads only the tail");
    assert_eq!(report.targets[LINUX].stored, 0, "the content is shared");
    heartbeat(&fx.container, &[&fx.key], T0 + 120).expect("a heartbeat reads only the tail");
    let now = fs::read(&fx.container).expect("reading");
    assert_eq!(&now[..bad.len()], &bad[..], "publishing only appends");
    let err = scan_file(&fx.container, &ScanOptions::default()).expect_err("the damage is still found");
    assert_contains(&err.to_string(), &[&format!("frame {i} at byte {}: header", entry.offset)]);

    // A flipped payload byte is caught by extract (which checks digests).
    fs::write(&fx.container, &good).expect("writing");
    let mut bad = good.clone();
    let at = find(&good, b"version one of the app", 0);
    bad[at] ^= 0x20;
    fs::write(&fx.container, &bad).expect("writing");
    let err = fx.extract(LINUX, Some("1.0.0"), &out).expect_err("a bad payload");
    assert!(matches!(err, PublishError::Integrity(_)), "{err}");
    assert_eq!(fs::read_dir(&out).map(|d| d.count()).unwrap_or(0), 0, "nothing is written");
    let err = scan_file(&fx.container, &ScanOptions::full()).expect_err("a bad payload");
    assert_contains(&err.to_string(), &[&format!("frame {i} at byte {}: payload", entry.offset)]);
}

#[test]
fn refuses_a_container_whose_last_seal_is_damaged() {
    let fx = Fixture::new();
    let app = fx.build("app", b"app");
    fx.publish("1.0.0", &[(LINUX, &app)]).expect("publishing 1.0.0");
    let good = fs::read(&fx.container).expect("reading");
    // The opening brace of the last seal's header: its JSON no longer parses.
    let at = good.windows(14).rposition(|w| w == b"{\"kind\":\"seal\"").expect("a seal header");
    let mut bad = good.clone();
    bad[at] = b'[';
    fs::write(&fx.container, &bad).expect("writing");
    // A reader sees bytes after the previous seal with no pending file to say
    // a publish was interrupted: `dare verify` fails on this container.
    let scan = scan_file(&fx.container, &ScanOptions::default()).expect("the sealed part verifies");
    assert!(matches!(scan.tail, Tail::Torn { .. }), "{:?}", scan.tail);
    assert_eq!(pending_publish(&fx.container), None);
    // So the publisher must refuse too, not cut off release 1.0.0.
    refused(&fx, || fx.publish("2.0.0", &[(LINUX, &app)]));
    refused(&fx, || heartbeat(&fx.container, &[&fx.key], T0 + 120).map(|_| unreachable_report()));
}

#[test]
fn the_same_inputs_key_and_time_give_byte_identical_containers() {
    let mut containers = Vec::new();
    for _ in 0..2 {
        let fx = Fixture::new();
        for t in [LINUX, MAC, WINDOWS] {
            build_dir(&fx.path(&format!("builds/{t}")), t);
        }
        let l = fx.path(&format!("builds/{LINUX}"));
        let m = fx.path(&format!("builds/{MAC}"));
        let w = fx.path(&format!("builds/{WINDOWS}"));
        fx.publish("1.0.0", &[(LINUX, &l), (MAC, &m), (WINDOWS, &w)]).expect("publishing");
        fx.publish_on("beta", "1.1.0-beta.1", &[(LINUX, &l)]).expect("publishing beta");
        // A changed file: its delta is made the same way every time too.
        let exe = l.join("bin/app");
        write(&exe, &patched(&fs::read(&exe).expect("reading"), 1000, 100, 9), 0o755);
        let report = fx.publish("1.1.0", &[(LINUX, &l), (MAC, &m)]).expect("publishing 1.1.0");
        assert_eq!(report.targets[LINUX].deltas, 1);
        heartbeat(&fx.container, &[&fx.key], T0 + 3600).expect("a heartbeat");
        containers.push(fs::read(&fx.container).expect("reading"));
    }
    assert!(containers[0] == containers[1], "two builds of the same release differ");
    // The number of zstd workers does not change the bytes, also for a file
    // big enough to be split into several zstd jobs.
    let src = tempfile::tempdir().expect("a temporary directory");
    let app = src.path().join("app");
    let text = compressible(1 << 20, 1);
    let blocks: Vec<Vec<u8>> =
        (0..24).map(|i| if i % 3 == 2 { incompressible(1 << 20, i) } else { text.clone() }).collect();
    write(&app, &blocks.concat(), 0o755);
    let mut by_workers = Vec::new();
    for workers in [1, 2, 4] {
        let fx = Fixture::new();
        let mut opts = PublishOptions::new("1.0.0", arts(&[(LINUX, &app)]), T0 + 60);
        opts.workers = workers;
        publish(&fx.container, &[&fx.key], &opts, &mut |_| {}).expect("publishing");
        by_workers.push(fs::read(&fx.container).expect("reading"));
    }
    assert!(by_workers.windows(2).all(|w| w[0] == w[1]), "the worker count changed the container");
}

#[test]
fn channels_are_independent() {
    let fx = Fixture::new();
    let app = fx.build("app", b"app");
    fx.publish_on("beta", "2.0.0-beta.1", &[(LINUX, &app)]).expect("beta 2.0.0-beta.1");
    fx.publish_on("stable", "1.0.0", &[(LINUX, &app)]).expect("stable 1.0.0 below beta's version");
    fx.publish_on("stable", "1.1.0", &[(LINUX, &app)]).expect("stable 1.1.0");
    let msg = refused(&fx, || fx.publish_on("beta", "1.5.0", &[(LINUX, &app)]));
    assert_contains(&msg, &["version 1.5.0 is not greater than 2.0.0-beta.1", "beta"]);
    fx.publish_on("beta", "2.0.0-beta.2", &[(LINUX, &app)]).expect("beta 2.0.0-beta.2");
    let scan = fx.scan();
    assert_eq!(scan.manifest.release("stable", LINUX).expect("stable").version, "1.1.0");
    assert_eq!(scan.manifest.release("beta", LINUX).expect("beta").version, "2.0.0-beta.2");
    let msg = refused(&fx, || fx.publish_on("Beta!", "3.0.0", &[(LINUX, &app)]));
    assert_contains(&msg, &["`Beta!`"]);
}

#[test]
fn a_heartbeat_adds_a_seal_and_nothing_else() {
    let fx = Fixture::new();
    let app = fx.build("app", b"app");
    fx.publish("1.0.0", &[(LINUX, &app)]).expect("publishing");
    let before = fx.scan();
    let old = fs::read(&fx.container).expect("reading");
    let (summary, cut) = heartbeat(&fx.container, &[&fx.key], T0 + 7 * 86_400).expect("a heartbeat");
    assert!(cut.is_none());
    let after = fx.scan();
    assert_eq!(after.seals, before.seals + 1);
    assert_eq!(after.size(), before.size());
    assert_eq!(after.last_seal.checkpoint.root, before.last_seal.checkpoint.root);
    assert_eq!(after.last_seal.seal.time, T0 + 7 * 86_400);
    assert_eq!(summary.time, T0 + 7 * 86_400);
    assert_eq!(after.entries.len(), before.entries.len());
    let new = fs::read(&fx.container).expect("reading");
    assert_eq!(&new[..old.len()], &old[..], "a heartbeat only appends");
    assert_eq!(summary.appended, (new.len() - old.len()) as u64);
    // A heartbeat may not go back in time.
    let msg = refused(&fx, || heartbeat(&fx.container, &[&fx.key], T0).map(|_| unreachable_report()));
    assert_contains(&msg, &["is before the previous seal's"]);
}

/// A fixture with one release for LINUX: `app.txt` and `bin/tool`.
fn extract_fixture() -> Fixture {
    let fx = Fixture::new();
    let dir = fx.path("builds/linux");
    write(&dir.join("app.txt"), &compressible(10_000, 1), 0o644);
    write(&dir.join("bin/tool"), b"#!/bin/sh\necho tool\n", 0o755);
    fx.publish("1.0.0", &[(LINUX, &dir)]).expect("publishing");
    fx
}

fn is_empty_dir(p: &Path) -> bool {
    fs::read_dir(p).expect("reading a directory").next().is_none()
}

#[cfg(unix)] // Making a symlink needs a privilege on Windows.
#[test]
fn extract_refuses_to_write_through_a_symlink_in_the_output() {
    let fx = extract_fixture();
    let elsewhere = tempfile::tempdir().expect("a temporary directory");
    let out = fx.path("out");
    fs::create_dir(&out).expect("the output directory");
    std::os::unix::fs::symlink(elsewhere.path(), out.join("bin")).expect("a symlink");
    let err = fx.extract(LINUX, None, &out).expect_err("refused");
    assert_contains(&err.to_string(), &["bin", "is a symlink"]);
    assert!(is_empty_dir(elsewhere.path()), "something was written through the symlink");
    // Nothing is half-written: the file that would have been fine is not there either.
    let left: Vec<_> = fs::read_dir(&out).expect("reading").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("bin")], "extract left {left:?}");
}

#[test]
fn extract_refuses_a_directory_where_a_file_goes() {
    let fx = extract_fixture();
    let out = fx.path("out");
    fs::create_dir_all(out.join("bin/tool")).expect("a directory in the way");
    let err = fx.extract(LINUX, None, &out).expect_err("refused");
    // The path on disk, with the platform's separator.
    let on_disk = Path::new("bin").join("tool").display().to_string();
    assert_contains(&err.to_string(), &[&on_disk, "is a directory"]);
    assert!(is_empty_dir(&out.join("bin/tool")));
    assert!(!out.join("app.txt").exists(), "extract wrote app.txt before refusing");
    // A file where a directory goes.
    let out2 = fx.path("out2");
    write(&out2.join("bin"), b"a file", 0o644);
    let err = fx.extract(LINUX, None, &out2).expect_err("refused");
    assert_contains(&err.to_string(), &["bin", "is not a directory"]);
    assert_eq!(fs::read(out2.join("bin")).expect("reading"), b"a file");
}

#[test]
fn extract_into_a_fresh_directory_writes_the_build() {
    let fx = extract_fixture();
    let out = fx.path("fresh/nested/out");
    let files = fx.extract(LINUX, Some("1.0.0"), &out).expect("extracting");
    assert_eq!(files, vec!["app.txt".to_string(), "bin/tool".to_string()]);
    assert_eq!(tree(&out), tree(&fx.path("builds/linux")));
    // No staging directory is left behind.
    let names: Vec<_> = fs::read_dir(&out).expect("reading").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn extract_of_a_release_that_is_not_there_says_what_is() {
    let fx = extract_fixture();
    let app = fx.build("app", b"app");
    fx.publish("1.1.0", &[(LINUX, &app)]).expect("publishing 1.1.0");
    let out = fx.path("out");
    let err = fx.extract(LINUX, Some("2.0.0"), &out).expect_err("not there");
    assert!(matches!(err, PublishError::NotFound(_)), "{err:?}");
    assert_contains(&err.to_string(), &["no release 2.0.0 for", LINUX, "published versions: 1.0.0, 1.1.0"]);
    let err = fx.extract(MAC, None, &out).expect_err("not there");
    assert!(matches!(err, PublishError::NotFound(_)), "{err:?}");
    assert_contains(&err.to_string(), &["no release for aarch64-apple-darwin", &format!("stable/{LINUX}")]);
    let err = fx.extract(MAC, Some("1.0.0"), &out).expect_err("not there");
    assert_contains(&err.to_string(), &["no release 1.0.0 for aarch64-apple-darwin", &format!("stable/{LINUX}")]);
    assert!(!out.exists(), "a refused extract created the output directory");
}

#[test]
fn a_publish_after_a_torn_tail_cuts_it() {
    let fx = Fixture::new();
    let app = fx.build("app", b"app");
    fx.publish("1.0.0", &[(LINUX, &app)]).expect("publishing");
    let sealed = fs::read(&fx.container).expect("reading");
    // An interrupted publish: a pending file and half a frame.
    fs::write(pending_path(&fx.container), format!("{{\"sealed_len\":{}}}\n", sealed.len())).expect("pending");
    let mut torn = sealed.clone();
    torn.extend_from_slice(&[0xF6, 0, 0, 1, 0, b'{']);
    fs::write(&fx.container, &torn).expect("writing");
    let report = fx.publish("1.1.0", &[(LINUX, &app)]).expect("publishing after a torn tail");
    let cut = report.cut.expect("the torn tail was cut");
    assert_eq!((cut.offset, cut.len), (sealed.len() as u64, 6));
    assert!(!pending_path(&fx.container).exists());
    let now = fs::read(&fx.container).expect("reading");
    assert_eq!(&now[..sealed.len()], &sealed[..]);
    assert_eq!(fx.scan().manifest.release("stable", LINUX).expect("listed").version, "1.1.0");
}

/// The container after publishing `version` for `target` with its seal torn
/// off (the manifest frame complete), and a pending file, as a crash between
/// the manifest and the seal leaves it. Returns the sealed length before.
fn tear_off_the_seal(fx: &Fixture, version: &str, target: &str, app: &Path) -> usize {
    let before = fs::read(&fx.container).expect("reading").len();
    fx.publish(version, &[(target, app)]).expect("publishing");
    let full = fs::read(&fx.container).expect("reading");
    let last = dare_container::frame::FramesBack::new(&full[..], 0, full.len() as u64)
        .next()
        .expect("a frame")
        .expect("a frame");
    let header = dare_container::frame::read_header(&full[..], &last).expect("a header");
    assert!(header.starts_with(b"{\"kind\":\"seal\""));
    fs::write(&fx.container, &full[..last.offset as usize]).expect("writing");
    fs::write(pending_path(&fx.container), format!("{{\"sealed_len\":{before}}}\n")).expect("writing");
    before
}

#[test]
fn a_scan_reports_the_sealed_manifest_not_one_in_a_torn_tail() {
    let fx = Fixture::new();
    let app = fx.build("app", b"app");
    fx.publish("1.0.0", &[(LINUX, &app)]).expect("publishing 1.0.0");
    let sealed = fx.scan().manifest;
    tear_off_the_seal(&fx, "2.0.0", LINUX, &app);
    let scan = fx.scan();
    assert!(matches!(scan.tail, Tail::Torn { .. }));
    assert_eq!(scan.manifest, sealed, "the manifest of the torn tail stands in for the sealed one");
}

#[test]
fn a_publish_after_a_torn_tail_with_a_whole_manifest_builds_on_the_sealed_one() {
    let fx = Fixture::new();
    let app = fx.build("app", b"app");
    fx.publish("1.0.0", &[(LINUX, &app)]).expect("publishing 1.0.0");
    // The torn release is for another target.
    let sealed_len = tear_off_the_seal(&fx, "2.0.0", MAC, &app);
    let report = fx.publish("1.1.0", &[(LINUX, &app)]).expect("publishing after the crash");
    assert_eq!(report.cut.expect("a cut").offset, sealed_len as u64);
    let scan = fx.scan();
    assert_eq!(scan.manifest.release("stable", LINUX).expect("linux").version, "1.1.0");
    assert!(scan.manifest.release("stable", MAC).is_none(), "the manifest lists the torn-off release");
    // The same version as the torn one publishes again.
    let sealed_len = tear_off_the_seal(&fx, "2.0.0", LINUX, &app);
    let report = fx.publish("2.0.0", &[(LINUX, &app)]).expect("publishing the torn version again");
    assert_eq!(report.cut.expect("a cut").offset, sealed_len as u64);
    assert_eq!(fx.scan().manifest.release("stable", LINUX).expect("linux").version, "2.0.0");
}

#[test]
fn a_heartbeat_after_a_torn_tail_with_a_whole_manifest_seals_the_sealed_one() {
    let fx = Fixture::new();
    let app = fx.build("app", b"app");
    fx.publish("1.0.0", &[(LINUX, &app)]).expect("publishing 1.0.0");
    let sealed_len = tear_off_the_seal(&fx, "2.0.0", LINUX, &app);
    let (summary, cut) = heartbeat(&fx.container, &[&fx.key], T0 + 120).expect("a heartbeat");
    assert_eq!(cut.expect("a cut").offset, sealed_len as u64);
    // The tree of 1.0.0: genesis, empty manifest, entry, index, manifest.
    assert_eq!(summary.size, 5);
    let scan = fx.scan();
    assert_eq!(scan.manifest.release("stable", LINUX).expect("linux").version, "1.0.0");
    assert_eq!(scan.last_seal.seal.time, T0 + 120);
}

#[test]
fn extract_after_a_torn_tail_with_a_whole_manifest_takes_the_sealed_release() {
    let fx = Fixture::new();
    let app = fx.build("app", b"app 1.0.0");
    fx.publish("1.0.0", &[(LINUX, &app)]).expect("publishing 1.0.0");
    let app2 = fx.build("app2", b"app 2.0.0");
    tear_off_the_seal(&fx, "2.0.0", LINUX, &app2);
    let out = fx.path("out");
    let opts = ExtractOptions::new(LINUX, out.clone());
    let report = extract(&fx.container, &opts).expect("extracting the newest sealed release");
    assert_eq!(report.version, "1.0.0");
    assert_eq!(fs::read(out.join("app")).expect("reading"), b"app 1.0.0");
}

#[test]
fn the_same_key_given_twice_signs_once() {
    let fx = Fixture::new();
    let app = fx.build("app", b"app");
    let opts = PublishOptions::new("1.0.0", arts(&[(LINUX, &app)]), T0 + 60);
    publish(&fx.container, &[&fx.key, &fx.key], &opts, &mut |_| {}).expect("publishing");
    let scan = fx.scan();
    assert_eq!(scan.last_seal.signers, vec![fx.key.verifier()]);
    heartbeat(&fx.container, &[&fx.key, &fx.key], T0 + 120).expect("a heartbeat");
    let scan = fx.scan();
    assert_eq!(scan.last_seal.seal.checkpoint.matches("\n\u{2014} ").count(), 1, "{}", scan.last_seal.seal.checkpoint);
}

#[test]
fn refuses_an_artifact_directory_that_holds_the_container() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let dist = dir.path().join("dist");
    fs::create_dir(&dist).expect("a directory");
    let container = dist.join("app.dare");
    let key = key("release", 1);
    create(&container, &[&key], 1);
    write(&dist.join("app"), b"app", 0o755);
    let fx = Fixture { dir, container, key };
    let msg = refused(&fx, || fx.publish("1.0.0", &[(LINUX, &dist)]));
    assert_contains(&msg, &["app.dare: the container itself", "inside the artifact"]);
    // Named through another path, too.
    let other = fx.path("dist/../dist/app.dare");
    let msg = refused(&fx, || fx.publish("1.0.0", &[(LINUX, &other)]));
    assert_contains(&msg, &["the container itself"]);
}

#[test]
fn refuses_while_another_publisher_holds_the_lock() {
    let fx = Fixture::new();
    let app = fx.build("app", b"app");
    let holder = Appender::open(&fx.container).expect("taking the lock");
    let msg = refused(&fx, || fx.publish("1.0.0", &[(LINUX, &app)]));
    assert_contains(&msg, &["is locked by another publisher"]);
    let msg = refused(&fx, || heartbeat(&fx.container, &[&fx.key], T0 + 60).map(|_| unreachable_report()));
    assert_contains(&msg, &["is locked by another publisher"]);
    drop(holder);
    fx.publish("1.0.0", &[(LINUX, &app)]).expect("publishing once the lock is free");
}

// ---------------------------------------------------------------------------
// Format 2: content stored once, deltas, and appends that read only the tail.
// ---------------------------------------------------------------------------

/// The file at `path` of `version` of `target` on stable.
#[track_caller]
fn file_of<'s>(scan: &'s Scan, target: &str, version: &str, path: &str) -> &'s FileRecord {
    let ix = scan.index("stable", target, Some(version)).unwrap_or_else(|| panic!("no {target} {version}"));
    ix.files.iter().find(|f| f.path == path).unwrap_or_else(|| panic!("no {path} in {target} {version}"))
}

/// The whole entry holding a file's content.
#[track_caller]
fn entry_of<'s>(scan: &'s Scan, f: &FileRecord) -> &'s Entry {
    match scan.entry(f.entry.leaf).map(|r| &r.stored) {
        Some(Stored::Entry(e)) => e,
        other => panic!("{}: leaf {} is {other:?}, not an entry", f.path, f.entry.leaf),
    }
}

/// The deltas a file's record names, in its order.
#[track_caller]
fn deltas_of<'s>(scan: &'s Scan, f: &FileRecord) -> Vec<&'s Delta> {
    f.deltas
        .iter()
        .map(|d| match scan.entry(d.leaf).map(|r| &r.stored) {
            Some(Stored::Delta(x)) => {
                assert_eq!((x.base, x.sha256), (d.base, f.sha256), "{}: the delta at leaf {}", f.path, d.leaf);
                x
            }
            other => panic!("{}: leaf {} is {other:?}, not a delta", f.path, d.leaf),
        })
        .collect()
}

/// The kind of every frame from byte `from` on.
fn kinds_from(bytes: &[u8], from: usize) -> Vec<&'static str> {
    Frames::new(bytes, from as u64, bytes.len() as u64)
        .map(|f| {
            let f = f.expect("a frame");
            Header::parse(&read_header(bytes, &f).expect("a header")).expect("a valid header").kind()
        })
        .collect()
}

/// `bytes` with `n` bytes changed at `at`.
fn patched(bytes: &[u8], at: usize, n: usize, seed: u64) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[at..at + n].copy_from_slice(&incompressible(n, seed));
    out
}

impl Fixture {
    /// Publishes with `--deltas k`.
    fn publish_k(&self, version: &str, artifacts: &[(&str, &Path)], k: u32) -> Result<PublishReport, PublishError> {
        let mut opts = PublishOptions::new(version, arts(artifacts), T0 + 60);
        opts.deltas = k;
        publish(&self.container, &[&self.key], &opts, &mut |_| {})
    }

    /// Writes `files` into a fresh directory `builds/NAME` and returns it.
    fn build_tree(&self, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let dir = self.path(&format!("builds/{name}"));
        if dir.exists() {
            fs::remove_dir_all(&dir).expect("clearing a build directory");
        }
        for (path, content) in files {
            write(&dir.join(path), content, 0o644);
        }
        dir
    }
}

#[test]
fn an_identical_release_appends_indexes_and_the_tail_but_no_entry() {
    let fx = Fixture::new();
    let targets = [LINUX, MAC, WINDOWS];
    for t in targets {
        build_dir(&fx.path(&format!("builds/{t}")), t);
    }
    let dirs: Vec<PathBuf> = targets.iter().map(|t| fx.path(&format!("builds/{t}"))).collect();
    let list: Vec<(&str, &Path)> = targets.iter().copied().zip(dirs.iter().map(PathBuf::as_path)).collect();
    let empty = fs::read(&fx.container).expect("reading").len();
    fx.publish("1.0.0", &list).expect("publishing 1.0.0");
    let before = fs::read(&fx.container).expect("reading");
    let report = fx.publish("1.1.0", &list).expect("publishing 1.1.0");
    let after = fs::read(&fx.container).expect("reading");
    assert_eq!(&after[..before.len()], &before[..]);
    for t in targets {
        let r = &report.targets[t];
        assert_eq!((r.files, r.shared, r.stored, r.deltas, r.delta_bytes), (6, 6, 0, 0, 0), "{t}: {r:?}");
    }
    // Only the three indexes and the tail: no entry or delta frame.
    let kinds = kinds_from(&after, before.len());
    assert_eq!(kinds.iter().filter(|k| **k == "index").count(), 3, "{kinds:?}");
    assert!(
        kinds.iter().all(|k| ["index", "tile", "page", "map", "manifest", "seal"].contains(k)),
        "an identical release appended {kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"seal"));
    let grown = after.len() - before.len();
    let first = before.len() - empty;
    eprintln!("1.0.0 grew the container by {first} bytes, the identical 1.1.0 by {grown}");
    assert!(grown < 16 * 1024 && grown * 50 < first, "an identical release grew the container by {grown} bytes");
    // Each 1.1.0 index names the entries of 1.0.0.
    let scan = fx.scan();
    for t in targets {
        let old = scan.index("stable", t, Some("1.0.0")).expect("1.0.0");
        let new = scan.index("stable", t, Some("1.1.0")).expect("1.1.0");
        assert_eq!(new.index.previous, Some(old.at()), "{t}");
        let leaves = |ix: &IndexRecord| ix.files.iter().map(|f| (f.path.clone(), f.entry)).collect::<Vec<_>>();
        assert_eq!(leaves(new), leaves(old), "{t}");
        let out = fx.path(&format!("out/{t}"));
        fx.extract(t, Some("1.1.0"), &out).expect("extracting 1.1.0");
        assert_eq!(tree(&out), tree(&fx.path(&format!("builds/{t}"))), "{t}");
    }
}

#[test]
fn identical_files_across_targets_and_paths_are_stored_once() {
    let fx = Fixture::new();
    let same = incompressible(100_000, 5);
    let linux = fx.build_tree("linux", &[("a/lib.so", &same), ("b/lib.so", &same), ("own", b"linux")]);
    let mac = fx.build_tree("mac", &[("lib.so", &same), ("own", b"mac")]);
    let report = fx.publish("1.0.0", &[(LINUX, &linux), (MAC, &mac)]).expect("publishing");
    let scan = fx.scan();
    let shas: Vec<_> = scan.entries.iter().map(|e| e.stored.sha256()).collect();
    let distinct: std::collections::BTreeSet<_> = shas.iter().collect();
    assert_eq!((shas.len(), distinct.len()), (3, 3), "one entry per content: {:#?}", scan.entries);
    let leaf = file_of(&scan, LINUX, "1.0.0", "a/lib.so").entry;
    assert_eq!(file_of(&scan, LINUX, "1.0.0", "b/lib.so").entry, leaf);
    assert_eq!(file_of(&scan, MAC, "1.0.0", "lib.so").entry, leaf);
    assert_eq!(entry_of(&scan, file_of(&scan, MAC, "1.0.0", "lib.so")).size, 100_000);
    // The second path and the other target share it.
    let (l, m) = (&report.targets[LINUX], &report.targets[MAC]);
    assert_eq!((l.files, l.shared, l.shared_bytes), (3, 1, 100_000), "{l:?}");
    assert_eq!((m.files, m.shared, m.shared_bytes), (2, 1, 100_000), "{m:?}");
    assert_eq!(l.stored + m.stored, scan.entries.iter().map(|e| e.stored.stored_size()).sum::<u64>());
    for (t, dir) in [(LINUX, &linux), (MAC, &mac)] {
        let out = fx.path(&format!("out/{t}"));
        fx.extract(t, None, &out).expect("extracting");
        assert_eq!(tree(&out), tree(dir), "{t}");
    }
}

#[test]
fn a_changed_file_gets_a_delta_against_its_previous_version() {
    let fx = Fixture::new();
    let v1 = incompressible(300_000, 1);
    let v2 = patched(&v1, 150_000, 64, 2);
    let d1 = fx.build_tree("1", &[("bin/app", &v1), ("README", b"read me")]);
    fx.publish("1.0.0", &[(LINUX, &d1)]).expect("publishing 1.0.0");
    let before = fs::read(&fx.container).expect("reading").len();
    let d2 = fx.build_tree("2", &[("bin/app", &v2), ("README", b"read me")]);
    let report = fx.publish("1.1.0", &[(LINUX, &d2)]).expect("publishing 1.1.0");
    let scan = fx.scan();
    let old = file_of(&scan, LINUX, "1.0.0", "bin/app");
    let new = file_of(&scan, LINUX, "1.1.0", "bin/app");
    assert!(old.deltas.is_empty());
    let deltas = deltas_of(&scan, new);
    assert_eq!(deltas.len(), 1, "{new:?}");
    let d = deltas[0];
    assert_eq!((d.base, d.base_size, d.size), (old.sha256, 300_000, 300_000));
    let whole = entry_of(&scan, new);
    assert!(d.stored_size * 20 < whole.stored_size, "a delta of {} bytes for 64 changed bytes", d.stored_size);
    let r = &report.targets[LINUX];
    assert_eq!((r.deltas, r.delta_bytes, r.stored, r.shared), (1, d.stored_size, whole.stored_size, 1), "{r:?}");
    // Stored after the new entry, before the index: [entry][delta][index].
    let kinds = kinds_from(&fs::read(&fx.container).expect("reading"), before);
    assert_eq!(&kinds[..3], ["entry", "delta", "index"], "{kinds:?}");
    // The payload scan applies the delta to its base and checks the result.
    assert!(scan.entries.iter().any(|e| matches!(e.stored, Stored::Delta(_))));
    for (v, dir) in [("1.0.0", &d1), ("1.1.0", &d2)] {
        let out = fx.path(&format!("out/{v}"));
        fx.extract(LINUX, Some(v), &out).expect("extracting");
        assert_eq!(tree(&out), tree(dir), "{v}");
    }
}

#[test]
fn deltas_0_stores_none_and_deltas_2_stores_one_against_each_of_the_last_two_releases() {
    let fx = Fixture::new();
    let v1 = incompressible(200_000, 1);
    let v2 = patched(&v1, 10_000, 100, 2);
    let v3 = patched(&v2, 100_000, 100, 3);
    let v4 = patched(&v3, 190_000, 100, 4);
    let dirs: Vec<PathBuf> =
        [&v1, &v2, &v3, &v4].iter().enumerate().map(|(i, v)| fx.build_tree(&format!("{i}"), &[("app", v)])).collect();
    fx.publish("1.0.0", &[(LINUX, &dirs[0])]).expect("1.0.0");
    let r1 = fx.publish_k("1.1.0", &[(LINUX, &dirs[1])], 0).expect("1.1.0 with --deltas 0");
    let r2 = fx.publish_k("1.2.0", &[(LINUX, &dirs[2])], 2).expect("1.2.0 with --deltas 2");
    let r3 = fx.publish("1.3.0", &[(LINUX, &dirs[3])]).expect("1.3.0 with the default --deltas 1");
    let scan = fx.scan();
    let sha = |v: &str| file_of(&scan, LINUX, v, "app").sha256;
    assert!(file_of(&scan, LINUX, "1.1.0", "app").deltas.is_empty(), "--deltas 0 stored a delta");
    let f = file_of(&scan, LINUX, "1.2.0", "app");
    let mut bases: Vec<_> = deltas_of(&scan, f).iter().map(|d| d.base).collect();
    assert!(bases.windows(2).all(|w| w[0] < w[1]), "sorted by base");
    bases.sort_by_key(|b| if *b == sha("1.1.0") { 0 } else { 1 });
    assert_eq!(bases, [sha("1.1.0"), sha("1.0.0")]);
    let f = file_of(&scan, LINUX, "1.3.0", "app");
    assert_eq!(deltas_of(&scan, f).iter().map(|d| d.base).collect::<Vec<_>>(), [sha("1.2.0")]);
    assert_eq!(scan.entries.iter().filter(|e| matches!(e.stored, Stored::Delta(_))).count(), 3);
    for (i, v) in ["1.0.0", "1.1.0", "1.2.0", "1.3.0"].iter().enumerate() {
        let out = fx.path(&format!("out/{v}"));
        fx.extract(LINUX, Some(v), &out).expect("extracting");
        assert_eq!(tree(&out), tree(&dirs[i]), "{v}");
    }
    // The report counts each delta stored, and their bytes.
    let delta_bytes =
        |v: &str| deltas_of(&scan, file_of(&scan, LINUX, v, "app")).iter().map(|d| d.stored_size).sum::<u64>();
    for (v, r, n) in [("1.1.0", &r1, 0), ("1.2.0", &r2, 2), ("1.3.0", &r3, 1)] {
        let t = &r.targets[LINUX];
        assert_eq!(t.delta_bytes, delta_bytes(v), "{v}: {t:?}");
        assert_eq!(t.deltas, n, "{v}: TargetReport::deltas ({t:?})");
    }
}

#[test]
fn a_delta_is_stored_only_when_it_is_at_most_80_percent_of_the_whole_entry() {
    let fx = Fixture::new();
    const N: usize = 100_000;
    // Each file of 1.1.0 keeps the start of its 1.0.0 version and replaces
    // the rest with new random bytes: a delta costs about the new share.
    let new_share = [("p05", 5), ("p50", 50), ("p70", 70), ("p78", 78), ("p83", 83), ("p95", 95)];
    let old: Vec<(String, Vec<u8>)> =
        new_share.iter().enumerate().map(|(i, (n, _))| (n.to_string(), incompressible(N, 10 + i as u64))).collect();
    let new: Vec<(String, Vec<u8>)> = new_share
        .iter()
        .zip(&old)
        .enumerate()
        .map(|(i, ((n, pct), (_, o)))| {
            let keep = N * (100 - pct) / 100;
            (n.to_string(), [&o[..keep], &incompressible(N - keep, 100 + i as u64)[..]].concat())
        })
        .collect();
    let old_refs: Vec<(&str, &[u8])> = old.iter().map(|(n, c)| (n.as_str(), c.as_slice())).collect();
    let new_refs: Vec<(&str, &[u8])> = new.iter().map(|(n, c)| (n.as_str(), c.as_slice())).collect();
    let d1 = fx.build_tree("1", &old_refs);
    let d2 = fx.build_tree("2", &new_refs);
    fx.publish("1.0.0", &[(LINUX, &d1)]).expect("1.0.0");
    fx.publish("1.1.0", &[(LINUX, &d2)]).expect("1.1.0");
    let scan = fx.scan();
    let staging = tempfile::tempdir().expect("a temporary directory");
    let mut outcomes = Vec::new();
    for ((name, pct), (_, base)) in new_share.iter().zip(&old) {
        let f = file_of(&scan, LINUX, "1.1.0", name);
        let whole = entry_of(&scan, f).stored_size;
        // The delta the publisher would make, made the same way.
        let source = dare_publisher::SourceFile {
            target: LINUX.into(),
            path: name.to_string(),
            source: d2.join(name),
            mode: 0o644,
            size: N as u64,
        };
        let staged = dare_publisher::compress::stage_delta(
            base,
            &source,
            staging.path(),
            dare_publisher::compress::DEFAULT_DELTA_LEVEL,
        )
        .expect("making a delta");
        let small_enough = staged.stored_size * 5 <= whole * 4;
        let deltas = deltas_of(&scan, f);
        assert_eq!(deltas.len(), usize::from(small_enough), "{name}: delta {} of {whole}", staged.stored_size);
        if let Some(d) = deltas.first() {
            assert_eq!(d.stored_size, staged.stored_size, "{name}");
            assert!(d.stored_size * 5 <= whole * 4, "{name}");
        }
        outcomes.push((*pct, small_enough));
    }
    // Both sides of the line were tried.
    assert_eq!(
        outcomes,
        [(5, true), (50, true), (70, true), (78, true), (83, false), (95, false)],
        "the made deltas do not cost about the new share"
    );
}

#[test]
fn a_file_renamed_with_the_version_or_moved_under_a_unique_name_gets_a_delta() {
    let fx = Fixture::new();
    let script = incompressible(50_000, 1);
    let lib = incompressible(60_000, 2);
    let (readme1, readme2) = (incompressible(40_000, 3), incompressible(40_000, 4));
    let d1 = fx.build_tree(
        "1",
        &[
            ("app-1.0.0.data/scripts/app", &script),
            ("lib/x86_64/libfoo.so", &lib),
            ("one/README", &readme1),
            ("two/README", &readme2),
        ],
    );
    fx.publish("1.0.0", &[(LINUX, &d1)]).expect("1.0.0");
    let (script2, lib2, readme3) =
        (patched(&script, 100, 50, 5), patched(&lib, 200, 50, 6), patched(&readme1, 300, 50, 7));
    let d2 = fx.build_tree(
        "2",
        &[("app-1.1.0.data/scripts/app", &script2), ("lib64/libfoo.so", &lib2), ("three/README", &readme3)],
    );
    fx.publish("1.1.0", &[(LINUX, &d2)]).expect("1.1.0");
    let scan = fx.scan();
    let base = |p: &str| file_of(&scan, LINUX, "1.0.0", p).sha256;
    let bases =
        |p: &str| deltas_of(&scan, file_of(&scan, LINUX, "1.1.0", p)).iter().map(|d| d.base).collect::<Vec<_>>();
    assert_eq!(bases("app-1.1.0.data/scripts/app"), [base("app-1.0.0.data/scripts/app")], "renamed with the version");
    assert_eq!(bases("lib64/libfoo.so"), [base("lib/x86_64/libfoo.so")], "moved, a unique file name");
    // Two READMEs in 1.0.0: which one `three/README` follows is not known.
    assert!(bases("three/README").is_empty());
    let out = fx.path("out");
    fx.extract(LINUX, Some("1.1.0"), &out).expect("extracting");
    assert_eq!(tree(&out), tree(&d2));
}

#[test]
fn extract_of_an_old_version_and_of_content_shared_across_releases_and_targets() {
    let fx = Fixture::new();
    let shared = compressible(80_000, 1);
    let b1 = incompressible(70_000, 2);
    let b2 = patched(&b1, 35_000, 30, 3);
    let l1 = fx.build_tree("l1", &[("share/data", &shared), ("bin/b", &b1)]);
    let m1 = fx.build_tree("m1", &[("data", &shared)]);
    fx.publish("1.0.0", &[(LINUX, &l1), (MAC, &m1)]).expect("1.0.0");
    let l2 = fx.build_tree("l2", &[("share/data", &shared), ("bin/b", &b2), ("bin/new", b"new in 1.1.0")]);
    let m2 = fx.build_tree("m2", &[("data", &shared), ("bin/b", &b1)]);
    let report = fx.publish("1.1.0", &[(LINUX, &l2), (MAC, &m2)]).expect("1.1.0");
    // MAC 1.1.0 shares data with 1.0.0 and bin/b with LINUX 1.0.0.
    assert_eq!(report.targets[MAC].stored, 0, "{:?}", report.targets[MAC]);
    assert_eq!(report.targets[LINUX].shared, 1);
    let scan = fx.scan();
    assert_eq!(file_of(&scan, MAC, "1.1.0", "bin/b").entry, file_of(&scan, LINUX, "1.0.0", "bin/b").entry);
    for (t, v, dir) in [(LINUX, "1.0.0", &l1), (MAC, "1.0.0", &m1), (LINUX, "1.1.0", &l2), (MAC, "1.1.0", &m2)] {
        let out = fx.path(&format!("out/{t}-{v}"));
        let files = fx.extract(t, Some(v), &out).expect("extracting");
        assert_eq!(files.len(), tree(dir).len());
        assert_eq!(tree(&out), tree(dir), "{t} {v}");
    }
}

#[test]
fn content_of_the_last_k_releases_is_not_stored_again() {
    let fx = Fixture::new();
    let x = incompressible(50_000, 1);
    let y = incompressible(50_000, 2);
    let dx = fx.build_tree("x", &[("app", &x)]);
    let dy = fx.build_tree("y", &[("app", &y)]);
    fx.publish("1.0.0", &[(LINUX, &dx)]).expect("1.0.0");
    fx.publish("1.1.0", &[(LINUX, &dy)]).expect("1.1.0");
    // Back to x: 1.0.0 is one of the last two releases.
    let report = fx.publish_k("1.2.0", &[(LINUX, &dx)], 2).expect("1.2.0");
    assert_eq!((report.targets[LINUX].stored, report.targets[LINUX].shared), (0, 1));
    let scan = fx.scan();
    assert_eq!(file_of(&scan, LINUX, "1.2.0", "app").entry, file_of(&scan, LINUX, "1.0.0", "app").entry);
    assert_eq!(scan.entries.iter().filter(|e| matches!(e.stored, Stored::Entry(_))).count(), 2);
}

/// With the default `--deltas 1` a release that goes back to the content of
/// a release before the previous one does not know that content is stored
/// (it reads only the live indexes and the last release), so it stores it
/// again. The container must still verify.
#[test]
fn a_release_that_goes_back_to_older_content_still_verifies() {
    let fx = Fixture::new();
    let x = incompressible(50_000, 1);
    let y = patched(&x, 1000, 100, 2);
    let dx = fx.build_tree("x", &[("app", &x)]);
    let dy = fx.build_tree("y", &[("app", &y)]);
    fx.publish("1.0.0", &[(LINUX, &dx)]).expect("1.0.0");
    fx.publish("1.1.0", &[(LINUX, &dy)]).expect("1.1.0");
    fx.publish("1.2.0", &[(LINUX, &dx)]).expect("1.2.0: back to 1.0.0's content");
    fx.publish("1.3.0", &[(LINUX, &dy)]).expect("1.3.0: back to 1.1.0's content");
    let scan = scan_file(&fx.container, &ScanOptions::full());
    let scan = scan.unwrap_or_else(|e| panic!("the container does not verify after a publish that succeeded: {e}"));
    for (v, dir) in [("1.0.0", &dx), ("1.1.0", &dy), ("1.2.0", &dx), ("1.3.0", &dy)] {
        let out = fx.path(&format!("out/{v}"));
        fx.extract(LINUX, Some(v), &out).expect("extracting");
        assert_eq!(tree(&out), tree(dir), "{v}");
    }
    assert_eq!(scan.indexes.len(), 4);
}

#[test]
fn publish_reads_only_the_tail_of_a_big_container() {
    let fx = Fixture::new();
    let big1 = incompressible(6 << 20, 1);
    let big2 = incompressible(6 << 20, 2);
    let d1 = fx.build_tree("1", &[("big", &big1), ("small", b"small 1")]);
    fx.publish("1.0.0", &[(LINUX, &d1)]).expect("1.0.0");
    let d2 = fx.build_tree("2", &[("big", &big2), ("small", b"small 2")]);
    fx.publish("1.1.0", &[(LINUX, &d2)]).expect("1.1.0");
    let scan = fx.scan();
    // Everything 1.0.0 appended (its entries and its index; not its tail,
    // which the next publish still reads for nothing) is zeroed.
    let first = scan.entries.iter().find(|e| e.leaf == file_of(&scan, LINUX, "1.0.0", "big").entry.leaf).expect("big");
    let index = scan.index("stable", LINUX, Some("1.0.0")).expect("1.0.0");
    let (from, to) = (first.frame.offset.min(index.frame.offset) as usize, index.frame.end() as usize);
    let later = scan.index("stable", LINUX, Some("1.1.0")).expect("1.1.0");
    assert!(to < later.files.iter().map(|f| f.entry.offset).min().expect("files") as usize);
    let mut bytes = fs::read(&fx.container).expect("reading");
    assert!(to - from > 6 << 20, "the zeroed middle covers 1.0.0's big entry");
    bytes[from..to].fill(0);
    fs::write(&fx.container, &bytes).expect("writing");
    let err = scan_file(&fx.container, &ScanOptions::default()).expect_err("verify fails");
    eprintln!("verify: {err}");
    assert_contains(&err.to_string(), &[&format!("at byte {from}")]);

    // 1.2.0 builds on 1.1.0: with deltas against it, the tail alone is enough.
    let d3 = fx.build_tree("3", &[("big", &patched(&big2, 3 << 20, 100, 3)), ("small", b"small 2")]);
    let report = fx.publish("1.2.0", &[(LINUX, &d3)]).expect("publishing on a container damaged in the middle");
    assert_eq!((report.targets[LINUX].deltas, report.targets[LINUX].shared), (1, 1), "{:?}", report.targets[LINUX]);
    let now = fs::read(&fx.container).expect("reading");
    assert_eq!(&now[..bytes.len()], &bytes[..], "publishing only appends");
    scan_file(&fx.container, &ScanOptions::default()).expect_err("verify still fails");
    // The new tail is sound: its seal, map and manifest open for the next append.
    heartbeat(&fx.container, &[&fx.key], T0 + 120).expect("a heartbeat on the new tail");
}

#[test]
fn refuses_a_signed_time_from_the_future_before_reading_a_build() {
    let fx = Fixture::new();
    let bin = fx.build("app", b"app");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("a clock").as_secs();
    let publish_at = |time: u64, skew: u64| {
        let mut opts = PublishOptions::new("1.0.0", arts(&[(LINUX, &bin)]), time);
        opts.max_skew = skew;
        publish(&fx.container, &[&fx.key], &opts, &mut |_| {})
    };
    let msg = refused(&fx, || publish_at(now * 1000, 300));
    assert_contains(&msg, &["ahead of the clock", "it looks like milliseconds"]);
    let msg = refused(&fx, || publish_at(now + 3600, 300));
    assert_contains(&msg, &["more than the allowed skew of 300 s"]);
    // A wider skew is allowed up to a day, never beyond.
    let msg = refused(&fx, || publish_at(now + 3600, 86_401));
    assert_contains(&msg, &["more than the limit of 86400 s"]);
    publish_at(now + 3600, 7200).expect("publishing an hour ahead with a skew of two hours");
}
