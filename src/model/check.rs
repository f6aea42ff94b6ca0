//! What `fleetmig check` found: per engine, per migration, whether its up, its down and
//! its up again leave the catalog as they should.

use std::time::Duration;

use serde::Serialize;

use crate::model::catalog::Difference;
use crate::model::fleet::Engine;
use crate::model::migration::Version;

/// A migration's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// Up, down and up again ran, and each left the catalog as it should.
    Ok,
    /// No down script, or one that holds no statement: only its up was run.
    Irreversible { empty_down: bool },
    /// The up script failed on the scratch target.
    UpFails { error: String },
    /// The down script failed.
    DownFails { error: String },
    /// The down ran, but the catalog is not what it was before the up.
    DownIncomplete { diff: Vec<Difference> },
    /// The up failed when run again after the down.
    RedoFails { error: String },
    /// The up ran again, but the catalog is not what the first up made.
    RedoDiffers { diff: Vec<Difference> },
    /// Not checked: an earlier migration left the scratch target in a state later ones
    /// cannot be checked from.
    NotChecked,
}

impl Verdict {
    /// The verdict's word, as text and JSON show it.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Irreversible { .. } => "irreversible",
            Verdict::UpFails { .. } => "up-fails",
            Verdict::DownFails { .. } => "down-fails",
            Verdict::DownIncomplete { .. } => "down-incomplete",
            Verdict::RedoFails { .. } => "redo-fails",
            Verdict::RedoDiffers { .. } => "redo-differs",
            Verdict::NotChecked => "not-checked",
        }
    }

    /// Whether this verdict passes: `ok`, and `irreversible` unless `strict`.
    pub fn passes(&self, strict: bool) -> bool {
        match self {
            Verdict::Ok => true,
            Verdict::Irreversible { .. } => !strict,
            _ => false,
        }
    }
}

/// One migration, checked.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationCheck {
    pub version: Version,
    /// `0003_add_email`.
    pub label: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Up, down and up again, scripts and snapshots together.
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub took: Duration,
}

/// One engine's walk through its migration set on a scratch target.
#[derive(Debug, Clone, Serialize)]
pub struct EngineCheck {
    pub engine: Engine,
    /// Where it ran, password hidden: `sqlite (temporary file)`, a URL and database.
    pub scratch: String,
    pub migrations: Vec<MigrationCheck>,
    /// Why the walk could not start or go on, past any one migration (the scratch target
    /// could not be made, a snapshot failed); `None` when it walked to its end.
    pub error: Option<String>,
}

/// Everything `check` found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub strict: bool,
    pub engines: Vec<EngineCheck>,
}

impl CheckReport {
    /// Whether every migration on every engine passes (see [`Verdict::passes`]).
    pub fn passes(&self) -> bool {
        self.engines
            .iter()
            .all(|e| e.error.is_none() && e.migrations.iter().all(|m| m.verdict.passes(self.strict)))
    }
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_counts_irreversible_as_a_failure() {
        let irreversible = Verdict::Irreversible { empty_down: false };
        assert!(Verdict::Ok.passes(true));
        assert!(irreversible.passes(false));
        assert!(!irreversible.passes(true));
        assert!(!Verdict::NotChecked.passes(false));
        assert!(!Verdict::DownIncomplete { diff: vec![] }.passes(false));
    }

    #[test]
    fn a_verdict_serialises_with_its_word() {
        let v = serde_json::to_value(Verdict::RedoFails { error: "boom".into() }).unwrap();
        assert_eq!(v, serde_json::json!({"verdict": "redo-fails", "error": "boom"}));
    }
}
