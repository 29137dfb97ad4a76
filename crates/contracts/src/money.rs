//! Money as integer minor units of an ISO 4217 currency: never a float.
//!
//! A [`Currency`] is one of the circulating currencies of ISO 4217 that this module lists,
//! with its minor-unit exponent (2 for EUR, 0 for JPY, 3 for KWD); any other code, however
//! well-formed, is refused, so a typo (`EUD`) never becomes a currency nobody can pay in.
//! Arithmetic is checked: an overflow, a result below zero or a mix of currencies is an error,
//! never a wrapped or silently converted amount.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The circulating currencies of ISO 4217 (list one, 2025) and their minor-unit exponents,
/// sorted by code. Funds, precious metals and test codes (`XAU`, `XTS`, `XXX`, ...) have no
/// minor unit and are not money a shop takes, so they are left out.
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("ANG", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYU", 2),
    ("UZS", 2),
    ("VED", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XCG", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

/// A currency of ISO 4217 that micromart knows (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: [u8; 3],
    minor_units: u8,
}

impl Currency {
    /// A known ISO 4217 code, in upper case.
    pub fn parse(text: &str) -> Result<Self, InvalidMoney> {
        let well_formed = text.len() == 3 && text.bytes().all(|b| b.is_ascii_uppercase());
        if !well_formed {
            return Err(InvalidMoney::Currency);
        }
        let index = CURRENCIES
            .binary_search_by(|(code, _)| (*code).cmp(text))
            .map_err(|_| InvalidMoney::UnknownCurrency)?;
        Ok(Self::at(index))
    }

    fn at(index: usize) -> Self {
        let (code, minor_units) = CURRENCIES[index];
        let mut bytes = [0u8; 3];
        bytes.copy_from_slice(code.as_bytes());
        Self {
            code: bytes,
            minor_units,
        }
    }

    pub fn as_str(&self) -> &str {
        // Three ASCII uppercase letters by construction (they come from the table).
        std::str::from_utf8(&self.code).unwrap_or("XXX")
    }

    /// How many decimal digits the minor unit has: an amount of 1999 is 19.99 EUR (2), 1999 JPY
    /// (0) or 1.999 KWD (3).
    pub fn minor_units(&self) -> u8 {
        self.minor_units
    }

    /// Every known currency, by code.
    pub fn all() -> impl Iterator<Item = Currency> {
        (0..CURRENCIES.len()).map(Self::at)
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Currency {
    type Err = InvalidMoney;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The published schema names every accepted code, so that a client (or a fuzzer) reading
/// the document knows exactly which values pass.
impl utoipa::PartialSchema for Currency {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        currency_schema().into()
    }
}

impl ToSchema for Currency {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Currency")
    }
}

/// The schema of a currency code: a string, one of the known ISO 4217 codes. For request
/// types that carry the code as text (`#[schema(schema_with = currency_schema)]`).
pub fn currency_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some("An ISO 4217 currency code (circulating currencies)"))
        .enum_values(Some(CURRENCIES.iter().map(|(code, _)| *code)))
        .examples(["EUR"])
        .build()
}

/// Why an amount or currency is not money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidMoney {
    /// The amount is below zero.
    Negative,
    /// The amount is zero or below where a payment needs something to pay.
    NotPositive,
    /// Not three uppercase letters.
    Currency,
    /// Three uppercase letters, but not a currency ISO 4217 lists.
    UnknownCurrency,
}

impl std::fmt::Display for InvalidMoney {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Negative => "must not be negative",
            Self::NotPositive => "must be greater than zero",
            Self::Currency => "must be an ISO 4217 code of three uppercase letters",
            Self::UnknownCurrency => "is not an ISO 4217 currency",
        })
    }
}

impl std::error::Error for InvalidMoney {}

/// Why arithmetic on money has no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("the amounts are in different currencies")]
    CurrencyMismatch,
    #[error("the amount overflows")]
    Overflow,
    #[error("the result would be negative")]
    Negative,
}

/// An amount in minor units (cents) of a currency; never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "RawMoney")]
pub struct Money {
    /// Minor units (cents for EUR), never negative.
    #[schema(minimum = 0)]
    pub amount: i64,
    pub currency: Currency,
}

/// The wire form before the rule that an amount is never negative is applied.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMoney {
    amount: i64,
    currency: Currency,
}

impl TryFrom<RawMoney> for Money {
    type Error = InvalidMoney;

    fn try_from(raw: RawMoney) -> Result<Self, Self::Error> {
        Money::new(raw.amount, raw.currency)
    }
}

impl Money {
    pub fn new(amount: i64, currency: Currency) -> Result<Self, InvalidMoney> {
        if amount < 0 {
            return Err(InvalidMoney::Negative);
        }
        Ok(Self { amount, currency })
    }

    /// An amount above zero: what a payment, a capture or a refund must carry.
    pub fn positive(amount: i64, currency: Currency) -> Result<Self, InvalidMoney> {
        if amount <= 0 {
            return Err(InvalidMoney::NotPositive);
        }
        Ok(Self { amount, currency })
    }

    pub fn zero(currency: Currency) -> Self {
        Self {
            amount: 0,
            currency,
        }
    }

    pub fn is_zero(&self) -> bool {
        self.amount == 0
    }

    /// Adds two amounts of one currency.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        Ok(Money {
            amount: self
                .amount
                .checked_add(other.amount)
                .ok_or(MoneyError::Overflow)?,
            currency: self.currency,
        })
    }

    /// Subtracts an amount of the same currency; money never goes below zero.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self
            .amount
            .checked_sub(other.amount)
            .ok_or(MoneyError::Overflow)?;
        if amount < 0 {
            return Err(MoneyError::Negative);
        }
        Ok(Money {
            amount,
            currency: self.currency,
        })
    }

    /// This amount times a quantity.
    pub fn checked_mul(self, quantity: i64) -> Result<Money, MoneyError> {
        if quantity < 0 {
            return Err(MoneyError::Negative);
        }
        Ok(Money {
            amount: self
                .amount
                .checked_mul(quantity)
                .ok_or(MoneyError::Overflow)?,
            currency: self.currency,
        })
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch)
        }
    }
}

impl std::fmt::Display for Money {
    /// `19.99 EUR`, `1999 JPY`, `1.999 KWD`: the amount in major units, for people and logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = u32::from(self.currency.minor_units());
        if digits == 0 {
            return write!(f, "{} {}", self.amount, self.currency);
        }
        let scale = 10u64.pow(digits);
        let magnitude = self.amount.unsigned_abs();
        let sign = if self.amount < 0 { "-" } else { "" };
        write!(
            f,
            "{sign}{}.{:0width$} {}",
            magnitude / scale,
            magnitude % scale,
            self.currency,
            width = digits as usize
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    #[test]
    fn currencies_are_known_iso_4217_codes() {
        assert_eq!(eur().as_str(), "EUR");
        assert_eq!(eur().minor_units(), 2);
        assert_eq!(Currency::parse("JPY").unwrap().minor_units(), 0);
        assert_eq!(Currency::parse("KWD").unwrap().minor_units(), 3);
        for bad in ["eur", "EU", "EURO", "E1R", "", "ÉUR"] {
            assert_eq!(Currency::parse(bad), Err(InvalidMoney::Currency), "{bad}");
        }
        for unknown in ["AAA", "EUD", "XXX", "XAU", "XTS", "HRK"] {
            assert_eq!(
                Currency::parse(unknown),
                Err(InvalidMoney::UnknownCurrency),
                "{unknown}"
            );
        }
    }

    #[test]
    fn the_table_is_sorted_unique_and_every_code_parses() {
        assert!(CURRENCIES.windows(2).all(|pair| pair[0].0 < pair[1].0));
        for (code, minor_units) in CURRENCIES {
            let currency = Currency::parse(code).unwrap();
            assert_eq!(
                (currency.as_str(), currency.minor_units()),
                (*code, *minor_units)
            );
            assert!(*minor_units <= 3, "{code}");
        }
        assert_eq!(Currency::all().count(), CURRENCIES.len());
    }

    #[test]
    fn money_is_never_negative_and_checks_its_arithmetic() {
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(Money::new(-1, eur()), Err(InvalidMoney::Negative));
        assert_eq!(Money::positive(0, eur()), Err(InvalidMoney::NotPositive));
        assert_eq!(Money::positive(-5, eur()), Err(InvalidMoney::NotPositive));
        let ten = Money::new(10, eur()).unwrap();
        assert_eq!(ten.checked_add(ten).unwrap().amount, 20);
        assert_eq!(
            ten.checked_add(Money::new(1, usd).unwrap()),
            Err(MoneyError::CurrencyMismatch)
        );
        let max = Money::new(i64::MAX, eur()).unwrap();
        assert_eq!(max.checked_add(ten), Err(MoneyError::Overflow));
        assert_eq!(ten.checked_mul(3).unwrap().amount, 30);
        assert_eq!(max.checked_mul(2), Err(MoneyError::Overflow));
        assert_eq!(ten.checked_mul(-1), Err(MoneyError::Negative));
        assert_eq!(ten.checked_sub(ten).unwrap(), Money::zero(eur()));
        assert_eq!(
            ten.checked_sub(Money::new(11, eur()).unwrap()),
            Err(MoneyError::Negative)
        );
    }

    #[test]
    fn money_has_one_wire_form_and_refuses_what_is_not_money() {
        let money: Money = serde_json::from_str(r#"{"amount":1299,"currency":"EUR"}"#).unwrap();
        assert_eq!(money.amount, 1299);
        assert_eq!(
            serde_json::to_string(&money).unwrap(),
            r#"{"amount":1299,"currency":"EUR"}"#
        );
        for bad in [
            r#"{"amount":1,"currency":"eur"}"#,
            r#"{"amount":1,"currency":"AAA"}"#,
            r#"{"amount":-1,"currency":"EUR"}"#,
            r#"{"amount":1.5,"currency":"EUR"}"#,
            r#"{"amount":99999999999999999999,"currency":"EUR"}"#,
            r#"{"amount":1}"#,
            r#"{"amount":1,"currency":"EUR","extra":1}"#,
        ] {
            assert!(serde_json::from_str::<Money>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn money_prints_in_major_units() {
        let money = |amount, code| Money::new(amount, Currency::parse(code).unwrap()).unwrap();
        assert_eq!(money(1999, "EUR").to_string(), "19.99 EUR");
        assert_eq!(money(5, "EUR").to_string(), "0.05 EUR");
        assert_eq!(money(1999, "JPY").to_string(), "1999 JPY");
        assert_eq!(money(1999, "KWD").to_string(), "1.999 KWD");
    }

    #[test]
    fn the_schema_lists_every_code() {
        let schema = serde_json::to_value(currency_schema()).unwrap();
        let codes = schema["enum"].as_array().unwrap();
        assert_eq!(codes.len(), CURRENCIES.len());
        assert!(codes.iter().any(|c| c == "EUR"));
    }

    proptest! {
        #[test]
        fn sums_of_one_currency_never_wrap(a in 0i64.., b in 0i64..) {
            let sum = Money::new(a, eur()).unwrap().checked_add(Money::new(b, eur()).unwrap());
            match a.checked_add(b) {
                Some(total) => prop_assert_eq!(sum.unwrap().amount, total),
                None => prop_assert_eq!(sum, Err(MoneyError::Overflow)),
            }
        }

        #[test]
        fn a_difference_is_never_negative(a in 0i64.., b in 0i64..) {
            let difference = Money::new(a, eur()).unwrap().checked_sub(Money::new(b, eur()).unwrap());
            if a >= b {
                prop_assert_eq!(difference.unwrap().amount, a - b);
            } else {
                prop_assert_eq!(difference, Err(MoneyError::Negative));
            }
        }
    }
}
