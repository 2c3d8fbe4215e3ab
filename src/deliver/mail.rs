//! Mail: the day's reports to their audiences, each sent exactly once.
//!
//! A [`Letter`] is a rendered report for one audience: a plain-text part, an
//! HTML part whose charts are inline PNG images (mail clients do not render
//! SVG), and attachments (the finance CSVs). [`deliver`] sends each letter
//! unless the day already holds its delivery record (`deliveries/<name>.json`
//! under the day's reports), writes the record after a successful send, and
//! reports failures instead of stopping, so a rerun sends only what is
//! missing. Transports: SMTP (STARTTLS or implicit TLS; plain only when
//! configured, for a local relay), or an outbox of `.eml` files in the lake.
//! Credentials never reach a log or a record.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment, Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::deliver::Phase;
use crate::error::{Error, Problems, Result};
use crate::lake::{Location, Secret, Stores};

// ---- `[mail]` as written (validated by `MailConfig::validate`) -------------

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMail {
    /// `none` (default), `smtp`, or `outbox` (write `.eml` files into the lake).
    pub transport: Option<String>,
    pub from: Option<String>,
    /// Where the outbox transport writes (relative to the lake root).
    pub outbox: Option<String>,
    /// The largest letter sent whole, in bytes (default 8000000); larger
    /// ones leave out their attachments, then the tails of long tables.
    pub max_letter_bytes: Option<u64>,
    /// The whole mail phase (every letter and try) ends within this many
    /// seconds (default 300); letters left are reported not sent (exit 5).
    pub budget_secs: Option<u64>,
    #[serde(default)]
    pub smtp: RawSmtp,
    #[serde(default)]
    pub audiences: Vec<RawAudience>,
    #[serde(default)]
    pub showback: Vec<RawShowback>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    pub host: Option<String>,
    pub port: Option<u16>,
    /// `starttls` (default), `tls` (implicit), or `plain` (a local relay only).
    pub security: Option<String>,
    pub username: Option<String>,
    /// The password in a file (a mounted secret) or an environment variable.
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudience {
    pub name: Option<String>,
    /// `ops` or `finance`.
    pub report: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawShowback {
    pub dept: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// Plain connection upgraded with STARTTLS (required), port 587.
    StartTls,
    /// TLS from the first byte, port 465.
    Tls,
    /// No encryption: only for a relay on the same host or network.
    Plain,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub credentials: Option<(String, Secret)>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Default)]
pub enum Transport {
    /// No mail.
    #[default]
    None,
    Smtp(SmtpConfig),
    /// `.eml` files written into the lake (demo, local use).
    Outbox(Location),
}

/// Which dashboard an audience receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    Ops,
    Finance,
}

#[derive(Debug, Clone)]
pub struct Audience {
    pub name: String,
    pub kind: ReportKind,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
}

#[derive(Debug, Clone)]
pub struct Showback {
    pub dept: String,
    pub to: Vec<Mailbox>,
}

#[derive(Debug, Clone)]
pub struct MailConfig {
    pub transport: Transport,
    pub from: Option<Mailbox>,
    pub audiences: Vec<Audience>,
    pub showback: Vec<Showback>,
    /// The largest letter sent whole, in bytes as sent (default 8,000,000:
    /// many servers refuse more than 10 MB).
    pub max_letter_bytes: usize,
    /// The whole mail phase (every letter, every try) ends within this.
    pub budget: Duration,
}

/// Default of `mail.budget_secs`.
pub const MAIL_BUDGET: Duration = Duration::from_secs(300);

/// Default of `mail.max_letter_bytes`.
pub const MAX_LETTER_BYTES: usize = 8_000_000;

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            transport: Transport::default(),
            from: None,
            audiences: Vec::new(),
            showback: Vec::new(),
            max_letter_bytes: MAX_LETTER_BYTES,
            budget: MAIL_BUDGET,
        }
    }
}

fn mailboxes(at: &str, list: &[String], p: &mut Problems) -> Vec<Mailbox> {
    list.iter()
        .filter_map(|a| {
            a.parse::<Mailbox>()
                .map_err(|e| p.push(format!("{at}: `{a}` is not a mail address: {e}")))
                .ok()
        })
        .collect()
}

impl SmtpConfig {
    /// `[mail.smtp]`; every problem goes to `p`.
    fn validate(s: &RawSmtp, p: &mut Problems) -> SmtpConfig {
        let security = match s.security.as_deref().unwrap_or("starttls") {
            "starttls" => Security::StartTls,
            "tls" => Security::Tls,
            "plain" => Security::Plain,
            other => {
                p.push(format!(
                    "mail.smtp.security: `{other}` is not one of starttls, tls, plain"
                ));
                Security::StartTls
            }
        };
        let host = s.host.clone().unwrap_or_else(|| {
            p.push("mail.smtp.host: required with transport = \"smtp\"");
            String::new()
        });
        let password = match (&s.password_file, &s.password_env) {
            (Some(f), None) => match std::fs::read_to_string(f) {
                Ok(v) if !v.trim().is_empty() => {
                    Some(Secret::new(v.trim_end_matches(['\n', '\r'])))
                }
                Ok(_) => {
                    p.push(format!("mail.smtp.password_file: {} is empty", f.display()));
                    None
                }
                Err(e) => {
                    p.push(format!(
                        "mail.smtp.password_file: cannot read {}: {e}",
                        f.display()
                    ));
                    None
                }
            },
            (None, Some(var)) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Some(Secret::new(v)),
                _ => {
                    p.push(format!(
                        "mail.smtp.password_env: environment variable {var} is not set"
                    ));
                    None
                }
            },
            (Some(_), Some(_)) => {
                p.push("mail.smtp: give password_file or password_env, not both");
                None
            }
            (None, None) => None,
        };
        let credentials = match (&s.username, password) {
            (Some(u), Some(pw)) => Some((u.clone(), pw)),
            (None, None) => None,
            (Some(_), None) => {
                p.push("mail.smtp.username: needs password_file or password_env");
                None
            }
            (None, Some(_)) => {
                p.push("mail.smtp: a password needs a username");
                None
            }
        };
        SmtpConfig {
            host,
            port: s.port.unwrap_or(match security {
                Security::StartTls => 587,
                Security::Tls => 465,
                Security::Plain => 25,
            }),
            security,
            credentials,
            timeout: Duration::from_secs(s.timeout_secs.unwrap_or(30).clamp(1, 600)),
        }
    }
}

/// `[[mail.audiences]]`: each with a unique name, a report and recipients.
fn audiences(raw: &[RawAudience], p: &mut Problems) -> Vec<Audience> {
    let mut names = std::collections::BTreeSet::new();
    raw.iter()
        .enumerate()
        .filter_map(|(i, a)| {
            let at = format!("mail.audiences[{i}]");
            let kind = match a.report.as_deref() {
                Some("ops") => Some(ReportKind::Ops),
                Some("finance") => Some(ReportKind::Finance),
                other => {
                    p.push(format!(
                        "{at}.report: `{}` is not ops or finance",
                        other.unwrap_or("")
                    ));
                    None
                }
            };
            let name = a
                .name
                .clone()
                .unwrap_or_else(|| a.report.clone().unwrap_or_default());
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                || name.is_empty()
            {
                p.push(format!(
                    "{at}.name: `{name}` must be letters, digits, - or _"
                ));
            }
            if !names.insert(name.clone()) {
                p.push(format!("{at}.name: `{name}` is used twice"));
            }
            let to = mailboxes(&format!("{at}.to"), &a.to, p);
            if a.to.is_empty() {
                p.push(format!("{at}.to: at least one recipient"));
            }
            let cc = mailboxes(&format!("{at}.cc"), &a.cc, p);
            Some(Audience {
                name,
                kind: kind?,
                to,
                cc,
            })
        })
        .collect()
}

impl MailConfig {
    /// Validate `[mail]`, adding every problem to `p`.
    pub fn validate(raw: &RawMail, lake: &Location, p: &mut Problems) -> MailConfig {
        let transport = match raw.transport.as_deref().unwrap_or("none") {
            "none" => Transport::None,
            "outbox" => {
                match Location::parse(raw.outbox.as_deref().unwrap_or("outbox"), Some(lake)) {
                    Ok(l) => Transport::Outbox(l),
                    Err(e) => {
                        p.push(format!("mail.outbox: {e}"));
                        Transport::None
                    }
                }
            }
            "smtp" => Transport::Smtp(SmtpConfig::validate(&raw.smtp, p)),
            other => {
                p.push(format!(
                    "mail.transport: `{other}` is not one of none, smtp, outbox"
                ));
                Transport::None
            }
        };
        let from = raw.from.as_deref().and_then(|f| {
            f.parse::<Mailbox>()
                .map_err(|e| p.push(format!("mail.from: `{f}` is not a mail address: {e}")))
                .ok()
        });
        if !matches!(transport, Transport::None) && from.is_none() && raw.from.is_none() {
            p.push("mail.from: required when mail is sent");
        }
        let audiences = audiences(&raw.audiences, p);
        let showback = raw
            .showback
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let at = format!("mail.showback[{i}]");
                let to = mailboxes(&format!("{at}.to"), &s.to, p);
                if s.to.is_empty() {
                    p.push(format!("{at}.to: at least one recipient"));
                }
                match &s.dept {
                    Some(d) => Some(Showback {
                        dept: d.clone(),
                        to,
                    }),
                    None => {
                        p.push(format!("{at}.dept: required"));
                        None
                    }
                }
            })
            .collect();
        let max_letter_bytes = match raw.max_letter_bytes {
            None => MAX_LETTER_BYTES,
            Some(n) if n >= 100_000 => usize::try_from(n).unwrap_or(usize::MAX),
            Some(n) => {
                p.push(format!(
                    "mail.max_letter_bytes: {n} is below 100000 (a letter needs room for its report)"
                ));
                MAX_LETTER_BYTES
            }
        };
        let budget = match raw.budget_secs {
            None => MAIL_BUDGET,
            Some(n @ 1..=86_400) => Duration::from_secs(n),
            Some(n) => {
                p.push(format!("mail.budget_secs: {n} is out of range 1..=86400"));
                MAIL_BUDGET
            }
        };
        MailConfig {
            transport,
            from,
            audiences,
            showback,
            max_letter_bytes,
            budget,
        }
    }

    pub fn enabled(&self) -> bool {
        !matches!(self.transport, Transport::None)
    }
}

/// A rendered report for one audience.
#[derive(Debug, Clone)]
pub struct Letter {
    /// Audience name, or `showback-<dept>`: the name of its delivery record.
    pub name: String,
    pub subject: String,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub text: String,
    pub html: String,
    /// Inline images: (content id, PNG bytes).
    pub inline: Vec<(String, Vec<u8>)>,
    /// Attachments: (file name, content type, bytes).
    pub attachments: Vec<(String, String, Bytes)>,
}

fn base64(bytes: &[u8]) -> Result<Body> {
    Body::new_with_encoding(bytes.to_vec(), ContentTransferEncoding::Base64)
        .map_err(|_| Error::Internal("base64 body refused".into()))
}

/// The Message-ID of a letter sent by run `run_id` on `day`:
/// `<date=D.<letter>.<run id>@<sender's domain>>`. Each send of a run has its
/// own (a `--resend` is a new message), the same one on every retry of that
/// send, and the delivery record keeps it.
pub fn message_id(from: &Mailbox, letter: &Letter, day: &str, run_id: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '=' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!(
        "<{}.{}.{}@{}>",
        clean(day),
        clean(&letter.name),
        clean(run_id),
        from.email.domain()
    )
}

/// Build the MIME message: mixed(alternative(text, related(html, images)),
/// attachments), with `Message-ID` (see [`message_id`]), `Date`,
/// `Auto-Submitted: auto-generated` (RFC 3834: no auto-replies) and a
/// `List-Id` per audience (`<finance.tokenledger.example.com>`), so that
/// mail rules can file reports.
pub fn message(from: &Mailbox, letter: &Letter, message_id: &str) -> Result<Message> {
    let mail_err = |e: String| Error::Internal(format!("composing mail `{}`: {e}", letter.name));
    let mut related = MultiPart::related().singlepart(SinglePart::html(letter.html.clone()));
    for (cid, png) in &letter.inline {
        let png_type = ContentType::parse("image/png").map_err(|e| mail_err(e.to_string()))?;
        related =
            related.singlepart(Attachment::new_inline(cid.clone()).body(base64(png)?, png_type));
    }
    let alternative = MultiPart::alternative()
        .singlepart(SinglePart::plain(letter.text.clone()))
        .multipart(related);
    let mut mixed = MultiPart::mixed().multipart(alternative);
    for (file, ctype, bytes) in &letter.attachments {
        let ctype = ContentType::parse(ctype).map_err(|e| mail_err(e.to_string()))?;
        // Base64 keeps a CSV byte for byte (no line-ending rewriting).
        mixed = mixed.singlepart(Attachment::new(file.clone()).body(base64(bytes)?, ctype));
    }
    let mut b = Message::builder()
        .from(from.clone())
        .subject(letter.subject.clone())
        .message_id(Some(message_id.to_string()))
        .date_now();
    for to in &letter.to {
        b = b.to(to.clone());
    }
    for cc in &letter.cc {
        b = b.cc(cc.clone());
    }
    let mut m = b.multipart(mixed).map_err(|e| mail_err(e.to_string()))?;
    use lettre::message::header::{HeaderName, HeaderValue};
    let list: String = letter
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    m.headers_mut().insert_raw(HeaderValue::new(
        HeaderName::new_from_ascii_str("Auto-Submitted"),
        "auto-generated".into(),
    ));
    m.headers_mut().insert_raw(HeaderValue::new(
        HeaderName::new_from_ascii_str("List-Id"),
        format!(
            "tokenledger {list} <{list}.tokenledger.{}>",
            from.email.domain()
        ),
    ));
    Ok(m)
}

/// What was sent, to whom, when: written after a successful send.
#[derive(Debug, Clone, Serialize)]
struct Record {
    name: String,
    subject: String,
    to: Vec<String>,
    cc: Vec<String>,
    message_id: String,
    sent_at: String,
    transport: String,
    size: usize,
    sha256: String,
}

/// The outcome of delivering a day's letters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deliveries {
    pub sent: Vec<String>,
    /// Already delivered before (a record exists) and not resent.
    pub skipped: Vec<String>,
    /// (letter, error) of letters that could not be sent.
    pub failed: Vec<(String, String)>,
}

/// Why one letter was not sent, and whether the relay answered at all (a
/// relay that did not answer is not asked again for the day's other letters).
struct SendError {
    message: String,
    no_answer: bool,
}

/// Send one letter over SMTP: up to 3 tries for a temporary failure (4xx, a
/// dropped connection, no answer), each bounded end to end (connect,
/// greeting, STARTTLS, AUTH, envelope, data) by `timeout_secs` and all of
/// them by what is left of the mail phase's budget. lettre bounds only the
/// TCP connect; a relay silent after its greeting or during AUTH would
/// otherwise hold the run until the CronJob's deadline kills it.
async fn smtp_send(
    cfg: &SmtpConfig,
    message: &Message,
    phase: &Phase,
) -> std::result::Result<(), SendError> {
    let fail = |message: String| SendError {
        message,
        no_answer: false,
    };
    let builder = match cfg.security {
        Security::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host)
            .map_err(|e| fail(e.to_string()))?,
        Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host)
            .map_err(|e| fail(e.to_string()))?,
        Security::Plain => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host),
    };
    let mut builder = builder.port(cfg.port).timeout(Some(cfg.timeout));
    if let Some((user, password)) = &cfg.credentials {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose().to_string(),
        ));
    }
    let transport = builder.build();
    let mut last = fail(String::new());
    for attempt in 0..3u32 {
        if attempt > 0 {
            if let Some(why) = phase.refusal() {
                last.message = format!("{}; {why}", last.message);
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(200 * 4u64.pow(attempt - 1))).await;
        }
        match phase
            .bounded(cfg.timeout, transport.send(message.clone()))
            .await
        {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) if e.is_permanent() => return Err(fail(e.to_string())),
            Ok(Err(e)) => {
                last = SendError {
                    message: e.to_string(),
                    no_answer: !e.is_transient() && unreachable(&e),
                };
            }
            Err(bound) => {
                last = SendError {
                    message: format!("{bound} (smtp://{}:{})", cfg.host, cfg.port),
                    no_answer: true,
                };
            }
        }
    }
    Err(last)
}

/// Whether an SMTP error means the relay could not be reached at all (a
/// refused or timed-out connection, an unreachable host), as opposed to a
/// relay that answered and refused.
fn unreachable(e: &lettre::transport::smtp::Error) -> bool {
    use std::io::ErrorKind as K;
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::TimedOut
                    | K::HostUnreachable
                    | K::NetworkUnreachable
                    | K::NotConnected
            );
        }
        source = err.source();
    }
    false
}

/// Send every letter not yet delivered (all of them with `resend`); record
/// each success under `records`. The outbox keeps a day's letters under
/// `day` (`date=YYYY-MM-DD`).
pub async fn deliver(
    stores: &Stores,
    cfg: &MailConfig,
    letters: &[Letter],
    records: &Location,
    day: &str,
    resend: bool,
    run_id: &str,
) -> Result<Deliveries> {
    let mut out = Deliveries::default();
    let Some(from) = &cfg.from else {
        return Ok(out);
    };
    let mut phase = Phase::new("mail", cfg.budget);
    for letter in letters {
        let record = records.join(&format!("{}.json", letter.name));
        if !resend && stores.exists(&record).await? {
            out.skipped.push(letter.name.clone());
            continue;
        }
        if let (Transport::Smtp(_), Some(why)) = (&cfg.transport, phase.refusal()) {
            warn!(letter = %letter.name, error = %why, "mail not sent");
            out.failed.push((letter.name.clone(), why));
            continue;
        }
        let message = message(from, letter, &message_id(from, letter, day, run_id))?;
        let bytes = message.formatted();
        let message_id = message
            .headers()
            .get_raw("Message-ID")
            .unwrap_or_default()
            .to_string();
        let result = match &cfg.transport {
            Transport::None => continue,
            Transport::Smtp(smtp) => match smtp_send(smtp, &message, &phase).await {
                Ok(()) => Ok(format!("smtp://{}:{}", smtp.host, smtp.port)),
                Err(e) => {
                    if e.no_answer {
                        phase.mark_down(format!(
                            "smtp://{}:{} did not answer for letter {}",
                            smtp.host, smtp.port, letter.name
                        ));
                    }
                    Err(e.message)
                }
            },
            Transport::Outbox(dir) => {
                let loc = dir.join(day).join(&format!("{}.eml", letter.name));
                stores
                    .put(&loc, Bytes::from(bytes.clone()))
                    .await
                    .map(|()| loc.to_string())
                    .map_err(|e| e.to_string())
            }
        };
        match result {
            Ok(transport) => {
                let rec = Record {
                    name: letter.name.clone(),
                    subject: letter.subject.clone(),
                    to: letter.to.iter().map(|m| m.to_string()).collect(),
                    cc: letter.cc.iter().map(|m| m.to_string()).collect(),
                    message_id,
                    sent_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
                    transport,
                    size: bytes.len(),
                    sha256: crate::manifest::sha256(&bytes),
                };
                let json =
                    serde_json::to_vec_pretty(&rec).map_err(|e| Error::Internal(e.to_string()))?;
                stores.put(&record, Bytes::from(json)).await?;
                info!(letter = %letter.name, recipients = letter.to.len() + letter.cc.len(), "mail sent");
                out.sent.push(letter.name.clone());
            }
            Err(e) => {
                warn!(letter = %letter.name, error = %e, "mail not sent");
                out.failed.push((letter.name.clone(), e));
            }
        }
    }
    Ok(out)
}
