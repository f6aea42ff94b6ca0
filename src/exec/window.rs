//! A change window at run time: a tenant starts only while the window is open. Tenants
//! in flight when it closes finish; the others wait, keeping their place in the start
//! order and holding no session, and the wait is announced once per closed spell.
//!
//! The wall clock is an input ([`Clock`]): the binary reads the system's, and tests a
//! clock that follows tokio's paused time from any instant they choose.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;

use crate::exec::events::{Event, Events};
use crate::model::window::Window;

/// Where a run reads the time of day.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A wall clock that starts at a given instant and runs with tokio's clock, so a test on
/// paused time can begin outside a window and watch the run wait for it, in no real time.
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start: Timestamp,
    at: tokio::time::Instant,
}

#[cfg(test)]
impl TokioClock {
    pub fn starting_at(start: Timestamp) -> Self {
        TokioClock {
            start,
            at: tokio::time::Instant::now(),
        }
    }
}

#[cfg(test)]
impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = self.at.elapsed();
        self.start
            .checked_add(jiff::SignedDuration::try_from(elapsed).unwrap_or(jiff::SignedDuration::MAX))
            .unwrap_or(Timestamp::MAX)
    }
}

/// Longest sleep between two looks at the clock while the window is closed: a wall clock
/// set forward (NTP, a suspended host) is noticed within this.
const LOOK_AGAIN: Duration = Duration::from_secs(60);

/// A run's change window and its clock.
#[derive(Debug, Clone)]
pub struct ChangeWindow {
    pub window: Window,
    pub clock: Arc<dyn Clock>,
    /// The opening the run last announced a wait for: every tenant waiting for the same
    /// opening shares one `window_wait`.
    announced: Arc<Mutex<Option<Timestamp>>>,
}

impl ChangeWindow {
    pub fn new(window: Window, clock: Arc<dyn Clock>) -> Self {
        ChangeWindow {
            window,
            clock,
            announced: Arc::default(),
        }
    }

    /// Resolves once the window is open (at once when it is). A closed window is
    /// announced, with its next opening, by the first tenant of `wave` to find it closed.
    pub async fn open(&self, events: &Events, wave: usize) {
        loop {
            let now = self.clock.now();
            // Only past the ends of time jiff tells (year 9999): nothing to wait for.
            let Some(opens) = self.window.next_open(now) else {
                return;
            };
            if opens <= now {
                return;
            }
            self.announce(events, wave, opens);
            let wait = Duration::try_from(opens.duration_since(now)).unwrap_or(LOOK_AGAIN);
            tokio::time::sleep(wait.min(LOOK_AGAIN)).await;
        }
    }

    /// Whether the window is closed now, announcing it if so (for a loop that looks again
    /// on its own schedule rather than waiting here).
    pub fn closed_now(&self, events: &Events, wave: usize) -> bool {
        let now = self.clock.now();
        match self.window.next_open(now) {
            Some(opens) if opens > now => {
                self.announce(events, wave, opens);
                true
            }
            _ => false,
        }
    }

    fn announce(&self, events: &Events, wave: usize, opens: Timestamp) {
        let mut announced = self.announced.lock().expect("never poisoned: no panic while held");
        if *announced == Some(opens) {
            return;
        }
        *announced = Some(opens);
        events.emit(Event::WindowWait {
            wave,
            window: self.window.to_string(),
            opens_at: opens.to_zoned_datetime(self.window.zone().clone()).to_string(),
            opens_at_ms: opens.as_millisecond().max(0) as u64,
        });
    }
}
