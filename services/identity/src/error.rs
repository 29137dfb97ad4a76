//! The identity service's one error type and its problem+json rendering.

use axum::response::{IntoResponse, Response};
use platform::http::{FieldViolation, Problem, ToProblem};

/// Everything an identity operation can fail with. 4xx variants carry what the client needs;
/// `Internal` is logged and answered with an opaque 500.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("validation failed")]
    Validation(Vec<FieldViolation>),
    #[error("email already registered")]
    EmailTaken,
    /// Unknown email and wrong password look the same, on purpose.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Unknown, expired, revoked or reused refresh token: one answer for all.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    #[error("user not found")]
    UserNotFound,
    /// An answer produced by a platform extractor or check (401, 403, 415...).
    #[error("{0}")]
    Http(Problem),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<Problem> for IdentityError {
    fn from(problem: Problem) -> Self {
        Self::Http(problem)
    }
}

impl From<Vec<FieldViolation>> for IdentityError {
    fn from(violations: Vec<FieldViolation>) -> Self {
        Self::Validation(violations)
    }
}

platform::problem_types! {
    /// Every problem type identity emits besides the shared ones.
    pub const PROBLEM_TYPES;
    /// An account with this email exists.
    pub const EMAIL_TAKEN = (CONFLICT, "email-taken", "Conflict");
    /// Wrong email or password: one answer for both, on purpose.
    pub const INVALID_CREDENTIALS = (UNAUTHORIZED, "invalid-credentials", "Invalid credentials");
    /// Unknown, expired, revoked or reused refresh token.
    pub const INVALID_REFRESH_TOKEN = (UNAUTHORIZED, "invalid-refresh-token", "Invalid refresh token");
}

impl ToProblem for IdentityError {
    /// The problem a client sees.
    fn to_problem(&self) -> Problem {
        match self {
            Self::Validation(violations) => Problem::validation(violations.clone()),
            Self::EmailTaken => Problem::new(EMAIL_TAKEN)
                .with_detail("an account with this email address already exists"),
            Self::InvalidCredentials => Problem::new(INVALID_CREDENTIALS)
                .with_detail("the email address or password is wrong"),
            Self::InvalidRefreshToken => Problem::new(INVALID_REFRESH_TOKEN)
                .with_detail("the refresh token is unknown, expired or revoked; log in again"),
            Self::UserNotFound => Problem::not_found("the user no longer exists"),
            Self::Http(problem) => problem.clone(),
            Self::Internal(cause) => Problem::from_internal(cause),
        }
    }

    fn internal_cause(&self) -> Option<&anyhow::Error> {
        match self {
            Self::Internal(error) => Some(error),
            _ => None,
        }
    }
}

impl IntoResponse for IdentityError {
    fn into_response(self) -> Response {
        platform::http::error_response(&self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_are_opaque() {
        let problem =
            IdentityError::Internal(anyhow::anyhow!("db password is hunter2")).to_problem();
        assert_eq!(
            problem.status(),
            axum::http::StatusCode::INTERNAL_SERVER_ERROR
        );
        assert!(!format!("{:?}", problem.body()).contains("hunter2"));
    }

    #[test]
    fn codes_are_stable() {
        assert_eq!(IdentityError::EmailTaken.to_problem().code(), "email-taken");
        assert_eq!(
            IdentityError::InvalidCredentials.to_problem().code(),
            "invalid-credentials"
        );
        assert_eq!(
            IdentityError::InvalidRefreshToken.to_problem().code(),
            "invalid-refresh-token"
        );
    }
}
