//! Rebuilding a database from a replica.

pub mod apply;
pub mod engine;
pub mod hydrated;
mod overlay;
pub mod plan;
mod stream;

pub use apply::{ApplyError, DbSummary, DbWriter};
pub use engine::{
    list_for_target, restore, NoProgress, Progress, RestoreError, RestoreOptions, RestoreSummary,
};
pub use overlay::Overlay;
pub use plan::{plan, PlanError, Target};
