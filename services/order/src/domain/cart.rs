//! The cart's rules: what a line may hold, how a change is decided against catalog's answer,
//! when a stored price counts as stale, and what the cart adds up to. Pure: the handler reads
//! the cart and catalog, these decide.
//!
//! - A line holds 1 to `max_quantity` units; a cart at most `max_lines` distinct products, all
//!   priced in one currency (a cart is paid as one amount).
//! - A change may not raise a line above what catalog can sell now (insufficient stock); a
//!   change that keeps or lowers it is always accepted, so a customer can always move towards
//!   what can be bought.
//! - A line is stale when catalog last confirmed its price more than the configured time ago:
//!   while catalog answers every read confirms it again, so only an outage makes lines stale.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use contracts::catalog::ProductSnapshot;
use contracts::{Currency, Money, MoneyError};
use uuid::Uuid;

use crate::store::cart::CartLine;

/// The configured bounds of a cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Distinct products in one cart.
    pub max_lines: usize,
    /// Units of one product in a line.
    pub max_quantity: i64,
}

/// How a request changes a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The line holds exactly this many units (`PUT`).
    Set(i64),
    /// This many units more (`POST`).
    Add(i64),
}

/// Why a change to the cart is refused. Nothing is written when one is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The quantity asked for is below 1 or above the limit.
    Quantity { asked: i64, max: i64 },
    /// Adding would make the line hold `would_hold` units, above the limit.
    LineFull { would_hold: i64, max: i64 },
    /// The cart holds `max` products already and this is another one.
    TooManyLines { max: usize },
    /// Catalog does not know the product or does not sell it.
    Unavailable(Uuid),
    /// The product is priced in another currency than the cart's other lines.
    Currency { cart: Currency, product: Currency },
    /// The line would hold more than catalog can sell now.
    Short {
        product: Uuid,
        requested: i64,
        available: i64,
    },
    /// The cart's total would not fit in an amount.
    TooLarge,
}

/// What catalog answered for one request: the ids asked and the products it knows among them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup {
    pub asked: Vec<Uuid>,
    pub products: HashMap<Uuid, ProductSnapshot>,
}

impl Lookup {
    /// Catalog's word on `product_id`: `None` when it was not asked about it (added by a
    /// concurrent request), `Some(None)` when it does not know it.
    fn answer(&self, product_id: Uuid) -> Option<Option<&ProductSnapshot>> {
        self.asked
            .contains(&product_id)
            .then(|| self.products.get(&product_id))
    }
}

/// Checks the quantity of a request on its own (1 to the limit).
pub fn check_change(change: Change, limits: Limits) -> Result<(), Refusal> {
    let (Change::Set(asked) | Change::Add(asked)) = change;
    if (1..=limits.max_quantity).contains(&asked) {
        Ok(())
    } else {
        Err(Refusal::Quantity {
            asked,
            max: limits.max_quantity,
        })
    }
}

/// What needs no catalog: the quantity asked, room for the product in a cart holding `lines`
/// (a product already there always fits, another one only below the limit) and the line's
/// resulting quantity within the limit. Answers that quantity.
pub fn check(
    lines: &[CartLine],
    product_id: Uuid,
    change: Change,
    limits: Limits,
) -> Result<i64, Refusal> {
    check_change(change, limits)?;
    let existing = lines.iter().find(|line| line.product_id == product_id);
    if existing.is_none() && lines.len() >= limits.max_lines {
        return Err(Refusal::TooManyLines {
            max: limits.max_lines,
        });
    }
    let quantity = match change {
        Change::Set(quantity) => quantity,
        Change::Add(more) => existing
            .map_or(0, |line| line.quantity)
            .saturating_add(more),
    };
    if quantity > limits.max_quantity {
        return Err(Refusal::LineFull {
            would_hold: quantity,
            max: limits.max_quantity,
        });
    }
    Ok(quantity)
}

/// The line `product_id` holds once `change` is applied to the cart `lines`, priced with
/// catalog's `product` (`None`: catalog does not know it), or why it cannot be.
///
/// A line kept in the same currency keeps its `added_price` and `added_at`, so a later price
/// change stays visible; a new line (or one whose product moved to another currency, the only
/// line of its cart) starts from catalog's price now.
pub fn apply(
    lines: &[CartLine],
    product_id: Uuid,
    product: Option<&ProductSnapshot>,
    change: Change,
    limits: Limits,
    now: DateTime<Utc>,
) -> Result<CartLine, Refusal> {
    let quantity = check(lines, product_id, change, limits)?;
    let product = product
        .filter(|product| product.active)
        .ok_or(Refusal::Unavailable(product_id))?;
    let price = product.price;
    if let Some(other) = lines.iter().find(|line| line.product_id != product_id) {
        let cart = other.unit_price.currency;
        if cart != price.currency {
            return Err(Refusal::Currency {
                cart,
                product: price.currency,
            });
        }
    }
    let existing = lines.iter().find(|line| line.product_id == product_id);
    let current = existing.map_or(0, |line| line.quantity);
    let available = product.available.max(0);
    if quantity > available && quantity > current {
        return Err(Refusal::Short {
            product: product_id,
            requested: quantity,
            available,
        });
    }
    let kept = existing.filter(|line| line.added_price.currency == price.currency);
    let line = CartLine {
        product_id,
        quantity,
        sku: product.sku.clone(),
        name: product.name.clone(),
        added_price: kept.map_or(price, |line| line.added_price),
        unit_price: price,
        checked_at: now,
        added_at: kept.map_or(now, |line| line.added_at),
    };
    let mut after: Vec<CartLine> = lines
        .iter()
        .filter(|other| other.product_id != product_id)
        .cloned()
        .collect();
    after.push(line.clone());
    total(&after).map_err(|_| Refusal::TooLarge)?;
    Ok(line)
}

/// `line` with what catalog says now (name, SKU, price, confirmed at `now`), or `None` when
/// there is nothing to store: catalog was not asked about it, does not know it, or prices it
/// in another currency (the line keeps its last price; it shows as unavailable).
pub fn refresh(line: &CartLine, lookup: &Lookup, now: DateTime<Utc>) -> Option<CartLine> {
    let product = lookup.answer(line.product_id)??;
    if product.price.currency != line.unit_price.currency {
        return None;
    }
    Some(CartLine {
        sku: product.sku.clone(),
        name: product.name.clone(),
        unit_price: product.price,
        checked_at: now,
        ..line.clone()
    })
}

/// How a line stands now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineStatus {
    /// Units catalog can sell now; 0 when it does not sell the product; `None` when catalog
    /// was not reached.
    pub available: Option<i64>,
    /// Catalog does not know the product, does not sell it any more, or prices it in
    /// another currency than the line's: it cannot be checked out.
    pub unavailable: bool,
    /// The price was last confirmed longer than `stale_after` ago.
    pub stale: bool,
}

/// The status of `line` (as stored, after any refresh) given catalog's answer, if any.
pub fn status(
    line: &CartLine,
    lookup: Option<&Lookup>,
    now: DateTime<Utc>,
    stale_after: Duration,
) -> LineStatus {
    let stale = is_stale(line.checked_at, now, stale_after);
    match lookup.and_then(|lookup| lookup.answer(line.product_id)) {
        None => LineStatus {
            available: None,
            unavailable: false,
            stale,
        },
        Some(Some(product))
            if product.active && product.price.currency == line.unit_price.currency =>
        {
            LineStatus {
                available: Some(product.available.max(0)),
                unavailable: false,
                stale,
            }
        }
        Some(_) => LineStatus {
            available: Some(0),
            unavailable: true,
            stale,
        },
    }
}

/// Whether a price confirmed at `checked_at` is too old to trust at `now`. A time ahead of
/// `now` (another instance's clock) is fresh.
pub fn is_stale(checked_at: DateTime<Utc>, now: DateTime<Utc>, stale_after: Duration) -> bool {
    (now - checked_at)
        .to_std()
        .is_ok_and(|age| age > stale_after)
}

/// A line's unit price times its quantity; `None` if it does not fit in an amount.
pub fn line_total(line: &CartLine) -> Option<Money> {
    line.unit_price.checked_mul(line.quantity).ok()
}

/// What the lines add up to at their last known prices; `None` for an empty cart (which has
/// no currency yet).
pub fn total(lines: &[CartLine]) -> Result<Option<Money>, MoneyError> {
    let mut sum: Option<Money> = None;
    for line in lines {
        let amount = line.unit_price.checked_mul(line.quantity)?;
        sum = Some(match sum {
            None => amount,
            Some(sum) => sum.checked_add(amount)?,
        });
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_lines: 2,
        max_quantity: 10,
    };

    fn money(amount: i64, currency: &str) -> Money {
        Money::new(amount, Currency::parse(currency).unwrap()).unwrap()
    }

    fn eur(amount: i64) -> Money {
        money(amount, "EUR")
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn line(product_id: Uuid, quantity: i64, price: Money) -> CartLine {
        CartLine {
            product_id,
            quantity,
            sku: "OLD".to_owned(),
            name: "old name".to_owned(),
            added_price: price,
            unit_price: price,
            checked_at: at(0),
            added_at: at(0),
        }
    }

    fn product(id: Uuid, price: Money, available: i64) -> ProductSnapshot {
        ProductSnapshot {
            id,
            sku: "NEW".to_owned(),
            name: "Kettle".to_owned(),
            price,
            active: true,
            available,
        }
    }

    #[test]
    fn quantities_are_one_to_the_limit() {
        for asked in [0, -1, 11, i64::MIN, i64::MAX] {
            assert_eq!(
                check_change(Change::Set(asked), LIMITS),
                Err(Refusal::Quantity { asked, max: 10 })
            );
            assert!(check_change(Change::Add(asked), LIMITS).is_err());
        }
        assert!(check_change(Change::Set(1), LIMITS).is_ok());
        assert!(check_change(Change::Add(10), LIMITS).is_ok());
    }

    #[test]
    fn a_full_cart_takes_more_of_what_it_holds_but_nothing_new() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let lines = [line(a, 1, eur(100)), line(b, 1, eur(100))];
        assert_eq!(
            check(&lines, c, Change::Set(1), LIMITS),
            Err(Refusal::TooManyLines { max: 2 })
        );
        assert_eq!(check(&lines, a, Change::Add(2), LIMITS), Ok(3));
        assert_eq!(check(&lines[..1], c, Change::Set(1), LIMITS), Ok(1));
        let refused = apply(
            &lines,
            c,
            Some(&product(c, eur(1), 5)),
            Change::Set(1),
            LIMITS,
            at(9),
        );
        assert_eq!(refused, Err(Refusal::TooManyLines { max: 2 }));
    }

    #[test]
    fn a_new_line_takes_catalog_price_and_names_now() {
        let a = Uuid::now_v7();
        let line = apply(
            &[],
            a,
            Some(&product(a, eur(250), 5)),
            Change::Add(2),
            LIMITS,
            at(9),
        )
        .unwrap();
        assert_eq!(line.quantity, 2);
        assert_eq!((line.added_price, line.unit_price), (eur(250), eur(250)));
        assert_eq!((line.sku.as_str(), line.name.as_str()), ("NEW", "Kettle"));
        assert_eq!((line.checked_at, line.added_at), (at(9), at(9)));
    }

    #[test]
    fn a_changed_line_keeps_its_added_price_and_place() {
        let a = Uuid::now_v7();
        let lines = [line(a, 3, eur(100))];
        let changed = apply(
            &lines,
            a,
            Some(&product(a, eur(120), 9)),
            Change::Add(4),
            LIMITS,
            at(9),
        )
        .unwrap();
        assert_eq!(changed.quantity, 7);
        assert_eq!(changed.added_price, eur(100));
        assert_eq!(changed.unit_price, eur(120));
        assert_eq!(changed.added_at, at(0));
        assert_eq!(changed.checked_at, at(9));
        let set = apply(
            &lines,
            a,
            Some(&product(a, eur(120), 9)),
            Change::Set(1),
            LIMITS,
            at(9),
        )
        .unwrap();
        assert_eq!(set.quantity, 1);
    }

    #[test]
    fn adding_past_the_line_limit_is_refused_with_the_resulting_quantity() {
        let a = Uuid::now_v7();
        let lines = [line(a, 8, eur(1))];
        assert_eq!(
            apply(
                &lines,
                a,
                Some(&product(a, eur(1), 100)),
                Change::Add(3),
                LIMITS,
                at(1)
            ),
            Err(Refusal::LineFull {
                would_hold: 11,
                max: 10
            })
        );
    }

    #[test]
    fn unknown_and_inactive_products_are_unavailable() {
        let a = Uuid::now_v7();
        assert_eq!(
            apply(&[], a, None, Change::Set(1), LIMITS, at(1)),
            Err(Refusal::Unavailable(a))
        );
        let inactive = ProductSnapshot {
            active: false,
            ..product(a, eur(1), 5)
        };
        assert_eq!(
            apply(&[], a, Some(&inactive), Change::Set(1), LIMITS, at(1)),
            Err(Refusal::Unavailable(a))
        );
    }

    #[test]
    fn one_cart_holds_one_currency() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let lines = [line(a, 1, eur(100))];
        let usd = money(100, "USD");
        assert_eq!(
            apply(
                &lines,
                b,
                Some(&product(b, usd, 5)),
                Change::Set(1),
                LIMITS,
                at(1)
            ),
            Err(Refusal::Currency {
                cart: Currency::parse("EUR").unwrap(),
                product: Currency::parse("USD").unwrap(),
            })
        );
        // The only line of its cart may follow its product into another currency: it starts
        // again from the new price.
        let moved = apply(
            &lines,
            a,
            Some(&product(a, usd, 5)),
            Change::Set(2),
            LIMITS,
            at(1),
        )
        .unwrap();
        assert_eq!((moved.added_price, moved.unit_price), (usd, usd));
        assert_eq!(moved.added_at, at(1));
    }

    #[test]
    fn raising_a_line_above_the_stock_is_refused_but_lowering_it_is_not() {
        let a = Uuid::now_v7();
        let lines = [line(a, 5, eur(1))];
        let scarce = product(a, eur(1), 2);
        assert_eq!(
            apply(&lines, a, Some(&scarce), Change::Add(1), LIMITS, at(1)),
            Err(Refusal::Short {
                product: a,
                requested: 6,
                available: 2
            })
        );
        assert_eq!(
            apply(&[], a, Some(&scarce), Change::Set(3), LIMITS, at(1)),
            Err(Refusal::Short {
                product: a,
                requested: 3,
                available: 2
            })
        );
        for quantity in [5, 4, 2] {
            let kept = apply(
                &lines,
                a,
                Some(&scarce),
                Change::Set(quantity),
                LIMITS,
                at(1),
            );
            assert_eq!(kept.map(|line| line.quantity), Ok(quantity));
        }
        let negative = product(a, eur(1), -3);
        assert_eq!(
            apply(&[], a, Some(&negative), Change::Set(1), LIMITS, at(1)),
            Err(Refusal::Short {
                product: a,
                requested: 1,
                available: 0
            })
        );
    }

    #[test]
    fn a_total_that_does_not_fit_is_refused() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let lines = [line(a, 1, eur(i64::MAX - 10))];
        assert_eq!(
            apply(
                &lines,
                b,
                Some(&product(b, eur(11), 5)),
                Change::Set(1),
                LIMITS,
                at(1)
            ),
            Err(Refusal::TooLarge)
        );
        assert_eq!(
            apply(
                &[],
                b,
                Some(&product(b, eur(i64::MAX / 2 + 1), 5)),
                Change::Set(2),
                LIMITS,
                at(1)
            ),
            Err(Refusal::TooLarge)
        );
    }

    #[test]
    fn totals_add_up_at_the_last_known_prices() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(total(&[]), Ok(None));
        let lines = [line(a, 3, eur(250)), line(b, 2, eur(1_000))];
        assert_eq!(total(&lines), Ok(Some(eur(2_750))));
        assert_eq!(line_total(&lines[0]), Some(eur(750)));
        let huge = line(a, 2, eur(i64::MAX / 2 + 1));
        assert_eq!(line_total(&huge), None);
        assert_eq!(total(&[huge]), Err(MoneyError::Overflow));
    }

    #[test]
    fn refreshing_takes_catalog_name_and_price_and_keeps_the_rest() {
        let (a, b, c, d) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let lookup = Lookup {
            asked: vec![a, b, c],
            products: HashMap::from([
                (
                    a,
                    ProductSnapshot {
                        active: false,
                        ..product(a, eur(300), 0)
                    },
                ),
                (c, product(c, money(5, "USD"), 9)),
            ]),
        };
        let refreshed = refresh(&line(a, 2, eur(100)), &lookup, at(60)).unwrap();
        assert_eq!(refreshed.unit_price, eur(300));
        assert_eq!(refreshed.added_price, eur(100));
        assert_eq!((refreshed.name.as_str(), refreshed.quantity), ("Kettle", 2));
        assert_eq!(refreshed.checked_at, at(60));
        // Unknown, in another currency, or not asked about: nothing to store.
        assert_eq!(refresh(&line(b, 1, eur(1)), &lookup, at(60)), None);
        assert_eq!(refresh(&line(c, 1, eur(1)), &lookup, at(60)), None);
        assert_eq!(refresh(&line(d, 1, eur(1)), &lookup, at(60)), None);
    }

    #[test]
    fn a_line_is_stale_once_its_confirmation_is_older_than_the_limit() {
        let window = Duration::from_secs(300);
        assert!(!is_stale(at(0), at(300), window));
        assert!(is_stale(at(0), at(301), window));
        assert!(!is_stale(at(10), at(0), window), "a clock ahead is fresh");
    }

    #[test]
    fn status_says_what_catalog_said_and_nothing_when_it_was_not_reached() {
        let window = Duration::from_secs(300);
        let (a, b, c, d) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let lookup = Lookup {
            asked: vec![a, b, c],
            products: HashMap::from([
                (a, product(a, eur(1), 4)),
                (
                    b,
                    ProductSnapshot {
                        active: false,
                        ..product(b, eur(1), 7)
                    },
                ),
            ]),
        };
        let mut fresh = line(a, 1, eur(1));
        fresh.checked_at = at(1_000);
        assert_eq!(
            status(&fresh, Some(&lookup), at(1_000), window),
            LineStatus {
                available: Some(4),
                unavailable: false,
                stale: false
            }
        );
        // Inactive or unknown: nothing can be sold, whatever catalog counts.
        for id in [b, c] {
            let status = status(&line(id, 1, eur(1)), Some(&lookup), at(1_000), window);
            assert_eq!((status.available, status.unavailable), (Some(0), true));
        }
        // Not reached (or not asked): availability unknown, stale by the line's age only.
        for lookup in [None, Some(&lookup)] {
            assert_eq!(
                status(&line(d, 1, eur(1)), lookup, at(1_000), window),
                LineStatus {
                    available: None,
                    unavailable: false,
                    stale: true
                }
            );
            assert!(!status(&line(d, 1, eur(1)), lookup, at(200), window).stale);
        }
        let other_currency = Lookup {
            asked: vec![a],
            products: HashMap::from([(a, product(a, money(1, "USD"), 4))]),
        };
        let status = status(&fresh, Some(&other_currency), at(1_000), window);
        assert_eq!((status.available, status.unavailable), (Some(0), true));
    }

    proptest::proptest! {
        /// Whatever the cart and the change, an accepted line is within the limits, in the
        /// cart's currency, never raised above the stock, and the cart still adds up.
        #[test]
        fn accepted_changes_keep_every_rule(
            quantities in proptest::collection::vec(1i64..=10, 0..3),
            price in 0i64..=1_000_000,
            available in -2i64..=12,
            target in 0usize..4,
            set in proptest::bool::ANY,
            amount in -1i64..=12,
        ) {
            let ids: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
            let lines: Vec<CartLine> = quantities
                .iter()
                .zip(&ids)
                .map(|(quantity, id)| line(*id, *quantity, eur(100)))
                .collect();
            let id = ids[target];
            let change = if set { Change::Set(amount) } else { Change::Add(amount) };
            let current = lines.iter().find(|l| l.product_id == id).map_or(0, |l| l.quantity);
            let product = product(id, eur(price), available);
            if let Ok(line) = apply(&lines, id, Some(&product), change, LIMITS, at(5)) {
                proptest::prop_assert!((1..=LIMITS.max_quantity).contains(&line.quantity));
                proptest::prop_assert!(line.quantity <= available.max(0) || line.quantity <= current);
                proptest::prop_assert!(current > 0 || lines.len() < LIMITS.max_lines);
                let expected = match change {
                    Change::Set(n) => n,
                    Change::Add(n) => current + n,
                };
                proptest::prop_assert_eq!(line.quantity, expected);
                proptest::prop_assert_eq!(line.unit_price, eur(price));
            }
        }
    }
}
