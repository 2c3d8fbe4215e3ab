//! How well detection works, measured: synthetic 90-day histories (weekly
//! seasonality, slow growth, noise) of many groups, with anomalies of each
//! kind injected on known days, run through [`super::detect`] day by day.
//! `benches/anomaly_quality.rs` prints the figures; a test holds the goals.
//! Pure and seeded: the same seed gives the same figures.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use super::{Cell, DayRows, Settings, detect};
use crate::money::PRICE_SCALE;

/// The kinds of anomaly injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    VolumeSpike,
    TokenSpike,
    ModelSwitch,
    PriceError,
    CacheCollapse,
    ErrorStorm,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::VolumeSpike,
        Kind::TokenSpike,
        Kind::ModelSwitch,
        Kind::PriceError,
        Kind::CacheCollapse,
        Kind::ErrorStorm,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Kind::VolumeSpike => "volume spike",
            Kind::TokenSpike => "token spike",
            Kind::ModelSwitch => "model switch",
            Kind::PriceError => "price error",
            Kind::CacheCollapse => "cache-hit collapse",
            Kind::ErrorStorm => "error storm",
        }
    }
}

/// One injected anomaly.
#[derive(Clone, Debug, PartialEq)]
pub struct Injected {
    pub date: NaiveDate,
    /// `dept/project/task`.
    pub key: String,
    pub kind: Kind,
    /// What it changed the group's cost by, USD and relative.
    pub impact_usd: f64,
    pub change: f64,
}

/// What a run of the scenario measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Quality {
    /// Per kind: (injected, detected) among anomalies of >= $50 or >= 30%.
    pub recall: BTreeMap<Kind, (usize, usize)>,
    /// (group, metric) series-days without an injected anomaly, and the
    /// flags raised on them.
    pub clean_series_days: usize,
    pub false_alarms: usize,
    /// False alarms by metric.
    pub false_by_metric: BTreeMap<&'static str, usize>,
    /// Group-days flagged (any metric) that carried an injected anomaly, and
    /// that did not: precision is the first over both.
    pub flagged_injected: usize,
    pub flagged_clean: usize,
    /// Days evaluated.
    pub days: usize,
    pub groups: usize,
    /// Injected events (of >= $50 or >= 30%) that opened at least one
    /// incident, and the incidents that touch them: one page per event is
    /// an incidents-per-event of 1.0.
    pub events_paged: usize,
    pub event_incidents: usize,
    /// Incidents that touch no injected event.
    pub stray_incidents: usize,
    /// The high-severity anomalies on the paged events' groups: what one
    /// incident per anomaly would have filed.
    pub event_anomalies: usize,
}

impl Quality {
    /// Flagged group-days that carried an anomaly, over all flagged group-days.
    pub fn precision(&self) -> f64 {
        self.flagged_injected as f64 / (self.flagged_injected + self.flagged_clean).max(1) as f64
    }

    /// Incidents per injected event that opened any (goal: 1.0).
    pub fn incidents_per_event(&self) -> f64 {
        self.event_incidents as f64 / self.events_paged.max(1) as f64
    }

    /// False alarms per 30 clean days per 100 series.
    pub fn false_alarm_rate(&self) -> f64 {
        self.false_alarms as f64 / self.clean_series_days.max(1) as f64 * 30.0 * 100.0
    }
}

const PRICES: [(&str, f64); 2] = [("cheap", 0.03), ("pricey", 0.3)];

struct Day {
    requests: f64,
    tokens: f64,
    pricey_share: f64,
    hit_rate: f64,
    error_rate: f64,
    price_factor: f64,
}

fn rows(key: &[String; 3], d: &Day) -> Vec<([String; 5], Cell)> {
    PRICES
        .iter()
        .map(|(model, price)| {
            let share = if *model == "pricey" {
                d.pricey_share
            } else {
                1.0 - d.pricey_share
            };
            let price = if *model == "pricey" {
                price * d.price_factor
            } else {
                *price
            };
            let requests = (d.requests * share).round() as i64;
            let hits = (requests as f64 * d.hit_rate).round() as i64;
            let errors = (requests as f64 * d.error_rate).round() as i64;
            let billable = requests - hits;
            let priced_tokens = (billable as f64 * d.tokens).round() as i64;
            let tokens = (requests as f64 * d.tokens).round() as i64;
            let usd = priced_tokens as f64 / 1000.0 * price;
            (
                [
                    key[0].clone(),
                    key[1].clone(),
                    key[2].clone(),
                    "openai".into(),
                    model.to_string(),
                ],
                Cell {
                    requests,
                    errors,
                    cache_hits: hits,
                    input_tokens: tokens * 7 / 10,
                    output_tokens: tokens - tokens * 7 / 10,
                    priced_tokens,
                    cost: (usd * 1e9).round() as i128 * 10i128.pow((PRICE_SCALE - 9) as u32),
                    unpriced_requests: 0,
                },
            )
        })
        .collect()
}

fn usd(rows: &[([String; 5], Cell)]) -> f64 {
    rows.iter().map(|(_, c)| c.usd()).sum()
}

/// Generate `days` days of `groups` groups from `start`; after `warmup`
/// days each group-day carries an anomaly with probability `rate`.
pub fn generate(
    seed: u64,
    groups: usize,
    start: NaiveDate,
    days: usize,
    warmup: usize,
    rate: f64,
) -> (BTreeMap<NaiveDate, DayRows>, Vec<Injected>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let noise = Normal::new(0.0, 0.05).expect("valid normal");
    let small = Normal::new(0.0, 0.02).expect("valid normal");
    let keys: Vec<[String; 3]> = (0..groups)
        .map(|g| {
            [
                format!("dept{}", g % 7),
                format!("project{g}"),
                ["chat", "rag", "summarize"][g % 3].to_string(),
            ]
        })
        .collect();
    let scale: Vec<f64> = (0..groups).map(|_| rng.random_range(0.3..3.0)).collect();
    let mut lake = BTreeMap::new();
    let mut injected = Vec::new();
    for i in 0..days {
        let date = start + chrono::Days::new(i as u64);
        let weekend = date.weekday().number_from_monday() >= 6;
        let mut day_rows = Vec::new();
        for (g, key) in keys.iter().enumerate() {
            let base =
                1500.0 * scale[g] * if weekend { 0.4 } else { 1.0 } * (1.0 + 0.003 * i as f64);
            let normal = Day {
                requests: base * (1.0 + noise.sample(&mut rng)),
                tokens: 1000.0 * (1.0 + small.sample(&mut rng)),
                pricey_share: (0.1 + small.sample(&mut rng)).clamp(0.0, 1.0),
                hit_rate: (0.4 + small.sample(&mut rng)).clamp(0.0, 1.0),
                error_rate: (0.01 + small.sample(&mut rng) / 4.0).clamp(0.0, 1.0),
                price_factor: 1.0,
            };
            let clean = rows(key, &normal);
            let kind =
                (i >= warmup && rng.random_bool(rate)).then(|| Kind::ALL[rng.random_range(0..6)]);
            let Some(kind) = kind else {
                day_rows.extend(clean);
                continue;
            };
            let mut d = normal;
            match kind {
                Kind::VolumeSpike => d.requests *= rng.random_range(1.5..3.0),
                Kind::TokenSpike => d.tokens *= rng.random_range(1.5..2.5),
                Kind::ModelSwitch => d.pricey_share = rng.random_range(0.5..0.8),
                Kind::PriceError => d.price_factor = 10.0,
                Kind::CacheCollapse => d.hit_rate = rng.random_range(0.0..0.05),
                Kind::ErrorStorm => {
                    let retries = rng.random_range(0.3..0.6);
                    d.requests *= 1.0 + retries;
                    d.error_rate = retries / (1.0 + retries) + 0.01;
                }
            }
            let dirty = rows(key, &d);
            let (before, after) = (usd(&clean), usd(&dirty));
            injected.push(Injected {
                date,
                key: key.join("/"),
                kind,
                impact_usd: after - before,
                change: (after - before) / before,
            });
            day_rows.extend(dirty);
        }
        lake.insert(date, day_rows);
    }
    (lake, injected)
}

/// Run detection on every day after `warmup` and score it at the level the
/// anomalies were injected at (dept+project+task).
pub fn measure(
    lake: &BTreeMap<NaiveDate, DayRows>,
    injected: &[Injected],
    warmup: usize,
    settings: &Settings,
) -> Quality {
    let mut q = Quality::default();
    let dates: Vec<NaiveDate> = lake.keys().copied().collect();
    let groups: std::collections::BTreeSet<String> = lake
        .values()
        .flat_map(|rows| {
            rows.iter()
                .map(|(g, _)| format!("{}/{}/{}", g[0], g[1], g[2]))
        })
        .collect();
    q.groups = groups.len();
    for date in dates.iter().skip(warmup) {
        let history: BTreeMap<NaiveDate, DayRows> =
            lake.range(..*date).map(|(d, r)| (*d, r.clone())).collect();
        let found = detect(*date, &lake[date], &history, settings);
        let flagged: Vec<(&str, &str)> = found
            .iter()
            .filter(|a| a.level == "dept+project+task")
            .map(|a| (a.key.as_str(), a.metric.name()))
            .collect();
        q.days += 1;
        let today: Vec<&Injected> = injected.iter().filter(|x| x.date == *date).collect();
        // Incidents: the day's high-severity anomalies grouped into events.
        let opening: Vec<&super::Anomaly> =
            found.iter().filter(|a| super::incident::opens(a)).collect();
        let events = super::incident::events(&opening);
        let scope = |key: &str| -> [Option<String>; 5] {
            let mut parts = key.split('/').map(|s| Some(s.to_string()));
            [
                parts.next().flatten(),
                parts.next().flatten(),
                parts.next().flatten(),
                None,
                None,
            ]
        };
        // An incident touches an injected event when its lead lies on the
        // event's group; an incident led by a model or the total (which
        // overlap every group) when one of its team anomalies does.
        let touches = |e: &super::incident::Event<'_>, x: &Injected| {
            let s = scope(&x.key);
            let on = |a: &super::Anomaly| {
                a.filter
                    .iter()
                    .zip(&s)
                    .all(|(a, b)| a.is_none() || b.is_none() || a == b)
            };
            let all: Vec<&super::Anomaly> = std::iter::once(e.lead)
                .chain(e.related.iter().copied())
                .collect();
            let teams: Vec<&&super::Anomaly> =
                all.iter().filter(|a| a.filter[0].is_some()).collect();
            if e.lead.filter[0].is_some() || teams.is_empty() {
                on(e.lead)
            } else {
                teams.iter().any(|a| on(a))
            }
        };
        for x in today
            .iter()
            .filter(|x| x.impact_usd.abs() >= 50.0 || x.change.abs() >= 0.3)
        {
            let n = events.iter().filter(|e| touches(e, x)).count();
            if n > 0 {
                q.events_paged += 1;
                q.event_incidents += n;
                // One incident per high anomaly, as before events: every
                // high anomaly on the event's group, at any level.
                let s = scope(&x.key);
                q.event_anomalies += opening
                    .iter()
                    .filter(|a| {
                        a.filter
                            .iter()
                            .zip(&s)
                            .all(|(a, b)| a.is_none() || b.is_none() || a == b)
                    })
                    .count();
            }
        }
        q.stray_incidents += events
            .iter()
            .filter(|e| !today.iter().any(|x| touches(e, x)))
            .count();
        for g in &groups {
            let hit = today.iter().find(|x| &x.key == g);
            let flags = flagged.iter().filter(|(k, _)| k == g).count();
            match hit {
                Some(_) if flags > 0 => q.flagged_injected += 1,
                None if flags > 0 => q.flagged_clean += 1,
                _ => {}
            }
            match hit {
                Some(x) => {
                    if x.impact_usd.abs() >= 50.0 || x.change.abs() >= 0.3 {
                        let e = q.recall.entry(x.kind).or_default();
                        e.0 += 1;
                        if flags > 0 {
                            e.1 += 1;
                        }
                    }
                }
                None => {
                    q.clean_series_days += super::Metric::ALL.len();
                    q.false_alarms += flags;
                    for (_, m) in flagged.iter().filter(|(k, _)| k == g) {
                        *q.false_by_metric.entry(m).or_default() += 1;
                    }
                }
            }
        }
    }
    q
}
