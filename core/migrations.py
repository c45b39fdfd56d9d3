"""Ordered schema migrations with a version table (append only: never edit a released step)."""

from __future__ import annotations

from typing import Any

import psycopg

# An advisory lock key so that two processes starting at once do not migrate twice.
_LOCK_KEY = 0x50555949  # "PUYI"

V1_BANK = """
CREATE TABLE branches (
    code        text PRIMARY KEY,
    name        text NOT NULL,
    parent_code text REFERENCES branches(code) DEFERRABLE INITIALLY DEFERRED,
    level       text NOT NULL CHECK (level IN ('head', 'branch', 'sub_branch')),
    extra       jsonb NOT NULL DEFAULT '{}'
);
-- Every (ancestor, descendant) pair, a branch being its own ancestor: scoping an rm to a
-- subtree is one join instead of a recursive query per question.
CREATE TABLE branch_closure (
    ancestor   text NOT NULL,
    descendant text NOT NULL,
    depth      int  NOT NULL,
    PRIMARY KEY (ancestor, descendant)
);
CREATE INDEX branch_closure_descendant ON branch_closure (descendant);

CREATE TABLE users (
    user_id      text PRIMARY KEY,
    name         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('rm', 'designer', 'risk', 'admin')),
    branch_code  text NOT NULL,
    wecom_userid text UNIQUE,
    extra        jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE products (
    code        text PRIMARY KEY,
    name        text NOT NULL,
    level       text NOT NULL CHECK (level IN ('sellable', 'cluster', 'base', 'atomic')),
    category    text NOT NULL CHECK (category IN ('deposit', 'loan', 'payment', 'intermediary', 'market')),
    segment     text NOT NULL CHECK (segment IN ('retail', 'corporate', 'inclusive', 'interbank', 'all')),
    status      text NOT NULL CHECK (status IN ('designing', 'admission', 'building', 'operating', 'suspended', 'retired')),
    owner_dept  text NOT NULL DEFAULT '',
    launch_date date,
    retire_date date,
    aliases     text[] NOT NULL DEFAULT '{}',
    description text NOT NULL DEFAULT '',
    extra       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX products_level_category ON products (level, category);

CREATE TABLE subjects (
    code text PRIMARY KEY,
    name text NOT NULL
);

-- to_code is a product of the next level down, or (from an atomic product) a subject code.
CREATE TABLE product_links (
    from_code  text NOT NULL,
    to_code    text NOT NULL,
    to_subject boolean NOT NULL DEFAULT false,
    PRIMARY KEY (from_code, to_code)
);
CREATE INDEX product_links_to ON product_links (to_code);

CREATE TABLE product_elements (
    product_code text NOT NULL,
    element      text NOT NULL,
    value        text NOT NULL,
    unit         text NOT NULL DEFAULT '',
    PRIMARY KEY (product_code, element)
);

CREATE TABLE system_codes (
    system       text NOT NULL,
    source_code  text NOT NULL,
    product_code text NOT NULL,
    PRIMARY KEY (system, source_code)
);
CREATE INDEX system_codes_source ON system_codes (source_code);

CREATE TABLE metrics_monthly (
    month            date NOT NULL,
    product_code     text NOT NULL,
    branch_code      text NOT NULL,
    balance          numeric NOT NULL,
    avg_balance      numeric,
    customers        bigint NOT NULL,
    new_customers    bigint,
    lost_customers   bigint,
    volume           numeric,
    interest_income  numeric NOT NULL,
    interest_expense numeric NOT NULL,
    fee_income       numeric NOT NULL,
    opex             numeric,
    provision        numeric,
    npl_balance      numeric,
    overdue_balance  numeric,
    complaints       bigint,
    satisfaction     numeric,
    PRIMARY KEY (month, product_code, branch_code)
);
CREATE INDEX metrics_monthly_product ON metrics_monthly (product_code, month);

CREATE TABLE customers (
    customer_id text PRIMARY KEY,
    name        text NOT NULL,
    segment     text NOT NULL CHECK (segment IN ('retail', 'corporate', 'inclusive')),
    branch_code text NOT NULL,
    id_number   text,
    phone       text,
    extra       jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE holdings (
    month        date NOT NULL,
    customer_id  text NOT NULL,
    product_code text NOT NULL,
    balance      numeric NOT NULL,
    PRIMARY KEY (month, customer_id, product_code)
);
CREATE INDEX holdings_product ON holdings (product_code, month);

CREATE TABLE loans (
    loan_id       text PRIMARY KEY,
    customer_id   text NOT NULL,
    product_code  text NOT NULL,
    branch_code   text NOT NULL,
    amount        numeric NOT NULL,
    balance       numeric NOT NULL,
    rate          numeric,
    start_date    date NOT NULL,
    maturity_date date NOT NULL,
    five_class    text NOT NULL CHECK (five_class IN ('正常', '关注', '次级', '可疑', '损失')),
    overdue_days  int NOT NULL,
    extra         jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX loans_product ON loans (product_code);

CREATE TABLE ftp_curve (
    as_of       date NOT NULL,
    term_months int NOT NULL,
    rate        numeric NOT NULL,
    PRIMARY KEY (as_of, term_months)
);

CREATE TABLE competitor_rates (
    as_of        date NOT NULL,
    bank         text NOT NULL,
    product_type text NOT NULL,
    term_months  int NOT NULL,
    rate         numeric NOT NULL,
    notes        text NOT NULL DEFAULT ''
);

-- The bank's documents as recorded by import; the knowledge base indexes them.
CREATE TABLE documents (
    path           text PRIMARY KEY,
    title          text NOT NULL,
    doc_type       text NOT NULL CHECK (doc_type IN ('manual', 'faq', 'compliance', 'notice', 'other')),
    product_codes  text[] NOT NULL DEFAULT '{}',
    access         text NOT NULL CHECK (access IN ('public', 'internal', 'restricted')),
    effective_date date,
    sha256         text NOT NULL,
    bytes          bigint NOT NULL,
    source_path    text NOT NULL
);

-- Bank-level settings that came with the data (alert_rules.yaml text and the like).
CREATE TABLE bank_files (
    name    text PRIMARY KEY,
    content text NOT NULL,
    sha256  text NOT NULL
);

CREATE TABLE imports (
    id           bigserial PRIMARY KEY,
    folder       text NOT NULL,
    head_office  text NOT NULL,
    content_hash text NOT NULL,
    replaced     boolean NOT NULL DEFAULT false,
    counts       jsonb NOT NULL,
    warnings     jsonb NOT NULL DEFAULT '[]',
    seconds      double precision NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT now()
);
"""

V2_CATALOG_VERSION = """
-- Bumped by any change to the catalogue, so in-memory name indexes know when to reload
-- (imports, and later draft products saved by the element-plan tools).
CREATE TABLE catalog_version (id int PRIMARY KEY CHECK (id = 1), version bigint NOT NULL);
INSERT INTO catalog_version VALUES (1, 0);
CREATE FUNCTION bump_catalog_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE catalog_version SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END $$;
CREATE TRIGGER products_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON products
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_version();
CREATE TRIGGER links_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON product_links
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_version();
CREATE TRIGGER subjects_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON subjects
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_version();
CREATE TRIGGER system_codes_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON system_codes
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_version();
"""

V3_KNOWLEDGE = """
CREATE EXTENSION IF NOT EXISTS vector;

-- What the knowledge base has indexed; `documents` (from import) and `puyi ingest` both feed it.
CREATE TABLE kb_documents (
    path           text PRIMARY KEY,
    source         text NOT NULL CHECK (source IN ('import', 'ingest')),
    title          text NOT NULL,
    doc_type       text NOT NULL CHECK (doc_type IN ('manual', 'faq', 'compliance', 'notice', 'regulation', 'other')),
    product_codes  text[] NOT NULL DEFAULT '{}',
    access         text NOT NULL CHECK (access IN ('public', 'internal', 'restricted')),
    effective_date date,
    sha256         text NOT NULL,
    source_path    text NOT NULL,
    chunks         int NOT NULL,
    embedder       text NOT NULL,
    indexed_at     timestamptz NOT NULL DEFAULT now()
);

-- Filter columns are copied onto each chunk so that access, type, product and date filters sit
-- in the same WHERE as the vector and full-text conditions.
CREATE TABLE kb_chunks (
    id             bigserial PRIMARY KEY,
    doc_path       text NOT NULL REFERENCES kb_documents(path) ON DELETE CASCADE,
    ordinal        int NOT NULL,
    kind           text NOT NULL,
    title          text NOT NULL,
    heading_path   text[] NOT NULL DEFAULT '{}',
    page           int,
    text           text NOT NULL,
    doc_type       text NOT NULL,
    access         text NOT NULL,
    product_codes  text[] NOT NULL DEFAULT '{}',
    effective_date date,
    tokens         tsvector NOT NULL,
    embedding      vector NOT NULL
);
CREATE INDEX kb_chunks_doc ON kb_chunks (doc_path, ordinal);
CREATE INDEX kb_chunks_tokens ON kb_chunks USING gin (tokens);
CREATE INDEX kb_chunks_products ON kb_chunks USING gin (product_codes);

-- The embedder the vectors came from; its HNSW index is built for its dimension by the code.
CREATE TABLE kb_meta (
    id       int PRIMARY KEY CHECK (id = 1),
    embedder text NOT NULL,
    dim      int NOT NULL
);
"""

V4_TERM_STATS = """
-- How many chunks hold each token: the keyword branch weighs query terms by rarity (IDF),
-- which PostgreSQL's ts_rank does not do. Refreshed after every indexing run that changed chunks.
CREATE TABLE kb_terms (
    term text PRIMARY KEY,
    df   int NOT NULL
);
"""

V5_API_TOKENS = """
-- Sign-in tokens for the web chat and the APIs. Only a hash is stored: a leaked table
-- cannot be replayed.
CREATE TABLE api_tokens (
    token_sha256 text PRIMARY KEY,
    user_id      text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked      boolean NOT NULL DEFAULT false
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);
"""

V6_CHANNELS = """
-- Conversations from every channel: who asked what, what was answered, and feedback on it.
CREATE TABLE chat_sessions (
    session_id  text PRIMARY KEY,
    user_id     text NOT NULL,
    channel     text NOT NULL,
    title       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_sessions_user ON chat_sessions (user_id, updated_at DESC);

CREATE TABLE chat_turns (
    turn_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id  text NOT NULL REFERENCES chat_sessions ON DELETE CASCADE,
    user_id     text NOT NULL,
    channel     text NOT NULL,
    question    text NOT NULL,
    route       text NOT NULL,
    answer      text NOT NULL,
    citations   jsonb NOT NULL DEFAULT '[]',
    data        jsonb,
    elapsed_ms  int,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_turns_session ON chat_turns (session_id, turn_id);

CREATE TABLE feedback (
    turn_id     bigint NOT NULL REFERENCES chat_turns ON DELETE CASCADE,
    user_id     text NOT NULL,
    rating      smallint NOT NULL CHECK (rating IN (-1, 1)),
    comment     text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (turn_id, user_id)
);

-- WeCom callbacks: the primary key makes each MsgId handled once, across WeCom's retries,
-- restarts and every replica sharing this database.
CREATE TABLE wecom_inbox (
    msg_id       text PRIMARY KEY,
    from_user    text NOT NULL,
    agent_id     text,
    msg_type     text NOT NULL,
    content      text NOT NULL DEFAULT '',
    received_at  timestamptz NOT NULL DEFAULT now(),
    status       text NOT NULL DEFAULT 'received' CHECK (status IN ('received', 'answered', 'failed')),
    attempts     int NOT NULL DEFAULT 0,
    lease_until  timestamptz,
    answered_at  timestamptz,
    turn_id      bigint,
    last_error   text
);
CREATE INDEX wecom_inbox_pending ON wecom_inbox (received_at) WHERE status = 'received';

-- Messages to push through the WeCom API: idempotent by key, sent in seq order within a group,
-- retried with backoff until sent; a row is never deleted, so nothing is lost.
CREATE TABLE wecom_outbox (
    key              text PRIMARY KEY,
    group_key        text NOT NULL,
    seq              int NOT NULL DEFAULT 0,
    to_users         text[] NOT NULL,
    msg_type         text NOT NULL CHECK (msg_type IN ('markdown', 'textcard', 'text')),
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         int NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_until      timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz
);
CREATE INDEX wecom_outbox_due ON wecom_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX wecom_outbox_group ON wecom_outbox (group_key, seq);
"""

V7_METRICS_ALERTS = """
-- Facts summed over each branch subtree with sub-branches (a head office, a branch): a metric
-- question for the whole bank or a branch reads a few thousand rows here instead of millions of
-- sub-branch rows. Rebuilt with the facts on every import (tools.facts.refresh_rollups). A leaf
-- branch reads metrics_monthly directly. satisfaction is a score, so it is kept as its
-- customer-weighted sum and the customers it covers.
CREATE TABLE metrics_rollup (
    branch_code      text NOT NULL,
    month            date NOT NULL,
    product_code     text NOT NULL,
    balance          numeric,
    avg_balance      numeric,
    customers        numeric,
    new_customers    numeric,
    lost_customers   numeric,
    volume           numeric,
    interest_income  numeric,
    interest_expense numeric,
    fee_income       numeric,
    opex             numeric,
    provision        numeric,
    npl_balance      numeric,
    overdue_balance  numeric,
    complaints       numeric,
    satisfaction_w   numeric,
    satisfaction_n   numeric,
    PRIMARY KEY (branch_code, month, product_code)
);
CREATE TABLE metrics_meta (
    id           int PRIMARY KEY CHECK (id = 1),
    first_month  date,
    latest_month date,
    fact_rows    bigint NOT NULL,
    refreshed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX metrics_monthly_branch ON metrics_monthly (branch_code, month, product_code);
CREATE INDEX holdings_customer ON holdings (customer_id, month);
CREATE INDEX loans_product_class ON loans (product_code, five_class);

-- Alerts: one event per rule, product and month, whatever the number of runs; the evidence is a
-- snapshot taken when it fired, so a later import does not rewrite why it fired.
CREATE TABLE alert_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule          text NOT NULL,
    product_code  text NOT NULL,
    month         date NOT NULL,
    level         text NOT NULL,
    metric        text NOT NULL,
    value         double precision,
    condition     text NOT NULL,
    evidence      jsonb NOT NULL DEFAULT '{}',
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    pushed_at     timestamptz,
    UNIQUE (rule, product_code, month)
);
CREATE INDEX alert_events_product ON alert_events (product_code, month DESC);
CREATE INDEX alert_events_unpushed ON alert_events (id) WHERE pushed_at IS NULL AND active;

CREATE TABLE alert_dispositions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id     bigint NOT NULL REFERENCES alert_events,
    user_id      text NOT NULL,
    disposition  text NOT NULL CHECK (disposition IN ('confirmed', 'false_alarm', 'action_taken')),
    note         text NOT NULL DEFAULT '',
    channel      text NOT NULL DEFAULT 'cli',
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_dispositions_alert ON alert_dispositions (alert_id, created_at);

CREATE TABLE alert_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    month       date,
    rules       jsonb NOT NULL,
    rules_sha   text NOT NULL,
    fired       int NOT NULL,
    new         int NOT NULL,
    seconds     double precision NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now()
);

-- Alert pushes carry a trend chart as a WeCom image message.
ALTER TABLE wecom_outbox DROP CONSTRAINT wecom_outbox_msg_type_check;
ALTER TABLE wecom_outbox ADD CONSTRAINT wecom_outbox_msg_type_check
    CHECK (msg_type IN ('markdown', 'textcard', 'text', 'image'));
"""

V8_PLAN_DRAFTS = """
-- Draft products from element-plan design, in the 创设 (designing) lifecycle status. Kept apart
-- from `products`, which every import replaces: a designer's drafts must survive a data refresh.
CREATE TABLE plan_drafts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code         text NOT NULL UNIQUE,
    name         text NOT NULL,
    status       text NOT NULL DEFAULT 'designing' CHECK (status IN ('designing', 'archived')),
    category     text,
    segment      text,
    request      text NOT NULL,
    requirement  jsonb NOT NULL,
    evidence     jsonb NOT NULL,
    plans        jsonb NOT NULL,
    simulation   jsonb,
    seed         bigint,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX plan_drafts_creator ON plan_drafts (created_by, created_at DESC);
"""

V9_AUDIT = """
-- The audit trail: one row per turn on every channel, refused and failed turns included. Written
-- already masked. Rows are append-only: the triggers below refuse UPDATE, DELETE and TRUNCATE, and
-- no product code path issues them (only the database owner, dropping the trigger, could).
CREATE TABLE audit_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at   timestamptz NOT NULL DEFAULT now(),
    user_id      text NOT NULL,
    role         text,
    scope        text,            -- the asker's branch scope: a branch code, NULL for the whole bank
    scope_label  text,
    channel      text,            -- NULL: no channel (puyi ask --batch, evaluations)
    session_id   text,
    question     text NOT NULL,
    route        text,
    intent       text,
    tool_calls   jsonb NOT NULL DEFAULT '[]',   -- name, arguments and result size; not whole results
    citations    jsonb NOT NULL DEFAULT '[]',   -- chunk ids and titles
    answer       text,
    grounding    jsonb,
    grounding_ok boolean,
    latency_ms   int,
    status       text NOT NULL CHECK (status IN ('answered', 'refused', 'failed')),
    error        text
);
CREATE INDEX audit_log_created ON audit_log (created_at);
CREATE INDEX audit_log_user ON audit_log (user_id, created_at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Questions per user and minute, over every channel and process (core.ratelimit): one upsert per turn.
CREATE TABLE rate_limits (
    user_id  text NOT NULL,
    minute   timestamptz NOT NULL,
    hits     int NOT NULL,
    PRIMARY KEY (user_id, minute)
);
"""

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "bank data contract tables", V1_BANK),
    (2, "catalogue version counter", V2_CATALOG_VERSION),
    (3, "knowledge base chunks with vectors and full text", V3_KNOWLEDGE),
    (4, "token document frequencies for keyword ranking", V4_TERM_STATS),
    (5, "sign-in tokens", V5_API_TOKENS),
    (6, "conversations, feedback, WeCom inbox and outbox", V6_CHANNELS),
    (7, "metric roll-ups, alert events and dispositions, image pushes", V7_METRICS_ALERTS),
    (8, "element-plan drafts", V8_PLAN_DRAFTS),
    (9, "audit trail and per-user rate limits", V9_AUDIT),
]


def current_version(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT coalesce(max(version), 0) AS v FROM schema_migrations"
    ).fetchone()
    return int(_first(row))


def _first(row: Any) -> Any:
    if row is None:
        return None
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


def migrate(conn: psycopg.Connection[Any]) -> list[int]:
    """Apply pending migrations in order, each in its own transaction; return the versions applied."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version int PRIMARY KEY, description text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    conn.commit()
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%(k)s)", {"k": _LOCK_KEY})
        done = {_first(r) for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}
        for version, description, sql in MIGRATIONS:
            if version in done:
                continue
            conn.execute(sql.encode())  # bytes: several statements in one simple-query call
            conn.execute(
                "INSERT INTO schema_migrations (version, description) VALUES (%(v)s, %(d)s)",
                {"v": version, "d": description},
            )
            applied.append(version)
    return applied
