//! The dare release container: signed-note keys, signed notes and
//! transparency-log checkpoints.
//!
//! - [`keys`]: Ed25519 note signing and verifier keys and trust roots.

pub mod keys;
