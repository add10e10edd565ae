//! Names of LTX objects: `<level dir>/<min:016x>-<max:016x>.ltx`.

use crate::format::Txid;

/// Level 9 holds snapshots; 0..=8 are L0 (one file per sync) and compaction levels.
pub const SNAPSHOT_LEVEL: u8 = 9;
pub const MAX_LEVEL: u8 = 9;

/// Identifies one LTX object in a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LtxKey {
    pub level: u8,
    pub min_txid: Txid,
    pub max_txid: Txid,
}

impl LtxKey {
    pub fn new(level: u8, min_txid: Txid, max_txid: Txid) -> Self {
        LtxKey {
            level,
            min_txid,
            max_txid,
        }
    }

    /// True when this file continues a history that ends at `prev_max` (its first TXID
    /// is the next one): the contiguity rule for following and applying files.
    pub fn follows(&self, prev_max: Txid) -> bool {
        Some(self.min_txid) == prev_max.checked_add(1)
    }

    /// True when this file can be applied on a history that ends at `have`
    /// ([`crate::format::extends`]).
    pub fn extends(&self, have: Txid) -> bool {
        crate::format::extends(self.min_txid, self.max_txid, have)
    }

    /// `%016x-%016x.ltx`, lowercase, as Litestream names files.
    pub fn file_name(&self) -> String {
        format_file_name(self.min_txid, self.max_txid)
    }
}

impl std::fmt::Display for LtxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "L{}/{}", self.level, self.file_name())
    }
}

pub fn format_file_name(min: Txid, max: Txid) -> String {
    format!("{min:016x}-{max:016x}.ltx")
}

/// Parses a file name; anything else (temp files, uppercase hex) is not an LTX object,
/// matching Litestream's `^[0-9a-f]{16}-[0-9a-f]{16}\.ltx$`.
pub fn parse_file_name(name: &str) -> Option<(Txid, Txid)> {
    // `get` ranges, never slicing: names come from the store and may hold any UTF-8.
    let b = name.as_bytes();
    if b.len() != 37 || b[16] != b'-' || name.get(33..) != Some(".ltx") {
        return None;
    }
    let hex = |s: &str| -> Option<Txid> {
        if s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        {
            Txid::from_str_radix(s, 16).ok()
        } else {
            None
        }
    };
    Some((hex(name.get(0..16)?)?, hex(name.get(17..33)?)?))
}

/// Formats a TXID the way Litestream prints and accepts it (16 hex digits).
pub fn format_txid(txid: Txid) -> String {
    format!("{txid:016x}")
}

/// Accepts 16-digit hex (Litestream's form) or a plain decimal number.
pub fn parse_txid(s: &str) -> Option<Txid> {
    if s.len() == 16 {
        Txid::from_str_radix(s, 16).ok()
    } else {
        s.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let k = LtxKey::new(0, 1, 0x2a);
        assert_eq!(k.file_name(), "0000000000000001-000000000000002a.ltx");
        assert_eq!(parse_file_name(&k.file_name()), Some((1, 0x2a)));
        assert_eq!(
            parse_file_name("0000000000000001-000000000000002A.ltx"),
            None
        );
        assert_eq!(
            parse_file_name("0000000000000001-000000000000002a.ltx.tmp"),
            None
        );
        assert_eq!(parse_txid("000000000000000a"), Some(10));
        assert_eq!(parse_txid("10"), Some(10));
    }

    /// Object names come from the store, written by anyone: no name may panic the parser
    /// (a panic here would abort the host application through the VFS).
    #[test]
    fn odd_names_are_refused_not_panicked_on() {
        // 37 bytes, '-' at 16, a two-byte character across byte 33.
        let name = "0000000000000001-000000000000000\u{e9}ltx";
        assert_eq!(name.len(), 37);
        assert_eq!(parse_file_name(name), None);
        assert_eq!(
            parse_file_name("\u{e9}000000000000000-0000000000000001.ltx"),
            None
        );
        assert_eq!(
            parse_txid("\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}"),
            None
        );
    }

    proptest::proptest! {
        #[test]
        fn names_never_panic(s in "\\PC{0,40}") {
            let _ = parse_file_name(&s);
            let _ = parse_txid(&s);
        }

        #[test]
        fn near_names_never_panic(a in "[0-9a-f\u{e9}\u{4e2d}]{14,17}", b in "[0-9a-f\u{e9}.-]{14,22}") {
            let _ = parse_file_name(&format!("{a}-{b}"));
        }
    }
}
