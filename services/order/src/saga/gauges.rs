//! The saga gauges, counted from the database every [`REPORT_EVERY`]: `sagas_in_flight{state}`
//! (sagas still waiting for an answer, by state) and `sagas_stuck{state}` (those whose current
//! step began longer than `[order.saga] stuck_after_secs` ago: past every deadline, so only a
//! ticker that does not run, or a compensation the other services keep refusing, keeps them
//! there). Counted from the table, they are right across restarts, and every instance reports
//! the same numbers (aggregate with `max`, not `sum`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::machine::{Saga, StateName};
use crate::store::Store;

/// How often the gauges are counted again.
pub const REPORT_EVERY: Duration = Duration::from_secs(15);

/// The states a saga waits in (it has a retry or a deadline due); the others are final.
pub const WAITING: [StateName; 5] = [
    StateName::Reserving,
    StateName::Authorizing,
    StateName::Committing,
    StateName::Capturing,
    StateName::Compensating,
];

/// In-flight and stuck sagas of one waiting state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateCount {
    pub state: StateName,
    pub in_flight: u64,
    pub stuck: u64,
}

/// Counts `sagas` by waiting state (every one of [`WAITING`], zeros included, so a state
/// that empties reads 0 instead of its last count).
pub fn count(sagas: &[Saga], now: DateTime<Utc>, stuck_after: Duration) -> Vec<StateCount> {
    let stuck_after = chrono::Duration::from_std(stuck_after).unwrap_or(chrono::Duration::MAX);
    let mut counts: Vec<StateCount> = WAITING
        .iter()
        .map(|&state| StateCount {
            state,
            in_flight: 0,
            stuck: 0,
        })
        .collect();
    for saga in sagas {
        let name = saga.state.name();
        let Some(count) = counts.iter_mut().find(|count| count.state == name) else {
            continue;
        };
        count.in_flight += 1;
        if now - saga.step_started_at > stuck_after {
            count.stuck += 1;
        }
    }
    counts
}

/// Sets the gauges every [`REPORT_EVERY`] until `stop`; a failed count is logged and the
/// gauges keep their last values until the next one.
pub async fn run_reporter(store: Store, stuck_after: Duration, stop: CancellationToken) {
    let mut interval = tokio::time::interval(REPORT_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        match store.waiting_sagas().await {
            Ok(sagas) => {
                for count in count(&sagas, Utc::now(), stuck_after) {
                    let state = count.state.as_str();
                    metrics::gauge!("sagas_in_flight", "state" => state)
                        .set(count.in_flight as f64);
                    metrics::gauge!("sagas_stuck", "state" => state).set(count.stuck as f64);
                }
            }
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "counting sagas in flight failed"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saga::machine::State;
    use contracts::Money;
    use uuid::Uuid;

    fn saga(state: State, step_started_at: DateTime<Utc>) -> Saga {
        Saga {
            order_id: Uuid::new_v4(),
            customer_id: Uuid::new_v4(),
            payment_method_id: Uuid::new_v4(),
            total: Money::zero(contracts::Currency::parse("EUR").expect("a currency")),
            lines: Vec::new(),
            state,
            attempt: 1,
            step_started_at,
            next_at: Some(step_started_at),
            refunds_refused: 0,
        }
    }

    #[test]
    fn counts_waiting_sagas_by_state_and_those_past_the_threshold_as_stuck() {
        let now = Utc::now();
        let ago = |secs| now - chrono::Duration::seconds(secs);
        let sagas = [
            saga(State::Reserving, ago(1)),
            saga(State::Reserving, ago(301)),
            saga(State::Authorizing, ago(299)),
            saga(State::Capturing, ago(3_600)),
            // Final states are not counted (the query never returns them; a stray one is
            // ignored).
            saga(State::Confirmed, ago(3_600)),
        ];
        let counts = count(&sagas, now, Duration::from_secs(300));
        let of = |state| {
            let found = counts
                .iter()
                .find(|c| c.state == state)
                .expect("every state");
            (found.in_flight, found.stuck)
        };
        assert_eq!(counts.len(), WAITING.len());
        assert_eq!(of(StateName::Reserving), (2, 1));
        assert_eq!(of(StateName::Authorizing), (1, 0));
        assert_eq!(of(StateName::Committing), (0, 0));
        assert_eq!(of(StateName::Capturing), (1, 1));
        assert_eq!(of(StateName::Compensating), (0, 0));
    }
}
