//! The payment service's commands and events on the bus, as the checkout saga sends and reads
//! them.
//!
//! Everything of one order travels on subjects of its own (`payment.command.<order_id>`,
//! `payment.event.<order_id>`), so a consumer sees one order's messages in order. Each command
//! is idempotent by order id and step (a refund by its `refund_id`): a repeat changes nothing
//! and is answered again with the current outcome, so a saga that lost an answer gets it by
//! asking again. Card data never travels here: an authorization names a payment method the
//! customer registered over HTTP.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::events::{EventType, StreamSpec};
use crate::money::Money;

/// The stream holding payment commands and events.
pub const STREAM: StreamSpec = StreamSpec {
    name: "PAYMENT",
    subjects: &["payment.>"],
};

/// Every command subject (what the payment service consumes).
pub const COMMAND_SUBJECTS: &str = "payment.command.>";
/// Every event subject (what the saga consumes).
pub const EVENT_SUBJECTS: &str = "payment.event.>";

/// Where commands about `order_id` are published.
pub fn command_subject(order_id: Uuid) -> String {
    format!("payment.command.{order_id}")
}

/// Where the answers about `order_id` are published.
pub fn event_subject(order_id: Uuid) -> String {
    format!("payment.event.{order_id}")
}

/// The type names, `micromart.payment.<noun>.<verb>.v1`: imperative verbs for commands, past
/// participles for events.
pub mod types {
    pub const AUTHORIZE: &str = "micromart.payment.payment.authorize.v1";
    pub const CAPTURE: &str = "micromart.payment.payment.capture.v1";
    pub const VOID: &str = "micromart.payment.payment.void.v1";
    pub const REFUND: &str = "micromart.payment.payment.refund.v1";

    pub const AUTHORIZED: &str = "micromart.payment.payment.authorized.v1";
    pub const CAPTURED: &str = "micromart.payment.payment.captured.v1";
    pub const VOIDED: &str = "micromart.payment.payment.voided.v1";
    pub const REFUNDED: &str = "micromart.payment.payment.refunded.v1";
    pub const FAILED: &str = "micromart.payment.payment.failed.v1";
    /// A refund the provider refused; the payment itself is unchanged.
    pub const REFUND_FAILED: &str = "micromart.payment.refund.failed.v1";
    /// A command that contradicts the payment's state (a capture of a voided payment, a
    /// refund above what is left): nothing was done.
    pub const COMMAND_REJECTED: &str = "micromart.payment.command.rejected.v1";

    /// Every command type, as the payment service's consumer accepts them.
    pub const COMMANDS: [&str; 4] = [AUTHORIZE, CAPTURE, VOID, REFUND];
    /// Every event type the payment service publishes.
    pub const EVENTS: [&str; 7] = [
        AUTHORIZED,
        CAPTURED,
        VOIDED,
        REFUNDED,
        FAILED,
        REFUND_FAILED,
        COMMAND_REJECTED,
    ];
}

/// The step of a payment a command asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Authorize,
    Capture,
    Void,
    Refund,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorize => "authorize",
            Self::Capture => "capture",
            Self::Void => "void",
            Self::Refund => "refund",
        }
    }
}

/// Where a payment is. `pending → authorized → captured → refunded` (refunded once refunds
/// add up to what was captured; partly refunded payments stay `captured`), `authorized →
/// voided`, and `failed` (with a reason) from `pending` (the authorization did not succeed)
/// or `authorized` (the provider refused the capture).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    Pending,
    Authorized,
    Captured,
    Refunded,
    Voided,
    Failed,
}

impl PaymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Authorized => "authorized",
            Self::Captured => "captured",
            Self::Refunded => "refunded",
            Self::Voided => "voided",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "authorized" => Self::Authorized,
            "captured" => Self::Captured,
            "refunded" => Self::Refunded,
            "voided" => Self::Voided,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// Why a payment or a refund failed: machine-readable, stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The issuer declined the card.
    CardDeclined,
    /// The issuer declined for lack of funds.
    InsufficientFunds,
    /// The card expired before the authorization.
    CardExpired,
    /// No payment method has this id.
    PaymentMethodNotFound,
    /// The payment method belongs to another customer.
    PaymentMethodNotOwned,
    /// The provider did not answer within the bounded time; any authorization it may have
    /// made is voided.
    ProviderUnavailable,
    /// The authorization was no longer valid at the provider (capture refused).
    AuthorizationExpired,
    /// The provider refused for a reason of its own.
    ProviderRefused,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CardDeclined => "card_declined",
            Self::InsufficientFunds => "insufficient_funds",
            Self::CardExpired => "card_expired",
            Self::PaymentMethodNotFound => "payment_method_not_found",
            Self::PaymentMethodNotOwned => "payment_method_not_owned",
            Self::ProviderUnavailable => "provider_unavailable",
            Self::AuthorizationExpired => "authorization_expired",
            Self::ProviderRefused => "provider_refused",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "card_declined" => Self::CardDeclined,
            "insufficient_funds" => Self::InsufficientFunds,
            "card_expired" => Self::CardExpired,
            "payment_method_not_found" => Self::PaymentMethodNotFound,
            "payment_method_not_owned" => Self::PaymentMethodNotOwned,
            "provider_unavailable" => Self::ProviderUnavailable,
            "authorization_expired" => Self::AuthorizationExpired,
            "provider_refused" => Self::ProviderRefused,
            _ => return None,
        })
    }
}

/// Why a command was not acted upon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RejectionReason {
    /// Capture or void of a payment that is not (or no longer) authorized; `state` says where
    /// it is.
    NotAuthorized,
    /// Refund of a payment that was never captured.
    NotCaptured,
    /// A capture above the authorized amount.
    AmountExceedsAuthorized,
    /// A refund above what is captured and not yet refunded (refunds in progress count).
    AmountExceedsRefundable,
    /// An amount in another currency than the payment's.
    CurrencyMismatch,
}

impl RejectionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAuthorized => "not_authorized",
            Self::NotCaptured => "not_captured",
            Self::AmountExceedsAuthorized => "amount_exceeds_authorized",
            Self::AmountExceedsRefundable => "amount_exceeds_refundable",
            Self::CurrencyMismatch => "currency_mismatch",
        }
    }
}

/// Authorize `amount` on a payment method the customer registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizePayment {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub payment_method_id: Uuid,
    /// Above zero.
    pub amount: Money,
}

/// Capture an authorized payment: `amount` up to the authorized amount (the rest is
/// released).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapturePayment {
    pub order_id: Uuid,
    pub amount: Money,
}

/// Release an authorization. A payment that failed holds nothing: it is answered with its
/// `failed` event again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoidPayment {
    pub order_id: Uuid,
}

/// Refund part or all of a captured payment. `refund_id` (chosen by the sender) makes the
/// refund idempotent: several refunds of one order have several ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundPayment {
    pub order_id: Uuid,
    pub refund_id: Uuid,
    pub amount: Money,
}

/// The card a payment was made with, as much as is kept of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CardSummary {
    /// `visa`, `mastercard`, `amex`, `discover` or `other`.
    pub brand: String,
    /// The last four digits.
    pub last4: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentAuthorized {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub amount: Money,
    pub card: CardSummary,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCaptured {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    /// What was captured (at most the authorized amount).
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentVoided {
    pub payment_id: Uuid,
    pub order_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub refund_id: Uuid,
    /// This refund.
    pub amount: Money,
    /// Every successful refund of the payment so far, this one included.
    pub total_refunded: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFailed {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub reason: FailureReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundFailed {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub refund_id: Uuid,
    pub amount: Money,
    pub reason: FailureReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRejected {
    pub order_id: Uuid,
    /// `None` when the order has no payment.
    pub payment_id: Option<Uuid>,
    pub command: Step,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<Uuid>,
    pub reason: RejectionReason,
    /// Where the payment is.
    pub state: Option<PaymentState>,
}

/// A command as the payment service reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentCommand {
    Authorize(AuthorizePayment),
    Capture(CapturePayment),
    Void(VoidPayment),
    Refund(RefundPayment),
}

impl PaymentCommand {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Authorize(_) => types::AUTHORIZE,
            Self::Capture(_) => types::CAPTURE,
            Self::Void(_) => types::VOID,
            Self::Refund(_) => types::REFUND,
        }
    }

    pub fn event_type(&self) -> EventType {
        parse_type(self.type_name())
    }

    pub fn order_id(&self) -> Uuid {
        match self {
            Self::Authorize(c) => c.order_id,
            Self::Capture(c) => c.order_id,
            Self::Void(c) => c.order_id,
            Self::Refund(c) => c.order_id,
        }
    }

    /// The subject to publish it on.
    pub fn subject(&self) -> String {
        command_subject(self.order_id())
    }

    /// The envelope's `data`.
    pub fn data(&self) -> serde_json::Value {
        let data = match self {
            Self::Authorize(c) => serde_json::to_value(c),
            Self::Capture(c) => serde_json::to_value(c),
            Self::Void(c) => serde_json::to_value(c),
            Self::Refund(c) => serde_json::to_value(c),
        };
        // Plain structs of ids and money always serialize.
        data.unwrap_or_default()
    }
}

/// An event as the saga reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentEvent {
    Authorized(PaymentAuthorized),
    Captured(PaymentCaptured),
    Voided(PaymentVoided),
    Refunded(PaymentRefunded),
    Failed(PaymentFailed),
    RefundFailed(RefundFailed),
    Rejected(CommandRejected),
}

impl PaymentEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Authorized(_) => types::AUTHORIZED,
            Self::Captured(_) => types::CAPTURED,
            Self::Voided(_) => types::VOIDED,
            Self::Refunded(_) => types::REFUNDED,
            Self::Failed(_) => types::FAILED,
            Self::RefundFailed(_) => types::REFUND_FAILED,
            Self::Rejected(_) => types::COMMAND_REJECTED,
        }
    }

    pub fn event_type(&self) -> EventType {
        parse_type(self.type_name())
    }

    pub fn order_id(&self) -> Uuid {
        match self {
            Self::Authorized(e) => e.order_id,
            Self::Captured(e) => e.order_id,
            Self::Voided(e) => e.order_id,
            Self::Refunded(e) => e.order_id,
            Self::Failed(e) => e.order_id,
            Self::RefundFailed(e) => e.order_id,
            Self::Rejected(e) => e.order_id,
        }
    }

    /// The subject it is published on.
    pub fn subject(&self) -> String {
        event_subject(self.order_id())
    }

    /// The envelope's `data`.
    pub fn data(&self) -> serde_json::Value {
        let data = match self {
            Self::Authorized(e) => serde_json::to_value(e),
            Self::Captured(e) => serde_json::to_value(e),
            Self::Voided(e) => serde_json::to_value(e),
            Self::Refunded(e) => serde_json::to_value(e),
            Self::Failed(e) => serde_json::to_value(e),
            Self::RefundFailed(e) => serde_json::to_value(e),
            Self::Rejected(e) => serde_json::to_value(e),
        };
        // Plain structs of ids, enums and money always serialize.
        data.unwrap_or_default()
    }

    /// Reads an event from its type name and data; `Err` names what does not fit.
    pub fn parse(type_name: &str, data: &serde_json::Value) -> Result<Self, String> {
        fn read<T: serde::de::DeserializeOwned>(data: &serde_json::Value) -> Result<T, String> {
            T::deserialize(data).map_err(|error| error.to_string())
        }
        Ok(match type_name {
            types::AUTHORIZED => Self::Authorized(read(data)?),
            types::CAPTURED => Self::Captured(read(data)?),
            types::VOIDED => Self::Voided(read(data)?),
            types::REFUNDED => Self::Refunded(read(data)?),
            types::FAILED => Self::Failed(read(data)?),
            types::REFUND_FAILED => Self::RefundFailed(read(data)?),
            types::COMMAND_REJECTED => Self::Rejected(read(data)?),
            other => return Err(format!("{other} is not a payment event")),
        })
    }
}

fn parse_type(name: &str) -> EventType {
    // The names above follow the rule; a test parses each of them.
    name.parse().unwrap_or_else(|_| EventType {
        service: "payment".to_owned(),
        noun: "payment".to_owned(),
        verb: "unknown".to_owned(),
        version: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use serde_json::json;

    #[test]
    fn every_type_name_follows_the_rule_and_lives_in_the_stream() {
        for name in types::COMMANDS.iter().chain(types::EVENTS.iter()) {
            let parsed: EventType = name.parse().unwrap();
            assert_eq!(parsed.service, "payment", "{name}");
            assert_eq!(parsed.to_string(), *name);
        }
        let order = Uuid::now_v7();
        // The stream's one pattern (`payment.>`) must hold every subject used.
        assert_eq!(STREAM.subjects, ["payment.>"]);
        for subject in [command_subject(order), event_subject(order)] {
            assert!(subject.starts_with("payment."), "{subject}");
        }
        assert!(COMMAND_SUBJECTS.starts_with("payment.command."));
        assert!(EVENT_SUBJECTS.starts_with("payment.event."));
    }

    #[test]
    fn commands_name_their_subject_and_type() {
        let order_id = Uuid::now_v7();
        let command = PaymentCommand::Capture(CapturePayment {
            order_id,
            amount: Money::positive(100, Currency::parse("EUR").unwrap()).unwrap(),
        });
        assert_eq!(command.subject(), format!("payment.command.{order_id}"));
        assert_eq!(command.event_type().to_string(), types::CAPTURE);
        assert_eq!(
            command.data(),
            json!({"order_id": order_id, "amount": {"amount": 100, "currency": "EUR"}})
        );
    }

    #[test]
    fn events_round_trip_through_type_and_data() {
        let event = PaymentEvent::Rejected(CommandRejected {
            order_id: Uuid::now_v7(),
            payment_id: Some(Uuid::now_v7()),
            command: Step::Capture,
            refund_id: None,
            reason: RejectionReason::NotAuthorized,
            state: Some(PaymentState::Voided),
        });
        let data = event.data();
        assert_eq!(data["reason"], "not_authorized");
        assert_eq!(data["state"], "voided");
        assert_eq!(
            PaymentEvent::parse(event.type_name(), &data).unwrap(),
            event
        );
        assert!(PaymentEvent::parse(types::AUTHORIZE, &data).is_err());
        assert!(PaymentEvent::parse(types::CAPTURED, &json!({"order_id": 1})).is_err());
    }

    #[test]
    fn commands_refuse_unknown_fields_and_bad_money() {
        let order_id = Uuid::now_v7();
        let good = json!({"order_id": order_id, "amount": {"amount": 5, "currency": "EUR"}});
        assert!(serde_json::from_value::<CapturePayment>(good).is_ok());
        for bad in [
            json!({"order_id": order_id, "amount": {"amount": -5, "currency": "EUR"}}),
            json!({"order_id": order_id, "amount": {"amount": 5, "currency": "ZZZ"}}),
            json!({"order_id": order_id, "amount": {"amount": 5, "currency": "EUR"}, "x": 1}),
            json!({"order_id": "nope", "amount": {"amount": 5, "currency": "EUR"}}),
        ] {
            assert!(
                serde_json::from_value::<CapturePayment>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn states_and_reasons_read_back_what_they_write() {
        for state in [
            PaymentState::Pending,
            PaymentState::Authorized,
            PaymentState::Captured,
            PaymentState::Refunded,
            PaymentState::Voided,
            PaymentState::Failed,
        ] {
            assert_eq!(PaymentState::parse(state.as_str()), Some(state));
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
        for reason in [
            FailureReason::CardDeclined,
            FailureReason::InsufficientFunds,
            FailureReason::CardExpired,
            FailureReason::PaymentMethodNotFound,
            FailureReason::PaymentMethodNotOwned,
            FailureReason::ProviderUnavailable,
            FailureReason::AuthorizationExpired,
            FailureReason::ProviderRefused,
        ] {
            assert_eq!(FailureReason::parse(reason.as_str()), Some(reason));
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
        for reason in [
            RejectionReason::NotAuthorized,
            RejectionReason::NotCaptured,
            RejectionReason::AmountExceedsAuthorized,
            RejectionReason::AmountExceedsRefundable,
            RejectionReason::CurrencyMismatch,
        ] {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
    }
}
