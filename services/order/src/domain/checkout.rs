//! Pricing a checkout: the cart's lines at the prices catalog gives now. Pure: the caller
//! reads the cart and catalog, this decides.

use std::collections::HashMap;

use contracts::catalog::ProductSnapshot;
use contracts::Money;
use uuid::Uuid;

use crate::store::cart::CartLine;
use crate::store::orders::OrderLine;

/// Why a cart cannot be checked out now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutRefusal {
    Empty,
    /// Products catalog does not know or no longer sells.
    Unavailable(Vec<Uuid>),
    /// (product, requested, available) for every line catalog cannot cover now.
    Short(Vec<(Uuid, i64, i64)>),
    /// Lines in several currencies, or a total that does not fit: the cart cannot be paid
    /// as one amount.
    NotPayable(String),
}

/// A priced checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced {
    pub lines: Vec<OrderLine>,
    /// Above zero.
    pub total: Money,
}

/// Prices `cart` with `products` (catalog's answer, by id).
pub fn price(
    cart: &[CartLine],
    products: &HashMap<Uuid, ProductSnapshot>,
) -> Result<Priced, CheckoutRefusal> {
    if cart.is_empty() {
        return Err(CheckoutRefusal::Empty);
    }
    let unavailable: Vec<Uuid> = cart
        .iter()
        .filter(|line| !products.get(&line.product_id).is_some_and(|p| p.active))
        .map(|line| line.product_id)
        .collect();
    if !unavailable.is_empty() {
        return Err(CheckoutRefusal::Unavailable(unavailable));
    }
    let mut lines = Vec::with_capacity(cart.len());
    let mut short = Vec::new();
    for line in cart {
        let Some(product) = products.get(&line.product_id) else {
            continue;
        };
        if product.available < line.quantity {
            short.push((line.product_id, line.quantity, product.available.max(0)));
        }
        let line_total = product
            .price
            .checked_mul(line.quantity)
            .map_err(|error| CheckoutRefusal::NotPayable(error.to_string()))?;
        lines.push(OrderLine {
            product_id: line.product_id,
            sku: product.sku.clone(),
            name: product.name.clone(),
            quantity: line.quantity,
            unit_price: product.price,
            cart_price: line.unit_price,
            line_total,
        });
    }
    if !short.is_empty() {
        return Err(CheckoutRefusal::Short(short));
    }
    let mut total = Money::zero(lines[0].line_total.currency);
    for line in &lines {
        total = total.checked_add(line.line_total).map_err(|error| {
            CheckoutRefusal::NotPayable(format!("the lines cannot be added up: {error}"))
        })?;
    }
    if total.is_zero() {
        return Err(CheckoutRefusal::NotPayable(
            "the total is zero: there is nothing to pay".to_owned(),
        ));
    }
    Ok(Priced { lines, total })
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use contracts::Currency;

    use super::*;

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::parse("EUR").unwrap()).unwrap()
    }

    fn line(product_id: Uuid, quantity: i64, cart_price: Money) -> CartLine {
        CartLine {
            product_id,
            quantity,
            sku: "SKU".to_owned(),
            name: "old name".to_owned(),
            added_price: cart_price,
            unit_price: cart_price,
            checked_at: Utc::now(),
            added_at: Utc::now(),
        }
    }

    fn product(id: Uuid, price: Money, active: bool, available: i64) -> ProductSnapshot {
        ProductSnapshot {
            id,
            sku: "SKU-1".to_owned(),
            name: "Kettle".to_owned(),
            price,
            active,
            available,
        }
    }

    #[test]
    fn prices_come_from_catalog_and_the_cart_price_is_kept_beside_them() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let cart = [line(a, 2, eur(1_000)), line(b, 1, eur(250))];
        let products = HashMap::from([
            (a, product(a, eur(1_200), true, 5)),
            (b, product(b, eur(250), true, 1)),
        ]);
        let priced = price(&cart, &products).unwrap();
        assert_eq!(priced.total, eur(2_650));
        assert_eq!(priced.lines[0].unit_price, eur(1_200));
        assert_eq!(priced.lines[0].cart_price, eur(1_000));
        assert_eq!(priced.lines[0].name, "Kettle");
    }

    #[test]
    fn refusals_name_the_lines() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(price(&[], &HashMap::new()), Err(CheckoutRefusal::Empty));
        let cart = [line(a, 1, eur(1)), line(b, 1, eur(1)), line(c, 3, eur(1))];
        let products = HashMap::from([
            (b, product(b, eur(1), false, 9)),
            (c, product(c, eur(1), true, 2)),
        ]);
        assert_eq!(
            price(&cart, &products),
            Err(CheckoutRefusal::Unavailable(vec![a, b]))
        );
        let products = HashMap::from([
            (a, product(a, eur(1), true, 1)),
            (b, product(b, eur(1), true, 1)),
            (c, product(c, eur(1), true, 2)),
        ]);
        assert_eq!(
            price(&cart, &products),
            Err(CheckoutRefusal::Short(vec![(c, 3, 2)]))
        );
        let usd = Money::new(1, Currency::parse("USD").unwrap()).unwrap();
        let products = HashMap::from([
            (a, product(a, eur(1), true, 1)),
            (b, product(b, usd, true, 1)),
            (c, product(c, eur(1), true, 3)),
        ]);
        assert!(matches!(
            price(&cart, &products),
            Err(CheckoutRefusal::NotPayable(_))
        ));
        let free = HashMap::from([(a, product(a, eur(0), true, 1))]);
        assert!(matches!(
            price(&cart[..1], &free),
            Err(CheckoutRefusal::NotPayable(_))
        ));
    }
}
