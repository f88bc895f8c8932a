//! `dare publish`, `seal` and `extract` as a user runs them.

use std::fs;
use std::path::Path;

use super::support::*;

/// Three builds: a directory each, with an executable in a subdirectory.
fn builds(env: &Env) {
    for t in TARGETS {
        let root = env.path(&format!("builds/{t}"));
        write(&root.join("bin/app"), &[text_bytes(100_000, 1), random_bytes(20_000, 2)].concat(), 0o755);
        write(&root.join("share/README"), format!("the {t} build\n").as_bytes(), 0o644);
    }
}

fn build_dirs(env: &Env) -> Vec<(&'static str, std::path::PathBuf)> {
    TARGETS.iter().map(|t| (*t, env.path(&format!("builds/{t}")))).collect()
}

fn refs<'a>(list: &'a [(&'static str, std::path::PathBuf)]) -> Vec<(&'static str, &'a Path)> {
    list.iter().map(|(t, p)| (*t, p.as_path())).collect()
}

#[test]
fn publish_json_reports_the_release() {
    let env = Env::new();
    builds(&env);
    let dirs = build_dirs(&env);
    let args = env.publish_args("1.0.0", &refs(&dirs), &["--json"]);
    let out = env.ok(&strs(&args));
    let v = one_json(&out.stdout);
    assert_eq!(v["status"], "published");
    assert_eq!(v["version"], "1.0.0");
    assert_eq!(v["channel"], "stable");
    for t in TARGETS {
        assert_eq!(v["targets"][t]["files"], 2, "{v}");
        assert_eq!(v["targets"][t]["size"], 120_000 + format!("the {t} build\n").len() as u64, "{v}");
        assert!(v["targets"][t]["stored_size"].as_u64().expect("stored") < 120_000, "{v}");
        assert_eq!((v["targets"][t]["deltas"].as_u64(), v["targets"][t]["delta_size"].as_u64()), (Some(0), Some(0)));
    }
    // Every target has the same bin/app: stored once, with the first target.
    assert!(v["targets"][LINUX]["stored_size"].as_u64().expect("stored") > 20_000, "{v}");
    for (t, shared) in [(LINUX, 0), (MAC, 1), (WINDOWS, 1)] {
        assert_eq!(v["targets"][t]["shared_files"], shared, "{t}: {v}");
        assert_eq!(v["targets"][t]["shared_size"], 120_000 * shared, "{t}: {v}");
    }
    // Leaves: genesis and manifest; 4 entries and 3 indexes; the manifest.
    assert_eq!(v["tree_size"], 2 + 4 + 3 + 1);
    assert_eq!(v["time"], T0 + 60);
    assert_eq!(v["container_len"], env.container_bytes().len() as u64);
    assert_eq!(v["root"].as_str().expect("a root").len(), 64);
    assert!(v["cut_tail"].is_null());
    // Human output goes to stderr under --json.
    assert!(String::from_utf8_lossy(&out.stderr).contains("published 1.0.0 on stable"));
    // Without --json it is on stdout.
    let args = env.publish_args("1.0.1", &refs(&dirs), &[]);
    let out = env.ok(&strs(&args));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("published 1.0.1 on stable to "), "{text}");
    assert!(text.contains("3 target(s), 6 file(s)"), "{text}");
    // Nothing new: every file is shared with 1.0.0.
    assert!(text.contains("(0 B stored new)"), "{text}");
    assert_eq!(text.matches(": 0 B new, 2 file(s) shared").count(), 3, "{text}");
    // The verify and ls views agree.
    let verify = env.json(&["verify", &env.container, "--json"]);
    assert_eq!(verify["status"], "ok");
    assert_eq!(verify["entries"], 4);
    assert_eq!(verify["seals"], 3);
    let releases = env.releases();
    assert_eq!(releases.len(), 6);
    assert!(releases.iter().all(|(c, _, _)| c == "stable"));
}

/// Runs a refused `dare ARGS` and checks the container did not change.
fn refused(env: &Env, args: &[String], expect: &[&str]) {
    let before = env.container_bytes();
    let line = env.fail(&strs(args));
    for e in expect {
        assert!(line.contains(e), "`{line}` does not say `{e}`");
    }
    assert!(env.container_bytes() == before, "{line}: the container changed");
    assert!(!env.pending().exists(), "{line}: a pending file was left");
    // With --json, stdout has the error as one object too.
    let mut json_args = args.to_vec();
    json_args.push("--json".into());
    if args[0] == "publish" {
        let out = dare().args(&json_args).output().expect("running dare");
        assert_eq!(out.status.code(), Some(1));
        let v = one_json(&out.stdout);
        assert_eq!(v["status"], "error");
        assert!(str_of(&v["error"]).contains(expect[0]), "{v}");
        assert!(env.container_bytes() == before);
    }
}

#[test]
fn every_refusal_is_one_error_line_and_exit_1() {
    let env = Env::new();
    let app = env.path("builds/app");
    write(&app, b"app", 0o755);
    env.ok(&strs(&env.publish_args("1.0.0", &[(LINUX, &app)], &[])));

    let unknown = env.publish_args("1.1.0", &[("x86_64-unknown-linux-gnux", &app)], &[]);
    refused(&env, &unknown, &["x86_64-unknown-linux-gnux", "not a known target triple"]);
    let spelled = env.publish_args("1.1.0", &[("x86_64-linux-gnu", &app)], &[]);
    refused(
        &env,
        &spelled,
        &["`x86_64-linux-gnu` is not a target triple in canonical form", "did you mean `x86_64-unknown-linux-gnu`"],
    );
    let twice = env.publish_args("1.1.0", &[(LINUX, &app), (LINUX, &app)], &[]);
    refused(&env, &twice, &[&format!("the target {LINUX} is given twice")]);
    refused(&env, &env.publish_args("1.1", &[(LINUX, &app)], &[]), &["`1.1` is not a semver version"]);
    for v in ["1.0.0", "1.0.0+build2", "0.9.0"] {
        refused(&env, &env.publish_args(v, &[(LINUX, &app)], &[]), &[&format!("{v} is not greater than 1.0.0")]);
    }
    let missing = env.path("builds/missing");
    let not_found = if cfg!(windows) { "(os error " } else { "No such file" };
    refused(&env, &env.publish_args("1.1.0", &[(LINUX, &missing)], &[]), &["builds/missing", not_found]);
    #[cfg(unix)] // Making a symlink needs a privilege on Windows.
    {
        let linked = env.path("builds/linked");
        write(&linked.join("app"), b"app", 0o755);
        std::os::unix::fs::symlink("app", linked.join("app-link")).expect("a symlink");
        let args = env.publish_args("1.1.0", &[(LINUX, &linked)], &[]);
        refused(&env, &args, &["app-link", "symlinks are not published"]);
    }
    let empty = env.path("builds/empty");
    fs::create_dir_all(&empty).expect("a directory");
    refused(&env, &env.publish_args("1.1.0", &[(LINUX, &empty)], &[]), &["the directory has no files"]);
    let stranger = env.path("stranger.key");
    dare().arg("keygen").arg("--out").arg(&stranger).assert().success();
    let mut args = env.publish_args("1.1.0", &[(LINUX, &app)], &[]);
    args[3] = s(&stranger);
    refused(&env, &args, &["is not in the container's trust root"]);
    let mut args = env.publish_args("1.1.0", &[(LINUX, &app)], &[]);
    args[3] = env.p("no-such.key");
    refused(&env, &args, &["no-such.key"]);
    let mut args = vec!["seal".to_string(), env.container.clone(), "--key".into(), s(&stranger)];
    args.extend(["--time".into(), (T0 + 100).to_string()]);
    refused(&env, &args, &["is not in the container's trust root"]);

    // A container whose last seal is damaged (publish reads the tail; a
    // damage before it is for `dare verify`: see
    // publish_reads_only_the_tail_and_verify_finds_damage_before_it).
    let good = env.container_bytes();
    let at = good.windows(14).rposition(|w| w == b"{\"kind\":\"seal\"").expect("the last seal");
    let mut bad = good.clone();
    bad[at] = b'[';
    fs::write(&env.container, &bad).expect("writing");
    let damaged = [
        "does not end with a seal",
        &format!("`dare verify {}` checks the whole container", env.container),
        "--repair",
    ];
    refused(&env, &env.publish_args("1.1.0", &[(LINUX, &app)], &[]), &damaged);
    let line = env.fail_verification(&["verify", &env.container]);
    assert!(line.contains("torn tail at byte"), "{line}");
    fs::write(&env.container, &good).expect("writing");
    // Out-of-range levels.
    for (flag, what) in [("--level", "zstd level"), ("--delta-level", "delta level")] {
        for level in ["0", "23"] {
            let args = env.publish_args("1.1.0", &[(LINUX, &app)], &[flag, level]);
            refused(&env, &args, &[&format!("{what} {level} is not between 1 and 22")]);
        }
    }

    // A usage error is exit 2 (clap).
    let out = dare().args(["publish", &env.container, "--key", &env.key]).output().expect("running dare");
    assert_eq!(out.status.code(), Some(2));
    // Still publishable afterwards.
    env.ok(&strs(&env.publish_args("1.1.0", &[(LINUX, &app)], &[])));
}

#[test]
fn seal_appends_a_fresh_seal() {
    let env = Env::new();
    let app = env.path("builds/app");
    write(&app, b"app", 0o755);
    env.ok(&strs(&env.publish_args("1.0.0", &[(LINUX, &app)], &[])));
    let before = env.json(&["verify", &env.container, "--json"]);
    let len = env.container_bytes().len();
    let t = (T0 + 7 * 86_400).to_string();
    let out = env.ok(&["seal", &env.container, "--key", &env.key, "--time", &t]);
    let text = String::from_utf8_lossy(&out.stdout);
    let appended = env.container_bytes().len() - len;
    // Genesis, empty manifest, the entry, its index, the manifest.
    assert!(text.contains("tree size 5"), "{text}");
    assert!(text.contains("2025-12-02T08:00:00Z"), "{text}");
    assert!(text.contains(&format!("{appended} bytes appended")), "{text}");
    let after = env.json(&["verify", &env.container, "--json"]);
    assert_eq!(after["seals"], before["seals"].as_u64().expect("seals") + 1);
    assert_eq!(after["size"], before["size"]);
    assert_eq!(after["root"], before["root"]);
    assert_eq!(after["time"], T0 + 7 * 86_400);
    // Time does not go backward.
    let line = env.fail(&["seal", &env.container, "--key", &env.key, "--time", &T0.to_string()]);
    assert!(line.contains("is before the previous seal's"), "{line}");
    // SOURCE_DATE_EPOCH is the default time.
    let out = dare()
        .args(["seal", &env.container, "--key", &env.key])
        .env("SOURCE_DATE_EPOCH", (T0 + 8 * 86_400).to_string())
        .output()
        .expect("running dare");
    assert!(out.status.success());
    assert_eq!(env.json(&["verify", &env.container, "--json"])["time"], T0 + 8 * 86_400);
}

#[test]
fn the_same_inputs_key_and_time_give_the_same_container() {
    let first = Env::new();
    builds(&first);
    let key = first.path("release.key");
    let second = Env::with_key(tempfile::tempdir().expect("a temporary directory"), key);
    for env in [&first, &second] {
        let dirs = build_dirs(&first);
        let mut args = env.publish_args("1.0.0", &refs(&dirs), &[]);
        // Drop --time: SOURCE_DATE_EPOCH gives it.
        let at = args.iter().position(|a| a == "--time").expect("--time");
        args.drain(at..at + 2);
        let out = dare().args(&args).env("SOURCE_DATE_EPOCH", (T0 + 99).to_string()).output().expect("running dare");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(first.container_bytes() == second.container_bytes());
}

#[test]
fn extract_writes_the_build_and_refuses_escapes() {
    let env = Env::new();
    builds(&env);
    let dirs = build_dirs(&env);
    env.ok(&strs(&env.publish_args("1.0.0", &refs(&dirs), &[])));
    for (t, dir) in &dirs {
        let out_dir = env.p(&format!("out/{t}"));
        let out = env.ok(&["extract", &env.container, "--target", t, "--out", &out_dir]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with(&format!("extracted {t} 1.0.0 into")), "{text}");
        assert!(text.contains("2 file(s)") && text.contains("  bin/app\n"), "{text}");
        for rel in ["bin/app", "share/README"] {
            let (a, b) = (dir.join(rel), Path::new(&out_dir).join(rel));
            assert!(fs::read(&a).expect("source") == fs::read(&b).expect("extracted"), "{t} {rel}");
            assert_eq!(mode_of(&b), mode_of(&a), "{t} {rel}");
        }
    }
    // --trust pins the publisher key: the right one extracts, another refuses.
    let pinned = env.p("pinned-out");
    env.ok(&["extract", &env.container, "--target", MAC, "--out", &pinned, "--trust", &format!("{}.pub", env.key)]);
    let stranger = env.path("stranger.key");
    dare().arg("keygen").arg("--out").arg(&stranger).assert().success();
    let other = env.p("other-out");
    let line = env.fail_verification(&[
        "extract",
        &env.container,
        "--target",
        MAC,
        "--out",
        &other,
        "--trust",
        &format!("{}.pub", s(&stranger)),
    ]);
    assert!(line.contains("seal signatures"), "{line}");
    assert!(!Path::new(&other).exists());
    // A symlink in the output directory is not followed. (Making one needs a
    // privilege on Windows.)
    #[cfg(unix)]
    {
        let elsewhere = tempfile::tempdir().expect("a temporary directory");
        let out_dir = env.path("linked-out");
        fs::create_dir(&out_dir).expect("a directory");
        std::os::unix::fs::symlink(elsewhere.path(), out_dir.join("bin")).expect("a symlink");
        let line = env.fail(&["extract", &env.container, "--target", LINUX, "--out", &s(&out_dir)]);
        assert!(line.contains("is a symlink"), "{line}");
        assert!(fs::read_dir(elsewhere.path()).expect("reading").next().is_none());
        assert!(!out_dir.join("share").exists(), "extract wrote part of the build");
    }
    // A directory where a file goes.
    let out_dir = env.path("blocked-out");
    fs::create_dir_all(out_dir.join("share/README")).expect("a directory");
    let line = env.fail(&["extract", &env.container, "--target", LINUX, "--out", &s(&out_dir)]);
    assert!(line.contains("is a directory"), "{line}");
    // What is not there.
    let line = env.fail(&["extract", &env.container, "--target", LINUX, "--version", "9.9.9", "--out", &s(&out_dir)]);
    assert!(line.contains("no release 9.9.9") && line.contains("published versions: 1.0.0"), "{line}");
    let args = ["extract", &env.container, "--target", LINUX, "--channel", "beta", "--out", &s(&out_dir)];
    let line = env.fail(&args);
    assert!(line.contains("no release for") && line.contains(&format!("stable/{LINUX}")), "{line}");
}

#[test]
fn an_io_error_names_its_cause_once() {
    let env = Env::new();
    let missing = env.path("builds/missing");
    // The OS's words for it: Windows says "file not found" or "path not found".
    let cause = if cfg!(windows) { "(os error " } else { "No such file or directory" };
    let line = env.fail(&strs(&env.publish_args("1.0.0", &[(LINUX, &missing)], &[])));
    assert_eq!(line.matches(cause).count(), 1, "{line}");
    let line = env.fail(&["verify", &env.p("no-such.dare")]);
    assert_eq!(line.matches(cause).count(), 1, "{line}");
}

/// The frames of `bytes` from `from` on, with their kinds.
fn frames_from(bytes: &[u8], from: usize) -> Vec<(dare_container::frame::FrameInfo, &'static str)> {
    dare_container::frame::Frames::new(bytes, from as u64, bytes.len() as u64)
        .map(|f| {
            let f = f.expect("a frame");
            let h = dare_container::frame::read_header(bytes, &f).expect("a header");
            (f, dare_container::header::Header::parse(&h).expect("a valid header").kind())
        })
        .collect()
}

/// `dare publish` reads the genesis and the tail of the container, never
/// the whole log: zeroing everything release 1.0.0 appended (its entries and
/// its index, several MiB in the middle of the file) does not stop the next
/// publish, while `dare verify`, which reads everything, fails.
#[test]
fn publish_reads_only_the_tail_and_verify_finds_damage_before_it() {
    let env = Env::new();
    let empty = env.container_bytes().len();
    let v1 = env.path("builds/1");
    mixed_file(&v1.join("bin/app"), 8, 1);
    write(&v1.join("README"), b"1.0.0\n", 0o644);
    env.ok(&strs(&env.publish_args("1.0.0", &[(LINUX, &v1)], &[])));
    let v2 = env.path("builds/2");
    mixed_file(&v2.join("bin/app"), 8, 2);
    write(&v2.join("README"), b"1.1.0\n", 0o644);
    env.ok(&strs(&env.publish_args("1.1.0", &[(LINUX, &v2)], &[])));
    let mut bytes = env.container_bytes();
    // 1.0.0's entries and index: from the end of the first seal to its index.
    let frames = frames_from(&bytes, empty);
    let (index, _) = frames.iter().find(|(_, k)| *k == "index").expect("1.0.0's index");
    let (from, to) = (empty, index.end() as usize);
    assert!(to - from > 1 << 20, "{}", to - from);
    bytes[from..to].fill(0);
    fs::write(&env.container, &bytes).expect("writing");
    let line = env.fail_verification(&["verify", &env.container]);
    assert!(line.contains(&format!("at byte {from}")), "{line}");

    // 1.2.0 changes a few bytes of 1.1.0's bin/app: a delta against it.
    let v3 = env.path("builds/3");
    let mut app = fs::read(v2.join("bin/app")).expect("reading");
    app[4 << 20..(4 << 20) + 100].copy_from_slice(&random_bytes(100, 3));
    write(&v3.join("bin/app"), &app, 0o755);
    write(&v3.join("README"), b"1.1.0\n", 0o644);
    let v = env.json(&strs(&env.publish_args("1.2.0", &[(LINUX, &v3)], &["--json"])));
    assert_eq!(v["status"], "published");
    assert_eq!(
        (v["targets"][LINUX]["deltas"].as_u64(), v["targets"][LINUX]["shared_files"].as_u64()),
        (Some(1), Some(1))
    );
    let after = env.container_bytes();
    assert!(after[..bytes.len()] == bytes[..], "publish only appends");
    let line = env.fail_verification(&["verify", &env.container]);
    assert!(line.contains(&format!("at byte {from}")), "{line}");
    // The tail it wrote is sound: a heartbeat builds on it.
    env.ok(&["seal", &env.container, "--key", &env.key, "--time", &(T0 + 120).to_string()]);
}

/// `--deltas K` and `--delta-level L`.
#[test]
fn publish_deltas_and_delta_level() {
    let env = Env::new();
    let base = [text_bytes(150_000, 1), random_bytes(50_000, 2)].concat();
    // Each version replaces 20 kB of the text with new text.
    let version = |n: usize| {
        let mut b = base.clone();
        let at = 20_000 * n;
        b[at..at + 20_000].copy_from_slice(&text_bytes(20_000, 10 + n as u64));
        b
    };
    let build = |n: usize| {
        let p = env.path(&format!("builds/{n}/app"));
        write(&p, &version(n), 0o755);
        p
    };
    let args = |v: &str, n: usize, extra: &[&str]| {
        let mut extra = extra.to_vec();
        extra.push("--json");
        env.publish_args(v, &[(LINUX, &build(n))], &extra)
    };
    let deltas = |v: &serde_json::Value| {
        (
            v["targets"][LINUX]["deltas"].as_u64().expect("deltas"),
            v["targets"][LINUX]["delta_size"].as_u64().expect("size"),
        )
    };
    let v = env.json(&strs(&args("1.0.0", 0, &[])));
    assert_eq!(deltas(&v), (0, 0), "{v}");
    let v = env.json(&strs(&args("1.1.0", 1, &["--deltas", "0"])));
    assert_eq!(deltas(&v), (0, 0), "--deltas 0: {v}");
    let v = env.json(&strs(&args("1.2.0", 2, &[])));
    let (n, size) = deltas(&v);
    let whole = v["targets"][LINUX]["stored_size"].as_u64().expect("stored");
    assert!(n == 1 && size > 0 && size * 2 < whole, "the default --deltas 1: {v}");
    let v13 = env.json(&strs(&args("1.3.0", 3, &["--deltas", "2"])));
    // `dare ls` shows the same.
    let ls = env.json(&["ls", &env.container, "--json"]);
    let by_version: Vec<(String, u64)> = ls["releases"]
        .as_array()
        .expect("releases")
        .iter()
        .map(|r| (str_of(&r["version"]), r["deltas"].as_u64().expect("deltas")))
        .collect();
    let want: Vec<(String, u64)> =
        [("1.0.0", 0), ("1.1.0", 0), ("1.2.0", 1), ("1.3.0", 2)].iter().map(|(v, n)| (v.to_string(), *n)).collect();
    assert_eq!(by_version, want);
    let files = &ls["releases"][3]["files"];
    assert_eq!(files[0]["deltas_from"].as_array().expect("bases").len(), 2, "{files}");

    // --delta-level: the same release at level 1 and at level 19; the new
    // text in the delta compresses better at 19.
    let mut sizes = Vec::new();
    for level in ["1", "19"] {
        let other = Env::with_key(tempfile::tempdir().expect("a temporary directory"), env.path("release.key"));
        let a = other.publish_args("1.0.0", &[(LINUX, &build(0))], &[]);
        other.ok(&strs(&a));
        let a = other.publish_args("1.1.0", &[(LINUX, &build(1))], &["--delta-level", level, "--json"]);
        let v = other.json(&strs(&a));
        let (n, size) = deltas(&v);
        assert_eq!(n, 1, "--delta-level {level}: {v}");
        other.ok(&["verify", &other.container]);
        sizes.push(size);
    }
    assert!(sizes[1] < sizes[0], "delta sizes at levels 1 and 19: {sizes:?}");
    // `dare publish --json` counts the deltas stored, as `dare ls` does.
    assert_eq!(deltas(&v13).0, 2, "--deltas 2: against 1.2.0 and 1.1.0: {v13}");
}

/// A file's permission bits; on Windows, which keeps only a read-only
/// attribute, `0o444` or `0o666`.
fn mode_of(p: &Path) -> u32 {
    let meta = fs::metadata(p).expect("metadata");
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
