//! Catalog as the cart and checkout see it: its internal product lookup, through the
//! platform's client (timeout, retries within a budget, circuit breaker).

use std::collections::HashMap;

use contracts::catalog::{LookupRequest, LookupResponse, ProductSnapshot, LOOKUP_PATH};
use platform::client::{CallContext, CallError, ClientConfig, Idempotency, InternalClient};
use platform::config::Secret;
use uuid::Uuid;

/// Catalog's service name (its config section and the peer the shop names).
pub const SERVICE: &str = "catalog";

/// Reads products from catalog.
#[derive(Clone, Debug)]
pub struct Catalog {
    client: InternalClient,
}

impl Catalog {
    /// A client of catalog's internal API, sending the deployment's internal token.
    pub fn new(config: &ClientConfig, token: Option<&Secret>) -> anyhow::Result<Self> {
        let client = InternalClient::new(SERVICE, config.clone())?;
        let client = match token {
            Some(token) => client.with_credential(token.expose())?,
            None => client,
        };
        Ok(Self { client })
    }

    /// The products of `ids` catalog knows, by id (an unknown id is absent). A read: retried
    /// within the client's budget.
    pub async fn lookup(
        &self,
        ctx: &CallContext,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, ProductSnapshot>, CallError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let request = LookupRequest { ids: ids.to_vec() };
        let answer: LookupResponse = self
            .client
            .post(ctx, LOOKUP_PATH, &request, Idempotency::Idempotent)
            .await?;
        Ok(answer
            .products
            .into_iter()
            .map(|product| (product.id, product))
            .collect())
    }
}
