-- API bearer tokens. Only a SHA-256 (hex) of each secret is kept; tokens are not config, so
-- writing them does not bump the revision.
CREATE TABLE gw_tokens (
    name       TEXT   PRIMARY KEY,
    hash       TEXT   NOT NULL UNIQUE,
    role       TEXT   NOT NULL,
    tenant     TEXT   NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);
