//! The `micromart` command: composes every service in one process for the embedded mode
//! (`up`), or runs one of them for the distributed mode (`serve`), plus `migrate` and `seed`.

pub mod cli;
pub mod embedded;
pub mod openapi;
pub mod shop;

/// The commented defaults of every section, embedded in the binary.
pub const DEFAULTS: &str = include_str!("../config/micromart.default.toml");
