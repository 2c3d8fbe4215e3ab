//! The integration tests: one binary (DataFusion is heavy to link).

// Test helpers outside #[test] functions fail loudly on purpose.
#![allow(clippy::unwrap_used)]

mod audit;
mod bad_input;
mod budgets;
mod cli;
mod dashboards;
mod deploy;
mod distributed;
mod fixture;
mod focus;
mod incidents;
mod mail;
mod metrics;
mod otel;
mod pricing;
mod reconcile;
mod reliability;
mod s3;
mod settle;
mod smtp;
mod tidy;
