//! The benchmark chart as a self-contained SVG (no font or image library needed): one panel per
//! (K, metric), events/s and p99 latency against concurrency, one line per server, both axes
//! logarithmic because the servers differ by orders of magnitude.

use std::fmt::Write;

pub struct Point {
    pub calls: u32,
    pub concurrency: u32,
    pub events_per_sec: f64,
    pub p99_us: f64,
}

pub struct Series {
    pub name: &'static str,
    pub points: Vec<Point>,
}

const PANEL_W: f64 = 420.0;
const PANEL_H: f64 = 280.0;
const MARGIN_L: f64 = 70.0;
const MARGIN_T: f64 = 40.0;
const GAP: f64 = 90.0;
/// Reads one figure of a point.
type Metric = fn(&Point) -> f64;

const COLORS: [&str; 6] = [
    "#d62728", "#7f7f7f", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e",
];

/// One panel per K (rows) and metric (columns).
pub fn svg(series: &[Series], calls: &[u32], concurrency: &[u32]) -> String {
    let metrics: [(&str, Metric); 2] = [
        ("events/s (higher is better)", |p| p.events_per_sec),
        ("p99 latency, µs (lower is better)", |p| p.p99_us),
    ];
    let width = MARGIN_L + 2.0 * PANEL_W + GAP + 130.0;
    let height = MARGIN_T + calls.len() as f64 * (PANEL_H + GAP);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (row, &k) in calls.iter().enumerate() {
        for (col, (title, metric)) in metrics.iter().enumerate() {
            let x0 = MARGIN_L + col as f64 * (PANEL_W + GAP);
            let y0 = MARGIN_T + row as f64 * (PANEL_H + GAP);
            let values: Vec<(u32, f64, usize)> = series
                .iter()
                .enumerate()
                .flat_map(|(i, s)| {
                    s.points
                        .iter()
                        .filter(move |p| p.calls == k)
                        .map(move |p| (p.concurrency, metric(p), i))
                })
                .filter(|(_, v, _)| *v > 0.0)
                .collect();
            panel(
                &mut out,
                x0,
                y0,
                &format!("K = {k}: {title}"),
                concurrency,
                &values,
            );
        }
    }
    let legend_x = MARGIN_L + 2.0 * PANEL_W + GAP + 20.0;
    for (i, s) in series.iter().enumerate() {
        let y = MARGIN_T + 20.0 + i as f64 * 20.0;
        let color = COLORS[i % COLORS.len()];
        let _ = writeln!(
            out,
            r#"<line x1="{legend_x}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            legend_x + 24.0,
            legend_x + 30.0,
            y + 4.0,
            s.name
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Axes, grid and one polyline per series; `values` are (concurrency, value, series index).
fn panel(
    out: &mut String,
    x0: f64,
    y0: f64,
    title: &str,
    xs: &[u32],
    values: &[(u32, f64, usize)],
) {
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" font-weight="bold">{title}</text>"#,
        x0,
        y0 - 10.0
    );
    let _ = writeln!(
        out,
        r#"<rect x="{x0}" y="{y0}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="black"/>"#
    );
    let Some((lo, hi)) = decades(values.iter().map(|v| v.1)) else {
        return;
    };
    let (xmin, xmax) = (log(xs_min(xs)), log(xs_max(xs)).max(log(xs_min(xs)) + 1.0));
    let px = |c: u32| x0 + 20.0 + (log(c) - xmin) / (xmax - xmin) * (PANEL_W - 40.0);
    let py = |v: f64| y0 + PANEL_H - (v.log10() - lo) / (hi - lo) * PANEL_H;
    for decade in lo as i32..=hi as i32 {
        let y = py(10f64.powi(decade));
        let _ = writeln!(
            out,
            r##"<line x1="{x0}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            x0 + PANEL_W,
            x0 - 6.0,
            y + 4.0,
            human(10f64.powi(decade))
        );
    }
    for &c in xs {
        let x = px(c);
        let _ = writeln!(
            out,
            r#"<text x="{x}" y="{}" text-anchor="middle">{c}</text>"#,
            y0 + PANEL_H + 16.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">concurrency</text>"#,
        x0 + PANEL_W / 2.0,
        y0 + PANEL_H + 34.0
    );
    let series_count = values.iter().map(|v| v.2 + 1).max().unwrap_or(0);
    for i in 0..series_count {
        let mut points: Vec<(u32, f64)> = values
            .iter()
            .filter(|v| v.2 == i)
            .map(|v| (v.0, v.1))
            .collect();
        points.sort_by_key(|p| p.0);
        let color = COLORS[i % COLORS.len()];
        let coords: Vec<String> = points
            .iter()
            .map(|&(c, v)| format!("{:.1},{:.1}", px(c), py(v)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2.5"/>"#,
            coords.join(" ")
        );
        for &(c, v) in &points {
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"/>"#,
                px(c),
                py(v)
            );
        }
    }
}

fn log(c: u32) -> f64 {
    f64::from(c.max(1)).log2()
}

fn xs_min(xs: &[u32]) -> u32 {
    xs.iter().copied().min().unwrap_or(1)
}

fn xs_max(xs: &[u32]) -> u32 {
    xs.iter().copied().max().unwrap_or(1)
}

/// The whole decades (as log10) that enclose every value.
fn decades(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    (lo <= hi).then(|| {
        let (lo, hi) = (lo.log10().floor(), hi.log10().ceil());
        (lo, hi.max(lo + 1.0))
    })
}

/// 1000 → "1k", 1000000 → "1M".
fn human(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{}M", v / 1e6),
        v if v >= 1e3 => format!("{}k", v / 1e3),
        v => format!("{v}"),
    }
}
