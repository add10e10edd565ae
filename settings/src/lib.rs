//! The settings contract shared by the three places that speak it: the operator's webhook
//! (which writes the environment of injected pods), `hydrator init` (which turns it into
//! `vfs.env`) and the VFS (which reads it at open). One definition of every variable name,
//! and one parser for durations and sizes, so a value the CRD accepts is a value the VFS
//! accepts.

pub mod duration;
pub mod env;
pub mod size;

pub use duration::{parse_duration, DurationError, DURATION_PATTERN};
pub use size::{parse_size, SizeError, QUANTITY_PATTERN};
