//! JSON Lines: one event per line, each with the envelope `{"v": 1, "event": ...}`.

use std::io::Write;

use serde::Serialize;

use crate::exec::events::{Event, Stamped};

/// The version of the JSON Lines envelope; bumped on any incompatible change.
pub const JSON_LINES_VERSION: u32 = 1;

#[derive(Serialize)]
struct Envelope<'a> {
    v: u32,
    /// When it happened, in milliseconds since the Unix epoch.
    ts_ms: u64,
    #[serde(flatten)]
    event: &'a Event,
}

/// Writes one event as one line.
pub fn write_event(out: &mut dyn Write, stamped: &Stamped) -> std::io::Result<()> {
    let envelope = Envelope {
        v: JSON_LINES_VERSION,
        ts_ms: stamped.at_ms,
        event: &stamped.event,
    };
    serde_json::to_writer(&mut *out, &envelope)?;
    out.write_all(b"\n")
}
