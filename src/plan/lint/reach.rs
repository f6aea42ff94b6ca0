//! On how many tenants a migration will run, and how many at once per host under the
//! fleet's caps: the least of `-j`, the host's `max_connections` and its pending tenants.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::fleet::{Engine, Host, Tenant};
use crate::model::lint::{HostReach, Reach};
use crate::model::migration::Version;

/// A selected tenant and the versions its history holds; `None`: it could not be read.
#[derive(Debug, Clone)]
pub struct Surveyed<'t> {
    pub tenant: &'t Tenant,
    pub applied: Option<BTreeSet<Version>>,
}

/// Where `version` (of the set `engine`'s tenants run; `None`: every tenant's) is pending.
pub fn reach(
    engine: Option<Engine>,
    version: Version,
    surveyed: &[Surveyed<'_>],
    concurrency: usize,
    hosts: &BTreeMap<String, Host>,
) -> Reach {
    let mut per_host: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut tenants, mut unreachable) = (0, 0);
    for s in surveyed.iter().filter(|s| engine.is_none_or(|e| s.tenant.engine == e)) {
        match &s.applied {
            None => unreachable += 1,
            Some(applied) if !applied.contains(&version) => {
                tenants += 1;
                let (name, cap) = host_of(s.tenant, concurrency, hosts);
                let entry = per_host.entry(name).or_insert((0, cap));
                entry.0 += 1;
            }
            Some(_) => {}
        }
    }
    Reach::Surveyed {
        tenants,
        unreachable,
        hosts: per_host
            .into_iter()
            .map(|(host, (n, cap))| HostReach {
                host,
                tenants: n,
                at_once: n.min(cap).min(concurrency).max(1),
            })
            .collect(),
    }
}

/// The host a tenant counts under, and its cap: a named host and its `max_connections`;
/// else its server (SQLite files together, each one tenant's), capped by `-j`.
fn host_of(t: &Tenant, concurrency: usize, hosts: &BTreeMap<String, Host>) -> (String, usize) {
    match (&t.host, t.engine) {
        (Some(name), _) => {
            let cap = hosts.get(name).map_or(concurrency, |h| h.max_connections as usize);
            (name.clone(), cap)
        }
        (None, Engine::Sqlite) => ("sqlite files".to_owned(), concurrency),
        (None, _) => (t.server_key(), concurrency),
    }
}
