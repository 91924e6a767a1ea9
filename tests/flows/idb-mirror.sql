-- Schema of the IndexedDB mirror kept by tests/flows/idb-mirror.json (run once per database:
-- psql -f idb-mirror.sql). Idempotent.
--
-- One row per (browser profile, IndexedDB database, object store, key). A change FlowFile from the
-- wasm client (attributes idb.client.id, idb.database, idb.store, idb.key, idb.op, idb.seq; content
-- the record as JSON) is applied only when its idb.seq is newer than what the row holds, so
-- duplicates (at-least-once delivery) change nothing and out-of-order arrivals cannot overwrite a
-- newer state. `delete` leaves a tombstone row (deleted = true, value NULL) that keeps its seq;
-- `clear` raises the store's watermark in idb_mirror_clear and removes the rows older than it; a
-- put older than the watermark is ignored.
--
-- The live mirror: SELECT * FROM idb_mirror WHERE NOT deleted.

CREATE TABLE IF NOT EXISTS idb_mirror (
    client_id  text        NOT NULL,          -- idb.client.id (one per database and browser profile)
    db_name    text        NOT NULL,          -- idb.database
    store      text        NOT NULL,          -- idb.store
    key        text        NOT NULL,          -- idb.key (strings as is, numbers/dates/arrays as JSON)
    value      jsonb,                         -- the record (NULL when deleted)
    seq        bigint      NOT NULL,          -- idb.seq of the change the row reflects
    deleted    boolean     NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, db_name, store, key)
);

CREATE TABLE IF NOT EXISTS idb_mirror_clear (
    client_id text   NOT NULL,
    db_name   text   NOT NULL,
    store     text   NOT NULL,
    seq       bigint NOT NULL,                -- idb.seq of the newest clear() of the store
    PRIMARY KEY (client_id, db_name, store)
);
