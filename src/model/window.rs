//! Change windows: `Mon-Fri 02:00-05:00 Europe/Copenhagen`, the wall-clock hours in which
//! a rollout may start tenants, and the two questions a run asks of one: is it open at
//! this instant, and when does it open next.
//!
//! Times are wall-clock times in the window's zone, read through the IANA database that
//! jiff bundles (a container without `/usr/share/zoneinfo` reads the same). On the days
//! the clocks change, a time the clock skips (02:30 on the spring change in Europe) is
//! taken as the instant just after the skip, and a time the clock shows twice (02:30 on
//! the autumn change) as its first showing: jiff's `compatible` rule, which is also
//! RFC 5545's. So a window is never skipped for a day, and never starts twice.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;

/// A change window: on each of its days it opens at `start` and closes at `end`, the
/// next day when `end` is not after `start` (`22:00-02:00`).
#[derive(Debug, Clone)]
pub struct Window {
    /// As written, for messages, the ledger and events.
    text: String,
    /// The days it opens on, Monday first.
    days: [bool; 7],
    start: Time,
    end: Time,
    zone: TimeZone,
}

/// A change window that does not parse, saying what was expected.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BadWindow {
    #[error("`{0}` is not a change window: `[DAYS] HH:MM-HH:MM ZONE`, as `Mon-Fri 02:00-05:00 Europe/Copenhagen`")]
    Shape(String),
    #[error("`{0}` is not a day: Mon, Tue, Wed, Thu, Fri, Sat or Sun, a range (Mon-Fri) or a list (Sat,Sun)")]
    Day(String),
    #[error("`{0}` is not a time of day: HH:MM from 00:00 to 23:59 (24:00 as an end)")]
    Time(String),
    #[error("`{0}` opens and closes at the same time: give the hours it is open (00:00-24:00 for a whole day)")]
    Empty(String),
    #[error("`{zone}` is not a time zone of the IANA database (as Europe/Copenhagen, America/New_York or UTC)")]
    Zone {
        zone: String,
        #[source]
        source: jiff::Error,
    },
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl FromStr for Window {
    type Err = BadWindow;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let (days, hours, zone) = match words.as_slice() {
            [hours, zone] => (None, *hours, *zone),
            [days @ .., hours, zone] if !days.is_empty() => (Some(days.join("")), *hours, *zone),
            _ => return Err(BadWindow::Shape(text.to_owned())),
        };
        let days = match days {
            None => [true; 7],
            Some(days) => day_set(&days)?,
        };
        let (start, end) = hours.split_once('-').ok_or_else(|| BadWindow::Shape(text.to_owned()))?;
        let (start, end_text) = (time(start, false)?, end);
        let end = time(end_text, true)?;
        if start == end && end_text != "24:00" {
            return Err(BadWindow::Empty(text.to_owned()));
        }
        let zone = TimeZone::get(zone).map_err(|source| BadWindow::Zone {
            zone: zone.to_owned(),
            source,
        })?;
        Ok(Window {
            text: words.join(" "),
            days,
            start,
            end,
            zone,
        })
    }
}

/// `Mon-Fri`, `Sat,Sun`, `Mon,Wed-Fri`; a range may wrap (`Fri-Mon`).
fn day_set(text: &str) -> Result<[bool; 7], BadWindow> {
    let day = |name: &str| {
        DAYS.iter()
            .position(|d| d.eq_ignore_ascii_case(name))
            .ok_or_else(|| BadWindow::Day(name.to_owned()))
    };
    let mut out = [false; 7];
    for part in text.split(',') {
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (day(from)?, day(to)?);
                let len = (to + 7 - from) % 7;
                for k in 0..=len {
                    out[(from + k) % 7] = true;
                }
            }
            None => out[day(part)?] = true,
        }
    }
    Ok(out)
}

/// `HH:MM`; `24:00` only as an end, where it is the next midnight.
fn time(text: &str, end: bool) -> Result<Time, BadWindow> {
    let bad = || BadWindow::Time(text.to_owned());
    if end && text == "24:00" {
        return Ok(Time::midnight());
    }
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    Time::new(h, m, 0, 0).map_err(|_| bad())
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for Window {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Window {
    /// The window's zone, to show an instant in it.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// The window that opens on `date` (local), as instants, if it opens that day.
    fn on(&self, date: Date) -> Option<(Timestamp, Timestamp)> {
        if !self.days[date.weekday().to_monday_zero_offset() as usize] {
            return None;
        }
        let close_day = if self.end <= self.start {
            date.tomorrow().ok()?
        } else {
            date
        };
        let at = |d: Date, t: Time| self.zone.to_ambiguous_timestamp(d.to_datetime(t)).compatible().ok();
        Some((at(date, self.start)?, at(close_day, self.end)?))
    }

    /// The local dates whose window may hold `t` or open after it, in order: from the day
    /// before (an overnight window opened then) to a week on.
    fn dates_from(&self, t: Timestamp) -> impl Iterator<Item = Date> + '_ {
        let today = t.to_zoned_datetime(self.zone.clone()).date();
        let first = today.yesterday().unwrap_or(today);
        std::iter::successors(Some(first), |d| d.tomorrow().ok()).take(9)
    }

    /// When the window that holds `t` closes, if one does.
    pub fn closes(&self, t: Timestamp) -> Option<Timestamp> {
        self.dates_from(t)
            .filter_map(|d| self.on(d))
            .find(|(open, close)| *open <= t && t < *close)
            .map(|(_, close)| close)
    }

    pub fn is_open(&self, t: Timestamp) -> bool {
        self.closes(t).is_some()
    }

    /// `t` when the window is open then, else the instant it next opens. `None` only at
    /// the ends of the time jiff can tell (years -9999 and 9999).
    pub fn next_open(&self, t: Timestamp) -> Option<Timestamp> {
        if self.is_open(t) {
            return Some(t);
        }
        self.dates_from(t)
            .filter_map(|d| self.on(d))
            .map(|(open, _)| open)
            .find(|open| *open > t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(text: &str) -> Window {
        text.parse().unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    const CPH: &str = "Europe/Copenhagen";

    #[test]
    fn weekdays_in_winter_and_summer() {
        let win = w(&format!("Mon-Fri 02:00-05:00 {CPH}"));
        // Wed 14 Jan 2026, CET (UTC+1): 02:00-05:00 local is 01:00-04:00Z.
        assert!(!win.is_open(at("2026-01-14T00:59:59Z")));
        assert!(win.is_open(at("2026-01-14T01:00:00Z")));
        assert_eq!(win.closes(at("2026-01-14T02:00:00Z")), Some(at("2026-01-14T04:00:00Z")));
        assert!(!win.is_open(at("2026-01-14T04:00:00Z")));
        assert_eq!(
            win.next_open(at("2026-01-14T05:00:00Z")),
            Some(at("2026-01-15T01:00:00Z"))
        );
        // Friday after the window: next Monday.
        assert_eq!(
            win.next_open(at("2026-01-16T12:00:00Z")),
            Some(at("2026-01-19T01:00:00Z"))
        );
        // Wed 1 Jul 2026, CEST (UTC+2).
        assert!(win.is_open(at("2026-07-01T00:00:00Z")));
        assert!(!win.is_open(at("2026-07-01T03:00:00Z")));
        let inside = at("2026-07-01T01:00:00Z");
        assert_eq!(win.next_open(inside), Some(inside));
    }

    #[test]
    fn the_spring_change_starts_the_window_when_the_clock_reaches_it() {
        // Sun 29 Mar 2026: 02:00 CET becomes 03:00 CEST, so 02:00 never shows; the
        // window opens at 03:00 CEST (01:00Z) and closes at 05:00 CEST (03:00Z).
        let win = w(&format!("Sun 02:00-05:00 {CPH}"));
        assert!(!win.is_open(at("2026-03-29T00:59:00Z")));
        assert_eq!(
            win.next_open(at("2026-03-29T00:30:00Z")),
            Some(at("2026-03-29T01:00:00Z"))
        );
        assert_eq!(win.closes(at("2026-03-29T01:00:00Z")), Some(at("2026-03-29T03:00:00Z")));
        // The Sunday before, in winter time: 01:00Z-04:00Z.
        assert_eq!(win.closes(at("2026-03-22T01:00:00Z")), Some(at("2026-03-22T04:00:00Z")));
    }

    #[test]
    fn the_autumn_change_keeps_the_window_from_its_first_showing() {
        // Sun 25 Oct 2026: 03:00 CEST becomes 02:00 CET, so 02:00-03:00 shows twice. The
        // window opens at the first 02:00 (00:00Z) and closes at 05:00 CET (04:00Z): four
        // hours of real time.
        let win = w(&format!("Sun 02:00-05:00 {CPH}"));
        assert!(!win.is_open(at("2026-10-24T23:59:00Z")));
        assert!(win.is_open(at("2026-10-25T00:00:00Z")));
        assert!(
            win.is_open(at("2026-10-25T01:30:00Z")),
            "the second 02:30 is inside too"
        );
        assert_eq!(win.closes(at("2026-10-25T00:00:00Z")), Some(at("2026-10-25T04:00:00Z")));
    }

    #[test]
    fn overnight_windows_belong_to_the_day_they_open() {
        let win = w(&format!("Fri 22:00-02:00 {CPH}"));
        // Fri 16 Jan 2026 22:00 CET = 21:00Z, to Sat 02:00 CET = 01:00Z.
        assert!(win.is_open(at("2026-01-16T21:00:00Z")));
        assert!(
            win.is_open(at("2026-01-17T00:30:00Z")),
            "Saturday 01:30, from Friday's window"
        );
        assert!(!win.is_open(at("2026-01-17T01:00:00Z")));
        assert_eq!(
            win.next_open(at("2026-01-17T01:00:00Z")),
            Some(at("2026-01-23T21:00:00Z"))
        );
        // Thursday night is not Friday's.
        assert!(!win.is_open(at("2026-01-15T22:00:00Z")));
        // Every night, across the spring change (Sat 28 Mar 22:00 CET to Sun 02:00, which
        // the clock skips: the window runs on to 03:00 CEST = 01:00Z).
        let nightly = w("22:00-02:00 Europe/Copenhagen");
        assert_eq!(
            nightly.closes(at("2026-03-28T23:00:00Z")),
            Some(at("2026-03-29T01:00:00Z"))
        );
    }

    #[test]
    fn day_lists_ranges_and_whole_days() {
        let weekend = w("Sat,Sun 10:00-12:00 UTC");
        // Mon 12 Jan 2026: next Saturday the 17th.
        assert_eq!(
            weekend.next_open(at("2026-01-12T11:00:00Z")),
            Some(at("2026-01-17T10:00:00Z"))
        );
        assert!(weekend.is_open(at("2026-01-18T11:59:59Z")));
        let wrapping = w("fri-mon 00:00-24:00 UTC");
        for (day, open) in [("12", true), ("13", false), ("15", false), ("16", true), ("18", true)] {
            assert_eq!(wrapping.is_open(at(&format!("2026-01-{day}T23:59:00Z"))), open, "{day}");
        }
        let all = w("00:00-24:00 UTC");
        assert!(all.is_open(at("2026-01-14T00:00:00Z")) && all.is_open(at("2026-01-14T23:59:59Z")));
        assert_eq!(
            w("Mon,Wed-Thu 01:00-02:00 UTC").days,
            [true, false, true, true, false, false, false]
        );
    }

    #[test]
    fn bad_windows_say_what_was_expected() {
        let cases = [
            ("02:00-05:00", "is not a change window"),
            ("Mon-Fri 02:00 Europe/Copenhagen", "is not a change window"),
            ("Mo-Fr 02:00-05:00 UTC", "`Mo` is not a day"),
            ("Mon-Fri 2:00-05:00 UTC", "`2:00` is not a time of day"),
            ("Mon-Fri 02:00-25:00 UTC", "`25:00` is not a time of day"),
            ("Mon 24:00-05:00 UTC", "`24:00` is not a time of day"),
            ("Mon 02:00-02:00 UTC", "opens and closes at the same time"),
            (
                "Mon-Fri 02:00-05:00 Europe/Copenhage",
                "`Europe/Copenhage` is not a time zone",
            ),
            ("", "is not a change window"),
        ];
        for (text, expected) in cases {
            let err = text.parse::<Window>().unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
        assert_eq!(w("  Mon-Fri   02:00-05:00 UTC ").to_string(), "Mon-Fri 02:00-05:00 UTC");
    }
}
