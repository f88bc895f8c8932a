//! `dare`: publish, mirror and update software through signed, append-only
//! release containers. This binary only parses flags, calls one library
//! function per command and turns errors into one line and an exit code.

mod cmd;
mod json;
mod report;
mod witness_client;

use std::process::ExitCode;

use clap::Parser;

/// Exit code for a verification failure or a refused attack (CLI.md).
const EXIT_VERIFICATION: u8 = 3;
/// Exit code for any other failure: bad input, I/O, network.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("DARE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cli.command.default_log_level()));
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).with_target(false).init();
    let json = cli.command.json();
    match cmd::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = one_line(&e);
            let (code, kind) = classify(&e);
            if json {
                report::print_json(&json::Failed { status: "error", error: message.clone(), kind, exit_code: code });
            }
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

/// A verification failure the CLI finds itself (a torn tail, a seal from
/// the future), not through a library error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct VerificationFailed(pub String);

/// The exit code and `--json` kind of a failure: the first library error in
/// the chain that says it is a verification failure makes it 3.
fn classify(e: &anyhow::Error) -> (u8, &'static str) {
    for cause in e.chain() {
        if let Some(u) = cause.downcast_ref::<dare_updater::UpdateError>() {
            // An updater failure also says which defence refused it.
            return (if u.is_verification_failure() { EXIT_VERIFICATION } else { EXIT_FAILURE }, u.kind());
        }
        let verification = if let Some(p) = cause.downcast_ref::<dare_publisher::PublishError>() {
            p.is_verification_failure()
        } else if let Some(c) = cause.downcast_ref::<dare_container::Error>() {
            c.is_verification_failure()
        } else if let Some(v) = cause.downcast_ref::<dare_container::verify::VerifyError>() {
            v.is_integrity()
        } else {
            cause.is::<VerificationFailed>()
        };
        if verification {
            return (EXIT_VERIFICATION, "verification");
        }
    }
    (EXIT_FAILURE, "error")
}

/// The error and its causes on one line, each cause once: a cause whose text
/// its parent already shows (many `Display`s include their source) is not
/// repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
