//! `dare ls`: releases, filters, JSON and the latest seal.

use dare_container::hashio::{sha256, to_hex};

use crate::support::{LICENSE, LINUX, MAC, Sandbox, T0, WINDOWS, app, released};

/// The release lines of `dare ls` output: those starting with a version.
fn release_lines(stdout: &str) -> Vec<&str> {
    stdout.lines().filter(|l| l.starts_with(|c: char| c.is_ascii_digit())).collect()
}

#[test]
fn ls_lists_every_release_and_the_latest_seal() {
    let (sb, _, _) = released();
    let run = sb.dare(&["ls", "app.dare"]);
    run.ok();
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "example.com/app (app), 6 releases");
    let releases = release_lines(&run.stdout);
    assert_eq!(releases.len(), 6, "{}", run.stdout);
    let find = |version: &str, target: &str| {
        *releases
            .iter()
            .find(|l| l.split_whitespace().next() == Some(version) && l.contains(target))
            .unwrap_or_else(|| panic!("no {version} {target} in\n{}", run.stdout))
    };
    assert!(find("1.1.0", LINUX).ends_with("latest"));
    assert!(!find("1.0.0", LINUX).ends_with("latest"));
    assert!(find("1.0.0", LINUX).contains("3 file(s)"));
    assert!(find("1.0.0", WINDOWS).ends_with("latest"));
    assert!(find("2.0.0-beta.1", LINUX).contains("beta"));
    // What each release stored new, shared with what was stored before, and
    // its deltas: the license is stored once, with Linux 1.0.0.
    let stored = |line: &str| line.split(": stored ").nth(1).unwrap_or_else(|| panic!("{line}")).to_string();
    let l = LICENSE.len();
    assert_eq!(l, 77);
    for (version, target, shared, deltas) in [
        ("1.0.0", LINUX, "0 file(s) shared (0 B)", "0 delta(s) (0 B)"),
        ("1.0.0", MAC, &format!("1 file(s) shared ({l} B)"), "0 delta(s) (0 B)"),
        ("1.0.0", WINDOWS, &format!("1 file(s) shared ({l} B)"), "0 delta(s) (0 B)"),
        // 5000 + 77 bytes.
        ("1.1.0", LINUX, "2 file(s) shared (5.0 KiB)", "1 delta(s) ("),
        ("1.1.0", MAC, &format!("1 file(s) shared ({l} B)"), "1 delta(s) ("),
        ("2.0.0-beta.1", LINUX, &format!("1 file(s) shared ({l} B)"), "0 delta(s) (0 B)"),
    ] {
        let s = stored(find(version, target));
        assert!(s.contains(" new, ") && s.contains(shared) && s.contains(deltas), "{version} {target}: {s}");
    }
    let seal = lines.last().unwrap();
    assert!(seal.starts_with("sealed 2023-11-14T22:18:20Z by release: tree size 21"), "{seal}");
}

#[test]
fn ls_filters_by_target_and_channel() {
    let (sb, _, _) = released();
    let run = sb.dare(&["ls", "app.dare", "--target", MAC]);
    let lines = release_lines(&run.ok().stdout).into_iter().map(String::from).collect::<Vec<_>>();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(lines.iter().all(|l| l.contains(MAC)));
    let run = sb.dare(&["ls", "app.dare", "--channel", "beta"]);
    let lines = release_lines(&run.ok().stdout).into_iter().map(String::from).collect::<Vec<_>>();
    assert_eq!(lines.len(), 1, "{}", run.stdout);
    assert!(lines[0].starts_with("2.0.0-beta.1") && lines[0].contains(LINUX));
    let run = sb.dare(&["ls", "app.dare", "--channel", "stable", "--target", LINUX]);
    assert_eq!(release_lines(&run.ok().stdout).len(), 2, "{}", run.stdout);
    let run = sb.dare(&["ls", "app.dare", "--target", "riscv64gc-unknown-linux-gnu"]);
    assert_eq!(release_lines(&run.ok().stdout).len(), 0, "{}", run.stdout);
}

#[test]
fn ls_json_has_releases_and_the_seal() {
    let (sb, c, _) = released();
    let run = sb.dare(&["ls", "app.dare", "--json"]);
    let j = run.ok().json();
    assert_eq!(j["status"], "ok");
    assert_eq!(j["origin"], "example.com/app");
    let releases = j["releases"].as_array().unwrap();
    assert_eq!(releases.len(), 6);
    let release = |target: &str, version: &str| {
        releases.iter().find(|r| r["target"] == target && r["version"] == version).unwrap_or_else(|| panic!("{j}"))
    };
    let linux_1_0 = release(LINUX, "1.0.0");
    assert_eq!(linux_1_0["channel"], "stable");
    assert_eq!(linux_1_0["latest"], false);
    let files = linux_1_0["files"].as_array().unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["bin/app", "share/LICENSE", "share/big"]);
    assert_eq!(files[2]["size"].as_u64(), Some(5000));
    assert_eq!(files[0]["mode"], "755");
    let app_1_0 = to_hex(&sha256(&app(LINUX, "1.0.0")));
    assert_eq!(files[0]["sha256"], app_1_0.as_str());
    assert_eq!(files[1]["sha256"], to_hex(&sha256(LICENSE)).as_str());
    assert_eq!(files[0]["deltas_from"], serde_json::json!([]));
    let app_size = app(LINUX, "1.0.0").len() as u64;
    assert_eq!(linux_1_0["size"].as_u64(), Some(5000 + app_size + LICENSE.len() as u64));
    // Leaves 0 and 1 are the genesis and the empty manifest; then the three
    // entries of Linux 1.0.0 and its index.
    assert_eq!(linux_1_0["index_leaf"].as_u64(), Some(5));
    assert_eq!(files.iter().map(|f| f["leaf"].as_u64().unwrap()).collect::<Vec<_>>(), [2, 3, 4]);
    let (stored_new, shared) = (linux_1_0["stored_new"].as_u64().unwrap(), linux_1_0["shared_files"].as_u64());
    assert!(stored_new > app_size && stored_new < app_size + 5000 + LICENSE.len() as u64, "{linux_1_0}");
    assert_eq!((shared, linux_1_0["deltas"].as_u64()), (Some(0), Some(0)));

    // 1.1.0 shares share/big and the license with 1.0.0, and its bin/app has
    // a delta from 1.0.0's.
    let linux_1_1 = release(LINUX, "1.1.0");
    assert_eq!(linux_1_1["latest"], true);
    let files = linux_1_1["files"].as_array().unwrap();
    assert_eq!(files[0]["deltas_from"], serde_json::json!([app_1_0]));
    assert_eq!(files[1]["leaf"].as_u64(), Some(3), "the license of 1.0.0");
    assert_eq!(files[2]["leaf"].as_u64(), Some(4), "share/big of 1.0.0");
    assert_eq!(linux_1_1["shared_files"].as_u64(), Some(2));
    assert_eq!(linux_1_1["shared_size"].as_u64(), Some(5000 + LICENSE.len() as u64));
    assert_eq!(linux_1_1["deltas"].as_u64(), Some(1));
    let (stored_new, delta_size) =
        (linux_1_1["stored_new"].as_u64().unwrap(), linux_1_1["delta_size"].as_u64().unwrap());
    assert!(stored_new >= app_size, "bin/app is stored whole too: {linux_1_1}");
    assert!(delta_size > 0 && delta_size * 20 < app_size, "one changed line makes a small delta: {linux_1_1}");
    // The license is stored once for every target.
    for (t, v) in [(MAC, "1.0.0"), (WINDOWS, "1.0.0"), (MAC, "1.1.0"), (LINUX, "2.0.0-beta.1")] {
        let r = release(t, v);
        let license = r["files"].as_array().unwrap().iter().find(|f| f["path"] == "share/LICENSE").unwrap();
        assert_eq!(license["leaf"].as_u64(), Some(3), "{t} {v}");
        assert!(r["shared_files"].as_u64().unwrap() >= 1, "{r}");
    }
    let seal = &j["seal"];
    assert_eq!((seal["time"].as_u64(), seal["size"].as_u64()), (Some(T0 + 300), Some(21)));
    assert_eq!(seal["sealed_len"].as_u64(), Some(std::fs::metadata(&c).unwrap().len()));
    assert_eq!(seal["root"].as_str().unwrap().len(), 64);
    assert_eq!(seal["signers"].as_array().unwrap().len(), 1);
    // The filtered JSON lists only what matches, with the same figures.
    let j = sb.dare(&["ls", "app.dare", "--json", "--target", WINDOWS]).json();
    assert_eq!(j["releases"].as_array().unwrap().len(), 1);
    assert_eq!(j["releases"][0]["shared_files"].as_u64(), Some(1), "{j}");
}

#[test]
fn ls_of_a_fresh_container_lists_no_releases() {
    let sb = Sandbox::new();
    sb.keygen("k");
    sb.init("app.dare", "k");
    let run = sb.dare(&["ls", "app.dare"]);
    assert_eq!(run.ok().stdout.lines().next(), Some("example.com/app (app), 0 releases"));
    assert_eq!(sb.dare(&["ls", "app.dare", "--json"]).json()["releases"], serde_json::json!([]));
}

#[test]
fn ls_warns_about_a_torn_tail_and_lists_the_sealed_releases() {
    let (sb, c, _) = released();
    let bytes = std::fs::read(&c).unwrap();
    std::fs::write(&c, &bytes[..bytes.len() - 10]).unwrap();
    let run = sb.dare(&["ls", "app.dare"]);
    run.ok();
    assert!(run.stderr.starts_with("warning: ") && run.stderr.contains("not sealed"), "{}", run.stderr);
    // The beta is not sealed: only the two stable releases are listed.
    assert_eq!(release_lines(&run.stdout).len(), 5, "{}", run.stdout);
    let j = sb.dare(&["ls", "app.dare", "--json"]).json();
    assert_eq!(j["seal"]["time"].as_u64(), Some(T0 + 200));
}

#[test]
fn ls_of_a_damaged_container_fails() {
    let (sb, c, _) = released();
    let mut bytes = std::fs::read(&c).unwrap();
    bytes[3] ^= 1;
    std::fs::write(&c, &bytes).unwrap();
    let line = sb.dare(&["ls", "app.dare"]).refused().to_string();
    assert!(line.starts_with("error: frame 0 at byte 0"), "{line}");
    let run = sb.dare(&["ls", "app.dare", "--json"]);
    run.refused();
    assert_eq!(run.json()["status"], "error");
}
