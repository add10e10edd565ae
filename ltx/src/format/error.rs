//! Typed errors for the LTX codec. Each variant names what is wrong and where, so a
//! corrupt object in a bucket can be diagnosed from the message alone.

/// Which part of an LTX file a truncation was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Header,
    PageHeader,
    PageData,
    PageIndex,
    Trailer,
}

impl std::fmt::Display for Section {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Section::Header => "header",
            Section::PageHeader => "page header",
            Section::PageData => "page data",
            Section::PageIndex => "page index",
            Section::Trailer => "trailer",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LtxError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    #[error("truncated LTX file: unexpected end of file in the {section} at byte {offset}")]
    Truncated { section: Section, offset: u64 },

    #[error("not an LTX file: magic is {found:02x?}, expected \"LTX1\"")]
    BadMagic { found: [u8; 4] },

    #[error("invalid LTX header: {0}")]
    InvalidHeader(String),

    #[error("invalid page frame at byte {offset}: {reason}")]
    InvalidPage { offset: u64, reason: String },

    #[error("page {pgno} at byte {offset} does not decompress: {reason}")]
    Decompress {
        pgno: u32,
        offset: u64,
        reason: String,
    },

    #[error("invalid page index: {0}")]
    InvalidIndex(String),

    #[error("invalid LTX trailer: {0}")]
    InvalidTrailer(String),

    #[error("file checksum mismatch: trailer says {stored:016x}, contents give {computed:016x}")]
    FileChecksumMismatch { stored: u64, computed: u64 },

    #[error(
        "post-apply checksum mismatch: trailer says {stored:016x}, pages give {computed:016x}"
    )]
    PostApplyChecksumMismatch { stored: u64, computed: u64 },

    #[error("{0} bytes of unexpected data after the trailer")]
    TrailingData(u64),

    /// An encoder was used in a way that would produce an invalid file.
    #[error("encoder misuse: {0}")]
    Encode(String),
}

pub type Result<T, E = LtxError> = std::result::Result<T, E>;
