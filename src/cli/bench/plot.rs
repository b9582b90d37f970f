//! `floe bench --plot`: latency against rate, as an SVG file that any
//! browser opens. Written by hand: a few lines and polylines do not need
//! a plotting library.

use super::Outcome;
use std::fmt::Write;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 420.0;
/// Left, right, top, bottom.
const MARGIN: (f64, f64, f64, f64) = (70.0, 130.0, 40.0, 50.0);

/// The percentiles drawn, with their colours.
const SERIES: [(&str, &str); 4] = [
    ("p50", "#2e7d32"),
    ("p90", "#1565c0"),
    ("p99", "#f9a825"),
    ("p99.9", "#d32f2f"),
];

fn latencies(o: &Outcome) -> [f64; 4] {
    [o.p50_ms, o.p90_ms, o.p99_ms, o.p999_ms]
}

/// The chart of `outcomes`, one point per rate, rates on a log scale.
pub fn svg(outcomes: &[Outcome], title: &str) -> String {
    let (left, right, top, bottom) = MARGIN;
    let (plot_w, plot_h) = (WIDTH - left - right, HEIGHT - top - bottom);
    let rates: Vec<f64> = outcomes.iter().map(|o| o.rate.log10()).collect();
    let (low, high) = rates
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &r| {
            (l.min(r), h.max(r))
        });
    let span = (high - low).max(1e-9);
    let x = |rate: f64| match outcomes.len() {
        1 => left + plot_w / 2.0,
        _ => left + (rate.log10() - low) / span * plot_w,
    };
    let top_ms = (outcomes.iter().flat_map(latencies).fold(0.0, f64::max) * 1.1).max(0.001);
    let y = |ms: f64| top + plot_h - ms / top_ms * plot_h;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{left}" y="24" font-size="15">{}</text>"#,
        escape(title)
    );
    for i in 0..=5 {
        let ms = top_ms * i as f64 / 5.0;
        let _ = writeln!(
            out,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{ms:.2}</text>"##,
            left + plot_w,
            left - 6.0,
            y(ms) + 4.0,
            y = y(ms),
        );
    }
    for o in outcomes {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x(o.rate),
            top + plot_h + 18.0,
            o.rate
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">readings per second</text>"#,
        left + plot_w / 2.0,
        HEIGHT - 8.0
    );
    let _ = writeln!(
        out,
        r#"<text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">latency, ms</text>"#,
        top + plot_h / 2.0,
        top + plot_h / 2.0
    );
    for (k, (name, colour)) in SERIES.iter().enumerate() {
        let points: Vec<(f64, f64)> = (outcomes.iter())
            .map(|o| (x(o.rate), y(latencies(o)[k])))
            .collect();
        let line: Vec<String> = points
            .iter()
            .map(|(px, py)| format!("{px:.1},{py:.1}"))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            line.join(" ")
        );
        for (px, py) in points {
            let _ = writeln!(
                out,
                r#"<circle cx="{px:.1}" cy="{py:.1}" r="3" fill="{colour}"/>"#
            );
        }
        let legend_y = top + 16.0 * k as f64;
        let _ = writeln!(
            out,
            r#"<rect x="{}" y="{:.1}" width="12" height="3" fill="{colour}"/><text x="{}" y="{:.1}">{name}</text>"#,
            left + plot_w + 16.0,
            legend_y + 4.0,
            left + plot_w + 34.0,
            legend_y + 8.0
        );
    }
    out.push_str("</svg>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
