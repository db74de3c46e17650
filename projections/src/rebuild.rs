//! Rebuilding a read model without taking it away: the projector replays the whole log into
//! shadow copies of its tables (schema `chronicle_rebuild`) while the live tables keep serving,
//! then, in one transaction that holds the live checkpoint, applies the last events and swaps
//! the shadow tables in. Readers never see an empty or partial read model.
//!
//! Projectors name their tables unqualified, so `SET LOCAL search_path` points them at the
//! shadow schema without any change to them. Progress is checkpointed per batch, so an
//! interrupted rebuild resumes; an advisory lock refuses a second concurrent rebuild.

use std::sync::Arc;

use sqlx::{Connection, PgConnection, PgPool, Row};

use crate::log;
use crate::runner::{advisory_key, ProjectionError, Projector};
use crate::Position;

pub const SHADOW_SCHEMA: &str = "chronicle_rebuild";

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("no projector named {0:?}")]
    Unknown(String),
    #[error("a rebuild of {0} is already running")]
    AlreadyRunning(String),
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

/// Rebuilds `name` and swaps it in. `batch` events per transaction; `on_progress` after each.
pub async fn rebuild(
    pool: &PgPool,
    database_url: &str,
    name: &str,
    batch: i64,
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

    // Resume when a previous rebuild left its shadow tables and checkpoint; else start afresh.
    let mut resumable = rebuild_checkpoint(pool, name).await?;
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
                 ON CONFLICT (name) DO UPDATE SET transaction_id = 0, position = 0, applied = 0, started_at = now()",
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
        let (next, count) = apply_into_shadow(&mut tx, projector.as_ref(), position, batch).await?;
        if count == 0 {
            tx.rollback().await?;
            break;
        }
        applied += count as i64;
        sqlx::query(
            "UPDATE projection_rebuilds SET transaction_id = $2, position = $3, applied = $4, updated_at = now()
              WHERE name = $1",
        )
        .bind(name)
        .bind(next.transaction_id)
        .bind(next.position)
        .bind(applied)
        .execute(&mut *tx)
        .await?;
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
