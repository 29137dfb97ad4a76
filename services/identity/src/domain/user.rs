//! Users: display names, roles, and the user as the rest of the service sees it.

use chrono::{DateTime, Utc};
use platform::auth::Role;
use uuid::Uuid;

use super::{Email, Invalid};

/// A display name: trimmed, 1..=100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

pub const NAME_MAX_CHARS: usize = 100;

impl UserName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(Invalid("must not be empty".into()));
        }
        // The limit applies to the text as sent, as the published schema's maxLength does.
        if raw.chars().count() > NAME_MAX_CHARS {
            return Err(Invalid(format!(
                "must be at most {NAME_MAX_CHARS} characters"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(Invalid("must not contain control characters".into()));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A user account (without its password hash, which only the login path reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub email: Email,
    pub name: String,
    pub roles: Vec<Role>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Roles as stored: comma-separated, in a stable order.
pub fn roles_to_text(roles: &[Role]) -> String {
    let mut roles = roles.to_vec();
    roles.sort_by_key(|r| match r {
        Role::Customer => 0,
        Role::Admin => 1,
    });
    roles.dedup();
    platform::auth::Caller::roles_header(&roles)
}

/// Parses stored roles; an unknown role is data corruption, not something to skip silently.
pub fn roles_from_text(text: &str) -> Result<Vec<Role>, Invalid> {
    text.split(',')
        .filter(|r| !r.is_empty())
        .map(|r| Role::parse(r).ok_or_else(|| Invalid(format!("unknown role {r:?}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            UserName::parse("  Ada Lovelace ").unwrap().as_str(),
            "Ada Lovelace"
        );
        assert!(UserName::parse("   ").is_err());
        assert!(UserName::parse(&"é".repeat(100)).is_ok());
        assert!(UserName::parse(&"é".repeat(101)).is_err());
        // The limit counts what was sent: padding does not smuggle in a longer text.
        assert!(UserName::parse(&format!(" {}", "é".repeat(100))).is_err());
        assert!(UserName::parse("bad\u{0}name").is_err());
    }

    #[test]
    fn roles_round_trip_in_a_stable_order() {
        let text = roles_to_text(&[Role::Admin, Role::Customer, Role::Admin]);
        assert_eq!(text, "customer,admin");
        assert_eq!(
            roles_from_text(&text).unwrap(),
            vec![Role::Customer, Role::Admin]
        );
        assert!(roles_from_text("customer,root").is_err());
        assert!(roles_from_text("").unwrap().is_empty());
    }
}
