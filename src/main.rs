//! `dare`: publish, mirror and update software through signed, append-only
//! release containers. This binary only parses flags, calls one library
//! function per command and turns errors into one line and an exit code.

mod cmd;
mod report;

use std::process::ExitCode;

use clap::Parser;

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
            if json {
                // An updater failure also says which defence refused it.
                let kind = e.chain().find_map(|c| c.downcast_ref::<dare_updater::UpdateError>()).map(|u| u.kind());
                report::print_json(&serde_json::json!({ "status": "error", "error": message, "kind": kind }));
            }
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
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
