//! Incident webhooks: POST a JSON record, with bounded retries for
//! temporary failures (connection errors, timeouts, 429, 5xx) and an
//! `Idempotency-Key` header carrying the incident id, so a receiver can drop
//! a repeat. Whether a record was already delivered is the pipeline's
//! business (a delivery record in storage); this module only sends.

use std::time::Duration;

use crate::config::Webhook;

/// POST `body` to the webhook. `Ok(status)` on a 2xx; `Err` says why the
/// last try failed.
pub async fn post(hook: &Webhook, id: &str, body: Vec<u8>) -> Result<u16, String> {
    let client = reqwest::Client::builder()
        .timeout(hook.timeout)
        .build()
        .map_err(|e| format!("webhook client: {e}"))?;
    let mut last = String::new();
    for attempt in 1..=hook.attempts {
        let sent = client
            .post(hook.url.clone())
            .header("content-type", "application/json")
            .header("idempotency-key", id)
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return Ok(r.status().as_u16()),
            Ok(r) => {
                let status = r.status();
                last = format!(
                    "HTTP {status} from {}",
                    hook.url.host_str().unwrap_or("webhook")
                );
                if !(status.is_server_error() || status.as_u16() == 429) {
                    return Err(last);
                }
            }
            // Never the URL's query string (it may hold a token).
            Err(e) => {
                last = format!(
                    "{} to {}",
                    if e.is_timeout() {
                        "timeout"
                    } else {
                        "connection failed"
                    },
                    hook.url.host_str().unwrap_or("webhook")
                )
            }
        }
        if attempt < hook.attempts {
            tokio::time::sleep(Duration::from_millis(250 * (1 << (attempt - 1)))).await;
        }
    }
    Err(format!("{last} (after {} tries)", hook.attempts))
}
