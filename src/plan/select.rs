//! Tenant selectors: `--select tier=free`, `--select id=acme`, `--select region!=eu,canary=true`.
//!
//! Terms within one selector (comma separated) must all hold; a tenant is picked when any
//! one of the selectors holds. `id` and `canary` are built-in keys, every other key is a
//! label. A value may hold `*` wildcards.

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

/// The tenants any selector picks, in fleet order; all of them when there are no selectors.
pub fn select<'a>(tenants: &'a [Tenant], selectors: &[Selector]) -> Vec<&'a Tenant> {
    tenants
        .iter()
        .filter(|t| selectors.is_empty() || selectors.iter().any(|s| s.matches(t)))
        .collect()
}

/// `--partition K/N`: the share K of N (1-based) of a fleet, by a hash of each tenant's id,
/// as nextest partitions tests. Each tenant is in exactly one share, and a tenant's share
/// depends on its id alone: adding or removing tenants never moves another one, so N
/// runners that know nothing of each other migrate the fleet once between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// 1..=count.
    index: u32,
    count: u32,
}

/// A `--partition` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("partition `{0}` is not K/N with 1 <= K <= N <= 100000 (as 2/4: the second of four shares)")]
pub struct BadPartition(String);

impl FromStr for Partition {
    type Err = BadPartition;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadPartition(text.to_owned());
        let (k, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = k.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        match (1..=count).contains(&index) && count <= 100_000 {
            true => Ok(Partition { index, count }),
            false => Err(bad()),
        }
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Partition {
    /// Share 1 of N: where a job's one-off work (`--canary-only`) runs.
    pub fn is_first(&self) -> bool {
        self.index == 1
    }

    /// Whether `tenant` is in this share: the first 8 bytes of the SHA-256 of its id, as a
    /// big-endian number, modulo N, is K - 1. The same on every machine and in every version.
    pub fn holds(&self, tenant: &Tenant) -> bool {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(tenant.id.as_str().as_bytes());
        let first: [u8; 8] = digest[..8].try_into().expect("a SHA-256 is 32 bytes");
        u64::from_be_bytes(first) % u64::from(self.count) == u64::from(self.index - 1)
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
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::fleet::{Engine, Namespace, TenantId};
    use crate::model::secret::DbUrl;

    fn tenant(id: &str, labels: &[(&str, &str)], canary: bool) -> Tenant {
        Tenant {
            id: TenantId::new(id).unwrap(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            canary,
            engine: Engine::Sqlite,
            url: DbUrl::new(url::Url::parse("sqlite:///x.db").unwrap()),
            namespace: Namespace::default(),
            host: None,
            init_sql: vec![],
            search_path: vec![],
            create_database: false,
            history_compat: None,
        }
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
            select(&fleet, &sels).iter().map(|t| t.id.to_string()).collect()
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

    #[test]
    fn partitions_share_a_fleet_once_and_keep_their_tenants_when_it_grows() {
        let ids: Vec<String> = (0..400).map(|i| format!("t{i:03}")).collect();
        let parts: Vec<Partition> = (1..=4).map(|k| format!("{k}/4").parse().unwrap()).collect();
        let share = |id: &str| {
            let t = tenant(id, &[], false);
            let holding: Vec<usize> = (0..4).filter(|&k| parts[k].holds(&t)).collect();
            assert_eq!(holding.len(), 1, "{id} is in {holding:?}");
            holding[0]
        };
        let before: Vec<usize> = ids.iter().map(|id| share(id)).collect();
        for k in 0..4 {
            let n = before.iter().filter(|&&s| s == k).count();
            assert!((70..=130).contains(&n), "share {k} holds {n} of 400");
        }
        // New tenants take a share of their own; the others stay where they were.
        let _ = (400..500).map(|i| share(&format!("t{i:03}"))).count();
        assert_eq!(ids.iter().map(|id| share(id)).collect::<Vec<_>>(), before);
        // Fixed forever (checked with Python's hashlib): a runner of another version agrees.
        assert_eq!(share("acme"), 0);
        assert_eq!(share("globex"), 3);
        for bad in ["0/4", "5/4", "1/0", "1", "a/b", "1/200000", ""] {
            assert!(bad.parse::<Partition>().is_err(), "{bad}");
        }
        assert_eq!("2/4".parse::<Partition>().unwrap().to_string(), "2/4");
    }
}
