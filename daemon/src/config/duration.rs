//! Durations in the config file: read as humantime strings (`"30s"`, `"5m"`, `"24h"`, `"7d"`),
//! written back (by `check-config`) in one obvious unit, whole seconds (`"86400s"`), never
//! humantime's own renderings such as `"1day"` or `"1m"` for `"60s"` (issue #10).

use std::time::Duration;

use serde::Serializer;

pub use humantime_serde::deserialize;

/// The example every "expected a duration" error is given.
pub const EXAMPLE: &str =
    "durations are strings with a unit, e.g. \"30s\", \"5m\", \"24h\", \"7d\"";

/// A duration field (`Duration` or `Option<Duration>`) as written back.
pub trait Written {
    fn written(&self) -> Option<String>;
}

impl Written for Duration {
    fn written(&self) -> Option<String> {
        Some(text(*self))
    }
}

impl Written for Option<Duration> {
    fn written(&self) -> Option<String> {
        self.map(text)
    }
}

pub fn serialize<S: Serializer, T: Written>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    match value.written() {
        Some(t) => s.serialize_str(&t),
        None => s.serialize_none(),
    }
}

/// Whole seconds, or milliseconds for a duration that is not a whole number of seconds.
pub fn text(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_unit_and_read_back_alike() {
        for (d, t) in [
            (Duration::from_secs(86400), "86400s"),
            (Duration::from_secs(60), "60s"),
            (Duration::from_millis(1500), "1500ms"),
        ] {
            assert_eq!(text(d), t);
            assert_eq!(humantime::parse_duration(t).ok(), Some(d));
        }
    }
}
