//! Stop requests from outside: Ctrl-C (SIGINT) and SIGTERM, counted together.
//!
//! Kubernetes and systemd stop a process with SIGTERM, then kill it after a grace period,
//! so SIGTERM means what Ctrl-C means: the first stops the run at safe points, the second
//! abandons in-flight work. After the second, the process ends within `GRACE` whatever
//! it is waiting on; a third ends it at once.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::exit;

/// The longest the process lives after a second interrupt. The dispatcher's own bounded
/// work after abandoning (reading where in-flight tenants are, writing the ledger) takes
/// a few seconds at most; this is the backstop when something still blocks.
pub const GRACE: Duration = Duration::from_secs(6);

/// Listens for interrupts while it lives; dropping it stops listening (the handlers stay
/// installed, so a late signal is ignored rather than killing the process mid-report).
pub struct Listener {
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Installs the handlers now (a signal from here on never kills the process outright) and
/// returns the stream of interrupts for the dispatcher.
pub fn listen() -> (mpsc::UnboundedReceiver<()>, Listener) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut signals = Signals::install();
    let task = tokio::spawn(async move {
        let mut count = 0u32;
        while signals.next().await {
            count += 1;
            match count {
                1 => {}
                2 => watchdog(),
                _ => {
                    eprintln!("fleetmig: interrupted a third time: exiting now");
                    std::process::exit(i32::from(exit::FAILED));
                }
            }
            // The dispatcher may be gone already (writing the report): nothing to stop.
            let _ = tx.send(());
        }
    });
    (rx, Listener { task })
}

/// Ends the process `GRACE` after the second interrupt if it is still running.
fn watchdog() {
    std::thread::spawn(|| {
        std::thread::sleep(GRACE);
        eprintln!(
            "fleetmig: still running {GRACE:?} after the second interrupt: exiting now; \
             tenants in flight may show `started` in the ledger (`fleetmig status` reads where they are)"
        );
        std::process::exit(i32::from(exit::FAILED));
    });
}

#[cfg(unix)]
struct Signals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Signals {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    /// Waits for the next SIGINT or SIGTERM; false when neither can arrive any more.
    async fn next(&mut self) -> bool {
        async fn one(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
            match s {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        }
        if self.int.is_none() && self.term.is_none() {
            return false;
        }
        tokio::select! {
            got = one(&mut self.int) => got.is_some(),
            got = one(&mut self.term) => got.is_some(),
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> Self {
        Signals
    }

    async fn next(&mut self) -> bool {
        tokio::signal::ctrl_c().await.is_ok()
    }
}
