//! Alert rules: thresholds on the day's and each model's operational rates,
//! their settings (`[alerts]`, `[[alerts.models]]`) and validation, and which
//! thresholds a scope breaches. The report model shows the alerts; `config`
//! composes the settings. Pure logic.

use serde::{Deserialize, Serialize};

use crate::error::Problems;
use crate::report::format;

/// `[alerts]`: global thresholds, and `[[alerts.models]]` overrides.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    pub error_rate_max: Option<f64>,
    pub latency_p95_ms_max: Option<f64>,
    pub cache_hit_rate_min: Option<f64>,
    pub citation_rate_min: Option<f64>,
    pub review_pass_rate_min: Option<f64>,
    #[serde(default)]
    pub models: Vec<RawModelThresholds>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelThresholds {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub error_rate_max: Option<f64>,
    pub latency_p95_ms_max: Option<f64>,
    pub cache_hit_rate_min: Option<f64>,
    pub citation_rate_min: Option<f64>,
    pub review_pass_rate_min: Option<f64>,
}

/// Alert thresholds: global, with per-model overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Thresholds {
    pub error_rate_max: Option<f64>,
    pub latency_p95_ms_max: Option<f64>,
    pub cache_hit_rate_min: Option<f64>,
    pub citation_rate_min: Option<f64>,
    pub review_pass_rate_min: Option<f64>,
}

impl Thresholds {
    /// `self` with every threshold `over` sets replaced.
    pub fn overridden_by(&self, over: &Thresholds) -> Thresholds {
        Thresholds {
            error_rate_max: over.error_rate_max.or(self.error_rate_max),
            latency_p95_ms_max: over.latency_p95_ms_max.or(self.latency_p95_ms_max),
            cache_hit_rate_min: over.cache_hit_rate_min.or(self.cache_hit_rate_min),
            citation_rate_min: over.citation_rate_min.or(self.citation_rate_min),
            review_pass_rate_min: over.review_pass_rate_min.or(self.review_pass_rate_min),
        }
    }
}

/// Thresholds for the day and per (provider, model).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlertRules {
    pub global: Thresholds,
    pub models: Vec<(String, String, Thresholds)>,
}

impl AlertRules {
    /// The rules of `[alerts]`; every problem goes to `p`.
    pub fn validate(raw: &RawAlerts, p: &mut Problems) -> AlertRules {
        let share = |at: &str, name: &str, v: Option<f64>, p: &mut Problems| match v {
            Some(x) if !(0.0..=1.0).contains(&x) => {
                p.push(format!("{at}.{name}: {x} is not a share between 0 and 1"));
                None
            }
            v => v,
        };
        let ms = |at: &str, v: Option<f64>, p: &mut Problems| match v {
            Some(x) if x.is_nan() || x <= 0.0 => {
                p.push(format!("{at}.latency_p95_ms_max: {x} must be > 0"));
                None
            }
            v => v,
        };
        let thresholds = |at: &str,
                          e: Option<f64>,
                          l: Option<f64>,
                          c: Option<f64>,
                          ci: Option<f64>,
                          r: Option<f64>,
                          p: &mut Problems| Thresholds {
            error_rate_max: share(at, "error_rate_max", e, p),
            latency_p95_ms_max: ms(at, l, p),
            cache_hit_rate_min: share(at, "cache_hit_rate_min", c, p),
            citation_rate_min: share(at, "citation_rate_min", ci, p),
            review_pass_rate_min: share(at, "review_pass_rate_min", r, p),
        };
        let g = raw;
        let global = thresholds(
            "alerts",
            g.error_rate_max,
            g.latency_p95_ms_max,
            g.cache_hit_rate_min,
            g.citation_rate_min,
            g.review_pass_rate_min,
            p,
        );
        let mut models = Vec::new();
        for (i, m) in raw.models.iter().enumerate() {
            let at = format!("alerts.models[{i}]");
            let t = thresholds(
                &at,
                m.error_rate_max,
                m.latency_p95_ms_max,
                m.cache_hit_rate_min,
                m.citation_rate_min,
                m.review_pass_rate_min,
                p,
            );
            match (&m.provider, &m.model) {
                (Some(provider), Some(model)) => models.push((provider.clone(), model.clone(), t)),
                _ => p.push(format!("{at}: give both `provider` and `model`")),
            }
        }
        AlertRules { global, models }
    }

    /// The thresholds of a model: the global ones with its overrides.
    pub fn for_model(&self, provider: &str, model: &str) -> Thresholds {
        self.models
            .iter()
            .find(|(p, m, _)| p == provider && m == model)
            .map(|(_, _, t)| self.global.overridden_by(t))
            .unwrap_or_else(|| self.global.clone())
    }
}

/// A breached threshold.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Alert {
    /// `all models` or `provider/model`.
    pub scope: String,
    pub metric: String,
    pub value: String,
    pub threshold: String,
}

/// The rates of a scope (the day, or one model) that thresholds watch.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    pub error_rate: Option<f64>,
    pub p95: Option<f64>,
    pub cache_hit_rate: Option<f64>,
    pub citation_rate: Option<f64>,
    pub review_pass_rate: Option<f64>,
}

/// A breached threshold, before it is given its scope.
#[derive(Debug)]
pub struct Breach {
    pub metric: &'static str,
    pub value: String,
    pub threshold: String,
}

impl Breach {
    pub fn at(self, scope: &str) -> Alert {
        Alert {
            scope: scope.to_string(),
            metric: self.metric.to_string(),
            value: self.value,
            threshold: self.threshold,
        }
    }
}

/// The thresholds of `t` that `r` breaches, in tile order (error rate, p95,
/// cache hit, citation, review pass). Strict comparisons; a rate without
/// data never fires.
pub fn breaches(r: &Rates, t: &Thresholds) -> [Option<Breach>; 5] {
    let rate = |decimals: usize| move |v: f64| format::percent(v, decimals);
    let check = |metric: &'static str,
                 value: Option<f64>,
                 limit: Option<f64>,
                 above: bool,
                 show: &dyn Fn(f64) -> String| {
        let (v, l) = (value?, limit?);
        let hit = if above { v > l } else { v < l };
        hit.then(|| Breach {
            metric,
            value: show(v),
            threshold: format!("{} {}", if above { ">" } else { "<" }, show(l)),
        })
    };
    [
        check("error rate", r.error_rate, t.error_rate_max, true, &rate(2)),
        check(
            "p95 latency",
            r.p95,
            t.latency_p95_ms_max,
            true,
            &format::ms,
        ),
        check(
            "cache hit rate",
            r.cache_hit_rate,
            t.cache_hit_rate_min,
            false,
            &rate(2),
        ),
        check(
            "citation rate",
            r.citation_rate,
            t.citation_rate_min,
            false,
            &rate(1),
        ),
        check(
            "review pass rate",
            r.review_pass_rate,
            t.review_pass_rate_min,
            false,
            &rate(1),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_fire_strictly_and_never_without_data() {
        let t = Thresholds {
            error_rate_max: Some(0.02),
            latency_p95_ms_max: Some(1000.0),
            cache_hit_rate_min: Some(0.1),
            citation_rate_min: Some(0.8),
            review_pass_rate_min: Some(0.9),
        };
        let r = Rates {
            error_rate: Some(0.02),
            p95: Some(1012.0),
            cache_hit_rate: Some(0.0999),
            citation_rate: None,
            review_pass_rate: Some(0.9),
        };
        let fired: Vec<(&str, String, String)> = breaches(&r, &t)
            .into_iter()
            .flatten()
            .map(|b| (b.metric, b.value, b.threshold))
            .collect();
        assert_eq!(
            fired,
            [
                (
                    "p95 latency",
                    "1,012 ms".to_string(),
                    "> 1,000 ms".to_string()
                ),
                (
                    "cache hit rate",
                    "9.99%".to_string(),
                    "< 10.00%".to_string()
                ),
            ]
        );
    }

    #[test]
    fn per_model_thresholds_override_the_global_ones() {
        let rules = AlertRules {
            global: Thresholds {
                error_rate_max: Some(0.02),
                latency_p95_ms_max: Some(5000.0),
                ..Thresholds::default()
            },
            models: vec![(
                "openai".into(),
                "o3-mini".into(),
                Thresholds {
                    latency_p95_ms_max: Some(20000.0),
                    ..Thresholds::default()
                },
            )],
        };
        let t = rules.for_model("openai", "o3-mini");
        assert_eq!(t.latency_p95_ms_max, Some(20000.0));
        assert_eq!(t.error_rate_max, Some(0.02));
        assert_eq!(rules.for_model("x", "y"), rules.global);
    }
}
