//! netmon: an eBPF-backed network observer for Linux hosts.
pub mod collect;
pub mod config;
pub mod diagnose;
pub mod export;
pub mod host;
pub mod memory;
pub mod model;
pub mod names;
pub mod privileges;
pub mod probes;
pub mod rates;
pub mod serve;
pub mod state;
pub mod top;

#[cfg(test)]
mod fuzz_tests;
