//! `dare keygen --encryption`: age X25519 identities for private channels
//! (FORMAT.md 13.1), and identities made by Debian's `age-keygen`.
//!
//! The `age-keygen` test needs the `age` package (`apt-get install age`).
//! Without it the test prints why it skips and passes, except under
//! `CI=true`, where it fails.

#[cfg(unix)]
use std::process::Command;

use dare_container::crypt::{Identities, Recipients};

use crate::support::{Sandbox, assert_private};

/// The identity file's text and its one `age1...` recipient (from ID.pub).
fn read_pair(sb: &Sandbox, name: &str) -> (String, String) {
    let id = std::fs::read_to_string(sb.path(name)).unwrap();
    let public = std::fs::read_to_string(sb.path(&format!("{name}.pub"))).unwrap();
    (id, public)
}

#[test]
fn keygen_encryption_writes_an_age_identity_and_its_recipient() {
    let sb = Sandbox::new();
    let run = sb.dare(&["keygen", "--encryption", "--out", "reader.id"]);
    run.ok();
    assert_private(&sb.path("reader.id"));
    let (id, public) = read_pair(&sb, "reader.id");
    // ID.pub is one recipient line, and it is what the command prints.
    assert_eq!(public.lines().count(), 1, "{public:?}");
    assert!(public.ends_with('\n') && public.starts_with("age1"), "{public:?}");
    assert_eq!(run.stdout, public);
    let recipient = Recipients::parse([public.as_str()]).expect("ID.pub is an age recipient");
    assert_eq!(recipient.to_strings(), vec![public.trim().to_string()]);
    // The identity file is in age-keygen's form, and its recipient is ID.pub's.
    let secret: Vec<&str> = id.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(secret.len(), 1, "{id:?}");
    assert!(secret[0].starts_with("AGE-SECRET-KEY-1"), "{id:?}");
    assert!(id.contains(&format!("# public key: {}", public.trim())), "{id:?}");
    let ids = Identities::parse(&id).expect("the identity parses");
    assert_eq!(ids.recipients().to_strings(), recipient.to_strings());
    // The public half is refused where an identity is wanted.
    assert!(Identities::parse(&public).is_err());
    // Two runs make two different identities.
    sb.dare(&["keygen", "--encryption", "--out", "other.id"]).ok();
    assert_ne!(read_pair(&sb, "other.id").1, public);
}

#[test]
fn keygen_encryption_refuses_to_overwrite_without_force() {
    let sb = Sandbox::new();
    sb.dare(&["keygen", "--encryption", "--out", "reader.id"]).ok();
    let before = read_pair(&sb, "reader.id");
    let err = sb.dare(&["keygen", "--encryption", "--out", "reader.id"]).error().to_string();
    assert!(err.contains("already exists") && err.contains("--force"), "{err}");
    assert_eq!(read_pair(&sb, "reader.id"), before, "a refused keygen changed the files");
    // Only the .pub existing is refused too.
    std::fs::remove_file(sb.path("reader.id")).unwrap();
    sb.dare(&["keygen", "--encryption", "--out", "reader.id"]).error();
    assert!(!sb.path("reader.id").exists());
    // --force replaces both, still mode 0600.
    sb.dare(&["keygen", "--encryption", "--out", "reader.id", "--force"]).ok();
    assert_private(&sb.path("reader.id"));
    let after = read_pair(&sb, "reader.id");
    assert_ne!(after.1, before.1);
    let ids = Identities::parse(&after.0).unwrap();
    assert_eq!(ids.recipients().to_strings(), vec![after.1.trim().to_string()]);
}

#[test]
fn keygen_encryption_takes_no_name_and_is_not_a_witness_key() {
    let sb = Sandbox::new();
    for extra in [&["--witness"][..], &["--name", "x"][..]] {
        let mut args = vec!["keygen", "--encryption", "--out", "reader.id"];
        args.extend_from_slice(extra);
        let run = sb.dare(&args);
        assert_eq!(run.code, 2, "{extra:?} is a usage error: {run:?}");
        assert!(run.stderr.contains("cannot be used with"), "{run:?}");
        assert!(!sb.path("reader.id").exists() && !sb.path("reader.id.pub").exists());
    }
}

// Debian's age-keygen is a Linux program: a Windows test binary (under
// Wine) cannot run it.
#[cfg(unix)]
/// Whether `age-keygen` runs here. Without it the test skips (prints why),
/// except under `CI=true`, where a missing tool is a failure.
fn age_keygen_ready(test: &str) -> bool {
    let ok = Command::new("age-keygen").arg("--help").output().is_ok();
    if !ok {
        let why = "age-keygen is not installed (apt-get install age)";
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("{test}: {why}; CI=true, so this fails instead of skipping");
        }
        eprintln!("SKIPPED {test}: {why}");
    }
    ok
}

#[cfg(unix)]
#[test]
fn identities_of_age_keygen_and_dare_keygen_are_one_format() {
    if !age_keygen_ready("identities_of_age_keygen_and_dare_keygen_are_one_format") {
        return;
    }
    let sb = Sandbox::new();
    // age-keygen's identity file parses, and dare finds the recipient age-keygen -y gives.
    let out = Command::new("age-keygen").arg("-o").arg(sb.path("age.id")).output().unwrap();
    assert!(out.status.success(), "age-keygen: {}", String::from_utf8_lossy(&out.stderr));
    let ids = Identities::parse(&std::fs::read_to_string(sb.path("age.id")).unwrap()).expect("age-keygen's identity");
    let y = Command::new("age-keygen").arg("-y").arg(sb.path("age.id")).output().unwrap();
    assert!(y.status.success());
    assert_eq!(ids.recipients().to_strings(), vec![String::from_utf8(y.stdout).unwrap().trim().to_string()]);
    // And the other way: age-keygen -y reads dare's identity and gives ID.pub.
    sb.dare(&["keygen", "--encryption", "--out", "dare.id"]).ok();
    let y = Command::new("age-keygen").arg("-y").arg(sb.path("dare.id")).output().unwrap();
    assert!(y.status.success(), "age-keygen -y dare.id: {}", String::from_utf8_lossy(&y.stderr));
    assert_eq!(String::from_utf8(y.stdout).unwrap(), read_pair(&sb, "dare.id").1);
}
