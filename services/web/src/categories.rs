//! The category list the storefront shows on every browse page, kept for a few seconds: it
//! changes a few times a year and would otherwise be a second API call on each page. The
//! admin console always reads it fresh.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::api::{Api, ApiError, Caller};
use crate::model::Category;

/// How long a read list is used.
const FRESH_FOR: Duration = Duration::from_secs(10);

/// A list and when it was read.
type Read = (Instant, Arc<Vec<Category>>);

#[derive(Clone, Default)]
pub struct Categories {
    read: Arc<Mutex<Option<Read>>>,
}

impl Categories {
    /// The list, read through the API when the kept one is older than [`FRESH_FOR`].
    pub async fn get(&self, api: &Api, caller: &Caller) -> Result<Arc<Vec<Category>>, ApiError> {
        if let Some(categories) = self.fresh() {
            return Ok(categories);
        }
        // Anonymous: the list is the same for everyone.
        let anonymous = Caller {
            token: None,
            ..caller.clone()
        };
        let categories = Arc::new(
            api.get::<Vec<Category>>(&anonymous, "/api/v1/categories")
                .await?,
        );
        if let Ok(mut read) = self.read.lock() {
            *read = Some((Instant::now(), categories.clone()));
        }
        Ok(categories)
    }

    fn fresh(&self) -> Option<Arc<Vec<Category>>> {
        let read = self.read.lock().ok()?;
        read.as_ref()
            .filter(|(at, _)| at.elapsed() < FRESH_FOR)
            .map(|(_, categories)| categories.clone())
    }
}
