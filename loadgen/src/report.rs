//! Results of a run as a table, as JSON, and as an HTML page with SVG plots
//! (latency by percentile, throughput over time).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use zoocore_net::ErrorCode;

use crate::procfs::Interrupts;
use crate::stats::{Class, Recorder};

/// Percentiles every class reports, and the points of its latency curve.
const CURVE: &[f64] = &[
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999,
];

#[derive(Debug, Clone, Serialize)]
pub struct ClassResult {
    pub class: Class,
    pub count: u64,
    pub ops_per_sec: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub max_us: f64,
    /// (percentile, microseconds) points of the latency curve.
    pub curve: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerUsage {
    pub pid: u32,
    /// Server CPU time (all threads, user + system) per completed operation.
    pub cpu_us_per_op: f64,
    /// Cores the server kept busy on average.
    pub cores: f64,
    pub rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetResult {
    pub target: String,
    pub addrs: Vec<String>,
    pub rounds: usize,
    /// Measured seconds, all rounds together.
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub classes: Vec<ClassResult>,
    /// Error replies by ZooKeeper error name.
    pub errors: BTreeMap<String, u64>,
    /// Completions per second of the measured windows, rounds one after the other.
    pub timeline: Vec<BTreeMap<Class, u64>>,
    /// loadgen's own CPU time per completed operation.
    pub loadgen_cpu_us_per_op: f64,
    pub server: Option<ServerUsage>,
    /// Inter-processor interrupts per completed operation, machine-wide
    /// over the measured windows (everything running counts).
    pub interrupts_per_op: Option<InterruptsPerOp>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InterruptsPerOp {
    /// `RES` in /proc/interrupts.
    pub rescheduling: f64,
    /// `CAL` in /proc/interrupts.
    pub function_call: f64,
}

fn us(nanos: u64) -> f64 {
    nanos as f64 / 1000.0
}

pub fn error_name(code: i32) -> String {
    ErrorCode::from_i32(code).map_or_else(|| format!("error {code}"), |c| format!("{c:?}"))
}

/// What the rounds of one target measured, added up.
pub struct Measured<'a> {
    pub recorder: &'a Recorder,
    pub timeline: &'a [[u64; Class::ALL.len()]],
    pub rounds: usize,
    pub seconds: f64,
    pub loadgen_cpu_us: f64,
    /// The server's pid, CPU microseconds over the measured windows, and RSS.
    pub server: Option<(u32, f64, Option<u64>)>,
    pub interrupts: Option<Interrupts>,
}

impl TargetResult {
    pub fn new(target: String, addrs: Vec<String>, measured: Measured<'_>) -> TargetResult {
        let Measured {
            recorder,
            timeline,
            rounds,
            seconds,
            loadgen_cpu_us,
            server,
            interrupts,
        } = measured;
        let total = recorder.total();
        let per_op = |us: f64| if total == 0 { 0.0 } else { us / total as f64 };
        let classes = Class::ALL
            .iter()
            .filter(|&&c| !recorder.histogram(c).is_empty())
            .map(|&class| {
                let h = recorder.histogram(class);
                let at = |p: f64| us(h.value_at_percentile(p));
                ClassResult {
                    class,
                    count: h.len(),
                    ops_per_sec: h.len() as f64 / seconds,
                    mean_us: h.mean() / 1000.0,
                    p50_us: at(50.0),
                    p90_us: at(90.0),
                    p99_us: at(99.0),
                    p999_us: at(99.9),
                    p9999_us: at(99.99),
                    max_us: us(h.max()),
                    curve: CURVE
                        .iter()
                        .map(|&p| (p, at(p)))
                        .chain([(100.0, us(h.max()))])
                        .collect(),
                }
            })
            .collect();
        TargetResult {
            target,
            addrs,
            rounds,
            seconds,
            ops_per_sec: total as f64 / seconds,
            classes,
            errors: recorder
                .errors
                .iter()
                .map(|(&code, &n)| (error_name(code), n))
                .collect(),
            timeline: timeline
                .iter()
                .map(|second| {
                    Class::ALL
                        .iter()
                        .filter(|&&c| second[c as usize] > 0)
                        .map(|&c| (c, second[c as usize]))
                        .collect()
                })
                .collect(),
            loadgen_cpu_us_per_op: per_op(loadgen_cpu_us),
            server: server.map(|(pid, cpu_us, rss_bytes)| ServerUsage {
                pid,
                cpu_us_per_op: per_op(cpu_us),
                cores: cpu_us / 1e6 / seconds,
                rss_bytes,
            }),
            interrupts_per_op: interrupts.map(|i| InterruptsPerOp {
                rescheduling: per_op(i.rescheduling as f64),
                function_call: per_op(i.function_call as f64),
            }),
        }
    }
}

/// The table printed at the end of a run.
pub fn table(results: &[TargetResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:<7} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}   (latency in us)",
        "target", "class", "ops/s", "p50", "p90", "p99", "p99.9", "p99.99", "max"
    );
    for r in results {
        for c in &r.classes {
            let _ = writeln!(
                out,
                "{:<12} {:<7} {:>11.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                r.target,
                c.class.name(),
                c.ops_per_sec,
                c.p50_us,
                c.p90_us,
                c.p99_us,
                c.p999_us,
                c.p9999_us,
                c.max_us
            );
        }
        let server = r.server.as_ref().map_or_else(
            || "server CPU unknown (not a local process loadgen may inspect)".to_owned(),
            |s| {
                format!(
                    "server CPU {:.1} us/op ({:.2} cores), RSS {}",
                    s.cpu_us_per_op,
                    s.cores,
                    s.rss_bytes
                        .map_or("?".into(), |b| format!("{:.0} MiB", b as f64 / 1048576.0))
                )
            },
        );
        let errors = if r.errors.is_empty() {
            "no errors".to_owned()
        } else {
            r.errors
                .iter()
                .map(|(name, n)| format!("{name} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let interrupts = r.interrupts_per_op.as_ref().map_or(String::new(), |i| {
            format!(
                "; machine-wide IPIs per op: {:.2} RES, {:.2} CAL",
                i.rescheduling, i.function_call
            )
        });
        let _ = writeln!(
            out,
            "{:<12} total {:.0} ops/s; {errors}; {server}; loadgen CPU {:.1} us/op{interrupts}",
            r.target, r.ops_per_sec, r.loadgen_cpu_us_per_op
        );
    }
    out
}

const COLOURS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

struct Plot<'a> {
    title: String,
    x_label: &'a str,
    y_label: &'a str,
    /// (x, label) ticks on the x axis.
    x_ticks: Vec<(f64, String)>,
    log_y: bool,
    series: Vec<(String, Vec<(f64, f64)>)>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Plot<'_> {
    fn svg(&self) -> String {
        let (w, h, left, right, top, bottom) = (720.0, 360.0, 70.0, 160.0, 30.0, 45.0);
        let points = self.series.iter().flat_map(|(_, p)| p.iter());
        let (mut x_max, mut y_min, mut y_max) = (1e-9f64, f64::MAX, 1e-9f64);
        for &(x, y) in points {
            x_max = x_max.max(x);
            y_min = y_min.min(y);
            y_max = y_max.max(y);
        }
        for (x, _) in &self.x_ticks {
            x_max = x_max.max(*x);
        }
        let (y_lo, y_hi) = if self.log_y {
            let lo = 10f64.powf(y_min.max(1.0).log10().floor());
            let hi = 10f64.powf(y_max.max(lo * 10.0).log10().ceil());
            (lo, hi)
        } else {
            (0.0, y_max * 1.1)
        };
        let y_of = |y: f64| {
            let f = if self.log_y {
                (y.max(y_lo).log10() - y_lo.log10()) / (y_hi.log10() - y_lo.log10())
            } else {
                y / y_hi
            };
            top + (h - top - bottom) * (1.0 - f)
        };
        let x_of = |x: f64| left + (w - left - right) * x / x_max;
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
        );
        let _ = write!(
            s,
            r#"<text x="{left}" y="18" font-size="14">{}</text>"#,
            escape(&self.title)
        );
        let y_ticks: Vec<f64> = if self.log_y {
            let mut t = Vec::new();
            let mut v = y_lo;
            while v <= y_hi * 1.0001 {
                t.push(v);
                v *= 10.0;
            }
            t
        } else {
            (0..=5).map(|i| y_hi / 5.0 * i as f64).collect()
        };
        for y in y_ticks {
            let py = y_of(y);
            let _ = write!(
                s,
                r##"<line x1="{left}" x2="{}" y1="{py}" y2="{py}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                w - right,
                left - 4.0,
                py + 4.0,
                if y >= 10_000.0 {
                    format!("{:.0}k", y / 1000.0)
                } else {
                    format!("{y}")
                }
            );
        }
        for (x, label) in &self.x_ticks {
            let px = x_of(*x);
            let _ = write!(
                s,
                r##"<line x1="{px}" x2="{px}" y1="{top}" y2="{}" stroke="#eee"/><text x="{px}" y="{}" text-anchor="middle">{}</text>"##,
                h - bottom,
                h - bottom + 14.0,
                escape(label)
            );
        }
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">{}</text>"#,
            (left + w - right) / 2.0,
            h - 8.0,
            escape(self.x_label),
            (top + h - bottom) / 2.0,
            (top + h - bottom) / 2.0,
            escape(self.y_label)
        );
        for (k, (name, pts)) in self.series.iter().enumerate() {
            let colour = COLOURS[k % COLOURS.len()];
            let path: Vec<String> = pts
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", x_of(x), y_of(y)))
                .collect();
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
            let ly = top + 14.0 * k as f64 + 10.0;
            let _ = write!(
                s,
                r#"<rect x="{}" y="{}" width="12" height="4" fill="{colour}"/><text x="{}" y="{}">{}</text>"#,
                w - right + 10.0,
                ly - 4.0,
                w - right + 26.0,
                ly,
                escape(name)
            );
        }
        s.push_str("</svg>");
        s
    }
}

/// x position of a percentile on a "nines" axis: 90 -> 1, 99 -> 2, 99.9 -> 3.
fn nines(p: f64) -> f64 {
    -(1.0 - p.min(99.999) / 100.0).log10()
}

/// An HTML page with a latency-by-percentile plot per class and a
/// throughput-over-time plot, all targets in each.
pub fn html(title: &str, results: &[TargetResult]) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<!doctype html><meta charset=utf-8><title>{0}</title><body style=\"font-family:sans-serif\"><h2>{0}</h2><pre>{1}</pre>",
        escape(title),
        escape(&table(results))
    );
    let classes: Vec<Class> = Class::ALL
        .iter()
        .copied()
        .filter(|c| {
            results
                .iter()
                .any(|r| r.classes.iter().any(|x| x.class == *c))
        })
        .collect();
    for class in classes {
        let series = results
            .iter()
            .filter_map(|r| {
                let c = r.classes.iter().find(|x| x.class == class)?;
                Some((
                    r.target.clone(),
                    c.curve.iter().map(|&(p, v)| (nines(p), v)).collect(),
                ))
            })
            .collect();
        let plot = Plot {
            title: format!("{} latency by percentile", class.name()),
            x_label: "percentile",
            y_label: "latency (us, log scale)",
            x_ticks: [
                (0.0, "0"),
                (1.0, "90"),
                (2.0, "99"),
                (3.0, "99.9"),
                (4.0, "99.99"),
                (5.0, "99.999"),
            ]
            .iter()
            .map(|&(x, l)| (x, l.to_owned()))
            .collect(),
            log_y: true,
            series,
        };
        body.push_str(&plot.svg());
        body.push_str("<br>");
    }
    let longest = results.iter().map(|r| r.timeline.len()).max().unwrap_or(0);
    let plot = Plot {
        title: "throughput over time (all classes)".into(),
        x_label: "second of the measured window",
        y_label: "operations per second",
        x_ticks: (0..=longest)
            .step_by((longest / 10).max(1))
            .map(|s| (s as f64, s.to_string()))
            .collect(),
        log_y: false,
        series: results
            .iter()
            .map(|r| {
                let points = r
                    .timeline
                    .iter()
                    .enumerate()
                    .map(|(s, counts)| (s as f64 + 0.5, counts.values().sum::<u64>() as f64))
                    .collect();
                (r.target.clone(), points)
            })
            .collect(),
    };
    body.push_str(&plot.svg());
    body.push_str("</body>\n");
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn result(name: &str, micros: u64) -> TargetResult {
        let mut r = Recorder::new(2);
        for i in 0..1000 {
            r.record(
                Class::Read,
                Duration::from_micros(micros + i % 10),
                Duration::from_millis(i),
                0,
            );
        }
        r.record(
            Class::Write,
            Duration::from_millis(3),
            Duration::from_millis(1500),
            -101,
        );
        let timeline = r.timeline.clone();
        let measured = Measured {
            recorder: &r,
            timeline: &timeline,
            rounds: 1,
            seconds: 2.0,
            loadgen_cpu_us: 1001.0,
            server: Some((7, 5005.0, None)),
            interrupts: Some(Interrupts {
                rescheduling: 2002,
                function_call: 0,
            }),
        };
        TargetResult::new(name.into(), vec!["127.0.0.1:1".into()], measured)
    }

    #[test]
    fn results_carry_rates_percentiles_errors_and_cpu_per_op() {
        let r = result("a", 100);
        assert_eq!(r.classes.len(), 2);
        let read = &r.classes[0];
        assert_eq!((read.count, read.ops_per_sec), (1000, 500.0));
        assert!((99.0..=110.0).contains(&read.p50_us), "{}", read.p50_us);
        assert_eq!(r.errors.get("NoNode"), Some(&1));
        assert!((r.loadgen_cpu_us_per_op - 1.0).abs() < 1e-9);
        assert!((r.server.as_ref().unwrap().cpu_us_per_op - 5.0).abs() < 1e-9);
        let interrupts = r.interrupts_per_op.as_ref().unwrap();
        assert!((interrupts.rescheduling - 2.0).abs() < 1e-9);
        assert_eq!(r.timeline[0].get(&Class::Read), Some(&1000));
        assert_eq!(r.timeline[1].get(&Class::Write), Some(&1));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["classes"][0]["class"], "read");
    }

    #[test]
    fn html_report_has_a_plot_per_class_and_one_over_time() {
        let page = html("t", &[result("zoocore", 100), result("zookeeper", 300)]);
        assert_eq!(page.matches("<svg").count(), 3);
        assert_eq!(page.matches("<polyline").count(), 6);
        assert!(page.contains("read latency by percentile"));
        assert!(page.contains("zookeeper"));
    }
}
