//! Deterministic synthetic image–text data: one coloured shape on a greyish background.
//!
//! Every image shows a single shape ([`Shape`], 6 kinds) in one of 6 saturated colours
//! ([`Color`]), small or large ([`SizeClass`]), at one of 5 places ([`Position`]), drawn with
//! 4×4-supersampled anti-aliasing over a low-saturation gradient with mild noise. Each sample comes
//! with a caption from one of several templates ("a small red circle on the left", "an orange
//! triangle, large, on the right", …) and its plain class name ("red circle"), so the same data
//! serves contrastive image–text training and zero-shot classification over the 36
//! (colour, shape) classes.
//!
//! **Why:** a few (colour, shape) pairs ([`SyntheticConfig::held_out`], by default a diagonal: one
//! pair per colour and one per shape) never appear in [`Split::Train`]. A model trained on
//! `Train` has seen every colour and every shape, but never those combinations, so zero-shot
//! accuracy on [`Split::HeldOut`] measures *compositional* generalisation rather than memorisation.
//!
//! **Determinism:** [`sample`] is a pure function of `(config, split, index)`: each sample draws
//! from its own [`Rng`] (SplitMix64) stream seeded from `(config.seed, split, index)`, so samples can be
//! generated in any order, in parallel, or lazily, and [`write_dataset`] output is byte-identical
//! across runs. The split is mixed into the seed, so `Train` and `All` with the same seed do not
//! repeat each other's images. (The geometry uses `f64` `sin`/`cos`; a platform whose libm rounds
//! differently could in principle change an edge pixel by one level.)

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use ::image::{ImageFormat, RgbImage};
use serde::{Deserialize, Serialize};

use crate::rng::{GOLDEN_GAMMA, Rng, mix64};

/// The drawn shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    /// A 5-point star.
    Star,
    /// A plus sign.
    Cross,
    Diamond,
}

impl Shape {
    /// Every shape, in class order.
    pub const ALL: [Shape; 6] =
        [Shape::Circle, Shape::Square, Shape::Triangle, Shape::Star, Shape::Cross, Shape::Diamond];

    /// The word used in captions and class names.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Star => "star",
            Shape::Cross => "cross",
            Shape::Diamond => "diamond",
        }
    }
}

/// The shape's fill colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Color {
    Red,
    Green,
    Blue,
    Yellow,
    Purple,
    Orange,
}

impl Color {
    /// Every colour, in class order.
    pub const ALL: [Color; 6] = [Color::Red, Color::Green, Color::Blue, Color::Yellow, Color::Purple, Color::Orange];

    /// The word used in captions and class names.
    pub fn name(self) -> &'static str {
        match self {
            Color::Red => "red",
            Color::Green => "green",
            Color::Blue => "blue",
            Color::Yellow => "yellow",
            Color::Purple => "purple",
            Color::Orange => "orange",
        }
    }

    /// The nominal RGB value. Samples jitter each channel by up to ±[`COLOR_JITTER`]; the values
    /// are spaced so that colours stay distinct under that jitter (the closest pairs, red/orange
    /// and orange/yellow, differ by ≥ 95 in green).
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Color::Red => [215, 30, 35],
            Color::Green => [35, 170, 55],
            Color::Blue => [35, 75, 215],
            Color::Yellow => [235, 220, 35],
            Color::Purple => [140, 40, 185],
            Color::Orange => [245, 125, 15],
        }
    }
}

/// Maximum per-channel jitter applied to [`Color::rgb`] in a sample.
pub const COLOR_JITTER: i32 = 20;

/// The shape's size class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SizeClass {
    Small,
    Large,
}

impl SizeClass {
    /// Both size classes.
    pub const ALL: [SizeClass; 2] = [SizeClass::Small, SizeClass::Large];

    /// The word used in captions.
    pub fn name(self) -> &'static str {
        match self {
            SizeClass::Small => "small",
            SizeClass::Large => "large",
        }
    }

    /// Nominal shape radius as a fraction of the image side (jittered by ±10% per sample).
    fn radius_fraction(self) -> f64 {
        match self {
            SizeClass::Small => 0.16,
            SizeClass::Large => 0.28,
        }
    }
}

/// Where the shape sits in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    Left,
    Right,
    Top,
    Bottom,
    Center,
}

impl Position {
    /// Every position.
    pub const ALL: [Position; 5] = [Position::Left, Position::Right, Position::Top, Position::Bottom, Position::Center];

    /// A single word: "left", "right", "top", "bottom", "center".
    pub fn name(self) -> &'static str {
        match self {
            Position::Left => "left",
            Position::Right => "right",
            Position::Top => "top",
            Position::Bottom => "bottom",
            Position::Center => "center",
        }
    }

    /// The prepositional phrase used in captions: "on the left", "at the top", "in the center", ….
    pub fn phrase(self) -> &'static str {
        match self {
            Position::Left => "on the left",
            Position::Right => "on the right",
            Position::Top => "at the top",
            Position::Bottom => "at the bottom",
            Position::Center => "in the center",
        }
    }

    /// Unit offset of the shape centre from the image centre (image y points down).
    fn offset(self) -> (f64, f64) {
        match self {
            Position::Left => (-1.0, 0.0),
            Position::Right => (1.0, 0.0),
            Position::Top => (0.0, -1.0),
            Position::Bottom => (0.0, 1.0),
            Position::Center => (0.0, 0.0),
        }
    }
}

/// Which (colour, shape) pairs a sample may show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Every pair except [`SyntheticConfig::held_out`].
    Train,
    /// Only the held-out pairs.
    HeldOut,
    /// Every pair.
    All,
}

impl Split {
    /// A constant mixed into every per-sample seed, so splits never share images.
    fn seed_tag(self) -> u64 {
        match self {
            Split::Train => 0x7472_6169_6e5f_7331,
            Split::HeldOut => 0x6865_6c64_6f75_7432,
            Split::All => 0x616c_6c5f_7370_6c33,
        }
    }
}

/// Generator settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyntheticConfig {
    /// Image side in pixels (16..=512).
    pub size: u32,
    /// Base seed; sample `i` of a split is a pure function of `(seed, split, i)`.
    pub seed: u64,
    /// (colour, shape) pairs excluded from [`Split::Train`] and making up [`Split::HeldOut`].
    pub held_out: Vec<(Color, Shape)>,
}

impl Default for SyntheticConfig {
    /// 64 px, seed 0, and a diagonal of held-out pairs (each colour and each shape once): red
    /// star, green cross, blue diamond, yellow circle, purple square, orange triangle.
    fn default() -> Self {
        SyntheticConfig {
            size: 64,
            seed: 0,
            held_out: vec![
                (Color::Red, Shape::Star),
                (Color::Green, Shape::Cross),
                (Color::Blue, Shape::Diamond),
                (Color::Yellow, Shape::Circle),
                (Color::Purple, Shape::Square),
                (Color::Orange, Shape::Triangle),
            ],
        }
    }
}

impl SyntheticConfig {
    /// Smallest allowed image side.
    pub const MIN_SIZE: u32 = 16;
    /// Largest allowed image side.
    pub const MAX_SIZE: u32 = 512;

    /// Checks `size` is in `16..=512` and `held_out` has no duplicates and leaves at least one
    /// training pair.
    pub fn validate(&self) -> Result<(), String> {
        if !(Self::MIN_SIZE..=Self::MAX_SIZE).contains(&self.size) {
            return Err(format!(
                "synthetic image size {} is outside {}..={}",
                self.size,
                Self::MIN_SIZE,
                Self::MAX_SIZE
            ));
        }
        for (i, pair) in self.held_out.iter().enumerate() {
            if self.held_out[..i].contains(pair) {
                return Err(format!("held-out pair \"{} {}\" is listed more than once", pair.0.name(), pair.1.name()));
            }
        }
        if self.held_out.len() >= Color::ALL.len() * Shape::ALL.len() {
            return Err("every (colour, shape) pair is held out; the Train split would be empty".into());
        }
        Ok(())
    }

    /// The (colour, shape) pairs of `split`, colours outer and shapes inner (class order).
    pub fn pairs(&self, split: Split) -> Vec<(Color, Shape)> {
        Color::ALL
            .iter()
            .flat_map(|&c| Shape::ALL.iter().map(move |&s| (c, s)))
            .filter(|pair| match split {
                Split::Train => !self.held_out.contains(pair),
                Split::HeldOut => self.held_out.contains(pair),
                Split::All => true,
            })
            .collect()
    }

    /// The class names ("red circle", …) of `split`, in the order of [`Self::pairs`].
    pub fn class_names(&self, split: Split) -> Vec<String> {
        self.pairs(split).into_iter().map(|(c, s)| class_name(c, s)).collect()
    }
}

fn class_name(color: Color, shape: Shape) -> String {
    format!("{} {}", color.name(), shape.name())
}

/// One generated image with its text.
#[derive(Debug, Clone)]
pub struct Sample {
    pub image: RgbImage,
    /// A templated description, e.g. "a small red circle on the left".
    pub caption: String,
    /// The plain class name, e.g. "red circle".
    pub class_name: String,
    pub color: Color,
    pub shape: Shape,
    pub size: SizeClass,
    pub position: Position,
}

/// Generates sample `index` of `split`: a pure function of `(config, split, index)`.
///
/// # Panics
/// If `config.validate()` fails, or `split` has no pairs (`HeldOut` with an empty `held_out`).
pub fn sample(config: &SyntheticConfig, split: Split, index: u64) -> Sample {
    if let Err(e) = config.validate() {
        panic!("invalid SyntheticConfig: {e}");
    }
    let mut rng = Rng::new(sample_seed(config.seed, split, index));
    let p = draw_params(config, split, &mut rng);
    let image = render(&p, config.size, &mut rng);
    Sample {
        image,
        caption: p.caption(),
        class_name: class_name(p.color, p.shape),
        color: p.color,
        shape: p.shape,
        size: p.size,
        position: p.position,
    }
}

/// On-disk arrangement for [`write_dataset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `dir/images/{index:06}.png` plus `dir/captions.jsonl` and `dir/captions.csv`.
    Captions,
    /// `dir/{class name}/{index:06}.png`, e.g. `red circle/000003.png`.
    ClassFolders,
}

/// Writes `n` samples as PNG files plus index files, for the trainer's data pipeline:
///   - [`Layout::Captions`]: `dir/images/{index:06}.png` and `dir/captions.jsonl`, one JSON object
///     per line `{"image": "images/000000.png", "caption": "...", "class": "red circle"}`; also
///     `dir/captions.csv` with header `image,caption` (fields quoted per RFC 4180, CRLF line ends).
///   - [`Layout::ClassFolders`]: `dir/{class name}/{index:06}.png` (e.g. `red circle/000003.png`).
///
/// Each file is written to a temporary name in its final directory and renamed into place, and the
/// index files are written after all images, so an index only lists complete images. Returns the
/// number written. `on_progress(done, total)` is called after every sample. The output is
/// byte-identical across runs.
pub fn write_dataset(
    config: &SyntheticConfig,
    split: Split,
    n: usize,
    dir: &Path,
    layout: Layout,
    on_progress: &mut dyn FnMut(usize, usize),
) -> io::Result<usize> {
    config.validate().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    if config.pairs(split).is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("split {split:?} has no (colour, shape) pairs"),
        ));
    }
    fs::create_dir_all(dir)?;
    match layout {
        Layout::Captions => {
            let images = dir.join("images");
            fs::create_dir_all(&images)?;
            let mut jsonl = Vec::new();
            let mut csv = b"image,caption\r\n".to_vec();
            for i in 0..n {
                let s = sample(config, split, i as u64);
                let file = format!("{i:06}.png");
                save_png(&s.image, &images.join(&file))?;
                let rel = format!("images/{file}");
                let line = IndexLine { image: &rel, caption: &s.caption, class: &s.class_name };
                serde_json::to_writer(&mut jsonl, &line).map_err(io::Error::other)?;
                jsonl.push(b'\n');
                csv.extend_from_slice(csv_field(&rel).as_bytes());
                csv.push(b',');
                csv.extend_from_slice(csv_field(&s.caption).as_bytes());
                csv.extend_from_slice(b"\r\n");
                on_progress(i + 1, n);
            }
            write_atomic(&dir.join("captions.jsonl"), &jsonl)?;
            write_atomic(&dir.join("captions.csv"), &csv)?;
        }
        Layout::ClassFolders => {
            let mut made = Vec::new();
            for i in 0..n {
                let s = sample(config, split, i as u64);
                let class_dir = dir.join(&s.class_name);
                if !made.contains(&s.class_name) {
                    fs::create_dir_all(&class_dir)?;
                    made.push(s.class_name.clone());
                }
                save_png(&s.image, &class_dir.join(format!("{i:06}.png")))?;
                on_progress(i + 1, n);
            }
        }
    }
    Ok(n)
}

#[derive(Serialize)]
struct IndexLine<'a> {
    image: &'a str,
    caption: &'a str,
    class: &'a str,
}

/// Quotes a CSV field per RFC 4180 when it contains a comma, quote or line break.
fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\r', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")).into() } else { s.into() }
}

/// A PNG written atomically ([`crate::files::write_atomic`]).
fn save_png(image: &RgbImage, path: &Path) -> io::Result<()> {
    crate::files::write_atomic(path, |f| {
        let mut w = BufWriter::new(f);
        image.write_to(&mut w, ImageFormat::Png).map_err(|e| match e {
            ::image::ImageError::IoError(e) => e,
            e => io::Error::other(e),
        })?;
        w.flush()
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    crate::files::write_atomic(path, |f| f.write_all(bytes))
}

// ---------------------------------------------------------------------------------------------
// Randomness

// Each sample draws from the crate's [`Rng`]: 53-bit floats ([`Rng::next_f64`]) and the 32-bit
// multiply-shift bound [`Rng::below_hi32`] (never [`Rng::below`]), exactly the draws the bundled
// model's training data was generated with, so the data stays bit-identical.

/// Seed of sample `index` of `split`: distinct indices (and splits) give distinct streams.
fn sample_seed(seed: u64, split: Split, index: u64) -> u64 {
    let base = mix64(seed.wrapping_add(GOLDEN_GAMMA) ^ split.seed_tag());
    mix64(base.wrapping_add(index.wrapping_mul(GOLDEN_GAMMA)))
}

/// Uniform integer in `-m..=m` (`m >= 0`).
fn symmetric(rng: &mut Rng, m: i32) -> i32 {
    rng.below_hi32(2 * m as usize + 1) as i32 - m
}

// ---------------------------------------------------------------------------------------------
// Sample parameters

/// Background: a linear gradient between two greyish endpoints, plus per-pixel luma noise.
struct Background {
    from: [f32; 3],
    to: [f32; 3],
    /// 0: left→right, 1: top→bottom, 2: diagonal ↘, 3: diagonal ↙.
    direction: u8,
}

/// Everything drawn for one sample before rasterisation.
struct Params {
    color: Color,
    shape: Shape,
    size: SizeClass,
    position: Position,
    /// Jittered fill colour.
    rgb: [u8; 3],
    /// Shape centre in pixel coordinates (pixel `(x, y)` covers `[x, x+1) × [y, y+1)`).
    cx: f64,
    cy: f64,
    /// Radius in pixels (see [`Geometry`] for what it means per shape).
    radius: f64,
    /// Rotation in radians (0 for circles).
    angle: f64,
    template: usize,
    background: Background,
}

const CAPTION_TEMPLATES: usize = 8;
/// Background greys keep at least this luma distance from the (jittered) shape colour.
const BG_LUMA_MARGIN: f64 = 40.0;
const BG_LUMA_RANGE: (f64, f64) = (15.0, 240.0);
/// Per-channel tint of background endpoints (keeps them desaturated).
const BG_TINT: f64 = 10.0;
/// Per-pixel background noise amplitude.
const BG_NOISE: i32 = 8;

fn luma(rgb: [u8; 3]) -> f64 {
    0.299 * rgb[0] as f64 + 0.587 * rgb[1] as f64 + 0.114 * rgb[2] as f64
}

fn draw_params(config: &SyntheticConfig, split: Split, rng: &mut Rng) -> Params {
    let pairs = config.pairs(split);
    assert!(!pairs.is_empty(), "split {split:?} has no (colour, shape) pairs");
    let side = config.size as f64;
    let (color, shape) = pairs[rng.below_hi32(pairs.len())];
    let size = SizeClass::ALL[rng.below_hi32(2)];
    let position = Position::ALL[rng.below_hi32(5)];

    let radius = side * size.radius_fraction() * rng.uniform_f64(0.9, 1.1);
    let angle_max = 15f64.to_radians();
    let angle = rng.uniform_f64(-angle_max, angle_max);
    let angle = if shape == Shape::Circle { 0.0 } else { angle };
    let (ox, oy) = position.offset();
    let jitter = 0.04 * side;
    let extent = radius * Geometry::extent_factor(shape) + 0.5;
    let place = |o: f64, j: f64| (side * (0.5 + 0.25 * o) + j).clamp(extent, side - extent);
    let (jx, jy) = (rng.uniform_f64(-jitter, jitter), rng.uniform_f64(-jitter, jitter));
    let (cx, cy) = (place(ox, jx), place(oy, jy));

    let base = color.rgb();
    let mut rgb = [0u8; 3];
    for (out, &b) in rgb.iter_mut().zip(&base) {
        *out = (b as i32 + symmetric(rng, COLOR_JITTER)).clamp(0, 255) as u8;
    }
    let template = rng.below_hi32(CAPTION_TEMPLATES);

    // Background greys: uniform over [lo, hi] minus a band of ±margin around the shape's luma, so
    // the shape always contrasts in brightness as well as in saturation.
    let l = luma(rgb);
    let (lo, hi) = BG_LUMA_RANGE;
    let below = (lo, (l - BG_LUMA_MARGIN).min(hi));
    let above = ((l + BG_LUMA_MARGIN).max(lo), hi);
    let len_below = (below.1 - below.0).max(0.0);
    let len_above = (above.1 - above.0).max(0.0);
    let pick_above = rng.next_f64() * (len_below + len_above) >= len_below;
    let band = if pick_above { above } else { below };
    let endpoint = |rng: &mut Rng| {
        let g = rng.uniform_f64(band.0, band.1);
        let mut c = [0f32; 3];
        for ch in &mut c {
            *ch = (g + rng.uniform_f64(-BG_TINT, BG_TINT)) as f32;
        }
        c
    };
    let from = endpoint(rng);
    let to = endpoint(rng);
    let direction = rng.below_hi32(4) as u8;

    Params {
        color,
        shape,
        size,
        position,
        rgb,
        cx,
        cy,
        radius,
        angle,
        template,
        background: Background { from, to, direction },
    }
}

/// "a" or "an" for the following word (every caption word is regular English).
fn article(word: &str) -> &'static str {
    match word.as_bytes().first() {
        Some(b'a' | b'e' | b'i' | b'o' | b'u') => "an",
        _ => "a",
    }
}

impl Params {
    fn caption(&self) -> String {
        let (c, s, z, p) = (self.color.name(), self.shape.name(), self.size.name(), self.position.phrase());
        let (ac, az) = (article(c), article(z));
        match self.template {
            0 => format!("{az} {z} {c} {s} {p}"),
            1 => format!("{ac} {c} {s} {p}"),
            2 => format!("a picture of {az} {z} {c} {s} {p}"),
            3 => format!("a picture of {ac} {c} {s} {p}"),
            4 => format!("{ac} {c} {s}, {z}, {p}"),
            5 => format!("{ac} {c} {s}"),
            6 => format!("a photo of {az} {z} {c} {s}"),
            _ => format!("an image of {ac} {c} {s} {p}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rasterisation

/// Proportions in units of the radius (local frame: x right, y down).
const SQUARE_HALF: f64 = 0.8;
const TRIANGLE_R: f64 = 1.1;
const STAR_OUTER: f64 = 1.1;
const STAR_INNER: f64 = 0.48;
const CROSS_HALF_WIDTH: f64 = 0.32;
const DIAMOND_HALF_WIDTH: f64 = 0.7;

/// A shape placed in the image, with an inside test in pixel coordinates.
struct Geometry {
    shape: Shape,
    cx: f64,
    cy: f64,
    inv_r: f64,
    cos: f64,
    sin: f64,
    /// Star polygon vertices in the local unit frame (unused for other shapes).
    star: [(f64, f64); 10],
}

impl Geometry {
    fn new(p: &Params) -> Self {
        let mut star = [(0.0, 0.0); 10];
        if p.shape == Shape::Star {
            for (k, v) in star.iter_mut().enumerate() {
                let r = if k % 2 == 0 { STAR_OUTER } else { STAR_INNER };
                // First point straight up (negative y).
                let a = k as f64 * std::f64::consts::PI / 5.0;
                *v = (r * a.sin(), -r * a.cos());
            }
        }
        Geometry {
            shape: p.shape,
            cx: p.cx,
            cy: p.cy,
            inv_r: 1.0 / p.radius,
            cos: p.angle.cos(),
            sin: p.angle.sin(),
            star,
        }
    }

    /// Circumradius of the shape in units of the radius (rotation-invariant bound).
    fn extent_factor(shape: Shape) -> f64 {
        match shape {
            Shape::Circle | Shape::Diamond => 1.0,
            Shape::Square => SQUARE_HALF * std::f64::consts::SQRT_2,
            Shape::Triangle => TRIANGLE_R,
            Shape::Star => STAR_OUTER,
            Shape::Cross => (1.0 + CROSS_HALF_WIDTH * CROSS_HALF_WIDTH).sqrt(),
        }
    }

    /// Radius of a circle (in units of the radius) that lies inside the shape at any rotation:
    /// a conservative bound used to skip supersampling of fully covered pixels.
    fn inradius_factor(shape: Shape) -> f64 {
        match shape {
            Shape::Circle => 1.0,
            Shape::Square => SQUARE_HALF,
            // Distance from the origin to the edge x / w + y = 1.
            Shape::Diamond => DIAMOND_HALF_WIDTH / (1.0 + DIAMOND_HALF_WIDTH * DIAMOND_HALF_WIDTH).sqrt(),
            Shape::Cross => CROSS_HALF_WIDTH,
            Shape::Triangle => TRIANGLE_R / 2.0,
            // The inner (reflex) vertices are the closest boundary points.
            Shape::Star => STAR_INNER,
        }
    }

    fn contains(&self, px: f64, py: f64) -> bool {
        let (dx, dy) = ((px - self.cx) * self.inv_r, (py - self.cy) * self.inv_r);
        // Rotate the point by -angle into the shape's frame.
        let x = dx * self.cos + dy * self.sin;
        let y = -dx * self.sin + dy * self.cos;
        match self.shape {
            Shape::Circle => x * x + y * y <= 1.0,
            Shape::Square => x.abs() <= SQUARE_HALF && y.abs() <= SQUARE_HALF,
            Shape::Diamond => x.abs() / DIAMOND_HALF_WIDTH + y.abs() <= 1.0,
            Shape::Cross => {
                let (ax, ay) = (x.abs(), y.abs());
                (ax <= 1.0 && ay <= CROSS_HALF_WIDTH) || (ax <= CROSS_HALF_WIDTH && ay <= 1.0)
            }
            Shape::Triangle => {
                // Equilateral, apex up, centroid at the origin.
                y <= TRIANGLE_R / 2.0 && x.abs() * 3f64.sqrt() <= y + TRIANGLE_R
            }
            Shape::Star => {
                if x * x + y * y > STAR_OUTER * STAR_OUTER {
                    return false;
                }
                // Even-odd crossing test on the 10-vertex star polygon.
                let mut inside = false;
                let mut j = 9;
                for i in 0..10 {
                    let (xi, yi) = self.star[i];
                    let (xj, yj) = self.star[j];
                    if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
                        inside = !inside;
                    }
                    j = i;
                }
                inside
            }
        }
    }
}

/// Supersampling grid per pixel axis (4×4 = 16 coverage samples).
const SUPERSAMPLE: usize = 4;
/// Bound on a sub-sample's distance from its pixel centre (0.375·√2 ≈ 0.53), with slack.
const PIXEL_MARGIN: f64 = 0.75;

fn render(p: &Params, size: u32, rng: &mut Rng) -> RgbImage {
    let s = size as usize;
    let mut buf = vec![0u8; s * s * 3];
    let bg = &p.background;
    let denom = (s - 1) as f32;
    for y in 0..s {
        for x in 0..s {
            let t = match bg.direction {
                0 => x as f32 / denom,
                1 => y as f32 / denom,
                2 => (x + y) as f32 / (2.0 * denom),
                _ => ((s - 1 - x) + y) as f32 / (2.0 * denom),
            };
            let noise = symmetric(rng, BG_NOISE) as f32;
            let i = (y * s + x) * 3;
            for c in 0..3 {
                let v = bg.from[c] + (bg.to[c] - bg.from[c]) * t + noise;
                buf[i + c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }

    let g = Geometry::new(p);
    let e = p.radius * Geometry::extent_factor(p.shape);
    let inner = p.radius * Geometry::inradius_factor(p.shape) * 0.999;
    let lo = |c: f64| (c - e).floor().max(0.0) as usize;
    let hi = |c: f64| ((c + e).ceil().max(0.0) as usize + 1).min(s);
    let step = 1.0 / SUPERSAMPLE as f64;
    let fill = p.rgb.map(|v| v as f32);
    for y in lo(p.cy)..hi(p.cy) {
        for x in lo(p.cx)..hi(p.cx) {
            // Pixels far inside or outside the shape are fully covered or empty: skip the
            // sub-samples (the result is identical, every sub-sample would agree).
            let d = (x as f64 + 0.5 - p.cx).hypot(y as f64 + 0.5 - p.cy);
            if d - PIXEL_MARGIN > e {
                continue;
            }
            let mut hits = 0u32;
            if d + PIXEL_MARGIN <= inner {
                hits = (SUPERSAMPLE * SUPERSAMPLE) as u32;
            } else {
                for sy in 0..SUPERSAMPLE {
                    let py = y as f64 + (sy as f64 + 0.5) * step;
                    for sx in 0..SUPERSAMPLE {
                        let px = x as f64 + (sx as f64 + 0.5) * step;
                        hits += g.contains(px, py) as u32;
                    }
                }
            }
            if hits == 0 {
                continue;
            }
            let cov = hits as f32 / (SUPERSAMPLE * SUPERSAMPLE) as f32;
            let i = (y * s + x) * 3;
            for c in 0..3 {
                let v = buf[i + c] as f32 * (1.0 - cov) + fill[c] * cov;
                buf[i + c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    RgbImage::from_raw(size, size, buf).expect("buffer has size*size*3 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn fnv1a(bytes: &[u8]) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    }

    fn params(config: &SyntheticConfig, split: Split, index: u64) -> Params {
        let mut rng = Rng::new(sample_seed(config.seed, split, index));
        draw_params(config, split, &mut rng)
    }

    /// Pinned so that edits which change the generated data are noticed. Update deliberately.
    const GOLDEN_TRAIN_0_HASH: u64 = 0x74ea_e8ab_f7b5_8f56;
    const GOLDEN_TRAIN_0_CAPTION: &str = "a large green star in the center";

    #[test]
    fn golden_sample() {
        let s = sample(&SyntheticConfig::default(), Split::Train, 0);
        let h = fnv1a(s.image.as_raw());
        assert_eq!(
            (h, s.caption.as_str()),
            (GOLDEN_TRAIN_0_HASH, GOLDEN_TRAIN_0_CAPTION),
            "golden hash {h:#018x}, caption {:?}",
            s.caption
        );
    }

    #[test]
    fn deterministic_and_distinct() {
        let cfg = SyntheticConfig::default();
        for i in [0u64, 1, 17, 999] {
            let a = sample(&cfg, Split::Train, i);
            let b = sample(&cfg, Split::Train, i);
            assert_eq!(a.image, b.image);
            assert_eq!(a.caption, b.caption);
            assert_eq!(a.class_name, b.class_name);
        }
        let mut seen = HashSet::new();
        for i in 0..50u64 {
            assert!(seen.insert(sample(&cfg, Split::Train, i).image.into_raw()), "index {i}");
        }
        // Splits and seeds are mixed into the per-sample seed.
        let all = sample(&cfg, Split::All, 0).image;
        assert_ne!(sample(&cfg, Split::Train, 0).image, all);
        let other = SyntheticConfig { seed: 1, ..cfg.clone() };
        assert_ne!(sample(&other, Split::All, 0).image, all);
        assert_eq!(all.dimensions(), (64, 64));
    }

    #[test]
    fn splits_respect_held_out_pairs() {
        let cfg = SyntheticConfig::default();
        assert_eq!(cfg.pairs(Split::All).len(), 36);
        assert_eq!(cfg.pairs(Split::Train).len(), 30);
        assert_eq!(cfg.pairs(Split::HeldOut).len(), 6);
        let held: HashSet<_> = cfg.held_out.iter().copied().collect();
        let mut seen = HashSet::new();
        for i in 0..2000u64 {
            let p = params(&cfg, Split::Train, i);
            assert!(!held.contains(&(p.color, p.shape)), "held-out pair in Train at {i}");
            seen.insert((p.color, p.shape));
        }
        assert_eq!(seen.len(), 30, "every train pair appears");
        let mut seen = HashSet::new();
        for i in 0..300u64 {
            let p = params(&cfg, Split::HeldOut, i);
            assert!(held.contains(&(p.color, p.shape)));
            seen.insert((p.color, p.shape));
        }
        assert_eq!(seen, held);
        // The sample's fields match the drawn parameters.
        let s = sample(&cfg, Split::HeldOut, 3);
        let p = params(&cfg, Split::HeldOut, 3);
        assert_eq!((s.color, s.shape, s.size, s.position), (p.color, p.shape, p.size, p.position));
        assert_eq!(s.class_name, format!("{} {}", p.color.name(), p.shape.name()));
    }

    #[test]
    fn class_names_in_stable_order() {
        let cfg = SyntheticConfig::default();
        let names = cfg.class_names(Split::All);
        assert_eq!(&names[..3], ["red circle", "red square", "red triangle"]);
        assert_eq!(names[35], "orange diamond");
        assert_eq!(
            cfg.class_names(Split::HeldOut),
            ["red star", "green cross", "blue diamond", "yellow circle", "purple square", "orange triangle"]
        );
        assert!(!cfg.class_names(Split::Train).contains(&"red star".to_string()));
    }

    #[test]
    fn shape_colour_at_centre() {
        let cfg = SyntheticConfig::default();
        for split in [Split::All, Split::HeldOut] {
            for i in 0..300u64 {
                let p = params(&cfg, split, i);
                let s = sample(&cfg, split, i);
                let px = s.image.get_pixel(p.cx as u32, p.cy as u32).0;
                assert_eq!(px, p.rgb, "{split:?} {i}: centre pixel is the fill colour");
                let base = p.color.rgb();
                for c in 0..3 {
                    assert!((px[c] as i32 - base[c] as i32).abs() <= COLOR_JITTER, "{i}");
                }
                // The nearest nominal colour is the right one.
                let dist = |c: Color| -> i32 { (0..3).map(|k| (c.rgb()[k] as i32 - px[k] as i32).pow(2)).sum() };
                let nearest = Color::ALL.into_iter().min_by_key(|&c| dist(c)).unwrap();
                assert_eq!(nearest, p.color, "{i}");
                // Corners are background: greyish, never a shape colour.
                for (x, y) in [(0, 0), (63, 0), (0, 63), (63, 63)] {
                    let q = s.image.get_pixel(x, y).0;
                    let (mx, mn) = (*q.iter().max().unwrap(), *q.iter().min().unwrap());
                    if (x as f64 - p.cx).hypot(y as f64 - p.cy) > p.radius * 1.2 + 2.0 {
                        assert!(mx - mn <= 2 * BG_TINT as u8 + 1, "{i}: corner {q:?} too saturated");
                        assert!((luma(q) - luma(p.rgb)).abs() > BG_LUMA_MARGIN - 20.0);
                    }
                }
            }
        }
    }

    #[test]
    fn colours_are_distinct_under_jitter() {
        for (i, a) in Color::ALL.iter().enumerate() {
            for b in &Color::ALL[i + 1..] {
                let max_diff = (0..3).map(|k| (a.rgb()[k] as i32 - b.rgb()[k] as i32).abs()).max().unwrap();
                assert!(max_diff > 4 * COLOR_JITTER, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn captions_name_attributes_with_correct_articles() {
        let cfg = SyntheticConfig::default();
        let mut templates = HashSet::new();
        for i in 0..500u64 {
            let s = sample(&cfg, Split::All, i);
            templates.insert(params(&cfg, Split::All, i).template);
            let cap = &s.caption;
            assert!(cap.contains(s.color.name()) && cap.contains(s.shape.name()), "{cap}");
            assert!(cap.contains(&format!("{} {}", s.color.name(), s.shape.name())), "{cap}");
            let words: Vec<&str> = cap.split(' ').collect();
            for w in words.windows(2) {
                let next = w[1].trim_matches(|c: char| !c.is_alphabetic());
                let vowel = next.starts_with(['a', 'e', 'i', 'o', 'u']);
                match w[0] {
                    "a" => assert!(!vowel, "{cap}"),
                    "an" => assert!(vowel, "{cap}"),
                    _ => {}
                }
            }
            if cap.contains(s.size.name()) {
                assert!(s.size.name() != "small" || !cap.contains("large"));
            }
        }
        assert_eq!(templates.len(), CAPTION_TEMPLATES);
        assert_eq!(Params { template: 4, ..params(&cfg, Split::All, 0) }.caption().matches(", ").count(), 2);
    }

    #[test]
    fn validate_rejects_bad_configs() {
        let ok = SyntheticConfig::default();
        assert!(ok.validate().is_ok());
        assert!(SyntheticConfig { size: 15, ..ok.clone() }.validate().is_err());
        assert!(SyntheticConfig { size: 513, ..ok.clone() }.validate().is_err());
        assert!(SyntheticConfig { size: 16, ..ok.clone() }.validate().is_ok());
        let mut dup = ok.clone();
        dup.held_out.push((Color::Red, Shape::Star));
        assert!(dup.validate().unwrap_err().contains("red star"));
        let all = SyntheticConfig { held_out: ok.pairs(Split::All), ..ok.clone() };
        assert!(all.validate().is_err());
        let none = SyntheticConfig { held_out: vec![], ..ok.clone() };
        assert!(none.validate().is_ok());
        assert_eq!(none.pairs(Split::Train).len(), 36);
        // Small and large images render.
        for size in [16, 100, 512] {
            let cfg = SyntheticConfig { size, ..ok.clone() };
            assert_eq!(sample(&cfg, Split::Train, 5).image.dimensions(), (size, size));
        }
        // Config round-trips through JSON.
        let json = serde_json::to_string(&ok).unwrap();
        assert_eq!(serde_json::from_str::<SyntheticConfig>(&json).unwrap(), ok);
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("a red star"), "a red star");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    fn scratch_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("florence-synthetic-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn write_captions_layout() {
        let cfg = SyntheticConfig { size: 32, ..SyntheticConfig::default() };
        let dir = scratch_dir("captions");
        let mut calls = Vec::new();
        let n = write_dataset(&cfg, Split::Train, 12, &dir, Layout::Captions, &mut |d, t| calls.push((d, t))).unwrap();
        assert_eq!(n, 12);
        assert_eq!(calls, (1..=12).map(|d| (d, 12)).collect::<Vec<_>>());
        let jsonl = fs::read_to_string(dir.join("captions.jsonl")).unwrap();
        let lines: Vec<&str> = jsonl.lines().collect();
        assert_eq!(lines.len(), 12);
        for (i, line) in lines.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let s = sample(&cfg, Split::Train, i as u64);
            assert_eq!(v["image"], format!("images/{i:06}.png"));
            assert_eq!(v["caption"], s.caption);
            assert_eq!(v["class"], s.class_name);
            let img = ::image::open(dir.join(v["image"].as_str().unwrap())).unwrap().to_rgb8();
            assert_eq!(img, s.image);
        }
        let csv = fs::read_to_string(dir.join("captions.csv")).unwrap();
        assert!(csv.starts_with("image,caption\r\nimages/000000.png,"));
        assert_eq!(csv.lines().count(), 13);
        // No temporary files left behind.
        assert!(fs::read_dir(&dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".partial")));
        // Byte-identical on a second run.
        let again = scratch_dir("captions-again");
        write_dataset(&cfg, Split::Train, 12, &again, Layout::Captions, &mut |_, _| {}).unwrap();
        for f in ["captions.jsonl", "captions.csv", "images/000000.png", "images/000011.png"] {
            assert_eq!(fs::read(dir.join(f)).unwrap(), fs::read(again.join(f)).unwrap(), "{f}");
        }
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(&again).unwrap();
    }

    #[test]
    fn write_class_folders_layout() {
        let cfg = SyntheticConfig { size: 32, ..SyntheticConfig::default() };
        let dir = scratch_dir("folders");
        let n = write_dataset(&cfg, Split::HeldOut, 10, &dir, Layout::ClassFolders, &mut |_, _| {}).unwrap();
        assert_eq!(n, 10);
        let mut count = 0;
        for i in 0..10u64 {
            let s = sample(&cfg, Split::HeldOut, i);
            let path = dir.join(&s.class_name).join(format!("{i:06}.png"));
            assert!(path.is_file(), "{}", path.display());
            count += 1;
        }
        let files: usize = fs::read_dir(&dir).unwrap().map(|d| fs::read_dir(d.unwrap().path()).unwrap().count()).sum();
        assert_eq!(files, count);
        // An empty split or invalid config is an InvalidInput error, not a panic.
        let empty = SyntheticConfig { held_out: vec![], ..cfg.clone() };
        let err = write_dataset(&empty, Split::HeldOut, 1, &dir, Layout::ClassFolders, &mut |_, _| {});
        assert_eq!(err.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        let bad = SyntheticConfig { size: 4, ..cfg };
        let err = write_dataset(&bad, Split::Train, 1, &dir, Layout::Captions, &mut |_, _| {});
        assert_eq!(err.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn render_timing() {
        // Informational (run with --release --nocapture); no assertion, debug builds are slow.
        let cfg = SyntheticConfig::default();
        let n = 200u64;
        let start = std::time::Instant::now();
        let mut acc = 0u64;
        for i in 0..n {
            acc = acc.wrapping_add(sample(&cfg, Split::All, i).image.as_raw()[0] as u64);
        }
        let per = start.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!("synthetic 64x64 sample: {per:.1} µs (checksum {acc})");
    }
}
