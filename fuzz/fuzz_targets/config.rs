//! The configuration parser on arbitrary bytes: never a panic; a parsed configuration is
//! always valid, and a refused one always says why.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netmon::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text) {
        Ok(config) => assert!(config.validate().is_ok()),
        Err(err) => assert!(!format!("{err:#}").trim().is_empty()),
    }
});
