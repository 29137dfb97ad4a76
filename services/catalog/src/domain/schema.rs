//! The published JSON Schema of the drafts' free-text, id, URL and attribute fields, built
//! from the same limits as their parsers and stating their rules as `pattern`s, so that a
//! request the schema admits is one the parsers accept (tested below against the parsers).

use platform::http::openapi::patterns::{self, CONTROL, CONTROL_BUT_TAB_LF_CR, WHITE_SPACE};
use utoipa::openapi::schema::SchemaType;
use utoipa::openapi::{KnownFormat, Object, ObjectBuilder, SchemaFormat, Type};

use super::category::{CATEGORY_DESCRIPTION_MAX, CATEGORY_NAME_MAX};
use super::product::{
    ATTRIBUTES_MAX, ATTRIBUTE_KEY_MAX, ATTRIBUTE_VALUE_MAX, DESCRIPTION_MAX, IMAGE_URL_MAX,
    NAME_MAX,
};

/// Text as [`super::bounded_text`] reads it: not blank (if `required`), no control characters
/// but tab, line feed and carriage return once trimmed, at most `max` characters as sent.
fn bounded_text(required: bool, max: usize, description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .min_length(required.then_some(1))
        .max_length(Some(max))
        .pattern(Some(patterns::trimmed_text(
            CONTROL_BUT_TAB_LF_CR,
            required,
        )))
        .build()
}

pub(crate) fn product_name() -> Object {
    bounded_text(
        true,
        NAME_MAX,
        "Trimmed; not blank; no control characters but tab, line feed and carriage return.",
    )
}

pub(crate) fn product_description() -> Object {
    bounded_text(
        false,
        DESCRIPTION_MAX,
        "Trimmed; no control characters but tab, line feed and carriage return.",
    )
}

pub(crate) fn category_name() -> Object {
    bounded_text(
        true,
        CATEGORY_NAME_MAX,
        "Trimmed; not blank; no control characters but tab, line feed and carriage return.",
    )
}

pub(crate) fn category_description() -> Object {
    bounded_text(
        false,
        CATEGORY_DESCRIPTION_MAX,
        "Trimmed; no control characters but tab, line feed and carriage return.",
    )
}

fn uuid_builder() -> ObjectBuilder {
    ObjectBuilder::new()
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        .pattern(Some(patterns::UUID))
}

/// A category id: `format: uuid` alone is an annotation in OpenAPI 3.1, so the pattern says it.
pub(crate) fn category_id() -> Object {
    uuid_builder().schema_type(Type::String).build()
}

pub(crate) fn parent_id() -> Object {
    uuid_builder()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .description(Some(
            "The parent category; none (null or absent) for a top-level category.",
        ))
        .build()
}

/// What [`super::product::ImageUrl::parse`] accepts: empty (no image), or `http://` or
/// `https://`, a host after any user information (not empty, not starting with `:`), then
/// anything, with no white space or control character anywhere.
pub fn image_url_pattern() -> String {
    let visible = format!("[^{WHITE_SPACE}{CONTROL}]");
    let authority = format!("[^/?#{WHITE_SPACE}{CONTROL}]");
    let host_start = format!("[^/?#@:{WHITE_SPACE}{CONTROL}]");
    let host = format!("[^/?#@{WHITE_SPACE}{CONTROL}]");
    format!("^(?:https?://(?:{authority}*@)?{host_start}{host}*(?:[/?#]{visible}*)?)?$")
}

pub(crate) fn image_url() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .description(Some(
            "An http(s) URL naming a host, without white space; null or empty for none.",
        ))
        .max_length(Some(IMAGE_URL_MAX))
        .pattern(Some(image_url_pattern()))
        .build()
}

/// An attribute's name: not blank, no NUL (which no request text may hold).
pub fn attribute_key_pattern() -> String {
    format!(r"^[^\x00]*[^{WHITE_SPACE}\x00][^\x00]*$")
}

pub(crate) fn attributes() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "Free-form string pairs (`colour`, `size`...): at most 50; names not blank, \
             at most 64 characters; values at most 500 characters.",
        ))
        .max_properties(Some(ATTRIBUTES_MAX))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(ATTRIBUTE_KEY_MAX))
                .pattern(Some(attribute_key_pattern())),
        ))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(ATTRIBUTE_VALUE_MAX))
                .pattern(Some(patterns::NO_NUL)),
        ))
        .build()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::domain::product::{parse_attributes, ImageUrl};
    use crate::domain::{bounded_text as parse_text, parse_uuid};

    use platform::test_util::pattern_matches as matches;

    /// Whether a string schema's pattern and length bounds admit `text`.
    fn admits(schema: &Object, text: &str) -> bool {
        admits_json(&serde_json::to_value(schema).unwrap(), text)
    }

    fn admits_json(schema: &serde_json::Value, text: &str) -> bool {
        let length = text.chars().count() as u64;
        schema["pattern"].as_str().is_none_or(|p| matches(p, text))
            && schema["minLength"].as_u64().is_none_or(|min| length >= min)
            && schema["maxLength"].as_u64().is_none_or(|max| length <= max)
    }

    proptest! {
        #[test]
        fn text_schemas_are_bounded_text(
            text in "[ \\t\\n\\r\\u{b}\\u{0}\\u{1b}\\u{85}\\u{a0}aé]{0,6}|[ a]{99,102}|[ a]{199,202}",
        ) {
            for (schema, min, max) in [
                (product_name(), 1, NAME_MAX),
                (product_description(), 0, DESCRIPTION_MAX),
                (category_name(), 1, CATEGORY_NAME_MAX),
                (category_description(), 0, CATEGORY_DESCRIPTION_MAX),
            ] {
                prop_assert_eq!(admits(&schema, &text), parse_text(&text, min, max).is_ok(), "{:?}", text);
            }
        }

        #[test]
        fn image_url_schema_is_the_parser(
            scheme in "https?://|http:/|ftp://|",
            authority in "[a@:. \\u{0}é]{0,4}",
            rest in "[/?#][a/ \\u{85}\\u{7f}é]{0,3}|",
        ) {
            let text = format!("{scheme}{authority}{rest}");
            // Empty means no image, which the draft's parser accepts before `ImageUrl` is asked.
            let accepted = text.is_empty() || ImageUrl::parse(&text).is_ok();
            prop_assert_eq!(admits(&image_url(), &text), accepted, "{:?}", text);
        }

        #[test]
        fn attribute_schemas_are_the_parser(
            key in "[ a\\u{0}\\u{3000}]{0,3}|a{63,65}",
            value in "[a\\u{0}]{0,2}|a{499,501}",
        ) {
            let schema = serde_json::to_value(attributes()).unwrap();
            let (names, values) = (&schema["propertyNames"], &schema["additionalProperties"]);
            let admitted = admits_json(names, &key) && admits_json(values, &value);
            // NUL is refused by the JSON extractor, before the parser sees the map.
            let accepted = !key.contains('\0')
                && !value.contains('\0')
                && parse_attributes(&BTreeMap::from([(key.clone(), value.clone())])).is_ok();
            prop_assert_eq!(admitted, accepted, "{:?}: {:?}", key, value);
        }

        #[test]
        fn uuid_schemas_admit_only_what_parses(text in "[0-9a-f-]{0,37}", id in any::<u128>()) {
            let id = uuid::Uuid::from_u128(id).to_string();
            prop_assert!(admits(&category_id(), &id) && admits(&parent_id(), &id));
            if admits(&category_id(), &text) {
                prop_assert!(parse_uuid(&text).is_ok(), "{:?}", text);
            }
        }
    }

    #[test]
    fn image_url_examples() {
        for good in [
            "",
            "http://a",
            "https://img.example.com/x.png?size=2",
            "https://u:p@h:8080/é",
        ] {
            assert!(admits(&image_url(), good), "{good}");
        }
        for bad in [
            "ftp://a/b",
            "https://",
            "https:///path",
            "https://a b",
            "https://:80",
            "https://a@",
            "HTTPS://a",
        ] {
            assert!(!admits(&image_url(), bad), "{bad}");
            assert!(ImageUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
