//! The diagnostic log: `FLEETMIG_LOG` filter directives, to stderr, coloured only for a
//! person at a terminal.

use std::ffi::OsString;
use std::io::IsTerminal;

/// The environment variable that turns the log on, as tracing filter directives
/// (`debug`, `fleetmig=debug,sqlx=info`). Unset: nothing is logged.
pub const LOG_VAR: &str = "FLEETMIG_LOG";

/// Starts the log on stderr.
pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(
            // sqlx logs an unrecognized PostgreSQL URL parameter with its value, which may be
            // a credential (`?sslpassword=...`): that one line never shows.
            tracing_subscriber::EnvFilter::from_env(LOG_VAR)
                .add_directive("sqlx_postgres::options::parse=off".parse().expect("a valid directive")),
        )
        .with_ansi(colours(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR")))
        .with_writer(std::io::stderr)
        .init();
}

/// Colours (ANSI escapes) only on a terminal, and never when `NO_COLOR` is set to
/// anything but the empty string (<https://no-color.org>): a pipe or a log file gets
/// plain text.
fn colours(stderr_is_terminal: bool, no_color: Option<OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colours(true, None));
        assert!(colours(true, Some("".into())));
        assert!(!colours(true, Some("1".into())));
        assert!(!colours(false, None));
        assert!(!colours(false, Some("".into())));
    }
}
