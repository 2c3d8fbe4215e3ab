//! The day lease: at most one run publishes a day at a time.
//!
//! A lease is a small JSON object (`<reports>/date=D/_lease.json`) created
//! with a conditional put, so of two runs started together exactly one
//! creates it; the other waits (`lease.wait_secs`) or stops with exit code 8.
//! The holder renews the lease every quarter of `lease.stale_after_secs`; a
//! lease not renewed for that long belongs to a run that died (killed, OOM,
//! node lost), and the next run takes it over. On the same host a lease whose
//! holder process is gone is stale at once. Takeover is itself guarded by a conditional create of a
//! claim object named after the dead holder's run id, so two runs finding the
//! same stale lease cannot both take it. Before publishing, the holder checks
//! that the lease is still its own (a fence); it deletes the lease when done.
//!
//! This module knows storage and the lease record, nothing of what a run
//! computes.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::lake::{Location, Stores};

/// The day lease: one run per day at a time.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLease {
    /// Seconds without renewal after which a lease's holder is taken for
    /// dead and its lease taken over (default 120; renewed every quarter).
    pub stale_after_secs: Option<u64>,
    /// Seconds to wait for a held lease before giving up (default 0: exit at once).
    pub wait_secs: Option<u64>,
}

/// How the day lease behaves (`[lease]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    pub stale_after: std::time::Duration,
    pub wait: std::time::Duration,
}

impl LeaseSettings {
    /// The settings of `[lease]`; every problem goes to `p`.
    pub fn validate(raw: &RawLease, p: &mut crate::error::Problems) -> LeaseSettings {
        let default = LeaseSettings::default();
        LeaseSettings {
            stale_after: match raw.stale_after_secs {
                Some(s) if s < 8 => {
                    p.push(format!(
                        "lease.stale_after_secs: {s} is below 8 (a live run could lose its lease)"
                    ));
                    default.stale_after
                }
                Some(s) => std::time::Duration::from_secs(s),
                None => default.stale_after,
            },
            wait: std::time::Duration::from_secs(raw.wait_secs.unwrap_or(0)),
        }
    }
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            stale_after: std::time::Duration::from_secs(120),
            wait: std::time::Duration::ZERO,
        }
    }
}

/// What a lease object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub run_id: String,
    pub host: String,
    pub pid: u32,
    pub acquired_at: DateTime<Utc>,
    pub renewed_at: DateTime<Utc>,
}

impl LeaseRecord {
    /// Whether the holder is dead: not renewed for `stale_after`, or (on
    /// this host) its process is gone.
    fn stale(&self, stale_after: Duration, now: DateTime<Utc>) -> bool {
        let silent = now
            .signed_duration_since(self.renewed_at)
            .to_std()
            .map(|a| a >= stale_after)
            .unwrap_or(false);
        let here = self.host == host() && self.pid != std::process::id();
        silent || (here && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists())
    }
}

enum Taken {
    Yes { claim: Option<Location> },
    No(LeaseRecord),
}

/// A lease held by this run.
#[derive(Debug)]
pub struct Lease {
    location: Location,
    record: LeaseRecord,
    renewer: tokio::task::JoinHandle<()>,
    /// The takeover claim this run created, deleted on release.
    claim: Option<Location>,
}

/// The lease object of a day's report directory.
pub fn location(day_dir: &Location) -> Location {
    day_dir.join("_lease.json")
}

/// The claim a run creates to take over the stale lease of `holder`.
fn claim(day_dir: &Location, holder: &str) -> Location {
    day_dir.join(&format!("_lease.takeover.{holder}"))
}

fn host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

impl Lease {
    /// Take the lease of the report directory `day_dir` for `run_id`,
    /// waiting up to `settings.wait` for a live holder to finish.
    pub async fn acquire(
        stores: &std::sync::Arc<Stores>,
        day_dir: &Location,
        date: &str,
        run_id: &str,
        settings: LeaseSettings,
    ) -> Result<Lease> {
        let now = Utc::now();
        let mut record = LeaseRecord {
            run_id: run_id.to_string(),
            host: host(),
            pid: std::process::id(),
            acquired_at: now,
            renewed_at: now,
        };
        let location = location(day_dir);
        let started = std::time::Instant::now();
        loop {
            // Stamped at each attempt: a lease taken after a long wait must
            // not look stale to the next run.
            let now = Utc::now();
            (record.acquired_at, record.renewed_at) = (now, now);
            let held = match Self::try_take(stores, day_dir, &record, settings).await? {
                Taken::Yes { claim } => {
                    info!(lease = %location, run_id, "lease taken");
                    let renewer = tokio::spawn(renew(
                        std::sync::Arc::clone(stores),
                        location.clone(),
                        record.clone(),
                        settings.stale_after / 4,
                    ));
                    return Ok(Lease {
                        location,
                        record,
                        renewer,
                        claim,
                    });
                }
                Taken::No(holder) => holder,
            };
            let waited = started.elapsed();
            if waited >= settings.wait {
                return Err(Error::LeaseHeld {
                    date: date.to_string(),
                    holder: format!("{} on {} (pid {})", held.run_id, held.host, held.pid),
                    since: held.acquired_at.to_rfc3339(),
                    location: location.to_string(),
                    stale_after_secs: settings.stale_after.as_secs(),
                });
            }
            let pause = (settings.wait - waited).min(Duration::from_secs(5));
            info!(lease = %location, holder = %held.run_id, wait_s = pause.as_secs_f64(), "day leased to another run; waiting");
            tokio::time::sleep(pause).await;
        }
    }

    /// One attempt: taken (maybe over a dead holder), or the live holder.
    async fn try_take(
        stores: &Stores,
        day_dir: &Location,
        ours: &LeaseRecord,
        settings: LeaseSettings,
    ) -> Result<Taken> {
        let location = &location(day_dir);
        let bytes = Bytes::from(serde_json::to_vec_pretty(ours).expect("a lease serializes"));
        if stores.put_if_absent(location, bytes.clone()).await? {
            return Ok(Taken::Yes { claim: None });
        }
        let Some(current) = read(stores, location).await? else {
            // Released between our put and our read: try again at once.
            return Box::pin(Self::try_take(stores, day_dir, ours, settings)).await;
        };
        if current.run_id == ours.run_id {
            // Our own create, retried after its response was lost.
            return Ok(Taken::Yes { claim: None });
        }
        let now = Utc::now();
        if !current.stale(settings.stale_after, now) {
            return Ok(Taken::No(current));
        }
        // Only one run may take over a given dead holder's lease.
        let claim = claim(day_dir, &current.run_id);
        if !stores.put_if_absent(&claim, bytes.clone()).await? {
            return Ok(Taken::No(current));
        }
        if read(stores, location).await?.as_ref() != Some(&current) {
            // The dead holder's lease went away (released or replaced) while
            // we claimed it: start over. (This re-read is also what makes
            // deleting claims on release safe.)
            stores.delete(&claim).await?;
            return Box::pin(Self::try_take(stores, day_dir, ours, settings)).await;
        }
        stores.put(location, bytes).await?;
        warn!(
            lease = %location,
            stale_holder = %current.run_id,
            since = %current.acquired_at.to_rfc3339(),
            silent_s = now.signed_duration_since(current.renewed_at).num_seconds(),
            "took over a stale lease (its run died without releasing it)"
        );
        Ok(Taken::Yes { claim: Some(claim) })
    }

    pub fn run_id(&self) -> &str {
        &self.record.run_id
    }

    /// Fail unless the lease is still ours (another run took it over as stale).
    pub async fn verify(&self, stores: &Stores) -> Result<()> {
        match read(stores, &self.location).await? {
            Some(r) if r.run_id == self.record.run_id => Ok(()),
            other => Err(Error::LeaseLost {
                run_id: self.record.run_id.clone(),
                holder: other.map(|r| r.run_id).unwrap_or_else(|| "nobody".into()),
                location: self.location.to_string(),
            }),
        }
    }

    /// Give the lease back (if it is still ours).
    pub async fn release(self, stores: &Stores) -> Result<()> {
        self.renewer.abort();
        if self.verify(stores).await.is_ok() {
            stores.delete(&self.location).await?;
            if let Some(claim) = &self.claim {
                stores.delete(claim).await?;
            }
            // Locally, leave no empty directories behind a run that
            // published nothing.
            let day_dir = self.location.parent();
            if let Some(dir) = &day_dir {
                stores.remove_empty_dir(dir);
            }
            if let Some(root) = day_dir.and_then(|d| d.parent()) {
                stores.remove_empty_dir(&root);
            }
            info!(lease = %self.location, "lease released");
        }
        Ok(())
    }
}

/// Renew the lease every `every` while it is ours; stop when it is not.
async fn renew(
    stores: std::sync::Arc<Stores>,
    location: Location,
    mut record: LeaseRecord,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        match read(&stores, &location).await {
            Ok(Some(r)) if r.run_id == record.run_id => {}
            Ok(_) => {
                warn!(lease = %location, "lease lost to another run; publishing will be refused");
                return;
            }
            Err(e) => {
                warn!(lease = %location, error = %e, "lease renewal failed; retrying");
                continue;
            }
        }
        record.renewed_at = Utc::now();
        let bytes = Bytes::from(serde_json::to_vec_pretty(&record).expect("a lease serializes"));
        if let Err(e) = stores.put(&location, bytes).await {
            warn!(lease = %location, error = %e, "lease renewal failed; retrying");
        }
    }
}

impl Drop for Lease {
    /// A lease dropped without `release` stops renewing and goes stale.
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

async fn read(stores: &Stores, location: &Location) -> Result<Option<LeaseRecord>> {
    let Some(bytes) = stores.get_opt(location).await? else {
        return Ok(None);
    };
    match serde_json::from_slice(&bytes) {
        Ok(r) => Ok(Some(r)),
        Err(e) => Err(Error::Internal(format!(
            "lease {location} is not a lease record ({e}); delete it if no run is active"
        ))),
    }
}
