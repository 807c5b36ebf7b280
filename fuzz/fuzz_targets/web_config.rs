//! The web-config parser on arbitrary bytes: never a panic, and a refusal always says why.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netmon::export::web_config::WebConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(err) = WebConfig::from_yaml(text, std::path::Path::new("/nonexistent")) {
        assert!(!format!("{err:#}").trim().is_empty());
    }
});
