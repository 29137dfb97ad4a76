//! The order service's events: every change of an order's status is published on
//! `order.event.<order_id>` (stream `ORDER`), for whoever wants to follow orders (notifications,
//! analytics, the storefront's live view through the order service).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::events::{EventType, StreamSpec};
use crate::money::Money;

/// The stream holding order events.
pub const STREAM: StreamSpec = StreamSpec {
    name: "ORDER",
    subjects: &["order.>"],
};

/// Every event subject.
pub const EVENT_SUBJECTS: &str = "order.event.>";

/// Where the events of `order_id` are published.
pub fn event_subject(order_id: Uuid) -> String {
    format!("order.event.{order_id}")
}

/// The type names, `micromart.order.order.<status>.v1`.
pub mod types {
    pub const PLACED: &str = "micromart.order.order.placed.v1";
    pub const CONFIRMED: &str = "micromart.order.order.confirmed.v1";
    pub const CANCELLED: &str = "micromart.order.order.cancelled.v1";
    pub const SHIPPED: &str = "micromart.order.order.shipped.v1";

    pub const EVENTS: [&str; 4] = [PLACED, CONFIRMED, CANCELLED, SHIPPED];
}

/// Where an order is. `pending → confirmed → shipped`, and `cancelled` from `pending` (the
/// checkout failed or was cancelled) or `confirmed` (cancelled before shipping: refunded and
/// restocked). `cancelling` is the way there while compensation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Cancelling,
    Cancelled,
    Shipped,
}

impl OrderStatus {
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Confirmed,
        Self::Cancelling,
        Self::Cancelled,
        Self::Shipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
            Self::Shipped => "shipped",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }

    /// Whether the order will not change any more (a shipped order can no longer be
    /// cancelled here).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Cancelled | Self::Shipped)
    }
}

/// Why an order was cancelled: machine-readable, stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// Not enough stock for at least one line.
    OutOfStock,
    /// The card was declined (also for insufficient funds or an expired card).
    PaymentDeclined,
    /// The payment could not be taken for another reason (provider unavailable, capture
    /// refused, payment method unknown).
    PaymentFailed,
    /// The reservation lapsed before the stock could be taken.
    ReservationExpired,
    /// A step did not answer within its deadline and its retries.
    Timeout,
    /// The customer cancelled.
    CancelledByCustomer,
    /// Staff cancelled.
    CancelledByAdmin,
}

impl CancelReason {
    pub const ALL: [Self; 7] = [
        Self::OutOfStock,
        Self::PaymentDeclined,
        Self::PaymentFailed,
        Self::ReservationExpired,
        Self::Timeout,
        Self::CancelledByCustomer,
        Self::CancelledByAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutOfStock => "out_of_stock",
            Self::PaymentDeclined => "payment_declined",
            Self::PaymentFailed => "payment_failed",
            Self::ReservationExpired => "reservation_expired",
            Self::Timeout => "timeout",
            Self::CancelledByCustomer => "cancelled_by_customer",
            Self::CancelledByAdmin => "cancelled_by_admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == text)
    }
}

/// An order's status changed (the data of every order event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStatusChanged {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub status: OrderStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<CancelReason>,
    pub total: Money,
    pub at: DateTime<Utc>,
}

impl OrderStatusChanged {
    /// The event type of this change (`None` for `cancelling`, which is not published).
    pub fn type_name(&self) -> Option<&'static str> {
        Some(match self.status {
            OrderStatus::Pending => types::PLACED,
            OrderStatus::Confirmed => types::CONFIRMED,
            OrderStatus::Cancelled => types::CANCELLED,
            OrderStatus::Shipped => types::SHIPPED,
            OrderStatus::Cancelling => return None,
        })
    }

    pub fn event_type(&self) -> Option<EventType> {
        self.type_name().and_then(|name| name.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule_and_words_read_back() {
        for name in types::EVENTS {
            let parsed: EventType = name.parse().unwrap();
            assert_eq!(parsed.service, "order");
        }
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        for reason in CancelReason::ALL {
            assert_eq!(CancelReason::parse(reason.as_str()), Some(reason));
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
        assert!(event_subject(Uuid::nil()).starts_with("order.event."));
    }
}
