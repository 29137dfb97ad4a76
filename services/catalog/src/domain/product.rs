//! Products: SKU, price, image URL, attributes and the validated input of a create/replace.

use std::collections::BTreeMap;

use platform::http::FieldViolation;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{bounded_text, parse_uuid, Violations};

pub const SKU_MAX: usize = 64;
pub const NAME_MAX: usize = 200;
pub const DESCRIPTION_MAX: usize = 5_000;
pub const IMAGE_URL_MAX: usize = 2_048;
pub const ATTRIBUTES_MAX: usize = 50;
pub const ATTRIBUTE_KEY_MAX: usize = 64;
pub const ATTRIBUTE_VALUE_MAX: usize = 500;
/// Upper bound of an initial stock quantity: far above any real shelf, far below i64 overflow.
pub const STOCK_MAX: i64 = 1_000_000_000;

/// A stock keeping unit: 1..=64 characters of `[A-Za-z0-9._-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sku(String);

impl Sku {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.len() > SKU_MAX {
            return Err(format!("must be 1 to {SKU_MAX} characters"));
        }
        if !text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err("may contain only letters, digits, '.', '_' and '-'".to_owned());
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sku {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl From<Sku> for String {
    fn from(sku: Sku) -> String {
        sku.0
    }
}

/// Prices are money as every service spells it.
pub use contracts::{Currency, Money};

/// A product's price from its draft: every violation reported under `price.*`.
pub fn parse_price(amount: i64, currency: &str) -> Result<Money, Vec<FieldViolation>> {
    let mut violations = Violations::default();
    if amount < 0 {
        violations.add(
            "price.amount",
            contracts::InvalidMoney::Negative.to_string(),
        );
    }
    let currency = violations.check("price.currency", Currency::parse(currency));
    violations.finish()?;
    match currency.map(|currency| Money::new(amount, currency)) {
        Some(Ok(price)) => Ok(price),
        _ => Err(vec![FieldViolation::new(
            "price",
            "must be a non-negative amount in an ISO 4217 currency",
        )]),
    }
}

/// An absolute http(s) URL of at most 2048 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUrl(String);

impl ImageUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        // Characters, as the message and the published schema's maxLength count them.
        if text.chars().count() > IMAGE_URL_MAX {
            return Err(format!("must be at most {IMAGE_URL_MAX} characters"));
        }
        let rest = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
            .ok_or_else(|| "must be an http or https URL".to_owned())?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = host.rsplit('@').next().unwrap_or_default();
        if host.is_empty() || host.starts_with(':') {
            return Err("must name a host".to_owned());
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain spaces or control characters".to_owned());
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free-form product attributes (`colour`, `size`...): at most 50 string pairs.
pub fn parse_attributes(
    attributes: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    if attributes.len() > ATTRIBUTES_MAX {
        return Err(format!("must have at most {ATTRIBUTES_MAX} entries"));
    }
    for (key, value) in attributes {
        if key.trim().is_empty() || key.chars().count() > ATTRIBUTE_KEY_MAX {
            return Err(format!(
                "keys must be 1 to {ATTRIBUTE_KEY_MAX} characters (`{}`)",
                key.chars().take(ATTRIBUTE_KEY_MAX).collect::<String>()
            ));
        }
        if value.chars().count() > ATTRIBUTE_VALUE_MAX {
            return Err(format!(
                "value of `{key}` must be at most {ATTRIBUTE_VALUE_MAX} characters"
            ));
        }
    }
    Ok(attributes.clone())
}

/// The editable fields of a product as a client sends them, before validation.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ProductDraft {
    /// Unique stock keeping unit, `[A-Za-z0-9._-]`.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9._-]+$",
        example = "GR-1"
    )]
    pub sku: String,
    #[schema(schema_with = super::schema::product_name)]
    pub name: String,
    #[serde(default)]
    #[schema(schema_with = super::schema::product_description)]
    pub description: String,
    pub price: PriceDraft,
    #[schema(schema_with = super::schema::category_id)]
    pub category_id: String,
    #[serde(default)]
    #[schema(schema_with = super::schema::image_url)]
    pub image_url: Option<String>,
    #[serde(default)]
    #[schema(schema_with = super::schema::attributes)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default = "default_true")]
    pub active: bool,
    /// Initial stock on create; ignored on a replace (stock has its own endpoints).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub stock: Option<i64>,
}

fn default_true() -> bool {
    true
}

/// A price as a client sends it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[schema(as = Price)]
pub struct PriceDraft {
    /// Minor units (cents).
    #[schema(minimum = 0, example = 19900)]
    pub amount: i64,
    /// ISO 4217 code (one the shop knows: the schema lists them).
    #[schema(value_type = contracts::Currency)]
    pub currency: String,
}

/// A product's editable fields, valid by construction.
#[derive(Debug, Clone, PartialEq)]
pub struct NewProduct {
    pub sku: Sku,
    pub name: String,
    pub description: String,
    pub price: Money,
    pub category_id: Uuid,
    pub image_url: Option<ImageUrl>,
    pub attributes: BTreeMap<String, String>,
    pub active: bool,
    /// Units on hand to start with (create only).
    pub initial_stock: Option<i64>,
}

impl NewProduct {
    /// Checks every field of a draft, reporting all violations together.
    pub fn parse(draft: &ProductDraft) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Violations::default();
        let sku = violations.check("sku", Sku::parse(&draft.sku));
        let name = violations.check("name", bounded_text(&draft.name, 1, NAME_MAX));
        let description = violations.check(
            "description",
            bounded_text(&draft.description, 0, DESCRIPTION_MAX),
        );
        let price = match parse_price(draft.price.amount, &draft.price.currency) {
            Ok(price) => Some(price),
            Err(errors) => {
                for error in errors {
                    violations.add(error.field, error.message);
                }
                None
            }
        };
        let category_id = violations.check("category_id", parse_uuid(&draft.category_id));
        let image_url = match draft.image_url.as_deref() {
            None | Some("") => Some(None),
            Some(url) => violations.check("image_url", ImageUrl::parse(url).map(Some)),
        };
        let attributes = violations.check("attributes", parse_attributes(&draft.attributes));
        if let Some(stock) = draft.stock {
            if !(0..=STOCK_MAX).contains(&stock) {
                violations.add("stock", format!("must be between 0 and {STOCK_MAX}"));
            }
        }
        violations.finish()?;
        match (
            sku,
            name,
            description,
            price,
            category_id,
            image_url,
            attributes,
        ) {
            (
                Some(sku),
                Some(name),
                Some(description),
                Some(price),
                Some(category_id),
                Some(image_url),
                Some(attributes),
            ) => Ok(Self {
                sku,
                name,
                description,
                price,
                category_id,
                image_url,
                attributes,
                active: draft.active,
                initial_stock: draft.stock,
            }),
            // Unreachable: every None above recorded a violation.
            _ => Err(vec![FieldViolation::new("body", "is invalid")]),
        }
    }
}

/// A stored product, with the stock available to sell (`on_hand - reserved`, 0 without a row).
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price_amount: i64,
    pub price_currency: String,
    pub category_id: Uuid,
    pub image_url: Option<String>,
    pub attributes: BTreeMap<String, String>,
    pub active: bool,
    pub available: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub version: i64,
}

impl Product {
    /// The entity tag of this version, as sent in `ETag` and expected in `If-Match`.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

/// What the internal lookup answers about a product (`contracts::catalog`), and how many
/// products one lookup may name.
pub use contracts::catalog::{ProductSnapshot, MAX_LOOKUP_IDS};

/// The ids of a lookup: 1 to [`MAX_LOOKUP_IDS`] as sent, each kept once, in the order first
/// named (the answer's order).
pub fn parse_lookup_ids(ids: &[Uuid]) -> Result<Vec<Uuid>, FieldViolation> {
    if ids.is_empty() || ids.len() > MAX_LOOKUP_IDS {
        return Err(FieldViolation::new(
            "ids",
            format!("must have 1 to {MAX_LOOKUP_IDS} ids"),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    Ok(ids.iter().copied().filter(|id| seen.insert(*id)).collect())
}

/// Reads the version out of an `If-Match`/`If-None-Match` entity tag (`"3"` or `W/"3"`).
pub fn parse_etag(tag: &str) -> Option<i64> {
    let tag = tag.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    tag.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn draft() -> ProductDraft {
        ProductDraft {
            sku: "GR-1".into(),
            name: "Grinder".into(),
            description: "Conical burrs".into(),
            price: PriceDraft {
                amount: 19_900,
                currency: "EUR".into(),
            },
            category_id: Uuid::now_v7().to_string(),
            image_url: Some("https://img.example.com/gr-1.jpg".into()),
            attributes: BTreeMap::from([("colour".into(), "black".into())]),
            active: true,
            stock: Some(3),
        }
    }

    #[test]
    fn skus() {
        for good in ["A", "GR-1", "a.b_c-9", &"x".repeat(64)] {
            assert!(Sku::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "has space", "ümlaut", "semi;colon", &"x".repeat(65)] {
            assert!(Sku::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn currencies_and_prices() {
        assert_eq!(Currency::parse("EUR").unwrap().as_str(), "EUR");
        for bad in ["eur", "EU", "EURO", "E1R", ""] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
        assert!(parse_price(0, "USD").is_ok());
        let errors = parse_price(-1, "usd").unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["price.amount", "price.currency"]);
    }

    #[test]
    fn image_urls() {
        for good in ["http://a", "https://img.example.com/x.png?size=2"] {
            assert!(ImageUrl::parse(good).is_ok(), "{good}");
        }
        let long = format!("https://example.com/{}", "a".repeat(2048));
        for bad in [
            "ftp://a/b",
            "https://",
            "https:///path",
            "javascript:alert(1)",
            "https://a b",
            long.as_str(),
        ] {
            assert!(ImageUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_image_url_limit_counts_characters() {
        let prefix = "https://example.com/";
        let at_limit = format!("{prefix}{}", "é".repeat(IMAGE_URL_MAX - prefix.len()));
        assert!(at_limit.len() > IMAGE_URL_MAX, "more bytes than the limit");
        assert!(ImageUrl::parse(&at_limit).is_ok());
        assert!(ImageUrl::parse(&format!("{at_limit}é")).is_err());
    }

    #[test]
    fn etags() {
        assert_eq!(parse_etag("\"3\""), Some(3));
        assert_eq!(parse_etag(" W/\"12\" "), Some(12));
        for bad in ["3", "\"x\"", "*", "\"3"] {
            assert_eq!(parse_etag(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_valid_draft_parses() {
        let product = NewProduct::parse(&draft()).unwrap();
        assert_eq!(product.sku.as_str(), "GR-1");
        assert_eq!(product.initial_stock, Some(3));
    }

    #[test]
    fn every_broken_field_is_reported() {
        let mut bad = draft();
        bad.sku = "no spaces".into();
        bad.name = "  ".into();
        bad.price.amount = -5;
        bad.category_id = "nope".into();
        bad.image_url = Some("file:///etc/passwd".into());
        bad.stock = Some(-1);
        bad.attributes = (0..51).map(|i| (format!("k{i}"), "v".into())).collect();
        let errors = NewProduct::parse(&bad).unwrap_err();
        let mut fields: Vec<_> = errors.iter().map(|e| e.field.clone()).collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "attributes",
                "category_id",
                "image_url",
                "name",
                "price.amount",
                "sku",
                "stock"
            ]
        );
    }

    #[test]
    fn lookup_ids_are_bounded_and_kept_once_in_order() {
        let (a, b) = (Uuid::from_u128(2), Uuid::from_u128(1));
        assert_eq!(parse_lookup_ids(&[a, b, a, b]).unwrap(), [a, b]);
        assert_eq!(parse_lookup_ids(&[]).unwrap_err().field, "ids");
        let most = vec![a; MAX_LOOKUP_IDS];
        assert_eq!(parse_lookup_ids(&most).unwrap(), [a]);
        let too_many = vec![a; MAX_LOOKUP_IDS + 1];
        assert_eq!(parse_lookup_ids(&too_many).unwrap_err().field, "ids");
    }

    proptest! {
        #[test]
        fn sku_accepts_exactly_its_alphabet(text in "\\PC{0,70}") {
            let valid = !text.is_empty()
                && text.len() <= SKU_MAX
                && text.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            prop_assert_eq!(Sku::parse(&text).is_ok(), valid);
        }

        #[test]
        fn negative_prices_never_parse(amount in i64::MIN..0) {
            prop_assert!(parse_price(amount, "EUR").is_err());
        }
    }
}
