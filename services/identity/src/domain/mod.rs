//! Validated values and rules of identity, free of HTTP and SQL.

mod email;
mod password;
pub mod session;
mod user;

pub use email::Email;
pub use password::{Password, MAX_CHARS as PASSWORD_MAX_CHARS, MIN_CHARS as PASSWORD_MIN_CHARS};
pub use user::{roles_from_text, roles_to_text, User, UserName, NAME_MAX_CHARS};

/// Why a value was refused, phrased for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);
