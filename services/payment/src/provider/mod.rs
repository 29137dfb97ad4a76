//! The payment provider behind a trait: tokenizing a card, then authorizing, capturing,
//! voiding and refunding against the token. The service ships a simulator ([`simulated`]); a
//! real provider is another implementation of [`PaymentProvider`].
//!
//! Every call carries an idempotency key: a provider that got a call before answers a repeat
//! of its key with the first answer and does nothing again. That is what makes a retry after
//! an unknown outcome (a timeout, a dropped connection) safe, and the service relies on it.

pub mod simulated;

use std::time::Duration;

use contracts::payment::FailureReason;
use contracts::Money;
use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::domain::card::NewCard;

/// Why a provider call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// A definite answer: the provider refused, and nothing happened.
    #[error("refused by the provider: {}", .0.as_str())]
    Declined(FailureReason),
    /// No answer (a timeout, an outage): the call may or may not have taken effect. Repeat it
    /// with the same key to find out.
    #[error("no answer from the provider: {0}")]
    NoAnswer(String),
}

/// What tokenization gives back: the token stands for the card in every later call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    pub token: String,
}

/// What a void found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voided {
    /// An authorization was released.
    Released,
    /// There was no authorization for the payment: nothing was held.
    NothingHeld,
}

/// A payment provider. `payment` is the service's payment id, which the provider keeps as its
/// reference of the authorization (so a later void can find an authorization whose answer was
/// lost); `key` is the call's idempotency key.
pub trait PaymentProvider: Send + Sync + 'static {
    /// Exchanges card details for a token.
    fn tokenize<'a>(
        &'a self,
        key: &'a str,
        card: &'a NewCard,
    ) -> BoxFuture<'a, Result<Tokenized, ProviderError>>;

    /// Holds `amount` on the card `token` stands for; answers the provider's authorization id.
    fn authorize<'a>(
        &'a self,
        key: &'a str,
        payment: Uuid,
        token: &'a str,
        amount: Money,
    ) -> BoxFuture<'a, Result<String, ProviderError>>;

    /// Takes `amount` (at most the authorized amount) of the payment's authorization.
    fn capture<'a>(
        &'a self,
        key: &'a str,
        payment: Uuid,
        amount: Money,
    ) -> BoxFuture<'a, Result<(), ProviderError>>;

    /// Releases the payment's authorization, if there is one.
    fn void<'a>(
        &'a self,
        key: &'a str,
        payment: Uuid,
    ) -> BoxFuture<'a, Result<Voided, ProviderError>>;

    /// Gives `amount` of what was captured back.
    fn refund<'a>(
        &'a self,
        key: &'a str,
        payment: Uuid,
        amount: Money,
    ) -> BoxFuture<'a, Result<(), ProviderError>>;
}

/// Runs a provider call with the caller's deadline: past it, the outcome is unknown.
pub async fn within<T>(
    deadline: Duration,
    call: impl std::future::Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    match tokio::time::timeout(deadline, call).await {
        Ok(result) => result,
        Err(_) => Err(ProviderError::NoAnswer(format!(
            "no answer within {} ms",
            deadline.as_millis()
        ))),
    }
}
