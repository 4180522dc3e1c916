//! The metrics log of a training run (`metrics.jsonl`, one JSON object per line) and its plot
//! (`metrics.png`: loss on the left, zero-shot top-1/top-5 on the right, both over steps).

use std::io::Write;
use std::path::{Path, PathBuf};

use ::image::{Rgb, RgbImage};
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
        crate::matrix_file::write_atomic(&path, text.as_bytes())?;
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

const W: u32 = 480;
const H: u32 = 300;
const MARGIN: u32 = 36;

/// Draws `metrics.png`: left panel loss (blue) over steps, right panel zero-shot top-1 (red) and
/// top-5 (green) over steps on [0, 1]. Axis ends are labelled with their values.
pub fn plot_metrics(lines: &[MetricsLine], path: &Path) -> Result<()> {
    let mut img = RgbImage::from_pixel(2 * W, H, Rgb([255, 255, 255]));
    let max_step = lines.iter().map(|l| l.step).max().unwrap_or(1).max(1) as f32;
    let loss: Vec<(f32, f32)> =
        lines.iter().filter_map(|l| l.loss.map(|v| (l.step as f32, v))).filter(|p| p.1.is_finite()).collect();
    let (lo, hi) = loss.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let (lo, hi) = if loss.is_empty() {
        (0.0, 1.0)
    } else if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    };
    panel(&mut img, 0, (0.0, max_step), (lo, hi), &[(&loss, Rgb([31, 119, 180]))]);
    let top1: Vec<(f32, f32)> = lines.iter().filter_map(|l| l.zero_shot_top1.map(|v| (l.step as f32, v))).collect();
    let top5: Vec<(f32, f32)> = lines.iter().filter_map(|l| l.zero_shot_top5.map(|v| (l.step as f32, v))).collect();
    panel(&mut img, W, (0.0, max_step), (0.0, 1.0), &[(&top5, Rgb([44, 160, 44])), (&top1, Rgb([214, 39, 40]))]);
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), ::image::ImageFormat::Png)
        .map_err(|e| FlorenceError::Input(format!("cannot encode the metrics plot: {e}")))?;
    crate::matrix_file::write_atomic(path, &bytes)
}

/// A polyline and its colour.
type Series<'a> = (&'a Vec<(f32, f32)>, Rgb<u8>);

fn panel(img: &mut RgbImage, x0: u32, xs: (f32, f32), ys: (f32, f32), series: &[Series<'_>]) {
    let (left, right, top, bottom) = (x0 + MARGIN + 12, x0 + W - 12, 12, H - MARGIN);
    let grey = Rgb([210, 210, 210]);
    for k in 0..=4 {
        let y = top + (bottom - top) * k / 4;
        line(img, (left as f32, y as f32), (right as f32, y as f32), grey);
    }
    line(img, (left as f32, top as f32), (left as f32, bottom as f32), Rgb([0, 0, 0]));
    line(img, (left as f32, bottom as f32), (right as f32, bottom as f32), Rgb([0, 0, 0]));
    let map = |(x, y): (f32, f32)| {
        let fx = (x - xs.0) / (xs.1 - xs.0).max(1e-12);
        let fy = (y - ys.0) / (ys.1 - ys.0).max(1e-12);
        (left as f32 + fx * (right - left) as f32, bottom as f32 - fy * (bottom - top) as f32)
    };
    for (pts, color) in series {
        for w in pts.windows(2) {
            line(img, map(w[0]), map(w[1]), *color);
        }
        // Markers only where there are few points (evaluations), lines alone for the loss.
        for p in pts.iter().filter(|_| pts.len() <= 60) {
            let (x, y) = map(*p);
            for dx in -1..=1 {
                for dy in -1..=1 {
                    put(img, x as i64 + dx, y as i64 + dy, *color);
                }
            }
        }
    }
    let black = Rgb([0, 0, 0]);
    text(img, x0 + 2, top, &short(ys.1), black);
    text(img, x0 + 2, bottom - 5, &short(ys.0), black);
    text(img, left, bottom + 6, &short(xs.0), black);
    let label = short(xs.1);
    text(img, right.saturating_sub(4 * label.len() as u32), bottom + 6, &label, black);
}

fn short(v: f32) -> String {
    if v.abs() >= 1000.0 || v == v.trunc() { format!("{}", v as i64) } else { format!("{v:.3}") }
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn line(img: &mut RgbImage, a: (f32, f32), b: (f32, f32), c: Rgb<u8>) {
    let n = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).max(1);
    for i in 0..=n {
        let t = i as f32 / n as f32;
        put(img, (a.0 + t * (b.0 - a.0)).round() as i64, (a.1 + t * (b.1 - a.1)).round() as i64, c);
    }
}

/// 3x5 pixel glyphs for digits, '.', '-'.
fn glyph(ch: char) -> [u8; 5] {
    match ch {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        _ => [0; 5],
    }
}

fn text(img: &mut RgbImage, x: u32, y: u32, s: &str, c: Rgb<u8>) {
    for (i, ch) in s.chars().enumerate() {
        for (row, bits) in glyph(ch).iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) != 0 {
                    put(img, (x + 4 * i as u32 + col) as i64, (y + row as u32) as i64, c);
                }
            }
        }
    }
}
