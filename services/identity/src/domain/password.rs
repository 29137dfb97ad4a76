//! The password policy (NIST SP 800-63B flavoured: length over composition rules).

use super::{Email, Invalid};

/// The shortest and longest passwords accepted, in characters. The upper bound keeps argon2
/// input bounded; the lower bound is what makes guessing expensive.
pub const MIN_CHARS: usize = 10;
pub const MAX_CHARS: usize = 128;

/// A password that satisfies the policy. Never printed.
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

impl Password {
    /// Checks the policy: 10..=128 characters, not one character repeated, not the email.
    /// The password is taken as typed (no trimming): spaces are legitimate characters.
    pub fn parse(raw: &str, email: Option<&Email>) -> Result<Self, Invalid> {
        let chars = raw.chars().count();
        if chars < MIN_CHARS {
            return Err(Invalid(format!("must be at least {MIN_CHARS} characters")));
        }
        if chars > MAX_CHARS {
            return Err(Invalid(format!("must be at most {MAX_CHARS} characters")));
        }
        let mut all = raw.chars();
        if let Some(first) = all.next() {
            if all.all(|c| c == first) {
                return Err(Invalid("must not be a single character repeated".into()));
            }
        }
        if email.is_some_and(|email| raw.trim().to_lowercase() == email.as_str()) {
            return Err(Invalid("must not be the same as the email address".into()));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn email() -> Email {
        Email::parse("alice@example.com").unwrap()
    }

    #[test]
    fn accepts_a_reasonable_password() {
        assert!(Password::parse("correct horse battery", Some(&email())).is_ok());
        assert!(Password::parse(&"ab".repeat(64), None).is_ok());
    }

    #[test]
    fn length_bounds_count_characters_not_bytes() {
        assert!(Password::parse("abcdefghi", None).is_err());
        assert!(Password::parse("abcdefghij", None).is_ok());
        // Ten two-byte characters are ten characters.
        assert!(Password::parse("éàéàéàéàéà", None).is_ok());
        assert!(Password::parse(&"ab".repeat(65), None).is_err());
    }

    #[test]
    fn refuses_a_repeated_character() {
        let error = Password::parse("aaaaaaaaaaaa", None).unwrap_err();
        assert!(error.0.contains("single character"), "{error}");
    }

    #[test]
    fn refuses_the_email_in_any_case() {
        assert!(Password::parse("alice@example.com", Some(&email())).is_err());
        assert!(Password::parse("ALICE@Example.com", Some(&email())).is_err());
        assert!(Password::parse("alice@example.com", None).is_ok());
    }

    #[test]
    fn debug_does_not_print_the_password() {
        let password = Password::parse("super secret words", None).unwrap();
        assert!(!format!("{password:?}").contains("secret"));
    }

    proptest! {
        #[test]
        fn short_passwords_are_refused(raw in ".{0,9}") {
            prop_assert!(Password::parse(&raw, None).is_err());
        }

        #[test]
        fn a_repeated_character_is_refused_at_any_length(c in any::<char>(), n in 10usize..=128) {
            let raw: String = std::iter::repeat_n(c, n).collect();
            prop_assert!(Password::parse(&raw, None).is_err());
        }

        #[test]
        fn accepted_passwords_obey_every_rule(raw in ".{10,140}") {
            if let Ok(password) = Password::parse(&raw, Some(&email())) {
                let n = password.expose().chars().count();
                prop_assert!((MIN_CHARS..=MAX_CHARS).contains(&n));
                prop_assert!(password.expose().chars().any(|c| !raw.starts_with(c)));
                prop_assert_ne!(password.expose().to_lowercase(), "alice@example.com");
            }
        }
    }
}
