//! Anomaly detection quality: precision and recall per kind on synthetic
//! 90-day histories with injected anomalies (see `anomaly::quality`).
//!   cargo bench --bench anomaly_quality [-- GROUPS SEEDS]
//! Goals: recall >= 0.9 per kind for anomalies of >= $50/day or >= 30%, at
//! most 1 false alarm per 30 clean days per 100 (group, metric) series, and
//! one incident per injected event.

use chrono::NaiveDate;
use tokenledger::anomaly::Settings;
use tokenledger::anomaly::quality::{Kind, generate, measure};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let groups: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(100);
    let seeds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let start = NaiveDate::from_ymd_opt(2026, 1, 1).expect("valid date");
    let settings = Settings::default();
    let mut total = std::collections::BTreeMap::new();
    let (mut fa, mut clean, mut flagged_injected, mut flagged_clean) = (0, 0, 0, 0);
    let (mut paged, mut incidents, mut stray, mut per_anomaly) = (0, 0, 0, 0);
    let started = std::time::Instant::now();
    for seed in 1..=seeds {
        let (lake, injected) = generate(seed, groups, start, 90, 30, 1.0 / 15.0);
        let q = measure(&lake, &injected, 30, &settings);
        for (k, (n, hit)) in q.recall {
            let e = total.entry(k).or_insert((0, 0));
            e.0 += n;
            e.1 += hit;
        }
        flagged_injected += q.flagged_injected;
        flagged_clean += q.flagged_clean;
        fa += q.false_alarms;
        clean += q.clean_series_days;
        paged += q.events_paged;
        incidents += q.event_incidents;
        stray += q.stray_incidents;
        per_anomaly += q.event_anomalies;
    }
    println!(
        "anomaly quality: {groups} groups x 90 days x {seeds} seeds ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<20} {:>9} {:>9} {:>7}",
        "kind", "injected", "detected", "recall"
    );
    for k in Kind::ALL {
        let (n, hit) = total.get(&k).copied().unwrap_or((0, 0));
        println!(
            "{:<20} {n:>9} {hit:>9} {:>7.3}",
            k.name(),
            hit as f64 / n.max(1) as f64
        );
    }
    let rate = fa as f64 / clean.max(1) as f64 * 30.0 * 100.0;
    let precision = flagged_injected as f64 / (flagged_injected + flagged_clean).max(1) as f64;
    println!(
        "false alarms: {fa} in {clean} clean series-days = {rate:.3} per 30 days per 100 series (goal <= 1)"
    );
    println!("precision (group-days flagged that carried an anomaly): {precision:.3}");
    println!(
        "incidents per injected event: {:.3} ({incidents} incidents for {paged} paged events; goal 1.0); \
         incidents touching no injected event: {stray}; one incident per high anomaly would be {:.3}",
        incidents as f64 / paged.max(1) as f64,
        per_anomaly as f64 / paged.max(1) as f64
    );
}
