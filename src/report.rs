//! Output helpers: with `--json`, stdout carries exactly one JSON object and
//! human output moves to stderr.

use std::io::Write;

/// `println!` that ignores a closed stdout (`dare ls | head`) instead of panicking.
#[macro_export]
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// Prints one JSON object on its own line to stdout.
pub fn print_json(value: &impl serde::Serialize) {
    let mut out = std::io::stdout().lock();
    // A closed stdout is not worth a second error.
    let _ = serde_json::to_writer(&mut out, value);
    let _ = writeln!(out);
}

/// Where human-readable lines go: stdout normally, stderr under `--json`.
pub struct Human {
    json: bool,
}

impl Human {
    pub fn new(json: bool) -> Self {
        Human { json }
    }

    pub fn line(&self, s: impl AsRef<str>) {
        if self.json {
            eprintln!("{}", s.as_ref());
        } else {
            crate::outln!("{}", s.as_ref());
        }
    }
}

/// Bytes in a human unit.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// A Unix time as an RFC 3339 UTC timestamp.
pub fn time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_times_and_sizes() {
        assert_eq!(super::time(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::time(1_764_057_600), "2025-11-25T08:00:00Z");
        assert_eq!(super::time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::bytes(1023), "1023 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
    }
}
