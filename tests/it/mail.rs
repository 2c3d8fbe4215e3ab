//! Mail over real SMTP (a loopback server, `smtp.rs`), parsed back with a
//! MIME parser: recipients, subjects, text and HTML parts, inline chart
//! images and CSV attachments byte for byte; exactly once per day and
//! audience, `--resend`, a failed send and the rerun that completes it.

use std::path::{Path, PathBuf};

use mail_parser::{MessageParser, MimeHeaders};
use tokenledger::error::ExitKind;
use tokenledger::pipeline::{self, RunOptions};

use crate::dashboards::{ALERTS, config};
use crate::fixture::{self, DATE};
use crate::smtp::{Received, SilentAt, SmtpServer, dead_port, silent_relay};

/// Mail settings for a relay on loopback at `port`, plain (no TLS) as the
/// config must say explicitly; `extra` adds `[mail.smtp]` keys.
pub fn mail_toml(port: u16, extra: &str) -> String {
    format!(
        r#"{ALERTS}
[report]
public_base_url = "https://reports.example.com/llm/reports"

[mail]
transport = "smtp"
from = "tokenledger <ledger@example.com>"

[mail.smtp]
host = "127.0.0.1"
port = {port}
timeout_secs = 5
{extra}

[[mail.audiences]]
name = "ops"
report = "ops"
to = ["oncall@example.com"]

[[mail.audiences]]
name = "finance"
report = "finance"
to = ["fin@example.com"]
cc = ["cfo@example.com"]

[[mail.showback]]
dept = "research"
to = ["research@example.com"]
"#
    )
}

fn plain(port: u16) -> String {
    mail_toml(port, "security = \"plain\"")
}

fn day_dir(lake: &Path) -> PathBuf {
    lake.join("reports").join(format!("date={DATE}"))
}

fn by_subject<'a>(received: &'a [Received], prefix: &str) -> &'a Received {
    received
        .iter()
        .find(|r| {
            MessageParser::default()
                .parse(&r.data)
                .and_then(|m| m.subject().map(|s| s.contains(prefix)))
                .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("no mail with {prefix:?} in its subject"))
}

/// The finance_by_dimension rows of research (metrics.rs), with the header.
const RESEARCH_CSV: &str = "\
date,dept,project,task,provider,model,requests,input_tokens,output_tokens,cost_usd,cost_per_1k_usd,cache_savings_usd,logged_cost_usd,unpriced_requests
2026-03-08,research,alpha,chat,mistral,mistral-large,1,100,50,,,,0.000300,1
2026-03-08,research,alpha,chat,openai,gpt-4o,3,3100,700,0.013250,0.003487,0.000000,0.013000,0
2026-03-08,research,beta,summarize,openai,gpt-4o,1,1000,1000,0.010000,0.005000,0.000000,,0
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_audience_gets_its_report_once_until_resent() {
    let server = SmtpServer::start();
    let lake = fixture::lake();
    let cfg = config(lake.path(), &plain(server.port));
    let summary = pipeline::run(&cfg, fixture::date()).await.unwrap();
    assert_eq!(summary.outcome, ExitKind::Ok);
    let received = server.received();
    assert_eq!(received.len(), 3);
    let dir = day_dir(lake.path());

    // Ops: the on-call list; subject with the date, headline spend, [ALERT].
    let ops = by_subject(&received, "LLM operations");
    assert_eq!(ops.to, ["oncall@example.com"]);
    assert_eq!(ops.from, "ledger@example.com");
    let m = MessageParser::default().parse(&ops.data).unwrap();
    assert_eq!(
        m.subject(),
        Some("[ALERT] LLM operations 2026-03-08: 13 requests, spend $0.08, 2 alerts")
    );
    assert_eq!(
        m.to().unwrap().first().unwrap().address(),
        Some("oncall@example.com")
    );
    let text = m.body_text(0).unwrap();
    assert!(text.contains("ALERTS (2):"), "{text}");
    assert!(
        text.contains("- all models: error rate 7.69% (threshold > 5.00%)"),
        "{text}"
    );
    assert!(text.contains("Requests: 13"), "{text}");
    assert!(
        text.contains("https://reports.example.com/llm/reports/date=2026-03-08/ops.html"),
        "{text}"
    );
    let html = m.body_html(0).unwrap();
    assert!(
        html.contains("<img src=\"cid:chart-requests-by-hour\""),
        "charts are CID images in mail"
    );
    assert!(!html.contains("<svg"), "no SVG in mail");
    assert!(
        html.contains(
            "href=\"https://reports.example.com/llm/reports/date=2026-03-08/finance.html\""
        )
    );
    let inline: Vec<(String, Vec<u8>)> = m
        .attachments()
        .filter(|p| p.content_id().is_some())
        .map(|p| (p.content_id().unwrap().to_string(), p.contents().to_vec()))
        .collect();
    assert_eq!(inline.len(), 3);
    for (cid, png) in &inline {
        let name = cid.strip_prefix("chart-").unwrap();
        let stored = std::fs::read(dir.join("charts").join(format!("{name}.png"))).unwrap();
        assert_eq!(png, &stored, "inline image {cid} is the stored chart");
    }

    // Finance: to and cc; the four CSVs attached byte for byte.
    let fin = by_subject(&received, "LLM spend 2026-03-08: ");
    assert_eq!(fin.to, ["fin@example.com", "cfo@example.com"]);
    let m = MessageParser::default().parse(&fin.data).unwrap();
    assert_eq!(
        m.subject(),
        Some("[ALERT] LLM spend 2026-03-08: $0.08 (13 requests, 1 unpriced)")
    );
    assert_eq!(
        m.cc().unwrap().first().unwrap().address(),
        Some("cfo@example.com")
    );
    let text = m.body_text(0).unwrap();
    assert!(
        text.contains("Total spend: $0.08 (exact $0.077882)"),
        "{text}"
    );
    let csvs: Vec<(String, Vec<u8>)> = m
        .attachments()
        .filter(|p| p.content_id().is_none())
        .map(|p| {
            (
                p.attachment_name().unwrap().to_string(),
                p.contents().to_vec(),
            )
        })
        .collect();
    let names: Vec<&str> = csvs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "ops_daily-2026-03-08.csv",
            "ops_by_model-2026-03-08.csv",
            "finance_by_dimension-2026-03-08.csv",
            "data_quality-2026-03-08.csv",
            "reconciliation-2026-03-08.csv",
            "reconciliation_mtd-2026-03-08.csv",
            "reconciliation_by_token_type-2026-03-08.csv",
            "logged_vs_computed-2026-03-08.csv",
            "reconciliation_evidence-2026-03-08.csv",
            "focus_costs-2026-03-08.csv",
            "anomalies-2026-03-08.csv"
        ]
    );
    for (name, bytes) in &csvs {
        let stored = std::fs::read(dir.join(name.replace("-2026-03-08", ""))).unwrap();
        assert_eq!(bytes, &stored, "{name} is the stored CSV byte for byte");
    }
    assert_eq!(
        m.attachments().filter(|p| p.content_id().is_some()).count(),
        5,
        "five finance charts inline"
    );

    // Showback: research's slice only (0.01325 + 0.01 = 0.02325 of 0.077882 = 29.9%).
    let sb = by_subject(&received, "for research");
    assert_eq!(sb.to, ["research@example.com"]);
    let m = MessageParser::default().parse(&sb.data).unwrap();
    assert_eq!(
        m.subject(),
        Some("LLM spend 2026-03-08 for research: $0.02")
    );
    let text = m.body_text(0).unwrap();
    assert!(
        text.contains("Spend: $0.02 (29.9% of all spend), 5 requests, 1 unpriced."),
        "{text}"
    );
    assert!(
        !text.contains("claude-sonnet"),
        "no other department's rows: {text}"
    );
    let att: Vec<_> = m.attachments().collect();
    assert_eq!(att.len(), 1);
    assert_eq!(
        std::str::from_utf8(att[0].contents()).unwrap(),
        RESEARCH_CSV
    );

    // Delivery records; a rerun mails nobody. Each letter carries a
    // Message-ID (recorded), a Date, Auto-Submitted and a List-Id per
    // audience that mail rules can file by.
    let mut ids = Vec::new();
    for (rec, subject) in [("ops", "LLM operations"), ("finance", "LLM spend")] {
        let j: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join(format!("deliveries/{rec}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(j["name"], rec);
        assert!(j["sha256"].as_str().unwrap().starts_with("sha256:"));
        let m = MessageParser::default()
            .parse(&by_subject(&received, subject).data)
            .unwrap();
        let id = m.message_id().unwrap().to_string();
        let run_id = summary.run_id.as_str();
        assert_eq!(id, format!("date=2026-03-08.{rec}.{run_id}@example.com"));
        assert_eq!(j["message_id"], format!("<{id}>"));
        assert!(m.date().is_some(), "{rec}: no Date");
        let raw = String::from_utf8_lossy(&by_subject(&received, subject).data).into_owned();
        assert!(
            raw.contains("\r\nAuto-Submitted: auto-generated\r\n"),
            "{rec}"
        );
        assert!(
            raw.contains(&format!(
                "\r\nList-Id: tokenledger {rec} <{rec}.tokenledger.example.com>\r\n"
            )),
            "{rec}"
        );
        ids.push(id);
    }
    let again = pipeline::run(&cfg, fixture::date()).await.unwrap();
    assert_eq!(again.outcome, ExitKind::Ok);
    let d = again.deliveries.unwrap();
    assert!(d.sent.is_empty());
    assert_eq!(d.skipped.len(), 3);
    assert_eq!(server.received().len(), 3);

    // --resend mails every audience again.
    let resent = pipeline::run_with(
        &cfg,
        fixture::date(),
        &RunOptions {
            resend: true,
            ..RunOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(resent.deliveries.unwrap().sent.len(), 3);
    assert_eq!(server.received().len(), 6);
    // A resend is a new message: its own Message-ID.
    let again = server.received();
    let ops_again = MessageParser::default()
        .parse(
            &again[3..]
                .iter()
                .find(|r| String::from_utf8_lossy(&r.data).contains("LLM operations"))
                .unwrap()
                .data,
        )
        .unwrap()
        .message_id()
        .unwrap()
        .to_string();
    assert_ne!(ops_again, ids[0]);
    assert!(ops_again.ends_with("@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_send_keeps_the_reports_and_the_next_run_sends_only_what_is_missing() {
    let lake = fixture::lake();
    let dir = day_dir(lake.path());

    // The server is down: exit code 5, every report published.
    let down = config(lake.path(), &plain(dead_port()));
    let summary = pipeline::run(&down, fixture::date()).await.unwrap();
    assert_eq!(summary.outcome, ExitKind::Delivery);
    assert_eq!(ExitKind::Delivery.code(), 5);
    let d = summary.deliveries.unwrap();
    assert!(d.sent.is_empty());
    assert_eq!(d.failed.len(), 3);
    for f in [
        "manifest.json",
        "ops.html",
        "finance.html",
        "finance_by_dimension.csv",
        "charts/spend-trend.png",
    ] {
        assert!(dir.join(f).is_file(), "{f} was published");
    }
    assert!(lake.path().join("reports/index.html").is_file());
    assert!(!dir.join("deliveries").exists());

    // The finance mailbox refuses mail: the others go out, finance fails.
    let picky = SmtpServer::start_with(None, &["fin@example.com"]);
    let summary = pipeline::run(&config(lake.path(), &plain(picky.port)), fixture::date())
        .await
        .unwrap();
    assert_eq!(summary.outcome, ExitKind::Delivery);
    let d = summary.deliveries.unwrap();
    assert_eq!(d.sent.len(), 2);
    assert_eq!(
        d.failed.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
        ["finance"]
    );
    assert!(d.failed[0].1.contains("550"), "{:?}", d.failed);
    assert_eq!(picky.received().len(), 2);

    // The next run mails only finance, once.
    let healthy = SmtpServer::start();
    let summary = pipeline::run(&config(lake.path(), &plain(healthy.port)), fixture::date())
        .await
        .unwrap();
    assert_eq!(summary.outcome, ExitKind::Ok);
    let received = healthy.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].to, ["fin@example.com", "cfo@example.com"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_from_a_secret_file_and_tls_is_required_unless_plain_is_configured() {
    let server = SmtpServer::start_with(Some(("ledger", "correct horse")), &[]);
    let lake = fixture::lake();
    let secret = lake.path().join("smtp-password");
    std::fs::write(&secret, "correct horse\n").unwrap();
    let extra = format!(
        "security = \"plain\"\nusername = \"ledger\"\npassword_file = \"{}\"",
        secret.display()
    );
    let summary = pipeline::run(
        &config(lake.path(), &mail_toml(server.port, &extra)),
        fixture::date(),
    )
    .await
    .unwrap();
    assert_eq!(summary.outcome, ExitKind::Ok);
    let received = server.received();
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|r| r.user.as_deref() == Some("ledger")));

    // Without `security`, STARTTLS is required: this relay offers none, so
    // nothing is sent in the clear.
    let other = fixture::lake();
    let strict = SmtpServer::start();
    let summary = pipeline::run(
        &config(other.path(), &mail_toml(strict.port, "")),
        fixture::date(),
    )
    .await
    .unwrap();
    assert_eq!(summary.outcome, ExitKind::Delivery);
    assert_eq!(summary.deliveries.unwrap().failed.len(), 3);
    assert!(strict.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_transport_writes_eml_files_into_the_lake() {
    let lake = fixture::lake();
    let toml = plain(1).replace("transport = \"smtp\"", "transport = \"outbox\"");
    let summary = pipeline::run(&config(lake.path(), &toml), fixture::date())
        .await
        .unwrap();
    assert_eq!(summary.outcome, ExitKind::Ok);
    let outbox = lake.path().join(format!("outbox/date={DATE}"));
    let mut files: Vec<String> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3);
    assert_eq!(files[0], "finance.eml");
    assert_eq!(files[1], "ops.eml");
    assert!(files[2].starts_with("showback-research-"), "{files:?}");
    let eml = std::fs::read(outbox.join("finance.eml")).unwrap();
    let m = MessageParser::default().parse(&eml).unwrap();
    assert_eq!(
        m.subject(),
        Some("[ALERT] LLM spend 2026-03-08: $0.08 (13 requests, 1 unpriced)")
    );
    assert_eq!(
        m.attachments().filter(|p| p.content_id().is_none()).count(),
        11
    );
}

/// Three plain letters, as the pipeline renders them (content is not the
/// point here: the relay never takes one).
fn letters() -> Vec<tokenledger::deliver::mail::Letter> {
    ["ops", "finance", "showback-research"]
        .iter()
        .map(|name| tokenledger::deliver::mail::Letter {
            name: name.to_string(),
            subject: format!("LLM report {name}"),
            to: vec!["oncall@example.com".parse().unwrap()],
            cc: Vec::new(),
            text: "text".into(),
            html: "<p>html</p>".into(),
            inline: Vec::new(),
            attachments: Vec::new(),
        })
        .collect()
}

/// A relay that goes silent at any step of the conversation never holds the
/// run: each try ends at `timeout_secs` (1 s here), the letter's three tries
/// end, the relay is taken to be down and the other letters are not tried,
/// so the whole phase ends in about 3 timeouts plus 1 s of backoff, with
/// every letter reported not sent (exit 5 at run level).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_silent_at_any_step_costs_bounded_time() {
    let lake = tempfile::tempdir().unwrap();
    let password = lake.path().join("smtp-password");
    std::fs::write(&password, "secret").unwrap();
    let mut worst = std::time::Duration::ZERO;
    for step in [
        SilentAt::Greeting,
        SilentAt::Ehlo,
        SilentAt::StartTls,
        SilentAt::Auth,
        SilentAt::MailFrom,
        SilentAt::Data,
        SilentAt::EndOfData,
    ] {
        let (port, connections) = silent_relay(step);
        let security = if step == SilentAt::StartTls {
            "starttls"
        } else {
            "plain"
        };
        let extra = format!(
            "security = \"{security}\"\nusername = \"ledger\"\npassword_file = \"{}\"",
            password.display()
        );
        let toml = mail_toml(port, &extra).replace("timeout_secs = 5", "timeout_secs = 1");
        let cfg = config(lake.path(), &toml);
        let stores = tokenledger::lake::Stores::new(cfg.s3.clone());
        let records = cfg.reports.join(&format!("date={DATE}")).join("_mail");
        let started = std::time::Instant::now();
        let d = tokenledger::deliver::mail::deliver(
            &stores,
            &cfg.mail,
            &letters(),
            &records,
            DATE,
            false,
            "run-1",
        )
        .await
        .unwrap();
        let took = started.elapsed();
        worst = worst.max(took);
        assert!(d.sent.is_empty(), "{step:?}: {d:?}");
        assert_eq!(d.failed.len(), 3, "{step:?}: {d:?}");
        assert!(
            d.failed[0].1.contains("no answer within the 1 s timeout"),
            "{step:?}: {}",
            d.failed[0].1
        );
        for (_, why) in &d.failed[1..] {
            assert!(
                why.starts_with(&format!(
                    "not attempted: smtp://127.0.0.1:{port} did not answer for letter ops"
                )),
                "{step:?}: {why}"
            );
        }
        // At most one connection per try of the first letter (lettre's pool
        // may reuse one), none for the others.
        let n = connections.load(std::sync::atomic::Ordering::SeqCst);
        assert!((1..=3).contains(&n), "{step:?}: {n} connections");
        assert!(
            took < std::time::Duration::from_secs(8),
            "{step:?} took {took:?}"
        );
    }
    eprintln!("worst mail phase against a silent relay (timeout 1 s): {worst:?}");
}

/// The budget bounds the whole phase even when the relay answers slowly
/// enough to pass each timeout: here each letter's relay is silent but the
/// budget (1 s) is smaller than one try's timeout (5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mail_budget_bounds_the_whole_phase_and_a_run_exits_5() {
    let (port, _) = silent_relay(SilentAt::Greeting);
    let lake = fixture::lake();
    let toml =
        mail_toml(port, "security = \"plain\"").replace("[mail]\n", "[mail]\nbudget_secs = 1\n");
    let started = std::time::Instant::now();
    let summary = pipeline::run(&config(lake.path(), &toml), fixture::date())
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(summary.outcome, ExitKind::Delivery);
    let d = summary.deliveries.unwrap();
    assert_eq!(d.failed.len(), 3, "{d:?}");
    assert!(
        d.failed[0].1.contains("the mail budget of 1 s ran out"),
        "{}",
        d.failed[0].1
    );
    // The run itself (fixture day, dashboards) takes a few seconds; the
    // mail phase adds about the budget, not 3 letters x 3 tries x 5 s.
    assert!(took < std::time::Duration::from_secs(30), "{took:?}");
    // Everything was published: the reports are there for the rerun.
    assert!(day_dir(lake.path()).join("manifest.json").exists());
}
