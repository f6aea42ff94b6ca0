//! JSON Lines: one event per line, each with the envelope `{"v": 2, "ts_ms": ..., "event": ...}`
//! and the event's fields flat beside it. `docs/events.schema.json` documents every line;
//! `tests/it/json_schema.rs` checks real runs against it.

use std::io::Write;

use serde::Serialize;

use crate::exec::events::{Event, Stamped};

/// The version of the JSON Lines envelope; bumped on any incompatible change. 2: every
/// tenant event is flat (`tenant`, `wave`, ...; `tenant_finished` no longer nests a
/// `report`), `retrying` became `step_retried`, a failure's version is `failed_migration`
/// and a skip's reason sits flat.
pub const JSON_LINES_VERSION: u32 = 2;

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
