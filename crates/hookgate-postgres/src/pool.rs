//! A small pool of connections: a bounded number of clients, reconnected on demand.
//!
//! A broken connection is never handed out twice: a client whose connection closed, or
//! that was dropped in the middle of a transaction, is discarded instead of being put
//! back, and the next checkout connects afresh. That is how the store reconnects by itself
//! after PostgreSQL restarts.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

use crate::Error;

/// The parameters of one statement.
pub(crate) type Params<'a> = [&'a (dyn ToSql + Sync)];

#[derive(Clone)]
pub(crate) struct Pool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    config: tokio_postgres::Config,
    idle: Mutex<Vec<Idle>>,
    permits: Arc<Semaphore>,
    size: usize,
    acquire_timeout: Duration,
    query_timeout: Duration,
}

struct Idle {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.inner.size)
            .field("idle", &self.inner.idle().len())
            .finish_non_exhaustive()
    }
}

impl PoolInner {
    fn idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Pool {
    /// A pool of at most `size` connections made from `config`; a checkout waits at most
    /// `acquire_timeout` (for a free slot and for the connection), a statement at most
    /// `query_timeout` for its answer.
    pub(crate) fn new(
        config: tokio_postgres::Config,
        size: usize,
        acquire_timeout: Duration,
        query_timeout: Duration,
    ) -> Self {
        Pool {
            inner: Arc::new(PoolInner {
                config,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(size)),
                size,
                acquire_timeout,
                query_timeout,
            }),
        }
    }

    /// The driver configuration (for the worker's listening connection).
    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.inner.config
    }

    /// A connection: an idle one that is still open, or a new one.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when no slot frees up or no connection can be made in time,
    /// [`Error::Database`] when the server refuses the connection.
    pub(crate) async fn get(&self) -> Result<Conn, Error> {
        let timeout = self.inner.acquire_timeout;
        let permit = tokio::time::timeout(timeout, self.inner.permits.clone().acquire_owned())
            .await
            .map_err(|_| {
                Error::Unavailable(format!(
                    "all {} connections stayed busy for {timeout:?}",
                    self.inner.size
                ))
            })?
            .map_err(|_| Error::Unavailable("the pool is closed".to_owned()))?;
        let reused = loop {
            let Some(idle) = self.inner.idle().pop() else {
                break None;
            };
            if !idle.client.is_closed() {
                break Some(idle);
            }
        };
        let idle = match reused {
            Some(idle) => idle,
            None => Idle {
                client: connect(&self.inner.config, timeout).await?,
                statements: HashMap::new(),
            },
        };
        Ok(Conn {
            client: Some(idle.client),
            statements: idle.statements,
            in_transaction: false,
            broken: false,
            pool: self.inner.clone(),
            _permit: permit,
        })
    }
}

/// Opens one connection and drives it on a task of its own.
pub(crate) async fn connect(
    config: &tokio_postgres::Config,
    timeout: Duration,
) -> Result<Client, Error> {
    let (client, connection) = tokio::time::timeout(timeout, config.connect(NoTls))
        .await
        .map_err(|_| Error::Unavailable(format!("no connection within {timeout:?}")))??;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "postgres connection closed");
        }
    });
    Ok(client)
}

/// A checked-out connection, with its prepared statements. Goes back to the pool when
/// dropped, unless its connection closed, a transaction is open on it, or the server did
/// not answer in time (a server that hangs must not hang the next caller too).
pub(crate) struct Conn {
    client: Option<Client>,
    statements: HashMap<String, Statement>,
    in_transaction: bool,
    broken: bool,
    pool: Arc<PoolInner>,
    _permit: OwnedSemaphorePermit,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("in_transaction", &self.in_transaction)
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// The client.
    pub(crate) fn client(&self) -> Result<&Client, Error> {
        self.client.as_ref().ok_or_else(given_back)
    }

    async fn statement(&mut self, sql: &str) -> Result<Statement, Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let limit = self.pool.query_timeout;
        let client = self.client.as_ref().ok_or_else(given_back)?;
        let statement = answer(limit, &mut self.broken, client.prepare(sql)).await?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Runs `sql` (prepared once per connection) and returns its rows.
    pub(crate) async fn query(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, Error> {
        let statement = self.statement(sql).await?;
        let limit = self.pool.query_timeout;
        let client = self.client.as_ref().ok_or_else(given_back)?;
        answer(limit, &mut self.broken, client.query(&statement, params)).await
    }

    /// Runs `sql` (prepared once per connection) and returns the rows it affected.
    pub(crate) async fn execute(&mut self, sql: &str, params: &Params<'_>) -> Result<u64, Error> {
        let statement = self.statement(sql).await?;
        let limit = self.pool.query_timeout;
        let client = self.client.as_ref().ok_or_else(given_back)?;
        answer(limit, &mut self.broken, client.execute(&statement, params)).await
    }

    /// Runs a statement without parameters or results (`BEGIN`, `COMMIT`, …).
    async fn batch(&mut self, sql: &str) -> Result<(), Error> {
        let limit = self.pool.query_timeout;
        let client = self.client.as_ref().ok_or_else(given_back)?;
        answer(limit, &mut self.broken, client.batch_execute(sql)).await
    }

    /// Opens a transaction; until [`commit`](Self::commit) or
    /// [`rollback`](Self::rollback), dropping the connection closes it (the server then
    /// rolls the transaction back) instead of returning it to the pool.
    pub(crate) async fn begin(&mut self) -> Result<(), Error> {
        self.in_transaction = true;
        self.batch("BEGIN").await
    }

    /// Opens a transaction for the worker's bookkeeping, whose commit does not wait for
    /// the WAL flush (see [`DEFERRED_COMMIT`](crate::schema::DEFERRED_COMMIT)); one round
    /// trip, as [`begin`](Self::begin).
    pub(crate) async fn begin_deferred(&mut self) -> Result<(), Error> {
        self.in_transaction = true;
        self.batch("BEGIN; SET LOCAL synchronous_commit = off")
            .await
    }

    /// Commits the open transaction.
    pub(crate) async fn commit(&mut self) -> Result<(), Error> {
        self.batch("COMMIT").await?;
        self.in_transaction = false;
        Ok(())
    }

    /// Rolls the open transaction back.
    pub(crate) async fn rollback(&mut self) -> Result<(), Error> {
        self.batch("ROLLBACK").await?;
        self.in_transaction = false;
        Ok(())
    }
}

fn given_back() -> Error {
    Error::Unavailable("connection already given back".to_owned())
}

/// Waits for `answer` up to `limit`; past it the connection is marked `broken` (closed
/// when dropped).
async fn answer<T>(
    limit: Duration,
    broken: &mut bool,
    answer: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, answer).await {
        Ok(result) => Ok(result?),
        Err(_) => {
            *broken = true;
            Err(Error::Unavailable(format!("no answer within {limit:?}")))
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if !self.in_transaction && !self.broken && !client.is_closed() {
                let statements = std::mem::take(&mut self.statements);
                self.pool.idle().push(Idle { client, statements });
            }
        }
    }
}
