//! Demo data: a small realistic catalog for `micromart up`/`seed`, and generated catalogs of
//! any size for benchmarks.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context as _;
use platform::db::encode_time;
use serde::Deserialize;
use uuid::Uuid;

use crate::domain::category::Slug;
use crate::domain::product::{Currency, Money, NewProduct, Sku};
use crate::store::Store;

/// The demo catalog, kept as data next to this file.
const DEMO: &str = include_str!("seed/demo.json");

/// What a seeding run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedReport {
    pub categories: usize,
    pub products: usize,
    /// True when the catalog already had products and nothing was loaded.
    pub skipped: bool,
}

impl std::fmt::Display for SeedReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.skipped {
            write!(f, "the catalog already has products; demo data not loaded")
        } else {
            write!(
                f,
                "loaded the demo catalog: {} categories, {} products",
                self.categories, self.products
            )
        }
    }
}

#[derive(Deserialize)]
struct Demo {
    categories: Vec<DemoCategory>,
    products: Vec<DemoProduct>,
}

#[derive(Deserialize)]
struct DemoCategory {
    slug: String,
    name: String,
    description: String,
    parent: Option<String>,
}

#[derive(Deserialize)]
struct DemoProduct {
    sku: String,
    name: String,
    description: String,
    price: DemoPrice,
    category: String,
    attributes: BTreeMap<String, String>,
    stock: i64,
}

#[derive(Deserialize)]
struct DemoPrice {
    amount: i64,
    currency: String,
}

fn demo() -> anyhow::Result<Demo> {
    serde_json::from_str(DEMO).context("the embedded demo catalog is not valid")
}

/// A fixed UUIDv7 per demo category slug, so generated products can name demo categories
/// before any database exists.
fn demo_category_id(slug: &str) -> Uuid {
    // FNV-1a: stable across releases and platforms, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in slug.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&hash.to_be_bytes());
    random[8..].copy_from_slice(&(slug.len() as u16).to_be_bytes());
    // 2026-01-01T00:00:00Z
    uuid::Builder::from_unix_timestamp_millis(1_767_225_600_000, &random).into_uuid()
}

/// Creates the demo categories that are missing (by slug) and returns every demo slug's id.
async fn ensure_demo_categories(
    store: &Store,
    demo: &Demo,
) -> anyhow::Result<HashMap<String, Uuid>> {
    let now = encode_time(platform::now());
    let mut ids = HashMap::new();
    for category in &demo.categories {
        Slug::parse(&category.slug)
            .map_err(|e| anyhow::anyhow!("demo slug {}: {e}", category.slug))?;
        let parent =
            match &category.parent {
                Some(parent) => Some(*ids.get(parent).with_context(|| {
                    format!("demo parent {parent} must come before its children")
                })?),
                None => None,
            };
        // A category an admin already created with this slug is reused, not duplicated.
        let mut tx = store
            .db()
            .begin_write()
            .await
            .context("failed to begin a transaction")?;
        sqlx::query(
            "INSERT INTO categories (id, parent_id, name, slug, description, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT DO NOTHING",
        )
        .bind(demo_category_id(&category.slug).to_string())
        .bind(parent.map(|id: Uuid| id.to_string()))
        .bind(category.name.clone())
        .bind(category.slug.clone())
        .bind(category.description.clone())
        .bind(now.clone())
        .execute(&mut *tx)
        .await
        .context("failed to insert a demo category")?;
        tx.commit()
            .await
            .context("failed to commit a demo category")?;
        let stored = store
            .find_category(&category.slug)
            .await
            .map_err(|e| anyhow::anyhow!("failed to read a demo category: {e}"))?
            .with_context(|| format!("demo category {} vanished", category.slug))?;
        ids.insert(category.slug.clone(), stored.id);
    }
    Ok(ids)
}

/// Loads the demo catalog (11 categories, 50 products with stock) unless products exist.
pub async fn seed_demo(store: &Store) -> anyhow::Result<SeedReport> {
    let count = store
        .count_products()
        .await
        .map_err(|e| anyhow::anyhow!("failed to count products: {e}"))?;
    if count > 0 {
        return Ok(SeedReport {
            categories: 0,
            products: 0,
            skipped: true,
        });
    }
    let demo = demo()?;
    let ids = ensure_demo_categories(store, &demo).await?;
    let mut products = Vec::with_capacity(demo.products.len());
    for p in &demo.products {
        let invalid = |e: String| anyhow::anyhow!("demo product {}: {e}", p.sku);
        let invalid_money = |e: contracts::InvalidMoney| invalid(e.to_string());
        products.push(NewProduct {
            sku: Sku::parse(&p.sku).map_err(invalid)?,
            name: p.name.clone(),
            description: p.description.clone(),
            price: Money::new(
                p.price.amount,
                Currency::parse(&p.price.currency).map_err(invalid_money)?,
            )
            .map_err(invalid_money)?,
            category_id: *ids
                .get(&p.category)
                .with_context(|| format!("demo category {} is missing", p.category))?,
            image_url: None,
            attributes: p.attributes.clone(),
            active: true,
            initial_stock: Some(p.stock),
        });
    }
    let inserted = store.bulk_insert_products(&products).await?;
    tracing::info!(products = inserted, "demo catalog loaded");
    Ok(SeedReport {
        categories: ids.len(),
        products: inserted,
        skipped: false,
    })
}

/// A deterministic pseudo-random generator (SplitMix64): the same seed, the same catalog.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const ADJECTIVES: &[&str] = &[
    "Rugged",
    "Compact",
    "Classic",
    "Modern",
    "Artisan",
    "Nordic",
    "Alpine",
    "Urban",
    "Vintage",
    "Premium",
    "Essential",
    "Everyday",
    "Heritage",
    "Coastal",
    "Midnight",
    "Sunrise",
];
const MATERIALS: &[&str] = &[
    "Walnut",
    "Copper",
    "Ceramic",
    "Bamboo",
    "Titanium",
    "Linen",
    "Leather",
    "Stoneware",
    "Oak",
    "Steel",
    "Wool",
    "Canvas",
    "Porcelain",
    "Cedar",
    "Brass",
    "Granite",
];
const NOUNS: &[&str] = &[
    "Grinder",
    "Kettle",
    "Skillet",
    "Backpack",
    "Lantern",
    "Mug",
    "Dripper",
    "Knife",
    "Tent",
    "Blanket",
    "Journal",
    "Teapot",
    "Cutting Board",
    "Thermos",
    "Stove",
    "Apron",
];
const FEATURES: &[&str] = &[
    "hand-finished",
    "water-resistant",
    "dishwasher-safe",
    "ultralight",
    "heat-retaining",
    "ergonomic",
    "stackable",
    "packable",
    "recycled",
    "lifetime-warranty",
    "induction-ready",
    "shock-proof",
    "insulated",
    "foldable",
    "non-slip",
    "quick-dry",
];
const USES: &[&str] = &[
    "slow mornings",
    "weekend hikes",
    "busy kitchens",
    "camping trips",
    "small apartments",
    "long commutes",
    "dinner parties",
    "cold nights",
    "coffee rituals",
    "family picnics",
];
const COLOURS: &[&str] = &[
    "black",
    "white",
    "sage",
    "terracotta",
    "navy",
    "sand",
    "olive",
];
/// Demo categories that generated products go into (the leaves of the tree).
const GENERATED_CATEGORIES: &[&str] = &[
    "coffee-beans",
    "grinders",
    "brewing",
    "cookware",
    "knives",
    "backpacks",
    "camping",
    "books",
];

/// `n` varied products, the same for the same `seed`, in the demo categories (see
/// [`bulk_insert`], which creates those categories first). SKUs are `G<seed>-<index>`.
pub fn generate_products(n: usize, seed: u64) -> Vec<NewProduct> {
    ProductGenerator::new(seed).batch(n)
}

/// The stream behind [`generate_products`], taken in batches so a large data set never sits
/// in memory at once: batches of one generator equal one `generate_products` call.
pub struct ProductGenerator {
    rng: SplitMix,
    seed: u64,
    next_index: usize,
}

impl ProductGenerator {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SplitMix(seed),
            seed,
            next_index: 0,
        }
    }

    /// The next `n` products of the stream.
    pub fn batch(&mut self, n: usize) -> Vec<NewProduct> {
        let eur = Currency::parse("EUR").ok();
        let usd = Currency::parse("USD").ok();
        let first = self.next_index;
        self.next_index += n;
        let (rng, seed) = (&mut self.rng, self.seed);
        (first..first + n)
            .filter_map(|i| {
                let (adjective, material, noun) =
                    (rng.pick(ADJECTIVES), rng.pick(MATERIALS), rng.pick(NOUNS));
                let model = rng.below(900) + 100;
                let name = format!("{adjective} {material} {noun} {model}");
                let description = format!(
                    "A {} and {} {} in {}, made for {}. Finished in {}.",
                    rng.pick(FEATURES),
                    rng.pick(FEATURES),
                    noun.to_lowercase(),
                    material.to_lowercase(),
                    rng.pick(USES),
                    rng.pick(COLOURS),
                );
                let currency = if rng.below(4) == 0 { usd } else { eur }?;
                let mut attributes = BTreeMap::new();
                attributes.insert("material".to_owned(), material.to_lowercase());
                attributes.insert("colour".to_owned(), rng.pick(COLOURS).to_owned());
                Some(NewProduct {
                    sku: Sku::parse(&format!("G{seed:x}-{i}")).ok()?,
                    name,
                    description,
                    price: Money {
                        // 1.00 to 999.99, mostly under 100.
                        amount: (100 + rng.below(9_900) * (1 + rng.below(10))) as i64,
                        currency,
                    },
                    category_id: demo_category_id(rng.pick(GENERATED_CATEGORIES)),
                    image_url: None,
                    attributes,
                    active: rng.below(50) != 0,
                    // One in five is sold out: in-stock filters have something to remove.
                    initial_stock: Some(if rng.below(5) == 0 {
                        0
                    } else {
                        rng.below(200) as i64
                    }),
                })
            })
            .collect()
    }
}

/// Inserts many products fast (multi-row INSERTs in one transaction), creating the demo
/// categories first so [`generate_products`] output fits. Returns how many were inserted.
pub async fn bulk_insert(store: &Store, products: &[NewProduct]) -> anyhow::Result<usize> {
    ensure_demo_categories(store, &demo()?).await?;
    store.bulk_insert_products(products).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_of_a_generator_equal_one_call() {
        let whole = generate_products(25, 7);
        let mut generator = ProductGenerator::new(7);
        let mut batched = generator.batch(10);
        batched.extend(generator.batch(15));
        let skus = |products: &[NewProduct]| -> Vec<(String, String)> {
            products
                .iter()
                .map(|p| (p.sku.as_str().to_owned(), p.name.clone()))
                .collect()
        };
        assert_eq!(skus(&whole), skus(&batched));
        assert_eq!(whole[24].sku.as_str(), "G7-24");
        assert_ne!(skus(&whole), skus(&generate_products(25, 8)));
    }

    #[test]
    fn the_demo_catalog_is_valid() {
        let demo = demo().unwrap();
        assert!(demo.categories.len() >= 5);
        assert!(demo.categories.iter().any(|c| c.parent.is_some()));
        assert!(demo.products.len() >= 50);
        let slugs: Vec<_> = demo.categories.iter().map(|c| c.slug.as_str()).collect();
        for p in &demo.products {
            assert!(Sku::parse(&p.sku).is_ok(), "{}", p.sku);
            assert!(Currency::parse(&p.price.currency).is_ok(), "{}", p.sku);
            assert!(slugs.contains(&p.category.as_str()), "{}", p.category);
        }
        for slug in GENERATED_CATEGORIES {
            assert!(slugs.contains(slug), "{slug}");
        }
    }

    #[test]
    fn generation_is_deterministic_and_varied() {
        let a = generate_products(500, 7);
        assert_eq!(a.len(), 500);
        assert_eq!(a, generate_products(500, 7));
        assert_ne!(a[0].name, generate_products(1, 8)[0].name);
        let names: std::collections::HashSet<_> = a.iter().map(|p| &p.name).collect();
        assert!(names.len() > 400, "names should vary: {}", names.len());
        assert!(a.iter().all(|p| p.price.amount >= 100));
    }

    #[test]
    fn demo_category_ids_are_stable_v7() {
        let id = demo_category_id("coffee");
        assert_eq!(id, demo_category_id("coffee"));
        assert_ne!(id, demo_category_id("kitchen"));
        assert_eq!(id.get_version_num(), 7);
    }
}
