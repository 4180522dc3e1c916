//! The metrics log of a training run (`metrics.jsonl`, one JSON object per line) and its plot
//! (`metrics.png`: loss on the left, zero-shot top-1/top-5 on the right, both over steps).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ::image::RgbImage;
use plotters::prelude::*;
use plotters::style::FontStyle;
use serde::{Deserialize, Serialize};

use crate::error::{FlorenceError, Result};

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsLine {
    /// Optimiser step (1-based: the step just taken).
    pub step: usize,
    /// UniCL loss of the step (mean over accumulated batches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f32>,
    /// Learning rate used by the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// `exp(logit_scale)` after the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f32>,
    /// Training pairs per second over the step (data loading included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images_per_s: Option<f32>,
    /// Files skipped (undecodable) during the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<usize>,
    /// Zero-shot top-1 accuracy on the eval folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_shot_top1: Option<f32>,
    /// Zero-shot top-5 accuracy on the eval folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_shot_top5: Option<f32>,
    /// f16 training: the loss scale the step used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f32>,
    /// f16 training: the step's gradients overflowed, so it changed no weight (and the scale
    /// was halved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow: Option<bool>,
}

/// Appends lines to `metrics.jsonl`.
pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    /// Opens `path`, keeping only lines with `step <= keep_until` (what a resumed run has not
    /// redone); a missing file is fine.
    pub fn open(path: PathBuf, keep_until: usize) -> Result<Self> {
        let kept: Vec<MetricsLine> =
            read_metrics(&path).unwrap_or_default().into_iter().filter(|l| l.step <= keep_until).collect();
        let mut text = String::new();
        for l in &kept {
            text.push_str(&serde_json::to_string(l).expect("plain struct"));
            text.push('\n');
        }
        crate::files::write_bytes_atomic(&path, text.as_bytes())?;
        Ok(Self { path })
    }

    /// Appends one line.
    pub fn append(&mut self, line: &MetricsLine) -> Result<()> {
        let io = |source| FlorenceError::Io { path: self.path.clone(), source };
        let mut f = std::fs::OpenOptions::new().append(true).create(true).open(&self.path).map_err(io)?;
        writeln!(f, "{}", serde_json::to_string(line).expect("plain struct")).map_err(io)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads a `metrics.jsonl` file.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsLine>> {
    let text = std::fs::read_to_string(path).map_err(|source| FlorenceError::Io { path: path.into(), source })?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| FlorenceError::Input(format!("{} line {}: {e}", path.display(), i + 1)))
        })
        .collect()
}

/// Width of one panel and height of the plot, in pixels (the PNG is `2 * W` by `H`).
const W: u32 = 480;
const H: u32 = 300;

/// The bundled font (DejaVu Sans 2.37, `assets/fonts/`; licence in `assets/fonts/LICENSE-DejaVu.txt`),
/// drawn through plotters' pure-Rust `ab_glyph` path: no fontconfig, freetype or system fonts.
pub(crate) const FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// The name florence registers [`FONT_BYTES`] under in plotters' font table (its own, so that a
/// program that registers its own `sans-serif` keeps it).
const FONT: &str = "florence-dejavu-sans";

const BLUE: RGBColor = RGBColor(31, 119, 180);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const RED: RGBColor = RGBColor(214, 39, 40);

/// Registers [`FONT`] once per process; whether it could be read.
fn font_registered() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok())
}

/// Draws `metrics.png` (960 x 300): on the left the loss (blue) over steps; on the right the
/// zero-shot top-1 (red) and top-5 (green) accuracy over steps on 0..100%. Each panel has a
/// title, axes with ticks, tick labels and axis names, a light grid and a legend that gives the
/// last value of each series. Non-finite values are left out; a panel without values shows its
/// empty axes.
pub fn plot_metrics(lines: &[MetricsLine], path: &Path) -> Result<()> {
    let failed = |e: &dyn std::fmt::Display| FlorenceError::Input(format!("cannot draw the metrics plot: {e}"));
    if !font_registered() {
        return Err(failed(&"the bundled font does not parse"));
    }
    let max_step = lines.iter().map(|l| l.step as u64).max().unwrap_or(1).max(1);
    let points = |value: fn(&MetricsLine) -> Option<f32>| -> Vec<(u64, f32)> {
        lines.iter().filter_map(|l| value(l).map(|v| (l.step as u64, v))).filter(|p| p.1.is_finite()).collect()
    };
    let loss = points(|l| l.loss);
    let top1 = points(|l| l.zero_shot_top1);
    let top5 = points(|l| l.zero_shot_top5);

    let mut pixels = vec![255u8; (2 * W * H * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (2 * W, H)).into_drawing_area();
        let (left, right) = root.split_horizontally(W);
        let (lo, hi) = loss.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
        let (lo, hi) = if loss.is_empty() {
            (0.0, 1.0)
        } else if hi > lo {
            let pad = 0.05 * (hi - lo);
            if (lo - pad).is_finite() && (hi + pad).is_finite() { (lo - pad, hi + pad) } else { (lo, hi) }
        } else {
            (lo - 0.5, hi + 0.5)
        };
        let number = |v: &f32| format!("{v:.*}", decimals(hi - lo));
        let loss_series = [Series { name: "loss", color: BLUE, points: &loss, percent: false }];
        // Legends where the curves usually are not: a falling loss, a rising accuracy.
        let legend = SeriesLabelPosition::UpperRight;
        panel(&left, "UniCL loss", "loss", (max_step, lo..hi), &number, &loss_series, legend)
            .map_err(|e| failed(&e))?;
        let percent = |v: &f32| format!("{:.0}%", v * 100.0);
        let accuracy_series = [
            Series { name: "top-5", color: GREEN, points: &top5, percent: true },
            Series { name: "top-1", color: RED, points: &top1, percent: true },
        ];
        let legend = SeriesLabelPosition::LowerRight;
        panel(&right, "zero-shot accuracy", "accuracy", (max_step, 0.0..1.0), &percent, &accuracy_series, legend)
            .map_err(|e| failed(&e))?;
        root.present().map_err(|e| failed(&e))?;
    }
    let img = RgbImage::from_raw(2 * W, H, pixels).ok_or_else(|| failed(&"pixel buffer of the wrong size"))?;
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), ::image::ImageFormat::Png).map_err(|e| failed(&e))?;
    crate::files::write_bytes_atomic(path, &bytes)
}

/// Decimals that tell apart the ticks of a `span`-wide axis (about ten of them).
fn decimals(span: f32) -> usize {
    if span.is_finite() && span > 0.0 { (1.0 - span.log10().floor()).clamp(0.0, 6.0) as usize } else { 2 }
}

/// One line of a panel: its legend name, colour and (step, value) points.
struct Series<'a> {
    name: &'a str,
    color: RGBColor,
    points: &'a [(u64, f32)],
    /// Whether the legend gives the last value as a percentage.
    percent: bool,
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
type DrawResult = std::result::Result<(), DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>>;

/// One panel: steps `0..=max_step` across, `ys` up.
fn panel(
    area: &Area<'_>,
    title: &str,
    y_name: &str,
    (max_step, ys): (u64, std::ops::Range<f32>),
    y_label: &dyn Fn(&f32) -> String,
    series: &[Series<'_>],
    legend: SeriesLabelPosition,
) -> DrawResult {
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 16))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0..max_step, ys)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(y_name)
        .x_labels(8)
        .y_labels(6)
        .y_label_formatter(y_label)
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .bold_line_style(RGBColor(220, 220, 220))
        .light_line_style(RGBColor(242, 242, 242))
        .max_light_lines(4)
        .draw()?;
    let mut labelled = false;
    for s in series.iter().filter(|s| !s.points.is_empty()) {
        let color = s.color;
        let last = s.points[s.points.len() - 1].1;
        let last = if s.percent { format!("{:.1}%", last * 100.0) } else { format!("{last:.4}") };
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))?
            .label(format!("{} (last {last})", s.name))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        // Markers only where there are few points (evaluations), lines alone for the loss.
        if s.points.len() <= 60 {
            chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        labelled = true;
    }
    if labelled {
        chart
            .configure_series_labels()
            .position(legend)
            .label_font((FONT, 12))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .draw()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(step: usize, loss: f32, eval: Option<(f32, f32)>) -> MetricsLine {
        MetricsLine {
            step,
            loss: Some(loss),
            lr: None,
            scale: None,
            images_per_s: None,
            skipped: None,
            zero_shot_top1: eval.map(|e| e.0),
            zero_shot_top5: eval.map(|e| e.1),
            loss_scale: None,
            overflow: None,
        }
    }

    /// Pixels of `img` within `(x0..x1, y0..y1)` close to `c`.
    fn count(img: &RgbImage, (x0, x1): (u32, u32), (y0, y1): (u32, u32), c: RGBColor) -> usize {
        let near = |p: &::image::Rgb<u8>| p.0.iter().zip([c.0, c.1, c.2]).all(|(&a, b)| a.abs_diff(b) < 12);
        (x0..x1).flat_map(|x| (y0..y1).map(move |y| (x, y))).filter(|&(x, y)| near(img.get_pixel(x, y))).count()
    }

    #[test]
    fn the_plot_draws_each_series_in_its_panel_with_text() {
        let dir = std::env::temp_dir().join(format!("florence-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.png");
        let mut lines: Vec<MetricsLine> = (1..=200)
            .map(|s| {
                let eval = (s % 50 == 0).then(|| (s as f32 / 250.0, s as f32 / 210.0));
                line(s, 5.0 * (-(s as f32) / 60.0).exp() + 0.3, eval)
            })
            .collect();
        lines[7].loss = Some(f32::NAN);
        plot_metrics(&lines, &path).unwrap();
        let img = ::image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (960, 300));
        let (left, right) = ((0, W), (W, 2 * W));
        let all = (0, H);
        assert!(count(&img, left, all, BLUE) > 300, "loss line");
        assert_eq!(count(&img, right, all, BLUE), 0);
        assert!(count(&img, right, all, RED) > 200, "top-1 line");
        assert!(count(&img, right, all, GREEN) > 200, "top-5 line");
        assert_eq!(count(&img, left, all, RED) + count(&img, left, all, GREEN), 0);
        // Text in the bundled font: the title above each panel, the y tick labels and axis name
        // left of its axis (dark anti-aliased glyphs where no line is drawn).
        let dark = |(x0, x1): (u32, u32), (y0, y1): (u32, u32)| {
            let dark = |x, y| img.get_pixel(x, y).0.iter().all(|&v: &u8| v < 90);
            (x0..x1).flat_map(|x| (y0..y1).map(move |y| (x, y))).filter(|&(x, y)| dark(x, y)).count()
        };
        for x0 in [0, W] {
            let (title, labels) = (dark((x0, x0 + W), (0, 24)), dark((x0, x0 + 50), (24, H - 40)));
            assert!(title > 60 && labels > 80, "panel at x = {x0}: title {title}, y labels {labels} dark pixels");
        }
        // Nothing to draw is empty axes, not an error.
        plot_metrics(&[], &path).unwrap();
        let empty = ::image::open(&path).unwrap().to_rgb8();
        assert_eq!(empty.dimensions(), (960, 300));
        assert_eq!(count(&empty, (0, 2 * W), all, BLUE) + count(&empty, (0, 2 * W), all, RED), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
