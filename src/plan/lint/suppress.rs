//! `-- fleetmig: allow <rule-id> <reason>`: a comment that silences one rule on the next
//! statement, with the reason shown in the output. One without a reason, or naming no
//! rule fleetmig has, silences nothing and is itself a finding.

use super::facts::Hit;
use crate::model::lint::Rule;

/// A well-formed `allow` comment.
#[derive(Debug, Clone)]
pub struct Allow {
    /// Byte offset of the comment.
    pub at: usize,
    pub rule: Rule,
    pub reason: String,
}

/// The file's `allow` comments, and a hit for each malformed one.
pub fn allows(text: &str) -> (Vec<Allow>, Vec<Hit>) {
    let (mut allows, mut bad) = (Vec::new(), Vec::new());
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let at = offset + (line.len() - line.trim_start().len());
        offset += line.len();
        let Some(rest) = allow_text(line) else { continue };
        let rest = rest.trim();
        let (id, reason) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let reason = reason.trim();
        let problem = match (Rule::from_id(id), reason.is_empty()) {
            (None, _) if id.is_empty() => "`allow` names no rule".to_owned(),
            (None, _) => format!("`allow {id}`: no rule has that id"),
            (Some(_), true) => format!("`allow {id}` without a reason: say why the statement is safe"),
            (Some(rule), false) => {
                allows.push(Allow {
                    at,
                    rule,
                    reason: reason.to_owned(),
                });
                continue;
            }
        };
        bad.push(Hit {
            rule: Rule::BadSuppression,
            at,
            message: problem,
        });
    }
    (allows, bad)
}

/// The text after `allow` when `line` is an `-- fleetmig: allow` comment.
pub fn allow_text(line: &str) -> Option<&str> {
    let rest = line.trim().strip_prefix("--")?.trim_start();
    let rest = rest.strip_prefix("fleetmig:")?.trim_start();
    let after = rest.strip_prefix("allow")?;
    (after.is_empty() || after.starts_with(char::is_whitespace)).then_some(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allow_needs_a_known_rule_and_a_reason() {
        let text = "-- fleetmig: allow drop-table the table was never used\n\
                    -- fleetmig: allow drop-table\n\
                    -- fleetmig: allow no-such-rule because\n\
                    -- fleetmig: allowance is prose\n";
        let (allows, bad) = allows(text);
        assert_eq!(allows.len(), 1);
        assert_eq!(allows[0].reason, "the table was never used");
        let messages: Vec<_> = bad.iter().map(|h| h.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "`allow drop-table` without a reason: say why the statement is safe",
                "`allow no-such-rule`: no rule has that id"
            ]
        );
    }
}
