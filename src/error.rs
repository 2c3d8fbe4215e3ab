//! Errors and the process exit codes they map to.
//!
//! Every error names its subject (object key, SQL file, config field, price-table
//! line) and says what was expected. The [`ExitKind`] of an error decides the
//! process exit code, so a scheduler can tell a typo in the config from a storage
//! outage from bad upstream data without parsing messages. This module does no
//! I/O and knows nothing of the pipeline stages beyond their error shapes.

use std::fmt;
use std::process::ExitCode;

/// What kind of failure ended a run; each kind has its own documented exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// 0: the run finished and published everything.
    Ok,
    /// 1: runtime failure: storage unreachable, I/O error, internal error. Retrying may help.
    Runtime,
    /// 2: usage or configuration error: bad flags, config, price table, FX table, SQL or templates.
    Usage,
    /// 3: the input data cannot be used: missing or mistyped column, corrupt Parquet, empty day.
    /// Nothing was published.
    InputData,
    /// 4: a data-quality gate failed (e.g. unpriced share above the configured maximum).
    /// The outputs were published and carry the problem; the run is flagged.
    DataQuality,
    /// 5: the reports were computed and published, but a mail could not be
    /// sent. A rerun sends only the mails still missing.
    Delivery,
    /// 6: `--fail-on-mismatch` and a reconciliation line is not `ok`. The
    /// outputs were published and show which lines and why.
    Mismatch,
    /// 7: `replay` found an output that is not byte-identical to what the
    /// manifest recorded.
    Differs,
    /// 8: another run holds the day's lease (a concurrent or overlapping
    /// run); this run did nothing. Rerun later, or set `lease.wait_secs`.
    Busy,
}

impl ExitKind {
    /// Every kind, in code order.
    pub const ALL: [ExitKind; 9] = [
        ExitKind::Ok,
        ExitKind::Runtime,
        ExitKind::Usage,
        ExitKind::InputData,
        ExitKind::DataQuality,
        ExitKind::Delivery,
        ExitKind::Mismatch,
        ExitKind::Differs,
        ExitKind::Busy,
    ];

    /// Whether running again with the same inputs may end differently: a
    /// transient runtime failure may pass, and a rerun after exit 5 sends the
    /// mail still missing. Every other failure is the same answer next time
    /// and needs a person (the CronJob's `podFailurePolicy` fails at once).
    pub fn retry_may_help(self) -> bool {
        matches!(self, ExitKind::Runtime | ExitKind::Delivery)
    }

    /// The process exit code (documented in README.md, "Exit codes").
    pub fn code(self) -> u8 {
        match self {
            ExitKind::Ok => 0,
            ExitKind::Runtime => 1,
            ExitKind::Usage => 2,
            ExitKind::InputData => 3,
            ExitKind::DataQuality => 4,
            ExitKind::Delivery => 5,
            ExitKind::Mismatch => 6,
            ExitKind::Differs => 7,
            ExitKind::Busy => 8,
        }
    }
}

impl From<ExitKind> for ExitCode {
    fn from(kind: ExitKind) -> Self {
        ExitCode::from(kind.code())
    }
}

/// A list of problems found together (config validation, schema checks, price
/// table validation): reported all at once so one run shows every fix needed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<String>);

impl Problems {
    pub fn new() -> Self {
        Self(Vec::new())
    }
    pub fn push(&mut self, problem: impl Into<String>) {
        self.0.push(problem.into());
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn extend(&mut self, other: Problems) {
        self.0.extend(other.0);
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// Every way a tokenledger command can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid usage: {0}")]
    Usage(String),

    #[error("invalid configuration ({source_name}):\n{problems}")]
    Config {
        source_name: String,
        problems: Problems,
    },

    #[error("invalid price table {key}: {count} problem(s):\n{problems}", count = problems.len())]
    PriceTable { key: String, problems: Problems },

    #[error("invalid FX table {key}: {count} problem(s):\n{problems}", count = problems.len())]
    FxTable { key: String, problems: Problems },

    #[error("SQL file sql/{file} does not check: {message}")]
    Sql { file: String, message: String },

    #[error("template templates/{file}: {message}")]
    Template { file: String, message: String },

    #[error("input data cannot be used: {count} problem(s):\n{problems}", count = problems.len())]
    InputSchema { problems: Problems },

    #[error("input object {key} is not readable Parquet: {message}")]
    CorruptInput { key: String, message: String },

    #[error("invoices cannot be used: {count} problem(s):\n{problems}", count = problems.len())]
    Invoices { problems: Problems },

    #[error("replay: {count} problem(s):\n{problems}", count = problems.len())]
    Replay { problems: Problems },

    #[error("no request rows for {date} in {zone}: {detail}")]
    EmptyDay {
        date: String,
        zone: String,
        detail: String,
    },

    #[error("storage error on {location}: {source}")]
    Storage {
        location: String,
        #[source]
        source: object_store::Error,
    },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("query sql/{file} failed: {source}")]
    Query {
        file: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },

    #[error("data-quality gate failed:\n{problems}")]
    DataQuality { problems: Problems },

    #[error(
        "day {date} is leased to run {holder} (since {since}, {location}); \
         it is taken over when {stale_after_secs} s old"
    )]
    LeaseHeld {
        date: String,
        holder: String,
        since: String,
        location: String,
        stale_after_secs: u64,
    },

    #[error("run {run_id} lost the lease of {location} to run {holder}; nothing was published")]
    LeaseLost {
        run_id: String,
        holder: String,
        location: String,
    },

    #[error("worker {url}: {message}")]
    Worker { url: String, message: String },

    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The exit code family of this error.
    pub fn kind(&self) -> ExitKind {
        match self {
            Error::Usage(_)
            | Error::Config { .. }
            | Error::PriceTable { .. }
            | Error::FxTable { .. }
            | Error::Sql { .. }
            | Error::Template { .. } => ExitKind::Usage,
            Error::InputSchema { .. }
            | Error::CorruptInput { .. }
            | Error::EmptyDay { .. }
            | Error::Invoices { .. }
            | Error::Replay { .. } => ExitKind::InputData,
            Error::DataQuality { .. } => ExitKind::DataQuality,
            Error::LeaseHeld { .. } | Error::LeaseLost { .. } => ExitKind::Busy,
            Error::Storage { .. }
            | Error::Io { .. }
            | Error::Worker { .. }
            | Error::Internal(_) => ExitKind::Runtime,
            Error::Query { source, .. } => query_error_kind(source),
        }
    }

    pub fn storage(location: impl Into<String>, source: object_store::Error) -> Self {
        Error::Storage {
            location: location.into(),
            source,
        }
    }

    pub fn config(source_name: impl Into<String>, problems: Problems) -> Self {
        Error::Config {
            source_name: source_name.into(),
            problems,
        }
    }
}

/// A query failure caused by bad input data (found while decoding an object)
/// is an input-data failure; anything else during a query is a runtime failure.
fn query_error_kind(err: &datafusion::error::DataFusionError) -> ExitKind {
    use datafusion::error::DataFusionError as E;
    match err.find_root() {
        E::External(inner) => match inner.downcast_ref::<Error>() {
            Some(e) => e.kind(),
            None => ExitKind::Runtime,
        },
        _ => ExitKind::Runtime,
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Render an error with its whole cause chain, one cause per line.
pub fn render_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Skip a cause whose text the parent already printed.
        if !out.contains(&text) {
            out.push_str("\n  caused by: ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_stable() {
        assert_eq!(ExitKind::Ok.code(), 0);
        assert_eq!(ExitKind::Runtime.code(), 1);
        assert_eq!(ExitKind::Usage.code(), 2);
        assert_eq!(ExitKind::InputData.code(), 3);
        assert_eq!(ExitKind::DataQuality.code(), 4);
        assert_eq!(ExitKind::Delivery.code(), 5);
        assert_eq!(ExitKind::Mismatch.code(), 6);
        assert_eq!(ExitKind::Differs.code(), 7);
        assert_eq!(ExitKind::Busy.code(), 8);
    }

    #[test]
    fn input_error_inside_a_query_keeps_its_kind() {
        let inner = Error::CorruptInput {
            key: "requests/date=2026-01-01/a.parquet".into(),
            message: "bad footer".into(),
        };
        let df = datafusion::error::DataFusionError::External(Box::new(inner));
        let err = Error::Query {
            file: "dup_keys.sql".into(),
            source: df,
        };
        assert_eq!(err.kind(), ExitKind::InputData);
    }

    #[test]
    fn problems_render_one_per_line() {
        let mut p = Problems::new();
        p.push("a");
        p.push("b");
        assert_eq!(p.to_string(), "  - a\n  - b");
    }
}
