//! What a user of `dare publish`, `seal`, `extract`, `verify` and `ls` sees:
//! the built binary run on real files, its exit codes, stdout and stderr,
//! and a publish killed at many moments.

mod crash;
mod publish;
mod support;
