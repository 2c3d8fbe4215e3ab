//! Reconciliation on hand-made usage and invoices; every expected figure is
//! worked out by hand in the comments.

use super::*;
use crate::tabular::TextTable;

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// Exact USD at SCALE from text.
fn x(s: &str) -> i128 {
    crate::money::to_scaled(crate::tabular::parse_decimal(s).unwrap(), SCALE as u32).unwrap()
}

/// USD at 6 decimals from text.
fn c6(s: &str) -> i128 {
    crate::money::to_scaled(crate::tabular::parse_decimal(s).unwrap(), 6).unwrap()
}

fn usage(requests: i64, cost: &str) -> Usage {
    Usage {
        requests,
        billable_requests: requests,
        cost: x(cost),
        by_type: None,
        ..Usage::default()
    }
}

fn line(provider: &str, date: &str, model: Option<&str>, usd: &str) -> UsdLine {
    UsdLine {
        line: InvoiceLine {
            provider: provider.into(),
            date: d(date),
            model: model.map(str::to_string),
            token_type: None,
            charge: Charge::Usage,
            amount: x(usd),
            currency: "USD".into(),
            source: format!("test {provider} {date}"),
        },
        usd: x(usd),
        duplicate_of: None,
    }
}

fn day(entries: &[(&str, &str, Usage)]) -> DayUsage {
    entries
        .iter()
        .map(|(p, m, u)| ((p.to_string(), m.to_string()), u.clone()))
        .collect()
}

fn find<'a>(lines: &'a [Line], provider: &str, model: &str) -> &'a Line {
    lines
        .iter()
        .find(|l| l.provider == provider && l.model == model)
        .unwrap_or_else(|| panic!("no line {provider}/{model} in {lines:#?}"))
}

#[test]
fn tolerance_is_the_larger_of_absolute_and_relative() {
    let t = Tolerance::spec_default();
    // 0.5% of 100.00 is 0.50: exactly on the bound is ok, a micro-dollar more is not.
    assert!(t.holds(c6("0.5"), c6("100")));
    assert!(!t.holds(c6("0.500001"), c6("100")));
    assert!(t.holds(c6("-0.5"), c6("100")));
    // Below 2.00 the 0.01 USD floor is the larger.
    assert!(t.holds(c6("0.01"), c6("1")));
    assert!(!t.holds(c6("0.010001"), c6("1")));
    assert!(t.holds(c6("0.01"), 0));
}

#[test]
fn every_status_of_a_day() {
    let date = d("2026-03-07");
    let mut days = BTreeMap::new();
    days.insert(
        date,
        day(&[
            ("openai", "gpt-4o", usage(10, "12.3456784")),
            ("openai", "gpt-4o-mini", usage(5, "1.00")),
            ("anthropic", "claude-sonnet-4", usage(3, "4.20")),
            ("anthropic", "claude-haiku-4", usage(2, "0.80")),
            ("google", "gemini-2.5-flash", usage(7, "0.70")),
        ]),
    );
    let lines = vec![
        // openai names models: reconciled per model.
        line("openai", "2026-03-07", Some("gpt-4o"), "12.35"),
        line("openai", "2026-03-07", Some("gpt-4o-mini"), "1.02"),
        line("openai", "2026-03-07", Some("dall-e-3"), "0.40"),
        // anthropic bills the provider as a whole: 4.20 + 0.80 = 5.00.
        line("anthropic", "2026-03-07", None, "5.004"),
        // another day's line is not the report day's.
        line("google", "2026-03-06", None, "0.70"),
    ];
    let r = reconcile(date, &days, &lines, &Settings::default());
    let keys: Vec<(String, String)> = r
        .day
        .iter()
        .map(|l| (l.provider.clone(), l.model.clone()))
        .collect();
    assert_eq!(
        keys,
        [
            ("anthropic", ""),
            ("google", ""),
            ("openai", "dall-e-3"),
            ("openai", "gpt-4o"),
            ("openai", "gpt-4o-mini"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );

    // 12.3456784 rounds half to even to 12.345678; 12.35 - 12.345678 = 0.004322
    // is within 0.01 USD.
    let l = find(&r.day, "openai", "gpt-4o");
    assert_eq!(
        (l.computed_usd, l.invoiced_usd, l.delta_usd, l.status),
        (
            Some(c6("12.345678")),
            Some(c6("12.35")),
            Some(c6("0.004322")),
            Status::Ok
        )
    );
    assert!((l.delta_pct.unwrap() - 0.004322 / 12.345678 * 100.0).abs() < 1e-12);
    assert_eq!(l.explanation, "");

    // 1.02 - 1.00 = 0.02 > max(0.01, 0.005 * 1.00): a mismatch of 2%.
    let l = find(&r.day, "openai", "gpt-4o-mini");
    assert_eq!(
        (l.delta_usd, l.status),
        (Some(c6("0.02")), Status::Mismatch)
    );
    assert_eq!(l.delta_pct, Some(2.0));

    let l = find(&r.day, "openai", "dall-e-3");
    assert_eq!((l.computed_usd, l.status), (Some(0), Status::MissingUsage));
    assert_eq!(l.delta_pct, None, "no percentage of a computed 0");

    let l = find(&r.day, "anthropic", "");
    assert_eq!(
        (l.computed_usd, l.invoiced_usd, l.status),
        (Some(c6("5")), Some(c6("5.004")), Status::Ok)
    );

    let l = find(&r.day, "google", "");
    assert_eq!(
        (l.computed_usd, l.invoiced_usd, l.delta_usd, l.status),
        (Some(c6("0.7")), None, None, Status::MissingInvoice)
    );
    // Month to date, google's invoice of the 6th meets the 7th's usage: 0.70
    // against 0.70 is ok; the other two lines stay as they were.
    assert_eq!(find(&r.month_to_date, "google", "").status, Status::Ok);
    assert_eq!(r.not_ok(), 3 + 2);
}

#[test]
fn explicit_rules_name_models_on_both_sides() {
    let date = d("2026-03-07");
    let mut days = BTreeMap::new();
    days.insert(
        date,
        day(&[
            ("openai", "gpt-4o", usage(1, "1.00")),
            ("openai", "gpt-4o-2024-08-06", usage(1, "2.00")),
            (
                "bedrock",
                "us.anthropic.claude-3-5-sonnet-20240620-v1:0",
                usage(1, "3.00"),
            ),
        ]),
    );
    let lines = vec![
        line("openai", "2026-03-07", Some("gpt-4o-2024-08-06"), "3.00"),
        line("bedrock", "2026-03-07", Some("Claude3.5Sonnet"), "3.00"),
    ];
    let rule = |provider: &str, re: &str, name: &str| ModelRule {
        provider: Some(provider.into()),
        pattern: ModelPattern::Regex(regex::Regex::new(&format!("^(?:{re})$")).unwrap()),
        model: name.into(),
    };
    let settings = Settings {
        models: ModelRules(vec![
            rule("openai", r"(gpt-4o)(-\d{4}-\d{2}-\d{2})?", "$1"),
            rule(
                "bedrock",
                r"(us\.)?anthropic\.claude-3-5-sonnet-.*",
                "claude-3.5-sonnet",
            ),
            rule("bedrock", "Claude3.5Sonnet", "claude-3.5-sonnet"),
        ]),
        ..Settings::default()
    };
    let r = reconcile(date, &days, &lines, &settings);
    assert_eq!(r.day.len(), 2, "{:#?}", r.day);
    let l = find(&r.day, "openai", "gpt-4o");
    assert_eq!((l.computed_usd, l.status), (Some(c6("3")), Status::Ok));
    let l = find(&r.day, "bedrock", "claude-3.5-sonnet");
    assert_eq!((l.computed_usd, l.status), (Some(c6("3")), Status::Ok));
    // Without rules nothing matches by guesswork.
    let r = reconcile(date, &days, &lines, &Settings::default());
    assert_eq!(r.day.len(), 4);
    assert_eq!(
        find(&r.day, "openai", "gpt-4o").status,
        Status::MissingInvoice
    );
    assert_eq!(
        find(&r.day, "bedrock", "Claude3.5Sonnet").status,
        Status::MissingUsage
    );
}

#[test]
fn token_types_say_where_a_difference_comes_from() {
    let date = d("2026-03-07");
    let mut u = usage(4, "3.00");
    // uncached input 1.00, cache read 0.50, cache write 0 (not logged), output 1.50
    u.by_type = Some([x("1.00"), x("0.50"), 0, x("1.50")]);
    let mut days = BTreeMap::new();
    days.insert(date, day(&[("anthropic", "claude-sonnet-4", u)]));
    let typed = |t: TokenType, usd: &str| {
        let mut l = line("anthropic", "2026-03-07", Some("claude-sonnet-4"), usd);
        l.line.token_type = Some(t);
        l
    };
    let lines = vec![
        typed(TokenType::UncachedInput, "1.00"),
        typed(TokenType::CacheRead, "0.50"),
        typed(TokenType::CacheWrite, "1.25"),
        typed(TokenType::Output, "1.50"),
    ];
    let r = reconcile(date, &days, &lines, &Settings::default());
    let l = find(&r.day, "anthropic", "claude-sonnet-4");
    assert_eq!(
        (l.delta_usd, l.status),
        (Some(c6("1.25")), Status::Mismatch)
    );
    assert_eq!(
        l.explanation,
        "cache-write tokens billed but not logged (1.250000 USD)"
    );
    let types: Vec<(&str, Option<i128>, i128, Status)> = l
        .by_type
        .iter()
        .map(|t| {
            (
                t.token_type.as_str(),
                t.computed_usd,
                t.invoiced_usd,
                t.status,
            )
        })
        .collect();
    assert_eq!(
        types,
        vec![
            ("uncached_input", Some(c6("1")), c6("1"), Status::Ok),
            ("cache_read", Some(c6("0.5")), c6("0.5"), Status::Ok),
            ("cache_write", Some(0), c6("1.25"), Status::MissingUsage),
            ("output", Some(c6("1.5")), c6("1.5"), Status::Ok),
        ]
    );
    let csv = crate::report::csv_bytes(&types_schema(), &[types_batch(date, &r.day)]).unwrap();
    assert_eq!(
        String::from_utf8(csv).unwrap(),
        "date,provider,model,token_type,computed_usd,invoiced_usd,delta_usd,status\n\
         2026-03-07,anthropic,claude-sonnet-4,uncached_input,1.000000,1.000000,0.000000,ok\n\
         2026-03-07,anthropic,claude-sonnet-4,cache_read,0.500000,0.500000,0.000000,ok\n\
         2026-03-07,anthropic,claude-sonnet-4,cache_write,0.000000,1.250000,1.250000,missing_usage\n\
         2026-03-07,anthropic,claude-sonnet-4,output,1.500000,1.500000,0.000000,ok\n"
    );
}

#[test]
fn month_to_date_sums_days_and_stops_at_the_month_boundary() {
    let date = d("2026-03-03");
    let mut days = BTreeMap::new();
    days.insert(
        d("2026-02-28"),
        day(&[("openai", "gpt-4o", usage(1, "9.00"))]),
    );
    days.insert(
        d("2026-03-01"),
        day(&[("openai", "gpt-4o", usage(1, "1.0000004"))]),
    );
    days.insert(
        d("2026-03-03"),
        day(&[("openai", "gpt-4o", usage(1, "2.0000004"))]),
    );
    let lines = vec![
        line("openai", "2026-02-28", None, "9.00"),
        line("openai", "2026-03-01", None, "1.00"),
        line("openai", "2026-03-02", None, "0.50"),
        line("openai", "2026-03-03", None, "2.00"),
    ];
    let r = reconcile(date, &days, &lines, &Settings::default());
    assert_eq!(r.month_start, Some(d("2026-03-01")));
    assert_eq!(r.days_without_usage, vec![d("2026-03-02")]);
    // The day: 2.0000004 -> 2.000000, invoiced 2.00: ok.
    assert_eq!(r.day.len(), 1);
    assert_eq!(r.day[0].status, Status::Ok);
    // Month to date: computed 1.0000004 + 2.0000004 = 3.0000008, rounded once
    // to 3.000001 (not 1.000000 + 2.000000); invoiced 1.00 + 0.50 + 2.00 = 3.50;
    // February is not in it.
    let m = &r.month_to_date[0];
    assert_eq!(
        (m.computed_usd, m.invoiced_usd, m.delta_usd, m.status),
        (
            Some(c6("3.000001")),
            Some(c6("3.5")),
            Some(c6("0.499999")),
            Status::Mismatch
        )
    );
    assert_eq!(m.invoice_lines, 3);
    let csv = crate::report::csv_bytes(
        &lines_schema(true),
        &[lines_batch(date, Some(d("2026-03-01")), &r.month_to_date)],
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(csv).unwrap(),
        "date,from,provider,model,computed_usd,invoiced_usd,delta_usd,delta_pct,status,unpriced_requests,credits_usd,invoice_lines,explanation\n\
         2026-03-03,2026-03-01,openai,,3.000001,3.500000,0.499999,16.6666277778,mismatch,0,0.000000,3,\n"
    );

    // The first day of a month is its own month to date.
    let r = reconcile(d("2026-03-01"), &days, &lines, &Settings::default());
    assert_eq!(r.month_to_date[0].invoiced_usd, Some(c6("1")));
    assert!(r.days_without_usage.is_empty());
}

#[test]
fn invoices_in_other_currencies_convert_by_the_rate_of_their_day() {
    let fx = crate::fx::FxTable::parse(
        &TextTable::from_csv(b"date,currency,usd_per_unit\n2026-03-06,EUR,1.1\n").unwrap(),
    )
    .unwrap();
    let eur = InvoiceLine {
        provider: "mistral".into(),
        date: d("2026-03-07"),
        model: None,
        token_type: None,
        charge: Charge::Usage,
        amount: x("100.005"),
        currency: "EUR".into(),
        source: "invoices/normalized/x.csv line 2".into(),
    };
    // Saturday's line takes Friday's rate: 100.005 * 1.1 = 110.0055.
    let usd = to_usd(vec![eur.clone()], &fx).unwrap();
    assert_eq!(usd[0].usd, x("110.0055"));
    let gbp = InvoiceLine {
        currency: "GBP".into(),
        ..eur
    };
    let err = to_usd(vec![gbp], &fx).unwrap_err();
    assert_eq!(
        err.0,
        vec![
            "invoices/normalized/x.csv line 2: currency GBP has no FX rate on or before 2026-03-07 (fx.csv)"
        ]
    );
}

#[test]
fn cache_hits_alone_need_no_invoice_and_unpriced_usage_is_named() {
    let date = d("2026-03-07");
    let cached = Usage {
        requests: 4,
        billable_requests: 0,
        by_type: Some([0; 4]),
        ..Usage::default()
    };
    let unpriced = Usage {
        requests: 3,
        billable_requests: 3,
        unpriced_requests: 3,
        by_type: Some([0; 4]),
        ..Usage::default()
    };
    let mut days = BTreeMap::new();
    days.insert(
        date,
        day(&[
            ("openai", "gpt-4o", cached),
            ("acme", "new-model", unpriced),
        ]),
    );
    let lines = vec![line("acme", "2026-03-07", None, "0.30")];
    let r = reconcile(date, &days, &lines, &Settings::default());
    assert_eq!(r.day.len(), 1, "{:#?}", r.day);
    let l = &r.day[0];
    assert_eq!(
        (
            l.provider.as_str(),
            l.computed_usd,
            l.status,
            l.unpriced_requests
        ),
        ("acme", None, Status::Mismatch, 3)
    );
    // Nothing priced: no computed cost, so no delta either (SPEC: never 0).
    assert_eq!((l.delta_usd, l.delta_pct), (None, None));
    assert_eq!(
        l.explanation,
        "3 unpriced request(s) are not in computed_usd"
    );
}

#[test]
fn credits_count_against_usage_and_are_named() {
    let date = d("2026-03-07");
    let mut days = BTreeMap::new();
    days.insert(date, day(&[("bedrock", "m", usage(1, "10.00"))]));
    let mut credit = line("bedrock", "2026-03-07", None, "-2.00");
    credit.line.charge = Charge::Credit;
    let lines = vec![line("bedrock", "2026-03-07", None, "10.00"), credit];
    let r = reconcile(date, &days, &lines, &Settings::default());
    let l = &r.day[0];
    assert_eq!(
        (l.invoiced_usd, l.credits_usd, l.status),
        (Some(c6("8")), c6("-2"), Status::Mismatch)
    );
    assert_eq!(
        l.explanation,
        "the invoice includes credits and adjustments of -2.000000 USD"
    );
}

#[test]
fn logged_cost_drift_compares_the_same_requests() {
    let date = d("2026-03-07");
    let mut a = usage(10, "5.00");
    a.logged_requests = 8;
    a.logged_usd = x("4.00");
    a.logged_computed_usd = x("4.0300004");
    let mut b = usage(10, "5.00");
    b.logged_requests = 10;
    b.logged_usd = x("5.50");
    b.logged_computed_usd = x("5.00");
    let mut days = BTreeMap::new();
    days.insert(
        date,
        day(&[
            ("openai", "a", a),
            ("openai", "b", b),
            ("openai", "c", usage(1, "1")),
        ]),
    );
    let r = reconcile(date, &days, &[], &Settings::default());
    assert_eq!(
        r.logged.len(),
        2,
        "a model without logged costs has no line"
    );
    // a: 4.00 - 4.030000 = -0.03, 1% of 4.03 is 0.0403: ok.
    assert_eq!(
        (r.logged[0].delta_usd, r.logged[0].status),
        (c6("-0.03"), "ok")
    );
    // b: 5.50 - 5.00 = 0.50 > 0.05: drift.
    assert_eq!(
        (r.logged[1].delta_usd, r.logged[1].status),
        (c6("0.5"), "drift")
    );
    assert_eq!(r.logged[1].delta_pct, Some(10.0));
}
