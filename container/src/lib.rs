//! The dare release container: signed-note keys, signed notes and
//! transparency-log checkpoints.
//!
//! - [`keys`]: Ed25519 note signing and verifier keys and trust roots.
//! - [`note`]: C2SP signed notes and tlog checkpoints.

pub mod keys;
pub mod note;
