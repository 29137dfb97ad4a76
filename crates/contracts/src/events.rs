//! The envelope every event travels in: CloudEvents 1.0, JSON format.
//!
//! Minimal copy for the JetStream branch; the fuller version (constructors, schemas) lands with
//! the event backbone's trait side. Field names are the CloudEvents attribute names.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One event: CloudEvents 1.0 attributes plus the JSON payload in `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique per event; consumers de-duplicate by it and the bus uses it as the message id.
    pub id: Uuid,
    /// The service that emitted the event, e.g. `/services/orders`.
    pub source: String,
    /// What happened, e.g. `micromart.orders.order_placed.v1`.
    #[serde(rename = "type")]
    pub r#type: String,
    /// Always `1.0`.
    pub specversion: String,
    /// When it happened.
    pub time: DateTime<Utc>,
    /// What it is about, e.g. the order id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// W3C trace context of the operation that emitted the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The payload.
    pub data: serde_json::Value,
}
