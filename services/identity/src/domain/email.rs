//! Email addresses, normalised so that one mailbox maps to one account.

use super::Invalid;

/// A syntactically valid email address, trimmed and lowercased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// RFC 5321 limits: 254 for the whole path, 64 for the local part, 63 per domain label.
const MAX_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;
const MAX_LABEL_LEN: usize = 63;

/// The printable characters RFC 5322 allows in an unquoted local part, besides letters and digits.
const LOCAL_SPECIALS: &str = "!#$%&'*+/=?^_`{|}~.-";

impl Email {
    /// Trims, lowercases and checks the syntax (a dot-atom local part and a DNS domain with a
    /// dot). Quoted local parts and IP literals are refused: no shop customer needs them.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err(Invalid("must not be empty".into()));
        }
        // The limit applies to the text as sent, as the published schema's maxLength does.
        if raw.chars().count() > MAX_LEN {
            return Err(Invalid(format!("must be at most {MAX_LEN} characters")));
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err(Invalid(
                "must be an email address like name@example.com".into(),
            ));
        };
        if !valid_local(local) || !valid_domain(domain) {
            return Err(Invalid(
                "must be an email address like name@example.com".into(),
            ));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds an email read back from the database (already normalised when stored).
    pub(crate) fn from_stored(text: String) -> Self {
        Self(text)
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn valid_local(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= MAX_LOCAL_LEN
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || LOCAL_SPECIALS.contains(c))
}

fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL_LEN
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        // A top-level domain is never all digits (that would be an IP address).
        && labels
            .last()
            .is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn trims_and_lowercases() {
        let email = Email::parse("  Alice.Smith+shop@Example.COM \n").unwrap();
        assert_eq!(email.as_str(), "alice.smith+shop@example.com");
    }

    #[test]
    fn accepts_ordinary_addresses() {
        for ok in [
            "a@b.co",
            "first.last@sub.example.org",
            "o'neil@example.ie",
            "x_y-z@my-host.example",
        ] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_malformed_addresses() {
        let too_long = format!("{}@example.com", "a".repeat(250));
        let long_local = format!("{}@example.com", "a".repeat(65));
        for bad in [
            "",
            "   ",
            "plainaddress",
            "@example.com",
            "alice@",
            "alice@localhost",
            "alice@@example.com",
            "al ice@example.com",
            ".alice@example.com",
            "alice.@example.com",
            "al..ice@example.com",
            "alice@-example.com",
            "alice@example-.com",
            "alice@exa_mple.com",
            "alice@example..com",
            "alice@1.2.3.4",
            "ålice@example.com",
            "\"quoted\"@example.com",
            too_long.as_str(),
            long_local.as_str(),
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    proptest! {
        #[test]
        fn normalisation_is_idempotent(local in "[a-zA-Z0-9._+-]{1,20}", domain in "[a-zA-Z0-9]{1,10}\\.[a-zA-Z]{2,5}", pad in " {0,3}") {
            if let Ok(email) = Email::parse(&format!("{pad}{local}@{domain}{pad}")) {
                let again = Email::parse(email.as_str()).unwrap();
                prop_assert_eq!(&again, &email);
                prop_assert_eq!(email.as_str(), email.as_str().to_lowercase());
                prop_assert_eq!(email.as_str().trim(), email.as_str());
            }
        }

        #[test]
        fn case_variants_normalise_to_one_address(local in "[a-z0-9]{1,20}", domain in "[a-z]{1,10}\\.[a-z]{2,5}") {
            let lower = Email::parse(&format!("{local}@{domain}")).unwrap();
            let upper = Email::parse(&format!("{}@{}", local.to_uppercase(), domain.to_uppercase())).unwrap();
            prop_assert_eq!(lower, upper);
        }
    }
}
