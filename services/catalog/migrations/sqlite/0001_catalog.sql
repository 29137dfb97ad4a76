-- Catalog: categories (a tree) and products, with FTS5 full-text search on name + description.

CREATE TABLE categories (
    id          TEXT PRIMARY KEY,
    parent_id   TEXT REFERENCES categories(id),
    name        TEXT NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX categories_parent ON categories(parent_id);
CREATE INDEX categories_name ON categories(name, id);

-- `seq` is an explicit rowid: the FTS5 external-content table points at it, and unlike an
-- implicit rowid it never changes on VACUUM. The public id stays the UUIDv7 `id`.
CREATE TABLE products (
    seq            INTEGER PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    sku            TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    description    TEXT NOT NULL DEFAULT '',
    price_amount   BIGINT NOT NULL CHECK (price_amount >= 0),
    price_currency TEXT NOT NULL,
    category_id    TEXT NOT NULL REFERENCES categories(id),
    image_url      TEXT,
    attributes     TEXT NOT NULL DEFAULT '{}',
    active         BOOLEAN NOT NULL DEFAULT TRUE,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    version        BIGINT NOT NULL DEFAULT 1
);
-- One index per sort so a keyset page is a range scan: newest, price, name; plus category.
CREATE INDEX products_active_id ON products(active, id);
CREATE INDEX products_active_price ON products(active, price_amount, id);
CREATE INDEX products_active_name ON products(active, name, id);
CREATE INDEX products_category ON products(category_id, active, id);

CREATE VIRTUAL TABLE products_fts USING fts5(
    name, description, content = 'products', content_rowid = 'seq', tokenize = 'unicode61'
);

CREATE TRIGGER products_fts_insert AFTER INSERT ON products BEGIN
    INSERT INTO products_fts(rowid, name, description) VALUES (new.seq, new.name, new.description);
END;
CREATE TRIGGER products_fts_delete AFTER DELETE ON products BEGIN
    INSERT INTO products_fts(products_fts, rowid, name, description)
        VALUES ('delete', old.seq, old.name, old.description);
END;
CREATE TRIGGER products_fts_update AFTER UPDATE OF name, description ON products BEGIN
    INSERT INTO products_fts(products_fts, rowid, name, description)
        VALUES ('delete', old.seq, old.name, old.description);
    INSERT INTO products_fts(rowid, name, description) VALUES (new.seq, new.name, new.description);
END;
