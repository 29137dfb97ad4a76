//! Browsing: sort orders, keyset cursors, filters and the sanitising of search text.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use platform::http::FieldViolation;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Violations;

pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const SEARCH_TEXT_MAX: usize = 200;
/// The longest cursor accepted, in characters. The longest one issued (a name key of 200
/// four-byte characters) encodes to under 1 200, so a longer one was not issued here.
pub const CURSOR_MAX: usize = 2_048;

/// The order of a product listing. Every order ends with the id, so it is total and a
/// keyset cursor (last sort key + id) resumes exactly where the previous page stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Most recently created first (ids are UUIDv7, ordered by creation time).
    #[default]
    Newest,
    PriceAsc,
    PriceDesc,
    Name,
}

impl Sort {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "newest" => Ok(Self::Newest),
            "price_asc" => Ok(Self::PriceAsc),
            "price_desc" => Ok(Self::PriceDesc),
            "name" => Ok(Self::Name),
            _ => Err("must be one of newest, price_asc, price_desc, name".to_owned()),
        }
    }
}

/// The sort key of the last item of a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SortKey {
    Price(i64),
    Name(String),
}

/// Where the next page starts: the sort it belongs to, the last item's sort key and id.
/// Opaque to clients (base64url of a small JSON document).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    #[serde(rename = "s")]
    pub sort: Sort,
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub key: Option<SortKey>,
    #[serde(rename = "i")]
    pub id: Uuid,
}

/// A cursor that cannot be used: corrupt, forged, or from another sort order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor: {0}")]
pub struct InvalidCursor(pub &'static str);

impl Cursor {
    pub fn encode(&self) -> String {
        // Serialising a struct of strings, numbers and a UUID cannot fail.
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes a cursor and checks that it belongs to `sort` with a key of the right type.
    pub fn decode(text: &str, sort: Sort) -> Result<Self, InvalidCursor> {
        if text.len() > CURSOR_MAX {
            return Err(InvalidCursor("longer than any cursor issued"));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| InvalidCursor("not base64url"))?;
        let cursor: Cursor =
            serde_json::from_slice(&bytes).map_err(|_| InvalidCursor("not a cursor"))?;
        if cursor.sort != sort {
            return Err(InvalidCursor("the cursor belongs to another sort order"));
        }
        let key_fits = matches!(
            (sort, &cursor.key),
            (Sort::Newest, None)
                | (Sort::PriceAsc | Sort::PriceDesc, Some(SortKey::Price(_)))
                | (Sort::Name, Some(SortKey::Name(_)))
        );
        if !key_fits {
            return Err(InvalidCursor(
                "the cursor's key does not fit its sort order",
            ));
        }
        Ok(cursor)
    }
}

/// The query string of `GET /api/v1/products`, as sent.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListParams {
    pub category: Option<String>,
    pub min_price: Option<String>,
    pub max_price: Option<String>,
    pub in_stock: Option<String>,
    pub q: Option<String>,
    pub sort: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
    pub include_inactive: Option<String>,
}

/// A validated product listing request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProductQuery {
    /// A category id or slug; its descendants are included.
    pub category: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    /// `Some(true)`: only products with stock available; `Some(false)`: only without.
    pub in_stock: Option<bool>,
    /// Search terms (already split), matched against name and description; all must occur.
    pub terms: Option<Vec<String>>,
    pub sort: Sort,
    pub limit: u32,
    pub after: Option<Cursor>,
    pub include_inactive: bool,
}

/// Why a listing request was refused.
#[derive(Debug)]
pub enum ListError {
    Invalid(Vec<FieldViolation>),
    Cursor(InvalidCursor),
}

impl ProductQuery {
    /// A first page of everything active, newest first.
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    pub fn parse(params: &ListParams, page_size_max: u32) -> Result<Self, ListError> {
        let mut violations = Violations::default();
        let sort = match params.sort.as_deref() {
            None | Some("") => Some(Sort::Newest),
            Some(text) => violations.check("sort", Sort::parse(text)),
        };
        let limit = match params.limit.as_deref() {
            None => Some(DEFAULT_PAGE_SIZE),
            Some(text) => violations.check(
                "limit",
                text.parse::<u32>()
                    .ok()
                    .filter(|n| (1..=page_size_max).contains(n))
                    .ok_or_else(|| format!("must be an integer from 1 to {page_size_max}")),
            ),
        };
        let price = |text: &Option<String>, field: &str, v: &mut Violations| match text.as_deref() {
            None => None,
            Some(text) => v.check(
                field,
                text.parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| "must be a non-negative integer (minor units)".to_owned()),
            ),
        };
        // A `min_price` above `max_price` is an empty range, answered with an empty page as
        // search engines and SQL's BETWEEN answer it, not refused: JSON Schema cannot compare
        // two parameters, so a refusal would be a rule the published contract cannot state,
        // and a client building the range from two independent inputs gets no error to handle.
        let min_price = price(&params.min_price, "min_price", &mut violations);
        let max_price = price(&params.max_price, "max_price", &mut violations);
        let in_stock = parse_flag(params.in_stock.as_deref(), "in_stock", &mut violations);
        let include_inactive = parse_flag(
            params.include_inactive.as_deref(),
            "include_inactive",
            &mut violations,
        )
        .unwrap_or(false);
        // The maximum applies to the text as sent, as the published schema's maxLength does.
        let terms = match params.q.as_deref() {
            Some(text) if text.chars().count() > SEARCH_TEXT_MAX => {
                violations.add("q", format!("must be at most {SEARCH_TEXT_MAX} characters"));
                None
            }
            None => None,
            Some(text) if text.trim().is_empty() => None,
            Some(text) => Some(search_terms(text.trim())),
        };
        let category = params
            .category
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        violations.finish().map_err(ListError::Invalid)?;
        let (Some(sort), Some(limit)) = (sort, limit) else {
            return Err(ListError::Invalid(vec![FieldViolation::new(
                "query",
                "is invalid",
            )]));
        };
        let after = match params.cursor.as_deref() {
            None | Some("") => None,
            Some(text) => Some(Cursor::decode(text, sort).map_err(ListError::Cursor)?),
        };
        Ok(Self {
            category,
            min_price,
            max_price,
            in_stock,
            terms,
            sort,
            limit,
            after,
            include_inactive,
        })
    }
}

fn parse_flag(text: Option<&str>, field: &str, violations: &mut Violations) -> Option<bool> {
    // Exactly the schema's booleans: an empty or numeric value is refused, not guessed at.
    match text {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            violations.add(field, "must be true or false");
            None
        }
    }
}

/// Splits search text into terms. A term keeps only its letters and digits' surroundings as
/// typed, but one without any letter or digit can never match a word, so it is dropped.
pub fn search_terms(text: &str) -> Vec<String> {
    // Control characters separate terms too: a NUL would end an FTS5 string early (a syntax
    // error) and PostgreSQL text cannot hold one at all.
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|term| term.chars().any(char::is_alphanumeric))
        .map(str::to_owned)
        .collect()
}

/// The terms as an FTS5 query: each term a quoted string (inner quotes doubled), so no input
/// is ever read as FTS5 syntax (`AND`, `NEAR`, `*`, `:`, parentheses...); all terms must match.
/// `None` when nothing searchable is left: such a search matches nothing.
pub fn fts5_query(terms: &[String]) -> Option<String> {
    if terms.is_empty() {
        return None;
    }
    let quoted: Vec<String> = terms
        .iter()
        .map(|term| format!("\"{}\"", term.replace('"', "\"\"")))
        .collect();
    Some(quoted.join(" "))
}

/// The lexemes PostgreSQL's `simple` configuration makes of those terms that are plain ASCII
/// words (letters and digits only: one token, lowercased), longest first, without repeats, at
/// most [`MAX_POSTING_TERMS`]. Every product matching the terms holds each of these lexemes, so
/// their postings narrow a search without losing a match; terms with other characters (split
/// by PostgreSQL's parser into several tokens) are left to the full-text test.
pub fn posting_terms(terms: &[String]) -> Vec<String> {
    let mut lexemes: Vec<String> = terms
        .iter()
        .filter(|term| {
            term.len() <= MAX_LEXEME_BYTES && term.bytes().all(|b| b.is_ascii_alphanumeric())
        })
        .map(|term| term.to_ascii_lowercase())
        .collect();
    // Longer words tend to be rarer: the first one leads the walk.
    lexemes.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    lexemes.dedup();
    lexemes.truncate(MAX_POSTING_TERMS);
    lexemes
}

/// Postings joined per search at most: the rest of the terms still filter through the full-text test.
pub const MAX_POSTING_TERMS: usize = 4;

/// PostgreSQL indexes no word longer than 2047 bytes; far below that, and terms are never this long.
const MAX_LEXEME_BYTES: usize = 255;

/// The terms as input for PostgreSQL's `websearch_to_tsquery`, which never fails on syntax.
/// Each term is quoted so that both engines read `-x` or `or` as words, not operators.
pub fn websearch_query(terms: &[String]) -> Option<String> {
    if terms.is_empty() {
        return None;
    }
    let quoted: Vec<String> = terms
        .iter()
        .map(|term| format!("\"{}\"", term.replace('"', " ")))
        .collect();
    Some(quoted.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(pairs: &[(&str, &str)]) -> ListParams {
        let mut p = ListParams::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "category" => p.category = v,
                "min_price" => p.min_price = v,
                "max_price" => p.max_price = v,
                "in_stock" => p.in_stock = v,
                "q" => p.q = v,
                "sort" => p.sort = v,
                "limit" => p.limit = v,
                "cursor" => p.cursor = v,
                "include_inactive" => p.include_inactive = v,
                _ => panic!("unknown {k}"),
            }
        }
        p
    }

    #[test]
    fn posting_terms_are_the_plain_words_lowercased_longest_first() {
        let terms = |text: &str| posting_terms(&search_terms(text));
        assert_eq!(terms("Copper kettle"), ["copper", "kettle"]);
        assert_eq!(terms("tea TEA teapot"), ["teapot", "tea"]);
        // Split by PostgreSQL's parser into several tokens: left to the full-text test.
        assert_eq!(terms("pour-over e@mail.com 1.5 kettle"), ["kettle"]);
        assert!(terms("ünïcödé 漢字").is_empty());
        assert_eq!(terms("a b c d e f").len(), MAX_POSTING_TERMS);
        assert!(terms(&"x".repeat(MAX_LEXEME_BYTES + 1)).is_empty());
    }

    fn fields(error: ListError) -> Vec<String> {
        match error {
            ListError::Invalid(v) => v.into_iter().map(|f| f.field).collect(),
            ListError::Cursor(c) => vec![format!("cursor: {c}")],
        }
    }

    #[test]
    fn cursors_round_trip() {
        for (sort, key) in [
            (Sort::Newest, None),
            (Sort::PriceAsc, Some(SortKey::Price(0))),
            (Sort::PriceDesc, Some(SortKey::Price(i64::MAX))),
            (Sort::Name, Some(SortKey::Name("Grinder \"X\" ü".into()))),
        ] {
            let cursor = Cursor {
                sort,
                key,
                id: Uuid::now_v7(),
            };
            assert_eq!(Cursor::decode(&cursor.encode(), sort).unwrap(), cursor);
        }
    }

    #[test]
    fn tampered_or_mismatched_cursors_are_refused() {
        let cursor = Cursor {
            sort: Sort::PriceAsc,
            key: Some(SortKey::Price(100)),
            id: Uuid::now_v7(),
        }
        .encode();
        assert!(Cursor::decode(&cursor, Sort::Name).is_err());
        assert!(Cursor::decode(&cursor, Sort::Newest).is_err());
        assert!(Cursor::decode("not-a-cursor", Sort::PriceAsc).is_err());
        assert!(Cursor::decode(&format!("{cursor}!"), Sort::PriceAsc).is_err());
        let mut chars: Vec<char> = cursor.chars().collect();
        chars[3] = if chars[3] == 'A' { 'B' } else { 'A' };
        let flipped: String = chars.into_iter().collect();
        assert!(Cursor::decode(&flipped, Sort::PriceAsc).is_err());
        // A well-formed document whose key does not fit its sort.
        let forged = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"s":"price_asc","k":"abc","i":"{}"}}"#,
            Uuid::now_v7()
        ));
        assert!(Cursor::decode(&forged, Sort::PriceAsc).is_err());
    }

    #[test]
    fn cursors_longer_than_any_issued_are_refused() {
        // The longest key a cursor can carry: a 200-character name of four-byte characters.
        let longest = Cursor {
            sort: Sort::Name,
            key: Some(SortKey::Name("\u{1F600}".repeat(200))),
            id: Uuid::now_v7(),
        };
        let encoded = longest.encode();
        assert!(encoded.len() < 1_200, "{}", encoded.len());
        assert_eq!(Cursor::decode(&encoded, Sort::Name).unwrap(), longest);
        // A well-formed cursor over the limit is not one this server issued.
        let forged = Cursor {
            sort: Sort::Name,
            key: Some(SortKey::Name("n".repeat(CURSOR_MAX))),
            id: Uuid::now_v7(),
        };
        assert_eq!(
            Cursor::decode(&forged.encode(), Sort::Name),
            Err(InvalidCursor("longer than any cursor issued"))
        );
    }

    #[test]
    fn listing_parameters() {
        let q = ProductQuery::parse(&params(&[]), 100).unwrap();
        assert_eq!((q.limit, q.sort), (DEFAULT_PAGE_SIZE, Sort::Newest));
        let q = ProductQuery::parse(
            &params(&[
                ("limit", "100"),
                ("sort", "price_desc"),
                ("min_price", "5"),
                ("max_price", "10"),
                ("in_stock", "true"),
                ("q", "  espresso  !!  "),
            ]),
            100,
        )
        .unwrap();
        assert_eq!(q.limit, 100);
        assert_eq!(q.terms, Some(vec!["espresso".to_owned()]));
        assert_eq!(q.in_stock, Some(true));
        let errors = fields(
            ProductQuery::parse(
                &params(&[
                    ("limit", "101"),
                    ("sort", "random"),
                    ("min_price", "-1"),
                    ("in_stock", "yes"),
                ]),
                100,
            )
            .unwrap_err(),
        );
        assert_eq!(errors, ["sort", "limit", "min_price", "in_stock"]);
        // An empty range is a query for nothing, not an error.
        let empty =
            ProductQuery::parse(&params(&[("min_price", "9"), ("max_price", "1")]), 100).unwrap();
        assert_eq!((empty.min_price, empty.max_price), (Some(9), Some(1)));
        // The search text's maximum counts what was sent, white space included.
        let padded = format!(" {}", "a".repeat(SEARCH_TEXT_MAX));
        assert_eq!(
            fields(ProductQuery::parse(&params(&[("q", &padded)]), 100).unwrap_err()),
            ["q"]
        );
        let blank = " ".repeat(SEARCH_TEXT_MAX);
        assert_eq!(
            ProductQuery::parse(&params(&[("q", &blank)]), 100)
                .unwrap()
                .terms,
            None
        );
        assert!(matches!(
            ProductQuery::parse(&params(&[("cursor", "garbage")]), 100),
            Err(ListError::Cursor(_))
        ));
    }

    #[test]
    fn search_text_becomes_quoted_terms() {
        let terms = search_terms(r#"dark "roast" AND NEAR(x) *  -- ()"#);
        assert_eq!(
            fts5_query(&terms).unwrap(),
            r#""dark" """roast""" "AND" "NEAR(x)""#
        );
        assert_eq!(fts5_query(&search_terms("!!! ** ::")), None);
        assert_eq!(
            search_terms("a\u{0}b\u{1b}\u{c9}"),
            vec!["a", "b", "\u{c9}"]
        );
    }

    proptest! {
        #[test]
        fn fts5_queries_are_only_quoted_strings(text in "(?s).{0,80}") {
            if let Some(query) = fts5_query(&search_terms(&text)) {
                // Every term is `"..."` with inner quotes doubled: strip them and nothing
                // outside quotes may remain but single spaces.
                let mut outside = String::new();
                let mut inside = false;
                let mut chars = query.chars().peekable();
                while let Some(c) = chars.next() {
                    if c == '"' {
                        if inside && chars.peek() == Some(&'"') { chars.next(); continue; }
                        inside = !inside;
                    } else if !inside {
                        outside.push(c);
                    }
                }
                prop_assert!(!inside);
                prop_assert!(outside.chars().all(|c| c == ' '), "{}", query);
                prop_assert!(!query.chars().any(char::is_control), "{:?}", query);
            }
        }

        #[test]
        fn any_cursor_round_trips(price in any::<i64>(), name in "\\PC{0,100}", bits in any::<u128>()) {
            let id = Uuid::from_u128(bits);
            for (sort, key) in [
                (Sort::Newest, None),
                (Sort::PriceAsc, Some(SortKey::Price(price))),
                (Sort::PriceDesc, Some(SortKey::Price(price))),
                (Sort::Name, Some(SortKey::Name(name.clone()))),
            ] {
                let cursor = Cursor { sort, key, id };
                prop_assert_eq!(Cursor::decode(&cursor.encode(), sort), Ok(cursor));
            }
        }

        #[test]
        fn cursor_decoding_never_panics(text in "\\PC{0,120}") {
            let _ = Cursor::decode(&text, Sort::Name);
        }
    }
}
