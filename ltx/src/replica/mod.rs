//! The replica layout on object storage, compatible with Litestream 0.5.

mod backend;
pub mod epoch;
pub mod error;
pub mod key;
pub mod layout;
pub mod probe;
pub mod store;
pub mod url;

pub use epoch::EpochRecord;
pub use error::ReplicaError;
pub use key::{format_txid, parse_txid, LtxKey, SNAPSHOT_LEVEL};
pub use layout::Layout;
pub use probe::CreateOnly;
pub use store::{Credentials, FileIndex, LtxFileInfo, Replica, ReplicaOptions};
pub use url::ReplicaUrl;
