//! Durations as Go's `time.ParseDuration` spells them (`500ms`, `1s`, `1m30s`, `1.5h`),
//! the form both Litestream and Kubernetes users know. A bare number is read as seconds
//! (older VFS settings used it). No maintained crate parses exactly this grammar
//! (`humantime` refuses fractions such as `1.5s`, which the CRD pattern allows), so this
//! is the one hand-written parser, shared by the CRD validation, the webhook and the VFS.

use std::time::Duration;

/// The OpenAPI pattern every duration field of the CRD carries (a subset of what
/// [`parse_duration`] accepts).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// The longest duration accepted: far beyond any sensible setting, far below overflow.
pub const MAX: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A value that is not a duration; the message names it and shows the accepted form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration like 500ms, 1s, 1m30s or 24h")]
pub struct DurationError(pub String);

/// Parses `s`. Never panics, whatever the input.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError(s.to_string());
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        // Bare number: seconds.
        return secs(t.parse::<f64>().map_err(|_| bad())?).ok_or_else(bad);
    }
    let mut rest = t;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += n * scale;
    }
    secs(total).ok_or_else(bad)
}

fn secs(v: f64) -> Option<Duration> {
    (v.is_finite() && v >= 0.0 && v <= MAX.as_secs_f64()).then(|| Duration::from_secs_f64(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let ok = [
            ("1s", 1000),
            ("500ms", 500),
            ("1m30s", 90_000),
            ("1h30m", 5_400_000),
            ("24h", 86_400_000),
            ("1.5s", 1500),
            ("1.5h", 5_400_000),
            ("250us", 0),
            ("0", 0),
            ("5", 5000),
            ("2h45m", 9_900_000),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_duration(s).unwrap().as_millis(), ms, "{s}");
        }
        for bad in [
            "",
            "s",
            "1x",
            "-1s",
            "1 s",
            "1sm",
            "ms",
            "1.2.3s",
            "9999999999h",
            "1e9s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn everything_the_crd_pattern_admits_parses() {
        // Strings built from the pattern's alphabet: number (with optional fraction) + unit,
        // repeated. The CRD admits them, so the VFS must too.
        for a in ["0", "1", "10", "0.5", "90"] {
            for u in ["ms", "s", "m", "h"] {
                for b in ["", "1s", "30m", "0.25ms"] {
                    let s = format!("{a}{u}{b}");
                    assert!(parse_duration(&s).is_ok(), "{s}");
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse_duration(&s);
        }
    }
}
