#!/usr/bin/env python3
"""WAL pages (frames) the inbox's enqueue writes per event, for candidate storage layouts.

A model, not the inbox: Python's sqlite3 runs the enqueue SQL of each layout (the same DDL
and statements as hookgate-inbox's schema versions) in transactions of BATCH events, with
random delivery ids as providers send them, and counts the frames the write-ahead log grew
by. With group commit, what an fsync costs the writer grows with the pages it writes
(each frame is a 4 KiB write plus its checksum, and the fsync writes it back), so this is
the number the layout has to bring down. Deterministic, unlike timings on a shared machine.

    python3 crates/hookgate-bench/scripts/wal_pages.py
"""
import hashlib
import os
import random
import sqlite3
import tempfile

HDR = '[["webhook-id","msg_2fc1a7d5b0e94c3e"],["webhook-timestamp","1764999999"]]'
BODY = b"x" * 1024
TTL = 259_200_000

V1 = """
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, dedup_key TEXT NOT NULL,
  scheme TEXT NOT NULL, delivery_id TEXT, event_type TEXT, signed_at INTEGER,
  received_at INTEGER NOT NULL, body BLOB NOT NULL, headers TEXT NOT NULL,
  is_test INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
  due_at INTEGER, lease_token INTEGER, started_at INTEGER, finished_at INTEGER,
  duration_ms INTEGER, last_error TEXT, updated_at INTEGER NOT NULL);
CREATE INDEX events_due ON events(due_at) WHERE due_at IS NOT NULL;
CREATE INDEX events_status ON events(status, finished_at);
CREATE INDEX events_received ON events(received_at);
CREATE INDEX events_delivery ON events(delivery_id);
CREATE INDEX events_type ON events(event_type);
CREATE TABLE dedup (key TEXT PRIMARY KEY, event_id INTEGER, expires_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX dedup_expiry ON dedup(expires_at);
"""

V2 = """
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, dedup_key TEXT NOT NULL,
  scheme TEXT NOT NULL, delivery_id TEXT, event_type TEXT, signed_at INTEGER,
  received_at INTEGER NOT NULL, headers TEXT NOT NULL, body BLOB NOT NULL);
CREATE INDEX events_received ON events(received_at);
CREATE INDEX events_type ON events(event_type);
CREATE TABLE state (id INTEGER PRIMARY KEY, status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, due_at INTEGER, lease_token INTEGER, started_at INTEGER,
  finished_at INTEGER, duration_ms INTEGER, last_error TEXT, is_test INTEGER NOT NULL DEFAULT 0);
CREATE INDEX state_due ON state(due_at) WHERE due_at IS NOT NULL;
CREATE INDEX state_status ON state(status, finished_at);
CREATE TABLE dedup (digest BLOB PRIMARY KEY, event_id INTEGER, expires_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX dedup_expiry ON dedup(expires_at);
"""
V2_NO_QUERY_INDEXES = V2.replace(
    "CREATE INDEX events_received ON events(received_at);", ""
).replace("CREATE INDEX events_type ON events(event_type);", "")
# No dedup B-tree at all: the floor a layout without a random-keyed structure could reach.
V2_NO_DEDUP = V2.split("CREATE TABLE dedup")[0]


def enqueue_v1(c, now, key, delivery):
    if c.execute("SELECT event_id FROM dedup WHERE key=? AND expires_at>?", (key, now)).fetchone():
        return
    c.execute(
        "INSERT INTO events (dedup_key, scheme, delivery_id, event_type, signed_at, received_at,"
        " body, headers, is_test, status, attempts, due_at, updated_at)"
        " VALUES (?,?,?,?,?,?,?,?,0,'received',0,?,?)",
        (key, "standard-webhooks-v1", delivery, None, now, now, BODY, HDR, now, now),
    )
    rid = c.execute("SELECT last_insert_rowid()").fetchone()[0]
    c.execute("INSERT INTO dedup (key, event_id, expires_at) VALUES (?,?,?)", (key, rid, now + TTL))


def enqueue_v2(c, now, key, delivery, dedup=True):
    digest = hashlib.sha256(key.encode()).digest()[:16]
    if dedup and c.execute(
        "SELECT event_id FROM dedup WHERE digest=? AND expires_at>?", (digest, now)
    ).fetchone():
        return
    c.execute(
        "INSERT INTO events (dedup_key, scheme, delivery_id, event_type, signed_at, received_at,"
        " headers, body) VALUES (?,?,?,?,?,?,?,?)",
        (key, "standard-webhooks-v1", delivery, None, now, now, HDR, BODY),
    )
    rid = c.execute("SELECT last_insert_rowid()").fetchone()[0]
    c.execute("INSERT INTO state (id, status, due_at, is_test) VALUES (?,'received',?,0)", (rid, now))
    if dedup:
        c.execute(
            "INSERT INTO dedup (digest, event_id, expires_at) VALUES (?,?,?)",
            (digest, rid, now + TTL),
        )


def frames_per_event(ddl, enqueue, batch, prefill, events=5000, page=4096):
    rng = random.Random(18)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "inbox.db")
        c = sqlite3.connect(path, isolation_level=None)
        c.execute(f"PRAGMA page_size={page}")
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=OFF")  # fsync does not change what is written
        c.executescript(ddl)
        now = 1_764_999_999_000
        done = 0

        def commit(n):
            nonlocal now, done
            c.execute("BEGIN IMMEDIATE")
            for _ in range(n):
                now += 1
                delivery = f"msg_{rng.getrandbits(64):016x}"
                enqueue(c, now, f"standard-webhooks-v1:id:{delivery}", delivery)
                done += 1
            c.execute("COMMIT")

        while done < prefill:
            commit(500)
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        # From here on the log only grows, so its size is what the measured commits wrote.
        c.execute("PRAGMA wal_autocheckpoint=0")
        start = done
        while done < start + events:
            commit(batch)
        frames = os.path.getsize(path + "-wal") / (page + 24)
        c.close()
        return frames / events


LAYOUTS = [
    ("schema 1 (before)", V1, enqueue_v1, 4096),
    ("schema 2 (after)", V2, enqueue_v2, 4096),
    ("schema 2, 8 KiB pages", V2, enqueue_v2, 8192),
    ("schema 2 without the two query indexes", V2_NO_QUERY_INDEXES, enqueue_v2, 4096),
    ("schema 2 without a dedup B-tree (floor)", V2_NO_DEDUP,
     lambda c, now, key, d: enqueue_v2(c, now, key, d, dedup=False), 4096),
]

if __name__ == "__main__":
    print("| layout | events per commit | frames/event, empty inbox | frames/event, 200 k events stored | KiB/event (200 k) |")
    print("|---|---|---|---|---|")
    for name, ddl, enqueue, page in LAYOUTS:
        for batch in (8, 16):
            empty = frames_per_event(ddl, enqueue, batch, 0, page=page)
            full = frames_per_event(ddl, enqueue, batch, 200_000, page=page)
            print(f"| {name} | {batch} | {empty:.2f} | {full:.2f} | {full * page / 1024:.1f} |")
