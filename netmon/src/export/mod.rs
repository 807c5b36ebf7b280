//! Outputs: Prometheus exposition and the HTTP server. Nothing here collects.
mod drops;
pub mod exposition;
mod history;
pub mod http;
pub mod metrics;
mod page;
mod peers;
mod pressure;
mod processes;
mod query;
pub mod report;
pub mod respond;
pub mod server;
pub mod web_config;
