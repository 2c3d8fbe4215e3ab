//! Reconciliation end to end on the fixture lake and its invoices in three
//! real formats (`fixture.rs` works out each invoice line by hand). The
//! computed side is the fixture's hand-computed spend (`metrics.rs`):
//! anthropic 0.0507 + 0 + 0.00195 = 0.05265; openai 0.0016 + 0.0000125 +
//! 0.00037 + 0.01325 + 0.01 = 0.0252325, rounded half to even to 0.025232;
//! mistral's one request is unpriced.

use tokenledger::config::{Config, Overrides};
use tokenledger::error::ExitKind;
use tokenledger::pipeline::{self, RunOptions};

use crate::fixture::{self, report};
use crate::metrics::run_fixture;

// openai: 0.04 - 0.025232 = 0.014768 = 58.53% of computed: over 0.5% and
// 0.01 USD. mistral: 0.20 EUR * 1.10 (Friday's rate for Sunday) = 0.22
// against no computed cost (its only request is unpriced: empty, never 0, and
// so no delta), with its unpriced request named. cohere: billed, no usage.
pub const DAY: &str = "\
date,provider,model,computed_usd,invoiced_usd,delta_usd,delta_pct,status,unpriced_requests,credits_usd,invoice_lines,explanation
2026-03-08,anthropic,claude-sonnet,0.052650,0.052650,0.000000,0,ok,0,0.000000,4,
2026-03-08,cohere,,0.000000,0.500000,0.500000,,missing_usage,0,0.000000,1,\"billed, but no request reached this provider and model in the logs\"
2026-03-08,mistral,,,0.220000,,,mismatch,1,0.000000,1,1 unpriced request(s) are not in computed_usd
2026-03-08,openai,,0.025232,0.040000,0.014768,58.5288522511,mismatch,0,0.000000,1,
";

// Month to date from 1 March: openai's 1.00 of the 7th joins, and so does
// the 7th's computed cost from the rollup the run builds from the logs (t16:
// 7 + 7 tokens at the old price, 0.0000175 + 0.00007; t11 in the 8th's
// partition: 1 + 1, 0.0000025 + 0.00001; together 0.0001): 0.025232 +
// 0.0001 = 0.025332, 1.04 - 0.025332 = 1.014668 = 4005.479236%; cohere's
// February line stays out.
pub const MTD: &str = "\
date,from,provider,model,computed_usd,invoiced_usd,delta_usd,delta_pct,status,unpriced_requests,credits_usd,invoice_lines,explanation
2026-03-08,2026-03-01,anthropic,claude-sonnet,0.052650,0.052650,0.000000,0,ok,0,0.000000,4,
2026-03-08,2026-03-01,cohere,,0.000000,0.500000,0.500000,,missing_usage,0,0.000000,1,\"billed, but no request reached this provider and model in the logs\"
2026-03-08,2026-03-01,mistral,,,0.220000,,,mismatch,1,0.000000,1,1 unpriced request(s) are not in computed_usd
2026-03-08,2026-03-01,openai,,0.025332,1.040000,1.014668,4005.47923575,mismatch,0,0.000000,2,
";

pub const BY_TOKEN_TYPE: &str = "\
date,provider,model,token_type,computed_usd,invoiced_usd,delta_usd,status
2026-03-08,anthropic,claude-sonnet,uncached_input,0.013200,0.013200,0.000000,ok
2026-03-08,anthropic,claude-sonnet,cache_read,0.001200,0.001200,0.000000,ok
2026-03-08,anthropic,claude-sonnet,cache_write,0.007500,0.007500,0.000000,ok
2026-03-08,anthropic,claude-sonnet,output,0.030750,0.030750,0.000000,ok
";

// The requests with a logged cost in a convertible currency: anthropic r8
// (0.0014 USD logged; 300 * 0.003/1k + 30 * 0.015/1k = 0.00135 computed)
// and r5 (a cache hit: 0 logged, 0 computed);
// openai r1 (0.0075 USD) and r2 (0.005 EUR * 1.10 = 0.0055) against 0.0075 +
// 0.00475. r3 (GBP, no rate) and mistral (unpriced) are not compared.
pub const LOGGED: &str = "\
date,provider,model,requests,computed_usd,logged_usd,delta_usd,delta_pct,status
2026-03-08,anthropic,claude-sonnet,2,0.001350,0.001400,0.000050,3.7037037037,ok
2026-03-08,openai,gpt-4o,2,0.012250,0.013000,0.000750,6.12244897959,ok
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_amount_and_status_matches_the_hand_computed_values() {
    let lake = fixture::lake();
    let summary = run_fixture(lake.path(), None).await;
    assert_eq!(
        summary.outcome,
        ExitKind::Ok,
        "mismatches alone do not fail a run"
    );
    assert_eq!(report(lake.path(), "reconciliation.csv"), DAY);
    assert_eq!(report(lake.path(), "reconciliation_mtd.csv"), MTD);
    assert_eq!(
        report(lake.path(), "reconciliation_by_token_type.csv"),
        BY_TOKEN_TYPE
    );
    assert_eq!(report(lake.path(), "logged_vs_computed.csv"), LOGGED);
    let r = &summary.reconciliation;
    assert_eq!(r.not_ok(), 3 + 3);
    // 1 to 6 March have no logs, so no rollup; the run built 7 March's.
    assert_eq!(r.days_without_usage.len(), 6);

    // The manifest lists every invoice object with its adapter and digest.
    let m: serde_json::Value = serde_json::from_str(&report(lake.path(), "manifest.json")).unwrap();
    let inv: Vec<(String, String, u64)> = m["inputs"]["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let key = o["key"].as_str().unwrap().to_string();
            let bytes = std::fs::read(lake.path().join(&key)).unwrap();
            assert_eq!(o["sha256"], tokenledger::manifest::sha256(&bytes).as_str());
            (
                key,
                o["adapter"].as_str().unwrap().to_string(),
                o["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        inv,
        [
            ("invoices/normalized/2026-03.csv", "normalized", 3),
            ("invoices/openai/costs-2026-03.json", "openai_costs", 2),
            (
                "invoices/anthropic/cost_report-2026-03-08.json",
                "anthropic_cost_report",
                4
            ),
        ]
        .map(|(k, a, n)| (k.to_string(), a.to_string(), n))
    );

    // The finance page shows the lines and why they differ.
    let html = report(lake.path(), "finance.html");
    assert!(html.contains("1 unpriced request(s) are not in computed_usd"));
    assert!(html.contains("Month to date (1 – 8 Mar 2026)"));
    assert!(html.contains("Gateway-logged cost against computed"));
}

fn config(lake: &std::path::Path, tz: Option<&str>) -> Config {
    Config::from_sources(
        "",
        "test",
        &[],
        &Overrides {
            lake: Some(lake.to_string_lossy().to_string()),
            timezone: tz.map(str::to_string),
            config_dir: None,
            ..Overrides::default()
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_on_mismatch_exits_6_after_publishing() {
    let lake = fixture::lake();
    let options = RunOptions {
        fail_on_mismatch: true,
        ..RunOptions::default()
    };
    let s = pipeline::run_with(&config(lake.path(), None), fixture::date(), &options)
        .await
        .unwrap();
    assert_eq!(s.outcome, ExitKind::Mismatch);
    assert_eq!(s.outcome.code(), 6);
    assert_eq!(report(lake.path(), "reconciliation.csv"), DAY);

    // With every line matching, the same flag passes: keep only anthropic.
    for dir in ["normalized", "openai"] {
        std::fs::remove_dir_all(lake.path().join("invoices").join(dir)).unwrap();
    }
    let s = pipeline::run_with(&config(lake.path(), None), fixture::date(), &options)
        .await
        .unwrap();
    // openai now has usage and no invoice: still not ok.
    assert_eq!(s.outcome, ExitKind::Mismatch);
    let day = report(lake.path(), "reconciliation.csv");
    assert!(
        day.contains(
            ",openai,,0.025232,,,,missing_invoice,0,0.000000,0,no invoice line for this usage\n"
        ),
        "{day}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_invoice_names_its_object_and_line_and_publishes_nothing() {
    let lake = fixture::lake();
    std::fs::write(
        lake.path().join("invoices/normalized/2026-03.csv"),
        "provider,date,model,amount,currency\nmistral,2026-03-08,,0.20,EUR\nmistral,08/03/2026,,1.0,XBT1\n",
    )
    .unwrap();
    std::fs::write(
        lake.path().join("invoices/normalized/2026-04.csv"),
        "provider,date,model,amount,currency\nacme,2026-04-01,,3.00,CHF\n",
    )
    .unwrap();
    let err = pipeline::run(&config(lake.path(), None), fixture::date())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ExitKind::InputData);
    let text = err.to_string();
    for expected in [
        "invoices/normalized/2026-03.csv line 3: date `08/03/2026` is not YYYY-MM-DD",
        "invoices/normalized/2026-03.csv line 3: currency `XBT1` is not a 3-letter ISO 4217 code",
        "invoices/normalized/2026-04.csv line 2: currency CHF has no FX rate on or before 2026-04-01 (fx.csv)",
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
    assert!(
        !lake.path().join("reports").exists(),
        "nothing is published when the invoices cannot be read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_in_another_zone_meets_the_invoices_of_its_date() {
    // Tokyo's 8 March is 7 March 15:00 to 8 March 15:00 UTC: different
    // requests, the same invoice lines (dated by usage day).
    let lake = fixture::lake();
    let s = pipeline::run(&config(lake.path(), Some("Asia/Tokyo")), fixture::date())
        .await
        .unwrap();
    let invoiced: Vec<(String, Option<i128>)> = s
        .reconciliation
        .day
        .iter()
        .map(|l| (l.provider.clone(), l.invoiced_usd))
        .collect();
    let usd6 = |v: i128| Some(v);
    assert!(
        invoiced.contains(&("openai".into(), usd6(40_000))),
        "{invoiced:?}"
    );
    assert!(
        invoiced.contains(&("mistral".into(), usd6(220_000))),
        "{invoiced:?}"
    );
    assert!(
        invoiced.contains(&("cohere".into(), usd6(500_000))),
        "{invoiced:?}"
    );
    let utc = fixture::lake();
    let u = run_fixture(utc.path(), None).await;
    let computed = |s: &pipeline::RunSummary| -> Vec<Option<i128>> {
        s.reconciliation
            .day
            .iter()
            .map(|l| l.computed_usd)
            .collect()
    };
    assert_ne!(
        computed(&s),
        computed(&u),
        "the Tokyo day holds other requests"
    );
}

// focus_costs.csv of the fixture day, checked row by row against the
// fixture's tokens and prices: anthropic r4 untagged: 4000 uncached input at
// 0.003/1k = 0.012, 4000 cache read at 0.0003/1k = 0.0012, 2000 cache write at
// 0.00375/1k = 0.0075, 2000 output at 0.015/1k = 0.03 (0.0507 in all); r8 + r9:
// 400 at 0.003/1k, 50 at 0.015/1k; openai's two price rows (before and after
// noon) apart: research/alpha/chat 2000 at 0.0025/1k + 1000 cached at
// 0.00125/1k + 600 at 0.01/1k = 0.01225 before, 100 at 0.002/1k + 100 at
// 0.008/1k = 0.001 after. Cache hits (r5, the hostile tag) and unpriced
// requests (mistral) have no row; a type with no tokens has none either.
// Money is exact (r1's 5 uncached tokens at 0.0025/1k: 0.0000125), so
// ListUnitPrice x PricingQuantity = ListCost on every row.
pub const FOCUS: &str = "\
BilledCost,BillingAccountId,BillingAccountName,BillingCurrency,BillingPeriodEnd,BillingPeriodStart,ChargeCategory,ChargeClass,ChargeDescription,ChargeFrequency,ChargePeriodEnd,ChargePeriodStart,ConsumedQuantity,ConsumedUnit,ContractedCost,EffectiveCost,InvoiceIssuerName,ListCost,ListUnitPrice,PricingQuantity,PricingUnit,ProviderName,PublisherName,ServiceCategory,ServiceName,SkuId,SkuMeter,SkuPriceId,Tags
0.012,anthropic,anthropic,USD,2026-04-01T00:00:00Z,2026-03-01T00:00:00Z,Usage,,claude-sonnet uncached input tokens,Usage-Based,2026-03-09T00:00:00Z,2026-03-08T00:00:00Z,4000,Tokens,0.012,0.012,anthropic,0.012,0.003,4,1K Tokens,anthropic,anthropic,AI and Machine Learning,LLM Inference,claude-sonnet,uncached_input,p-89a5422cfdf1cecf,\"{\"\"dept\"\":\"\"(untagged)\"\",\"\"project\"\":\"\"(untagged)\"\",\"\"task\"\":\"\"(untagged)\"\"}\"
0.0012,anthropic,anthropic,USD,2026-04-01T00:00:00Z,2026-03-01T00:00:00Z,Usage,,claude-sonnet cache read tokens,Usage-Based,2026-03-09T00:00:00Z,2026-03-08T00:00:00Z,4000,Tokens,0.0012,0.0012,anthropic,0.0012,0.0003,4,1K Tokens,anthropic,anthropic,AI and Machine Learning,LLM Inference,claude-sonnet,cache_read,p-89a5422cfdf1cecf,\"{\"\"dept\"\":\"\"(untagged)\"\",\"\"project\"\":\"\"(untagged)\"\",\"\"task\"\":\"\"(untagged)\"\"}\"
0.0075,anthropic,anthropic,USD,2026-04-01T00:00:00Z,2026-03-01T00:00:00Z,Usage,,claude-sonnet cache write tokens,Usage-Based,2026-03-09T00:00:00Z,2026-03-08T00:00:00Z,2000,Tokens,0.0075,0.0075,anthropic,0.0075,0.00375,2,1K Tokens,anthropic,anthropic,AI and Machine Learning,LLM Inference,claude-sonnet,cache_write,p-89a5422cfdf1cecf,\"{\"\"dept\"\":\"\"(untagged)\"\",\"\"project\"\":\"\"(untagged)\"\",\"\"task\"\":\"\"(untagged)\"\"}\"
0.03,anthropic,anthropic,USD,2026-04-01T00:00:00Z,2026-03-01T00:00:00Z,Usage,,claude-sonnet output tokens,Usage-Based,2026-03-09T00:00:00Z,2026-03-08T00:00:00Z,2000,Tokens,0.03,0.03,anthropic,0.03,0.015,2,1K Tokens,anthropic,anthropic,AI and Machine Learning,LLM Inference,claude-sonnet,output,p-89a5422cfdf1cecf,\"{\"\"dept\"\":\"\"(untagged)\"\",\"\"project\"\":\"\"(untagged)\"\",\"\"task\"\":\"\"(untagged)\"\"}\"
0.0008,openai,openai,USD,2026-04-01T00:00:00Z,2026-03-01T00:00:00Z,Usage,,gpt-4o uncached input tokens,Usage-Based,2026-03-09T00:00:00Z,2026-03-08T00:00:00Z,400,Tokens,0.0008,0.0008,openai,0.0008,0.002,0.4,1K Tokens,openai,openai,AI and Machine Learning,LLM Inference,gpt-4o,uncached_input,p-e89fd11449561d5b,\"{\"\"dept\"\":\"\"(untagged)\"\",\"\"project\"\":\"\"(untagged)\"\",\"\"task\"\":\"\"(untagged)\"\"}\"
0.0008,openai,openai,USD,2026-04-01T00:00:00Z,2026-03-01T00:00:00Z,Usage,,gpt-4o output tokens,Usage-Based,2026-03-09T00:00:00Z,2026-03-08T00:00:00Z,100,Tokens,0.0008,0.0008,openai,0.0008,0.008,0.1,1K Tokens,openai,openai,AI and Machine Learning,LLM Inference,gpt-4o,output,p-e89fd11449561d5b,\"{\"\"dept\"\":\"\"(untagged)\"\",\"\"project\"\":\"\"(untagged)\"\",\"\"task\"\":\"\"(untagged)\"\"}\"
0.0000125,openai,openai,USD,2026-04-01T00:00:00Z,2026-03-01T00:00:00Z,Usage,,gpt-4o uncached input tokens,Usage-Based,2026-03-09T00:00:00Z,2026-03-08T00:00:00Z,5,Tokens,0.0000125,0.0000125,openai,0.0000125,0.0025,0.005,1K Tokens,openai,openai,AI and Machine Learning,LLM Inference,gpt-4o,uncached_input,p-d7a688386695bd15,\"{\"\"dept\"\":\"\"ops\"\",\"\"project\"\":\"\"delta\"\",\"\"task\"\":\"\"classify\"\"}\"
0.0012,anthropic,anthropic,USD,2026-04-01T00:00:00Z,2026-03-01T00:00:00Z,Usage,,claude-sonnet uncached input tokens,Usage-Based,2026-03-09T00:00:00Z,2026-03-08T00:00:00Z,400,Tokens,0.0012,0.0012,anthropic,0.0012,0.003,0.4,1K Tokens,anthropic,anthropic,AI and Machine Learning,LLM Inference,claude-sonnet,uncached_input,p-89a5422cfdf1cecf,\"{\"\"dept\"\":\"\"ops\"\",\"\"project\"\":\"\"gamma\"\",\"\"task\"\":\"\"chat\"\"}\"
0.00075,anthropic,anthropic,USD,2026-04-01T00:00:00Z,2026-03-01T00:00:00Z,Usage,,claude-sonnet output tokens,Usage-Based,2026-03-09T00:00:00Z,2026-03-08T00:00:00Z,50,Tokens,0.00075,0.00075,anthropic,0.00075,0.015,0.05,1K Tokens,anthropic,anthropic,AI and Machine Learning,LLM Inference,claude-sonnet,output,p-89a5422cfdf1cecf,\"{\"\"dept\"\":\"\"ops\"\",\"\"project\"\":\"\"gamma\"\",\"\"task\"\":\"\"chat\"\"}\"
0.0001,openai,openai,USD,2026-04-01T00:00:00Z,2026-03-01T00:00:00Z,Usage,,gpt-4o uncached input tokens,Usage-Based,2026-03-09T00:00:00Z,2026-03-08T00:00:00Z,50,Tokens,0.0001,0.0001,openai,0.0001,0.002,0.05,1K Tokens,openai,openai,AI and Machine Learning,LLM Inference,gpt-4o,uncached_input,p-e89fd11449561d5b,\"{\"\"dept\"\":\"\"ops\"\",\"\"project\"\":\"\"gamma\"\",\"\"task\"\":\"\"chat\"\"}\"
0.00015,openai,openai,USD,2026-04-01T00:00:00Z,2026-03-01T00:00:00Z,Usage,,gpt-4o cache read tokens,Usage-Based,2026-03-09T00:00:00Z,2026-03-08T00:00:00Z,150,Tokens,0.00015,0.00015,openai,0.00015,0.001,0.15,1K Tokens,openai,openai,AI and Machine Learning,LLM Inference,gpt-4o,cache_read,p-e89fd11449561d5b,\"{\"\"dept\"\":\"\"ops\"\",\"\"project\"\":\"\"gamma\"\",\"\"task\"\":\"\"chat\"\"}\"
0.00012,openai,openai,USD,2026-04-01T00:00:00Z,2026-03-01T00:00:00Z,Usage,,gpt-4o output tokens,Usage-Based,2026-03-09T00:00:00Z,2026-03-08T00:00:00Z,15,Tokens,0.00012,0.00012,openai,0.00012,0.008,0.015,1K Tokens,openai,openai,AI and Machine Learning,LLM Inference,gpt-4o,output,p-e89fd11449561d5b,\"{\"\"dept\"\":\"\"ops\"\",\"\"project\"\":\"\"gamma\"\",\"\"task\"\":\"\"chat\"\"}\"
0.005,openai,openai,USD,2026-04-01T00:00:00Z,2026-03-01T00:00:00Z,Usage,,gpt-4o uncached input tokens,Usage-Based,2026-03-09T00:00:00Z,2026-03-08T00:00:00Z,2000,Tokens,0.005,0.005,openai,0.005,0.0025,2,1K Tokens,openai,openai,AI and Machine Learning,LLM Inference,gpt-4o,uncached_input,p-d7a688386695bd15,\"{\"\"dept\"\":\"\"research\"\",\"\"project\"\":\"\"alpha\"\",\"\"task\"\":\"\"chat\"\"}\"
0.00125,openai,openai,USD,2026-04-01T00:00:00Z,2026-03-01T00:00:00Z,Usage,,gpt-4o cache read tokens,Usage-Based,2026-03-09T00:00:00Z,2026-03-08T00:00:00Z,1000,Tokens,0.00125,0.00125,openai,0.00125,0.00125,1,1K Tokens,openai,openai,AI and Machine Learning,LLM Inference,gpt-4o,cache_read,p-d7a688386695bd15,\"{\"\"dept\"\":\"\"research\"\",\"\"project\"\":\"\"alpha\"\",\"\"task\"\":\"\"chat\"\"}\"
0.006,openai,openai,USD,2026-04-01T00:00:00Z,2026-03-01T00:00:00Z,Usage,,gpt-4o output tokens,Usage-Based,2026-03-09T00:00:00Z,2026-03-08T00:00:00Z,600,Tokens,0.006,0.006,openai,0.006,0.01,0.6,1K Tokens,openai,openai,AI and Machine Learning,LLM Inference,gpt-4o,output,p-d7a688386695bd15,\"{\"\"dept\"\":\"\"research\"\",\"\"project\"\":\"\"alpha\"\",\"\"task\"\":\"\"chat\"\"}\"
0.0002,openai,openai,USD,2026-04-01T00:00:00Z,2026-03-01T00:00:00Z,Usage,,gpt-4o uncached input tokens,Usage-Based,2026-03-09T00:00:00Z,2026-03-08T00:00:00Z,100,Tokens,0.0002,0.0002,openai,0.0002,0.002,0.1,1K Tokens,openai,openai,AI and Machine Learning,LLM Inference,gpt-4o,uncached_input,p-e89fd11449561d5b,\"{\"\"dept\"\":\"\"research\"\",\"\"project\"\":\"\"alpha\"\",\"\"task\"\":\"\"chat\"\"}\"
0.0008,openai,openai,USD,2026-04-01T00:00:00Z,2026-03-01T00:00:00Z,Usage,,gpt-4o output tokens,Usage-Based,2026-03-09T00:00:00Z,2026-03-08T00:00:00Z,100,Tokens,0.0008,0.0008,openai,0.0008,0.008,0.1,1K Tokens,openai,openai,AI and Machine Learning,LLM Inference,gpt-4o,output,p-e89fd11449561d5b,\"{\"\"dept\"\":\"\"research\"\",\"\"project\"\":\"\"alpha\"\",\"\"task\"\":\"\"chat\"\"}\"
0.002,openai,openai,USD,2026-04-01T00:00:00Z,2026-03-01T00:00:00Z,Usage,,gpt-4o uncached input tokens,Usage-Based,2026-03-09T00:00:00Z,2026-03-08T00:00:00Z,1000,Tokens,0.002,0.002,openai,0.002,0.002,1,1K Tokens,openai,openai,AI and Machine Learning,LLM Inference,gpt-4o,uncached_input,p-e89fd11449561d5b,\"{\"\"dept\"\":\"\"research\"\",\"\"project\"\":\"\"beta\"\",\"\"task\"\":\"\"summarize\"\"}\"
0.008,openai,openai,USD,2026-04-01T00:00:00Z,2026-03-01T00:00:00Z,Usage,,gpt-4o output tokens,Usage-Based,2026-03-09T00:00:00Z,2026-03-08T00:00:00Z,1000,Tokens,0.008,0.008,openai,0.008,0.008,1,1K Tokens,openai,openai,AI and Machine Learning,LLM Inference,gpt-4o,output,p-e89fd11449561d5b,\"{\"\"dept\"\":\"\"research\"\",\"\"project\"\":\"\"beta\"\",\"\"task\"\":\"\"summarize\"\"}\"
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_focus_export_reads_back_through_the_focus_adapter_with_the_same_totals() {
    let lake = fixture::lake();
    run_fixture(lake.path(), None).await;
    let focus = report(lake.path(), "focus_costs.csv");
    assert_eq!(focus, FOCUS);

    // The export as the only invoice, read by the FOCUS adapter with the
    // model in SkuId and the token type in SkuMeter: every line and every
    // token type matches to the micro-dollar.
    std::fs::remove_dir_all(lake.path().join("invoices")).unwrap();
    let dir = lake.path().join("invoices/focus");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tokenledger-2026-03-08.csv"), &focus).unwrap();
    let config = Config::from_sources(
        "[[reconcile.sources]]\nadapter = \"focus\"\npath = \"focus\"\nmodel_column = \"SkuId\"\n",
        "test",
        &[],
        &Overrides {
            lake: Some(lake.path().to_string_lossy().to_string()),
            timezone: None,
            config_dir: None,
            ..Overrides::default()
        },
    )
    .unwrap();
    let s = pipeline::run(&config, fixture::date()).await.unwrap();
    type Row<'a> = (String, String, Option<i128>, Option<i128>, &'a str);
    let day: Vec<Row> = s
        .reconciliation
        .day
        .iter()
        .map(|l| {
            (
                l.provider.clone(),
                l.model.clone(),
                l.computed_usd,
                l.invoiced_usd,
                l.status.as_str(),
            )
        })
        .collect();
    assert_eq!(
        day,
        vec![
            (
                "anthropic".into(),
                "claude-sonnet".into(),
                Some(52_650),
                Some(52_650),
                "ok"
            ),
            // mistral's usage is unpriced: nothing of it is in the export,
            // and its computed cost is unknown, not 0.
            (
                "mistral".into(),
                String::new(),
                None,
                None,
                "missing_invoice"
            ),
            (
                "openai".into(),
                "gpt-4o".into(),
                Some(25_232),
                Some(25_232),
                "ok"
            ),
        ]
    );
    let types = report(lake.path(), "reconciliation_by_token_type.csv");
    assert_eq!(types.lines().count(), 1 + 4 + 3, "{types}");
    assert!(
        types.lines().skip(1).all(|l| l.ends_with(",0.000000,ok")),
        "{types}"
    );
}

// The day's lines that are not ok with usage behind them, the largest
// delta first, a line without one (nothing priced) last: openai (gpt-4o): its
// eight kept traces by cost, each with the price row in force at its ts:
// t3 1000 in + 1000 out after noon at 0.002/0.008 per 1K = 0.010; t1 1000 +
// 500 before noon at 0.0025/0.01 = 0.0075; t2 1000 uncached + 1000 cached at
// 0.00125 + 100 out = 0.00475 (a microsecond before noon); t14 400 + 100 =
// 0.0016; t7 0.001 (its identical copy shows once); t13 150 cached of 100
// input (a token violation: uncached 0) + 10 out = 0.00023; t10 0.00014
// (both deliveries tie: once); t17 5 in = 0.0000125, half to even 0.000012.
// They sum to 0.0252325, the line's computed_usd before rounding. Then
// mistral (its one request, t6, unpriced: no cost, no price row). cohere's
// line has no usage and so no evidence.
pub const EVIDENCE: &str = "\
date,provider,model,line_model,status,rank,trace_id,ts,cache_hit,input_tokens,cache_read_input_tokens,cache_creation_input_tokens,output_tokens,cost_usd,price_id,input_usd_per_1k,output_usd_per_1k,cache_read_usd_per_1k,cache_write_usd_per_1k,price_valid_from,price_valid_to
2026-03-08,openai,gpt-4o,,mismatch,1,t3,2026-03-08T12:00:00Z,false,1000,0,0,1000,0.010000,p-e89fd11449561d5b,0.00200000000000000000,0.00800000000000000000,0.00100000000000000000,0.00200000000000000000,2026-03-08T12:00:00Z,
2026-03-08,openai,gpt-4o,,mismatch,2,t1,2026-03-08T00:00:00Z,false,1000,0,0,500,0.007500,p-d7a688386695bd15,0.00250000000000000000,0.01000000000000000000,0.00125000000000000000,0.00250000000000000000,2024-01-01T00:00:00Z,2026-03-08T12:00:00Z
2026-03-08,openai,gpt-4o,,mismatch,3,t2,2026-03-08T11:59:59.999999Z,false,2000,1000,0,100,0.004750,p-d7a688386695bd15,0.00250000000000000000,0.01000000000000000000,0.00125000000000000000,0.00250000000000000000,2024-01-01T00:00:00Z,2026-03-08T12:00:00Z
2026-03-08,openai,gpt-4o,,mismatch,4,t14,2026-03-08T23:30:00Z,false,400,0,0,100,0.001600,p-e89fd11449561d5b,0.00200000000000000000,0.00800000000000000000,0.00100000000000000000,0.00200000000000000000,2026-03-08T12:00:00Z,
2026-03-08,openai,gpt-4o,,mismatch,5,t7,2026-03-08T16:00:00Z,false,100,0,0,100,0.001000,p-e89fd11449561d5b,0.00200000000000000000,0.00800000000000000000,0.00100000000000000000,0.00200000000000000000,2026-03-08T12:00:00Z,
2026-03-08,openai,gpt-4o,,mismatch,6,t13,2026-03-08T16:00:30Z,false,100,150,0,10,0.000230,p-e89fd11449561d5b,0.00200000000000000000,0.00800000000000000000,0.00100000000000000000,0.00200000000000000000,2026-03-08T12:00:00Z,
2026-03-08,openai,gpt-4o,,mismatch,7,t10,2026-03-08T19:00:00Z,false,50,0,0,5,0.000140,p-e89fd11449561d5b,0.00200000000000000000,0.00800000000000000000,0.00100000000000000000,0.00200000000000000000,2026-03-08T12:00:00Z,
2026-03-08,openai,gpt-4o,,mismatch,8,t17,2026-03-08T10:00:00Z,false,5,0,0,0,0.000012,p-d7a688386695bd15,0.00250000000000000000,0.01000000000000000000,0.00125000000000000000,0.00250000000000000000,2024-01-01T00:00:00Z,2026-03-08T12:00:00Z
2026-03-08,mistral,mistral-large,,mismatch,1,t6,2026-03-08T15:00:00Z,false,100,0,0,50,,,,,,,,
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_lists_the_costliest_requests_behind_each_line_that_is_not_ok() {
    let lake = fixture::lake();
    run_fixture(lake.path(), None).await;
    assert_eq!(report(lake.path(), "reconciliation_evidence.csv"), EVIDENCE);
}

/// SPEC 1.4's own layout: normalized CSVs directly under `invoices/` are
/// read; an object under `invoices/` that no source reads is named (log,
/// manifest, finance page) and makes `check` fail; markers are only listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoices_in_the_spec_layout_are_read_and_unread_ones_named() {
    let lake = fixture::lake();
    let dir = lake.path();
    std::fs::rename(
        dir.join("invoices/normalized/2026-03.csv"),
        dir.join("invoices/2026-03.csv"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("invoices/misc")).unwrap();
    std::fs::write(dir.join("invoices/misc/credits.json"), "{}").unwrap();
    std::fs::write(dir.join("invoices/_SUCCESS"), "").unwrap();
    let summary = run_fixture(dir, None).await;
    assert_eq!(summary.outcome, ExitKind::Ok);
    // The same lines as from invoices/normalized/: the same reconciliation.
    assert_eq!(report(dir, "reconciliation.csv"), DAY);
    assert_eq!(report(dir, "reconciliation_mtd.csv"), MTD);
    let m = &summary.manifest;
    let read: Vec<&str> = m.inputs.invoices.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        read,
        [
            "invoices/openai/costs-2026-03.json",
            "invoices/anthropic/cost_report-2026-03-08.json",
            "invoices/2026-03.csv",
        ]
    );
    let skipped: Vec<(&str, &str)> = m
        .inputs
        .skipped
        .iter()
        .map(|o| (o.key.as_str(), o.reason.as_str()))
        .collect();
    assert_eq!(
        skipped,
        [
            (
                "invoices/_SUCCESS",
                "hidden or marker file (name starts with `_` or `.`)"
            ),
            (
                "invoices/misc/credits.json",
                "no invoice source reads it (see [[reconcile.sources]])"
            ),
            (
                "requests/date=2026-03-08/_SUCCESS",
                "hidden or marker file (name starts with `_` or `.`)"
            ),
        ]
    );
    let html = report(dir, "finance.html");
    assert!(html.contains("invoices/misc/credits.json"), "{html}");
    // `check` refuses the layout, naming the object; the marker is no error.
    let err = tokenledger::pipeline::check(&config(dir, None))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("invoice object invoices/misc/credits.json: no invoice source reads it"),
        "{text}"
    );
    assert!(!text.contains("invoices/_SUCCESS"), "{text}");
    assert_eq!(err.kind(), ExitKind::Usage);
}
