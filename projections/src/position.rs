//! A point in the global log: the writing transaction and the event's `position` column.
//!
//! `position` alone is not commit order (a transaction that started early can commit late), so
//! readers order by `(transaction_id, position)` and a checkpoint is that pair. Clients see it as
//! an opaque token; it is readable only so operators can paste it into the CLI.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub transaction_id: i64,
    pub position: i64,
}

impl Position {
    /// Before the first event.
    pub const START: Position = Position {
        transaction_id: 0,
        position: 0,
    };

    pub const fn new(transaction_id: i64, position: i64) -> Self {
        Self {
            transaction_id,
            position,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.transaction_id, self.position)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a position token")]
pub struct InvalidPosition;

impl FromStr for Position {
    type Err = InvalidPosition;

    fn from_str(token: &str) -> Result<Self, Self::Err> {
        let (tx, pos) = token.trim().split_once('.').ok_or(InvalidPosition)?;
        let transaction_id: i64 = tx.parse().map_err(|_| InvalidPosition)?;
        let position: i64 = pos.parse().map_err(|_| InvalidPosition)?;
        if transaction_id < 0 || position < 0 {
            return Err(InvalidPosition);
        }
        Ok(Self::new(transaction_id, position))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_order_by_transaction_first() {
        let early_commit = Position::new(10, 900);
        let late_commit = Position::new(11, 5);

        assert_eq!(
            early_commit.to_string().parse::<Position>(),
            Ok(early_commit)
        );
        assert!(early_commit < late_commit);
    }

    #[test]
    fn garbage_tokens_are_refused() {
        for token in ["", "12", "a.b", "1.-2", "1.2.3"] {
            assert!(token.parse::<Position>().is_err(), "{token:?}");
        }
    }
}
