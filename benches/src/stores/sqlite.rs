//! SQLite (bundled) in WAL mode with `synchronous=FULL` — every commit `fsync`s the WAL file,
//! so an acknowledged row survives power loss, as gridlog's does — behind a group-commit
//! front, so it batches concurrent callers the way gridlog does.
//!
//! The front: a caller queues its rows under a mutex and takes a ticket. If no commit is
//! running, it becomes the leader: it takes *every* queued row, runs one transaction for all
//! of them, publishes the last ticket it covered, and wakes the waiters. Rows queued while a
//! transaction runs wait for the next one, whose leader is one of their own callers. This is
//! gridlog's "batches grow while a sync runs" on top of SQLite.

use std::io;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};

use rusqlite::Connection;

use super::{Payload, Store};

#[derive(Debug, Default)]
struct Queue {
    /// Rows waiting for a transaction, back to back.
    rows: Vec<Payload>,
    /// Tickets handed out so far (one per call).
    issued: u64,
    /// Every ticket up to this one is committed.
    committed: u64,
    /// A leader is running a transaction.
    leading: bool,
    /// A failed commit: the store refuses everything after it.
    failed: Option<String>,
}

/// SQLite with a group-commit front.
#[derive(Debug)]
pub struct SqliteStore {
    queue: Mutex<Queue>,
    committed_changed: Condvar,
    /// Only the leader of the moment uses the connection; the mutex is never contended.
    conn: Mutex<Connection>,
}

fn sql_err(e: rusqlite::Error) -> io::Error {
    io::Error::other(e)
}

impl SqliteStore {
    /// Creates the database `dir/log.sqlite` with one table of records.
    pub fn open(dir: &Path) -> io::Result<SqliteStore> {
        let conn = Connection::open(dir.join("log.sqlite")).map_err(sql_err)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
            .map_err(sql_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(io::Error::other(format!(
                "SQLite refused WAL mode (journal_mode is {mode})"
            )));
        }
        conn.execute_batch(
            "PRAGMA synchronous=FULL;
             CREATE TABLE log (offset INTEGER PRIMARY KEY, record BLOB NOT NULL);",
        )
        .map_err(sql_err)?;
        let synchronous: i64 = conn
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .map_err(sql_err)?;
        // 2 is FULL.
        if synchronous != 2 {
            return Err(io::Error::other(format!(
                "SQLite synchronous is {synchronous}, not FULL (2)"
            )));
        }
        Ok(SqliteStore {
            queue: Mutex::new(Queue::default()),
            committed_changed: Condvar::new(),
            conn: Mutex::new(conn),
        })
    }

    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Inserts `rows` in one transaction and commits it (one WAL `fsync`).
    fn commit_rows(&self, rows: &[Payload]) -> rusqlite::Result<()> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached("INSERT INTO log (record) VALUES (?1)")?;
            for row in rows {
                insert.execute([&row[..]])?;
            }
        }
        tx.commit()
    }

    /// Rows stored, for checks.
    pub fn count(&self) -> io::Result<u64> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        conn.query_row("SELECT count(*) FROM log", [], |row| row.get(0))
            .map_err(sql_err)
    }
}

impl Store for SqliteStore {
    fn name(&self) -> &'static str {
        "SQLite WAL"
    }

    fn append_durable(&self, records: &[Payload]) -> io::Result<()> {
        let mut queue = self.lock_queue();
        queue.rows.extend_from_slice(records);
        queue.issued += 1;
        let ticket = queue.issued;
        let mut batch = Vec::new();
        loop {
            if queue.committed >= ticket {
                return Ok(());
            }
            if let Some(e) = &queue.failed {
                return Err(io::Error::other(e.clone()));
            }
            if queue.leading {
                queue = self
                    .committed_changed
                    .wait(queue)
                    .unwrap_or_else(|e| e.into_inner());
                continue;
            }
            queue.leading = true;
            std::mem::swap(&mut queue.rows, &mut batch);
            let covered = queue.issued;
            drop(queue);
            let result = self.commit_rows(&batch);
            batch.clear();
            queue = self.lock_queue();
            queue.leading = false;
            match result {
                Ok(()) => queue.committed = covered,
                Err(e) => queue.failed = Some(e.to_string()),
            }
            self.committed_changed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::payload;

    #[test]
    fn concurrent_callers_are_committed_in_shared_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        std::thread::scope(|scope| {
            for thread in 0..8 {
                let store = &store;
                scope.spawn(move || {
                    for seq in 0..20 {
                        store
                            .append_durable(&[payload(thread, seq), payload(thread, seq + 1000)])
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(store.count().unwrap(), 8 * 20 * 2);
        let queue = store.lock_queue();
        assert_eq!(queue.committed, queue.issued);
        assert!(!queue.leading);
        assert!(queue.rows.is_empty());
    }
}
