-- Catalog: categories (a tree) and products, with tsvector full-text search on name + description.

CREATE TABLE categories (
    id          TEXT PRIMARY KEY,
    parent_id   TEXT REFERENCES categories(id),
    name        TEXT COLLATE "C" NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX categories_parent ON categories(parent_id);
CREATE INDEX categories_name ON categories(name, id);

-- Names sort by code point (COLLATE "C"), as SQLite's BINARY does: both engines give the same
-- order, and keyset cursors compare exactly as the index is ordered.
CREATE TABLE products (
    id             TEXT PRIMARY KEY,
    sku            TEXT NOT NULL UNIQUE,
    name           TEXT COLLATE "C" NOT NULL,
    description    TEXT NOT NULL DEFAULT '',
    price_amount   BIGINT NOT NULL CHECK (price_amount >= 0),
    price_currency TEXT NOT NULL,
    category_id    TEXT NOT NULL REFERENCES categories(id),
    image_url      TEXT,
    attributes     TEXT NOT NULL DEFAULT '{}',
    active         BOOLEAN NOT NULL DEFAULT TRUE,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    version        BIGINT NOT NULL DEFAULT 1,
    search         tsvector GENERATED ALWAYS AS (
        to_tsvector('simple', name || ' ' || description)
    ) STORED
);
-- One index per sort so a keyset page is a range scan: newest, price, name; plus category.
CREATE INDEX products_active_id ON products(active, id);
CREATE INDEX products_active_price ON products(active, price_amount, id);
CREATE INDEX products_active_name ON products(active, name, id);
CREATE INDEX products_category ON products(category_id, active, id);
CREATE INDEX products_search ON products USING GIN (search);
