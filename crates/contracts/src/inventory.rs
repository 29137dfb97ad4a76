//! Catalog's stock reservations as the checkout saga uses them: the internal HTTP API
//! (`/internal/v1/reservations...`) and the same operations as commands and events on the bus
//! (stream `INVENTORY`). Every operation is idempotent by order id, and a repeat gets the first
//! answer.
//!
//! On the bus, everything about one order travels on subjects of its own
//! (`inventory.command.<order_id>`, `inventory.event.<order_id>`), so a consumer sees one
//! order's messages in order. Catalog answers every command with exactly one event, and
//! answers a repeated command again (with the current outcome), so a saga that lost an answer
//! gets it by asking again.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::events::{EventType, StreamSpec};

/// Where the reservation API lives on catalog's internal listener.
pub const RESERVATIONS_PATH: &str = "/internal/v1/reservations";

/// The path of one order's reservation.
pub fn reservation_path(order_id: Uuid) -> String {
    format!("{RESERVATIONS_PATH}/{order_id}")
}

/// The path that commits an order's reservation.
pub fn commit_path(order_id: Uuid) -> String {
    format!("{RESERVATIONS_PATH}/{order_id}/commit")
}

/// The path that releases an order's reservation.
pub fn release_path(order_id: Uuid) -> String {
    format!("{RESERVATIONS_PATH}/{order_id}/release")
}

/// The most lines one reservation may have.
pub const MAX_LINES: usize = 100;
/// The most units of one product a line may ask for.
pub const MAX_LINE_QUANTITY: i64 = 1_000_000;
/// The longest a reservation may hold stock.
pub const MAX_TTL_SECS: u64 = 86_400;

/// Reserve every line for an order, or none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveRequest {
    /// The idempotency key: a repeat with the same lines gets the first answer.
    pub order_id: Uuid,
    #[schema(min_items = 1, max_items = 100)]
    pub lines: Vec<ReserveLine>,
    /// How long the stock is held (default from catalog's config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 86_400)]
    pub ttl_secs: Option<u64>,
}

/// A product and quantity to reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveLine {
    pub product_id: Uuid,
    /// Lines of the same product are added up.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub quantity: i64,
}

/// Where a reservation is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Stock is held until `expires_at`.
    Active,
    /// The stock left the shelf.
    Committed,
    /// The order gave the stock back (or released before reserving).
    Released,
    /// Reclaimed after `expires_at`.
    Expired,
    /// Not enough stock: nothing was held.
    Rejected,
    /// A committed sale undone by the order's compensation: its units are back on hand.
    Returned,
}

/// A reservation's state: the answer to reserve (201), get, commit and release (200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reservation {
    pub order_id: Uuid,
    pub status: ReservationStatus,
    /// When an active reservation stops holding stock.
    pub expires_at: DateTime<Utc>,
    /// One line per product, sorted by product id.
    pub lines: Vec<ReservedLine>,
}

/// A reserved line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReservedLine {
    pub product_id: Uuid,
    #[schema(minimum = 1)]
    pub quantity: i64,
}

/// A line that could not be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Shortage {
    pub product_id: Uuid,
    pub requested: i64,
    /// Units that could be sold at the time (0 for an inactive product).
    pub available: i64,
}

/// The members a 409 `insufficient-stock` problem adds to the problem body: nothing is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InsufficientStock {
    pub order_id: Uuid,
    pub shortages: Vec<Shortage>,
}

/// The stream holding stock commands and events.
pub const STREAM: StreamSpec = StreamSpec {
    name: "INVENTORY",
    subjects: &["inventory.>"],
};

/// Every command subject (what catalog consumes).
pub const COMMAND_SUBJECTS: &str = "inventory.command.>";
/// Every event subject (what the saga consumes).
pub const EVENT_SUBJECTS: &str = "inventory.event.>";

/// Where commands about `order_id` are published.
pub fn command_subject(order_id: Uuid) -> String {
    format!("inventory.command.{order_id}")
}

/// Where the answers about `order_id` are published.
pub fn event_subject(order_id: Uuid) -> String {
    format!("inventory.event.{order_id}")
}

/// The type names, `micromart.catalog.stock.<verb>.v1`.
pub mod types {
    pub const RESERVE: &str = "micromart.catalog.stock.reserve.v1";
    pub const COMMIT: &str = "micromart.catalog.stock.commit.v1";
    pub const RELEASE: &str = "micromart.catalog.stock.release.v1";

    pub const RESERVED: &str = "micromart.catalog.stock.reserved.v1";
    pub const REJECTED: &str = "micromart.catalog.stock.rejected.v1";
    pub const COMMITTED: &str = "micromart.catalog.stock.committed.v1";
    pub const COMMIT_REFUSED: &str = "micromart.catalog.stock.commit_refused.v1";
    pub const RELEASED: &str = "micromart.catalog.stock.released.v1";

    /// Every command type, as catalog's consumer accepts them.
    pub const COMMANDS: [&str; 3] = [RESERVE, COMMIT, RELEASE];
    /// Every event type catalog publishes on the stream.
    pub const EVENTS: [&str; 5] = [RESERVED, REJECTED, COMMITTED, COMMIT_REFUSED, RELEASED];
}

/// Reserve every line for an order, or none: answered `stock.reserved` or `stock.rejected`.
/// A reserve for an order already released (a late command after the saga gave up) is answered
/// `stock.rejected` with no shortages: nothing is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReserveStock {
    pub order_id: Uuid,
    /// 1 to [`MAX_LINES`] lines; lines of the same product are added up.
    pub lines: Vec<ReserveLine>,
    /// How long the stock is held, 1 to [`MAX_TTL_SECS`].
    pub ttl_secs: u64,
}

/// Take the reserved stock off the shelf: answered `stock.committed`, or
/// `stock.commit_refused` when the reservation no longer holds stock (expired, released,
/// rejected, never made).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitStock {
    pub order_id: Uuid,
}

/// Make sure the order holds no stock, whatever it did before: an active reservation gives
/// its stock back (`released`), a committed one puts its units back on hand (`returned`, the
/// compensation of a sale), and an order never seen is recorded so a late reserve is refused.
/// Always answered `stock.released`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseStock {
    pub order_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReserved {
    pub order_id: Uuid,
    pub expires_at: DateTime<Utc>,
    /// One line per product, sorted by product id.
    pub lines: Vec<ReservedLine>,
}

/// Why a reserve held nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RejectionReason {
    /// At least one line is short (`shortages` says which; an unknown or inactive product
    /// has 0 available).
    InsufficientStock,
    /// The order was released before this reserve arrived.
    AlreadyReleased,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRejected {
    pub order_id: Uuid,
    pub reason: RejectionReason,
    pub shortages: Vec<Shortage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockCommitted {
    pub order_id: Uuid,
    pub lines: Vec<ReservedLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockCommitRefused {
    pub order_id: Uuid,
    /// Where the reservation is (`expired`, `released`, `rejected`, `returned`), or `None`
    /// when the order never reserved.
    pub status: Option<ReservationStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReleased {
    pub order_id: Uuid,
    /// Where the reservation ended: `released` (also for an order never seen), `returned`,
    /// `expired` or `rejected`. None of them holds stock.
    pub status: ReservationStatus,
}

/// A command as catalog reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockCommand {
    Reserve(ReserveStock),
    Commit(CommitStock),
    Release(ReleaseStock),
}

impl StockCommand {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Reserve(_) => types::RESERVE,
            Self::Commit(_) => types::COMMIT,
            Self::Release(_) => types::RELEASE,
        }
    }

    pub fn event_type(&self) -> EventType {
        parse_type(self.type_name())
    }

    pub fn order_id(&self) -> Uuid {
        match self {
            Self::Reserve(c) => c.order_id,
            Self::Commit(c) => c.order_id,
            Self::Release(c) => c.order_id,
        }
    }

    /// The subject to publish it on.
    pub fn subject(&self) -> String {
        command_subject(self.order_id())
    }

    /// The envelope's `data`.
    pub fn data(&self) -> serde_json::Value {
        let data = match self {
            Self::Reserve(c) => serde_json::to_value(c),
            Self::Commit(c) => serde_json::to_value(c),
            Self::Release(c) => serde_json::to_value(c),
        };
        // Plain structs of ids and numbers always serialize.
        data.unwrap_or_default()
    }

    /// Reads a command from its type name and data; `Err` names what does not fit.
    pub fn parse(type_name: &str, data: &serde_json::Value) -> Result<Self, String> {
        Ok(match type_name {
            types::RESERVE => Self::Reserve(read(data)?),
            types::COMMIT => Self::Commit(read(data)?),
            types::RELEASE => Self::Release(read(data)?),
            other => return Err(format!("{other} is not a stock command")),
        })
    }
}

/// An event as the saga reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockEvent {
    Reserved(StockReserved),
    Rejected(StockRejected),
    Committed(StockCommitted),
    CommitRefused(StockCommitRefused),
    Released(StockReleased),
}

impl StockEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Reserved(_) => types::RESERVED,
            Self::Rejected(_) => types::REJECTED,
            Self::Committed(_) => types::COMMITTED,
            Self::CommitRefused(_) => types::COMMIT_REFUSED,
            Self::Released(_) => types::RELEASED,
        }
    }

    pub fn event_type(&self) -> EventType {
        parse_type(self.type_name())
    }

    pub fn order_id(&self) -> Uuid {
        match self {
            Self::Reserved(e) => e.order_id,
            Self::Rejected(e) => e.order_id,
            Self::Committed(e) => e.order_id,
            Self::CommitRefused(e) => e.order_id,
            Self::Released(e) => e.order_id,
        }
    }

    /// The subject it is published on.
    pub fn subject(&self) -> String {
        event_subject(self.order_id())
    }

    /// The envelope's `data`.
    pub fn data(&self) -> serde_json::Value {
        let data = match self {
            Self::Reserved(e) => serde_json::to_value(e),
            Self::Rejected(e) => serde_json::to_value(e),
            Self::Committed(e) => serde_json::to_value(e),
            Self::CommitRefused(e) => serde_json::to_value(e),
            Self::Released(e) => serde_json::to_value(e),
        };
        // Plain structs of ids, enums and numbers always serialize.
        data.unwrap_or_default()
    }

    /// Reads an event from its type name and data; `Err` names what does not fit.
    pub fn parse(type_name: &str, data: &serde_json::Value) -> Result<Self, String> {
        Ok(match type_name {
            types::RESERVED => Self::Reserved(read(data)?),
            types::REJECTED => Self::Rejected(read(data)?),
            types::COMMITTED => Self::Committed(read(data)?),
            types::COMMIT_REFUSED => Self::CommitRefused(read(data)?),
            types::RELEASED => Self::Released(read(data)?),
            other => return Err(format!("{other} is not a stock event")),
        })
    }
}

fn read<T: serde::de::DeserializeOwned>(data: &serde_json::Value) -> Result<T, String> {
    T::deserialize(data).map_err(|error| error.to_string())
}

fn parse_type(name: &str) -> EventType {
    // The names above follow the rule; a test parses each of them.
    name.parse().unwrap_or_else(|_| EventType {
        service: "catalog".to_owned(),
        noun: "stock".to_owned(),
        verb: "unknown".to_owned(),
        version: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_refuse_unknown_fields_and_omit_an_absent_ttl() {
        let order_id = Uuid::now_v7();
        let request = ReserveRequest {
            order_id,
            lines: vec![ReserveLine {
                product_id: Uuid::now_v7(),
                quantity: 2,
            }],
            ttl_secs: None,
        };
        let json = serde_json::to_value(&request).unwrap();
        assert!(json.get("ttl_secs").is_none());
        assert_eq!(
            serde_json::from_value::<ReserveRequest>(json).unwrap(),
            request
        );
        let extra = serde_json::json!({"order_id": order_id, "lines": [], "extra": 1});
        assert!(serde_json::from_value::<ReserveRequest>(extra).is_err());
        assert_eq!(
            commit_path(order_id),
            format!("/internal/v1/reservations/{order_id}/commit")
        );
    }

    #[test]
    fn statuses_are_snake_case_on_the_wire() {
        assert_eq!(
            serde_json::to_string(&ReservationStatus::Committed).unwrap(),
            "\"committed\""
        );
    }

    #[test]
    fn bus_type_names_follow_the_rule_and_round_trip() {
        for name in types::COMMANDS.iter().chain(types::EVENTS.iter()) {
            let parsed: EventType = name.parse().unwrap();
            assert_eq!(parsed.service, "catalog", "{name}");
            assert_eq!(parsed.to_string(), *name);
        }
        let order_id = Uuid::now_v7();
        assert_eq!(STREAM.subjects, ["inventory.>"]);
        let command = StockCommand::Reserve(ReserveStock {
            order_id,
            lines: vec![ReserveLine {
                product_id: Uuid::now_v7(),
                quantity: 3,
            }],
            ttl_secs: 60,
        });
        assert_eq!(command.subject(), format!("inventory.command.{order_id}"));
        assert_eq!(command.event_type().to_string(), types::RESERVE);
        assert_eq!(
            StockCommand::parse(command.type_name(), &command.data()).unwrap(),
            command
        );
        let event = StockEvent::Released(StockReleased {
            order_id,
            status: ReservationStatus::Returned,
        });
        assert_eq!(event.subject(), format!("inventory.event.{order_id}"));
        assert_eq!(event.data()["status"], "returned");
        assert_eq!(
            StockEvent::parse(event.type_name(), &event.data()).unwrap(),
            event
        );
        assert!(StockEvent::parse(types::RELEASE, &event.data()).is_err());
        let extra = serde_json::json!({"order_id": order_id, "extra": 1});
        assert!(StockCommand::parse(types::COMMIT, &extra).is_err());
    }
}
