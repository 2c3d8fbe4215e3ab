//! tokenledger: a daily batch job that turns LLM request logs into Operations
//! and Finance numbers both can trust. See ARCHITECTURE.md for the code map.

pub mod config;
pub mod error;
pub mod fx;
pub mod lake;
pub mod money;
pub mod pricing;
pub mod tabular;
