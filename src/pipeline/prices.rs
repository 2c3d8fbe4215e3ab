//! `prices import`: new versions of the price table from LiteLLM's price
//! file, written back (or to `--out`) after the result is validated as a
//! price table. The planning is pure ([`crate::pricing::litellm`]); this
//! module reads and writes.

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::error::{Error, Problems, Result};
use crate::lake::{Location, Stores};
use crate::pricing::PriceTable;
use crate::pricing::litellm::{self, Plan};
use crate::tabular::TextTable;

/// What `prices import` did.
#[derive(Debug)]
pub struct Imported {
    pub plan: Plan,
    /// Where the table was written (`None` on a dry run).
    pub written: Option<Location>,
}

/// Import `file` (LiteLLM JSON) into the configured price table at `at`.
pub async fn import(
    config: &Config,
    file: &Location,
    at: DateTime<Utc>,
    force: bool,
    dry_run: bool,
    out: Option<&Location>,
) -> Result<Imported> {
    let stores = Stores::new(config.s3.clone());
    let (_, json) = stores.get(file).await?;
    let (_, current) = stores.get(&config.prices).await?;
    let key = config.prices.to_string();
    let crlf = current.windows(2).any(|w| w == b"\r\n");
    let table = TextTable::from_bytes(config.prices.file_name(), current).map_err(|e| {
        Error::PriceTable {
            key: key.clone(),
            problems: Problems(vec![e]),
        }
    })?;
    PriceTable::parse(&table).map_err(|problems| Error::PriceTable {
        key: key.clone(),
        problems,
    })?;
    let plan =
        litellm::plan(&table, &json, &file.to_string()).map_err(|problems| Error::PriceTable {
            key: file.to_string(),
            problems,
        })?;
    if !plan.refused.is_empty() && !force {
        let mut problems = plan.refused.clone();
        problems.push(
            "nothing was written; check the file, or pass --force to import it anyway".into(),
        );
        return Err(Error::PriceTable {
            key: file.to_string(),
            problems: Problems(problems),
        });
    }
    let source = format!("litellm:{}", &crate::manifest::sha256(&json)[7..19]);
    let csv = litellm::apply(&table, &plan, at, &source, crlf);
    let target = out.cloned().unwrap_or_else(|| config.prices.clone());
    // Never write a table the job would refuse (e.g. --at before an open row starts).
    let check = TextTable::from_csv(&csv)
        .map_err(|e| Error::Internal(format!("re-reading the imported table: {e}")))?;
    PriceTable::parse(&check).map_err(|problems| Error::PriceTable {
        key: format!("{target} (after importing {file} at {})", at.to_rfc3339()),
        problems,
    })?;
    if dry_run || plan.changes.is_empty() {
        return Ok(Imported {
            plan,
            written: None,
        });
    }
    if target
        .file_name()
        .to_ascii_lowercase()
        .ends_with(".parquet")
    {
        return Err(Error::Usage(format!(
            "{target}: prices import writes CSV; pass --out with a .csv path"
        )));
    }
    stores.put(&target, bytes::Bytes::from(csv)).await?;
    Ok(Imported {
        plan,
        written: Some(target),
    })
}
