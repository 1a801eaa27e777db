//! driftwatch: a streaming monitor and retraining trigger for deployed ML models.
//!
//! The data flows source → decode → join → state (windows of panes per model version) →
//! evaluation → policy → sinks. The core (`event`, `state`, `stats`, `baseline`, `eval`,
//! `policy`) is synchronous and free of network I/O; `source`, `sink`, `http` and `app` move
//! data between it and Kafka, HTTP and files.
#![deny(missing_docs)]

pub mod app;
pub mod baseline;
pub mod config;
pub mod conformance;
pub mod demo;
pub mod eval;
pub mod event;
pub mod generate;
pub mod http;
pub mod ingest;
pub mod monitor;
pub mod output;
pub mod policy;
pub mod replay;
pub mod sink;
pub mod source;
pub mod state;
pub mod stats;
pub mod telemetry;
