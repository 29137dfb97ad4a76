//! Shared pieces of the services' OpenAPI documents.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::Modify;

/// The name operations use in `security(("bearer" = []))`.
pub const BEARER: &str = "bearer";

/// Adds the `bearer` scheme (a JWT in `Authorization: Bearer`) to a document:
/// `#[openapi(modifiers(&BearerScheme))]`.
pub struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                BEARER,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
    }
}

/// Building blocks of the `pattern`s that let request schemas state the rules the code checks.
///
/// Written in the part of regular-expression syntax that ECMA-262 (the dialect OpenAPI 3.1
/// names), Python's `re` (schemathesis draws values with it) and Rust's `fancy-regex` (what
/// jsonschema-rs validates with) read alike: explicit classes instead of `\s`, `\d`, `\w` or `.`,
/// whose meanings differ between them; `\xHH`/`\uHHHH` escapes; `$` only at the very end.
pub mod patterns {
    /// The characters `str::trim` removes: Unicode `White_Space`, as a class body.
    pub const WHITE_SPACE: &str =
        r"\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

    /// The characters `char::is_control` is true of (general category Cc), as a class body.
    pub const CONTROL: &str = r"\x00-\x1F\x7F-\x9F";

    /// Control characters except tab, line feed and carriage return, as a class body.
    pub const CONTROL_BUT_TAB_LF_CR: &str = r"\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F";

    /// Any text without a NUL, which no request body may carry in a field that is read (see
    /// [`crate::http::strict`]).
    pub const NO_NUL: &str = r"^[^\x00]*$";

    /// A UUID in its hyphenated form, either case.
    pub const UUID: &str =
        "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$";

    /// Text that, once trimmed of [`WHITE_SPACE`], holds none of `forbidden` (a class body such
    /// as [`CONTROL`]) and, if `required`, is not empty. The white space around it may hold
    /// anything, as trimming drops it before the rule is checked.
    pub fn trimmed_text(forbidden: &str, required: bool) -> String {
        let edge = format!("[^{WHITE_SPACE}{forbidden}]");
        let core = format!("{edge}(?:[^{forbidden}]*{edge})?");
        if required {
            format!("^[{WHITE_SPACE}]*{core}[{WHITE_SPACE}]*$")
        } else {
            format!("^[{WHITE_SPACE}]*(?:{core}[{WHITE_SPACE}]*)?$")
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use proptest::prelude::*;

        use crate::test_util::pattern_matches as matches;

        /// The rule `trimmed_text` describes, written the way the services check it.
        fn rule(text: &str, forbidden: fn(char) -> bool, required: bool) -> bool {
            let trimmed = text.trim();
            let blank = trimmed.is_empty();
            (blank && !required) || (!blank && !trimmed.chars().any(forbidden))
        }

        #[test]
        fn the_classes_are_the_rust_predicates() {
            let class = |body: &str| fancy_regex::Regex::new(&format!("^[{body}]$")).unwrap();
            let (white, control, control_but) = (
                class(WHITE_SPACE),
                class(CONTROL),
                class(CONTROL_BUT_TAB_LF_CR),
            );
            for c in (0..=0x10FFFF).filter_map(char::from_u32) {
                let text = c.to_string();
                assert_eq!(white.is_match(&text).unwrap(), c.is_whitespace(), "{c:?}");
                assert_eq!(control.is_match(&text).unwrap(), c.is_control(), "{c:?}");
                assert_eq!(
                    control_but.is_match(&text).unwrap(),
                    c.is_control() && !matches!(c, '\t' | '\n' | '\r'),
                    "{c:?}"
                );
            }
        }

        #[test]
        fn trimmed_text_examples() {
            let name = trimmed_text(CONTROL, true);
            for good in ["a", " Ada Lovelace\n", "\u{b}x\u{85}", "a b", "é"] {
                assert!(matches(&name, good), "{good:?}");
            }
            for bad in ["", " ", "\t\n", "a\tb", "a\u{0}", "\u{0}", "a\u{7f}b"] {
                assert!(!matches(&name, bad), "{bad:?}");
            }
            let description = trimmed_text(CONTROL_BUT_TAB_LF_CR, false);
            for good in ["", "  ", "line\nline", "\u{c}tab\there\u{c}"] {
                assert!(matches(&description, good), "{good:?}");
            }
            for bad in ["a\u{c}b", "\u{0}", "x\u{1b}[0m"] {
                assert!(!matches(&description, bad), "{bad:?}");
            }
        }

        proptest! {
            #[test]
            fn trimmed_text_is_the_rule(
                text in "[ \t\n\r\u{b}\u{c}\u{0}\u{1f}\u{7f}\u{85}\u{9f}\u{a0}\u{2028}\u{3000}\u{feff}ab é]{0,8}"
            ) {
                for required in [true, false] {
                    prop_assert_eq!(
                        matches(&trimmed_text(CONTROL, required), &text),
                        rule(&text, char::is_control, required)
                    );
                    prop_assert_eq!(
                        matches(&trimmed_text(CONTROL_BUT_TAB_LF_CR, required), &text),
                        rule(&text, |c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'), required)
                    );
                }
            }

            #[test]
            fn no_nul_and_uuid(text in "[\u{0}a-f0-9-]{0,40}", id in any::<u128>()) {
                prop_assert_eq!(matches(NO_NUL, &text), !text.contains('\0'));
                let id = uuid::Uuid::from_u128(id);
                prop_assert!(matches(UUID, &id.hyphenated().to_string()));
                prop_assert!(matches(UUID, &id.hyphenated().to_string().to_uppercase()));
                prop_assert!(!matches(UUID, &id.simple().to_string()));
                prop_assert_eq!(matches(UUID, &text), uuid::Uuid::try_parse(&text).is_ok() && text.len() == 36);
            }
        }
    }
}
