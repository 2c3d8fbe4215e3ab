//! Publishing a finished day to storage, and mailing it ([`mail`]).
//!
//! Every output is rendered in memory before anything is written, so a run
//! that fails while computing publishes nothing. Publishing then removes the
//! day's manifest first (so nobody takes a day being rewritten for a finished
//! one), writes every output (each object replaced whole), and writes the new
//! manifest last. A rerun replaces the day's outputs. This module writes what
//! it is given; it computes nothing.

pub mod mail;
pub mod webhook;

use bytes::Bytes;

use crate::error::Result;
use crate::lake::{Location, Stores};
use crate::manifest::{OutputObject, sha256};

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

/// Publish `outputs`, then `manifest` last.
pub async fn publish(stores: &Stores, outputs: &[Output], manifest: &Output) -> Result<()> {
    stores.delete(&manifest.location).await?;
    for o in outputs {
        stores.put(&o.location, o.bytes.clone()).await?;
    }
    stores
        .put(&manifest.location, manifest.bytes.clone())
        .await?;
    Ok(())
}
