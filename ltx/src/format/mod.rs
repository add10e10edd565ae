//! The LTX file format, version 3 (Litestream 0.5.x), one concept per file.

pub mod checksum;
pub mod decoder;
pub mod encoder;
pub mod error;
pub mod header;
pub mod index;
pub mod page;
pub mod trailer;

pub use checksum::{page_checksum, DbChecksum};
pub use decoder::Decoder;
pub use encoder::Encoder;
pub use error::{LtxError, Section};
pub use header::{extends, lock_pgno, Header, Txid, FLAG_NO_CHECKSUM, HEADER_SIZE};
pub use index::PageIndexEntry;
pub use trailer::Trailer;
