//! The chart BENCHMARKS.md shows: throughput and p99 latency against concurrency, Chronicle
//! beside its baseline, for the figures measured at several concurrencies.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use crate::report::{Figure, Results};
use crate::stats::human;

/// One line of the chart: (concurrency, value) points.
struct Line {
    label: String,
    color: RGBColor,
    baseline: bool,
    points: Vec<(f64, f64)>,
}

const KINDS: [(&str, &str, RGBColor); 3] = [
    ("commands", "POST /posts", RGBColor(31, 119, 180)),
    ("updates", "PATCH /posts/{id}", RGBColor(44, 160, 44)),
    ("reads", "GET /posts/{id}", RGBColor(214, 39, 40)),
];

fn lines(results: &Results, value: impl Fn(&Figure, bool) -> Option<f64>) -> Vec<Line> {
    let mut out = Vec::new();
    for (prefix, label, color) in KINDS {
        let mut figures: Vec<&Figure> = results
            .figures
            .iter()
            .filter(|f| f.id.starts_with(prefix) && f.concurrency.is_some())
            .collect();
        figures.sort_by_key(|f| f.concurrency);
        for baseline in [false, true] {
            let points: Vec<(f64, f64)> = figures
                .iter()
                .filter_map(|f| Some((f.concurrency? as f64, value(f, baseline)?)))
                .filter(|(_, v)| v.is_finite())
                .collect();
            if points.is_empty() {
                continue;
            }
            let who = if baseline {
                figures
                    .first()
                    .and_then(|f| f.baseline.as_ref())
                    .map_or("baseline".to_owned(), |b| b.label.clone())
            } else {
                "Chronicle".to_owned()
            };
            out.push(Line {
                label: format!("{label}: {who}"),
                color,
                baseline,
                points,
            });
        }
    }
    out
}

fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    title: &str,
    y_label: &str,
    lines: &[Line],
) -> anyhow::Result<()> {
    let values = || lines.iter().flat_map(|l| l.points.iter());
    let max_x = values().map(|p| p.0).fold(1.0, f64::max);
    let max_y = values().map(|p| p.1).fold(1.0, f64::max);
    let min_y = values().map(|p| p.1).fold(max_y, f64::min).max(0.01);
    // Log scale: reads are an order of magnitude above commands and both must stay legible.
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_x * 1.08, (min_y / 1.6..max_y * 1.6).log_scale())
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("concurrent clients")
        .y_desc(y_label)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| human(*y))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for line in lines {
        let style = line.style();
        chart
            .draw_series(LineSeries::new(line.points.clone(), style))
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .draw_series(
                line.points
                    .iter()
                    .map(|p| Circle::new(*p, 4, style.filled())),
            )
            .map_err(|e| anyhow!("{e}"))?;
    }
    Ok(())
}

impl Line {
    fn style(&self) -> ShapeStyle {
        if self.baseline {
            ShapeStyle::from(&self.color.mix(0.45)).stroke_width(2)
        } else {
            ShapeStyle::from(&self.color).stroke_width(3)
        }
    }
}

/// The legend, below both panels, in two columns.
fn legend(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    lines: &[Line],
) -> anyhow::Result<()> {
    for (i, line) in lines.iter().enumerate() {
        let x = 80 + (i % 2) as i32 * 560;
        let y = 12 + (i / 2) as i32 * 22;
        area.draw(&PathElement::new(vec![(x, y), (x + 30, y)], line.style()))
            .map_err(|e| anyhow!("{e}"))?;
        area.draw(&Text::new(
            line.label.clone(),
            (x + 40, y - 7),
            ("sans-serif", 14).into_font(),
        ))
        .map_err(|e| anyhow!("{e}"))?;
    }
    Ok(())
}

pub fn draw(results: &Results, path: &Path) -> anyhow::Result<()> {
    let throughput = lines(results, |f, baseline| {
        Some(if baseline {
            f.baseline.as_ref()?.value.median
        } else {
            f.chronicle.value.median
        })
    });
    let p99 = lines(results, |f, baseline| {
        let side = if baseline {
            f.baseline.as_ref()?
        } else {
            &f.chronicle
        };
        side.p99_ms.as_ref().map(|p| p.median)
    });
    let root = SVGBackend::new(path, (1200, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (plots, key) = root.split_vertically(480);
    let (left, right) = plots.split_horizontally(600);
    let title = "Throughput (median of runs, log scale)";
    panel(&left, title, "operations/s", &throughput)?;
    panel(
        &right,
        "p99 latency (median of runs, log scale)",
        "ms",
        &p99,
    )?;
    legend(&key, &throughput)?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
