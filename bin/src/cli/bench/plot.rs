//! `shoal bench --plot FILE.svg`: the latency distribution as a percentile curve (the x axis
//! in "nines", so the tail is as wide as the median) above the throughput of each second of
//! the measured window (plotters, SVG backend).

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

/// Width and height of the image, in pixels.
const SIZE: (u32, u32) = (1000, 800);
/// Points on the percentile curve.
const CURVE_POINTS: u32 = 400;
/// Deepest percentile drawn: 99.999 % (5 nines), when there are samples enough.
const MAX_NINES: f64 = 5.0;

/// What a plot shows.
#[derive(Debug, Clone, Copy)]
pub struct PlotData<'a> {
    /// The title (workload, clients…).
    pub title: &'a str,
    /// Every operation's latency, in microseconds.
    pub latency: &'a Histogram<u64>,
    /// Successful operations completed in each second.
    pub per_second: &'a [u64],
}

/// The percentile `x` nines stand for, as a label: 0 → "0%", 1 → "90%", 3 → "99.9%".
fn percentile_label(nines: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-nines));
    let decimals = (nines.ceil() as usize).saturating_sub(2).min(4);
    format!("{percent:.decimals$}%")
}

/// The curve's points: (nines, latency in ms).
fn percentile_curve(latency: &Histogram<u64>) -> (f64, Vec<(f64, f64)>) {
    let samples = latency.len().max(1) as f64;
    let max_nines = samples.log10().clamp(1.0, MAX_NINES);
    let points = (0..=CURVE_POINTS)
        .map(|i| {
            let nines = max_nines * f64::from(i) / f64::from(CURVE_POINTS);
            let quantile = (1.0 - 10f64.powf(-nines)).clamp(0.0, 1.0);
            let ms = latency.value_at_quantile(quantile) as f64 / 1000.0;
            (nines, ms)
        })
        .collect();
    (max_nines, points)
}

fn err(e: impl std::fmt::Display) -> String {
    format!("cannot draw the plot: {e}")
}

/// Renders the SVG document.
pub fn render(data: &PlotData<'_>) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (top, bottom) = root.split_vertically(SIZE.1 / 2);

        let (max_nines, curve) = percentile_curve(data.latency);
        let max_ms = curve.iter().map(|p| p.1).fold(0.0, f64::max).max(0.001) * 1.1;
        let caption = if data.latency.is_empty() {
            format!("{}: latency (no successful operation)", data.title)
        } else {
            format!(
                "{}: latency by percentile (p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms)",
                data.title,
                data.latency.value_at_quantile(0.5) as f64 / 1000.0,
                data.latency.value_at_quantile(0.99) as f64 / 1000.0,
                data.latency.value_at_quantile(0.999) as f64 / 1000.0,
            )
        };
        let mut chart = ChartBuilder::on(&top)
            .caption(caption, ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..max_nines, 0f64..max_ms)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (ms)")
            .x_labels((max_nines.ceil() as usize) * 2 + 1)
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(curve, BLUE.stroke_width(2)))
            .map_err(err)?;

        let seconds = data.per_second.len().max(1);
        let max_ops = data.per_second.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.1;
        let total: u64 = data.per_second.iter().sum();
        let mut chart = ChartBuilder::on(&bottom)
            .caption(
                format!(
                    "throughput per second (mean {:.0} ops/s)",
                    total as f64 / seconds as f64
                ),
                ("sans-serif", 18),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..seconds as f64, 0f64..max_ops)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("second of the measured window")
            .y_desc("ops/s")
            .x_labels(seconds.min(20) + 1)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(data.per_second.iter().enumerate().map(|(i, ops)| {
                let x = i as f64;
                Rectangle::new(
                    [(x + 0.05, 0.0), (x + 0.95, *ops as f64)],
                    GREEN.mix(0.6).filled(),
                )
            }))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Renders and writes the SVG to `path` (through a temporary file, renamed).
pub fn write(path: &Path, data: &PlotData<'_>) -> Result<(), String> {
    let svg = render(data)?;
    let tmp = path.with_extension("svg.tmp");
    std::fs::write(&tmp, svg)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write the plot to {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram() -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 60_000_000, 3).unwrap();
        for i in 1..=10_000u64 {
            h.record(200 + i % 700 + if i % 1000 == 0 { 20_000 } else { 0 })
                .unwrap();
        }
        h
    }

    #[test]
    fn labels_name_percentiles() {
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(4.0), "99.99%");
    }

    #[test]
    fn the_curve_rises_and_reaches_the_tail() {
        let h = histogram();
        let (max, curve) = percentile_curve(&h);
        assert!((max - 4.0).abs() < 1e-9);
        assert!(curve.windows(2).all(|w| w[0].1 <= w[1].1));
        assert!(curve.last().unwrap().1 >= 20.0);
    }

    #[test]
    fn the_svg_is_well_formed_with_both_charts() {
        let h = histogram();
        let per_second = [900, 1000, 1100, 0, 1200];
        let svg = render(&PlotData {
            title: "put, 64 clients",
            latency: &h,
            per_second: &per_second,
        })
        .unwrap();
        assert!(
            svg.starts_with("<svg") || svg.starts_with("<?xml"),
            "{}",
            &svg[..80]
        );
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("latency by percentile"));
        assert!(svg.contains("throughput per second"));
        assert!(svg.contains("<polyline"), "the percentile curve");
        // Four non-empty bars (the zero-height one is drawn too, flat).
        assert!(svg.matches("<rect").count() >= 5);
        // Balanced elements: every opened tag is closed (self-closing or paired).
        let opens = svg.matches("<text").count();
        let closes = svg.matches("</text>").count();
        assert_eq!(opens, closes);
    }

    #[test]
    fn an_empty_run_still_plots() {
        let h = Histogram::new_with_bounds(1, 60_000_000, 3).unwrap();
        let svg = render(&PlotData {
            title: "get",
            latency: &h,
            per_second: &[],
        })
        .unwrap();
        assert!(svg.contains("no successful operation"));
    }
}
