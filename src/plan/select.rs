//! Which tenants a run takes: `--select` (a tenant is picked when any one of the selectors
//! holds; the selector type itself is data, in `model::selector`) and `--partition`.

use std::str::FromStr;

use crate::model::fleet::Tenant;
pub use crate::model::selector::Selector;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str, labels: &[(&str, &str)], canary: bool) -> Tenant {
        Tenant::for_test(id, labels, canary)
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
