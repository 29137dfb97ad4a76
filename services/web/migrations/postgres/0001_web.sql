-- Server-side sessions of the storefront: the browser holds only an opaque cookie whose
-- SHA-256 is `id`; the tokens the public API issued stay here.
CREATE TABLE web_sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    is_admin BIGINT NOT NULL, -- 1 for an admin (the roles at sign-in)
    access_token TEXT NOT NULL,
    -- Unix seconds.
    access_expires_at BIGINT NOT NULL,
    refresh_token TEXT NOT NULL,
    refresh_expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX web_sessions_refresh_expires_at ON web_sessions (refresh_expires_at);
