//! The fuzz targets' bodies (`dare_mirror::fuzzing`: the Range header and
//! request paths) under proptest: arbitrary bytes and well-formed values
//! with hostile numbers, encodings and dot segments. None may panic.

use dare_mirror::fuzzing;
use proptest::prelude::*;

fn range_input(max: u8, len: u64, value: &str) -> Vec<u8> {
    let mut input = vec![max];
    input.extend_from_slice(&len.to_be_bytes());
    input.extend_from_slice(value.as_bytes());
    input
}

fn spec() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| format!("{a}-{b}")),
        (0u64..2000, 0u64..2000).prop_map(|(a, b)| format!("{a}-{}", a + b)),
        any::<u64>().prop_map(|a| format!("{a}-")),
        (0u64..5000).prop_map(|a| format!("-{a}")),
        "[0-9 ,=-]{0,8}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn range_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..80)) {
        fuzzing::range(&data);
    }

    #[test]
    fn range_on_well_formed_headers(
        max in any::<u8>(), len in prop_oneof![0u64..3000, any::<u64>()],
        specs in proptest::collection::vec(spec(), 1..8), unit in prop_oneof![Just("bytes"), Just("BYTES"), Just("items")],
    ) {
        fuzzing::range(&range_input(max, len, &format!("{unit}={}", specs.join(","))));
        fuzzing::range(&range_input(max, len, &format!("{unit}= {} ,", specs.join(" , "))));
    }

    #[test]
    fn path_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..80)) {
        fuzzing::path(&data);
    }

    #[test]
    fn path_on_hostile_segments(
        segments in proptest::collection::vec(
            prop_oneof![
                Just("..".to_string()), Just(".".to_string()), Just("%2e%2E".to_string()), Just("%2f".to_string()),
                Just("%5c".to_string()), Just("%00".to_string()), Just(".hidden".to_string()), Just(String::new()),
                Just("%+1".to_string()), Just("%-1".to_string()), Just("%1".to_string()), Just("%zz".to_string()),
                "[a-z0-9._%~-]{1,8}",
            ],
            1..6,
        ),
    ) {
        fuzzing::path(format!("/{}", segments.join("/")).as_bytes());
    }
}

#[test]
fn the_valid_inputs_are_accepted() {
    // These reach the checks after the parsers (they accept them).
    let range = range_input(10, 1000, "bytes=0-99,-10,500-");
    fuzzing::range(&range);
    fuzzing::path(b"/releases/app%20one.dare");
    seed("range", "three", &range);
    seed("path", "encoded", b"/releases/app%20one.dare");
}

/// With `DARE_FUZZ_SEEDS=<dir>` (`.ci/run` sets it to `fuzz/corpus`), writes
/// `input` as a seed of fuzz target `target`, so the fuzzer starts from
/// inputs that reach deep code.
fn seed(target: &str, name: &str, input: &[u8]) {
    if let Some(dir) = std::env::var_os("DARE_FUZZ_SEEDS") {
        let dir = std::path::Path::new(&dir).join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), input).unwrap();
    }
}

#[test]
fn a_percent_sign_takes_two_hex_digits_not_a_sign() {
    // Found by `path_on_hostile_segments`: `%+1` decoded as byte 1.
    for raw in ["/%+1", "/a%-f", "/%+F.dare"] {
        fuzzing::path(raw.as_bytes());
    }
}
