//! Month-end forecast accuracy on the anomaly bench's synthetic histories
//! (weekly seasonality, growth, noise; see `budget::quality`): every group,
//! department and the total, forecast on day 10 and day 20 of each month
//! with enough history before it.
//!   cargo bench --bench budget_forecast [-- GROUPS SEEDS]
//! Goals (clean histories): MAPE <= 8% on day 10 and <= 4% on day 20, at
//! least 30% below the naive run-rate's, and the 80% interval covering
//! 70-90% of month ends. The same with injected anomalies is printed too.

use chrono::NaiveDate;
use tokenledger::anomaly::quality::generate;
use tokenledger::budget::forecast::HISTORY_DAYS;
use tokenledger::budget::quality::{Accuracy, measure, scopes};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let groups: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(100);
    let seeds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let start = NaiveDate::from_ymd_opt(2026, 1, 1).expect("valid date");
    let started = std::time::Instant::now();
    println!(
        "budget forecast: {groups} groups (+ departments and the total) x 2026-01..2026-07 x {seeds} seeds; months forecast: those with {HISTORY_DAYS} days before them"
    );
    println!(
        "{:<16} {:>4} {:>9} {:>7} {:>11} {:>12} {:>9}",
        "histories", "day", "forecasts", "MAPE", "naive MAPE", "vs naive", "coverage"
    );
    for (label, rate) in [("clean", 0.0), ("with anomalies", 1.0 / 15.0)] {
        for day in [10, 20] {
            let mut all = Vec::new();
            for seed in 1..=seeds {
                let (lake, _) = generate(seed, groups, start, 212, 30, rate);
                all.push(measure(&scopes(&lake), day, HISTORY_DAYS));
            }
            let n: usize = all.iter().map(|a| a.forecasts).sum();
            let w = |f: fn(&Accuracy) -> f64| {
                all.iter().map(|a| f(a) * a.forecasts as f64).sum::<f64>() / n.max(1) as f64
            };
            let (mape, naive, cover) = (w(|a| a.mape), w(|a| a.naive_mape), w(|a| a.coverage));
            println!(
                "{label:<16} {day:>4} {n:>9} {:>6.2}% {:>10.2}% {:>11.0}% {:>8.1}%",
                mape * 100.0,
                naive * 100.0,
                (1.0 - mape / naive) * -100.0,
                cover * 100.0
            );
        }
    }
    println!("({:.1} s)", started.elapsed().as_secs_f64());
}
