//! Rebuilding a read model without taking it away: the projector replays the whole log into
//! shadow copies of its tables (schema `chronicle_rebuild`) while the live tables keep serving,
//! then, in one transaction that holds the live checkpoint, applies the last events and swaps
//! the shadow tables in. Readers never see an empty or partial read model.
//!
//! Projectors name their tables unqualified, so `SET LOCAL search_path` points them at the
//! shadow schema without any change to them. Progress is checkpointed per batch, so an
//! interrupted rebuild resumes; an advisory lock refuses a second concurrent rebuild.
//!
//! A rebuild requested over HTTP ([`request`]) is a row, not a task: the projector's leader
//! carries it out ([`carry_out_requests`]), so it survives the instance that accepted it. Each
//! shadow batch moves the shadow checkpoint only from where it read it, and the leader's runs
//! carry its epoch, so a deposed leader's rebuild cannot add to its successor's.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool, Row};

use crate::leader::advisory_key;
use crate::log;
use crate::projector::{ProjectionError, Projector};
use crate::Position;

pub const SHADOW_SCHEMA: &str = "chronicle_rebuild";

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("no projector named {0:?}")]
    Unknown(String),
    #[error("a rebuild of {0} is already running")]
    AlreadyRunning(String),
    /// Another instance leads the projector now, or moved the shadow checkpoint meanwhile.
    #[error("another instance took the rebuild over")]
    Fenced,
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Where a rebuild stands, for progress bars and `/admin/projections`.
#[derive(Debug, Clone, Copy)]
pub struct RebuildProgress {
    pub applied: i64,
    pub total: i64,
}

async fn shadow_exists(pool: &PgPool, table: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("{SHADOW_SCHEMA}.{table}"))
        .fetch_one(pool)
        .await
}

/// Creates an empty shadow copy of a live table with the same columns, constraints and index
/// names, so the swapped-in table is indistinguishable from one the migrations made.
async fn create_shadow(conn: &mut PgConnection, table: &str) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("DROP TABLE IF EXISTS {SHADOW_SCHEMA}.{table}"))
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!(
        "CREATE TABLE {SHADOW_SCHEMA}.{table} (LIKE public.{table} INCLUDING ALL EXCLUDING INDEXES EXCLUDING CONSTRAINTS)"
    ))
    .execute(&mut *conn)
    .await?;
    let constraints: Vec<(String, String)> = sqlx::query_as(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
          WHERE conrelid = $1::regclass AND contype IN ('p', 'u', 'c')",
    )
    .bind(format!("public.{table}"))
    .fetch_all(&mut *conn)
    .await?;
    for (name, definition) in &constraints {
        sqlx::query(&format!(
            "ALTER TABLE {SHADOW_SCHEMA}.{table} ADD CONSTRAINT {name} {definition}"
        ))
        .execute(&mut *conn)
        .await?;
    }
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;
    for (name, definition) in indexes {
        if constraints.iter().any(|(c, _)| *c == name) {
            continue;
        }
        let shadow = definition.replace(
            &format!(" ON public.{table} "),
            &format!(" ON {SHADOW_SCHEMA}.{table} "),
        );
        sqlx::query(&shadow).execute(&mut *conn).await?;
    }
    Ok(())
}

async fn rebuild_checkpoint(
    pool: &PgPool,
    name: &str,
) -> Result<Option<(Position, i64)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT transaction_id, position, applied FROM projection_rebuilds WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok((
            Position::new(r.try_get("transaction_id")?, r.try_get("position")?),
            r.try_get("applied")?,
        ))
    })
    .transpose()
}

/// Applies events after `from` into the shadow tables, inside `conn`'s transaction; returns
/// the new position and how many events were applied.
async fn apply_into_shadow(
    conn: &mut PgConnection,
    projector: &dyn Projector,
    from: Position,
    limit: i64,
) -> Result<(Position, usize), RebuildError> {
    sqlx::query(&format!("SET LOCAL search_path TO {SHADOW_SCHEMA}, public"))
        .execute(&mut *conn)
        .await?;
    let events = log::read_after(&mut *conn, from, limit).await?;
    let Some(last) = events.last().map(|e| e.position) else {
        return Ok((from, 0));
    };
    projector.apply(conn, &events).await?;
    sqlx::query("SET LOCAL search_path TO public")
        .execute(&mut *conn)
        .await?;
    Ok((last, events.len()))
}

/// `Fenced` unless the projector's leader is still the one with `epoch` (`None`: not a leader's
/// run, e.g. the CLI's).
async fn check_epoch(
    conn: &mut PgConnection,
    name: &str,
    epoch: Option<i64>,
) -> Result<(), RebuildError> {
    let Some(epoch) = epoch else {
        return Ok(());
    };
    let current: Option<i64> =
        sqlx::query_scalar("SELECT leader_epoch FROM projection_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    if current != Some(epoch) {
        return Err(RebuildError::Fenced);
    }
    Ok(())
}

/// Rebuilds `name` and swaps it in. `batch` events per transaction; `on_progress` after each.
pub async fn rebuild(
    pool: &PgPool,
    database_url: &str,
    name: &str,
    batch: i64,
    on_progress: impl FnMut(RebuildProgress),
) -> Result<RebuildProgress, RebuildError> {
    rebuild_as(pool, database_url, name, batch, None, on_progress).await
}

/// [`rebuild`] as the projector's leader of `epoch`: stops with `Fenced` once it is not.
pub async fn rebuild_as(
    pool: &PgPool,
    database_url: &str,
    name: &str,
    batch: i64,
    epoch: Option<i64>,
    mut on_progress: impl FnMut(RebuildProgress),
) -> Result<RebuildProgress, RebuildError> {
    let projector: Arc<dyn Projector> = crate::all_projectors()
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| RebuildError::Unknown(name.to_owned()))?;
    let mut lock = PgConnection::connect(database_url).await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(advisory_key(&format!("rebuild:{name}")))
        .fetch_one(&mut lock)
        .await?;
    if !locked {
        return Err(RebuildError::AlreadyRunning(name.to_owned()));
    }

    // Resume when a previous rebuild left its shadow tables and got somewhere; else start
    // afresh (a request's new row at position zero may meet an old run's shadow tables).
    let mut resumable = rebuild_checkpoint(pool, name)
        .await?
        .filter(|(position, _)| *position > Position::START);
    for table in projector.tables() {
        if !shadow_exists(pool, table).await? {
            resumable = None;
        }
    }
    let (mut position, mut applied) = match resumable {
        Some(state) => state,
        None => {
            let mut tx = pool.begin().await?;
            for table in projector.tables() {
                create_shadow(&mut tx, table).await?;
            }
            sqlx::query(
                "INSERT INTO projection_rebuilds (name) VALUES ($1)
                 ON CONFLICT (name) DO UPDATE SET transaction_id = 0, position = 0, applied = 0, started_at = now(),
                                                  updated_at = now()",
            )
            .bind(name)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            (Position::START, 0)
        }
    };
    let total = applied + log::count_after(pool, position).await?;
    sqlx::query("UPDATE projection_rebuilds SET total = $2 WHERE name = $1")
        .bind(name)
        .bind(total)
        .execute(pool)
        .await?;

    loop {
        let mut tx = pool.begin().await?;
        check_epoch(&mut tx, name, epoch).await?;
        let (next, count) = apply_into_shadow(&mut tx, projector.as_ref(), position, batch).await?;
        if count == 0 {
            tx.rollback().await?;
            break;
        }
        applied += count as i64;
        // Only from where this run read it: another run that moved it meanwhile wins.
        let moved = sqlx::query(
            "UPDATE projection_rebuilds SET transaction_id = $2, position = $3, applied = $4, updated_at = now()
              WHERE name = $1 AND transaction_id = $5 AND position = $6",
        )
        .bind(name)
        .bind(next.transaction_id)
        .bind(next.position)
        .bind(applied)
        .bind(position.transaction_id)
        .bind(position.position)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved == 0 {
            return Err(RebuildError::Fenced);
        }
        tx.commit().await?;
        position = next;
        on_progress(RebuildProgress {
            applied,
            total: total.max(applied),
        });
    }

    // The swap: holding the live checkpoint stops the live runner between batches; the events
    // that arrived meanwhile go into the shadow tables, which then replace the live ones.
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT 1 FROM projection_checkpoints WHERE name = $1 FOR UPDATE")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    // Under the row's lock: a takeover bumps the epoch on this row, so it cannot slip between.
    check_epoch(&mut tx, name, epoch).await?;
    loop {
        let (next, count) = apply_into_shadow(&mut tx, projector.as_ref(), position, batch).await?;
        if count == 0 {
            break;
        }
        applied += count as i64;
        position = next;
    }
    for table in projector.tables() {
        sqlx::query(&format!("DROP TABLE public.{table}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "ALTER TABLE {SHADOW_SCHEMA}.{table} SET SCHEMA public"
        ))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE projection_checkpoints
            SET transaction_id = $2, position = $3, status = 'running', last_error = NULL, updated_at = now(),
                last_rebuild_finished_at = now(), last_rebuild_events = $4
          WHERE name = $1",
    )
    .bind(name)
    .bind(position.transaction_id)
    .bind(position.position)
    .bind(applied)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM projection_rebuilds WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let _ = lock.close().await;
    let done = RebuildProgress {
        applied,
        total: applied,
    };
    on_progress(done);
    Ok(done)
}

/// Records a rebuild request for the projector's leader to carry out; false when one is already
/// requested or running. A row an interrupted CLI rebuild left behind becomes the request, so
/// the leader resumes it.
pub async fn request(pool: &PgPool, name: &str) -> Result<bool, RebuildError> {
    if !crate::all_projectors().iter().any(|p| p.name() == name) {
        return Err(RebuildError::Unknown(name.to_owned()));
    }
    let running: bool =
        sqlx::query_scalar("SELECT NOT pg_try_advisory_lock($1) OR NOT pg_advisory_unlock($1)")
            .bind(advisory_key(&format!("rebuild:{name}")))
            .fetch_one(pool)
            .await?;
    if running {
        return Ok(false);
    }
    let total = log::count_after(pool, Position::START).await?;
    let recorded: Option<String> = sqlx::query_scalar(
        "INSERT INTO projection_rebuilds (name, total, requested_at) VALUES ($1, $2, now())
         ON CONFLICT (name) DO UPDATE SET requested_at = now()
          WHERE projection_rebuilds.requested_at IS NULL
         RETURNING name",
    )
    .bind(name)
    .bind(total)
    .fetch_optional(pool)
    .await?;
    Ok(recorded.is_some())
}

async fn requested(pool: &PgPool, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM projection_rebuilds WHERE name = $1 AND requested_at IS NOT NULL)",
    )
    .bind(name)
    .fetch_one(pool)
    .await
}

/// How often a leader looks for a requested rebuild.
const REQUEST_POLL: Duration = Duration::from_secs(1);
/// After a failed rebuild, before it is tried again.
const RETRY_FAILED: Duration = Duration::from_secs(5);
const REQUEST_BATCH: i64 = 1000;

/// Carries out the rebuilds requested for `name` while this instance leads it with `epoch`;
/// returns once it does not.
pub async fn carry_out_requests(pool: PgPool, database_url: String, name: &str, epoch: i64) {
    loop {
        let mut pause = REQUEST_POLL;
        if let Ok(true) = requested(&pool, name).await {
            tracing::info!(projector = name, epoch, "carrying out a requested rebuild");
            let rebuilt = rebuild_as(
                &pool,
                &database_url,
                name,
                REQUEST_BATCH,
                Some(epoch),
                |p| crate::measure::rebuild_progress(name, p),
            )
            .await;
            crate::measure::rebuild_ended(name);
            match rebuilt {
                Ok(done) => {
                    tracing::info!(projector = name, applied = done.applied, "rebuild finished")
                }
                // The CLI's rebuild or a deposed leader's still holds the lock: it finishes the
                // request, or lets go of it soon.
                Err(RebuildError::AlreadyRunning(_)) => {}
                Err(RebuildError::Fenced) => return,
                Err(e) => {
                    tracing::error!(projector = name, error = %e, "rebuild failed; retrying");
                    pause = RETRY_FAILED;
                }
            }
        }
        tokio::time::sleep(pause).await;
    }
}

/// Whether some process holds the rebuild lock of `name` right now.
pub async fn running(pool: &PgPool, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks
                         WHERE locktype = 'advisory' AND granted AND objsubid = 1
                           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                           AND ((classid::bigint << 32) | objid::bigint) = $1)",
    )
    .bind(advisory_key(&format!("rebuild:{name}")))
    .fetch_one(pool)
    .await
}
