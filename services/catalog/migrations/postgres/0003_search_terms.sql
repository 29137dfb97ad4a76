-- Postings of each search term in recency order, for the newest-first search.
--
-- The GIN index answers "which products match" but not "the newest ones that match": a
-- newest-first search either fetched and sorted every match (cost ~ matches) or walked
-- products_pkey backwards testing each row (cost ~ page / selectivity rows, each a heap fetch
-- and a tsvector test). Here one term's postings are read newest first from a B-tree and only
-- the products holding that term are tested, so a page costs ~ page / P(query | term) postings.
-- Kept by triggers from the stored `search` vector, so every writer keeps it without knowing it.

CREATE TABLE product_terms (
    term       TEXT NOT NULL,
    product_id TEXT NOT NULL,
    PRIMARY KEY (term, product_id)
);

CREATE FUNCTION product_terms_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO product_terms (term, product_id)
    SELECT lexeme, inserted.id
    FROM inserted, unnest(tsvector_to_array(inserted.search)) AS lexeme;
    RETURN NULL;
END
$$;

CREATE FUNCTION product_terms_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Through the primary key: the old vector names every posting the row had.
    DELETE FROM product_terms
    WHERE term = ANY (tsvector_to_array(OLD.search)) AND product_id = OLD.id;
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO product_terms (term, product_id)
        SELECT lexeme, NEW.id FROM unnest(tsvector_to_array(NEW.search)) AS lexeme;
    END IF;
    RETURN NULL;
END
$$;

-- Statement level for inserts, so a bulk load writes its postings in one statement.
CREATE TRIGGER products_terms_insert AFTER INSERT ON products
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION product_terms_insert();
CREATE TRIGGER products_terms_update AFTER UPDATE ON products
    FOR EACH ROW WHEN (OLD.search IS DISTINCT FROM NEW.search OR OLD.id <> NEW.id)
    EXECUTE FUNCTION product_terms_delete();
CREATE TRIGGER products_terms_delete AFTER DELETE ON products
    FOR EACH ROW EXECUTE FUNCTION product_terms_delete();

INSERT INTO product_terms (term, product_id)
SELECT lexeme, id FROM products, unnest(tsvector_to_array(search)) AS lexeme;
