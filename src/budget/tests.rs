//! Budgets on small hand-made rollups with answers worked out by hand.

use super::*;
use crate::anomaly::Cell;

fn d(s: &str) -> NaiveDate {
    s.parse().expect("date")
}

/// Exact rollup money of `usd` (whole cents are enough here).
fn money(usd: f64) -> i128 {
    (usd * 100.0).round() as i128 * pow10((PRICE_SCALE - 2) as u32)
}

fn row(dept: &str, model: &str, usd: f64, unpriced: i64) -> (Grain, Cell) {
    (
        [
            dept.into(),
            "p".into(),
            "chat".into(),
            "openai".into(),
            model.into(),
        ],
        Cell {
            requests: 10 + unpriced,
            cost: money(usd),
            unpriced_requests: unpriced,
            ..Cell::default()
        },
    )
}

fn budget(name: &str, dept: Option<&str>, usd: i128) -> Budget {
    Budget {
        name: name.into(),
        scope: Scope {
            dept: dept.map(str::to_string),
            ..Scope::default()
        },
        monthly_micros: usd * 1_000_000,
        months: BTreeMap::new(),
        alert_at: vec![Decimal::new(8, 1), Decimal::ONE],
    }
}

fn raw(toml: &str) -> Vec<RawBudget> {
    #[derive(Deserialize)]
    struct File {
        budgets: Vec<RawBudget>,
    }
    toml::from_str::<File>(toml).expect("parses").budgets
}

#[test]
fn validation_names_every_problem_at_once() {
    let mut p = Problems::new();
    let b = validate(
        &raw(r#"
            [[budgets]]
            name = "research"
            dept = "research"
            monthly_usd = 1500
            [[budgets]]
            name = "research"
            monthly_usd = -5
            alert_at = [0.8, 0.8, 0]
            [[budgets]]
            name = "ml"
            monthly_usd = "12.1234567"
            months = [{ month = "2026-13", usd = 10 }, { month = "2026-12", usd = "0" }]
            [[budgets]]
            monthly_usd = 1
            dept = ""
        "#),
        &mut p,
    );
    assert_eq!(
        p.0,
        [
            "budgets[1] (\"research\").name: \"research\" is used by an earlier budget",
            "budgets[1] (\"research\").monthly_usd: -5 is not a positive amount",
            "budgets[1] (\"research\").alert_at: 0.8 is given twice",
            "budgets[1] (\"research\").alert_at: 0 is not a share of the budget in (0, 10]",
            "budgets[2] (\"ml\").monthly_usd: 12.1234567 has more than 6 decimals",
            "budgets[2] (\"ml\").months[0].month: \"2026-13\" is not a month (YYYY-MM)",
            "budgets[2] (\"ml\").months[1].usd: 0 is not a positive amount",
            "budgets[3].name: required (a unique, non-empty name)",
            "budgets[3].dept: empty (leave it out to cover every dept)",
        ]
    );
    // The valid one, whole: 1500 USD, default thresholds 80% and 100%.
    assert_eq!(b[0].monthly_micros, 1_500_000_000);
    assert_eq!(b[0].alert_at, [Decimal::new(8, 1), Decimal::ONE]);
    assert_eq!(b[0].scope.describe(), "dept=research");
    let mut p = Problems::new();
    let b = validate(
        &raw(r#"
            [[budgets]]
            name = "all"
            monthly_usd = 1500.25
            months = [{ month = "2026-12", usd = "2000.5" }]
        "#),
        &mut p,
    );
    assert!(p.is_empty(), "{p}");
    assert_eq!(b[0].micros_for("2026-11"), 1_500_250_000);
    assert_eq!(b[0].micros_for("2026-12"), 2_000_500_000);
}

#[test]
fn a_short_series_forecasts_its_mean_with_a_widened_interval() {
    // Dec 1..10 in scope: 8, 12, 8, 12, ... (mean 10); another dept spends
    // 5 a day and is out of scope. Under 14 days: no weekday factors, no
    // trend; level 10, so the 21 days left forecast 210 and the month 310.
    // Relative residuals are -0.2/+0.2: sample sd 0.2108185107; too few
    // past errors, so the interval is ±2 * 1.2815515655 * sd / sqrt(21) =
    // ±11.791394639% of 210: 185.238071 .. 234.761929, plus the 100 spent.
    let mut history = BTreeMap::new();
    for (i, day) in d("2026-12-01").iter_days().take(10).enumerate() {
        let usd = if i % 2 == 0 { 8.0 } else { 12.0 };
        history.insert(
            day,
            vec![
                row("research", "gpt-4o", usd, 1),
                row("sales", "gpt-4o", 5.0, 0),
            ],
        );
    }
    let today = history.remove(&d("2026-12-10")).expect("day 10");
    let rows = evaluate(
        &[budget("research", Some("research"), 300)],
        d("2026-12-10"),
        &today,
        &history,
    );
    let r = &rows[0];
    assert_eq!(r.month, "2026-12");
    assert_eq!(r.mtd_actual, 100_000_000);
    assert_eq!(r.forecast, 310_000_000);
    assert_eq!(r.forecast_low, 285_238_071);
    assert_eq!(r.forecast_high, 334_761_929);
    assert_eq!(r.status, Status::AtRisk);
    assert_eq!(r.mtd_unpriced_requests, 10);
    assert_eq!((r.days_elapsed, r.days_in_month), (10, 31));
    assert_eq!(
        r.basis,
        forecast::Basis::Wide {
            days: 10,
            backtests: 0
        }
    );
    assert_eq!(
        r.note(),
        "little history (10 of 56 days, 0 past errors): interval widened"
    );
    assert!((r.forecast_share() - 310.0 / 300.0).abs() < 1e-12);
    // The burn-up: 8 on day 1, 100 on day 10, the forecast's 310 on day 31.
    assert_eq!(r.burn[0].actual, Some(8.0));
    assert_eq!(r.burn[9].actual, Some(100.0));
    let last = r.burn.last().expect("days");
    assert_eq!(last.date, d("2026-12-31"));
    assert!((last.expected.expect("forecast") - 310.0).abs() < 1e-9);
    // The CSV row, as printed.
    let csv = crate::report::csv_bytes(
        &crate::report::budgets::schema(),
        &[crate::report::budgets::batch(d("2026-12-10"), &rows)],
    )
    .expect("csv");
    let csv = String::from_utf8(csv).expect("utf-8");
    assert_eq!(
        csv,
        "date,name,dept,project,provider,model,month,budget_usd,mtd_actual_usd,forecast_usd,forecast_low_usd,forecast_high_usd,forecast_share,status,mtd_unpriced_requests,days_elapsed,days_in_month,interval_basis,note\n\
         2026-12-10,research,research,,,,2026-12,300.000000,100.000000,310.000000,285.238071,334.761929,1.03333333333,at_risk,10,10,31,wide,\"little history (10 of 56 days, 0 past errors): interval widened\"\n"
    );
}

/// Weekdays 10, weekends 4, from 2026-08-01 to `to`.
fn weekly(to: NaiveDate) -> BTreeMap<NaiveDate, DayRows> {
    d("2026-08-01")
        .iter_days()
        .take_while(|x| *x <= to)
        .map(|x| {
            let usd = if x.weekday().number_from_monday() >= 6 {
                4.0
            } else {
                10.0
            };
            (x, vec![row("research", "gpt-4o", usd, 0)])
        })
        .collect()
}

#[test]
fn day_one_forecasts_from_the_previous_months_weekday_pattern() {
    // Tuesday 2026-12-01 spent 10. Dec 2..31 hold 22 weekdays and 8 weekend
    // days: 22 * 10 + 8 * 4 = 252 to come, 262 in all (the naive run-rate
    // would say 31 * 10 = 310). Every past forecast was exact: no width.
    let mut history = weekly(d("2026-12-01"));
    let today = history.remove(&d("2026-12-01")).expect("day 1");
    let rows = evaluate(
        &[budget("all", None, 300)],
        d("2026-12-01"),
        &today,
        &history,
    );
    let r = &rows[0];
    assert_eq!(r.mtd_actual, 10_000_000);
    assert_eq!(r.forecast, 262_000_000);
    assert_eq!(
        (r.forecast_low, r.forecast_high),
        (262_000_000, 262_000_000)
    );
    assert_eq!(
        r.basis,
        forecast::Basis::Backtests(forecast::BACKTESTS as usize)
    );
    assert_eq!(crate::report::budgets::basis_name(&r.basis), "backtests:21");
    assert_eq!(r.status, Status::Ok);
    assert_eq!(r.note(), "");
}

#[test]
fn a_day_without_a_rollup_is_forecast_and_said() {
    // As above on Thursday 2026-12-03, but Wednesday 12-02 has no rollup:
    // the actual is 10 + 10 = 20, the forecast adds 10 for 12-02, and the
    // 28 days to come (20 weekdays, 8 weekend days) 232: 262 again.
    let mut history = weekly(d("2026-12-03"));
    history.remove(&d("2026-12-02"));
    let today = history.remove(&d("2026-12-03")).expect("day 3");
    let r = &evaluate(
        &[budget("all", None, 300)],
        d("2026-12-03"),
        &today,
        &history,
    )[0];
    assert_eq!(r.mtd_actual, 20_000_000);
    assert_eq!(r.forecast, 262_000_000);
    assert_eq!(r.days_missing, [d("2026-12-02")]);
    assert_eq!(
        r.note(),
        "no rollup for 2026-12-02 (forecast, not in the actual)"
    );
}

#[test]
fn a_scope_with_no_spend_forecasts_nothing_and_says_so() {
    let mut history = weekly(d("2026-12-15"));
    let today = history.remove(&d("2026-12-15")).expect("day");
    let r = &evaluate(
        &[budget("legal", Some("legal"), 100)],
        d("2026-12-15"),
        &today,
        &history,
    )[0];
    assert_eq!(
        (r.mtd_actual, r.forecast, r.forecast_low, r.forecast_high),
        (0, 0, 0, 0)
    );
    assert_eq!(r.status, Status::Ok);
    assert_eq!(r.basis, forecast::Basis::NoSpend);
    assert_eq!(
        r.note(),
        "no spend in scope in the last 56 days: nothing forecast"
    );
}

#[test]
fn thresholds_cross_at_their_exact_share_and_a_new_amount_is_a_new_alert() {
    // Month to date on 2026-12-15: 11 weekdays * 10 + 4 weekend days * 4 = 126.
    let mut history = weekly(d("2026-12-15"));
    let today = history.remove(&d("2026-12-15")).expect("day");
    let mut b = budget("all", None, 0);
    // 126 is exactly 80% of 157.5: crossed (reached), not over.
    b.monthly_micros = 157_500_000;
    let rows = evaluate(std::slice::from_ref(&b), d("2026-12-15"), &today, &history);
    assert_eq!(rows[0].mtd_actual, 126_000_000);
    let c = crossings(std::slice::from_ref(&b), &rows);
    let keys: Vec<String> = c.iter().map(Crossing::key).collect();
    // Forecast: 126 + 12 weekdays * 10 + 4 weekend days * 4 = 262 > 157.5.
    assert_eq!(rows[0].forecast, 262_000_000);
    assert_eq!(rows[0].status, Status::AtRisk);
    assert_eq!(
        keys,
        [
            "actual-80pct-of-157.500000",
            "forecast-100pct-of-157.500000"
        ]
    );
    assert_eq!(
        crate::report::budgets::alert_line(&c[0]),
        "all: month-to-date spend $126.00 reached 80% of the 2026-12 budget of $157.50"
    );
    // A cent more budget: 80% is 126.008, not reached.
    b.monthly_micros = 157_510_000;
    let rows = evaluate(std::slice::from_ref(&b), d("2026-12-15"), &today, &history);
    let keys: Vec<String> = crossings(&[b.clone()], &rows)
        .iter()
        .map(Crossing::key)
        .collect();
    assert_eq!(keys, ["forecast-100pct-of-157.510000"]);
    // Changed mid-month through [[budgets.months]]: December's amount is
    // 120, the actual is over it; both thresholds and the forecast cross.
    b.months.insert("2026-12".into(), 120_000_000);
    let rows = evaluate(std::slice::from_ref(&b), d("2026-12-15"), &today, &history);
    assert_eq!(rows[0].status, Status::Over);
    let keys: Vec<String> = crossings(&[b], &rows).iter().map(Crossing::key).collect();
    assert_eq!(
        keys,
        [
            "actual-80pct-of-120.000000",
            "actual-100pct-of-120.000000",
            "forecast-100pct-of-120.000000"
        ]
    );
}
