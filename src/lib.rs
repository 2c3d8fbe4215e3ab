//! tokenledger: a daily batch job that turns LLM request logs into Operations
//! and Finance numbers both can trust. See ARCHITECTURE.md for the code map.

pub mod anomaly;
pub mod budget;
pub mod calendar;
pub mod cli;
pub mod config;
pub mod deliver;
pub mod demo;
pub mod engine;
pub mod error;
pub mod fx;
pub mod history;
pub mod lake;
pub mod manifest;
pub mod money;
pub mod pipeline;
pub mod pricing;
pub mod queries;
pub mod reconcile;
pub mod report;
pub mod synth;
pub mod tabular;
