//! Money as integer minor units of an ISO 4217 currency: never a float.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An ISO 4217 currency code: three uppercase ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(text: &str) -> Result<Self, InvalidMoney> {
        match text.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_uppercase()) => Ok(Self([*a, *b, *c])),
            _ => Err(InvalidMoney::Currency),
        }
    }

    pub fn as_str(&self) -> &str {
        // Three ASCII uppercase letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Why an amount or currency is not money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidMoney {
    /// The amount is below zero.
    Negative,
    /// Not three uppercase letters.
    Currency,
}

impl std::fmt::Display for InvalidMoney {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Negative => "must not be negative",
            Self::Currency => "must be an ISO 4217 code of three uppercase letters",
        })
    }
}

impl std::error::Error for InvalidMoney {}

/// An amount in minor units (cents) of a currency; never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct Money {
    /// Minor units (cents for EUR), never negative.
    #[schema(minimum = 0)]
    pub amount: i64,
    /// ISO 4217 code.
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: i64, currency: Currency) -> Result<Self, InvalidMoney> {
        if amount < 0 {
            return Err(InvalidMoney::Negative);
        }
        Ok(Self { amount, currency })
    }

    /// Adds two amounts of one currency; `None` on a currency mismatch or overflow.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        if self.currency != other.currency {
            return None;
        }
        Some(Money {
            amount: self.amount.checked_add(other.amount)?,
            currency: self.currency,
        })
    }

    /// This amount times a quantity; `None` on overflow or a negative quantity.
    pub fn checked_mul(self, quantity: i64) -> Option<Money> {
        if quantity < 0 {
            return None;
        }
        Some(Money {
            amount: self.amount.checked_mul(quantity)?,
            currency: self.currency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_three_uppercase_letters() {
        assert_eq!(Currency::parse("EUR").unwrap().as_str(), "EUR");
        for bad in ["eur", "EU", "EURO", "E1R", "", "ÉUR"] {
            assert_eq!(Currency::parse(bad), Err(InvalidMoney::Currency), "{bad}");
        }
    }

    #[test]
    fn money_is_never_negative_and_checks_its_arithmetic() {
        let eur = Currency::parse("EUR").unwrap();
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(Money::new(-1, eur), Err(InvalidMoney::Negative));
        let ten = Money::new(10, eur).unwrap();
        assert_eq!(ten.checked_add(ten).unwrap().amount, 20);
        assert_eq!(ten.checked_add(Money::new(1, usd).unwrap()), None);
        assert_eq!(ten.checked_mul(3).unwrap().amount, 30);
        assert_eq!(Money::new(i64::MAX, eur).unwrap().checked_mul(2), None);
        assert_eq!(ten.checked_mul(-1), None);
    }

    #[test]
    fn money_has_one_wire_form() {
        let money: Money = serde_json::from_str(r#"{"amount":1299,"currency":"EUR"}"#).unwrap();
        assert_eq!(money.amount, 1299);
        assert_eq!(
            serde_json::to_string(&money).unwrap(),
            r#"{"amount":1299,"currency":"EUR"}"#
        );
        assert!(serde_json::from_str::<Money>(r#"{"amount":1,"currency":"eur"}"#).is_err());
    }
}
