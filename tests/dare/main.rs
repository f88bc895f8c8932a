//! End-to-end tests of the `dare` command line, as one test binary: what a
//! user sees when running the built binary. A module per topic and the
//! shared fixtures in `support`; `update_cli` and `publish_cli` keep the few
//! fixtures only they use beside them; `independent` runs the Python reader
//! in `tests/independent/` on what the CLI makes.
//!
//! Run one topic with `cargo test --test dare update_cli::`.

mod cli_encryption;
mod cli_json;
mod cli_keys;
mod cli_ls;
mod cli_seal;
#[cfg(unix)] // `dare serve` (the mirror) is Unix-only.
mod cli_serve;
mod cli_verify;
#[cfg(unix)] // `dare witness` runs in the mirror crate, which is Unix-only.
mod cli_witness;
#[cfg(unix)] // `dare serve` (the mirror) is Unix-only.
mod e2e;
mod independent;
mod private_cli;
mod publish_cli;
mod rotation;
mod self_update;
mod support;
mod update_cli;
mod witness_e2e;
