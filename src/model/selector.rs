//! Tenant selectors: `tier=free`, `id=acme`, `region!=eu,canary=true`, as `--select`,
//! `--canary` and selector waves take them.
//!
//! Terms within one selector (comma separated) must all hold. `id` and `canary` are
//! built-in keys, every other key is a label. A value may hold `*` wildcards.

use std::str::FromStr;

use crate::model::fleet::Tenant;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    key: String,
    value: String,
    negated: bool,
}

/// One `--select` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    text: String,
    terms: Vec<Term>,
}

/// A selector term that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSelector {
    #[error("selector term `{0}` is not `key=value` or `key!=value`")]
    NotATerm(String),
    #[error("selector term `{0}` needs a key and a value")]
    Incomplete(String),
}

impl FromStr for Selector {
    type Err = BadSelector;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let terms = text
            .split(',')
            .map(|term| {
                let (key, value, negated) = if let Some((k, v)) = term.split_once("!=") {
                    (k, v, true)
                } else if let Some((k, v)) = term.split_once('=') {
                    (k, v, false)
                } else {
                    return Err(BadSelector::NotATerm(term.to_owned()));
                };
                let (key, value) = (key.trim(), value.trim());
                if key.is_empty() || value.is_empty() {
                    return Err(BadSelector::Incomplete(term.to_owned()));
                }
                Ok(Term {
                    key: key.to_owned(),
                    value: value.to_owned(),
                    negated,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Selector {
            text: text.to_owned(),
            terms,
        })
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Selector {
    pub fn matches(&self, tenant: &Tenant) -> bool {
        self.terms.iter().all(|term| {
            let actual = match term.key.as_str() {
                "id" => Some(tenant.id.as_str().to_owned()),
                "canary" => Some(tenant.canary.to_string()),
                key => tenant.labels.get(key).cloned(),
            };
            let hit = actual.is_some_and(|a| wildcard(&term.value, &a));
            hit != term.negated
        })
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn wildcard(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str, labels: &[(&str, &str)], canary: bool) -> Tenant {
        Tenant::for_test(id, labels, canary)
    }

    #[test]
    fn selectors_pick_by_id_label_and_canary() {
        let fleet = [
            tenant("acme", &[("tier", "enterprise"), ("region", "eu")], true),
            tenant("globex", &[("tier", "free"), ("region", "us")], false),
            tenant("initech", &[("tier", "free"), ("region", "eu")], false),
        ];
        let ids = |sel: &[&str]| -> Vec<String> {
            let sels: Vec<Selector> = sel.iter().map(|s| s.parse().unwrap()).collect();
            fleet
                .iter()
                .filter(|t| sels.is_empty() || sels.iter().any(|s| s.matches(t)))
                .map(|t| t.id.to_string())
                .collect()
        };
        assert_eq!(ids(&[]), ["acme", "globex", "initech"]);
        assert_eq!(ids(&["tier=free"]), ["globex", "initech"]);
        assert_eq!(ids(&["tier=free,region=eu"]), ["initech"]);
        assert_eq!(ids(&["id=acme", "id=globex"]), ["acme", "globex"]);
        assert_eq!(ids(&["region!=eu"]), ["globex"]);
        assert_eq!(ids(&["canary=true"]), ["acme"]);
        assert_eq!(ids(&["id=*c*e*"]), ["acme"]);
        assert_eq!(ids(&["id=*t*c*"]), ["initech"]);
        assert_eq!(ids(&["nolabel=x"]), Vec::<String>::new());
        assert!("tier".parse::<Selector>().is_err());
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("a*c", "abc"));
        assert!(wildcard("*", ""));
        assert!(!wildcard("a*c", "ab"));
        assert!(wildcard("a*b*c", "aXbYc"));
        assert!(!wildcard("ab*b", "ab"));
    }
}
