//! `dare verify`: exit codes, the one-line error naming the bad frame, JSON
//! output, pinned keys and interrupted publishes.

use dare_container::header::Header;

use crate::support::{LINUX, Sandbox, T0, frames, released};

#[test]
fn json_prints_exactly_one_object_and_moves_human_output_to_stderr() {
    let (sb, c, _) = released();
    let run = sb.dare(&["verify", "app.dare", "--json"]);
    run.ok();
    let j = run.json();
    assert_eq!(j["status"], "ok");
    assert_eq!(j["origin"], "example.com/app");
    assert_eq!(j["trusted_by"], "genesis");
    // Seals: init, 1.0.0, 1.1.0, the beta. Entries and deltas: 5 + (2 + 2) + 1.
    assert_eq!((j["seals"].as_u64(), j["entries"].as_u64()), (Some(4), Some(10)));
    // Leaves: 2 + (5 entries + 3 indexes + manifest) + (4 + 2 + 1) + (1 + 1 + 1).
    assert_eq!(j["leaves"].as_u64(), Some(2 + 9 + 7 + 3));
    assert_eq!(j["sealed_len"].as_u64(), Some(std::fs::metadata(&c).unwrap().len()));
    assert_eq!(j["time"].as_u64(), Some(T0 + 300));
    assert_eq!(j["interrupted_publish"], serde_json::Value::Null);
    assert!(run.stderr.contains("app.dare: OK"), "{}", run.stderr);
    // Without --json the same report is on stdout.
    let human = sb.dare(&["verify", "app.dare"]);
    assert!(human.ok().stdout.contains("app.dare: OK") && human.stderr.is_empty(), "{human:?}");
}

/// The frame index, frame offset and header offset of the first entry of
/// the second release.
fn an_entry(bytes: &[u8]) -> (usize, u64, u64) {
    let all = frames(bytes);
    let seal = all.iter().position(|(_, h)| matches!(h, Header::Seal(_))).unwrap();
    let i = all.iter().skip(seal + 1).position(|(_, h)| matches!(h, Header::Entry(_))).unwrap() + seal + 1;
    (i, all[i].0.offset, all[i].0.header_offset)
}

#[test]
fn a_flipped_leaf_header_byte_names_the_frame_and_its_offset() {
    let (sb, c, _) = released();
    let mut bytes = std::fs::read(&c).unwrap();
    let (index, offset, header) = an_entry(&bytes);
    // `{"kind"` -> `{"jind"`: the header no longer says what it is.
    assert_eq!(bytes[header as usize + 2], b'k');
    bytes[header as usize + 2] ^= 1;
    std::fs::write(&c, &bytes).unwrap();
    let line = sb.dare(&["verify", "app.dare"]).refused().to_string();
    assert!(line.starts_with(&format!("error: frame {index} at byte {offset}: header")), "{line}");
    // The same with --json: one error object on stdout, the line on stderr.
    let run = sb.dare(&["verify", "app.dare", "--json"]);
    assert_eq!(run.refused(), line);
    let j = run.json();
    assert_eq!(j["status"], "error");
    assert_eq!(format!("error: {}", j["error"].as_str().unwrap()), line);
}

#[test]
fn a_flipped_payload_byte_names_the_entry() {
    let (sb, c, _) = released();
    let mut bytes = std::fs::read(&c).unwrap();
    let all = frames(&bytes);
    let (i, (f, _)) =
        all.iter().enumerate().find(|(_, (f, h))| matches!(h, Header::Entry(_)) && f.payload_len > 0).unwrap();
    bytes[f.payload_offset as usize] ^= 0x40;
    std::fs::write(&c, &bytes).unwrap();
    let line = sb.dare(&["verify", "app.dare"]).refused().to_string();
    assert!(line.starts_with(&format!("error: frame {i} at byte {}: payload", f.offset)), "{line}");
}

/// A flipped payload byte of the first frame of `kind` is reported at that
/// frame: deltas are applied to their base and checked, listings are
/// decompressed and checked.
#[test]
fn a_flipped_payload_byte_of_a_delta_or_an_index_names_its_frame() {
    for kind in ["delta", "index"] {
        let (sb, c, _) = released();
        let mut bytes = std::fs::read(&c).unwrap();
        let all = frames(&bytes);
        let (i, (f, _)) = all.iter().enumerate().find(|(_, (_, h))| h.kind() == kind).unwrap();
        bytes[(f.payload_offset + f.payload_len / 2) as usize] ^= 0x40;
        std::fs::write(&c, &bytes).unwrap();
        let line = sb.dare(&["verify", "app.dare"]).refused().to_string();
        assert!(line.starts_with(&format!("error: frame {i} at byte {}: payload", f.offset)), "{kind}: {line}");
    }
}

#[test]
fn a_cut_off_tail_is_a_torn_tail_at_the_last_seal() {
    let (sb, c, _) = released();
    let bytes = std::fs::read(&c).unwrap();
    let all = frames(&bytes);
    let seals: Vec<usize> =
        all.iter().enumerate().filter(|(_, (_, h))| matches!(h, Header::Seal(_))).map(|(i, _)| i).collect();
    let prev = all[seals[seals.len() - 2]].0;
    for cut in [1, 5, 100] {
        std::fs::write(&c, &bytes[..bytes.len() - cut]).unwrap();
        let line = sb.dare(&["verify", "app.dare"]).refused().to_string();
        assert!(line.contains(&format!("torn tail at byte {}", prev.end())), "{line}");
        assert!(line.contains(&format!("frame {}", seals[seals.len() - 2])), "{line}");
        let run = sb.dare(&["verify", "app.dare", "--json"]);
        run.refused();
        assert_eq!(run.json()["status"], "error");
    }
}

#[test]
fn a_container_cut_before_its_only_seal_is_truncated() {
    let sb = Sandbox::new();
    sb.keygen("k");
    let c = sb.init("app.dare", "k");
    let bytes = std::fs::read(&c).unwrap();
    let seal = frames(&bytes).len() - 1;
    let seal_at = frames(&bytes)[seal].0.offset;
    std::fs::write(&c, &bytes[..bytes.len() - 3]).unwrap();
    let line = sb.dare(&["verify", "app.dare"]).refused().to_string();
    assert!(line.starts_with(&format!("error: frame {seal} at byte {seal_at}: ")), "{line}");
    assert!(line.contains("truncated"), "{line}");
}

#[test]
fn an_interrupted_publish_is_a_warning_not_a_failure() {
    let (sb, c, _) = released();
    let bytes = std::fs::read(&c).unwrap();
    let all = frames(&bytes);
    let seals: Vec<u64> = all.iter().filter(|(_, h)| matches!(h, Header::Seal(_))).map(|(f, _)| f.end()).collect();
    let sealed = seals[seals.len() - 2];
    let cut = bytes.len() - 40;
    std::fs::write(&c, &bytes[..cut]).unwrap();
    let pending = sb.path("app.dare.pending");
    std::fs::write(&pending, format!("{{\"sealed_len\": {sealed}}}\n")).unwrap();
    let run = sb.dare(&["verify", "app.dare"]);
    run.ok();
    assert!(run.stderr.starts_with("warning: ") && run.stderr.contains("interrupted publish"), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("after byte {sealed}")), "{}", run.stderr);
    assert!(run.stdout.contains("OK"));
    let run = sb.dare(&["verify", "app.dare", "--json"]);
    let j = run.ok().json();
    assert_eq!(j["interrupted_publish"].as_u64(), Some(cut as u64 - sealed));
    assert_eq!(j["sealed_len"].as_u64(), Some(sealed));
    assert_eq!(j["time"].as_u64(), Some(T0 + 200), "the previous release");
    // A pending file that names another length does not excuse the tail.
    std::fs::write(&pending, format!("{{\"sealed_len\": {}}}\n", sealed - 1)).unwrap();
    sb.dare(&["verify", "app.dare"]).refused();
}

#[test]
fn trust_pins_the_keys_that_must_sign() {
    let (sb, _, key) = released();
    let (_, other) = sb.keygen("other.key");
    let public = std::fs::read_to_string(format!("{}.pub", key.display())).unwrap();
    let line = sb.dare(&["verify", "app.dare", "--trust", "other.key.pub"]).refused().to_string();
    assert!(line.contains("signature"), "{line}");
    sb.dare(&["verify", "app.dare", "--trust", &other]).refused();
    let run = sb.dare(&["verify", "app.dare", "--trust", "release.key.pub"]);
    assert!(run.ok().stdout.contains("--trust keys"), "{}", run.stdout);
    sb.dare(&["verify", "app.dare", "--trust", public.trim()]).ok();
    let j = sb.dare(&["verify", "app.dare", "--trust", public.trim(), "--json"]).json();
    assert_eq!(j["trusted_by"], "--trust");
    // Neither a key nor a file.
    let line = sb.dare(&["verify", "app.dare", "--trust", "no-such-key"]).error().to_string();
    assert!(line.contains("no-such-key"), "{line}");
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let sb = Sandbox::new();
    let line = sb.dare(&["verify", "missing.dare"]).error().to_string();
    assert!(line.contains("missing.dare"), "{line}");
    std::fs::write(sb.path("empty.dare"), b"").unwrap();
    let line = sb.dare(&["verify", "empty.dare"]).error().to_string();
    assert!(line.contains("empty.dare is not a dare container: it is empty"), "{line}");
    // Hostile bytes: a frame claiming 2^62 bytes, and noise.
    let mut huge = vec![0xF7, 0x40, 0, 0, 0, 0, 0, 0, 0];
    huge.extend_from_slice(&[0; 32]);
    std::fs::write(sb.path("huge.dare"), &huge).unwrap();
    let line = sb.dare(&["verify", "huge.dare"]).refused().to_string();
    assert!(line.starts_with("error: frame 0 at byte 0: ") && line.contains("truncated"), "{line}");
    let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(sb.path("noise.dare"), &noise).unwrap();
    sb.dare(&["verify", "noise.dare"]).error();
    sb.dare(&["ls", "noise.dare"]).error();
}

#[test]
fn usage_errors_exit_2() {
    let sb = Sandbox::new();
    for args in [
        &[][..],
        &["nope"][..],
        &["verify"][..],
        &["verify", "a.dare", "--bogus"][..],
        &["keygen"][..],
        &["init", "a.dare", "--origin", "example.com/app"][..],
        &["init", "a.dare", "--key", "k", "--origin", "o", "--threshold", "two"][..],
        &["ls", "a.dare", "--target"][..],
    ] {
        let run = sb.dare(args);
        assert_eq!(run.code, 2, "dare {args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "dare {args:?}: {run:?}");
    }
    sb.dare(&["--help"]).ok();
    assert!(sb.dare(&["--version"]).ok().stdout.starts_with("dare "));
}

/// Exit 3 for a container that fails verification, whichever command reads
/// it; exit 1 for a missing file or bad input. With `--json` the error
/// object carries the same code and a kind.
#[test]
fn a_tampered_container_exits_3_and_bad_input_exits_1() {
    let (sb, c, _) = released();
    let out = sb.path("out");
    let out = out.to_str().unwrap();
    // Bad input first, on the intact container: an unknown target, a version not there.
    sb.dare(&["extract", "app.dare", "--target", "no-such-target", "--out", out]).error();
    sb.dare(&["extract", "app.dare", "--target", LINUX, "--version", "9.9.9", "--out", out]).error();
    sb.dare(&["extract", "missing.dare", "--target", LINUX, "--out", out]).error();
    let missing = sb.dare(&["verify", "missing.dare", "--json"]);
    missing.error();
    let j = missing.json();
    assert_eq!((j["kind"].as_str(), j["exit_code"].as_u64()), (Some("error"), Some(1)), "{j}");

    // One payload byte of the beta build (the last release: Linux only) flipped.
    let mut bytes = std::fs::read(&c).unwrap();
    let all = frames(&bytes);
    let seals: Vec<usize> =
        all.iter().enumerate().filter(|(_, (_, h))| matches!(h, Header::Seal(_))).map(|(i, _)| i).collect();
    let (f, _) =
        all[seals[seals.len() - 2]..].iter().find(|(f, h)| matches!(h, Header::Entry(_)) && f.payload_len > 0).unwrap();
    bytes[f.payload_offset as usize] ^= 0x40;
    std::fs::write(&c, &bytes).unwrap();
    let line =
        sb.dare(&["extract", "app.dare", "--target", LINUX, "--channel", "beta", "--out", out]).refused().to_string();
    assert!(line.contains("payload") || line.contains("digest"), "{line}");
    let run = sb.dare(&["verify", "app.dare", "--json"]);
    run.refused();
    let j = run.json();
    assert_eq!(
        (j["status"].as_str(), j["kind"].as_str(), j["exit_code"].as_u64()),
        (Some("error"), Some("verification"), Some(3)),
        "{j}"
    );
}
