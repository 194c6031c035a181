"""Every SQL statement of the PostgreSQL backend, qualified with the ledger's schema.

Kept apart from the backend's logic (ledger.backends.postgres) so each reads on its own;
the semantics (the append lock, the one-statement optimistic append, the triggers)
are explained in that module's docstring.
"""

from __future__ import annotations

from typing import Final

COLUMNS: Final = "seq, ts, actor, reason, source, kind, payload, prev_hash, hash"
ENGINE_GUC: Final = "moltis_ledger.engine"


class Sql:
    """Every statement, qualified with the schema (a validated lowercase identifier)."""

    def __init__(self, schema: str, append_lock: int) -> None:
        s = f'"{schema}"'
        channel = f"ledger_{schema}"
        # Appends serialize on a transaction-level advisory lock of this ledger (taking
        # it writes nothing, unlike a row lock); lock_timeout, a session setting of every
        # pooled connection (_configure), bounds the wait. Under the lock, the head is
        # the event with the highest seq: the log itself, not a copy of it.
        lock = int(append_lock)
        self.lock_wait = f"BEGIN; SELECT pg_advisory_xact_lock({lock})"
        self.lock_try = f"BEGIN; SELECT pg_try_advisory_xact_lock({lock})"
        self.last_event = (f"SELECT seq, hash, ts FROM {s}.ledger_events "
                           "ORDER BY seq DESC LIMIT 1")
        # With the append lock, the head row's lock too: a writer of an older version
        # serializes on that row lock alone (`SELECT ... FOR UPDATE`, insert, move the
        # row), so without it the two would interleave and this one's append guard would
        # fail as if the row had been tampered with. Waiting for that row lock (bounded by
        # lock_timeout) makes a rolling upgrade safe; taking it after the append lock
        # means writers of this version never wait on it for each other. The row read
        # is also what the log's last event is checked against, before any head is
        # handed to the engine. NOWAIT for the non-waiting try.
        self.head_row_wait = f"SELECT seq, hash, ts FROM {s}.ledger_head FOR UPDATE"
        self.head_row_try = f"{self.head_row_wait} NOWAIT"
        # One event: move the head row if it is still the event's parent, insert the
        # event only if it moved, and notify (delivered at COMMIT, only if the append
        # commits). No row back means the head was not the parent: nothing was written.
        # It moves the head row only if it also gets the append lock at once (a writer
        # holding it has read the head and is building on it: then nothing is written).
        # The UPDATE takes the row lock itself; if a writer of an older version (which
        # serializes on that row lock) holds it, it waits for that commit (at most
        # lock_timeout), then re-checks the parent against the new row and writes
        # nothing. Params: the event's columns by name (its parent is seq - 1, prev_hash).
        self.append_one = (
            f"WITH u AS (UPDATE {s}.ledger_head SET seq = %(seq)s, hash = %(hash)s, "
            "ts = %(ts)s WHERE seq = %(seq)s - 1 AND hash = %(prev_hash)s "
            f"AND pg_try_advisory_xact_lock({lock}) RETURNING 1), "
            f"e AS (INSERT INTO {s}.ledger_events ({COLUMNS}) SELECT %(seq)s, %(ts)s, "
            "%(actor)s, %(reason)s, %(source)s, %(kind)s, %(payload)s, %(prev_hash)s, "
            "%(hash)s FROM u RETURNING seq) "
            f"SELECT pg_notify('{channel}', seq::text)::text FROM e "
            # The head moved but no row went in (a foreign trigger returned NULL): fail
            # the whole statement (22012), so the head never moves without its event.
            "UNION ALL SELECT (1 / (SELECT count(*)::int FROM e))::text FROM u "
            "WHERE NOT EXISTS (SELECT 1 FROM e)")
        # The same, also storing the signed head in ledger_meta when the event went in
        # (the signature must not cost the optimistic path its single round trip).
        self.append_one_signed = self.append_one.replace(
            "RETURNING seq) ",
            "RETURNING seq), "
            f"m AS (INSERT INTO {s}.ledger_meta (key, value) SELECT %(meta_key)s, "
            "%(meta_value)s FROM e ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value) ",
            1)
        # One event inside a locked transaction (sent with the rest of the transaction
        # in one pipeline, so every check fails the statement, which aborts the
        # transaction before its COMMIT): as `append_one`, and if the head row was not
        # the event's parent although the log's last event is (the row was moved back
        # or edited, or a writer of an older version appended), ln(0) fails it: 2201E.
        self.append_locked = (
            self.append_one.replace(f" AND pg_try_advisory_xact_lock({lock})", "", 1)
            + " UNION ALL SELECT ln((SELECT count(*) FROM u))::text "
            "WHERE NOT EXISTS (SELECT 1 FROM u)")
        # A batch (copying a ledger), inside a locked transaction.
        self.insert = (f"INSERT INTO {s}.ledger_events ({COLUMNS}) "
                       "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)")
        self.move_head = (f"UPDATE {s}.ledger_head SET seq = %s, hash = %s, ts = %s "
                          "WHERE seq = %s AND hash = %s")
        self.count_range = (f"SELECT count(*) FROM {s}.ledger_events "
                            "WHERE seq BETWEEN %s AND %s")
        self.notify = f"SELECT pg_notify('{channel}', %s)"
        self.head = f"SELECT seq, hash, ts FROM {s}.ledger_head"
        self.select = f"SELECT {COLUMNS} FROM {s}.ledger_events"
        self.record = f"{self.select} WHERE seq = %s"
        self.hash_at = f"SELECT hash FROM {s}.ledger_events WHERE seq = %s"
        self.ts_of = f"SELECT ts FROM {s}.ledger_events WHERE seq = %s"
        self.put_snapshot = (f"INSERT INTO {s}.ledger_snapshots (seq, hash, state) "
                             "VALUES (%s, %s, %s) ON CONFLICT (seq) DO UPDATE "
                             "SET hash = EXCLUDED.hash, state = EXCLUDED.state")
        self.snapshot_at = (f"SELECT seq, hash, state FROM {s}.ledger_snapshots "
                            "WHERE seq <= %s ORDER BY seq DESC LIMIT 1")
        self.snapshot_seqs = f"SELECT seq FROM {s}.ledger_snapshots ORDER BY seq"
        self.drop_snapshots = f"DELETE FROM {s}.ledger_snapshots"
        self.put_secret = (f"INSERT INTO {s}.ledger_secrets (ref, sealed, created_seq) "
                           "VALUES (%s, %s, %s)")
        self.shred = (f"UPDATE {s}.ledger_secrets SET sealed = NULL, shredded_seq = %s "
                      "WHERE ref = %s AND sealed IS NOT NULL")
        self.reseal = (f"UPDATE {s}.ledger_secrets SET sealed = %s "
                       "WHERE ref = %s AND sealed IS NOT NULL")
        cols = "SELECT ref, sealed, created_seq, shredded_seq FROM"
        self.secret = f"{cols} {s}.ledger_secrets WHERE ref = %s"
        self.secrets = f"{cols} {s}.ledger_secrets ORDER BY ref"
        self.set_meta = (f"INSERT INTO {s}.ledger_meta (key, value) VALUES (%s, %s) "
                         "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value")
        self.get_meta = f"SELECT value FROM {s}.ledger_meta WHERE key = %s"
        self.delete_meta = f"DELETE FROM {s}.ledger_meta WHERE key = %s"
        self.meta_items = f"SELECT key, value FROM {s}.ledger_meta ORDER BY key"
        self.seq_bounds = f"SELECT count(*), min(seq), max(seq) FROM {s}.ledger_events"
        self.size = (
            "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0) FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname = ANY(%s)")
        # -- schema ------------------------------------------------------------------
        self.tables = _ddl_tables(s)
        self.functions = _ddl_functions(s)
        on = f"ON {s}.ledger_events"
        refuse = f"EXECUTE FUNCTION {s}.ledger_events_refuse()"
        self.triggers = {
            "ledger_events_no_update":
                f"CREATE TRIGGER ledger_events_no_update BEFORE UPDATE {on} FOR EACH ROW {refuse}",
            "ledger_events_no_delete":
                f"CREATE TRIGGER ledger_events_no_delete BEFORE DELETE {on} FOR EACH ROW {refuse}",
            "ledger_events_no_truncate":
                f"CREATE TRIGGER ledger_events_no_truncate BEFORE TRUNCATE {on} "
                f"FOR EACH STATEMENT {refuse}",
            "ledger_events_gap_free":
                f"CREATE TRIGGER ledger_events_gap_free BEFORE INSERT {on} FOR EACH ROW "
                f"WHEN (current_setting('{ENGINE_GUC}', true) IS DISTINCT FROM 'on') "
                f"EXECUTE FUNCTION {s}.ledger_events_gap_free()",
        }
        self.enable_trigger = f"ALTER TABLE {s}.ledger_events ENABLE TRIGGER " + "{}"
        self.init_head = (
            f"INSERT INTO {s}.ledger_head (id, seq, hash, ts) "
            f"SELECT TRUE, seq, hash, ts FROM {s}.ledger_events ORDER BY seq DESC LIMIT 1 "
            "ON CONFLICT (id) DO NOTHING")
        self.init_empty_head = (f"INSERT INTO {s}.ledger_head (id, seq, hash, ts) "
                                "VALUES (TRUE, 0, %s, 0) ON CONFLICT (id) DO NOTHING")
        self.init_meta = (f"INSERT INTO {s}.ledger_meta (key, value) VALUES "
                          "('format_version', %s), ('ledger_id', %s), ('created_us', %s) "
                          "ON CONFLICT (key) DO NOTHING")
        self.has_head_row = f"SELECT count(*) FROM {s}.ledger_head"


def _ddl_tables(s: str) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS {s}.ledger_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.ledger_events (
    seq       BIGINT PRIMARY KEY CHECK (seq > 0),
    ts        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    reason    TEXT NOT NULL,
    source    TEXT NOT NULL,
    kind      TEXT NOT NULL,
    payload   BYTEA NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash      BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.ledger_head (
    id   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    seq  BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    ts   BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.ledger_snapshots (
    seq   BIGINT PRIMARY KEY,
    hash  BYTEA NOT NULL,
    state BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.ledger_secrets (
    ref          TEXT PRIMARY KEY,
    sealed       BYTEA,
    created_seq  BIGINT NOT NULL,
    shredded_seq BIGINT
);
"""


def _ddl_functions(s: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION {s}.ledger_events_refuse() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'ledger_events is append-only: events are never %',
        CASE TG_OP WHEN 'UPDATE' THEN 'updated' WHEN 'DELETE' THEN 'deleted'
                   ELSE 'truncated' END
        USING ERRCODE = 'integrity_constraint_violation';
END
$fn$;
CREATE OR REPLACE FUNCTION {s}.ledger_events_gap_free() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    -- Move the head only if the new event follows it, in one statement. It waits for
    -- the head row lock like any writer, then re-checks against the row as the other
    -- writer left it.
    UPDATE {s}.ledger_head SET seq = NEW.seq, hash = NEW.hash, ts = NEW.ts
        WHERE seq = NEW.seq - 1 AND hash = NEW.prev_hash;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger_events: event % does not follow the head without a gap '
            '(or does not link to its hash)', NEW.seq
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$fn$;
"""
