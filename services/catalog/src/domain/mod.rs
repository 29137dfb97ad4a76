//! Catalog rules as validated types: no axum, no SQL. Parsing a raw input either yields a value
//! that is valid by construction or the list of every field that is wrong.

pub mod category;
pub mod inventory;
pub mod listing;
pub mod product;
pub mod schema;

pub(crate) use platform::validation::Violations;

/// A text of at most `max` characters as sent, at least `min` after trimming, without control
/// characters.
pub(crate) fn bounded_text(text: &str, min: usize, max: usize) -> Result<String, String> {
    let trimmed = text.trim();
    let length = trimmed.chars().count();
    if length < min {
        return Err(if min == 1 {
            "must not be empty".to_owned()
        } else {
            format!("must be at least {min} characters")
        });
    }
    // The maximum applies to the text as sent, as the published schema's maxLength does.
    if length > max || text.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    // Newlines and tabs are fine in long texts; other control characters are never intended.
    if trimmed
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err("must not contain control characters".to_owned());
    }
    Ok(trimmed.to_owned())
}

/// Parses a UUID given as text, with a message naming what was expected.
pub(crate) fn parse_uuid(text: &str) -> Result<uuid::Uuid, String> {
    uuid::Uuid::parse_str(text.trim()).map_err(|_| "must be a UUID".to_owned())
}
