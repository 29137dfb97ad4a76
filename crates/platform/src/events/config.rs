//! `[events]`: which bus a deployment's services share and how its streams and consumers
//! behave. One section for the whole deployment, as `[internal]`: producers and consumers of
//! a stream must agree on it.

use std::time::Duration;

use serde::Deserialize;

use super::{ConsumerConfig, StreamConfig};
use crate::config::{ConfigError, Secret, Validate};
use contracts::events::StreamSpec;

/// Checks a durable consumer's name from a service's settings (`key` names the setting): it
/// is the broker's consumer name and the inbox's consumer column, so 1 to 64 letters, digits,
/// `-` or `_`.
pub fn validate_durable_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            "must be 1 to 64 letters, digits, - or _ (a JetStream consumer name)",
        ))
    }
}

/// `url` naming the in-process bus: every service of one process shares it (`micromart up`).
pub const IN_PROCESS: &str = "memory";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// `memory` for the in-process bus (every service in one process), else the NATS servers,
    /// comma-separated (`nats://10.0.0.1:4222,nats://10.0.0.2:4222`). A secret: a NATS URL may
    /// carry credentials.
    #[serde(default = "default_url")]
    pub url: Secret,
    /// Copies of each stream (JetStream; 3 on a three-node cluster).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// How long a stream keeps an event (and the in-process bus its de-duplication window).
    #[serde(default = "default_max_age_secs")]
    pub max_age_secs: u64,
    /// How long a consumer may hold an event unacknowledged before it is delivered again.
    #[serde(default = "default_ack_wait_ms")]
    pub ack_wait_ms: u64,
    /// Deliveries of one event before it goes to the dead-letter stream.
    #[serde(default = "default_max_deliver")]
    pub max_deliver: u32,
    /// Per attempt, how long an unacknowledged delivery waits (the last repeats).
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: Vec<u64>,
    /// Outbox rows the relay publishes per round.
    #[serde(default = "default_relay_batch")]
    pub relay_batch: u32,
    /// How often the relay looks for rows without being woken by a commit.
    #[serde(default = "default_relay_poll_ms")]
    pub relay_poll_ms: u64,
    /// How long published outbox rows are kept before they are pruned. With the in-process
    /// bus, at least `max_age_secs`: the rows a restart publishes again come from there.
    #[serde(default = "default_keep_sent_secs")]
    pub keep_sent_secs: u64,
}

fn default_url() -> Secret {
    Secret::new("nats://127.0.0.1:4222".to_owned())
}
fn default_replicas() -> usize {
    1
}
fn default_max_age_secs() -> u64 {
    7 * 24 * 3600
}
fn default_ack_wait_ms() -> u64 {
    30_000
}
fn default_max_deliver() -> u32 {
    10
}
fn default_backoff_ms() -> Vec<u64> {
    vec![1_000, 5_000, 30_000]
}
fn default_relay_batch() -> u32 {
    256
}
fn default_relay_poll_ms() -> u64 {
    1_000
}
fn default_keep_sent_secs() -> u64 {
    7 * 24 * 3600
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            url: default_url(),
            replicas: default_replicas(),
            max_age_secs: default_max_age_secs(),
            ack_wait_ms: default_ack_wait_ms(),
            max_deliver: default_max_deliver(),
            backoff_ms: default_backoff_ms(),
            relay_batch: default_relay_batch(),
            relay_poll_ms: default_relay_poll_ms(),
            keep_sent_secs: default_keep_sent_secs(),
        }
    }
}

/// The commented defaults of `[events]`, as `micromart defaults` prints them; a test holds
/// them to [`EventsConfig::default`].
pub const DEFAULTS: &str = r#"[events]                            # the event bus the services share (one section for the deployment)
url = "nats://127.0.0.1:4222"       # NATS servers, comma-separated; "memory" = the in-process bus of `micromart up`
replicas = 1                        # copies of each stream (3 on a three-node NATS cluster)
max_age_secs = 604800               # how long a stream keeps an event
ack_wait_ms = 30000                 # an event a consumer holds longer unacknowledged is delivered again
max_deliver = 10                    # deliveries before an event goes to the dead-letter stream
backoff_ms = [1000, 5000, 30000]    # per attempt, the wait before an unacknowledged event is redelivered
relay_batch = 256                   # outbox rows published per round
relay_poll_ms = 1000                # the relay's look for rows no commit woke it for
keep_sent_secs = 604800             # published outbox rows are pruned after this (memory bus: >= max_age_secs)
"#;

impl EventsConfig {
    pub fn in_process(&self) -> bool {
        self.url.expose() == IN_PROCESS
    }

    /// How long a consumer keeps the ids of processed events: as long as an event can come
    /// again — from the stream (`max_age_secs`) or from the outbox's replay after a restart of
    /// the in-process bus (rows kept `keep_sent_secs`).
    pub fn inbox_retention(&self) -> Duration {
        Duration::from_secs(self.max_age_secs.max(self.keep_sent_secs))
    }

    /// The stream `spec` as this deployment keeps it.
    pub fn stream(&self, spec: &StreamSpec) -> StreamConfig {
        StreamConfig {
            name: spec.name.to_owned(),
            subjects: spec.subjects.iter().map(|s| (*s).to_owned()).collect(),
            max_age: Duration::from_secs(self.max_age_secs),
            replicas: self.replicas,
        }
    }

    /// A durable consumer of `subject` (one pattern) in `stream`, as this deployment paces it.
    pub fn consumer(&self, stream: &StreamSpec, durable: &str, subject: &str) -> ConsumerConfig {
        ConsumerConfig {
            stream: stream.name.to_owned(),
            durable: durable.to_owned(),
            subjects: vec![subject.to_owned()],
            ack_wait: Duration::from_millis(self.ack_wait_ms),
            max_deliver: self.max_deliver,
            backoff: self
                .backoff_ms
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
        }
    }
}

impl Validate for EventsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let url = self.url.expose();
        if url != IN_PROCESS
            && (url.trim().is_empty()
                || !url
                    .split(',')
                    .map(str::trim)
                    .all(|server| server.starts_with("nats://") || server.starts_with("tls://")))
        {
            return Err(ConfigError::new(
                "url",
                "must be \"memory\" or NATS servers (nats://host:port), comma-separated",
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(ConfigError::new("replicas", "must be between 1 and 5"));
        }
        if self.max_age_secs == 0 {
            return Err(ConfigError::new("max_age_secs", "must be positive"));
        }
        if self.ack_wait_ms == 0 {
            return Err(ConfigError::new("ack_wait_ms", "must be positive"));
        }
        if self.max_deliver == 0 {
            return Err(ConfigError::new(
                "max_deliver",
                "must be at least 1 (an event is dead-lettered after that many deliveries)",
            ));
        }
        if self.backoff_ms.contains(&0) {
            return Err(ConfigError::new(
                "backoff_ms",
                "every wait must be positive",
            ));
        }
        if self.in_process() && self.keep_sent_secs < self.max_age_secs {
            return Err(ConfigError::new(
                "keep_sent_secs",
                "must be at least `max_age_secs` with the in-process bus: a restart publishes \
                 again the rows sent within `max_age_secs`, so they must still be there",
            ));
        }
        if self.keep_sent_secs == 0 {
            return Err(ConfigError::new("keep_sent_secs", "must be positive"));
        }
        if self.relay_batch == 0 || self.relay_poll_ms == 0 {
            let key = if self.relay_batch == 0 {
                "relay_batch"
            } else {
                "relay_poll_ms"
            };
            return Err(ConfigError::new(key, "must be positive"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_defaults_are_the_defaults() {
        let table: toml::Table = toml::from_str(DEFAULTS).unwrap();
        let printed: EventsConfig = table["events"].clone().try_into().unwrap();
        assert_eq!(
            format!("{printed:?}"),
            format!("{:?}", EventsConfig::default())
        );
        for field in crate::config::field_names::<EventsConfig>().unwrap() {
            assert!(
                table["events"].get(*field).is_some(),
                "{field} is not printed"
            );
        }
    }

    #[test]
    fn bad_values_are_named() {
        let with = |edit: fn(&mut EventsConfig)| {
            let mut config = EventsConfig::default();
            edit(&mut config);
            config.validate().err().map(|e| e.key)
        };
        assert_eq!(with(|_| {}), None);
        assert_eq!(with(|c| c.url = Secret::new(IN_PROCESS.to_owned())), None);
        assert_eq!(
            with(|c| c.url = Secret::new("http://x:4222".to_owned())).as_deref(),
            Some("url")
        );
        assert_eq!(with(|c| c.replicas = 0).as_deref(), Some("replicas"));
        assert_eq!(with(|c| c.max_deliver = 0).as_deref(), Some("max_deliver"));
        assert_eq!(
            with(|c| c.backoff_ms = vec![0]).as_deref(),
            Some("backoff_ms")
        );
        assert_eq!(
            with(|c| c.relay_poll_ms = 0).as_deref(),
            Some("relay_poll_ms")
        );
        assert_eq!(
            with(|c| {
                c.url = Secret::new(IN_PROCESS.to_owned());
                c.keep_sent_secs = c.max_age_secs - 1;
            })
            .as_deref(),
            Some("keep_sent_secs")
        );
        assert_eq!(with(|c| c.keep_sent_secs = c.max_age_secs - 1), None);
    }
}
