//! Rollout order: canary tenants form the first wave; the rest follow in the waves the
//! spec's steps make, each step taking tenants not placed yet: a cumulative size (`1`,
//! `10%`: fleet order), a selector (`region=eu`: the tenants it matches) or `*` (all
//! left). Deterministic: fleet order within each wave.

use serde::Serialize;

use crate::model::fleet::Tenant;
use crate::model::policy::{WaveSpec, WaveStep};

/// One wave of a rollout.
#[derive(Debug, Clone)]
pub struct Wave<'a> {
    /// 1-based, in rollout order.
    pub number: usize,
    pub canary: bool,
    pub tenants: Vec<&'a Tenant>,
}

/// What one step of the spec did, for `plan`: a selector that matched nothing is most
/// likely a typo, and one whose tenants earlier waves took places nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepPlaced {
    /// The step as written: `5%`, `region=eu`, `*`.
    pub step: String,
    /// A selector's matches among the selected tenants, placed by it or before it
    /// (`None`: a size or `*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<usize>,
    /// Tenants this step placed.
    pub placed: usize,
    /// The wave it formed; `None` when it placed nothing (no empty wave is kept).
    pub wave: Option<usize>,
}

/// The waves of a rollout and what each step of its spec did.
#[derive(Debug, Clone, Default)]
pub struct WavePlan<'a> {
    pub waves: Vec<Wave<'a>>,
    pub steps: Vec<StepPlaced>,
}

/// A spec with selectors that leaves tenants in no wave. Sizes describe a ramp, so a
/// size-only spec that stops short is completed by one last wave; selectors describe the
/// organisation, and a tenant none of them names (a missing or misspelt label, a tenant
/// added since) must be seen by an operator before it migrates in a wave nobody planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "waves `{spec}` place {count} of the selected tenants in no wave ({}): end the waves with `*` to take them, \
     or leave them out with --select",
    named(.first, .count)
)]
pub struct Unplaced {
    pub spec: String,
    pub count: usize,
    /// The first few of them, in fleet order.
    pub first: Vec<String>,
}

/// How many unplaced tenants [`Unplaced`] names.
const NAMED: usize = 5;

fn named(first: &[String], count: &usize) -> String {
    let ids: Vec<String> = first.iter().map(|id| format!("`{id}`")).collect();
    let more = if *count > first.len() { ", ..." } else { "" };
    format!("{}{more}", ids.join(", "))
}

impl<'a> WavePlan<'a> {
    /// Appends a wave of `tenants` unless it is empty; its number if appended.
    fn push(&mut self, canary: bool, tenants: Vec<&'a Tenant>) -> Option<usize> {
        if tenants.is_empty() {
            return None;
        }
        let number = self.waves.len() + 1;
        self.waves.push(Wave {
            number,
            canary,
            tenants,
        });
        Some(number)
    }
}

/// The tenants after the canary wave, and which of them a step has placed.
struct Placing<'r, 'a> {
    rest: &'r [&'a Tenant],
    placed: Vec<bool>,
    count: usize,
}

impl<'a> Placing<'_, 'a> {
    /// The tenants `step` places, in fleet order. A size counts every tenant placed after
    /// the canary wave, by sizes and selectors alike, and a share is of those tenants: the
    /// wave brings the rollout that far.
    fn take(&mut self, step: &WaveStep) -> Vec<&'a Tenant> {
        let mut out = Vec::new();
        let reach = match step {
            WaveStep::Size(size) => size.reach(self.rest.len()),
            _ => self.rest.len(),
        };
        for (i, t) in self.rest.iter().enumerate() {
            if self.count >= reach {
                break;
            }
            let fits = match step {
                WaveStep::Select(selector) => selector.matches(t),
                WaveStep::Size(_) | WaveStep::Rest => true,
            };
            if !self.placed[i] && fits {
                self.placed[i] = true;
                self.count += 1;
                out.push(*t);
            }
        }
        out
    }

    fn unplaced(&self) -> Vec<&'a Tenant> {
        (self.rest.iter().zip(&self.placed))
            .filter(|(_, placed)| !**placed)
            .map(|(t, _)| *t)
            .collect()
    }
}

/// Splits the selected tenants into waves: the canaries (by their flag, or by `is_canary`)
/// first, then the rest by `spec`'s steps. Empty waves are dropped. A size-only spec's
/// last wave takes whatever the spec leaves; a spec with selectors must place every tenant.
pub fn plan<'a>(
    tenants: &[&'a Tenant],
    is_canary: &dyn Fn(&Tenant) -> bool,
    spec: &WaveSpec,
) -> Result<WavePlan<'a>, Unplaced> {
    let (canaries, rest): (Vec<&Tenant>, Vec<&Tenant>) = tenants.iter().copied().partition(|t| is_canary(t));
    let mut out = WavePlan::default();
    out.push(true, canaries);
    let mut left = Placing {
        rest: &rest,
        placed: vec![false; rest.len()],
        count: 0,
    };
    for step in &spec.0 {
        let taken = left.take(step);
        let matched = match step {
            WaveStep::Select(selector) => Some(tenants.iter().filter(|t| selector.matches(t)).count()),
            _ => None,
        };
        let placed = taken.len();
        let wave = out.push(false, taken);
        out.steps.push(StepPlaced {
            step: step.to_string(),
            matched,
            placed,
            wave,
        });
    }
    let unplaced = left.unplaced();
    if spec.has_selectors() && !unplaced.is_empty() {
        return Err(Unplaced {
            spec: spec.to_string(),
            count: unplaced.len(),
            first: unplaced.iter().take(NAMED).map(|t| t.id.to_string()).collect(),
        });
    }
    out.push(false, unplaced);
    Ok(out)
}

/// Every tenant in one wave (`stamp`, which has no rollout).
pub fn single<'a>(tenants: &[&'a Tenant]) -> Vec<Wave<'a>> {
    let mut out = WavePlan::default();
    out.push(false, tenants.to_vec());
    out.waves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(n: usize, canaries: &[usize]) -> Vec<Tenant> {
        (0..n)
            .map(|i| Tenant::for_test(&format!("t{i:03}"), &[], canaries.contains(&i)))
            .collect()
    }

    fn waves<'a>(tenants: &[&'a Tenant], spec: &WaveSpec) -> Vec<Wave<'a>> {
        plan(tenants, &|t| t.canary, spec).unwrap().waves
    }

    /// `n` tenants; tenant i's labels are region (eu, us, apac by i % 3) and tier
    /// (enterprise every fourth, else free).
    fn labelled(n: usize, canaries: &[usize]) -> Vec<Tenant> {
        let mut out = fleet(n, canaries);
        for (i, t) in out.iter_mut().enumerate() {
            t.labels.insert("region".into(), ["eu", "us", "apac"][i % 3].into());
            let tier = if i % 4 == 0 { "enterprise" } else { "free" };
            t.labels.insert("tier".into(), tier.into());
        }
        out
    }

    fn ids<'a>(w: &Wave<'a>) -> Vec<&'a str> {
        w.tenants.iter().map(|t| t.id.as_str()).collect()
    }

    fn spec(parts: &[&str]) -> WaveSpec {
        WaveSpec::from_parts(parts).unwrap()
    }

    fn sizes(w: &[Wave]) -> Vec<(usize, bool)> {
        w.iter().map(|w| (w.tenants.len(), w.canary)).collect()
    }

    #[test]
    fn canaries_first_then_cumulative_waves() {
        let f = fleet(102, &[5, 50]);
        let refs: Vec<&Tenant> = f.iter().collect();
        let spec: WaveSpec = "1,10%,50%,100%".parse().unwrap();
        let w = waves(&refs, &spec);
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
        assert_eq!(sizes(&waves(&refs, &WaveSpec::default())), [(10, false)]);
        let spec: WaveSpec = "3".parse().unwrap();
        assert_eq!(sizes(&waves(&refs, &spec)), [(3, false), (7, false)]);
        let spec: WaveSpec = "5,50%".parse().unwrap();
        assert_eq!(sizes(&waves(&refs, &spec)), [(5, false), (5, false)]);
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

    #[test]
    fn selector_waves_take_the_tenants_not_placed_yet_that_match() {
        let f = labelled(12, &[]);
        let refs: Vec<&Tenant> = f.iter().collect();
        let spec = spec(&["region=eu,tier!=enterprise", "region=eu", "tier!=enterprise", "*"]);
        let p = plan(&refs, &|t| t.canary, &spec).unwrap();
        // eu: 0 3 6 9; enterprise: 0 4 8.
        assert_eq!(ids(&p.waves[0]), ["t003", "t006", "t009"]);
        assert_eq!(ids(&p.waves[1]), ["t000"]);
        assert_eq!(ids(&p.waves[2]), ["t001", "t002", "t005", "t007", "t010", "t011"]);
        assert_eq!(ids(&p.waves[3]), ["t004", "t008"]);
        let placed: Vec<(usize, Option<usize>)> = p.steps.iter().map(|s| (s.placed, s.matched)).collect();
        assert_eq!(placed, [(3, Some(3)), (1, Some(4)), (6, Some(9)), (2, None)]);
    }

    #[test]
    fn sizes_mixed_with_selectors_stay_cumulative_after_the_canaries() {
        let f = labelled(21, &[0, 1]);
        let refs: Vec<&Tenant> = f.iter().collect();
        // 19 after the canaries: 10% reaches 2; eu takes the eu tenants left (5); 50%
        // reaches 10, so it takes 3 more; `*` the other 9.
        let p = plan(
            &refs,
            &|t| t.canary,
            &spec(&["canary=true", "10%", "region=eu", "50%", "*"]),
        )
        .unwrap();
        assert_eq!(
            sizes(&p.waves),
            [(2, true), (2, false), (5, false), (3, false), (9, false)]
        );
        assert_eq!(ids(&p.waves[1]), ["t002", "t003"]);
        assert_eq!(ids(&p.waves[2]), ["t006", "t009", "t012", "t015", "t018"]);
        assert_eq!(ids(&p.waves[3]), ["t004", "t005", "t007"]);
        // The canaries are wave 1 already: `canary=true` matches them and places none.
        assert_eq!(
            p.steps[0],
            StepPlaced {
                step: "canary=true".into(),
                matched: Some(2),
                placed: 0,
                wave: None
            }
        );
        let total: usize = p.waves.iter().map(|w| w.tenants.len()).sum();
        assert_eq!(total, 21);
    }

    #[test]
    fn a_selector_that_matches_nothing_is_reported_and_leaves_no_empty_wave() {
        let f = labelled(6, &[]);
        let refs: Vec<&Tenant> = f.iter().collect();
        let p = plan(&refs, &|t| t.canary, &spec(&["region=mars", "region=eu", "*"])).unwrap();
        assert_eq!(p.steps[0].matched, Some(0));
        assert_eq!(p.steps[0].wave, None);
        assert_eq!(p.waves.iter().map(|w| w.number).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(p.steps[1].wave, Some(1));
    }

    #[test]
    fn selectors_that_leave_tenants_unplaced_are_an_error_naming_them() {
        let f = labelled(9, &[]);
        let refs: Vec<&Tenant> = f.iter().collect();
        let err = plan(&refs, &|t| t.canary, &spec(&["region=eu", "region=us"])).unwrap_err();
        assert_eq!(err.count, 3);
        let text = err.to_string();
        assert!(
            text.starts_with(
                "waves `region=eu; region=us` place 3 of the selected tenants in no wave (`t002`, `t005`, `t008`)"
            ),
            "{text}"
        );
        // With selectors, only `*` (or 100%) places the rest: a last size is no catch-all.
        assert!(plan(&refs, &|t| t.canary, &spec(&["region=eu", "5"])).is_err());
        assert!(plan(&refs, &|t| t.canary, &spec(&["region=eu", "100%"])).is_ok());
    }

    #[test]
    fn wave_specs_read_back_from_their_steps() {
        let s = spec(&["canary=true", "5%", "region=eu,tier!=enterprise", "*"]);
        assert_eq!(s.to_string(), "canary=true; 5%; region=eu,tier!=enterprise; *");
        assert_eq!(WaveSpec::from_parts(&s.steps_text()).unwrap(), s);
        let sizes: WaveSpec = "1,10%,100%".parse().unwrap();
        assert_eq!(sizes.to_string(), "1,10%,100%");
        assert_eq!(WaveSpec::from_parts(&sizes.steps_text()).unwrap(), sizes);
        for bad in [
            &["*", "region=eu"][..],
            &["region=eu", "5", "2"],
            &["canary=true,5%"],
            &["region"],
        ] {
            assert!(WaveSpec::from_parts(bad).is_err(), "{bad:?}");
        }
        let err = WaveSpec::from_parts(&["*", "5"]).unwrap_err().to_string();
        assert!(err.contains("nothing can follow `*`"), "{err}");
    }

    /// The planner before selector waves, kept as the reference for size-only specs.
    fn sized_before(tenants: &[&Tenant], spec: &WaveSpec) -> Vec<Vec<String>> {
        let (canaries, rest): (Vec<&Tenant>, Vec<&Tenant>) = tenants.iter().copied().partition(|t| t.canary);
        let mut out: Vec<Vec<String>> = Vec::new();
        let ids = |ts: &[&Tenant]| ts.iter().map(|t| t.id.to_string()).collect::<Vec<_>>();
        if !canaries.is_empty() {
            out.push(ids(&canaries));
        }
        let mut taken = 0;
        let reaches = spec.0.iter().map(|s| match s {
            WaveStep::Size(size) => size.reach(rest.len()),
            _ => rest.len(),
        });
        for size in reaches.chain([rest.len()]) {
            if size > taken {
                out.push(ids(&rest[taken..size]));
                taken = size;
            }
        }
        out
    }

    fn step() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            (1usize..8).prop_map(|n| n.to_string()),
            (1u32..=100).prop_map(|p| format!("{p}%")),
            Just("region=eu".to_owned()),
            Just("tier!=enterprise".to_owned()),
            Just("region=us,tier=free".to_owned()),
            Just("canary=true".to_owned()),
            Just("region=mars".to_owned()),
        ]
    }

    proptest::proptest! {
        #[test]
        fn every_tenant_is_placed_exactly_once_in_fleet_order(
            n in 0usize..40,
            canaries in proptest::collection::vec(0usize..40, 0..4),
            steps in proptest::collection::vec(step(), 0..6),
            rest in proptest::bool::ANY,
        ) {
            let f = labelled(n, &canaries);
            let refs: Vec<&Tenant> = f.iter().collect();
            let mut parts = steps.clone();
            if rest {
                parts.push("*".into());
            }
            // Sizes out of order are refused at parse time; those specs say nothing here.
            let Ok(spec) = WaveSpec::from_parts(&parts) else { return Ok(()) };
            let Ok(p) = plan(&refs, &|t| t.canary, &spec) else {
                proptest::prop_assert!(spec.has_selectors() && !rest);
                return Ok(());
            };
            let mut seen: Vec<&str> = p.waves.iter().flat_map(|w| ids(w)).collect();
            proptest::prop_assert_eq!(seen.len(), n);
            seen.sort();
            seen.dedup();
            proptest::prop_assert_eq!(seen.len(), n);
            for (k, w) in p.waves.iter().enumerate() {
                proptest::prop_assert_eq!(w.number, k + 1);
                proptest::prop_assert!(!w.tenants.is_empty());
                proptest::prop_assert!(ids(w).windows(2).all(|p| p[0] < p[1]));
            }
            if !spec.has_selectors() {
                let now: Vec<Vec<String>> =
                    p.waves.iter().map(|w| ids(w).iter().map(|s| s.to_string()).collect()).collect();
                proptest::prop_assert_eq!(now, sized_before(&refs, &spec));
            }
        }
    }
}
