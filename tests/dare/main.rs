//! End-to-end tests of the `dare` command line: what a user sees when running
//! the built binary.

mod cli_keys;
mod cli_ls;
mod cli_seal;
#[cfg(unix)] // `dare serve` (the mirror) is Unix-only.
mod cli_serve;
mod cli_verify;
#[cfg(unix)] // `dare serve` (the mirror) is Unix-only.
mod e2e;
mod support;
