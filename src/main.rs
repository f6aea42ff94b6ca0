use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fleetmig::app::{self, exit};
use fleetmig::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            // sqlx logs an unrecognized PostgreSQL URL parameter with its value, which may be
            // a credential (`?sslpassword=...`): that one line never shows.
            tracing_subscriber::EnvFilter::from_env("FLEETMIG_LOG")
                .add_directive("sqlx_postgres::options::parse=off".parse().expect("a valid directive")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("starting the tokio runtime");
    let mut stdout = std::io::stdout();
    let result = runtime.block_on(app::run(cli, &mut stdout));
    // Tasks still blocked (a `--confirm` read of stdin, a connection to a server that no
    // longer answers) must not keep the process alive once the command is done.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {}", fleetmig::error::render(&err));
            ExitCode::from(exit::of_error(&err))
        }
    }
}
