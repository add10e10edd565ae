//! Byte sizes, in both spellings users bring: Kubernetes quantities (`64Mi`, `1Gi`, `500M`,
//! `1.5Ki`) and the VFS's byte units (`64MiB`, `64MB`, `1048576`). One parser for the CRD
//! validation, the webhook and the VFS.

/// The OpenAPI pattern every size field of the CRD carries (a subset of [`parse_size`]).
pub const QUANTITY_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$";

/// A value that is not a size; the message names it and shows the accepted form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a size like 64Mi, 1Gi, 500M or 1048576")]
pub struct SizeError(pub String);

/// Parses `s` into bytes. Never panics, whatever the input.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let bad = || SizeError(s.to_string());
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    if num.is_empty() {
        return Err(bad());
    }
    let mult: u64 = match suffix {
        "" | "B" | "b" => 1,
        "k" | "K" | "kB" | "KB" | "kb" => 1000,
        "M" | "MB" | "mb" => 1_000_000,
        "G" | "GB" | "gb" => 1_000_000_000,
        "T" | "TB" | "tb" => 1_000_000_000_000,
        "Ki" | "KiB" | "kib" => 1 << 10,
        "Mi" | "MiB" | "mib" => 1 << 20,
        "Gi" | "GiB" | "gib" => 1 << 30,
        "Ti" | "TiB" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult).ok_or_else(bad);
    }
    let n: f64 = num.parse().map_err(|_| bad())?;
    let v = n * mult as f64;
    if !v.is_finite() || v < 0.0 || v >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_spellings() {
        for (s, n) in [
            ("64Mi", 64 << 20),
            ("64MiB", 64 << 20),
            ("1Gi", 1 << 30),
            ("500M", 500_000_000),
            ("64MB", 64_000_000),
            ("4096", 4096),
            ("1.5Ki", 1536),
        ] {
            assert_eq!(parse_size(s), Ok(n), "{s}");
        }
        for bad in [
            "",
            "abc",
            "1x",
            "-1",
            "Mi",
            "99999999999999999999Ti",
            "1.2.3",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse_size(&s);
        }
    }
}
