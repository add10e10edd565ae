//! LTX, the transaction file format of Litestream 0.5, and the replica layout on object
//! storage. This crate is the only place either is defined.
//!
//! - [`format`]: streaming encoder and validating decoder for single LTX files.
//! - [`replica`]: object keys, listing, ranged page reads and writes on opendal.
//! - [`restore`]: picking the files that rebuild a database and applying them.

pub mod compact;
pub mod dbfile;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
pub mod replica;
pub mod restore;

pub use format::*;
