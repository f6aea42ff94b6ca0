use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fleetmig::app::{self, exit};
use fleetmig::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    fleetmig::logging::init();
    let runtime = tokio::runtime::Runtime::new().expect("starting the tokio runtime");
    let mut stdout = std::io::stdout();
    let result = runtime.block_on(app::run(cli, &mut stdout));
    // Tasks still blocked (a `--confirm` read of stdin, a connection to a server that no
    // longer answers) must not keep the process alive once the command is done.
    runtime.shutdown_timeout(Duration::from_millis(500));
    if let Err(err) = &result {
        if !exit::is_closed_output(err) {
            eprintln!("error: {}", fleetmig::error::render(err));
        }
    }
    ExitCode::from(exit::code(&result))
}
