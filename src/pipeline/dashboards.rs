//! The day's dashboards, report site and mails, from results already
//! computed: the report model and its charts ([`Dashboards::build`]), the
//! stored pages and chart images ([`Dashboards::site`]), the index of every
//! published day ([`publish_index`]) and one letter per audience
//! ([`Dashboards::letters`]). The numbers come from the same result batches
//! the CSVs are written from; nothing here queries the lake. The only I/O is
//! [`publish_index`], which lists and reads manifests and writes the index.

use arrow::array::{BooleanArray, RecordBatch};
use bytes::Bytes;
use chrono::NaiveDate;
use futures::{StreamExt, TryStreamExt};
use tera::Context;
use tracing::warn;

use crate::deliver::Output;
use crate::deliver::mail::{Letter, MailConfig, ReportKind};
use crate::error::{Error, Result};
use crate::lake::{Location, Stores, partition_dir};
use crate::manifest::Published;
use crate::queries::Typed;
use crate::queries::rows::{FinanceByDimension, RollupDaily, decode};
use crate::report::charts::{self, Chart};
use crate::report::html::{self, IndexDay, Links, Medium};
use crate::report::model::{self, Report};
use crate::report::{csv_bytes, format};

/// The day's report model with its charts drawn.
#[derive(Debug)]
pub struct Dashboards {
    pub report: Report,
    pub ops_charts: Vec<Chart>,
    pub finance_charts: Vec<Chart>,
}

/// A CSV export as stored: (name without `.csv`, bytes).
pub type Csv = (&'static str, Bytes);

impl Dashboards {
    /// Build the model and draw its charts.
    pub fn build(inputs: &model::Inputs<'_>) -> Result<Dashboards> {
        let report = model::build(inputs)?;
        let (ops, finance) = model::chart_specs(&report);
        let draw = |specs: Vec<model::NamedSpec>| -> Result<Vec<Chart>> {
            specs
                .into_iter()
                .map(|(name, title, alt, spec)| charts::draw(&name, &title, alt, &spec))
                .collect()
        };
        Ok(Dashboards {
            ops_charts: draw(ops)?,
            finance_charts: draw(finance)?,
            report,
        })
    }

    /// `ops.html`, `finance.html` and `charts/<name>.png` under the day's
    /// reports directory. Pages link to each other, the CSVs and the index
    /// by relative links, so the site can be served from any prefix.
    pub fn site(&self, reports: &Location) -> Result<Vec<Output>> {
        let links = Links {
            ops: "ops.html".into(),
            finance: "finance.html".into(),
            index: "../index.html".into(),
            csv: crate::pipeline::csv_outputs(true)
                .iter()
                .map(|n| (n.to_string(), format!("{n}.csv")))
                .collect(),
        };
        let none = Context::new();
        let mut out = vec![
            Output::new(
                reports.join("ops.html"),
                html::page(
                    "ops.html",
                    &self.report,
                    &self.ops_charts,
                    Medium::Site,
                    &links,
                    &none,
                )?,
            ),
            Output::new(
                reports.join("finance.html"),
                html::page(
                    "finance.html",
                    &self.report,
                    &self.finance_charts,
                    Medium::Site,
                    &links,
                    &none,
                )?,
            ),
        ];
        for c in self.ops_charts.iter().chain(&self.finance_charts) {
            out.push(Output::new(
                reports.join(&format!("charts/{}.png", c.name)),
                c.png.clone(),
            ));
        }
        Ok(out)
    }

    /// One letter per configured audience and showback department.
    pub fn letters(&self, mail: &MailConfig, ctx: &LetterContext<'_>) -> Result<Vec<Letter>> {
        let r = &self.report;
        let date = ctx.date;
        let day = partition_dir(date);
        let url = |rel: &str| {
            ctx.base_url
                .and_then(|b| b.join(rel).ok())
                .map(|u| u.to_string())
        };
        let links = Links {
            ops: url(&format!("{day}/ops.html")).unwrap_or_default(),
            finance: url(&format!("{day}/finance.html")).unwrap_or_default(),
            index: url("index.html").unwrap_or_default(),
            csv: crate::pipeline::csv_outputs(true)
                .iter()
                .filter_map(|n| Some((n.to_string(), url(&format!("{day}/{n}.csv"))?)))
                .collect(),
        };
        let mut flags = String::new();
        if !r.alerts.is_empty() {
            flags.push_str("[ALERT] ");
        }
        if r.anomalies.iter().any(|a| a.severity == "high") {
            flags.push_str("[ANOMALY] ");
        }
        if ctx.quality_failed {
            flags.push_str("[DATA QUALITY] ");
        }
        let mut letters = Vec::new();
        for a in &mail.audiences {
            let (page, charts, subject, link) = match a.kind {
                ReportKind::Ops => (
                    "ops.html",
                    &self.ops_charts,
                    format!(
                        "{flags}LLM operations {date}: {} requests, spend {}{}",
                        format::int(r.headline_requests),
                        r.headline_spend,
                        match r.alerts.len() {
                            0 => String::new(),
                            1 => ", 1 alert".into(),
                            n => format!(", {n} alerts"),
                        }
                    ),
                    &links.ops,
                ),
                ReportKind::Finance => (
                    "finance.html",
                    &self.finance_charts,
                    format!(
                        "{flags}{}LLM spend {date}: {} ({} requests, {} unpriced)",
                        if ctx.budget_alerts.is_empty() {
                            ""
                        } else {
                            "[BUDGET] "
                        },
                        r.headline_spend,
                        r.finance.requests,
                        r.finance.unpriced_requests
                    ),
                    &links.finance,
                ),
            };
            let kind = match a.kind {
                ReportKind::Ops => "ops",
                ReportKind::Finance => "finance",
            };
            let mut extra = Context::new();
            extra.insert("kind", kind);
            extra.insert("link", link);
            if a.kind == ReportKind::Finance && !ctx.restated.is_empty() {
                extra.insert("restated", ctx.restated);
            }
            if a.kind == ReportKind::Finance && !ctx.budget_alerts.is_empty() {
                extra.insert("budget_alerts", ctx.budget_alerts);
            }
            let attachments = match a.kind {
                ReportKind::Ops => Vec::new(),
                ReportKind::Finance => ctx
                    .csvs
                    .iter()
                    .map(|(name, bytes)| {
                        (
                            format!("{name}-{date}.csv"),
                            "text/csv; charset=utf-8".to_string(),
                            bytes.clone(),
                        )
                    })
                    .collect(),
            };
            let render = |r: &Report, extra: &Context| -> Result<(String, String)> {
                Ok((
                    html::page("mail.txt", r, &[], Medium::Mail, &links, extra)?,
                    html::page(page, r, charts, Medium::Mail, &links, extra)?,
                ))
            };
            let (text, html_part) = render(r, &extra)?;
            let letter = Letter {
                name: a.name.clone(),
                subject: subject_line(&subject),
                to: a.to.clone(),
                cc: a.cc.clone(),
                text,
                html: html_part,
                inline: charts
                    .iter()
                    .map(|c| (format!("chart-{}", c.name), c.png.clone()))
                    .collect(),
                attachments,
            };
            letters.push(fit(letter, mail, r, &extra, link, &render)?);
        }
        for s in &mail.showback {
            let slice = model::showback(ctx.rollup_daily, &s.dept);
            let slug = slug(&s.dept);
            let rows = only_dept(ctx.finance_by_dimension, &s.dept)?;
            let mut extra = Context::new();
            extra.insert("kind", "showback");
            extra.insert("dept", &s.dept);
            extra.insert("slice", &slice);
            let dept_budgets: Vec<&model::BudgetLine> = r
                .budgets
                .iter()
                .filter(|b| b.dept.as_deref() == Some(s.dept.as_str()))
                .collect();
            extra.insert("dept_budgets", &dept_budgets);
            extra.insert("link", &links.finance);
            letters.push(Letter {
                name: format!("showback-{slug}"),
                subject: subject_line(&format!("LLM spend {date} for {}: {}", s.dept, slice.spend)),
                to: s.to.clone(),
                cc: Vec::new(),
                text: html::page("mail.txt", r, &[], Medium::Mail, &links, &extra)?,
                html: html::page("showback.html", r, &[], Medium::Mail, &links, &extra)?,
                inline: Vec::new(),
                attachments: vec![(
                    format!("finance_by_dimension-{date}-{slug}.csv"),
                    "text/csv; charset=utf-8".into(),
                    Bytes::from(csv_bytes(&ctx.finance_by_dimension.schema, &rows)?),
                )],
            });
        }
        Ok(letters)
    }
}

/// Renders a letter's text and HTML parts from a report and extra context.
type Render<'a> = dyn Fn(&Report, &Context) -> Result<(String, String)> + 'a;

/// Rows a table of a letter keeps when the whole letter is too large.
pub const LETTER_TOP_ROWS: usize = 25;

/// The size of a letter as it goes over the wire (MIME, base64 parts).
fn letter_size(mail: &MailConfig, letter: &Letter) -> Result<usize> {
    let from = match &mail.from {
        Some(f) => f.clone(),
        None => "tokenledger <tokenledger@localhost>"
            .parse()
            .map_err(|e| Error::Internal(format!("placeholder sender: {e}")))?,
    };
    Ok(
        crate::deliver::mail::message(&from, letter, "<size@tokenledger.invalid>")?
            .formatted()
            .len(),
    )
}

/// Keep a letter under `mail.max_letter_bytes` (many servers refuse more
/// than 10 MB): first the CSV attachments are left out (the letter links
/// the report), then the long tables keep their [`LETTER_TOP_ROWS`] largest
/// rows. Whatever is left out is said at the top of the letter.
fn fit(
    mut letter: Letter,
    mail: &MailConfig,
    r: &Report,
    extra: &Context,
    link: &str,
    render: &Render<'_>,
) -> Result<Letter> {
    let max = mail.max_letter_bytes;
    let size = letter_size(mail, &letter)?;
    if size <= max {
        return Ok(letter);
    }
    let mut left_out = Vec::new();
    let where_ = if link.is_empty() {
        "the published report".to_string()
    } else {
        link.to_string()
    };
    if !letter.attachments.is_empty() {
        let names: Vec<String> = letter.attachments.iter().map(|a| a.0.clone()).collect();
        left_out.push(format!(
            "the CSV attachments ({}), which are in {where_}",
            names.join(", ")
        ));
        letter.attachments.clear();
    }
    let note = |left_out: &[String], size: usize| {
        format!(
            "This letter would have been {} bytes, over the {} byte limit (mail.max_letter_bytes): left out {}.",
            size,
            max,
            left_out.join("; ")
        )
    };
    let mut extra = extra.clone();
    extra.insert("mail_note", &note(&left_out, size));
    let (text, html_part) = render(r, &extra)?;
    (letter.text, letter.html) = (text, html_part);
    if letter_size(mail, &letter)? > max {
        let mut short = r.clone();
        let f = &mut short.finance;
        let cut = |n: usize, what: &str, left_out: &mut Vec<String>| {
            if n > LETTER_TOP_ROWS {
                left_out.push(format!(
                    "{} of {n} {what} (the {LETTER_TOP_ROWS} largest are shown; all are in {where_})",
                    n - LETTER_TOP_ROWS
                ));
            }
        };
        cut(f.by_dept.len(), "departments", &mut left_out);
        cut(f.by_project.len(), "projects", &mut left_out);
        cut(f.drivers.len(), "cost drivers", &mut left_out);
        cut(f.per_model.len(), "models", &mut left_out);
        cut(short.ops.models.len(), "models (operations)", &mut left_out);
        f.by_dept.truncate(LETTER_TOP_ROWS);
        f.by_project.truncate(LETTER_TOP_ROWS);
        f.drivers.truncate(LETTER_TOP_ROWS);
        f.per_model.truncate(LETTER_TOP_ROWS);
        short.ops.models.truncate(LETTER_TOP_ROWS);
        extra.insert("mail_note", &note(&left_out, size));
        let (text, html_part) = render(&short, &extra)?;
        (letter.text, letter.html) = (text, html_part);
    }
    let now = letter_size(mail, &letter)?;
    if now > max {
        warn!(letter = %letter.name, bytes = now, max, "letter still over mail.max_letter_bytes after leaving out attachments and long tables");
    } else {
        tracing::info!(letter = %letter.name, was = size, bytes = now, max, "letter shortened to fit mail.max_letter_bytes");
    }
    Ok(letter)
}

/// What letters are made of besides the report.
#[derive(Debug)]
pub struct LetterContext<'a> {
    pub date: NaiveDate,
    pub base_url: Option<&'a url::Url>,
    /// The stored CSV exports, attached to the finance mail byte for byte.
    pub csvs: &'a [Csv],
    pub rollup_daily: &'a [RollupDaily],
    pub finance_by_dimension: &'a Typed<FinanceByDimension>,
    pub quality_failed: bool,
    /// Earlier days this run restated (late rows), one line each; the
    /// finance letter lists them.
    pub restated: &'a [String],
    /// Budget thresholds crossed and not yet alerted this month, one line
    /// each: the finance letters list them and say `[BUDGET]`.
    pub budget_alerts: &'a [String],
}

/// A subject on one line: control characters (a hostile tag with a newline)
/// become spaces.
fn subject_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A file-name-safe, unique name for a department: its ASCII letters and
/// digits, and a digest of the exact name (`finance & ops` and `finance-ops`
/// stay apart).
pub fn slug(dept: &str) -> String {
    let mut s = String::new();
    for c in dept.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            s.push(c);
        } else if !s.ends_with('-') {
            s.push('-');
        }
        if s.len() >= 32 {
            break;
        }
    }
    let s = s.trim_matches('-');
    let digest = crate::manifest::sha256(dept.as_bytes());
    let short = &digest["sha256:".len().."sha256:".len() + 8];
    if s.is_empty() {
        short.to_string()
    } else {
        format!("{s}-{short}")
    }
}

/// The rows of `finance_by_dimension` whose `dept` is `dept`.
fn only_dept(table: &Typed<FinanceByDimension>, dept: &str) -> Result<Vec<RecordBatch>> {
    table
        .batches
        .iter()
        .map(|b| {
            let rows: Vec<FinanceByDimension> = decode(&table.schema, std::slice::from_ref(b))?;
            let keep: BooleanArray = rows.iter().map(|r| Some(r.dept == dept)).collect();
            arrow::compute::filter_record_batch(b, &keep)
                .map_err(|e| Error::Internal(e.to_string()))
        })
        .collect()
}

/// Rebuild `index.html` under the reports root from every published day's
/// manifest, newest first; returns the number of days listed.
pub async fn publish_index(stores: &Stores, reports: &Location) -> Result<usize> {
    let now = chrono::Utc::now();
    let objects = stores.list(reports).await?;
    let manifests: Vec<(String, Location)> = objects
        .into_iter()
        .filter_map(|o| {
            let rel = o.location.relative_to(reports)?;
            let date = rel.strip_prefix("date=")?.strip_suffix("/manifest.json")?;
            NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
            Some((date.to_string(), o.location))
        })
        .collect();
    let read = manifests.iter().map(|(date, loc)| async move {
        let bytes = stores.get(loc).await?.1;
        Ok::<_, Error>((date.clone(), Published::from_json(&bytes, &loc.to_string())))
    });
    let mut days: Vec<IndexDay> = futures::stream::iter(read)
        .buffered(16)
        .map_ok(|(date, published)| match published {
            Ok(p) => IndexDay {
                status: standing_of(&p, now),
                date,
                requests: format::int(p.headline.requests as i64),
                spend: spend_of(&p.headline.cost_usd),
                unpriced: format::int(p.headline.unpriced_requests as i64),
                alerts: p.headline.alerts,
                quality: p.headline.data_quality,
            },
            Err(e) => {
                warn!(error = %e, "report index: day listed without figures");
                IndexDay {
                    status: "—".into(),
                    date,
                    requests: "—".into(),
                    spend: "—".into(),
                    unpriced: "—".into(),
                    alerts: 0,
                    quality: "unknown (unreadable manifest)".into(),
                }
            }
        })
        .try_collect()
        .await?;
    days.sort_by(|a, b| b.date.cmp(&a.date));
    let html = html::index(&days)?;
    stores
        .put(&reports.join("index.html"), Bytes::from(html))
        .await?;
    Ok(days.len())
}

/// A day's standing as the index lists it at `now`: preliminary while its
/// lateness window is open, final after; restated days say by how much
/// (`restated +$12.400000`).
fn standing_of(p: &crate::manifest::Published, now: chrono::DateTime<chrono::Utc>) -> String {
    let open = p
        .final_after
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| now < t);
    let status = match (&p.status, open) {
        (None, _) => "—",
        (Some(_), true) => "preliminary",
        (Some(_), false) => "final",
    };
    match &p.restated_from {
        Some(r) => format!(
            "{status}, restated {}",
            crate::pipeline::settle::delta_text(&r.cost_usd, &p.headline.cost_usd)
        ),
        None => status.to_string(),
    }
}

/// A manifest's 6-decimal spend for people.
fn spend_of(cost_usd: &str) -> String {
    cost_usd
        .parse::<rust_decimal::Decimal>()
        .ok()
        .and_then(|d| crate::money::to_scaled(d, 6))
        .map(|v| format::usd(v, 6))
        .unwrap_or_else(|| "—".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_safe_and_keep_names_apart() {
        let a = slug("finance & ops");
        let b = slug("finance-ops");
        assert!(a.starts_with("finance-ops-") && b.starts_with("finance-ops-"));
        assert_ne!(a, b);
        let hostile = slug("<script>alert(1)</script>");
        assert!(
            hostile
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{hostile}"
        );
        assert_eq!(slug("日本").len(), 8);
    }

    #[test]
    fn subjects_stay_on_one_line() {
        assert_eq!(subject_line("a\r\nBcc: x"), "a  Bcc: x");
    }

    #[test]
    fn index_spend_is_formatted_from_the_manifest_decimal() {
        assert_eq!(spend_of("1234.565000"), "$1,234.56");
        assert_eq!(spend_of(""), "—");
    }
}
