//! The envelope every micromart event travels in, and the rule event types are named by.
//!
//! The envelope is a CloudEvents 1.0 event in the JSON format (structured mode): the same bytes
//! go through NATS JetStream, the in-process bus and the outbox table. Parsing is strict where a
//! wrong value would be misread later (spec version, content type, id, type name) and lenient
//! where CloudEvents says so (extension attributes we do not know are ignored).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// The only CloudEvents version micromart speaks.
pub const SPEC_VERSION: &str = "1.0";
/// The only content type of `data`.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// One event: CloudEvents 1.0 attributes plus the W3C `traceparent` extension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique per event; also the broker's de-duplication id (the outbox row id).
    pub id: Uuid,
    /// Who emitted it, e.g. `/payment`.
    pub source: String,
    /// A versioned type name following [`EventType`]'s rule.
    #[serde(rename = "type", deserialize_with = "deserialize_event_type")]
    pub r#type: String,
    pub specversion: SpecVersion,
    /// When the fact happened (RFC 3339, UTC).
    pub time: DateTime<Utc>,
    /// What the event is about inside the source, e.g. the payment id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Absent means JSON in CloudEvents' JSON format, so absence is accepted.
    #[serde(default)]
    pub datacontenttype: JsonContentType,
    /// The W3C trace context of the operation that emitted the event (extension attribute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Envelope {
    /// A new event with a fresh time-ordered id, emitted now.
    pub fn new(source: impl Into<String>, event_type: &EventType, data: serde_json::Value) -> Self {
        Self {
            id: Uuid::now_v7(),
            source: source.into(),
            r#type: event_type.to_string(),
            specversion: SpecVersion,
            time: Utc::now(),
            subject: None,
            datacontenttype: JsonContentType,
            traceparent: None,
            data,
        }
    }

    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// Parses the CloudEvents JSON format, refusing with a reason what micromart cannot read.
    pub fn from_json(bytes: &[u8]) -> Result<Self, InvalidEnvelope> {
        let envelope: Self =
            serde_json::from_slice(bytes).map_err(|error| InvalidEnvelope(error.to_string()))?;
        if envelope.source.is_empty() {
            return Err(InvalidEnvelope("source is empty".to_owned()));
        }
        Ok(envelope)
    }

    /// The CloudEvents JSON format.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// The parsed type name (always valid for a parsed envelope).
    pub fn event_type(&self) -> Result<EventType, InvalidEventType> {
        self.r#type.parse()
    }
}

/// Why bytes are not an envelope micromart accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event envelope: {0}")]
pub struct InvalidEnvelope(pub String);

/// `specversion`: always "1.0"; anything else is refused when parsing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecVersion;

impl Serialize for SpecVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(SPEC_VERSION)
    }
}

impl<'de> Deserialize<'de> for SpecVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let version = String::deserialize(deserializer)?;
        if version != SPEC_VERSION {
            return Err(D::Error::custom(format!(
                "unsupported specversion {version:?}: only {SPEC_VERSION} is accepted"
            )));
        }
        Ok(Self)
    }
}

/// `datacontenttype`: always "application/json"; anything else is refused when parsing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonContentType;

impl Serialize for JsonContentType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(JSON_CONTENT_TYPE)
    }
}

impl<'de> Deserialize<'de> for JsonContentType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let content_type = String::deserialize(deserializer)?;
        if content_type != JSON_CONTENT_TYPE {
            return Err(D::Error::custom(format!(
                "unsupported datacontenttype {content_type:?}: only {JSON_CONTENT_TYPE} is accepted"
            )));
        }
        Ok(Self)
    }
}

fn deserialize_event_type<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let name = String::deserialize(deserializer)?;
    name.parse::<EventType>().map_err(D::Error::custom)?;
    Ok(name)
}

/// A versioned event type name: `micromart.<service>.<noun>.<verb>.v<N>`, e.g.
/// `micromart.payment.payment.authorized.v1`.
///
/// Segments are lowercase ASCII letters, digits and `_`, starting with a letter, so a name is
/// also a valid NATS subject token sequence. The version starts at 1; a breaking change to
/// `data` is a new version, published beside the old one until its consumers have moved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventType {
    pub service: String,
    pub noun: String,
    pub verb: String,
    pub version: u32,
}

/// A stream as producers and consumers agree on it: its name and the subjects it holds. How
/// long it keeps messages and how many replicas it has are the deployment's choice (`[events]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSpec {
    /// Upper-case, as JetStream names streams (`PAYMENT`).
    pub name: &'static str,
    /// NATS subject patterns (`payment.>`).
    pub subjects: &'static [&'static str],
}

/// Why a name does not follow the event type rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event type {name:?}: {reason} (expected micromart.<service>.<noun>.<verb>.v<N>)")]
pub struct InvalidEventType {
    pub name: String,
    pub reason: &'static str,
}

impl EventType {
    pub fn new(
        service: &str,
        noun: &str,
        verb: &str,
        version: u32,
    ) -> Result<Self, InvalidEventType> {
        format!("micromart.{service}.{noun}.{verb}.v{version}").parse()
    }
}

impl std::str::FromStr for EventType {
    type Err = InvalidEventType;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| InvalidEventType {
            name: name.to_owned(),
            reason,
        };
        let segments: Vec<&str> = name.split('.').collect();
        let [prefix, service, noun, verb, version] = segments[..] else {
            return Err(invalid("it must have five dot-separated segments"));
        };
        if prefix != "micromart" {
            return Err(invalid("it must start with \"micromart.\""));
        }
        if ![service, noun, verb].into_iter().all(is_name_segment) {
            return Err(invalid(
                "service, noun and verb must be lowercase letters, digits or _, starting with a letter",
            ));
        }
        let version = version
            .strip_prefix('v')
            .filter(|digits| !digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u32>().ok())
            .ok_or_else(|| invalid("the version must be v1, v2, … (no leading zero)"))?;
        Ok(Self {
            service: service.to_owned(),
            noun: noun.to_owned(),
            verb: verb.to_owned(),
            version,
        })
    }
}

fn is_name_segment(segment: &str) -> bool {
    segment
        .as_bytes()
        .first()
        .is_some_and(u8::is_ascii_lowercase)
        && segment
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "micromart.{}.{}.{}.v{}",
            self.service, self.noun, self.verb, self.version
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn authorized() -> EventType {
        "micromart.payment.payment.authorized.v1".parse().unwrap()
    }

    fn sample() -> serde_json::Value {
        json!({
            "id": "0190b3c4-0000-7000-8000-000000000001",
            "source": "/payment",
            "type": "micromart.payment.payment.authorized.v1",
            "specversion": "1.0",
            "time": "2026-01-02T03:04:05.123456Z",
            "datacontenttype": "application/json",
            "data": {"amount": 1200}
        })
    }

    fn parse(value: &serde_json::Value) -> Result<Envelope, InvalidEnvelope> {
        Envelope::from_json(value.to_string().as_bytes())
    }

    #[test]
    fn parses_the_cloudevents_json_format() {
        let envelope = parse(&sample()).unwrap();
        assert_eq!(envelope.r#type, "micromart.payment.payment.authorized.v1");
        assert_eq!(envelope.data, json!({"amount": 1200}));
        assert_eq!(envelope.subject, None);
        assert_eq!(envelope.event_type().unwrap(), authorized());
    }

    #[test]
    fn serializes_type_specversion_and_content_type() {
        let envelope = Envelope::new("/payment", &authorized(), json!({"a": 1}))
            .with_subject("p-1")
            .with_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        let value: serde_json::Value =
            serde_json::from_slice(&envelope.to_json().unwrap()).unwrap();
        assert_eq!(value["type"], "micromart.payment.payment.authorized.v1");
        assert_eq!(value["specversion"], "1.0");
        assert_eq!(value["datacontenttype"], "application/json");
        assert_eq!(value["subject"], "p-1");
        assert!(value["traceparent"].as_str().unwrap().starts_with("00-"));
        assert_eq!(
            Envelope::from_json(&envelope.to_json().unwrap()).unwrap(),
            envelope
        );
    }

    #[test]
    fn optional_attributes_are_left_out_when_absent() {
        let envelope = Envelope::new("/payment", &authorized(), json!(null));
        let value: serde_json::Value =
            serde_json::from_slice(&envelope.to_json().unwrap()).unwrap();
        assert!(value.get("subject").is_none());
        assert!(value.get("traceparent").is_none());
    }

    #[test]
    fn refuses_other_spec_versions_with_a_reason() {
        let mut value = sample();
        value["specversion"] = json!("0.3");
        let error = parse(&value).unwrap_err();
        assert!(
            error.0.contains("unsupported specversion \"0.3\""),
            "{error}"
        );
        value.as_object_mut().unwrap().remove("specversion");
        assert!(parse(&value).unwrap_err().0.contains("specversion"));
    }

    #[test]
    fn refuses_other_content_types_but_accepts_absence() {
        let mut value = sample();
        value["datacontenttype"] = json!("text/xml");
        let error = parse(&value).unwrap_err();
        assert!(error.0.contains("unsupported datacontenttype"), "{error}");
        value.as_object_mut().unwrap().remove("datacontenttype");
        assert_eq!(parse(&value).unwrap().datacontenttype, JsonContentType);
    }

    #[test]
    fn refuses_bad_ids_types_and_sources() {
        let mut value = sample();
        value["id"] = json!("not-a-uuid");
        assert!(parse(&value).is_err());
        let mut value = sample();
        value["type"] = json!("com.example.thing");
        assert!(parse(&value).unwrap_err().0.contains("invalid event type"));
        let mut value = sample();
        value["source"] = json!("");
        assert_eq!(
            parse(&value).unwrap_err(),
            InvalidEnvelope("source is empty".into())
        );
        assert!(Envelope::from_json(b"not json").is_err());
    }

    #[test]
    fn ignores_unknown_extension_attributes() {
        let mut value = sample();
        value["someextension"] = json!("x");
        assert!(parse(&value).is_ok());
    }

    #[test]
    fn event_type_rule() {
        let parsed = authorized();
        assert_eq!(
            (
                parsed.service.as_str(),
                parsed.noun.as_str(),
                parsed.verb.as_str()
            ),
            ("payment", "payment", "authorized")
        );
        assert_eq!(parsed.version, 1);
        assert_eq!(
            parsed.to_string(),
            "micromart.payment.payment.authorized.v1"
        );
        assert_eq!(
            EventType::new("order", "order", "placed", 12)
                .unwrap()
                .to_string(),
            "micromart.order.order.placed.v12"
        );
        for bad in [
            "",
            "micromart.payment.payment.authorized",
            "micromart.payment.payment.authorized.v0",
            "micromart.payment.payment.authorized.v01",
            "micromart.payment.payment.authorized.1",
            "micromart.payment.payment.authorized.v1.extra",
            "acme.payment.payment.authorized.v1",
            "micromart.Payment.payment.authorized.v1",
            "micromart.payment.pay-ment.authorized.v1",
            "micromart.payment.1payment.authorized.v1",
            "micromart.payment..authorized.v1",
            "micromart.payment.payment.authorized.v99999999999",
        ] {
            assert!(bad.parse::<EventType>().is_err(), "{bad:?} was accepted");
        }
    }

    fn segment() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9_]{0,12}"
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            ".{0,20}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[a-z]{1,8}", inner, 0..4)
                    .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
            ]
        })
    }

    prop_compose! {
        fn envelope()(
            id in any::<u128>(),
            source in "/[a-z]{1,10}",
            (service, noun, verb) in (segment(), segment(), segment()),
            version in 1u32..1000,
            micros in 0i64..4_000_000_000_000_000,
            subject in proptest::option::of(".{1,20}"),
            traceparent in proptest::option::of("[0-9a-f-]{1,55}"),
            data in json_value(),
        ) -> Envelope {
            Envelope {
                id: Uuid::from_u128(id),
                source,
                r#type: EventType::new(&service, &noun, &verb, version).unwrap().to_string(),
                specversion: SpecVersion,
                time: DateTime::from_timestamp_micros(micros).unwrap(),
                subject,
                datacontenttype: JsonContentType,
                traceparent,
                data,
            }
        }
    }

    proptest! {
        #[test]
        fn any_valid_envelope_round_trips(envelope in envelope()) {
            let bytes = envelope.to_json().unwrap();
            prop_assert_eq!(Envelope::from_json(&bytes).unwrap(), envelope);
        }

        #[test]
        fn any_valid_event_type_round_trips(
            (service, noun, verb) in (segment(), segment(), segment()),
            version in 1u32..,
        ) {
            let parsed = EventType::new(&service, &noun, &verb, version).unwrap();
            prop_assert_eq!(parsed.to_string().parse::<EventType>().unwrap(), parsed);
        }
    }
}
