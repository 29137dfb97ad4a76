-- Stock commands on the bus (stream INVENTORY): catalog consumes `inventory.command.>` and
-- answers each command with an event, both in one transaction.

-- The transactional outbox (platform::events::outbox), copied as the kit asks.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    aggregate TEXT NOT NULL,
    seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    subject TEXT NOT NULL,
    envelope TEXT NOT NULL,
    created_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;

-- The inbox of the stock command consumer (platform::events::inbox), and the index the kit's
-- hourly pruning reads (inbox::PRUNE_INDEX).
CREATE TABLE inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX inbox_processed_at ON inbox (processed_at);
