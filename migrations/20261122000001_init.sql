-- userdb schema, shared by SQLite and PostgreSQL (the SQL is the common dialect of both).

-- The single global revision counter; every write transaction bumps it first.
CREATE TABLE gw_revision (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision BIGINT  NOT NULL
);
INSERT INTO gw_revision (id, revision) VALUES (1, 0);

-- Tenants, listeners, clusters and routes. `spec` is the validated, normalized spec as JSON.
CREATE TABLE gw_objects (
    kind             TEXT   NOT NULL,
    tenant           TEXT   NOT NULL,
    name             TEXT   NOT NULL,
    spec             TEXT   NOT NULL,
    labels           TEXT   NOT NULL DEFAULT '{}',
    resource_version BIGINT NOT NULL,
    created_revision BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (kind, tenant, name)
);
CREATE INDEX gw_objects_tenant ON gw_objects (tenant);

-- Registered (API) and discovered (Kubernetes) endpoints; static ones live in cluster specs.
CREATE TABLE gw_endpoints (
    tenant           TEXT   NOT NULL,
    cluster          TEXT   NOT NULL,
    address          TEXT   NOT NULL,
    port             BIGINT NOT NULL,
    weight           BIGINT NOT NULL,
    metadata         TEXT   NOT NULL DEFAULT '{}',
    source           TEXT   NOT NULL,
    ttl_ms           BIGINT,
    expires_at       BIGINT,
    registered_at    BIGINT NOT NULL,
    resource_version BIGINT NOT NULL,
    healthy          BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant, cluster, address, port)
);
CREATE INDEX gw_endpoints_expires ON gw_endpoints (expires_at);

-- What changed at each revision; lets replicas and watchers catch up.
CREATE TABLE gw_changes (
    revision BIGINT NOT NULL,
    kind     TEXT   NOT NULL,
    tenant   TEXT   NOT NULL,
    name     TEXT   NOT NULL,
    op       TEXT   NOT NULL,
    at       BIGINT NOT NULL
);
CREATE INDEX gw_changes_revision ON gw_changes (revision);
