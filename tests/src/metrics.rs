//! A parsed scrape of `/metrics`.

/// A scrape of `/metrics`.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub text: String,
    pub samples: std::collections::HashMap<String, f64>,
}

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect();
        Self {
            text: text.to_string(),
            samples,
        }
    }

    /// The value of `key` (e.g. `tokend_codes_issued_total` or
    /// `tokend_refreshes_total{outcome="upstream"}`); 0 when absent.
    pub fn get(&self, key: &str) -> f64 {
        self.samples.get(key).copied().unwrap_or(0.0)
    }

    /// `self[key] - before[key]`.
    pub fn delta(&self, before: &Metrics, key: &str) -> f64 {
        self.get(key) - before.get(key)
    }
}
