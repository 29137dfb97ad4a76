//! Stock and reservation rules: validated reservation requests (lines merged per product),
//! the reservation lifecycle, and stock-level changes. No axum, no SQL.
//!
//! Lifecycle: a reserve either holds stock (`active`) or records why it could not
//! (`rejected`); an active reservation ends `committed` (stock leaves the shelf), `released`
//! (the order gave up) or `expired` (the sweeper reclaimed it). Only one end state moves on:
//! a `committed` sale becomes `returned` (its units back on hand) when the order's
//! compensation releases it on the bus ([`ReservationStatus::on_stock_release`]); the HTTP
//! release keeps refusing it.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use platform::http::FieldViolation;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::product::STOCK_MAX;
use super::Violations;

/// The limits of a reservation are part of the internal API's contract: at most
/// `MAX_LINES` lines, `MAX_LINE_QUANTITY` units a line (before merging), a time to live of at
/// most `MAX_TTL_SECS`.
pub use contracts::inventory::{Shortage, MAX_LINES, MAX_LINE_QUANTITY, MAX_TTL_SECS};

/// One requested line as the client sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineDraft {
    pub product_id: Uuid,
    pub quantity: i64,
}

/// A reserve request as the client sent it (ids already parsed by the JSON layer).
#[derive(Debug, Clone)]
pub struct ReserveDraft {
    pub order_id: Uuid,
    pub lines: Vec<LineDraft>,
    pub ttl_secs: Option<u64>,
}

/// One product's quantity in a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationLine {
    pub product_id: Uuid,
    pub quantity: i64,
}

/// A valid reserve request: one line per product, sorted by product id (the order in which
/// stock rows are locked, so concurrent reservations never deadlock), and a time to live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRequest {
    pub order_id: Uuid,
    pub lines: Vec<ReservationLine>,
    pub ttl: Duration,
}

impl ReservationRequest {
    /// Validates `draft`, merging lines of the same product; `default_ttl_secs` applies when
    /// the caller names none.
    pub fn parse(draft: ReserveDraft, default_ttl_secs: u64) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Violations::default();
        if draft.order_id.is_nil() {
            violations.add("order_id", "must not be the nil UUID");
        }
        if draft.lines.is_empty() {
            violations.add("lines", "must have at least one line");
        }
        if draft.lines.len() > MAX_LINES {
            violations.add("lines", format!("must have at most {MAX_LINES} lines"));
        }
        let mut merged: BTreeMap<Uuid, i64> = BTreeMap::new();
        for (index, line) in draft.lines.iter().enumerate() {
            if !(1..=MAX_LINE_QUANTITY).contains(&line.quantity) {
                violations.add(
                    format!("lines[{index}].quantity"),
                    format!("must be between 1 and {MAX_LINE_QUANTITY}"),
                );
                continue;
            }
            // At most MAX_LINES lines of at most MAX_LINE_QUANTITY each: no overflow.
            *merged.entry(line.product_id).or_insert(0) += line.quantity;
        }
        let ttl_secs = draft.ttl_secs.unwrap_or(default_ttl_secs);
        if !(1..=MAX_TTL_SECS).contains(&ttl_secs) {
            violations.add(
                "ttl_secs",
                format!("must be between 1 and {MAX_TTL_SECS} seconds"),
            );
        }
        violations.finish()?;
        Ok(Self {
            order_id: draft.order_id,
            lines: merged
                .into_iter()
                .map(|(product_id, quantity)| ReservationLine {
                    product_id,
                    quantity,
                })
                .collect(),
            ttl: Duration::from_secs(ttl_secs),
        })
    }

    /// When a reservation made at `now` lapses.
    pub fn expires_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        // The ttl is at most a day, so the conversion cannot fail.
        now + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::days(1))
    }

    /// Whether `stored` lines (any order) are the same request as this one's.
    pub fn same_lines(&self, stored: &[ReservationLine]) -> bool {
        let mut stored = stored.to_vec();
        stored.sort_by_key(|line| line.product_id);
        stored == self.lines
    }
}

/// Where a reservation is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Stock is held until `expires_at`.
    Active,
    /// The stock left the shelf (on_hand decreased).
    Committed,
    /// The order gave the stock back (or released before reserving: a tombstone).
    Released,
    /// The sweeper reclaimed it after `expires_at`.
    Expired,
    /// Not enough stock: nothing was held.
    Rejected,
    /// A committed sale undone by the order's compensation on the bus: its units are back on
    /// hand. Final.
    Returned,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Committed => "committed",
            Self::Released => "released",
            Self::Expired => "expired",
            Self::Rejected => "rejected",
            Self::Returned => "returned",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "active" => Self::Active,
            "committed" => Self::Committed,
            "released" => Self::Released,
            "expired" => Self::Expired,
            "rejected" => Self::Rejected,
            "returned" => Self::Returned,
            _ => return None,
        })
    }

    /// What a commit does to a reservation in this state.
    pub fn on_commit(self) -> Transition {
        match self {
            Self::Active => Transition::Apply,
            Self::Committed => Transition::AlreadyDone,
            Self::Released | Self::Expired | Self::Rejected | Self::Returned => Transition::Refuse,
        }
    }

    /// What a release (the HTTP API's) does to a reservation in this state. Releasing
    /// something that holds nothing (expired, rejected, returned) succeeds: the caller wanted
    /// the stock free, and it is. A committed sale is refused: the HTTP API never undoes one.
    pub fn on_release(self) -> Transition {
        match self {
            Self::Active => Transition::Apply,
            Self::Released | Self::Expired | Self::Rejected | Self::Returned => {
                Transition::AlreadyDone
            }
            Self::Committed => Transition::Refuse,
        }
    }

    /// What the bus's release ("make sure the order holds no stock", the checkout saga's
    /// compensation) does to a reservation in this state. Unlike [`Self::on_release`] it
    /// also undoes a sale: the saga releases a committed order only when the order failed
    /// after its stock left the shelf, and then the units must be sellable again.
    pub fn on_stock_release(self) -> StockRelease {
        match self {
            Self::Active => StockRelease::GiveBack,
            Self::Committed => StockRelease::PutBackOnHand,
            Self::Released | Self::Expired | Self::Rejected | Self::Returned => {
                StockRelease::Nothing
            }
        }
    }
}

/// What the bus's release does to a reservation (see [`ReservationStatus::on_stock_release`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockRelease {
    /// Active: its held units become available again (`released`).
    GiveBack,
    /// Committed: its sold units go back on hand (`returned`).
    PutBackOnHand,
    /// It holds nothing: answer with its state.
    Nothing,
}

impl From<ReservationStatus> for contracts::inventory::ReservationStatus {
    fn from(status: ReservationStatus) -> Self {
        match status {
            ReservationStatus::Active => Self::Active,
            ReservationStatus::Committed => Self::Committed,
            ReservationStatus::Released => Self::Released,
            ReservationStatus::Expired => Self::Expired,
            ReservationStatus::Rejected => Self::Rejected,
            ReservationStatus::Returned => Self::Returned,
        }
    }
}

impl From<ReservationLine> for contracts::inventory::ReservedLine {
    fn from(line: ReservationLine) -> Self {
        Self {
            product_id: line.product_id,
            quantity: line.quantity,
        }
    }
}

/// The effect of a lifecycle operation on a reservation's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Change the state and the stock.
    Apply,
    /// Nothing to do: answer as the first time (idempotent repeat).
    AlreadyDone,
    /// The operation contradicts the state: 409.
    Refuse,
}

/// A reservation as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub order_id: Uuid,
    pub status: ReservationStatus,
    pub expires_at: DateTime<Utc>,
    pub lines: Vec<ReservationLine>,
}

/// The first answer to a reserve, stored so a repeat gets exactly the same one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ReserveOutcome {
    /// Every line is held.
    Reserved(Reservation),
    /// At least one line was short; nothing is held.
    Rejected {
        order_id: Uuid,
        shortages: Vec<Shortage>,
    },
}

impl ReserveOutcome {
    /// A label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Reserved(_) => "reserved",
            Self::Rejected { .. } => "rejected",
        }
    }
}

/// A product's stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockLevel {
    pub product_id: Uuid,
    pub on_hand: i64,
    pub reserved: i64,
    /// None when the product never had a stock row (nothing on hand).
    pub updated_at: Option<DateTime<Utc>>,
}

impl StockLevel {
    /// What can be sold now.
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }
}

/// Validates an absolute on-hand quantity.
pub fn parse_on_hand(on_hand: i64) -> Result<i64, FieldViolation> {
    if (0..=STOCK_MAX).contains(&on_hand) {
        Ok(on_hand)
    } else {
        Err(FieldViolation::new(
            "on_hand",
            format!("must be between 0 and {STOCK_MAX}"),
        ))
    }
}

/// Validates a relative stock adjustment (non-zero, bounded).
pub fn parse_delta(delta: i64) -> Result<i64, FieldViolation> {
    if delta == 0 {
        return Err(FieldViolation::new("delta", "must not be zero"));
    }
    if !(-STOCK_MAX..=STOCK_MAX).contains(&delta) {
        return Err(FieldViolation::new(
            "delta",
            format!("must be between -{STOCK_MAX} and {STOCK_MAX}"),
        ));
    }
    Ok(delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn draft(lines: &[(u128, i64)]) -> ReserveDraft {
        ReserveDraft {
            order_id: id(99),
            lines: lines
                .iter()
                .map(|&(product, quantity)| LineDraft {
                    product_id: id(product),
                    quantity,
                })
                .collect(),
            ttl_secs: None,
        }
    }

    fn fields(errors: Vec<FieldViolation>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn merges_lines_of_one_product_and_sorts_by_product() {
        let request = ReservationRequest::parse(draft(&[(3, 1), (1, 2), (3, 4)]), 900).unwrap();
        assert_eq!(
            request.lines,
            [
                ReservationLine {
                    product_id: id(1),
                    quantity: 2
                },
                ReservationLine {
                    product_id: id(3),
                    quantity: 5
                },
            ]
        );
        assert_eq!(request.ttl, Duration::from_secs(900));
    }

    #[test]
    fn refuses_empty_and_too_many_lines() {
        assert_eq!(
            fields(ReservationRequest::parse(draft(&[]), 900).unwrap_err()),
            ["lines"]
        );
        let many: Vec<(u128, i64)> = (0..=MAX_LINES as u128).map(|n| (n, 1)).collect();
        assert_eq!(
            fields(ReservationRequest::parse(draft(&many), 900).unwrap_err()),
            ["lines"]
        );
        let exactly: Vec<(u128, i64)> = (0..MAX_LINES as u128).map(|n| (n, 1)).collect();
        assert!(ReservationRequest::parse(draft(&exactly), 900).is_ok());
    }

    #[test]
    fn refuses_non_positive_or_huge_quantities_naming_each_line() {
        let errors =
            ReservationRequest::parse(draft(&[(1, 0), (2, 1), (3, -4), (4, 1_000_001)]), 900)
                .unwrap_err();
        assert_eq!(
            fields(errors),
            [
                "lines[0].quantity",
                "lines[2].quantity",
                "lines[3].quantity"
            ]
        );
    }

    #[test]
    fn checks_the_ttl_and_the_order_id() {
        let mut bad = draft(&[(1, 1)]);
        bad.ttl_secs = Some(0);
        bad.order_id = Uuid::nil();
        assert_eq!(
            fields(ReservationRequest::parse(bad, 900).unwrap_err()),
            ["order_id", "ttl_secs"]
        );
        let mut custom = draft(&[(1, 1)]);
        custom.ttl_secs = Some(30);
        let request = ReservationRequest::parse(custom, 900).unwrap();
        let now = platform::now();
        assert_eq!(request.expires_at(now), now + chrono::Duration::seconds(30));
    }

    #[test]
    fn same_lines_ignores_order_but_not_quantities() {
        let request = ReservationRequest::parse(draft(&[(1, 2), (2, 1)]), 900).unwrap();
        let mut stored = request.lines.clone();
        stored.reverse();
        assert!(request.same_lines(&stored));
        stored[0].quantity += 1;
        assert!(!request.same_lines(&stored));
        assert!(!request.same_lines(&request.lines[..1]));
    }

    #[test]
    fn lifecycle_transitions() {
        use ReservationStatus::*;
        use Transition::*;
        assert_eq!(Active.on_commit(), Apply);
        assert_eq!(Committed.on_commit(), AlreadyDone);
        for status in [Released, Expired, Rejected, Returned] {
            assert_eq!(status.on_commit(), Refuse);
            assert_eq!(status.on_release(), AlreadyDone);
            assert_eq!(status.on_stock_release(), StockRelease::Nothing);
        }
        assert_eq!(Active.on_release(), Apply);
        assert_eq!(Committed.on_release(), Refuse);
        assert_eq!(Active.on_stock_release(), StockRelease::GiveBack);
        assert_eq!(Committed.on_stock_release(), StockRelease::PutBackOnHand);
        for status in [Active, Committed, Released, Expired, Rejected, Returned] {
            assert_eq!(ReservationStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(ReservationStatus::parse("ACTIVE"), None);
    }

    #[test]
    fn outcomes_round_trip_through_json() {
        let outcome = ReserveOutcome::Rejected {
            order_id: id(1),
            shortages: vec![Shortage {
                product_id: id(2),
                requested: 3,
                available: 1,
            }],
        };
        let text = serde_json::to_string(&outcome).unwrap();
        assert_eq!(
            serde_json::from_str::<ReserveOutcome>(&text).unwrap(),
            outcome
        );
    }

    proptest::proptest! {
        /// Merging keeps every unit, leaves one line per product, sorted, all positive.
        #[test]
        fn merging_preserves_quantities(
            raw in proptest::collection::vec((0u128..8, 1i64..=MAX_LINE_QUANTITY), 1..=MAX_LINES)
        ) {
            let request = ReservationRequest::parse(draft(&raw), 900).unwrap();
            let total: i64 = raw.iter().map(|&(_, quantity)| quantity).sum();
            proptest::prop_assert_eq!(
                request.lines.iter().map(|line| line.quantity).sum::<i64>(),
                total
            );
            proptest::prop_assert!(request
                .lines
                .windows(2)
                .all(|pair| pair[0].product_id < pair[1].product_id));
            for line in &request.lines {
                let expected: i64 = raw
                    .iter()
                    .filter(|&&(product, _)| id(product) == line.product_id)
                    .map(|&(_, quantity)| quantity)
                    .sum();
                proptest::prop_assert_eq!(line.quantity, expected);
            }
        }
    }

    #[test]
    fn stock_changes_are_bounded() {
        assert_eq!(parse_on_hand(0), Ok(0));
        assert!(parse_on_hand(-1).is_err());
        assert!(parse_on_hand(STOCK_MAX + 1).is_err());
        assert_eq!(parse_delta(-3), Ok(-3));
        assert!(parse_delta(0).is_err());
        assert!(parse_delta(STOCK_MAX + 1).is_err());
    }
}
