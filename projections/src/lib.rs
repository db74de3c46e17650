//! Chronicle's read side: the global log position and, as the read side grows, the log reader,
//! the projector runner and the read models.

pub mod position;

pub use position::Position;
