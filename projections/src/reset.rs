//! Resetting a read model: empty its tables and replay the log from zero.

use sqlx::PgPool;

/// The blunt way back to a clean read model: empties the projector's tables and moves its
/// checkpoint to zero in one transaction; the leading instance then replays the whole log.
/// The read model is empty until it has caught up.
pub async fn reset(pool: &PgPool, name: &str) -> Result<bool, sqlx::Error> {
    let Some(projector) = crate::all_projectors()
        .into_iter()
        .find(|p| p.name() == name)
    else {
        return Ok(false);
    };
    sqlx::query(
        "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .execute(pool)
    .await?;
    let mut tx = pool.begin().await?;
    // The runner locks the checkpoint row before it touches the tables; locking in the same
    // order means a reset waits for a running batch instead of deadlocking with it.
    sqlx::query("SELECT 1 FROM projection_checkpoints WHERE name = $1 FOR UPDATE")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    for table in projector.tables() {
        sqlx::query(&format!("TRUNCATE {table}"))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "UPDATE projection_checkpoints
            SET transaction_id = 0, position = 0, status = 'running', last_error = NULL, updated_at = now()
          WHERE name = $1",
    )
    .bind(name)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}
