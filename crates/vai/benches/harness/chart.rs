//! PNG charts of a harness run: every comparison as vai / baseline on a log scale with its goal
//! marked, and the list latencies of vai and the apiserver side by side, quiet and under churn.
//! Text needs a TrueType font, read at run time from the usual system places (plotters draws
//! text with ab_glyph, so nothing is linked); without one the charts are skipped with a message.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::row::{Phase, Row};

/// Where Debian, Fedora and Arch keep a sans-serif TrueType font.
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// One horizontal bar.
struct Bar {
    label: String,
    value: f64,
    series: usize,
    /// A goal drawn as a tick across the bar.
    marker: Option<f64>,
}

/// Draws `ratios.png` and `latency.png` into `out`.
pub fn draw(rows: &[Row], out: &Path) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    font()?;
    let phase_series = |r: &Row| if r.phase == Phase::Quiet { 0 } else { 1 };
    // Each quiet row beside the same comparison under churn.
    let quiet = rows.iter().filter(|r| r.phase == Phase::Quiet);
    let churn = rows.iter().filter(|r| r.phase == Phase::Churn);
    let mut paired: Vec<&Row> = Vec::new();
    let (mut quiet, mut churn) = (quiet.peekable(), churn.peekable());
    while quiet.peek().is_some() || churn.peek().is_some() {
        paired.extend(quiet.next());
        paired.extend(churn.next());
    }
    let ratios: Vec<Bar> = paired
        .iter()
        // A log axis has no place for 0 or infinity (a baseline of 0: plotters loops forever).
        .filter(|r| r.ratio() > 0.0 && r.ratio().is_finite() && matches!(r.unit, "s" | "ms" | "MB"))
        .map(|r| Bar {
            label: format!(
                "{} vs {} ({})",
                short(&r.scenario),
                r.baseline_name,
                r.phase.name()
            ),
            value: r.ratio(),
            series: phase_series(r),
            marker: r.goal_ratio(),
        })
        .collect();
    let mut latency = Vec::new();
    for r in rows
        .iter()
        .filter(|r| r.unit == "ms" && r.baseline_name != "the goal")
    {
        let label = format!("{} ({})", short(&r.scenario), r.phase.name());
        latency.push(Bar {
            label: format!("{label}: vai"),
            value: r.vai,
            series: 2 * phase_series(r),
            marker: None,
        });
        latency.push(Bar {
            label: format!("{label}: {}", r.baseline_name),
            value: r.baseline,
            series: 2 * phase_series(r) + 1,
            marker: None,
        });
    }
    let ratio_png = out.join("ratios.png");
    bars(
        &ratio_png,
        "vai / baseline (log scale; left of 1 = vai better; black tick = goal)",
        "vai / baseline",
        &ratios,
        &[("quiet", BLUE), ("under churn", RED)],
    )?;
    let latency_png = out.join("latency.png");
    bars(
        &latency_png,
        "Lists and a UI page: median milliseconds (log scale)",
        "ms",
        &latency,
        &[
            ("vai, quiet", BLUE),
            ("baseline, quiet", RGBColor(140, 170, 230)),
            ("vai, under churn", RED),
            ("baseline, under churn", RGBColor(235, 150, 150)),
        ],
    )?;
    Ok(vec![ratio_png, latency_png])
}

/// The scenario's name without its measured details in parentheses.
fn short(scenario: &str) -> &str {
    scenario.split(" (").next().unwrap_or(scenario).trim()
}

fn font() -> Result<(), String> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let bytes = FONTS
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .ok_or_else(|| format!("no TrueType font in {}", FONTS.join(", ")))?;
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes.leak())
            .map_err(|_| "the font could not be read".to_string())
    })
    .clone()
}

/// A horizontal bar chart on a log axis, first bar on top.
fn bars(
    path: &Path,
    title: &str,
    axis: &str,
    bars: &[Bar],
    series: &[(&str, RGBColor)],
) -> Result<(), Box<dyn Error>> {
    let values = bars
        .iter()
        .flat_map(|b| [Some(b.value), b.marker])
        .flatten()
        .filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let (lo, hi) = (lo / 2.0, hi * 2.0);
    let n = bars.len();
    if n == 0 {
        return Ok(());
    }
    let root = BitMapBackend::new(path, (1200, 90 + 26 * n as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(520)
        .build_cartesian_2d((lo..hi).log_scale(), (0..n - 1).into_segmented())?;
    // Segments count from the bottom; the first bar goes on top.
    let slot = |i: usize| n - 1 - i;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(k) if *k < n => bars[slot(*k)].label.clone(),
            _ => String::new(),
        })
        .x_desc(axis)
        .label_style(("sans-serif", 13))
        .draw()?;
    for (k, (name, color)) in series.iter().enumerate() {
        chart
            .draw_series(
                bars.iter()
                    .enumerate()
                    .filter(|(_, b)| b.series == k)
                    .map(|(i, b)| {
                        let mut bar = Rectangle::new(
                            [
                                (lo, SegmentValue::Exact(slot(i))),
                                (b.value, SegmentValue::Exact(slot(i) + 1)),
                            ],
                            color.filled(),
                        );
                        bar.set_margin(4, 4, 0, 0);
                        bar
                    }),
            )?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart.draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
        let goal = b.marker?;
        Some(PathElement::new(
            vec![
                (goal, SegmentValue::Exact(slot(i))),
                (goal, SegmentValue::Exact(slot(i) + 1)),
            ],
            BLACK.stroke_width(3),
        ))
    }))?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()?;
    root.present()?;
    Ok(())
}
