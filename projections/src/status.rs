//! Each projector's state as operators see it: position, lag, failures, rebuilds and leader.

use sqlx::PgPool;

use crate::log;
use crate::Position;

/// One projector's state, as operators see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectorStatus {
    pub name: String,
    pub position: String,
    pub head_position: String,
    /// Events the projector still has to apply.
    pub lag: i64,
    pub status: String,
    pub last_error: Option<String>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// While rebuilding: events applied to the shadow tables and the total to apply.
    pub rebuild: Option<RebuildState>,
    /// The last rebuild that finished (swapped in), if any.
    pub last_rebuild: Option<FinishedRebuild>,
    /// The epoch of the projector's current (or last) leader, bumped at every takeover.
    pub leader_epoch: i64,
    /// When that leader took over.
    pub leader_since: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FinishedRebuild {
    pub finished_at: chrono::DateTime<chrono::Utc>,
    /// Events the rebuild applied, from position zero to the swap.
    pub applied: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RebuildState {
    pub applied: i64,
    pub total: i64,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// When the shadow checkpoint last moved.
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// Set for a rebuild requested over HTTP, which the projector's leader carries out.
    pub requested_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether a process is working on it right now (false between a dead instance and the
    /// leader that takes it over).
    pub running: bool,
}

#[derive(sqlx::FromRow)]
struct CheckpointRow {
    transaction_id: i64,
    position: i64,
    status: String,
    last_error: Option<String>,
    updated_at: chrono::DateTime<chrono::Utc>,
    last_rebuild_finished_at: Option<chrono::DateTime<chrono::Utc>>,
    last_rebuild_events: Option<i64>,
    leader_epoch: i64,
    leader_since: Option<chrono::DateTime<chrono::Utc>>,
}

/// The state of every projector this build knows (a projector that has not run yet shows at
/// position zero).
pub async fn statuses(pool: &PgPool) -> Result<Vec<ProjectorStatus>, sqlx::Error> {
    let head = log::head(pool).await?;
    let mut out = Vec::new();
    for projector in crate::all_projectors() {
        let row: Option<CheckpointRow> = sqlx::query_as(
            "SELECT transaction_id, position, status, last_error, updated_at, last_rebuild_finished_at,
                    last_rebuild_events, leader_epoch, leader_since
               FROM projection_checkpoints WHERE name = $1",
        )
        .bind(projector.name())
        .fetch_optional(pool)
        .await?;
        let CheckpointRow {
            transaction_id: tx,
            position: pos,
            status,
            last_error,
            updated_at,
            last_rebuild_finished_at,
            last_rebuild_events,
            leader_epoch,
            leader_since,
        } = row.unwrap_or(CheckpointRow {
            transaction_id: 0,
            position: 0,
            status: "stopped".to_owned(),
            last_error: None,
            updated_at: chrono::Utc::now(),
            last_rebuild_finished_at: None,
            last_rebuild_events: None,
            leader_epoch: 0,
            leader_since: None,
        });
        type RebuildRow = (
            i64,
            i64,
            chrono::DateTime<chrono::Utc>,
            chrono::DateTime<chrono::Utc>,
            Option<chrono::DateTime<chrono::Utc>>,
        );
        let rebuild: Option<RebuildRow> = sqlx::query_as(
            "SELECT applied, total, started_at, updated_at, requested_at FROM projection_rebuilds WHERE name = $1",
        )
        .bind(projector.name())
        .fetch_optional(pool)
        .await?;
        let rebuild = match rebuild {
            Some((applied, total, started_at, updated_at, requested_at)) => Some(RebuildState {
                applied,
                total,
                started_at,
                updated_at,
                requested_at,
                running: crate::rebuild::running(pool, projector.name()).await?,
            }),
            None => None,
        };
        let status = if rebuild.is_some() {
            "rebuilding".to_owned()
        } else {
            status
        };
        let position = Position::new(tx, pos);
        out.push(ProjectorStatus {
            name: projector.name().to_owned(),
            position: position.to_string(),
            head_position: head.to_string(),
            lag: log::count_after(pool, position).await?,
            status,
            last_error,
            updated_at,
            rebuild,
            last_rebuild: last_rebuild_finished_at.map(|finished_at| FinishedRebuild {
                finished_at,
                applied: last_rebuild_events.unwrap_or(0),
            }),
            leader_epoch,
            leader_since,
        });
    }
    Ok(out)
}
