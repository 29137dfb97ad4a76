//! Category queries: the tree, lookups by id or slug, and safe deletes.

use anyhow::Context as _;
use platform::db::{decode_id, decode_time, encode_time};
use uuid::Uuid;

use super::{column, on_constraint, Store};
use crate::domain::category::{Category, NewCategory};
use crate::error::CatalogError;

const COLUMNS: &str = "id, parent_id, name, slug, description, created_at, updated_at";

fn decode(row: &sqlx::any::AnyRow) -> anyhow::Result<Category> {
    let parent: Option<String> = column(row, "parent_id")?;
    Ok(Category {
        id: decode_id(&column::<String>(row, "id")?)?,
        parent_id: parent.as_deref().map(decode_id).transpose()?,
        name: column(row, "name")?,
        slug: column(row, "slug")?,
        description: column(row, "description")?,
        created_at: decode_time(&column::<String>(row, "created_at")?)?,
        updated_at: decode_time(&column::<String>(row, "updated_at")?)?,
    })
}

fn unknown_parent() -> CatalogError {
    CatalogError::invalid("parent_id", "no such category")
}

impl Store {
    /// Every category, flat (each names its parent), ordered by name.
    pub async fn list_categories(&self) -> Result<Vec<Category>, CatalogError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM categories ORDER BY name, id"
        ))
        .fetch_all(self.db().pool())
        .await
        .context("failed to list categories")?;
        Ok(rows.iter().map(decode).collect::<anyhow::Result<_>>()?)
    }

    /// A category by its id or, when the text is not a UUID, its slug.
    pub async fn find_category(&self, id_or_slug: &str) -> Result<Option<Category>, CatalogError> {
        let (condition, value) = match Uuid::parse_str(id_or_slug) {
            Ok(id) => ("id", id.to_string()),
            Err(_) => ("slug", id_or_slug.to_owned()),
        };
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM categories WHERE {condition} = $1"
        ))
        .bind(value)
        .fetch_optional(self.db().pool())
        .await
        .context("failed to read a category")?;
        Ok(row.as_ref().map(decode).transpose()?)
    }

    pub async fn create_category(&self, new: &NewCategory) -> Result<Category, CatalogError> {
        let now = platform::now();
        let category = Category {
            id: platform::new_id(),
            parent_id: new.parent_id,
            name: new.name.clone(),
            slug: new.slug.as_str().to_owned(),
            description: new.description.clone(),
            created_at: now,
            updated_at: now,
        };
        let mut tx = self
            .db()
            .begin_write()
            .await
            .context("failed to begin a transaction")?;
        sqlx::query(&format!(
            "INSERT INTO categories ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(category.id.to_string())
        .bind(category.parent_id.map(|id| id.to_string()))
        .bind(category.name.clone())
        .bind(category.slug.clone())
        .bind(category.description.clone())
        .bind(encode_time(now))
        .bind(encode_time(now))
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            on_constraint(
                e,
                "failed to insert a category",
                || CatalogError::SlugTaken,
                unknown_parent,
            )
        })?;
        tx.commit().await.context("failed to commit a category")?;
        Ok(category)
    }

    /// Replaces a category's fields. A category cannot become its own ancestor.
    pub async fn update_category(
        &self,
        id: Uuid,
        new: &NewCategory,
    ) -> Result<Category, CatalogError> {
        let mut tx = self
            .db()
            .begin_write()
            .await
            .context("failed to begin a transaction")?;
        if let Some(parent) = new.parent_id {
            // The new parent must not be the category itself or one of its descendants.
            let cycle = sqlx::query(
                "WITH RECURSIVE tree(id) AS ( \
                     SELECT CAST($1 AS TEXT) \
                     UNION SELECT c.id FROM categories c JOIN tree t ON c.parent_id = t.id) \
                 SELECT 1 FROM tree WHERE id = $2",
            )
            .bind(id.to_string())
            .bind(parent.to_string())
            .fetch_optional(&mut *tx)
            .await
            .context("failed to check the category tree")?;
            if cycle.is_some() {
                return Err(CatalogError::invalid(
                    "parent_id",
                    "must not be the category itself or one of its subcategories",
                ));
            }
        }
        let now = platform::now();
        let result = sqlx::query(
            "UPDATE categories SET parent_id = $1, name = $2, slug = $3, description = $4, \
             updated_at = $5 WHERE id = $6",
        )
        .bind(new.parent_id.map(|id| id.to_string()))
        .bind(new.name.clone())
        .bind(new.slug.as_str().to_owned())
        .bind(new.description.clone())
        .bind(encode_time(now))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            on_constraint(
                e,
                "failed to update a category",
                || CatalogError::SlugTaken,
                unknown_parent,
            )
        })?;
        if result.rows_affected() == 0 {
            return Err(CatalogError::NotFound("category"));
        }
        tx.commit().await.context("failed to commit")?;
        self.find_category(&id.to_string())
            .await?
            .ok_or(CatalogError::NotFound("category"))
    }

    /// Deletes an empty category: one with products (active or not) or subcategories stays.
    pub async fn delete_category(&self, id: Uuid) -> Result<(), CatalogError> {
        let mut tx = self
            .db()
            .begin_write()
            .await
            .context("failed to begin a transaction")?;
        let in_use = sqlx::query(
            "SELECT 1 FROM categories WHERE parent_id = $1 \
             UNION ALL SELECT 1 FROM products WHERE category_id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .context("failed to check a category's contents")?;
        if in_use.is_some() {
            return Err(CatalogError::CategoryNotEmpty);
        }
        let result = sqlx::query("DELETE FROM categories WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                on_constraint(
                    e,
                    "failed to delete a category",
                    || CatalogError::CategoryNotEmpty,
                    || CatalogError::CategoryNotEmpty,
                )
            })?;
        if result.rows_affected() == 0 {
            return Err(CatalogError::NotFound("category"));
        }
        tx.commit().await.context("failed to commit")?;
        Ok(())
    }
}
