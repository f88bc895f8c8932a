//! The dare release container.
//!
//! This crate will hold everything that reads or writes container bytes. So
//! far it has the Merkle tree of RFC 6962 / RFC 9162 ([`merkle`]) and the
//! C2SP tlog-tiles arithmetic over it ([`tiles`]).
//!
//! ```
//! use dare_container::merkle::{leaf_hash, verify_inclusion, MemoryTree};
//!
//! let mut tree = MemoryTree::new();
//! for data in [&b"genesis"[..], b"entry 1", b"entry 2"] {
//!     tree.push(leaf_hash(data));
//! }
//! let root = tree.root_at(3)?;
//! let proof = tree.inclusion_proof(1, 3)?;
//! verify_inclusion(1, 3, &leaf_hash(b"entry 1"), &proof, &root)?;
//! # Ok::<(), dare_container::merkle::ProofError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod merkle;
pub mod tiles;
