//! The dashboards and mail bodies: Tera templates from `templates/`,
//! embedded at build time and parsed at start-up ([`templates`]).
//!
//! HTML templates are registered under names ending in `.html`, so Tera
//! escapes every value (a department called `<script>` shows as text); the
//! only unescaped markup is the charts' SVG, which we draw (and whose labels
//! plotters escapes). Text templates end in `.txt` and are not HTML-escaped.
//! Pages carry no external assets: CSS and charts are inline. Pure.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Serialize;
use tera::{Context, Tera};

use super::charts::Chart;
use super::model::Report;
use crate::error::{Error, Result};

/// One embedded template: (registered name, file in `templates/`, text).
struct Template {
    name: &'static str,
    file: &'static str,
    text: &'static str,
}

macro_rules! templates {
    ($(($name:literal, $file:literal)),* $(,)?) => {
        &[$(Template { name: $name, file: $file, text: include_str!(concat!("../../templates/", $file)) }),*]
    };
}

static TEMPLATES: &[Template] = templates!(
    ("base.html", "base.html.tera"),
    ("ops.html", "ops.html.tera"),
    ("finance.html", "finance.html.tera"),
    ("index.html", "index.html.tera"),
    ("showback.html", "showback.html.tera"),
    ("mail.txt", "mail.txt.tera"),
);

/// The template files, for checks.
pub fn template_files() -> impl Iterator<Item = &'static str> {
    TEMPLATES.iter().map(|t| t.file)
}

fn build() -> Result<Tera> {
    let mut tera = Tera::new();
    tera.autoescape_on(vec![".html"]);
    for t in TEMPLATES {
        tera.add_raw_template(t.name, t.text)
            .map_err(|e| Error::Template {
                file: t.file.to_string(),
                message: render_error(&e),
            })?;
    }
    Ok(tera)
}

fn render_error(e: &tera::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The parsed templates (parsed once; a parse error names the file).
pub fn templates() -> Result<&'static Tera> {
    static TERA: OnceLock<std::result::Result<Tera, String>> = OnceLock::new();
    TERA.get_or_init(|| build().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| Error::Internal(e.clone()))
}

/// Parse every template (for `tokenledger check` and start-up).
pub fn check() -> Result<usize> {
    build().map(|_| TEMPLATES.len())
}

/// Where a page is read: the stored site (inline SVG) or a mail (CID images).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Medium {
    Site,
    Mail,
}

/// Links from a page: to the other dashboard, the CSVs, the index.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Links {
    pub ops: String,
    pub finance: String,
    pub index: String,
    pub csv: BTreeMap<String, String>,
}

/// Chart markup for a medium: inline SVG, or an `<img>` of the CID image.
fn chart_markup(charts: &[Chart], medium: Medium) -> BTreeMap<String, String> {
    charts
        .iter()
        .map(|c| {
            let markup = match medium {
                Medium::Site => c.svg.clone(),
                Medium::Mail => format!(
                    "<img src=\"cid:chart-{}\" alt=\"{}\" width=\"600\" style=\"width:100%;max-width:600px;height:auto\">",
                    c.name,
                    escape(&c.alt)
                ),
            };
            (c.name.replace('-', "_"), markup)
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
}

/// Render one page of a report.
pub fn page(
    name: &str,
    report: &Report,
    charts: &[Chart],
    medium: Medium,
    links: &Links,
    extra: &Context,
) -> Result<String> {
    let tera = templates()?;
    let mut ctx = Context::new();
    ctx.insert("r", report);
    ctx.insert("charts", &chart_markup(charts, medium));
    ctx.insert("medium", &medium);
    ctx.insert("links", links);
    ctx.insert(
        "program",
        &format!("tokenledger {}", env!("CARGO_PKG_VERSION")),
    );
    // What a letter over mail.max_letter_bytes left out (empty elsewhere).
    ctx.insert("mail_note", "");
    ctx.extend(extra.clone());
    tera.render(name, &ctx).map_err(|e| Error::Template {
        file: TEMPLATES
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.file.to_string())
            .unwrap_or_else(|| name.to_string()),
        message: render_error(&e),
    })
}

/// One day on the index page.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IndexDay {
    pub date: String,
    /// `preliminary`, `final`, and `restated +$x` where a later run
    /// restated the day.
    pub status: String,
    pub requests: String,
    pub spend: String,
    pub unpriced: String,
    pub alerts: u64,
    pub quality: String,
}

/// The index of every published day, newest first.
pub fn index(days: &[IndexDay]) -> Result<String> {
    let tera = templates()?;
    let mut ctx = Context::new();
    ctx.insert("days", days);
    ctx.insert(
        "program",
        &format!("tokenledger {}", env!("CARGO_PKG_VERSION")),
    );
    tera.render("index.html", &ctx)
        .map_err(|e| Error::Template {
            file: "index.html.tera".into(),
            message: render_error(&e),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        assert_eq!(check().unwrap(), TEMPLATES.len());
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = template_files().map(str::to_string).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded, "every file in templates/ is embedded");
    }

    #[test]
    fn the_index_escapes_what_it_shows() {
        let html = index(&[IndexDay {
            date: "2026-10-31".into(),
            status: "final, restated +$12.400000".into(),
            requests: "1,000".into(),
            spend: "$<b>1</b>".into(),
            unpriced: "0".into(),
            alerts: 1,
            quality: "ok".into(),
        }])
        .unwrap();
        assert!(
            html.contains("$&lt;b&gt;1&lt;&#x2f;b&gt;") || html.contains("$&lt;b&gt;1&lt;/b&gt;"),
            "{html}"
        );
        assert!(html.contains("date=2026-10-31/finance.html"));
        assert!(
            html.contains("<td>final, restated +$12.400000</td>"),
            "{html}"
        );
    }
}
