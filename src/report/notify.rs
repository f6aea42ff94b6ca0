//! What a webhook is told, and in which words: the run's start, each wave's end, a wait for
//! the change window, a stop and the finish, as a JSON event or a Slack incoming webhook's text. Pure: the posting is
//! the app's.

use serde_json::json;

use crate::exec::events::{Event, Stamped};
use crate::model::notify::NotifyFormat;
use crate::report::text::{TextReporter, summary_line};

/// One event worth a notification, with the run it belongs to, ready to render per format.
#[derive(Debug, Clone)]
pub struct Notice {
    /// The event's name, for messages about a post that failed.
    pub event: &'static str,
    json: String,
    text: String,
}

impl Notice {
    pub fn body(&self, format: NotifyFormat) -> String {
        match format {
            NotifyFormat::Json => self.json.clone(),
            NotifyFormat::Slack => json!({ "text": self.text }).to_string(),
        }
    }
}

/// Follows a run's events and picks the few a person wants pushed to them; remembers the
/// run's id and command, which later events do not repeat.
pub struct Notices {
    fleet: String,
    run_id: String,
    command: String,
    text: TextReporter,
}

impl Notices {
    /// `fleet`: the fleet file, to tell runs of several fleets apart in one channel.
    pub fn new(fleet: &str) -> Notices {
        Notices {
            fleet: fleet.to_owned(),
            run_id: String::new(),
            command: String::new(),
            text: TextReporter::with_timestamps(0),
        }
    }

    /// The notice `stamped` makes, if it makes one. Every event must pass, in order.
    pub fn on(&mut self, stamped: &Stamped) -> Option<Notice> {
        let line = self.text.line(&stamped.event);
        let (event, line) = match &stamped.event {
            Event::RunStarted {
                run_id,
                command,
                target,
                tenants,
            } => {
                self.run_id = run_id.clone();
                self.command = command.clone();
                let target = target.map(|t| format!(", target {t}")).unwrap_or_default();
                ("run_started", format!("started on {tenants} tenant(s){target}"))
            }
            Event::WaveFinished { wave, summary } => (
                "wave_finished",
                format!("wave {wave} finished: {}", summary_line(summary)),
            ),
            Event::Stopping { .. } => ("stopping", line?),
            // The run pauses, perhaps for hours: whoever watches the channel should know why.
            Event::WindowWait { .. } => ("window_wait", line?),
            // A host cut off is news for whoever watches the rollout.
            Event::HostCutOff { .. } => ("host_cut_off", line?),
            Event::HostRestored { .. } => ("host_restored", line?),
            Event::RunFinished { stop_reason, .. } => {
                ("run_finished", format!("{} (stop reason: {stop_reason})", line?))
            }
            _ => return None,
        };
        let mut doc = serde_json::to_value(&stamped.event).expect("events serialize");
        let fields = doc.as_object_mut().expect("events are JSON objects");
        fields.insert("source".into(), json!("fleetmig"));
        fields.insert("run_id".into(), json!(self.run_id));
        fields.insert("command".into(), json!(self.command));
        fields.insert("fleet".into(), json!(self.fleet));
        fields.insert("ts_ms".into(), json!(stamped.at_ms));
        fields.insert("text".into(), json!(line));
        Some(Notice {
            event,
            json: doc.to_string(),
            text: format!("fleetmig `{}` ({}, {}): {line}", self.run_id, self.command, self.fleet),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::policy::StopReason;
    use crate::model::run::Summary;

    fn stamped(event: Event) -> Stamped {
        Stamped { at_ms: 1_000, event }
    }

    #[test]
    fn start_waves_stop_and_finish_are_told_and_nothing_else() {
        let mut notices = Notices::new("tenants.yaml");
        let start = notices
            .on(&stamped(Event::RunStarted {
                run_id: "r1".into(),
                command: "up".into(),
                target: None,
                tenants: 3,
            }))
            .unwrap();
        let doc: serde_json::Value = serde_json::from_str(&start.body(NotifyFormat::Json)).unwrap();
        assert_eq!(doc["text"], "started on 3 tenant(s)");
        assert_eq!(
            (doc["event"].as_str(), doc["run_id"].as_str()),
            (Some("run_started"), Some("r1"))
        );
        assert_eq!(doc["tenants"], 3);
        let summary = Summary {
            tenants: 3,
            succeeded: 3,
            changed: 3,
            ..Summary::default()
        };
        let wave = notices
            .on(&stamped(Event::WaveFinished {
                wave: 1,
                summary: summary.clone(),
            }))
            .unwrap();
        let slack: serde_json::Value = serde_json::from_str(&wave.body(NotifyFormat::Slack)).unwrap();
        let text = slack["text"].as_str().unwrap();
        assert!(
            text.starts_with("fleetmig `r1` (up, tenants.yaml): wave 1 finished: "),
            "{text}"
        );
        assert_eq!(slack.as_object().unwrap().len(), 1, "{slack}");
        let end = notices.on(&stamped(Event::RunFinished {
            summary,
            stop_reason: StopReason::Completed,
        }));
        let end: serde_json::Value = serde_json::from_str(&end.unwrap().body(NotifyFormat::Json)).unwrap();
        assert_eq!(
            (end["event"].as_str(), end["run_id"].as_str()),
            (Some("run_finished"), Some("r1"))
        );
        assert!(notices.on(&stamped(Event::RollbackStarted { tenants: 1 })).is_none());
        let wait = notices.on(&stamped(Event::WindowWait {
            wave: 2,
            window: "Mon-Fri 02:00-05:00 Europe/Copenhagen".into(),
            opens_at: "2026-12-04T02:00:00+01:00".into(),
            opens_at_ms: 0,
        }));
        let wait: serde_json::Value = serde_json::from_str(&wait.unwrap().body(NotifyFormat::Json)).unwrap();
        assert_eq!(
            (wait["event"].as_str(), wait["run_id"].as_str()),
            (Some("window_wait"), Some("r1"))
        );
    }
}
