//! End-to-end tests of the `dare` command line: what a user sees when running
//! the built binary.

mod cli_json;
mod cli_keys;
mod cli_ls;
mod cli_seal;
mod cli_serve;
mod cli_verify;
mod e2e;
mod support;
