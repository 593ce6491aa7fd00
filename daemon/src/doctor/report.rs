//! Rendering doctor's checks: one line per check (✓/✗, name, detail) with an indented `fix:`
//! line under a failure, or a JSON array of `{check, ok, detail, fix}` for machines.

use super::Check;

/// The outcome of all checks, in the order they ran.
#[derive(Debug, Clone)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub(super) fn new(checks: Vec<Check>) -> Self {
        Self { checks }
    }

    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// Human-readable: one line per check, the fix indented under a failure, a total last.
    pub fn to_text(&self) -> String {
        let width = self.checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            let mark = if c.ok { '✓' } else { '✗' };
            out.push_str(&format!("{mark} {:<width$}  {}\n", c.check, c.detail));
            if let Some(fix) = &c.fix {
                out.push_str(&format!("  {:<width$}  fix: {fix}\n", ""));
            }
        }
        let failed = self.checks.iter().filter(|c| !c.ok).count();
        out.push_str(&match failed {
            0 => format!("doctor: all {} checks passed\n", self.checks.len()),
            n => format!("doctor: {n} of {} checks failed\n", self.checks.len()),
        });
        out
    }

    /// A JSON array of `{check, ok, detail, fix}` (`fix` is null for a passed check).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.checks).unwrap_or_else(|_| "[]".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_marks_each_check_and_indents_the_fix() {
        let r = Report::new(vec![
            Check::pass("config", "x.toml is valid"),
            Check::fail("issuer", "mismatch", "add the slash"),
        ]);
        assert!(!r.ok());
        let t = r.to_text();
        assert!(t.contains("✓ config  x.toml is valid\n"), "{t}");
        assert!(
            t.contains("✗ issuer  mismatch\n          fix: add the slash\n"),
            "{t}"
        );
        assert!(t.ends_with("doctor: 1 of 2 checks failed\n"), "{t}");
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).expect("json");
        assert_eq!(v[0]["fix"], serde_json::Value::Null);
        assert_eq!(v[1]["ok"], false);
    }
}
