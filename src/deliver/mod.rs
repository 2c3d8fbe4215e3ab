//! Publishing a finished day to storage, and mailing it ([`mail`]).
//!
//! Every output is rendered in memory before anything is written, so a run
//! that fails while computing publishes nothing. Publishing is then a small
//! commit protocol over plain object puts (object stores have no atomic
//! multi-object write):
//!
//! 1. every output and the manifest are written under the day's
//!    `_staging/<run id>/`: a run killed here leaves the published day as it
//!    was (the next run deletes the staged objects);
//! 2. the commit record `_staging/<run id>/_commit.json` is written: from
//!    here on the new outputs are decided;
//! 3. each staged object is copied to its place (server-side on S3), the
//!    manifest last, and the staging objects are deleted. A run killed here
//!    is finished by the next run ([`recover`]), which copies what the commit
//!    record lists before doing anything else.
//!
//! A rerun replaces the day's outputs. This module writes what it is given;
//! it computes nothing.

pub mod mail;
pub mod webhook;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::lake::{Location, Stores};
use crate::manifest::{OutputObject, sha256};

/// The time budget of one delivery phase (all of a day's letters, or all
/// of its webhook calls) and what is known of its endpoint. Every send is
/// bounded by its own timeout *and* by what is left of the budget; after a
/// send that got no answer at all (timeout, refused connection, on every
/// try), the endpoint is taken to be down and the rest of the phase is not
/// attempted: a dead relay costs one letter's tries, not every letter's.
#[derive(Debug)]
pub struct Phase {
    what: &'static str,
    budget: std::time::Duration,
    deadline: tokio::time::Instant,
    down: Option<String>,
}

impl Phase {
    pub fn new(what: &'static str, budget: std::time::Duration) -> Self {
        Phase {
            what,
            budget,
            deadline: tokio::time::Instant::now() + budget,
            down: None,
        }
    }

    /// Why the next send is not attempted, if it is not.
    pub fn refusal(&self) -> Option<String> {
        if let Some(why) = &self.down {
            return Some(format!("not attempted: {why}"));
        }
        (tokio::time::Instant::now() >= self.deadline).then(|| {
            format!(
                "not attempted: the {} budget of {} s is spent",
                self.what,
                self.budget.as_secs()
            )
        })
    }

    /// Run one send bounded by `timeout` and by the budget left; `Err`
    /// names which bound ended it.
    pub async fn bounded<T>(
        &self,
        timeout: std::time::Duration,
        send: impl std::future::Future<Output = T>,
    ) -> std::result::Result<T, String> {
        let left = self
            .deadline
            .saturating_duration_since(tokio::time::Instant::now());
        let (limit, which) = if timeout <= left {
            (
                timeout,
                format!("no answer within the {} s timeout", timeout.as_secs()),
            )
        } else {
            (
                left,
                format!(
                    "the {} budget of {} s ran out",
                    self.what,
                    self.budget.as_secs()
                ),
            )
        };
        tokio::time::timeout(limit, send).await.map_err(|_| which)
    }

    /// The endpoint did not answer: the rest of the phase is not attempted.
    pub fn mark_down(&mut self, why: String) {
        self.down.get_or_insert(why);
    }
}

/// One object to publish.
#[derive(Debug, Clone)]
pub struct Output {
    pub location: Location,
    pub bytes: Bytes,
}

impl Output {
    pub fn new(location: Location, bytes: impl Into<Bytes>) -> Self {
        Output {
            location,
            bytes: bytes.into(),
        }
    }

    /// The manifest entry of this output.
    pub fn describe(&self, lake: &Location) -> OutputObject {
        OutputObject {
            key: self
                .location
                .relative_to(lake)
                .unwrap_or_else(|| self.location.to_string()),
            size: self.bytes.len() as u64,
            sha256: sha256(&self.bytes),
        }
    }
}

/// The commit record of a staged publication.
#[derive(Debug, Serialize, Deserialize)]
struct CommitRecord {
    run_id: String,
    /// (staged, final) location URLs, the manifest last.
    objects: Vec<(String, String)>,
}

const STAGING: &str = "_staging";
const COMMIT: &str = "_commit.json";

/// Publish `outputs`, then `manifest` last, through `day_dir/_staging/<run_id>/`.
/// `fence` runs after staging and before the commit point (the lease check):
/// if it fails nothing is published.
pub async fn publish<F, Fut>(
    stores: &Stores,
    day_dir: &Location,
    run_id: &str,
    outputs: &[Output],
    manifest: &Output,
    fence: F,
) -> Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let staging = day_dir.join(STAGING).join(run_id);
    let mut objects = Vec::with_capacity(outputs.len() + 1);
    let all = outputs.iter().chain(std::iter::once(manifest));
    let staged: Vec<(Location, &Output)> = all
        .enumerate()
        .map(|(i, o)| {
            (
                staging.join(&format!("{i:04}-{}", o.location.file_name())),
                o,
            )
        })
        .collect();
    let writes = staged
        .iter()
        .map(|(loc, o)| stores.put(loc, o.bytes.clone()));
    futures::stream::iter(writes)
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;
    for (loc, o) in &staged {
        objects.push((loc.as_str().to_string(), o.location.as_str().to_string()));
    }
    fence().await?;
    let record = CommitRecord {
        run_id: run_id.to_string(),
        objects,
    };
    let commit = staging.join(COMMIT);
    stores
        .put(
            &commit,
            Bytes::from(serde_json::to_vec_pretty(&record).expect("a commit record serializes")),
        )
        .await?;
    install(stores, &commit, &record).await
}

/// Copy a committed publication into place, then delete its staging objects
/// (the commit record last). Safe to repeat: every step replaces or deletes.
async fn install(stores: &Stores, commit: &Location, record: &CommitRecord) -> Result<()> {
    let parse = |s: &str| {
        Location::parse(s, None)
            .map_err(|e| Error::Internal(format!("commit record {commit}: {e}")))
    };
    let pairs = record
        .objects
        .iter()
        .map(|(staged, fin)| Ok((parse(staged)?, parse(fin)?)))
        .collect::<Result<Vec<_>>>()?;
    let Some(((manifest_staged, manifest), rest)) = pairs.split_last() else {
        return Ok(());
    };
    // A staged object already gone was copied by an earlier attempt (the
    // staging objects are deleted only after every copy).
    let copy = |from: &Location, to: &Location| {
        let (from, to) = (from.clone(), to.clone());
        async move {
            match stores.copy(&from, &to).await {
                Err(Error::Storage {
                    source: object_store::Error::NotFound { .. },
                    ..
                }) => Ok(()),
                other => other,
            }
        }
    };
    let copies = rest.iter().map(|(from, to)| copy(from, to));
    futures::stream::iter(copies)
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;
    copy(manifest_staged, manifest).await?;
    let deletes = pairs.iter().map(|(staged, _)| stores.delete(staged));
    futures::stream::iter(deletes)
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;
    stores.delete(commit).await?;
    if let Some(run_dir) = commit.parent() {
        stores.remove_empty_dir(&run_dir);
        if let Some(staging) = run_dir.parent() {
            stores.remove_empty_dir(&staging);
        }
    }
    Ok(())
}

/// Finish or discard what runs killed while publishing left in
/// `day_dir/_staging/`: committed publications are installed, the rest
/// deleted. Returns (installed, discarded) run counts.
pub async fn recover(stores: &Stores, day_dir: &Location) -> Result<(usize, usize)> {
    let staging = day_dir.join(STAGING);
    let listed = stores.list(&staging).await?;
    let mut runs: std::collections::BTreeMap<String, Vec<Location>> = Default::default();
    for o in listed {
        let Some(rel) = o.location.relative_to(&staging) else {
            continue;
        };
        let run = rel.split('/').next().unwrap_or_default().to_string();
        runs.entry(run).or_default().push(o.location);
    }
    let (mut installed, mut discarded) = (0, 0);
    for (run, objects) in runs {
        let commit = staging.join(&run).join(COMMIT);
        if objects.contains(&commit) {
            let (_, bytes) = stores.get(&commit).await?;
            let record: CommitRecord = serde_json::from_slice(&bytes).map_err(|e| {
                Error::Internal(format!("commit record {commit} is unreadable: {e}"))
            })?;
            tracing::warn!(run = %run, objects = record.objects.len(), "finishing the publication of a run that died while publishing");
            install(stores, &commit, &record).await?;
            installed += 1;
        } else {
            tracing::warn!(run = %run, objects = objects.len(), "discarding the staged outputs of a run that died before committing");
            for o in &objects {
                stores.delete(o).await?;
            }
            stores.remove_empty_dir(&staging.join(&run));
            discarded += 1;
        }
    }
    stores.remove_empty_dir(&staging);
    Ok((installed, discarded))
}
