//! Byte sizes as Kubernetes quantities (`64Mi`, `1Gi`, `500M`, `1048576`).

/// The OpenAPI pattern every size field carries.
pub const QUANTITY_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$";

/// Parses a quantity matching [`QUANTITY_PATTERN`] into bytes.
pub fn parse_quantity(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a size like 64Mi, 1Gi or 500M");
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() {
        return Err(bad());
    }
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let v = n * mult;
    if !v.is_finite() || v > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quantities() {
        assert_eq!(parse_quantity("64Mi").unwrap(), 64 << 20);
        assert_eq!(parse_quantity("1Gi").unwrap(), 1 << 30);
        assert_eq!(parse_quantity("500M").unwrap(), 500_000_000);
        assert_eq!(parse_quantity("4096").unwrap(), 4096);
        assert_eq!(parse_quantity("1.5Ki").unwrap(), 1536);
        for bad in ["", "Mi", "64mb", "-1", "1 Gi"] {
            assert!(parse_quantity(bad).is_err(), "{bad:?} accepted");
        }
    }
}
