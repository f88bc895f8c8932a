//! The `--json` objects scripts read, as snapshots (`tests/dare/snapshots/`):
//! a field renamed, dropped or retyped shows up as a diff. Values that differ
//! from run to run (keys, hashes, signatures, temporary paths) are replaced by
//! placeholders first; sizes and times are fixed by the fixture.

use serde_json::Value;

#[cfg(unix)]
use crate::support::released;
use crate::support::{LINUX, Run, Sandbox, T0};

/// Placeholders for what changes between runs: the fresh key signs every
/// seal, so roots, fingerprints and signers differ, and paths are temporary.
fn normalized(mut v: Value, sb: &Sandbox) -> Value {
    fn walk(v: &mut Value, dir: &str) {
        match v {
            Value::Object(map) => {
                for (k, field) in map.iter_mut() {
                    match (k.as_str(), &*field) {
                        ("root" | "trust_fingerprint", Value::String(_)) => *field = "[hash]".into(),
                        ("signers", Value::Array(a)) => *field = Value::Array(vec!["[key]".into(); a.len()]),
                        (_, Value::String(s)) if s.contains(dir) => *field = s.replace(dir, "[dir]").into(),
                        _ => walk(field, dir),
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, dir)),
            _ => {}
        }
    }
    let dir = sb.path("");
    let dir = dir.to_str().expect("a UTF-8 temp dir").trim_end_matches('/');
    walk(&mut v, dir);
    v
}

fn pretty(run: &Run, sb: &Sandbox) -> String {
    serde_json::to_string_pretty(&normalized(run.json(), sb)).expect("JSON")
}

// Linux's bytes: the fixture publishes every file as mode 755, which Windows
// (no exec bit) cannot express, so there the modes, listings and lengths
// differ (and paths are written with `\`).
#[cfg(unix)]
#[test]
fn verify_json() {
    let (sb, c, _) = released();
    let run = sb.dare(&["verify", c.to_str().unwrap(), "--json"]);
    run.ok();
    insta::assert_snapshot!(pretty(&run, &sb));
}

// Linux's bytes: the fixture publishes every file as mode 755, which Windows
// (no exec bit) cannot express, so there the modes, listings and lengths
// differ (and paths are written with `\`).
#[cfg(unix)]
#[test]
fn ls_json() {
    let (sb, _, _) = released();
    let run = sb.dare(&["ls", "app.dare", "--target", LINUX, "--json"]);
    run.ok();
    insta::assert_snapshot!(pretty(&run, &sb));
}

#[test]
fn publish_json() {
    let sb = Sandbox::new();
    sb.keygen("k");
    sb.init("app.dare", "k");
    std::fs::write(sb.path("app"), b"an app").unwrap();
    let time = (T0 + 10).to_string();
    let artifact = format!("{LINUX}=app");
    let run = sb.dare(&[
        "publish",
        "app.dare",
        "--key",
        "k",
        "--version",
        "1.0.0",
        "--artifact",
        &artifact,
        "--time",
        &time,
        "--json",
    ]);
    run.ok();
    insta::assert_snapshot!(pretty(&run, &sb));
}

// Linux's bytes: the fixture publishes every file as mode 755, which Windows
// (no exec bit) cannot express, so there the modes, listings and lengths
// differ (and paths are written with `\`).
#[cfg(unix)]
#[test]
fn update_json_and_failures() {
    let (sb, _, _) = released();
    let update = |extra: &[&str]| {
        let mut args = vec![
            "update",
            "--from",
            "app.dare",
            "--trust",
            "release.key.pub",
            "--state",
            "state",
            "--install",
            "app",
            "--target",
            LINUX,
            "--max-age",
            "1000000000",
            "--json",
        ];
        args.extend_from_slice(extra);
        sb.dare(&args)
    };
    let run = update(&["--check"]);
    run.ok();
    insta::assert_snapshot!("update_check", pretty(&run, &sb));
    let run = update(&[]);
    run.ok();
    insta::assert_snapshot!("update_updated", pretty(&run, &sb));
    // A refused attack: exit 3, with the kind.
    let run = update(&["--origin", "example.com/another-app"]);
    run.refused();
    insta::assert_snapshot!("update_wrong_origin", pretty(&run, &sb));
    // Bad input: exit 1.
    let run = sb.dare(&["verify", "missing.dare", "--json"]);
    run.error();
    insta::assert_snapshot!("verify_missing_file", pretty(&run, &sb));
}
