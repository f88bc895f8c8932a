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
            let message = format!("{e:#}");
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
