//! `payments_total{outcome}`: what became of payments, one count per recorded answer (a
//! provider's, or a refusal before any provider call), counted once its transaction committed.
//! Provider calls themselves, retries included, are `payment_provider_calls_total`.

use contracts::payment::{FailureReason, PaymentEvent};

/// The `outcome` label of an answer: `authorized`, `declined` (the card or the provider said
/// no), `failed` (the provider did not answer in time), `captured`, `voided`, `refunded`,
/// `refund_failed`, `rejected` (a command the payment's state refused).
pub fn outcome(event: &PaymentEvent) -> &'static str {
    match event {
        PaymentEvent::Authorized(_) => "authorized",
        PaymentEvent::Failed(failed) if failed.reason == FailureReason::ProviderUnavailable => {
            "failed"
        }
        PaymentEvent::Failed(_) => "declined",
        PaymentEvent::Captured(_) => "captured",
        PaymentEvent::Voided(_) => "voided",
        PaymentEvent::Refunded(_) => "refunded",
        PaymentEvent::RefundFailed(_) => "refund_failed",
        PaymentEvent::Rejected(_) => "rejected",
    }
}

/// Counts one committed answer.
pub fn count(outcome: &'static str) {
    metrics::counter!("payments_total", "outcome" => outcome).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::payment::PaymentFailed;
    use uuid::Uuid;

    fn failed(reason: FailureReason) -> PaymentEvent {
        PaymentEvent::Failed(PaymentFailed {
            payment_id: Uuid::new_v4(),
            order_id: Uuid::new_v4(),
            reason,
        })
    }

    #[test]
    fn a_provider_that_did_not_answer_failed_every_other_refusal_declined() {
        assert_eq!(
            outcome(&failed(FailureReason::ProviderUnavailable)),
            "failed"
        );
        for reason in [
            FailureReason::CardDeclined,
            FailureReason::InsufficientFunds,
            FailureReason::CardExpired,
            FailureReason::PaymentMethodNotFound,
            FailureReason::PaymentMethodNotOwned,
            FailureReason::AuthorizationExpired,
            FailureReason::ProviderRefused,
        ] {
            assert_eq!(outcome(&failed(reason)), "declined", "{reason:?}");
        }
    }
}
