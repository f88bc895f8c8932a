//! `dare publish`, `seal` and `extract` as a user runs them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::*;

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
    }
    assert_eq!(v["tree_size"], 2 + 6 + 1);
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
    // The verify and ls views agree.
    let verify = env.json(&["verify", &env.container, "--json"]);
    assert_eq!(verify["status"], "ok");
    assert_eq!(verify["entries"], 12);
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
    refused(&env, &env.publish_args("1.1", &[(LINUX, &app)], &[]), &["`1.1` is not a semver version"]);
    for v in ["1.0.0", "1.0.0+build2", "0.9.0"] {
        refused(&env, &env.publish_args(v, &[(LINUX, &app)], &[]), &[&format!("{v} is not greater than 1.0.0")]);
    }
    let missing = env.path("builds/missing");
    refused(&env, &env.publish_args("1.1.0", &[(LINUX, &missing)], &[]), &["builds/missing", "No such file"]);
    let linked = env.path("builds/linked");
    write(&linked.join("app"), b"app", 0o755);
    std::os::unix::fs::symlink("app", linked.join("app-link")).expect("a symlink");
    refused(&env, &env.publish_args("1.1.0", &[(LINUX, &linked)], &[]), &["app-link", "symlinks are not published"]);
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

    // A container that fails verification: a flipped byte in a sealed entry header.
    let good = env.container_bytes();
    let at = good.windows(8).position(|w| w == b"\"path\":\"").expect("an entry header") + 8;
    let mut bad = good.clone();
    bad[at] ^= 0x01;
    fs::write(&env.container, &bad).expect("writing");
    refused(&env, &env.publish_args("1.1.0", &[(LINUX, &app)], &[]), &["frame 4 at byte"]);
    let line = env.fail(&["verify", &env.container]);
    assert!(line.contains("frame 4 at byte"), "{line}");
    fs::write(&env.container, &good).expect("writing");

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
    assert!(text.contains("tree size 4"), "{text}");
    assert!(text.contains("2025-12-02T08:00:00Z"), "{text}");
    assert!(text.contains(&format!("{appended} bytes appended")), "{text}");
    let after = env.json(&["verify", &env.container, "--json"]);
    assert_eq!(after["seals"], before["seals"].as_u64().expect("seals") + 1);
    assert_eq!(after["size"], before["size"]);
    assert_eq!(after["root"], before["root"]);
    assert_eq!(after["time"], T0 + 7 * 86_400);
    // Time does not go backward.
    let line = env.fail(&["seal", &env.container, "--key", &env.key, "--time", &T0.to_string()]);
    assert!(line.contains("before the last seal"), "{line}");
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
            let mode = |p: &Path| fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
            assert_eq!(mode(&b), mode(&a), "{t} {rel}");
        }
    }
    // --trust pins the publisher key: the right one extracts, another refuses.
    let pinned = env.p("pinned-out");
    env.ok(&["extract", &env.container, "--target", MAC, "--out", &pinned, "--trust", &format!("{}.pub", env.key)]);
    let stranger = env.path("stranger.key");
    dare().arg("keygen").arg("--out").arg(&stranger).assert().success();
    let other = env.p("other-out");
    let line = env.fail(&[
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
    // A symlink in the output directory is not followed.
    let elsewhere = tempfile::tempdir().expect("a temporary directory");
    let out_dir = env.path("linked-out");
    fs::create_dir(&out_dir).expect("a directory");
    std::os::unix::fs::symlink(elsewhere.path(), out_dir.join("bin")).expect("a symlink");
    let line = env.fail(&["extract", &env.container, "--target", LINUX, "--out", &s(&out_dir)]);
    assert!(line.contains("is a symlink"), "{line}");
    assert!(fs::read_dir(elsewhere.path()).expect("reading").next().is_none());
    assert!(!out_dir.join("share").exists(), "extract wrote part of the build");
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
    let line = env.fail(&strs(&env.publish_args("1.0.0", &[(LINUX, &missing)], &[])));
    assert_eq!(line.matches("No such file or directory").count(), 1, "{line}");
    let line = env.fail(&["verify", &env.p("no-such.dare")]);
    assert_eq!(line.matches("No such file or directory").count(), 1, "{line}");
}
