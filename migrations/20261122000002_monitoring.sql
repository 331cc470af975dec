-- The monitoring chain: events, per-minute stats rollups, access logs, endpoint state reported
-- by proxies, alerts and webhook deliveries. Shared by SQLite and PostgreSQL.

CREATE TABLE gw_events (
    id         TEXT   PRIMARY KEY,
    at         BIGINT NOT NULL,
    kind       TEXT   NOT NULL,
    severity   TEXT   NOT NULL,
    tenant     TEXT   NOT NULL,
    object     TEXT   NOT NULL,
    node       TEXT   NOT NULL,
    message    TEXT   NOT NULL,
    attributes TEXT   NOT NULL DEFAULT '{}'
);
CREATE INDEX gw_events_at ON gw_events (at);

-- One row per time bucket (`--rollup-resolution`, default one minute) and object; counters are
-- added to by every ingesting replica.
-- b00..b15 count requests per latency bucket (upper bounds in ms: 1 2 5 10 25 50 100 250 500
-- 1000 2500 5000 10000 30000 60000 +inf).
CREATE TABLE gw_rollups (
    bucket          BIGINT NOT NULL,
    kind            TEXT   NOT NULL,
    tenant          TEXT   NOT NULL,
    name            TEXT   NOT NULL,
    requests        BIGINT NOT NULL DEFAULT 0,
    s1xx            BIGINT NOT NULL DEFAULT 0,
    s2xx            BIGINT NOT NULL DEFAULT 0,
    s3xx            BIGINT NOT NULL DEFAULT 0,
    s4xx            BIGINT NOT NULL DEFAULT 0,
    s5xx            BIGINT NOT NULL DEFAULT 0,
    upstream_errors BIGINT NOT NULL DEFAULT 0,
    latency_sum_us  BIGINT NOT NULL DEFAULT 0,
    b00 BIGINT NOT NULL DEFAULT 0, b01 BIGINT NOT NULL DEFAULT 0, b02 BIGINT NOT NULL DEFAULT 0,
    b03 BIGINT NOT NULL DEFAULT 0, b04 BIGINT NOT NULL DEFAULT 0, b05 BIGINT NOT NULL DEFAULT 0,
    b06 BIGINT NOT NULL DEFAULT 0, b07 BIGINT NOT NULL DEFAULT 0, b08 BIGINT NOT NULL DEFAULT 0,
    b09 BIGINT NOT NULL DEFAULT 0, b10 BIGINT NOT NULL DEFAULT 0, b11 BIGINT NOT NULL DEFAULT 0,
    b12 BIGINT NOT NULL DEFAULT 0, b13 BIGINT NOT NULL DEFAULT 0, b14 BIGINT NOT NULL DEFAULT 0,
    b15 BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, kind, tenant, name)
);

CREATE TABLE gw_access_logs (
    id             TEXT   PRIMARY KEY,
    at             BIGINT NOT NULL,
    node           TEXT   NOT NULL,
    request_id     TEXT   NOT NULL,
    client_ip      TEXT   NOT NULL,
    tenant         TEXT   NOT NULL,
    route          TEXT   NOT NULL,
    cluster        TEXT   NOT NULL,
    endpoint       TEXT   NOT NULL,
    method         TEXT   NOT NULL,
    authority      TEXT   NOT NULL,
    path           TEXT   NOT NULL,
    status         BIGINT NOT NULL,
    duration_us    BIGINT NOT NULL,
    upstream_error TEXT   NOT NULL
);
CREATE INDEX gw_access_logs_at ON gw_access_logs (at);

-- Latest breaker and health state of each endpoint as each proxy sees it.
CREATE TABLE gw_endpoint_state (
    node       TEXT   NOT NULL,
    tenant     TEXT   NOT NULL,
    cluster    TEXT   NOT NULL,
    endpoint   TEXT   NOT NULL,
    breaker    TEXT   NOT NULL,
    healthy    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (node, tenant, cluster, endpoint)
);

-- pending -> firing -> resolved; at most one open (pending/firing) alert per rule and scope.
CREATE TABLE gw_alerts (
    id          TEXT   PRIMARY KEY,
    tenant      TEXT   NOT NULL,
    rule        TEXT   NOT NULL,
    metric      TEXT   NOT NULL,
    scope       TEXT   NOT NULL,
    state       TEXT   NOT NULL,
    value       DOUBLE PRECISION NOT NULL,
    threshold   DOUBLE PRECISION NOT NULL,
    started_at  BIGINT NOT NULL,
    fired_at    BIGINT,
    resolved_at BIGINT,
    acked_at    BIGINT,
    acked_by    TEXT   NOT NULL DEFAULT '',
    updated_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX gw_alerts_open ON gw_alerts (tenant, rule, scope) WHERE state IN ('pending', 'firing');
CREATE INDEX gw_alerts_updated ON gw_alerts (updated_at);

CREATE TABLE gw_webhook_deliveries (
    id          TEXT   PRIMARY KEY,
    alert_id    TEXT   NOT NULL,
    status      TEXT   NOT NULL,
    url         TEXT   NOT NULL,
    body        TEXT   NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    state       TEXT   NOT NULL,
    next_at     BIGINT NOT NULL,
    last_status BIGINT,
    last_error  TEXT   NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX gw_webhook_deliveries_due ON gw_webhook_deliveries (state, next_at);
