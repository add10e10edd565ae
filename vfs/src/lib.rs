//! Not built yet: see the project's issues. This crate exists so the workspace layout is in place.
