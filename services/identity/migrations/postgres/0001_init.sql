-- Users and their refresh tokens. Ids are UUIDv7 text, times fixed-width RFC 3339 text.
CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    -- Normalised (trimmed, lowercased) by the service before it gets here.
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    name          TEXT NOT NULL,
    -- Comma-separated roles: `customer`, `admin`.
    roles         TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE refresh_tokens (
    id          TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- Every token rotated from one login shares a family; reuse revokes the family.
    family_id   TEXT NOT NULL,
    -- SHA-256 (hex) of the token: the token itself is never stored.
    token_hash  TEXT NOT NULL UNIQUE,
    expires_at  TEXT NOT NULL,
    used_at     TEXT NULL,
    revoked_at  TEXT NULL,
    created_at  TEXT NOT NULL
);

CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);
