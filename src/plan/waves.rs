//! Rollout order: canary tenants form the first wave, the rest follow in waves whose
//! cumulative sizes come from a spec such as `1,10%,50%,100%`. Deterministic: fleet order.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::model::fleet::Tenant;

/// One cumulative wave size: a count of tenants or a share of those left after the canaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WaveSize {
    Count(usize),
    Percent(u32),
}

impl WaveSize {
    /// The cumulative number of tenants this size reaches, of `total`.
    fn reach(self, total: usize) -> usize {
        match self {
            WaveSize::Count(n) => n.min(total),
            WaveSize::Percent(p) => (total * p as usize).div_ceil(100).min(total),
        }
    }
}

impl FromStr for WaveSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || format!("wave size `{s}` is not a count (10) or a percentage (10%) from 1 to 100%");
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u32>() {
                Ok(p) if (1..=100).contains(&p) => Ok(WaveSize::Percent(p)),
                _ => Err(bad()),
            },
            None => match s.parse::<usize>() {
                Ok(n) if n > 0 => Ok(WaveSize::Count(n)),
                _ => Err(bad()),
            },
        }
    }
}

impl fmt::Display for WaveSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaveSize::Count(n) => write!(f, "{n}"),
            WaveSize::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Cumulative wave sizes for the tenants after the canaries, e.g. `1,10%,50%,100%`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WaveSpec(pub Vec<WaveSize>);

/// Sizes are cumulative, so none may be smaller than the one before it of its kind
/// (`5,2` or `50%,20%` is a mistake, not two waves), and nothing may follow `100%`.
impl FromStr for WaveSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let sizes = s.split(',').map(str::parse).collect::<Result<Vec<WaveSize>, _>>()?;
        let (mut count, mut percent) = (None, None);
        for (i, size) in sizes.iter().enumerate() {
            let (last, value) = match *size {
                WaveSize::Count(n) => (&mut count, n),
                WaveSize::Percent(p) => (&mut percent, p as usize),
            };
            if let Some(before) = *last {
                if value < before {
                    return Err(format!(
                        "wave sizes `{s}` are cumulative: `{size}` cannot be smaller than the size before it"
                    ));
                }
            }
            *last = Some(value);
            if percent == Some(100) && i + 1 < sizes.len() {
                return Err(format!("wave sizes `{s}`: nothing can follow `100%`"));
            }
        }
        Ok(WaveSpec(sizes))
    }
}

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
            let err = spec.parse::<WaveSpec>().unwrap_err();
            assert!(err.contains(&format!("wave sizes `{spec}`")), "{spec}: {err}");
        }
        for spec in ["1,10%,50%,100%", "1,5,20%", "100%", "1,1,100%"] {
            assert!(spec.parse::<WaveSpec>().is_ok(), "{spec}");
        }
    }
}
