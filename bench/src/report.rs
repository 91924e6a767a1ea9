//! The report: one row per scenario metric, contender vs same-run baseline.

use std::fmt::Write as _;
use std::path::Path;

use s2s_bench::stats::Summary;
use serde::Serialize;

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

/// One compared metric.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub metric: String,
    pub unit: String,
    pub better: Better,
    pub contender: String,
    pub baseline: String,
    pub contender_values: Vec<f64>,
    pub baseline_values: Vec<f64>,
    pub contender_summary: Option<Summary>,
    pub baseline_summary: Option<Summary>,
    /// Contender median / baseline median.
    pub ratio: Option<f64>,
    /// The target as text, e.g. "ratio >= 2".
    pub target: String,
    /// `None` = not assessable (baseline or contender missing).
    pub met: Option<bool>,
    pub notes: Vec<String>,
}

impl Row {
    /// Builds a row; `min_ratio`/`max_ratio` define the target on the ratio.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scenario: &str,
        metric: &str,
        unit: &str,
        better: Better,
        (contender, contender_values): (&str, Vec<f64>),
        (baseline, baseline_values): (&str, Vec<f64>),
        target: RatioTarget,
    ) -> Self {
        let cs = Summary::of(&contender_values);
        let bs = Summary::of(&baseline_values);
        let ratio = match (cs, bs) {
            (Some(c), Some(b)) if b.median != 0.0 => Some(c.median / b.median),
            _ => None,
        };
        let met = match (ratio, target) {
            (Some(r), RatioTarget::AtLeast(t)) => Some(r >= t),
            (Some(r), RatioTarget::AtMost(t)) => Some(r <= t),
            (_, RatioTarget::None) | (None, _) => None,
        };
        Self {
            scenario: scenario.into(),
            metric: metric.into(),
            unit: unit.into(),
            better,
            contender: contender.into(),
            baseline: baseline.into(),
            contender_values,
            baseline_values,
            contender_summary: cs,
            baseline_summary: bs,
            ratio,
            target: target.to_string(),
            met,
            notes: Vec::new(),
        }
    }

    pub fn note(mut self, n: impl Into<String>) -> Self {
        self.notes.push(n.into());
        self
    }
}

/// A target on the contender/baseline ratio.
#[derive(Debug, Clone, Copy)]
pub enum RatioTarget {
    AtLeast(f64),
    AtMost(f64),
    None,
}

impl std::fmt::Display for RatioTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AtLeast(t) => write!(f, "ratio >= {t:.2}"),
            Self::AtMost(t) => write!(f, "ratio <= {t:.2}"),
            Self::None => write!(f, "reported as is"),
        }
    }
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    pub command: String,
    pub quick: bool,
    pub started_utc: String,
    pub seconds: f64,
    pub machine: Machine,
    pub nifi_version: String,
    pub rows: Vec<Row>,
    /// Scenarios that could not be measured, with why.
    pub not_measured: Vec<(String, String)>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub mem_gib: f64,
    pub kernel: String,
}

impl Machine {
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown".into());
        let mem_kib: f64 = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            mem_gib: mem_kib / 1024.0 / 1024.0,
            kernel,
        }
    }
}

fn fmt_summary(s: Option<Summary>) -> String {
    match s {
        Some(s) => format!("{} ({}–{})", num(s.median), num(s.min), num(s.max)),
        None => "—".into(),
    }
}

fn num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

impl Report {
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(s, "# nifi-s2s benchmark report\n");
        let _ = writeln!(
            s,
            "- command: `{}`\n- started: {} UTC, took {:.0} s\n- machine: {} × {}, {:.1} GiB RAM, Linux {}\n- NiFi {} (shared test instance)\n",
            self.command,
            self.started_utc,
            self.seconds,
            m.cores,
            m.cpu,
            m.mem_gib,
            m.kernel,
            self.nifi_version
        );
        let _ = writeln!(
            s,
            "Medians with (min–max) over alternating runs; ratio = contender median / baseline median, both measured in this run.\n"
        );
        let _ = writeln!(
            s,
            "| scenario | metric | contender | baseline | contender | baseline | ratio | target | met |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let met = match r.met {
                Some(true) => "✅ met",
                Some(false) => "❌ missed",
                None => "n/a",
            };
            let _ = writeln!(
                s,
                "| {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} |",
                r.scenario,
                r.metric,
                r.unit,
                r.contender,
                r.baseline,
                fmt_summary(r.contender_summary),
                fmt_summary(r.baseline_summary),
                r.ratio.map_or_else(|| "—".into(), |x| format!("{x:.2}")),
                r.target,
                met
            );
        }
        let notes: Vec<_> = self
            .rows
            .iter()
            .flat_map(|r| r.notes.iter().map(move |n| (r, n)))
            .collect();
        if !notes.is_empty() {
            let _ = writeln!(s, "\n## Notes\n");
            for (r, n) in notes {
                let _ = writeln!(s, "- {} / {}: {n}", r.scenario, r.metric);
            }
        }
        if !self.not_measured.is_empty() {
            let _ = writeln!(s, "\n## Not measured\n");
            for (k, why) in &self.not_measured {
                let _ = writeln!(s, "- {k}: {why}");
            }
        }
        s
    }

    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        std::fs::write(dir.join("report.md"), self.to_markdown())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_and_target() {
        let r = Row::new(
            "P1",
            "rate",
            "FF/s",
            Better::Higher,
            ("s2s", vec![10.0, 30.0, 20.0]),
            ("java", vec![5.0, 10.0, 15.0]),
            RatioTarget::AtLeast(2.0),
        );
        assert_eq!(r.ratio, Some(2.0));
        assert_eq!(r.met, Some(true));
        let r = Row::new(
            "P1",
            "cpu",
            "s",
            Better::Lower,
            ("s2s", vec![1.0]),
            ("java", vec![2.0]),
            RatioTarget::AtMost(1.0 / 3.0),
        );
        assert_eq!(r.met, Some(false));
        let r = Row::new(
            "P3",
            "rate",
            "rec/s",
            Better::Higher,
            ("bridge", vec![1.0]),
            ("ListenHTTP", vec![]),
            RatioTarget::AtLeast(10.0),
        );
        assert_eq!((r.ratio, r.met), (None, None));
    }
}
