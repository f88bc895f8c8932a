//! `examples/self_update.rs`, the app that replaces its own executable, run
//! as a user runs it: on Unix by renaming over itself, on Windows (under
//! Wine in `.ci/windows-tests`) by renaming the running executable aside to
//! `<name>.old` first. `cargo test` builds the examples before running the
//! tests; a filtered run needs `cargo build --example self_update` first.

use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::support::Sandbox;

/// The example as cargo built it: `target/<profile>/examples/`, beside the
/// `deps/` directory this test binary is in.
fn example() -> PathBuf {
    let me = std::env::current_exe().expect("the test binary's path");
    let profile = me.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/");
    let exe = profile.join("examples").join(format!("self_update{}", std::env::consts::EXE_SUFFIX));
    assert!(
        exe.is_file(),
        "{} is not built: `cargo test` builds it, or run `cargo build --example self_update` first",
        exe.display()
    );
    exe
}

/// Runs the app with the mirror and key it reads: exit code and stdout.
fn run(exe: &std::path::Path, mirror: &std::path::Path, key: &str) -> (Option<i32>, String) {
    let out = Command::new(exe)
        .env("SELF_UPDATE_MIRROR", mirror)
        .env("SELF_UPDATE_KEY", key)
        .env_remove("DARE_LOG")
        .output()
        .expect("the example runs");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), stdout)
}

#[test]
fn the_self_update_example_replaces_its_running_executable() {
    let sb = Sandbox::new();
    let (key, public) = sb.keygen("release.key");
    let container = sb.init("app.dare", key.to_str().unwrap());
    let name = format!("self_update{}", std::env::consts::EXE_SUFFIX);
    let original = std::fs::read(example()).unwrap();

    // The published build: the same program with bytes after it that mark it
    // (an executable runs with data appended), at bin/<name>.
    let mut published = original.clone();
    published.extend_from_slice(b"\n-- published build 1.0.0 --\n");
    let build = sb.path("build");
    std::fs::create_dir_all(build.join("bin")).unwrap();
    let program = build.join("bin").join(&name);
    std::fs::write(&program, &published).unwrap();
    dare_container::fsys::set_mode(&program, 0o755).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let artifact = format!("{}={}", dare_updater::host_target(), build.display());
    let time = (now - 60).to_string();
    sb.dare(&[
        "publish",
        "app.dare",
        "--key",
        "release.key",
        "--version",
        "1.0.0",
        "--time",
        &time,
        "--artifact",
        &artifact,
    ])
    .ok();

    // The app as installed: its running executable is the original.
    let app = sb.path("app");
    std::fs::create_dir_all(&app).unwrap();
    let exe = app.join(&name);
    std::fs::copy(example(), &exe).unwrap();
    let mut old = exe.clone().into_os_string();
    old.push(".old");
    let old = PathBuf::from(old);

    // First start: it installs 1.0.0, puts the new program in its own place
    // while running, and the new one starts and finds itself up to date.
    let (_, stdout) = run(&exe, &container, &public);
    assert!(stdout.contains("replaced myself with 1.0.0; restarting"), "{stdout}");
    assert!(stdout.contains("up to date (1.0.0)"), "{stdout}");
    assert_eq!(std::fs::read(&exe).unwrap(), published, "the executable is the published build");
    // Windows renamed the running one aside (it was still running while the
    // new one started); Unix renamed over it.
    assert_eq!(old.exists(), cfg!(windows), "{}", old.display());
    let live = dare_updater::current_dir(&app.join(".self_update").join("install")).expect("a build is installed");
    assert_eq!(std::fs::read(live.join("bin").join(&name)).unwrap(), published);

    // Next start: up to date, and what was set aside is gone.
    let (_, stdout) = run(&exe, &container, &public);
    assert!(stdout.contains("up to date (1.0.0)") && !stdout.contains("replaced"), "{stdout}");
    assert!(!old.exists(), "{} is removed on the next start", old.display());
}
