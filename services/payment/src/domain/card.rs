//! Card data as a customer types it in, checked before anything reaches the provider: the
//! number (Luhn), the expiry (not past), the security code. The number and the code never
//! leave this module except towards the provider's tokenization; what is kept is the brand,
//! the last four digits and the expiry. Their `Debug` hides them, so a stray `{:?}` cannot log
//! them.

use chrono::Datelike as _;
use platform::http::FieldViolation;
use platform::validation::Violations;

/// Card brands recognised from the number's leading digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Brand {
    Visa,
    Mastercard,
    Amex,
    Discover,
    Other,
}

impl Brand {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Visa => "visa",
            Self::Mastercard => "mastercard",
            Self::Amex => "amex",
            Self::Discover => "discover",
            Self::Other => "other",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "visa" => Self::Visa,
            "mastercard" => Self::Mastercard,
            "amex" => Self::Amex,
            "discover" => Self::Discover,
            "other" => Self::Other,
            _ => return None,
        })
    }

    /// From the issuer identification number (the leading digits).
    fn of(digits: &str) -> Self {
        let prefix = |n: usize| digits.get(..n).and_then(|p| p.parse::<u32>().ok());
        match (prefix(1), prefix(2), prefix(3), prefix(4)) {
            (Some(4), ..) => Self::Visa,
            (_, Some(51..=55), ..) | (.., Some(2221..=2720)) => Self::Mastercard,
            (_, Some(34 | 37), ..) => Self::Amex,
            (_, Some(65), ..) | (_, _, Some(644..=649), _) | (.., Some(6011)) => Self::Discover,
            _ => Self::Other,
        }
    }

    /// The length of its security code.
    fn cvc_length(self) -> usize {
        if self == Self::Amex {
            4
        } else {
            3
        }
    }
}

/// A card number: 12 to 19 digits passing the Luhn check.
#[derive(Clone, PartialEq, Eq)]
pub struct CardNumber(String);

impl CardNumber {
    /// Digits, optionally grouped by single spaces (`4242 4242 4242 4242`).
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let grouped_well = !text.starts_with(' ') && !text.ends_with(' ') && !text.contains("  ");
        let digits: String = text.chars().filter(|c| *c != ' ').collect();
        if !grouped_well || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("must be digits, optionally grouped by single spaces");
        }
        if !(12..=19).contains(&digits.len()) {
            return Err("must have 12 to 19 digits");
        }
        if !luhn(&digits) {
            return Err("is not a valid card number (check digit)");
        }
        Ok(Self(digits))
    }

    /// The digits, for the provider's tokenization only.
    pub fn digits(&self) -> &str {
        &self.0
    }

    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }

    pub fn brand(&self) -> Brand {
        Brand::of(&self.0)
    }
}

impl std::fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CardNumber(…{})", self.last4())
    }
}

/// The Luhn (mod 10) check: every second digit from the right doubled.
fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .map(|b| u32::from(b - b'0'))
        .enumerate()
        .map(|(i, d)| match (i % 2 == 1, d * 2) {
            (true, doubled) if doubled > 9 => doubled - 9,
            (true, doubled) => doubled,
            (false, _) => d,
        })
        .sum();
    sum % 10 == 0
}

/// The security code: 3 digits (4 for American Express).
#[derive(Clone, PartialEq, Eq)]
pub struct Cvc(String);

impl Cvc {
    pub fn parse(text: &str, brand: Brand) -> Result<Self, String> {
        let length = brand.cvc_length();
        if text.len() != length || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("must be {length} digits for this card"));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Cvc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cvc(…)")
    }
}

/// The last month a card is valid in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expiry {
    pub year: u16,
    pub month: u8,
}

/// How far ahead an expiry may be: cards are issued for a few years, never decades.
const MAX_YEARS_AHEAD: i64 = 20;

impl Expiry {
    /// A month that has not ended by `today` and is at most 20 years ahead.
    pub fn parse(
        month: i64,
        year: i64,
        today: chrono::NaiveDate,
    ) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Violations::new();
        let month_valid = (1..=12).contains(&month);
        if !month_valid {
            violations.add("exp_month", "must be from 1 to 12");
        }
        let this_year = i64::from(today.year());
        if !(2000..=this_year + MAX_YEARS_AHEAD).contains(&year) {
            violations.add(
                "exp_year",
                format!(
                    "must be a four-digit year up to {}",
                    this_year + MAX_YEARS_AHEAD
                ),
            );
        } else if year < this_year
            || (month_valid && year == this_year && month < i64::from(today.month()))
        {
            // A past year has expired whatever the month says.
            violations.add("exp_year", "the card has expired");
        }
        violations.finish()?;
        Ok(Self {
            year: year as u16,
            month: month as u8,
        })
    }

    /// Whether the card's last valid month ended before `today`.
    pub fn has_passed(&self, today: chrono::NaiveDate) -> bool {
        (i64::from(self.year), i64::from(self.month))
            < (i64::from(today.year()), i64::from(today.month()))
    }
}

/// A card as it arrives, valid by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCard {
    pub number: CardNumber,
    pub expiry: Expiry,
    pub cvc: Cvc,
}

impl NewCard {
    /// Checks every field, reporting all violations together (never echoing the number).
    pub fn parse(
        number: &str,
        exp_month: i64,
        exp_year: i64,
        cvc: &str,
        today: chrono::NaiveDate,
    ) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Violations::new();
        let number = violations.check("number", CardNumber::parse(number));
        let expiry = match Expiry::parse(exp_month, exp_year, today) {
            Ok(expiry) => Some(expiry),
            Err(found) => {
                for violation in found {
                    violations.add(violation.field, violation.message);
                }
                None
            }
        };
        // The code's length depends on the brand; without a number, the common length.
        let brand = number.as_ref().map_or(Brand::Other, CardNumber::brand);
        let cvc = violations.check("cvc", Cvc::parse(cvc, brand));
        violations.finish()?;
        match (number, expiry, cvc) {
            (Some(number), Some(expiry), Some(cvc)) => Ok(Self {
                number,
                expiry,
                cvc,
            }),
            _ => Err(vec![FieldViolation::new("number", "is invalid")]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn today() -> chrono::NaiveDate {
        chrono::NaiveDate::from_ymd_opt(2027, 3, 15).unwrap()
    }

    #[test]
    fn numbers_pass_luhn_and_name_their_brand() {
        for (text, brand) in [
            ("4242424242424242", Brand::Visa),
            ("4242 4242 4242 4242", Brand::Visa),
            ("5555555555554444", Brand::Mastercard),
            ("2223003122003222", Brand::Mastercard),
            ("378282246310005", Brand::Amex),
            ("6011111111111117", Brand::Discover),
            ("3056930009020004", Brand::Other),
        ] {
            let number = CardNumber::parse(text).unwrap();
            assert_eq!(number.brand(), brand, "{text}");
            assert_eq!(number.last4(), &text[text.len() - 4..]);
        }
        for bad in [
            "4242424242424241",
            "4242-4242-4242-4242",
            "4242  4242 4242 4242",
            " 4242424242424242",
            "42424242424",
            "42424242424242424242",
            "",
            "abcd",
        ] {
            assert!(CardNumber::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_the_number_or_the_code() {
        let card = NewCard::parse("4242424242424242", 12, 2030, "123", today()).unwrap();
        let shown = format!("{card:?}");
        assert!(!shown.contains("42424242"), "{shown}");
        assert!(!shown.contains("123"), "{shown}");
        assert!(shown.contains("4242"), "the last four are fine: {shown}");
    }

    #[test]
    fn expiry_is_valid_through_its_month() {
        assert!(Expiry::parse(3, 2027, today()).is_ok());
        assert!(Expiry::parse(12, 2047, today()).is_ok());
        let expired = Expiry::parse(2, 2027, today()).unwrap_err();
        assert_eq!(expired[0].message, "the card has expired");
        let fields = |e: Vec<FieldViolation>| e.into_iter().map(|v| v.field).collect::<Vec<_>>();
        assert_eq!(
            fields(Expiry::parse(13, 2048, today()).unwrap_err()),
            ["exp_month", "exp_year"]
        );
        assert_eq!(
            fields(Expiry::parse(0, 27, today()).unwrap_err()),
            ["exp_month", "exp_year"]
        );
    }

    #[test]
    fn every_invalid_field_is_reported_at_once() {
        let error = NewCard::parse("4242424242424241", 13, 1999, "12", today()).unwrap_err();
        let fields: Vec<&str> = error.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["number", "exp_month", "exp_year", "cvc"]);
        assert!(error.iter().all(|v| !v.message.contains("4242")));
        let amex_with_three = NewCard::parse("378282246310005", 1, 2030, "123", today());
        assert_eq!(amex_with_three.unwrap_err()[0].field, "cvc");
        assert!(NewCard::parse("378282246310005", 1, 2030, "1234", today()).is_ok());
    }

    proptest! {
        #[test]
        fn changing_one_digit_breaks_the_check(position in 0usize..16, delta in 1u8..10) {
            let mut digits = b"4242424242424242".to_vec();
            digits[position] = b'0' + (digits[position] - b'0' + delta) % 10;
            let changed = String::from_utf8(digits).unwrap();
            prop_assert!(CardNumber::parse(&changed).is_err());
        }
    }
}
