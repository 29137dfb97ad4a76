//! A deserializer over `serde_json::Value` that reads request bodies the way their JSON Schema
//! does, in one pass:
//! - a struct must be a JSON object: serde's derive would let `["a@b.c", "pw"]` stand for
//!   `{"email": .., "password": ..}`;
//! - an integral float (`3.0`, within i64) is an integer, as JSON Schema counts it;
//! - no string or key that is read may hold a NUL character: PostgreSQL text cannot store one
//!   and SQLite's C strings end at it. What is not read is not judged: an unknown field the type
//!   ignores is skipped whole, its name and contents unseen, as the schema's open objects allow.

use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer as _, MapAccess, SeqAccess, Visitor,
};
use serde_json::{Map, Value};

/// Deserializes `T` from `value`, requiring objects for structs and maps.
pub fn from_value<'de, T: de::Deserialize<'de>>(value: Value) -> Result<T, serde_json::Error> {
    T::deserialize(Strict(value))
}

/// The strict deserializer itself, for callers that wrap it (e.g. with `serde_path_to_error`).
pub struct Strict(Value);

impl Strict {
    pub fn new(value: Value) -> Self {
        Self(value)
    }
}

impl<'de> Deserializer<'de> for Strict {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Items(items.into_iter())),
            Value::Object(fields) => visitor.visit_map(Fields::new(fields)),
            Value::String(text) if text.contains('\0') => Err(nul_error()),
            Value::Number(number) => match integral(&number) {
                Some(integer) => visitor.visit_i64(integer),
                None => number.deserialize_any(visitor),
            },
            // Other scalars have nothing nested: serde_json's own rules apply.
            scalar => scalar.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(fields) => visitor.visit_map(Fields::new(fields)),
            other => Err(de::Error::invalid_type(
                unexpected(&other),
                &"a JSON object",
            )),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Strict(other)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        // Enums are strings or single-key objects; serde_json's rules are strict enough there.
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        // The value of a field the type does not know: nothing of it is kept, so nothing of it
        // can reach a database (serde_json's own `Value` skips it the same way).
        drop(self);
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct identifier
    }
}

/// An object's key. As a struct's field name (an identifier) it is only compared with the
/// names the struct knows, none of which holds a NUL, so a key with one is an unknown field,
/// ignored or refused as such; as a map's key it is kept, so a NUL is refused.
struct Key(String);

impl<'de> Deserializer<'de> for Key {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if self.0.contains('\0') {
            return Err(nul_error());
        }
        self.0.into_deserializer().deserialize_any(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_string(self.0)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        if self.0.contains('\0') {
            return Err(nul_error());
        }
        self.0
            .into_deserializer()
            .deserialize_enum(name, variants, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map struct
    }
}

/// An integral float within i64, as an integer; `None` for integers and other floats.
fn integral(number: &serde_json::Number) -> Option<i64> {
    // 2^63 is exactly representable; anything at or above it does not fit an i64.
    const I64_RANGE: std::ops::Range<f64> = -9.223_372_036_854_776e18..9.223_372_036_854_776e18;
    let float = number.as_f64().filter(|_| number.is_f64())?;
    (float.fract() == 0.0 && I64_RANGE.contains(&float)).then_some(float as i64)
}

fn nul_error() -> serde_json::Error {
    de::Error::custom("text must not contain NUL characters")
}

fn unexpected(value: &Value) -> de::Unexpected<'_> {
    match value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(_) => de::Unexpected::Other("a number"),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

struct Items(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for Items {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.0
            .next()
            .map(|item| seed.deserialize(Strict(item)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Fields {
    entries: serde_json::map::IntoIter,
    value: Option<Value>,
}

impl Fields {
    fn new(fields: Map<String, Value>) -> Self {
        Self {
            entries: fields.into_iter(),
            value: None,
        }
    }
}

impl<'de> MapAccess<'de> for Fields {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(Key(key)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let value = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value was read twice"))?;
        seed.deserialize(Strict(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Price {
        amount: i64,
        currency: String,
    }

    #[derive(Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
    #[serde(rename_all = "lowercase")]
    enum Colour {
        Red,
        Green,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Product {
        name: String,
        price: Price,
        tags: Vec<String>,
        #[serde(default)]
        note: Option<String>,
        attributes: BTreeMap<String, String>,
        colour: Colour,
    }

    fn valid() -> Value {
        json!({"name": "Mug", "price": {"amount": 900, "currency": "EUR"}, "tags": ["a"],
               "attributes": {"size": "L"}, "colour": "red"})
    }

    #[test]
    fn objects_deserialize_as_serde_json_would() {
        let product: Product = from_value(valid()).unwrap();
        assert_eq!(
            product.price,
            Price {
                amount: 900,
                currency: "EUR".into()
            }
        );
        assert_eq!(product.colour, Colour::Red);
        assert_eq!(product.note, None);
        let mut with_note = valid();
        with_note["note"] = json!("hi");
        with_note["colour"] = json!("green");
        let product: Product = from_value(with_note).unwrap();
        assert_eq!(
            (product.note.as_deref(), product.colour),
            (Some("hi"), Colour::Green)
        );
        assert_eq!(from_value::<Vec<i64>>(json!([1, 2])).unwrap(), vec![1, 2]);
    }

    #[test]
    fn arrays_never_stand_for_structs_at_any_depth() {
        // serde_json alone accepts both of these.
        assert!(serde_json::from_value::<Price>(json!([900, "EUR"])).is_ok());
        assert!(from_value::<Price>(json!([900, "EUR"])).is_err());
        let mut nested = valid();
        nested["price"] = json!([900, "EUR"]);
        assert!(serde_json::from_value::<Product>(nested.clone()).is_ok());
        assert!(from_value::<Product>(nested).is_err());
        let mut in_map = valid();
        in_map["attributes"] = json!([["size", "L"]]);
        assert!(from_value::<Product>(in_map).is_err());
    }

    #[test]
    fn nul_is_refused_where_it_would_be_kept_and_ignored_where_it_is_skipped() {
        // In a field that is read, and in a map's key or value: refused.
        let mut in_name = valid();
        in_name["name"] = json!("Mu\u{0}g");
        assert!(from_value::<Product>(in_name).is_err());
        let mut in_key = valid();
        in_key["attributes"] = json!({"si\u{0}ze": "L"});
        assert!(from_value::<Product>(in_key).is_err());
        let mut in_value = valid();
        in_value["attributes"] = json!({"size": "\u{0}"});
        assert!(from_value::<Product>(in_value).is_err());
        // In a field the type does not know, at any depth, in its name or its contents: skipped,
        // as the schema's open objects allow.
        let mut unknown = valid();
        unknown["\u{0}"] = json!([]);
        unknown["extra"] = json!({"deep\u{0}": ["x\u{0}", {"y": "\u{0}"}]});
        unknown["price"]["note\u{0}"] = json!("\u{0}");
        assert_eq!(from_value::<Product>(unknown).unwrap().name, "Mug");
        // A type that refuses unknown fields still refuses one whose name holds a NUL.
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Closed {
            name: String,
        }
        let error = from_value::<Closed>(json!({"name": "a", "b\u{0}": 1})).unwrap_err();
        assert!(error.to_string().contains("unknown field"), "{error}");
        // Enum-keyed maps read their keys as before.
        let colours: BTreeMap<Colour, i64> = from_value(json!({"red": 1, "green": 2})).unwrap();
        assert_eq!(colours.len(), 2);
    }

    #[test]
    fn type_errors_still_name_the_field() {
        let mut wrong = valid();
        wrong["price"]["amount"] = json!("nine");
        let error = serde_path_to_error::deserialize::<_, Product>(Strict(wrong)).unwrap_err();
        assert_eq!(error.path().to_string(), "price.amount");
    }
}
