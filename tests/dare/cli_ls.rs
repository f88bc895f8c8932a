//! `dare ls`: releases, filters, JSON and the latest seal.

use crate::support::{LINUX, MAC, Sandbox, T0, WINDOWS, released};

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
    assert!(find("1.0.0", LINUX).contains("2 file(s)"));
    assert!(find("1.0.0", WINDOWS).ends_with("latest"));
    assert!(find("2.0.0-beta.1", LINUX).contains("beta"));
    let seal = lines.last().unwrap();
    assert!(seal.starts_with("sealed 2023-11-14T22:16:40Z by release: tree size 11"), "{seal}");
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
    let linux_1_0 = releases.iter().find(|r| r["target"] == LINUX && r["version"] == "1.0.0").unwrap();
    assert_eq!(linux_1_0["channel"], "stable");
    assert_eq!(linux_1_0["latest"], false);
    let files = linux_1_0["files"].as_array().unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["bin/app", "share/big"]);
    assert_eq!(files[1]["size"].as_u64(), Some(5000));
    assert_eq!(files[1]["compression"], "zstd");
    assert!(files[1]["stored_size"].as_u64().unwrap() < 5000);
    assert_eq!(files[0]["compression"], "none");
    assert_eq!(files[0]["mode"], "755");
    assert_eq!(linux_1_0["size"].as_u64(), Some(5000 + "linux 1.0.0".len() as u64));
    let seal = &j["seal"];
    assert_eq!((seal["time"].as_u64(), seal["size"].as_u64()), (Some(T0 + 200), Some(11)));
    assert_eq!(seal["sealed_len"].as_u64(), Some(std::fs::metadata(&c).unwrap().len()));
    assert_eq!(seal["root"].as_str().unwrap().len(), 64);
    assert_eq!(seal["signers"].as_array().unwrap().len(), 1);
    // The filtered JSON lists only what matches.
    let j = sb.dare(&["ls", "app.dare", "--json", "--target", WINDOWS]).json();
    assert_eq!(j["releases"].as_array().unwrap().len(), 1);
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
    // The second release is not sealed: only the first one is listed.
    assert_eq!(release_lines(&run.stdout).len(), 3, "{}", run.stdout);
    let j = sb.dare(&["ls", "app.dare", "--json"]).json();
    assert_eq!(j["seal"]["time"].as_u64(), Some(T0 + 100));
}

#[test]
fn ls_of_a_damaged_container_fails() {
    let (sb, c, _) = released();
    let mut bytes = std::fs::read(&c).unwrap();
    bytes[3] ^= 1;
    std::fs::write(&c, &bytes).unwrap();
    let line = sb.dare(&["ls", "app.dare"]).error().to_string();
    assert!(line.starts_with("error: frame 0 at byte 0"), "{line}");
    let run = sb.dare(&["ls", "app.dare", "--json"]);
    run.error();
    assert_eq!(run.json()["status"], "error");
}
