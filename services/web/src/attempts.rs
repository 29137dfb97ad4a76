//! Checkout attempts: the card a checkout attempt registered, so that submitting the same
//! attempt again (a double click that got through, a retry after a timeout) sends the order
//! service the same request under the same `Idempotency-Key` — answered with the first order —
//! instead of registering another card and being refused for reusing the key with a new body.

use std::time::Duration;

use platform::db::Db;
use sqlx::Row as _;
use uuid::Uuid;

use crate::api::ApiError;

/// What a submission finds of its attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The first submission: it registers the card.
    First,
    /// The card an earlier submission registered.
    Card(Uuid),
    /// An earlier submission is registering the card right now.
    Pending,
    /// Another customer's key: never used.
    Foreign,
}

#[derive(Clone)]
pub struct Attempts {
    db: Db,
}

/// How long attempts are kept (an order's `Idempotency-Key` lives a day at the order service).
const KEEP_SECS: i64 = 86_400;

fn unavailable(error: sqlx::Error) -> ApiError {
    ApiError::Unavailable(format!("checkout attempts: {error}"))
}

impl Attempts {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Claims `attempt` for `user`, or reads what an earlier submission left.
    pub async fn claim(&self, attempt: &str, user: Uuid) -> Result<Claim, ApiError> {
        let mut tx = self.db.begin_write().await.map_err(unavailable)?;
        let inserted = sqlx::query(
            "INSERT INTO checkout_attempts (attempt, user_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (attempt) DO NOTHING",
        )
        .bind(attempt)
        .bind(user.to_string())
        .bind(platform::now().timestamp())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?
        .rows_affected();
        let claim = if inserted == 1 {
            Claim::First
        } else {
            let row = sqlx::query(
                "SELECT user_id, payment_method_id FROM checkout_attempts WHERE attempt = $1",
            )
            .bind(attempt)
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
            let owner: String = row.try_get("user_id").map_err(unavailable)?;
            let card: Option<String> = row.try_get("payment_method_id").map_err(unavailable)?;
            match card.and_then(|card| Uuid::parse_str(&card).ok()) {
                _ if owner != user.to_string() => Claim::Foreign,
                Some(card) => Claim::Card(card),
                None => Claim::Pending,
            }
        };
        tx.commit().await.map_err(unavailable)?;
        Ok(claim)
    }

    /// Records the card the attempt registered.
    pub async fn set_card(&self, attempt: &str, card: Uuid) -> Result<(), ApiError> {
        let mut tx = self.db.begin_write().await.map_err(unavailable)?;
        sqlx::query("UPDATE checkout_attempts SET payment_method_id = $1 WHERE attempt = $2")
            .bind(card.to_string())
            .bind(attempt)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    /// Forgets an attempt whose card was refused, so the corrected form may register another.
    pub async fn release(&self, attempt: &str) -> Result<(), ApiError> {
        let mut tx = self.db.begin_write().await.map_err(unavailable)?;
        sqlx::query(
            "DELETE FROM checkout_attempts WHERE attempt = $1 AND payment_method_id IS NULL",
        )
        .bind(attempt)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    /// Claims `attempt`, waiting (up to `patience`) while a concurrent submission of it is
    /// still registering its card; `Pending` when it took longer.
    pub async fn claim_patiently(
        &self,
        attempt: &str,
        user: Uuid,
        patience: Duration,
    ) -> Result<Claim, ApiError> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match self.claim(attempt, user).await? {
                Claim::Pending if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                claim => return Ok(claim),
            }
        }
    }

    /// Forgets attempts older than a day.
    pub async fn prune(&self) -> anyhow::Result<u64> {
        let mut tx = self.db.begin_write().await?;
        let done = sqlx::query("DELETE FROM checkout_attempts WHERE created_at <= $1")
            .bind(platform::now().timestamp() - KEEP_SECS)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use platform::test_util::TestDb;

    use super::*;

    #[tokio::test]
    async fn a_repeated_attempt_finds_the_first_ones_card() {
        let mut dbs = vec![TestDb::sqlite().await];
        dbs.extend(TestDb::postgres().await);
        for test in dbs {
            test.db
                .migrate(&crate::SQLITE_MIGRATOR, &crate::POSTGRES_MIGRATOR)
                .await
                .unwrap();
            let attempts = Attempts::new(test.db.clone());
            let (alice, bob) = (platform::new_id(), platform::new_id());
            assert_eq!(attempts.claim("a1", alice).await.unwrap(), Claim::First);
            // While the first submission registers its card, a second one waits, then gives up.
            assert_eq!(attempts.claim("a1", alice).await.unwrap(), Claim::Pending);
            let waited = attempts
                .claim_patiently("a1", alice, Duration::from_millis(150))
                .await
                .unwrap();
            assert_eq!(waited, Claim::Pending);
            // Another customer cannot use the key.
            assert_eq!(attempts.claim("a1", bob).await.unwrap(), Claim::Foreign);
            let card = platform::new_id();
            attempts.set_card("a1", card).await.unwrap();
            assert_eq!(
                attempts.claim("a1", alice).await.unwrap(),
                Claim::Card(card)
            );
            // A release after the card was recorded changes nothing; before, it frees the key.
            attempts.release("a1").await.unwrap();
            assert_eq!(
                attempts.claim("a1", alice).await.unwrap(),
                Claim::Card(card)
            );
            assert_eq!(attempts.claim("a2", alice).await.unwrap(), Claim::First);
            attempts.release("a2").await.unwrap();
            assert_eq!(attempts.claim("a2", alice).await.unwrap(), Claim::First);
            // Nothing is a day old yet.
            assert_eq!(attempts.prune().await.unwrap(), 0);
        }
    }

    #[test]
    fn every_write_takes_a_write_transaction() {
        platform::test_util::assert_every_write_takes_a_write_transaction(&[(
            "attempts.rs",
            include_str!("attempts.rs"),
        )]);
    }
}
