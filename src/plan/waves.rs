//! Rollout order: canary tenants form the first wave, the rest follow in waves whose
//! cumulative sizes come from a spec such as `1,10%,50%,100%`. Deterministic: fleet order.

use crate::model::fleet::Tenant;
use crate::model::policy::WaveSpec;

/// One wave of a rollout.
#[derive(Debug, Clone)]
pub struct Wave<'a> {
    /// 1-based, in rollout order.
    pub number: usize,
    pub canary: bool,
    pub tenants: Vec<&'a Tenant>,
}

/// Splits the selected tenants into waves: the canaries (by their flag, or by `is_canary`)
/// first, then the rest by `spec`. Empty waves are dropped; the last wave takes whatever
/// the spec leaves.
pub fn waves<'a>(tenants: &[&'a Tenant], is_canary: &dyn Fn(&Tenant) -> bool, spec: &WaveSpec) -> Vec<Wave<'a>> {
    let (canaries, rest): (Vec<&Tenant>, Vec<&Tenant>) = tenants.iter().copied().partition(|t| is_canary(t));
    let mut out = Vec::new();
    if !canaries.is_empty() {
        out.push(Wave {
            number: 1,
            canary: true,
            tenants: canaries,
        });
    }
    let mut taken = 0;
    for size in spec.0.iter().map(|s| s.reach(rest.len())).chain([rest.len()]) {
        if size > taken {
            out.push(Wave {
                number: out.len() + 1,
                canary: false,
                tenants: rest[taken..size].to_vec(),
            });
            taken = size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fleet::{Engine, Namespace, TenantId};
    use crate::model::secret::DbUrl;

    fn fleet(n: usize, canaries: &[usize]) -> Vec<Tenant> {
        (0..n)
            .map(|i| Tenant {
                id: TenantId::new(&format!("t{i:03}")).unwrap(),
                labels: Default::default(),
                canary: canaries.contains(&i),
                engine: Engine::Sqlite,
                url: DbUrl::new(url::Url::parse("sqlite:///x.db").unwrap()),
                namespace: Namespace::default(),
                host: None,
                init_sql: vec![],
                search_path: vec![],
                create_database: false,
                history_compat: None,
            })
            .collect()
    }

    fn sizes(w: &[Wave]) -> Vec<(usize, bool)> {
        w.iter().map(|w| (w.tenants.len(), w.canary)).collect()
    }

    #[test]
    fn canaries_first_then_cumulative_waves() {
        let f = fleet(102, &[5, 50]);
        let refs: Vec<&Tenant> = f.iter().collect();
        let spec: WaveSpec = "1,10%,50%,100%".parse().unwrap();
        let w = waves(&refs, &|t| t.canary, &spec);
        assert_eq!(sizes(&w), [(2, true), (1, false), (9, false), (40, false), (50, false)]);
        assert_eq!(w[0].tenants[0].id.as_str(), "t005");
        assert_eq!(w[1].tenants[0].id.as_str(), "t000");
        assert_eq!(w.iter().map(|w| w.number).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        let total: usize = w.iter().map(|w| w.tenants.len()).sum();
        assert_eq!(total, 102);
    }

    #[test]
    fn no_spec_means_one_wave_after_the_canaries_and_short_specs_are_completed() {
        let f = fleet(10, &[]);
        let refs: Vec<&Tenant> = f.iter().collect();
        assert_eq!(sizes(&waves(&refs, &|t| t.canary, &WaveSpec::default())), [(10, false)]);
        let spec: WaveSpec = "3".parse().unwrap();
        assert_eq!(sizes(&waves(&refs, &|t| t.canary, &spec)), [(3, false), (7, false)]);
        let spec: WaveSpec = "5,50%".parse().unwrap();
        assert_eq!(sizes(&waves(&refs, &|t| t.canary, &spec)), [(5, false), (5, false)]);
        assert!("0".parse::<WaveSpec>().is_err());
        assert!("101%".parse::<WaveSpec>().is_err());
    }

    #[test]
    fn decreasing_or_repeated_wave_sizes_are_refused() {
        for spec in ["5,2", "50%,20%", "10,3,20%", "1,100%,5"] {
            let err = spec.parse::<WaveSpec>().unwrap_err().to_string();
            assert!(err.contains(&format!("wave sizes `{spec}`")), "{spec}: {err}");
        }
        for spec in ["1,10%,50%,100%", "1,5,20%", "100%", "1,1,100%"] {
            assert!(spec.parse::<WaveSpec>().is_ok(), "{spec}");
        }
    }
}
