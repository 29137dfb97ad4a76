//! Categories: a tree of named, slugged groups of products.

use platform::http::FieldViolation;
use serde::Deserialize;
use uuid::Uuid;

use super::{bounded_text, parse_uuid, Violations};

pub const SLUG_MAX: usize = 64;
pub const CATEGORY_NAME_MAX: usize = 100;
pub const CATEGORY_DESCRIPTION_MAX: usize = 2_000;

/// A URL-safe category name: 1..=64 characters of `[a-z0-9-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slug(String);

impl Slug {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.len() > SLUG_MAX {
            return Err(format!("must be 1 to {SLUG_MAX} characters"));
        }
        if !text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err("may contain only lowercase letters, digits and '-'".to_owned());
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A category as a client sends it, before validation.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct CategoryDraft {
    #[schema(schema_with = super::schema::category_name)]
    pub name: String,
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-z0-9-]+$")]
    pub slug: String,
    #[serde(default)]
    #[schema(schema_with = super::schema::category_description)]
    pub description: String,
    #[serde(default)]
    #[schema(schema_with = super::schema::parent_id)]
    pub parent_id: Option<String>,
}

/// A category's editable fields, valid by construction.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCategory {
    pub name: String,
    pub slug: Slug,
    pub description: String,
    pub parent_id: Option<Uuid>,
}

impl NewCategory {
    pub fn parse(draft: &CategoryDraft) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Violations::default();
        let name = violations.check("name", bounded_text(&draft.name, 1, CATEGORY_NAME_MAX));
        let slug = violations.check("slug", Slug::parse(&draft.slug));
        let description = violations.check(
            "description",
            bounded_text(&draft.description, 0, CATEGORY_DESCRIPTION_MAX),
        );
        let parent_id = match draft.parent_id.as_deref() {
            None => Some(None),
            Some(text) => violations.check("parent_id", parse_uuid(text).map(Some)),
        };
        violations.finish()?;
        match (name, slug, description, parent_id) {
            (Some(name), Some(slug), Some(description), Some(parent_id)) => Ok(Self {
                name,
                slug,
                description,
                parent_id,
            }),
            _ => Err(vec![FieldViolation::new("body", "is invalid")]),
        }
    }
}

/// A stored category.
#[derive(Debug, Clone, PartialEq)]
pub struct Category {
    pub id: Uuid,
    pub parent_id: Option<Uuid>,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for good in ["a", "coffee-grinders", "v60", &"a".repeat(64)] {
            assert!(Slug::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Coffee",
            "with space",
            "under_score",
            "ü",
            &"a".repeat(65),
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn drafts_report_every_field() {
        let draft = CategoryDraft {
            name: "".into(),
            slug: "Bad Slug".into(),
            description: String::new(),
            parent_id: Some("x".into()),
        };
        let errors = NewCategory::parse(&draft).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "slug", "parent_id"]);
        let ok = CategoryDraft {
            name: " Coffee ".into(),
            slug: "coffee".into(),
            description: String::new(),
            parent_id: None,
        };
        assert_eq!(NewCategory::parse(&ok).unwrap().name, "Coffee");
    }
}
