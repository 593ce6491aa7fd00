//! The configuration: TOML parsing, environment overrides and validation
//! (`Config::from_toml`), then what the daemon derives from a valid one. Input: the TOML text,
//! then optionally a NUL byte and `NAME=value` lines as the environment.
//!
//! Inputs naming a secret file or a credentials directory are skipped: those read files from
//! the local disk (the operator's, not outside input), which a fuzzer must not wander through.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tokend::config::Config;

fuzz_target!(|data: &[u8]| {
    let (text, env) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let env = String::from_utf8_lossy(env);
    for risky in ["secret_file", "CREDENTIALS_DIRECTORY", "SECRET_FILE"] {
        if text.contains(risky) || env.contains(risky) {
            return;
        }
    }
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let Ok(config) =
        Config::from_toml(text, Path::new("fuzz.toml"), Path::new("/nonexistent"), env)
    else {
        return;
    };
    let _ = config.revocation_ttl();
    let _ = config.audience();
    let _ = config.to_redacted_toml();
});
