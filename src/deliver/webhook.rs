//! Incident webhooks: POST a JSON record, with bounded retries for
//! temporary failures (connection errors, timeouts, 429, 5xx) and an
//! `Idempotency-Key` header carrying the incident id, so a receiver can drop
//! a repeat. Whether a record was already delivered is the pipeline's
//! business (a delivery record in storage); this module only sends.

use std::time::Duration;

use crate::deliver::Phase;

/// Where incidents are POSTed.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: url::Url,
    pub timeout: std::time::Duration,
    /// Tries for a temporary failure (connection, 429, 5xx).
    pub attempts: u32,
    /// All of a run's webhook calls end within this.
    pub budget: std::time::Duration,
}

impl Webhook {
    /// The webhook of `anomaly.webhook_url` (none without one), with its
    /// timeout, tries and budget in seconds (defaults 10 s, 3, 120 s); every
    /// problem goes to `p`.
    pub fn validate(
        url: Option<&str>,
        (timeout_secs, attempts, budget_secs): (Option<u64>, Option<u32>, Option<u64>),
        p: &mut crate::error::Problems,
    ) -> Option<Webhook> {
        match url::Url::parse(url?) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Some(Webhook {
                url,
                timeout: Duration::from_secs(timeout_secs.unwrap_or(10).max(1)),
                attempts: attempts.unwrap_or(3).clamp(1, 10),
                budget: Duration::from_secs(budget_secs.unwrap_or(120).clamp(1, 86_400)),
            }),
            Ok(url) => {
                p.push(format!(
                    "anomaly.webhook_url: `{}` is not http or https",
                    url.scheme()
                ));
                None
            }
            Err(e) => {
                p.push(format!("anomaly.webhook_url: {e}"));
                None
            }
        }
    }
}

/// Why a webhook call failed, and whether the receiver answered at all
/// (one that did not is not called again this run: see [`Phase`]).
#[derive(Debug)]
pub struct PostError {
    pub message: String,
    pub no_answer: bool,
}

/// POST `body` to the webhook, each try bounded by the hook's timeout and
/// all of them by what is left of `phase`. `Ok(status)` on a 2xx; `Err`
/// says why the last try failed.
pub async fn post(
    hook: &Webhook,
    id: &str,
    body: Vec<u8>,
    phase: &Phase,
) -> Result<u16, PostError> {
    let fail = |message: String, no_answer: bool| PostError { message, no_answer };
    let client = reqwest::Client::builder()
        .timeout(hook.timeout)
        .connect_timeout(hook.timeout)
        .build()
        .map_err(|e| fail(format!("webhook client: {e}"), false))?;
    let host = hook.url.host_str().unwrap_or("webhook").to_string();
    let mut last = String::new();
    let mut answered = false;
    for attempt in 1..=hook.attempts {
        let request = client
            .post(hook.url.clone())
            .header("content-type", "application/json")
            .header("idempotency-key", id)
            .body(body.clone())
            .send();
        let sent = match phase.bounded(hook.timeout, request).await {
            Ok(sent) => sent,
            Err(bound) => {
                last = format!("{bound} ({host})");
                if attempt < hook.attempts && phase.refusal().is_none() {
                    continue;
                }
                break;
            }
        };
        match sent {
            Ok(r) if r.status().is_success() => return Ok(r.status().as_u16()),
            Ok(r) => {
                answered = true;
                let status = r.status();
                last = format!("HTTP {status} from {host}");
                if !(status.is_server_error() || status.as_u16() == 429) {
                    return Err(fail(last, false));
                }
            }
            // Never the URL's query string (it may hold a token).
            Err(e) => {
                last = format!(
                    "{} to {host}",
                    if e.is_timeout() {
                        "timeout"
                    } else {
                        "connection failed"
                    }
                )
            }
        }
        if attempt < hook.attempts {
            if phase.refusal().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250 * (1 << (attempt - 1)))).await;
        }
    }
    Err(fail(
        format!("{last} (after {} tries)", hook.attempts),
        !answered,
    ))
}
