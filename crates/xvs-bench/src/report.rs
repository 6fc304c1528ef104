//! Results: every repetition kept, summarised as min/median/max, written as JSON and as the
//! markdown tables of docs/benchmarks.md, with the headline ratios.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

/// One measured quantity of one peer at one N, with every repetition.
#[derive(Clone, Debug, Serialize)]
pub struct Series {
    /// `xvs-nat`, `xvs-dr`, `iptables`, `nftables`, `haproxy`, `bare`.
    pub peer: String,
    /// Virtual services configured.
    pub n: u32,
    /// What was measured (see [`Metric`]).
    pub metric: String,
    /// Unit.
    pub unit: String,
    /// Each repetition.
    pub values: Vec<f64>,
    /// Smallest.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// Largest.
    pub max: f64,
}

/// The quantities.
#[derive(Copy, Clone, Debug)]
pub enum Metric {
    /// ns per packet, established flow (BPF_PROG_TEST_RUN).
    CostEstablished,
    /// ns per packet, new flow (BPF_PROG_TEST_RUN).
    CostNew,
    /// New TCP connections per second through the director.
    ConnRate,
    /// Packets per second delivered through the director.
    Pps,
    /// Packets per second the generator offered.
    OfferedPps,
    /// Seconds to install N services.
    Install,
    /// Milliseconds to add one service at N.
    AddOne,
    /// Milliseconds to remove one service at N.
    RemoveOne,
    /// Milliseconds for an `apply` of the file applied last, in which one real server's weight
    /// changed since (xvsadm sends that service only).
    ApplyOne,
    /// Milliseconds for the same `apply` when xvsadm has no memory of the file (the whole file
    /// is read and sent).
    ApplyWhole,
    /// Seconds to list N services.
    List,
    /// The yardstick, ns per packet of the program alone (the kernel's run statistics, minus an
    /// empty program's): an established flow's packet from the client.
    ProgEstablished,
    /// The yardstick: a new flow's first packet.
    ProgNew,
    /// The yardstick: a NAT real server's reply.
    ProgReply,
    /// The yardstick: a packet for no service.
    ProgMiss,
}

impl Metric {
    /// Name and unit.
    pub fn name(self) -> (&'static str, &'static str) {
        match self {
            Metric::CostEstablished => ("cost_established", "ns/packet"),
            Metric::CostNew => ("cost_new_flow", "ns/packet"),
            Metric::ConnRate => ("conn_per_s", "connections/s"),
            Metric::Pps => ("pps", "packets/s"),
            Metric::OfferedPps => ("offered_pps", "packets/s"),
            Metric::Install => ("install", "s"),
            Metric::AddOne => ("add_one", "ms"),
            Metric::RemoveOne => ("remove_one", "ms"),
            Metric::ApplyOne => ("apply_one", "ms"),
            Metric::ApplyWhole => ("apply_whole", "ms"),
            Metric::List => ("list", "s"),
            Metric::ProgEstablished => ("prog_established", "ns/packet"),
            Metric::ProgNew => ("prog_new_flow", "ns/packet"),
            Metric::ProgReply => ("prog_nat_reply", "ns/packet"),
            Metric::ProgMiss => ("prog_miss", "ns/packet"),
        }
    }
}

/// A column of a ratio table: its heading, the numerator's peer and quantity, the
/// denominator's.
type RatioColumn<'a> = (&'a str, (&'a str, Metric), (&'a str, Metric));

/// Everything a run produced.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// When, what machine, which mode.
    pub meta: BTreeMap<String, String>,
    /// The measurements.
    pub series: Vec<Series>,
    /// Single figures (memory per connection, ...).
    pub facts: BTreeMap<String, String>,
    /// Peers or sizes left out, and why.
    pub skipped: Vec<String>,
    /// Directors behind a router's ECMP: `n` is the number of directors.
    pub scale_out: Vec<Series>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Report {
    /// Records the repetitions of one measurement.
    pub fn add(&mut self, peer: &str, n: u32, metric: Metric, values: Vec<f64>) {
        if values.is_empty() {
            return;
        }
        let mut sorted = values.clone();
        let med = median(&mut sorted);
        let (name, unit) = metric.name();
        eprintln!(
            "  {peer:<9} N={n:<6} {name:<16} median {} (min {}, max {}) {unit}",
            fmt_num(med),
            fmt_num(sorted[0]),
            fmt_num(sorted[sorted.len() - 1])
        );
        self.series.push(Series {
            peer: peer.into(),
            n,
            metric: name.into(),
            unit: unit.into(),
            min: sorted[0],
            median: med,
            max: sorted[sorted.len() - 1],
            values,
        });
    }

    /// Records a peer's yardstick figures.
    pub fn add_costs(&mut self, peer: &str, n: u32, c: crate::xvs::Costs) {
        self.add(peer, n, Metric::ProgNew, c.new_flow);
        self.add(peer, n, Metric::ProgEstablished, c.established);
        self.add(peer, n, Metric::ProgReply, c.reply);
        self.add(peer, n, Metric::ProgMiss, c.miss);
    }

    /// Records the repetitions of one measurement with `directors` directors behind the router.
    pub fn add_scale_out(&mut self, directors: u32, metric: Metric, values: Vec<f64>) {
        let before = self.series.len();
        self.add("xvs-ecmp", directors, metric, values);
        if self.series.len() > before {
            let s = self.series.pop().expect("just added");
            self.scale_out.push(s);
        }
    }

    fn get(&self, peer: &str, n: u32, metric: Metric) -> Option<&Series> {
        self.series.iter().find(|s| s.peer == peer && s.n == n && s.metric == metric.name().0)
    }

    fn sizes(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.series.iter().map(|s| s.n).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn peers(&self, metric: Metric) -> Vec<String> {
        let order = [
            "xvs-nat",
            "xvs-nat-2rs",
            "xvs-nat-1000rs",
            "xvs-dr",
            "xvs-tun",
            "katran",
            "iptables",
            "nftables",
            "haproxy",
            "bare",
        ];
        let mut v: Vec<String> = Vec::new();
        for p in order {
            if self.series.iter().any(|s| s.peer == p && s.metric == metric.name().0) {
                v.push(p.into());
            }
        }
        v
    }

    /// A table of ratios of medians, a row per N: each column divides one peer's median of a
    /// quantity by another's, measured in the same run.
    fn ratio_table(&self, out: &mut String, title: &str, columns: &[RatioColumn<'_>]) {
        let _ = writeln!(out, "{title}\n");
        let heads: Vec<&str> = columns.iter().map(|c| c.0).collect();
        let _ = writeln!(out, "| N | {} |", heads.join(" | "));
        let _ = writeln!(out, "|---|{}", "---|".repeat(columns.len()));
        for n in self.sizes() {
            let cells: Vec<String> = columns
                .iter()
                .map(|(_, (a, am), (b, bm))| match (self.get(a, n, *am), self.get(b, n, *bm)) {
                    (Some(x), Some(y)) if y.median > 0.0 => format!("{:.2}", x.median / y.median),
                    _ => "–".into(),
                })
                .collect();
            let _ = writeln!(out, "| {n} | {} |", cells.join(" | "));
        }
    }

    /// The markdown of docs/benchmarks.md: headline ratios, then one table per quantity.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let sizes = self.sizes();
        use Metric::*;
        self.ratio_table(
            &mut out,
            "## Headline ratios (medians, same run)",
            &[
                ("conn/s xvs-nat / iptables", ("xvs-nat", ConnRate), ("iptables", ConnRate)),
                ("conn/s xvs-nat / nftables", ("xvs-nat", ConnRate), ("nftables", ConnRate)),
                ("conn/s xvs-nat / bare", ("xvs-nat", ConnRate), ("bare", ConnRate)),
                ("pps xvs-nat / iptables", ("xvs-nat", Pps), ("iptables", Pps)),
                ("pps xvs-nat / nftables", ("xvs-nat", Pps), ("nftables", Pps)),
                ("pps xvs-dr / bare", ("xvs-dr", Pps), ("bare", Pps)),
                ("cost est. xvs / bare", ("xvs-dr", CostEstablished), ("bare", CostEstablished)),
                ("cost new xvs / bare", ("xvs-nat", CostNew), ("bare", CostNew)),
            ],
        );
        self.ratio_table(
            &mut out,
            "\n## Against Katran (the yardstick: each program's own ns/packet, medians, same run)",
            &[
                ("established: xvs-dr / katran", ("xvs-dr", ProgEstablished), ("katran", ProgEstablished)),
                ("established: xvs-tun / katran", ("xvs-tun", ProgEstablished), ("katran", ProgEstablished)),
                ("new flow: xvs-dr / katran", ("xvs-dr", ProgNew), ("katran", ProgNew)),
                ("new flow: xvs-tun / katran", ("xvs-tun", ProgNew), ("katran", ProgNew)),
                ("miss: xvs / katran", ("xvs-dr", ProgMiss), ("katran", ProgMiss)),
                ("NAT established / DR established", ("xvs-nat", ProgEstablished), ("xvs-dr", ProgEstablished)),
            ],
        );
        for metric in [
            Metric::ProgEstablished,
            Metric::ProgNew,
            Metric::ProgReply,
            Metric::ProgMiss,
            Metric::CostEstablished,
            Metric::CostNew,
            Metric::ConnRate,
            Metric::Pps,
            Metric::OfferedPps,
            Metric::Install,
            Metric::AddOne,
            Metric::RemoveOne,
            Metric::ApplyOne,
            Metric::ApplyWhole,
            Metric::List,
        ] {
            let peers = self.peers(metric);
            if peers.is_empty() {
                continue;
            }
            let (name, unit) = metric.name();
            let _ = writeln!(out, "\n### {name} ({unit}): median (min–max)\n");
            let _ = write!(out, "| peer |");
            for n in &sizes {
                let _ = write!(out, " N={n} |");
            }
            let _ = writeln!(out);
            let _ = writeln!(out, "|---|{}", "---|".repeat(sizes.len()));
            for p in peers {
                let _ = write!(out, "| {p} |");
                for &n in &sizes {
                    match self.get(&p, n, metric) {
                        Some(s) => {
                            let _ = write!(out, " {} ({}–{}) |", fmt_num(s.median), fmt_num(s.min), fmt_num(s.max));
                        }
                        None => {
                            let _ = write!(out, " – |");
                        }
                    }
                }
                let _ = writeln!(out);
            }
        }
        if !self.scale_out.is_empty() {
            let _ = writeln!(out, "\n### Directors behind a router's ECMP (direct routing, mh): median (min–max)\n");
            let _ =
                writeln!(out, "| directors | conn/s | × 1 director | packets/s | × 1 director | offered packets/s |");
            let _ = writeln!(out, "|---|---|---|---|---|---|");
            let get = |k: u32, m: Metric| self.scale_out.iter().find(|s| s.n == k && s.metric == m.name().0);
            let mut ks: Vec<u32> = self.scale_out.iter().map(|s| s.n).collect();
            ks.dedup();
            for k in ks {
                let cell = |m: Metric| {
                    get(k, m).map_or("–".to_string(), |s| {
                        format!("{} ({}–{})", fmt_num(s.median), fmt_num(s.min), fmt_num(s.max))
                    })
                };
                let ratio = |m: Metric| match (get(k, m), get(1, m)) {
                    (Some(a), Some(b)) if b.median > 0.0 => format!("{:.2}", a.median / b.median),
                    _ => "–".into(),
                };
                let _ = writeln!(
                    out,
                    "| {k} | {} | {} | {} | {} | {} |",
                    cell(Metric::ConnRate),
                    ratio(Metric::ConnRate),
                    cell(Metric::Pps),
                    ratio(Metric::Pps),
                    cell(Metric::OfferedPps)
                );
            }
        }
        if !self.facts.is_empty() {
            let _ = writeln!(out, "\n### Other figures\n");
            for (k, v) in &self.facts {
                let _ = writeln!(out, "- {k}: {v}");
            }
        }
        if !self.skipped.is_empty() {
            let _ = writeln!(out, "\n### Not measured\n");
            for s in &self.skipped {
                let _ = writeln!(out, "- {s}");
            }
        }
        out
    }

    /// Writes results.json and results.md into `dir`, and the plots if matplotlib is there.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(self).expect("serialisable") + "\n")?;
        let mut md = String::from("# xvs benchmark results\n\n");
        for (k, v) in &self.meta {
            let _ = writeln!(md, "- {k}: {v}");
        }
        md.push('\n');
        md.push_str(&self.markdown());
        std::fs::write(dir.join("results.md"), md)?;
        // Debian's python3, which has python3-matplotlib (another python3 may come first in PATH).
        let python = if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
        let plot = std::process::Command::new(python)
            .arg("-c")
            .arg(include_str!("plot.py"))
            .arg(dir.join("results.json"))
            .arg(dir)
            .output();
        match plot {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("plots not drawn: {}", String::from_utf8_lossy(&o.stderr).trim()),
            Err(e) => eprintln!("plots not drawn: {e}"),
        }
        Ok(())
    }
}

/// Numbers as people read them: 3 significant digits, k/M for large ones.
pub fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}
