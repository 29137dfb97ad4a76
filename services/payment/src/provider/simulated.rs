//! The simulated provider: no network and no money, but the behaviour a real provider has
//! and the service must survive — latency, declines, outages, answers that come after the
//! caller gave up — and the idempotency a real provider promises: the first answer to a key
//! is recorded and every repeat of the key gets it again, with no second effect.
//!
//! Test cards (docs/payment.md): any valid number authorizes, except
//! - `4000 0000 0000 0002`: always declined (`card_declined`);
//! - `4000 0000 0000 9995`: declined for `insufficient_funds`;
//! - `4000 0000 0000 0119`: the authorization is made, but its first answer comes after the
//!   caller's deadline; a retry with the same key gets it at once.
//!
//! The behaviour is kept in the token (`sim_<behaviour>_<random>`), not in a table of card
//! numbers, so it survives a restart of the service without the number being kept anywhere.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use contracts::payment::FailureReason;
use contracts::Money;
use futures_util::future::BoxFuture;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Deserialize;
use tokio::time::Instant;
use uuid::Uuid;

use super::{PaymentProvider, ProviderError, Tokenized, Voided};
use crate::domain::card::NewCard;

/// A window in which the simulator answers nothing, counted from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    pub start_ms: u64,
    pub duration_ms: u64,
}

/// How the simulator behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatorConfig {
    /// Every call answers after this long.
    pub latency: Duration,
    /// The share of approving cards' authorizations declined (`card_declined`), 0 to 1.
    pub decline_rate: f64,
    /// Seeds the declines; `None` seeds from the system.
    pub seed: Option<u64>,
    pub outages: Vec<Outage>,
    /// How long the late test card's first answer waits: past the caller's deadline.
    pub late_by: Duration,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            decline_rate: 0.0,
            seed: None,
            outages: Vec::new(),
            late_by: Duration::from_secs(4),
        }
    }
}

/// What a test card does, as its token records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Approve,
    Decline,
    Insufficient,
    Late,
}

/// The documented test cards; every other valid number approves.
const TEST_CARDS: &[(&str, Behaviour)] = &[
    ("4000000000000002", Behaviour::Decline),
    ("4000000000009995", Behaviour::Insufficient),
    ("4000000000000119", Behaviour::Late),
];

impl Behaviour {
    fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Decline => "decline",
            Self::Insufficient => "insufficient",
            Self::Late => "late",
        }
    }

    fn of_card(card: &NewCard) -> Self {
        TEST_CARDS
            .iter()
            .find(|(number, _)| *number == card.number.digits())
            .map_or(Self::Approve, |(_, behaviour)| *behaviour)
    }

    fn of_token(token: &str) -> Option<Self> {
        let mut parts = token.splitn(3, '_');
        if parts.next() != Some("sim") {
            return None;
        }
        let behaviour = match parts.next()? {
            "approve" => Self::Approve,
            "decline" => Self::Decline,
            "insufficient" => Self::Insufficient,
            "late" => Self::Late,
            _ => return None,
        };
        parts.next().filter(|random| !random.is_empty())?;
        Some(behaviour)
    }
}

/// One effect the simulator had: what a real provider would have on its books.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The idempotency key of the call that had it.
    pub key: String,
    /// `tokenize`, `authorize`, `capture`, `void` or `refund`.
    pub operation: &'static str,
    pub payment: Option<Uuid>,
    pub amount: Option<Money>,
}

/// A recorded first answer.
#[derive(Debug, Clone)]
enum Answer {
    Token(String),
    Authorized(String),
    Done,
    Voided(Voided),
    Declined(FailureReason),
}

#[derive(Debug)]
struct Authorization {
    amount: Money,
    captured: i64,
    refunded: i64,
    voided: bool,
}

struct State {
    /// Per idempotency key: what the call asked (to refuse a reuse for something else) and
    /// its first answer.
    answers: HashMap<String, (String, Answer)>,
    /// Per payment (the caller's reference).
    authorizations: HashMap<Uuid, Authorization>,
    ledger: Vec<LedgerEntry>,
    rng: StdRng,
}

/// The simulated provider. Shared by clones of its `Arc`; its books live as long as it does.
pub struct SimulatedProvider {
    config: SimulatorConfig,
    started: Instant,
    state: Mutex<State>,
}

impl std::fmt::Debug for SimulatedProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedProvider")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What one call asks, for replay and for the books.
struct Call<'a> {
    key: &'a str,
    operation: &'static str,
    payment: Option<Uuid>,
    amount: Option<Money>,
    /// What makes two calls with one key the same request.
    request: String,
}

impl SimulatedProvider {
    pub fn new(config: SimulatorConfig) -> Self {
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        Self {
            config,
            started: Instant::now(),
            state: Mutex::new(State {
                answers: HashMap::new(),
                authorizations: HashMap::new(),
                ledger: Vec::new(),
                rng,
            }),
        }
    }

    /// Every effect so far, oldest first.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        self.lock().ledger.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update under the lock is one step: a panic elsewhere leaves it consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn in_outage(&self) -> bool {
        let since_start = self.started.elapsed();
        self.config.outages.iter().any(|outage| {
            let start = Duration::from_millis(outage.start_ms);
            let end = start.saturating_add(Duration::from_millis(outage.duration_ms));
            (start..end).contains(&since_start)
        })
    }

    /// One call: latency, then nothing during an outage, then the recorded answer of the key
    /// or, the first time, `effect` (recorded with its entry in the books when it succeeds).
    /// Answers whether this was the key's first answer too.
    async fn call(
        &self,
        call: Call<'_>,
        effect: impl FnOnce(&mut State) -> Answer,
    ) -> Result<(Answer, bool), ProviderError> {
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
        if self.in_outage() {
            return Err(ProviderError::NoAnswer(
                "the simulated provider is in an outage".to_owned(),
            ));
        }
        let mut state = self.lock();
        if let Some((request, answer)) = state.answers.get(call.key) {
            if *request != call.request {
                return Ok((Answer::Declined(FailureReason::ProviderRefused), false));
            }
            return Ok((answer.clone(), false));
        }
        let answer = effect(&mut state);
        if !matches!(
            answer,
            Answer::Declined(_) | Answer::Voided(Voided::NothingHeld)
        ) {
            state.ledger.push(LedgerEntry {
                key: call.key.to_owned(),
                operation: call.operation,
                payment: call.payment,
                amount: call.amount,
            });
        }
        state
            .answers
            .insert(call.key.to_owned(), (call.request, answer.clone()));
        Ok((answer, true))
    }
}

fn declined<T>(answer: Answer) -> Result<T, ProviderError> {
    match answer {
        Answer::Declined(reason) => Err(ProviderError::Declined(reason)),
        // A key answered for another operation is a caller's bug the provider refuses.
        _ => Err(ProviderError::Declined(FailureReason::ProviderRefused)),
    }
}

impl PaymentProvider for SimulatedProvider {
    fn tokenize<'a>(
        &'a self,
        key: &'a str,
        card: &'a NewCard,
    ) -> BoxFuture<'a, Result<Tokenized, ProviderError>> {
        Box::pin(async move {
            let behaviour = Behaviour::of_card(card);
            let call = Call {
                key,
                operation: "tokenize",
                payment: None,
                amount: None,
                // The request is the card; what identifies it here is its behaviour and
                // last four digits (the simulator keeps no number either).
                request: format!("tokenize {} {}", behaviour.as_str(), card.number.last4()),
            };
            let (answer, _) = self
                .call(call, |state| {
                    let random: u128 = state.rng.gen();
                    Answer::Token(format!("sim_{}_{random:032x}", behaviour.as_str()))
                })
                .await?;
            match answer {
                Answer::Token(token) => Ok(Tokenized { token }),
                other => declined(other),
            }
        })
    }

    fn authorize<'a>(
        &'a self,
        key: &'a str,
        payment: Uuid,
        token: &'a str,
        amount: Money,
    ) -> BoxFuture<'a, Result<String, ProviderError>> {
        Box::pin(async move {
            let behaviour = Behaviour::of_token(token);
            let call = Call {
                key,
                operation: "authorize",
                payment: Some(payment),
                amount: Some(amount),
                request: format!("authorize {payment} {amount} {token}"),
            };
            let decline_rate = self.config.decline_rate;
            let (answer, first) = self
                .call(call, |state| {
                    let Some(behaviour) = behaviour else {
                        return Answer::Declined(FailureReason::ProviderRefused);
                    };
                    match behaviour {
                        Behaviour::Decline => return Answer::Declined(FailureReason::CardDeclined),
                        Behaviour::Insufficient => {
                            return Answer::Declined(FailureReason::InsufficientFunds)
                        }
                        Behaviour::Approve if state.rng.gen::<f64>() < decline_rate => {
                            return Answer::Declined(FailureReason::CardDeclined)
                        }
                        Behaviour::Approve | Behaviour::Late => {}
                    }
                    if state.authorizations.contains_key(&payment) {
                        // Authorized before under another key: a second hold is refused.
                        return Answer::Declined(FailureReason::ProviderRefused);
                    }
                    state.authorizations.insert(
                        payment,
                        Authorization {
                            amount,
                            captured: 0,
                            refunded: 0,
                            voided: false,
                        },
                    );
                    Answer::Authorized(format!("simauth_{}", payment.simple()))
                })
                .await?;
            if first && behaviour == Some(Behaviour::Late) {
                // Made, but answered too late for the caller (who gives up at its deadline).
                tokio::time::sleep(self.config.late_by).await;
            }
            match answer {
                Answer::Authorized(reference) => Ok(reference),
                other => declined(other),
            }
        })
    }

    fn capture<'a>(
        &'a self,
        key: &'a str,
        payment: Uuid,
        amount: Money,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let call = Call {
                key,
                operation: "capture",
                payment: Some(payment),
                amount: Some(amount),
                request: format!("capture {payment} {amount}"),
            };
            let (answer, _) = self
                .call(call, |state| match state.authorizations.get_mut(&payment) {
                    None => Answer::Declined(FailureReason::AuthorizationExpired),
                    Some(held) if held.voided => {
                        Answer::Declined(FailureReason::AuthorizationExpired)
                    }
                    Some(held)
                        if held.captured > 0
                            || held.amount.currency != amount.currency
                            || amount.amount > held.amount.amount =>
                    {
                        Answer::Declined(FailureReason::ProviderRefused)
                    }
                    Some(held) => {
                        held.captured = amount.amount;
                        Answer::Done
                    }
                })
                .await?;
            match answer {
                Answer::Done => Ok(()),
                other => declined(other),
            }
        })
    }

    fn void<'a>(
        &'a self,
        key: &'a str,
        payment: Uuid,
    ) -> BoxFuture<'a, Result<Voided, ProviderError>> {
        Box::pin(async move {
            let call = Call {
                key,
                operation: "void",
                payment: Some(payment),
                amount: None,
                request: format!("void {payment}"),
            };
            let (answer, _) = self
                .call(call, |state| match state.authorizations.get_mut(&payment) {
                    None => Answer::Voided(Voided::NothingHeld),
                    Some(held) if held.voided => Answer::Voided(Voided::NothingHeld),
                    Some(held) if held.captured > 0 => {
                        Answer::Declined(FailureReason::ProviderRefused)
                    }
                    Some(held) => {
                        held.voided = true;
                        Answer::Voided(Voided::Released)
                    }
                })
                .await?;
            match answer {
                Answer::Voided(voided) => Ok(voided),
                other => declined(other),
            }
        })
    }

    fn refund<'a>(
        &'a self,
        key: &'a str,
        payment: Uuid,
        amount: Money,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let call = Call {
                key,
                operation: "refund",
                payment: Some(payment),
                amount: Some(amount),
                request: format!("refund {payment} {amount}"),
            };
            let (answer, _) = self
                .call(call, |state| match state.authorizations.get_mut(&payment) {
                    Some(held)
                        if held.amount.currency == amount.currency
                            && held.captured - held.refunded >= amount.amount =>
                    {
                        held.refunded += amount.amount;
                        Answer::Done
                    }
                    _ => Answer::Declined(FailureReason::ProviderRefused),
                })
                .await?;
            match answer {
                Answer::Done => Ok(()),
                other => declined(other),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::within;
    use contracts::Currency;

    fn card(number: &str) -> NewCard {
        let today = chrono::NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
        NewCard::parse(number, 12, 2030, "123", today).unwrap()
    }

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::parse("EUR").unwrap()).unwrap()
    }

    fn effects(provider: &SimulatedProvider, operation: &str) -> usize {
        provider
            .ledger()
            .iter()
            .filter(|entry| entry.operation == operation)
            .count()
    }

    #[tokio::test]
    async fn the_token_carries_the_test_cards_behaviour_and_no_number() {
        let provider = SimulatedProvider::new(SimulatorConfig::default());
        for (number, behaviour) in [
            ("4242424242424242", "approve"),
            ("4000000000000002", "decline"),
            ("4000000000009995", "insufficient"),
            ("4000000000000119", "late"),
        ] {
            let token = provider
                .tokenize(number, &card(number))
                .await
                .unwrap()
                .token;
            assert!(token.starts_with(&format!("sim_{behaviour}_")), "{token}");
            assert!(!token.contains(&number[4..]), "{token}");
        }
    }

    #[tokio::test]
    async fn declining_cards_decline_with_their_reason() {
        let provider = SimulatedProvider::new(SimulatorConfig::default());
        for (number, reason) in [
            ("4000000000000002", FailureReason::CardDeclined),
            ("4000000000009995", FailureReason::InsufficientFunds),
        ] {
            let token = provider
                .tokenize(&format!("t{number}"), &card(number))
                .await
                .unwrap()
                .token;
            let answer = provider
                .authorize(&format!("a{number}"), Uuid::now_v7(), &token, eur(100))
                .await;
            assert_eq!(answer, Err(ProviderError::Declined(reason)));
        }
        assert_eq!(effects(&provider, "authorize"), 0);
    }

    #[tokio::test]
    async fn a_repeated_key_gets_the_first_answer_and_charges_once() {
        let provider = SimulatedProvider::new(SimulatorConfig::default());
        let token = provider
            .tokenize("t", &card("4242424242424242"))
            .await
            .unwrap()
            .token;
        let payment = Uuid::now_v7();
        let key = format!("{payment}:authorize");
        let first = provider
            .authorize(&key, payment, &token, eur(500))
            .await
            .unwrap();
        let again = provider
            .authorize(&key, payment, &token, eur(500))
            .await
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(effects(&provider, "authorize"), 1);
        // The same key for another request is refused, not applied.
        assert_eq!(
            provider.authorize(&key, payment, &token, eur(501)).await,
            Err(ProviderError::Declined(FailureReason::ProviderRefused))
        );
        provider.capture("c", payment, eur(500)).await.unwrap();
        provider.capture("c", payment, eur(500)).await.unwrap();
        provider.refund("r1", payment, eur(200)).await.unwrap();
        provider.refund("r1", payment, eur(200)).await.unwrap();
        provider.refund("r2", payment, eur(300)).await.unwrap();
        assert_eq!(
            provider.refund("r3", payment, eur(1)).await,
            Err(ProviderError::Declined(FailureReason::ProviderRefused))
        );
        assert_eq!(effects(&provider, "capture"), 1);
        assert_eq!(effects(&provider, "refund"), 2);
    }

    #[tokio::test]
    async fn the_late_card_is_authorized_but_answers_after_the_deadline_once() {
        let provider = SimulatedProvider::new(SimulatorConfig {
            late_by: Duration::from_secs(3_600),
            ..SimulatorConfig::default()
        });
        let token = provider
            .tokenize("t", &card("4000000000000119"))
            .await
            .unwrap()
            .token;
        let payment = Uuid::now_v7();
        let deadline = Duration::from_millis(50);
        let first = within(deadline, provider.authorize("a", payment, &token, eur(100))).await;
        assert!(
            matches!(first, Err(ProviderError::NoAnswer(_))),
            "{first:?}"
        );
        // It happened all the same; the retry learns it and nothing is charged again.
        let retried = within(deadline, provider.authorize("a", payment, &token, eur(100))).await;
        assert!(retried.is_ok(), "{retried:?}");
        assert_eq!(effects(&provider, "authorize"), 1);
    }

    #[tokio::test]
    async fn during_an_outage_nothing_happens_and_nothing_is_recorded() {
        let provider = SimulatedProvider::new(SimulatorConfig {
            outages: vec![Outage {
                start_ms: 0,
                duration_ms: 3_600_000,
            }],
            ..SimulatorConfig::default()
        });
        let answer = provider.void("v", Uuid::now_v7()).await;
        assert!(matches!(answer, Err(ProviderError::NoAnswer(_))));
        assert!(provider.lock().answers.is_empty());
        let later = SimulatedProvider::new(SimulatorConfig {
            outages: vec![Outage {
                start_ms: 3_600_000,
                duration_ms: 1,
            }],
            ..SimulatorConfig::default()
        });
        assert_eq!(
            later.void("v", Uuid::now_v7()).await,
            Ok(Voided::NothingHeld)
        );
    }

    #[tokio::test]
    async fn a_void_releases_a_hold_once_and_finds_nothing_without_one() {
        let provider = SimulatedProvider::new(SimulatorConfig::default());
        let token = provider
            .tokenize("t", &card("4242424242424242"))
            .await
            .unwrap()
            .token;
        let payment = Uuid::now_v7();
        assert_eq!(provider.void("v0", payment).await, Ok(Voided::NothingHeld));
        provider
            .authorize("a", payment, &token, eur(100))
            .await
            .unwrap();
        assert_eq!(provider.void("v1", payment).await, Ok(Voided::Released));
        assert_eq!(provider.void("v1", payment).await, Ok(Voided::Released));
        assert_eq!(provider.void("v2", payment).await, Ok(Voided::NothingHeld));
        assert_eq!(
            provider.capture("c", payment, eur(100)).await,
            Err(ProviderError::Declined(FailureReason::AuthorizationExpired))
        );
        assert_eq!(effects(&provider, "void"), 1);
    }

    #[tokio::test]
    async fn a_seeded_decline_rate_declines_that_share_repeatably() {
        let run = || async {
            let provider = SimulatedProvider::new(SimulatorConfig {
                decline_rate: 0.5,
                seed: Some(7),
                ..SimulatorConfig::default()
            });
            let token = "sim_approve_0123";
            let mut outcomes = Vec::new();
            for n in 0..200 {
                let key = format!("k{n}");
                outcomes.push(
                    provider
                        .authorize(&key, Uuid::now_v7(), token, eur(1))
                        .await
                        .is_ok(),
                );
            }
            outcomes
        };
        let first = run().await;
        assert_eq!(first, run().await);
        let approved = first.iter().filter(|ok| **ok).count();
        assert!((60..=140).contains(&approved), "{approved} of 200");
    }
}
