//! JSON Lines: one event per line, each with the envelope `{"v": 1, "event": ...}`.

use std::io::Write;

use serde::Serialize;

use crate::exec::events::Event;

/// The version of the JSON Lines envelope; bumped on any incompatible change.
pub const JSON_LINES_VERSION: u32 = 1;

#[derive(Serialize)]
struct Envelope<'a> {
    v: u32,
    #[serde(flatten)]
    event: &'a Event,
}

/// Writes one event as one line.
pub fn write_event(out: &mut dyn Write, event: &Event) -> std::io::Result<()> {
    serde_json::to_writer(
        &mut *out,
        &Envelope {
            v: JSON_LINES_VERSION,
            event,
        },
    )?;
    out.write_all(b"\n")
}
