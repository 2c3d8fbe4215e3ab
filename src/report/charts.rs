//! Charts for the dashboards: each drawn once as SVG (inline in the stored
//! HTML, scales to any screen) and once as PNG (inline CID images in mail,
//! since mail clients do not render SVG). Drawn with plotters and the
//! embedded DejaVu Sans font, so output is identical on every machine. Labels
//! come from data (department names): the SVG backend escapes them. Pure.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use serde::Serialize;

use crate::error::{Error, Result};

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FONT_BOLD: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");
const FAMILY: &str = "sans-serif";

const WIDTH: u32 = 600;
const HEIGHT: u32 = 340;
const INK: RGBColor = RGBColor(33, 37, 41);
const GRID: RGBColor = RGBColor(222, 226, 230);
const SERIES: RGBColor = RGBColor(13, 110, 253);
const WARN: RGBColor = RGBColor(220, 53, 69);

fn fonts() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // Registration only fails for malformed font bytes, which are embedded.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
        let _ = plotters::style::register_font(FAMILY, FontStyle::Bold, FONT_BOLD);
    });
}

/// What to draw.
#[derive(Debug, Clone)]
pub enum Spec {
    /// Vertical bars over categories (e.g. hours).
    Bars {
        labels: Vec<String>,
        values: Vec<f64>,
        y_unit: String,
    },
    /// Horizontal bars, largest first (e.g. spend by department).
    HBars {
        labels: Vec<String>,
        values: Vec<f64>,
        x_unit: String,
    },
    /// A line over categories; gaps where a value is missing.
    Line {
        labels: Vec<String>,
        values: Vec<Option<f64>>,
        y_unit: String,
        /// A threshold drawn as a dashed red line.
        threshold: Option<f64>,
    },
    /// A month's burn-up: cumulative actual (solid), the forecast (dashed)
    /// inside its interval (a shaded cone), the budget (a red dashed line).
    BurnUp {
        labels: Vec<String>,
        actual: Vec<Option<f64>>,
        expected: Vec<Option<f64>>,
        low: Vec<Option<f64>>,
        high: Vec<Option<f64>>,
        budget: f64,
    },
    /// Labelled points.
    Scatter {
        points: Vec<(String, f64, f64)>,
        x_unit: String,
        y_unit: String,
    },
}

/// A drawn chart.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    /// File stem and mail content id (`chart-<name>`).
    pub name: String,
    pub title: String,
    /// A short text alternative (what the chart shows).
    pub alt: String,
    #[serde(skip)]
    pub svg: String,
    #[serde(skip)]
    pub png: Vec<u8>,
}

fn err<E: std::fmt::Debug>(what: &str) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Internal(format!("drawing chart {what}: {e:?}"))
}

/// Draw `spec` as SVG and PNG.
pub fn draw(name: &str, title: &str, alt: String, spec: &Spec) -> Result<Chart> {
    fonts();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        render(&root, title, spec).map_err(err(name))?;
        root.present().map_err(err(name))?;
    }
    // Scale to the container (phones) keeping the aspect ratio.
    let svg = svg.replacen(
        &format!("width=\"{WIDTH}\" height=\"{HEIGHT}\""),
        &format!("width=\"100%\" style=\"max-width:{WIDTH}px;height:auto\" role=\"img\" aria-label=\"{}\"", escape_attr(title)),
        1,
    );
    let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
        render(&root, title, spec).map_err(err(name))?;
        root.present().map_err(err(name))?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&rgb, WIDTH, HEIGHT, image::ColorType::Rgb8)
        .map_err(err(name))?;
    Ok(Chart {
        name: name.to_string(),
        title: title.to_string(),
        alt,
        svg,
        png,
    })
}

use image::ImageEncoder;

fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Shorten a label for an axis (full names stay in the tables).
fn short(label: &str, max: usize) -> String {
    if label.chars().count() <= max {
        label.to_string()
    } else {
        let cut: String = label.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}

fn upper(values: impl Iterator<Item = f64>) -> f64 {
    let max = values.fold(0.0_f64, f64::max);
    if max <= 0.0 { 1.0 } else { max * 1.12 }
}

/// An axis tick in the axis unit: `$2`, `$0.0025`, `1,200`, `80%`; no
/// trailing zeros, thousands grouped.
fn tick(v: f64, unit: &str) -> String {
    let t = format!("{:.6}", v.abs());
    let t = if t.contains('.') {
        t.trim_end_matches('0').trim_end_matches('.')
    } else {
        &t
    };
    let (int, frac) = t.split_once('.').map_or((t, None), |(i, f)| (i, Some(f)));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if let Some(f) = frac {
        grouped.push('.');
        grouped.push_str(f);
    }
    let sign = if v < 0.0 && grouped.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "-"
    } else {
        ""
    };
    if unit.starts_with("USD") {
        format!("{sign}${grouped}")
    } else if unit.contains('%') {
        format!("{sign}{grouped}%")
    } else {
        format!("{sign}{grouped}")
    }
}

type DrawResult<DB> =
    std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn render<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    spec: &Spec,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    match spec {
        Spec::Bars {
            labels,
            values,
            y_unit,
        } => draw_bars(root, title, labels, values, y_unit),
        Spec::HBars {
            labels,
            values,
            x_unit,
        } => draw_hbars(root, title, labels, values, x_unit),
        Spec::Line {
            labels,
            values,
            y_unit,
            threshold,
        } => draw_line(root, title, labels, values, y_unit, threshold),
        Spec::Scatter {
            points,
            x_unit,
            y_unit,
        } => draw_scatter(root, title, points, x_unit, y_unit),
        Spec::BurnUp {
            labels,
            actual,
            expected,
            low,
            high,
            budget,
        } => draw_burn_up(root, title, labels, [actual, expected, low, high], *budget),
    }
}

fn caption_font() -> TextStyle<'static> {
    (FAMILY, 22).into_font().style(FontStyle::Bold).color(&INK)
}

fn label_font() -> TextStyle<'static> {
    (FAMILY, 15).into_font().color(&INK)
}

fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    labels: &[String],
    values: &[f64],
    y_unit: &str,
) -> DrawResult<DB> {
    let caption = caption_font();
    let label_font = label_font();
    let n = labels.len().max(1);
    let mut chart = ChartBuilder::on(root)
        .caption(title, caption)
        .margin(12)
        .x_label_area_size(34)
        .y_label_area_size(78)
        .build_cartesian_2d(
            (0..n - 1).into_segmented(),
            0.0..upper(values.iter().copied()),
        )?;
    let step = n.div_ceil(8).max(1);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(GRID)
        .y_desc(y_unit)
        .y_labels(6)
        .y_label_formatter(&|v| tick(*v, y_unit))
        .label_style(label_font.clone())
        .axis_desc_style(label_font.clone())
        .x_labels(n)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if i % step == 0 => {
                labels.get(*i).cloned().unwrap_or_default()
            }
            _ => String::new(),
        })
        .draw()?;
    chart.draw_series(values.iter().enumerate().map(|(i, v)| {
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), *v),
            ],
            SERIES.filled(),
        );
        bar.set_margin(0, 0, 2, 2);
        bar
    }))?;
    Ok(())
}

fn draw_hbars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    labels: &[String],
    values: &[f64],
    x_unit: &str,
) -> DrawResult<DB> {
    let caption = caption_font();
    let label_font = label_font();
    let n = labels.len().max(1);
    let mut chart = ChartBuilder::on(root)
        .caption(title, caption)
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(180)
        .build_cartesian_2d(
            0.0..upper(values.iter().copied()),
            (0..n - 1).into_segmented(),
        )?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(GRID)
        .x_desc(x_unit)
        .x_labels(5)
        .x_label_formatter(&|v| tick(*v, x_unit))
        .label_style(label_font.clone())
        .axis_desc_style(label_font.clone())
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            // Largest at the top.
            SegmentValue::CenterOf(i) => (n - 1)
                .checked_sub(*i)
                .and_then(|row| labels.get(row))
                .map(|l| short(l, 20))
                .unwrap_or_default(),
            _ => String::new(),
        })
        .draw()?;
    chart.draw_series(values.iter().enumerate().map(|(i, v)| {
        let row = n - 1 - i;
        let mut bar = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(row)),
                (*v, SegmentValue::Exact(row + 1)),
            ],
            SERIES.filled(),
        );
        bar.set_margin(3, 3, 0, 0);
        bar
    }))?;
    Ok(())
}

/// A chart whose x axis is categories (indexes) and y axis reals.
type CategoryChart<'a, DB> = ChartContext<
    'a,
    DB,
    Cartesian2d<plotters::coord::types::RangedCoordusize, plotters::coord::types::RangedCoordf64>,
>;

/// The axes of a chart over categories: `labels` along x (every `every`-th
/// written), 0 to `top` in `y_unit` up y. Line charts and burn-ups share it.
fn category_chart<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    labels: &[String],
    top: f64,
    y_unit: &str,
    every: usize,
) -> std::result::Result<CategoryChart<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>> {
    let label_font = label_font();
    let n = labels.len().max(2);
    let mut chart = ChartBuilder::on(root)
        .caption(title, caption_font())
        .margin(14)
        .x_label_area_size(34)
        .y_label_area_size(78)
        .build_cartesian_2d(0..(n - 1), 0.0..top)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(GRID)
        .y_desc(y_unit)
        .y_labels(6)
        .y_label_formatter(&|v| tick(*v, y_unit))
        .label_style(label_font.clone())
        .axis_desc_style(label_font.clone())
        .x_labels(n)
        .x_label_formatter(&|i| {
            if i % every == 0 {
                labels.get(*i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .draw()?;
    Ok(chart)
}

fn draw_line<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    labels: &[String],
    values: &[Option<f64>],
    y_unit: &str,
    threshold: &Option<f64>,
) -> DrawResult<DB> {
    let n = labels.len().max(2);
    let top = upper(
        values
            .iter()
            .flatten()
            .copied()
            .chain(threshold.iter().copied()),
    );
    let mut chart = category_chart(root, title, labels, top, y_unit, n.div_ceil(6).max(1))?;
    // One segment per run of consecutive present values: a missing
    // day is a gap, never a drop to zero.
    let mut run: Vec<(usize, f64)> = Vec::new();
    let mut runs = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => run.push((i, *v)),
            None if !run.is_empty() => runs.push(std::mem::take(&mut run)),
            None => {}
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    for run in runs {
        chart.draw_series(LineSeries::new(run.clone(), SERIES.stroke_width(3)))?;
        chart.draw_series(run.into_iter().map(|p| Circle::new(p, 3, SERIES.filled())))?;
    }
    if let Some(t) = threshold {
        chart.draw_series(DashedLineSeries::new(
            [(0, *t), (n - 1, *t)],
            8,
            6,
            WARN.stroke_width(2),
        ))?;
    }
    Ok(())
}

fn draw_burn_up<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    labels: &[String],
    [actual, expected, low, high]: [&Vec<Option<f64>>; 4],
    budget: f64,
) -> DrawResult<DB> {
    let n = labels.len().max(2);
    let top = upper(
        [actual, expected, high]
            .into_iter()
            .flat_map(|v| v.iter().flatten().copied())
            .chain(std::iter::once(budget)),
    );
    let mut chart = category_chart(
        root,
        title,
        labels,
        top,
        "USD, cumulative",
        n.div_ceil(8).max(1),
    )?;
    let points = |v: &[Option<f64>]| -> Vec<(usize, f64)> {
        v.iter()
            .enumerate()
            .filter_map(|(i, y)| y.map(|y| (i, y)))
            .collect()
    };
    let (lo, hi) = (points(low), points(high));
    if lo.len() > 1 {
        let cone: Vec<(usize, f64)> = hi.iter().copied().chain(lo.iter().rev().copied()).collect();
        chart.draw_series(std::iter::once(Polygon::new(
            cone,
            SERIES.mix(0.15).filled(),
        )))?;
    }
    chart.draw_series(DashedLineSeries::new(
        points(expected),
        6,
        5,
        SERIES.stroke_width(2),
    ))?;
    chart.draw_series(LineSeries::new(points(actual), SERIES.stroke_width(3)))?;
    chart.draw_series(DashedLineSeries::new(
        [(0, budget), (n - 1, budget)],
        8,
        6,
        WARN.stroke_width(2),
    ))?;
    Ok(())
}

fn draw_scatter<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    points: &[(String, f64, f64)],
    x_unit: &str,
    y_unit: &str,
) -> DrawResult<DB> {
    let caption = caption_font();
    let label_font = label_font();
    // Zoom the x axis to the data (rates cluster), keep y from 0.
    let xs = points.iter().map(|p| p.1);
    let (lo, hi) = xs.fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (lo, hi) = if points.is_empty() {
        (0.0, 100.0)
    } else {
        let pad = ((hi - lo) * 0.25).max(2.0);
        ((lo - pad).max(0.0), (hi + pad).min(100.0))
    };
    let mut chart = ChartBuilder::on(root)
        .caption(title, caption)
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(86)
        .build_cartesian_2d(lo..hi, 0.0..upper(points.iter().map(|p| p.2)).max(1e-6))?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(GRID)
        .x_desc(x_unit)
        .y_desc(y_unit)
        .x_labels(6)
        .y_labels(6)
        .x_label_formatter(&|v| tick(*v, x_unit))
        .y_label_formatter(&|v| tick(*v, y_unit))
        .label_style(label_font.clone())
        .axis_desc_style(label_font.clone())
        .draw()?;
    let point_font = (FAMILY, 14).into_font().color(&INK);
    let mid = (lo + hi) / 2.0;
    chart.draw_series(points.iter().map(|(label, x, y)| {
        let text = short(label, 24);
        // Labels of points on the right half go to their left.
        let dx = if *x > mid {
            -(8 + 8 * text.chars().count() as i32)
        } else {
            8
        };
        EmptyElement::at((*x, *y))
            + Circle::new((0, 0), 6, SERIES.filled())
            + Text::new(text, (dx, -8), point_font.clone())
    }))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_draw_to_svg_and_png_and_escape_labels() {
        let spec = Spec::HBars {
            labels: vec!["<script>alert(1)</script>".into(), "research".into()],
            values: vec![12.5, 3.0],
            x_unit: "USD".into(),
        };
        let c = draw("by-dept", "Spend by department", "alt".into(), &spec).unwrap();
        assert!(c.svg.starts_with("<svg"), "{}", &c.svg[..80]);
        assert!(!c.svg.contains("<script>"));
        assert!(c.svg.contains("&lt;script&gt;"));
        assert!(c.svg.contains("width=\"100%\""));
        assert_eq!(&c.png[1..4], b"PNG");
        // Same input, same bytes.
        let again = draw("by-dept", "Spend by department", "alt".into(), &spec).unwrap();
        assert_eq!(c.svg, again.svg);
        assert_eq!(c.png, again.png);
    }

    #[test]
    fn axis_ticks_carry_their_unit() {
        assert_eq!(tick(2.0, "USD"), "$2");
        assert_eq!(tick(0.0025, "USD per 1k tokens"), "$0.0025");
        assert_eq!(tick(1200.0, "requests"), "1,200");
        assert_eq!(tick(0.30000000000000004, "errors, % of requests"), "0.3%");
        assert_eq!(tick(-1234567.5, "USD"), "-$1,234,567.5");
        assert_eq!(tick(-0.0000001, "USD"), "$0");
    }

    #[test]
    fn lines_leave_gaps_for_missing_days() {
        let spec = Spec::Line {
            labels: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            values: vec![Some(1.0), None, Some(2.0), Some(3.0)],
            y_unit: "USD".into(),
            threshold: Some(2.5),
        };
        let c = draw("trend", "Trend", "alt".into(), &spec).unwrap();
        // Two runs of the series (a gap for the missing value), and the
        // threshold drawn dashed in red.
        assert_eq!(
            c.svg
                .matches("stroke=\"#0D6EFD\" stroke-width=\"3\"")
                .count(),
            2
        );
        assert!(c.svg.contains("stroke=\"#DC3545\""));
    }
}
