//! Text for times and durations as the console shows them: `3m12s`, `5s ago`, `in 4m`,
//! `14:03:27` (UTC), with "—" for what is unknown.

/// What the console shows for a value it does not have.
pub const NONE: &str = "—";

/// A duration in seconds, compact: `42s`, `3m12s`, `2h05m`, `3d04h`; negative as `0s`.
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

/// How long ago `at` (Unix seconds) was, at `now`: `5s ago`; `—` when `at` is 0.
pub fn ago(at: i64, now: i64) -> String {
    if at <= 0 {
        return NONE.into();
    }
    format!("{} ago", duration(now - at))
}

/// How long until `at` (Unix seconds), at `now`: `in 4m00s`, or `expired`.
pub fn until(at: i64, now: i64) -> String {
    if at <= now {
        "expired".into()
    } else {
        format!("in {}", duration(at - now))
    }
}

/// Unix milliseconds as the UTC time of day, `HH:MM:SS`.
pub fn clock_ms(at_ms: i64) -> String {
    clock(at_ms.div_euclid(1000))
}

/// Unix seconds as the UTC time of day, `HH:MM:SS`.
pub fn clock(at: i64) -> String {
    let d = at.rem_euclid(86400);
    format!("{:02}:{:02}:{:02}", d / 3600, (d % 3600) / 60, d % 60)
}

/// Unix seconds as a UTC date and time, `2026-12-02 14:03:27`.
pub fn datetime(at: i64) -> String {
    // Days to a civil date: Howard Hinnant's `civil_from_days`.
    let z = at.div_euclid(86400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {}", clock(at))
}

/// Milliseconds with a sensible precision: `0.42ms`, `12.3ms`, `1204ms`.
pub fn millis(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.2}ms")
    } else if ms < 100.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{ms:.0}ms")
    }
}

/// `s` cut to `width` characters, with `…` when cut.
pub fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_clocks() {
        assert_eq!(duration(-3), "0s");
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(192), "3m12s");
        assert_eq!(duration(7500), "2h05m");
        assert_eq!(duration(3 * 86400 + 4 * 3600), "3d04h");
        assert_eq!(ago(0, 100), "—");
        assert_eq!(ago(95, 100), "5s ago");
        assert_eq!(until(100, 100), "expired");
        assert_eq!(until(340, 100), "in 4m00s");
        assert_eq!(clock(86400 + 3600 + 61), "01:01:01");
        assert_eq!(clock_ms(1_500), "00:00:01");
        assert_eq!(datetime(0), "1970-01-01 00:00:00");
        assert_eq!(datetime(1_796_170_800), "2026-12-02 00:20:00");
        assert_eq!(datetime(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(millis(0.4214), "0.42ms");
        assert_eq!(millis(12.34), "12.3ms");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }
}
