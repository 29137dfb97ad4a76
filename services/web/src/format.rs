//! How the shop writes money, stock and order states for people.

use contracts::money::Currency;

use crate::model::Money;

/// `€1,234.50`, `$12.00`, `¥1,200`, `1,234.50 CHF`.
pub fn money(money: Money) -> String {
    let currency = money.currency;
    let digits = u32::from(currency.minor_units());
    let scale = 10i64.pow(digits);
    let whole = group(money.amount / scale);
    let number = if digits == 0 {
        whole
    } else {
        format!(
            "{whole}.{:0width$}",
            money.amount % scale,
            width = digits as usize
        )
    };
    match symbol(&currency) {
        Some(symbol) => format!("{symbol}{number}"),
        None => format!("{number} {}", currency.as_str()),
    }
}

fn symbol(currency: &Currency) -> Option<&'static str> {
    Some(match currency.as_str() {
        "EUR" => "€",
        "USD" => "$",
        "GBP" => "£",
        "JPY" => "¥",
        _ => return None,
    })
}

fn group(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if value < 0 {
        out.insert(0, '-');
    }
    out
}

/// An amount typed by a person (`12.5`, `12.50`, `1,200`) in minor units of `currency`.
pub fn parse_amount(text: &str, currency: &Currency) -> Result<i64, &'static str> {
    let text: String = text.trim().chars().filter(|c| *c != ',').collect();
    if text.is_empty() {
        return Err("enter an amount, e.g. 12.50");
    }
    let digits = usize::from(currency.minor_units());
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !fraction.chars().all(|c| c.is_ascii_digit())
    {
        return Err("enter an amount with digits and at most one decimal point, e.g. 12.50");
    }
    if fraction.len() > digits {
        return Err("too many decimals for this currency");
    }
    if whole.len() > 12 {
        return Err("that amount is too large");
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| "that amount is too large")?
    };
    let padded = format!("{fraction:0<digits$}");
    let fraction: i64 = if digits == 0 {
        0
    } else {
        padded.parse().map_err(|_| "invalid decimals")?
    };
    whole
        .checked_mul(10i64.pow(digits as u32))
        .and_then(|minor| minor.checked_add(fraction))
        .ok_or("that amount is too large")
}

/// Minor units as a person would type them (`12.50`), for a form's value.
pub fn plain_amount(amount: i64, currency: &Currency) -> String {
    let digits = u32::from(currency.minor_units());
    if digits == 0 {
        return amount.to_string();
    }
    let scale = 10i64.pow(digits);
    format!(
        "{}.{:0width$}",
        amount / scale,
        amount % scale,
        width = digits as usize
    )
}

/// An order's status, for people.
pub fn status(status: &str) -> &'static str {
    match status {
        "pending" => "Processing",
        "confirmed" => "Confirmed",
        "cancelling" => "Being cancelled",
        "cancelled" => "Cancelled",
        "shipped" => "Shipped",
        _ => "Unknown",
    }
}

/// Why an order was cancelled, for its customer.
pub fn cancel_reason(reason: &str) -> &'static str {
    match reason {
        "out_of_stock" => {
            "an item sold out before your order could be reserved; nothing was charged"
        }
        "payment_declined" => "your card was declined; nothing was charged",
        "payment_failed" => "the payment could not be completed; nothing was charged",
        "reservation_expired" => "the items could not be held long enough; nothing was charged",
        "timeout" => "the payment took too long to answer; nothing was charged",
        "cancelled_by_customer" => "you cancelled it; anything charged is refunded",
        "cancelled_by_admin" => "the shop cancelled it; anything charged is refunded",
        _ => "it could not be completed",
    }
}

/// Whether an order's status is final for its saga (no more live updates).
pub fn is_final(status: &str) -> bool {
    matches!(status, "confirmed" | "cancelled" | "shipped")
}

/// A stock level, as a product page says it.
pub fn stock(available: i64, few_left_at: i64) -> String {
    match available {
        ..=0 => "Sold out".to_owned(),
        n if n <= few_left_at => format!("Only {n} left"),
        _ => "In stock".to_owned(),
    }
}

/// A date for people: `2 Dec 2026, 14:05 UTC`.
pub fn date(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%-d %b %Y, %H:%M UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    #[test]
    fn money_reads_as_people_write_it() {
        let m = |amount, code| {
            money(Money {
                amount,
                currency: Currency::parse(code).unwrap(),
            })
        };
        assert_eq!(m(123_450, "EUR"), "€1,234.50");
        assert_eq!(m(5, "USD"), "$0.05");
        assert_eq!(m(1_200, "JPY"), "¥1,200");
        assert_eq!(m(100_000, "CHF"), "1,000.00 CHF");
        assert_eq!(m(1_234_567_800, "EUR"), "€12,345,678.00");
    }

    #[test]
    fn typed_amounts_parse_exactly() {
        assert_eq!(parse_amount("12.5", &eur()), Ok(1_250));
        assert_eq!(parse_amount(" 1,200.05 ", &eur()), Ok(120_005));
        assert_eq!(parse_amount("7", &eur()), Ok(700));
        assert_eq!(parse_amount(".5", &eur()), Ok(50));
        for bad in [
            "",
            "1.234",
            "-1",
            "1e3",
            "abc",
            "1.2.3",
            ".",
            "9999999999999",
        ] {
            assert!(parse_amount(bad, &eur()).is_err(), "{bad}");
        }
        assert_eq!(
            parse_amount("1200", &Currency::parse("JPY").unwrap()),
            Ok(1_200)
        );
        assert!(parse_amount("12.5", &Currency::parse("JPY").unwrap()).is_err());
        assert_eq!(plain_amount(1_250, &eur()), "12.50");
    }

    #[test]
    fn stock_levels_in_words() {
        assert_eq!(stock(0, 5), "Sold out");
        assert_eq!(stock(3, 5), "Only 3 left");
        assert_eq!(stock(6, 5), "In stock");
    }
}
