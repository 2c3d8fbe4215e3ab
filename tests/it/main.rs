//! The integration tests: one binary (DataFusion is heavy to link).

mod bad_input;
mod cli;
mod fixture;
mod metrics;
mod s3;
