//! Where levels live under a replica root. Litestream 0.5 uses two layouts depending on
//! the backend, and restores find nothing if the wrong one is used.

/// The directory convention of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `ltx/<level in decimal>/` — file, GCS, Azure Blob (and sftp/webdav/nats in Litestream).
    LtxDecimal,
    /// `<level as %04x>/` with no `ltx/` segment — S3 and S3-compatible stores.
    Hex4,
}

impl Layout {
    /// The level directory relative to the replica root, with a trailing slash.
    pub fn level_dir(self, level: u8) -> String {
        match self {
            Layout::LtxDecimal => format!("ltx/{level}/"),
            Layout::Hex4 => format!("{level:04x}/"),
        }
    }

    pub fn key_path(self, key: &super::LtxKey) -> String {
        format!("{}{}", self.level_dir(key.level), key.file_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::LtxKey;

    #[test]
    fn paths_match_litestream() {
        let k = LtxKey::new(9, 1, 5);
        assert_eq!(
            Layout::LtxDecimal.key_path(&k),
            "ltx/9/0000000000000001-0000000000000005.ltx"
        );
        assert_eq!(
            Layout::Hex4.key_path(&k),
            "0009/0000000000000001-0000000000000005.ltx"
        );
    }
}
