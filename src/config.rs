//! Model configuration: serde structs with `init(&device)`, named presets and JSON I/O.
//!
//! Field meanings and values follow the public sources: Swin (Liu et al. 2021; timm's
//! `swin_transformer.py`), CvT convolutional embedding (`lib/models/cls_cvt.py` of microsoft/CvT),
//! and UniCL's text transformer and two-tower head
//! (https://github.com/microsoft/UniCL/blob/9983bf8/model/text_encoder/transformer.py,
//! `model/model.py`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{FlorenceError, Result};
pub use crate::image::config::{EmbeddingKind, ImageEncoderConfig};
pub use crate::text::config::{DropPathUnit, TextEncoderConfig, TextPooling};

/// A whole two-tower model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlorenceConfig {
    /// The image tower.
    pub image: ImageEncoderConfig,
    /// The text tower.
    pub text: TextEncoderConfig,
    /// Width of the shared embedding space (512 in every UniCL config).
    pub projection_dim: usize,
    /// Initial value of the learnable `logit_scale` (logits are `exp(logit_scale) * cos`).
    /// UniCL initialises it to 1.0; loaded checkpoints overwrite it.
    #[serde(default = "default_logit_scale")]
    pub logit_scale_init: f64,
    /// How images are prepared for these weights. Absent: UniCL's eval transform for
    /// `image.image_size` (see [`FlorenceConfig::preprocess`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<crate::preprocess::PreprocessConfig>,
}

fn default_logit_scale() -> f64 {
    1.0
}

/// Names accepted by [`FlorenceConfig::preset`].
pub const PRESETS: &[&str] =
    &["unicl-swin-t", "unicl-swin-b", "coswin-t", "florence-coswin-h", "tiny", "tiny-coswin", "tiny-clip"];
impl FlorenceConfig {
    /// A named preset; see [`PRESETS`].
    ///
    /// * `unicl-swin-t`, `unicl-swin-b`: exactly the architectures of the public UniCL checkpoints.
    /// * `coswin-t`: Swin-T sizes with CvT convolutional embedding (Florence's CoSwin at Swin-T scale).
    /// * `florence-coswin-h`: the paper's size class. The paper gives only: CoSwin image encoder,
    ///   637M image parameters, a 12-layer text transformer of 256M parameters, 224 pre-training
    ///   resolution. C=256, depths `[2, 2, 40, 2]`, heads `[8, 16, 32, 64]`, window 7 are an **assumption**
    ///   (one of the configs that lands at 637.5M with conv embedding, the Florence paper's 637M, arXiv:2111.11432 §2.3); the
    ///   text width 1024 / 16 heads (UniCL's config defaults, 202M with the CLIP vocabulary, not
    ///   256M) and the projection width 512 are assumptions too.
    /// * `tiny`, `tiny-coswin`: small configs for tests (the fixtures in `tests/fixtures`);
    ///   `tiny-clip`: `tiny` with the CLIP vocabulary and context (end-to-end tests).
    pub fn preset(name: &str) -> Result<Self> {
        let c = match name {
            "unicl-swin-t" => Self {
                image: ImageEncoderConfig::swin_t(),
                text: TextEncoderConfig::unicl(),
                projection_dim: 512,
                logit_scale_init: 1.0,
                preprocess: None,
            },
            "unicl-swin-b" => Self { image: ImageEncoderConfig::swin_b(), ..Self::preset("unicl-swin-t")? },
            "coswin-t" => Self {
                image: ImageEncoderConfig { embedding: EmbeddingKind::Conv, ..ImageEncoderConfig::swin_t() },
                ..Self::preset("unicl-swin-t")?
            },
            "florence-coswin-h" => Self {
                image: ImageEncoderConfig {
                    embed_dim: 256,
                    depths: vec![2, 2, 40, 2],
                    num_heads: vec![8, 16, 32, 64],
                    embedding: EmbeddingKind::Conv,
                    ..ImageEncoderConfig::swin_t()
                },
                text: TextEncoderConfig { width: 1024, heads: 16, ..TextEncoderConfig::unicl() },
                projection_dim: 512,
                logit_scale_init: 1.0,
                preprocess: None,
            },
            "tiny" => Self {
                image: ImageEncoderConfig {
                    image_size: 64,
                    embed_dim: 12,
                    depths: vec![2, 2, 2, 2],
                    num_heads: vec![1, 2, 4, 8],
                    window_size: 4,
                    ..ImageEncoderConfig::swin_t()
                },
                text: TextEncoderConfig {
                    vocab_size: 1000,
                    context_length: 16,
                    width: 32,
                    heads: 4,
                    layers: 2,
                    ..TextEncoderConfig::unicl()
                },
                projection_dim: 24,
                logit_scale_init: 1.0,
                preprocess: None,
            },
            // The tiny image tower with a text tower that takes the real CLIP tokenizer's ids
            // (vocabulary 49,408, context 77) at a tiny width: end-to-end tests from text to
            // class probabilities.
            "tiny-clip" => {
                let mut c = Self::preset("tiny")?;
                c.text = TextEncoderConfig { width: 16, heads: 2, layers: 2, ..TextEncoderConfig::unicl() };
                c
            }
            "tiny-coswin" => {
                let mut c = Self::preset("tiny")?;
                c.image.embedding = EmbeddingKind::Conv;
                c
            }
            other => {
                return Err(FlorenceError::UnknownPreset { name: other.to_string(), available: PRESETS.join(", ") });
            }
        };
        Ok(c)
    }

    /// The preprocessing for these weights: the explicit `preprocess` section, else UniCL's
    /// evaluation transform at the image size (shorter side to `int(256 / 224 * S)` with bicubic,
    /// centre crop S, ImageNet mean and std; UniCL's `build_transform` in
    /// https://github.com/microsoft/UniCL/blob/9983bf8/data/build.py).
    pub fn preprocess(&self) -> crate::preprocess::PreprocessConfig {
        self.preprocess
            .clone()
            .unwrap_or_else(|| crate::preprocess::PreprocessConfig::unicl(self.image.image_size as u32))
    }

    /// Checks the whole config.
    pub fn validate(&self) -> Result<()> {
        if let Some(p) = &self.preprocess {
            p.validate()?;
            if p.crop as usize != self.image.image_size {
                return Err(FlorenceError::Config(format!(
                    "preprocess.crop is {} but image.image_size is {}; they must agree",
                    p.crop, self.image.image_size
                )));
            }
        }
        self.image.validate()?;
        self.text.validate()?;
        if self.projection_dim == 0 {
            return Err(FlorenceError::Config("projection_dim must be positive".into()));
        }
        if !self.logit_scale_init.is_finite() {
            return Err(FlorenceError::Config("logit_scale_init must be finite".into()));
        }
        let limits = crate::limits::get();
        let width = limits.max_model_width as u64;
        crate::limits::check("`projection_dim`", self.projection_dim as u64, width, "max_model_width")?;
        crate::limits::check(
            "the model's parameter count",
            self.num_params() as u64,
            limits.max_model_params,
            "max_model_params",
        )?;
        Ok(())
    }

    /// Parameter count of the whole model (towers, projections and the logit scale).
    pub fn num_params(&self) -> usize {
        self.image.num_params()
            + self.text.num_params()
            + (self.image.num_features() + self.text.width) * self.projection_dim
            + 1
    }

    /// Parses and validates a JSON config.
    pub fn from_json(json: &str) -> Result<Self> {
        let c: Self = serde_json::from_str(json)
            .map_err(|source| FlorenceError::ConfigParse { path: "<string>".into(), source })?;
        c.validate()?;
        Ok(c)
    }

    /// The config as pretty JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain numbers, strings and vectors cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Loads and validates a JSON config file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = crate::files::read_text_file(path)?;
        let c: Self =
            serde_json::from_str(&text).map_err(|source| FlorenceError::ConfigParse { path: path.into(), source })?;
        c.validate()?;
        Ok(c)
    }

    /// Writes the config as JSON.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_json()).map_err(|source| FlorenceError::Io { path: path.into(), source })
    }

    /// A preset name or a path to a JSON file.
    pub fn from_preset_or_file(spec: &str) -> Result<Self> {
        if PRESETS.contains(&spec) || !Path::new(spec).exists() && !spec.ends_with(".json") {
            Self::preset(spec)
        } else {
            Self::load(spec)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_roundtrip_json() {
        for name in PRESETS {
            let c = FlorenceConfig::preset(name).unwrap();
            c.validate().unwrap();
            assert_eq!(FlorenceConfig::from_json(&c.to_json()).unwrap(), c, "{name}");
        }
        assert!(matches!(FlorenceConfig::preset("swin-xxl"), Err(FlorenceError::UnknownPreset { .. })));
    }

    #[test]
    fn config_files_round_trip() {
        let dir = std::env::temp_dir().join(format!("florence-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("coswin.json");
        let c = FlorenceConfig::preset("coswin-t").unwrap();
        c.save(&path).unwrap();
        assert_eq!(FlorenceConfig::load(&path).unwrap(), c);
        assert_eq!(FlorenceConfig::from_preset_or_file(path.to_str().unwrap()).unwrap(), c);
        assert_eq!(FlorenceConfig::from_preset_or_file("coswin-t").unwrap(), c);
        let missing = dir.join("nope.json");
        assert!(matches!(FlorenceConfig::load(&missing), Err(FlorenceError::Io { .. })));
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(FlorenceConfig::load(&path), Err(FlorenceError::ConfigParse { .. })));
    }

    #[test]
    fn parameter_counts_match_the_spec() {
        // UniCL Swin-T = 91.34M, Swin-B = 150.70M: the modules of https://github.com/microsoft/UniCL/blob/9983bf8/model/model.py
        // with configs/unicl_swin_{tiny,base}.yaml.
        let t = FlorenceConfig::preset("unicl-swin-t").unwrap().num_params();
        let b = FlorenceConfig::preset("unicl-swin-b").unwrap().num_params();
        assert_eq!((t as f64 / 1e4).round() / 100.0, 91.34, "{t}");
        assert_eq!((b as f64 / 1e4).round() / 100.0, 150.70, "{b}");
        // torchvision swin_b = 87,768,224 with its 1000-class head (1024*1000 + 1000).
        assert_eq!(ImageEncoderConfig::swin_b().num_params() + 1024 * 1000 + 1000, 87_768_224);
        // §1.2: C=256, depths [2,2,40,2] with conv embedding = 637.52M.
        let h = FlorenceConfig::preset("florence-coswin-h").unwrap().image.num_params();
        assert_eq!((h as f64 / 1e4).round() / 100.0, 637.52, "{h}");
    }

    #[test]
    fn swin_t_stage_geometry() {
        let c = FlorenceConfig::preset("unicl-swin-t").unwrap().image;
        assert_eq!(c.stage_resolutions((224, 224)), vec![(56, 56), (28, 28), (14, 14), (7, 7)]);
        assert_eq!(c.stage_window(0), ((7, 7), (3, 3)));
        // Stage 3 is 7x7: the window covers it and the shift is dropped (no attn_mask buffer there).
        assert_eq!(c.stage_window(3), ((7, 7), (0, 0)));
        let t = FlorenceConfig::preset("tiny").unwrap().image;
        assert_eq!(t.stage_resolutions((72, 88)), vec![(18, 22), (9, 11), (5, 6), (3, 3)]);
        assert_eq!(t.stage_window(3), ((2, 2), (0, 0)));
        let co = FlorenceConfig::preset("coswin-t").unwrap().image;
        assert_eq!(co.stage_resolutions((384, 384)), vec![(96, 96), (48, 48), (24, 24), (12, 12)]);
    }

    #[test]
    fn bad_configs_are_rejected_with_the_field_named() {
        let mut c = FlorenceConfig::preset("tiny").unwrap();
        c.image.num_heads[1] = 5;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("stage 1") && e.contains("5 heads"), "{e}");
        let mut c = FlorenceConfig::preset("tiny").unwrap();
        c.text.heads = 3;
        assert!(c.validate().unwrap_err().to_string().contains("text"));
        let e = FlorenceConfig::from_json("{\"image\": 3}").unwrap_err();
        assert!(matches!(e, FlorenceError::ConfigParse { .. }), "{e}");
        let mut v: serde_json::Value =
            serde_json::from_str(&FlorenceConfig::preset("tiny").unwrap().to_json()).unwrap();
        v["image"]["windw_size"] = 7.into();
        let e = FlorenceConfig::from_json(&v.to_string()).unwrap_err().to_string();
        assert!(e.contains("windw_size"), "{e}");
    }

    /// Regression: `"image_size": 1000000000` used to abort the process in `florence classify
    /// --config` (an allocation of 62,500,000,000,000,000 bytes); every size is now bounded by
    /// `crate::limits` before anything is built, and the error names the field.
    #[test]
    fn sizes_beyond_the_limits_are_errors_naming_the_field() {
        type Edit = fn(&mut FlorenceConfig);
        let cases: [(&str, Edit); 8] = [
            ("`image.image_size`", |c| c.image.image_size = 1_000_000_000),
            ("`image.window_size`", |c| c.image.window_size = usize::MAX / 2),
            ("stage 0", |c| c.image.embed_dim = 1 << 40),
            ("MLP width of stage 0", |c| c.image.mlp_ratio = 1e300),
            ("`image.depths[1]`", |c| c.image.depths[1] = 1 << 30),
            ("`text.vocab_size`", |c| c.text.vocab_size = usize::MAX),
            ("`text.layers`", |c| c.text.layers = 1 << 40),
            ("`projection_dim`", |c| c.projection_dim = 1 << 33),
        ];
        for (field, edit) in cases {
            let mut c = FlorenceConfig::preset("tiny").unwrap();
            edit(&mut c);
            let e = c.validate().unwrap_err();
            assert!(matches!(e, FlorenceError::Limit(_)), "{field}: {e}");
            assert!(e.to_string().contains(field), "{field}: {e}");
            let json = c.to_json();
            assert!(matches!(FlorenceConfig::from_json(&json), Err(FlorenceError::Limit(_))), "{field}");
        }
        // Each size in range but a model too large to allocate: the parameter count is checked.
        let mut c = FlorenceConfig::preset("tiny").unwrap();
        c.text.width = 32_768;
        c.text.heads = 8;
        c.text.layers = 512;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("parameter count"), "{e}");
    }

    #[test]
    fn text_pooling_defaults_to_argmax_and_checks_the_eot_id() {
        // Every preset keeps UniCL's argmax pooling and its JSON does not mention pooling, so
        // saved configs and configs written before the setting existed read back unchanged.
        for name in PRESETS {
            let c = FlorenceConfig::preset(name).unwrap();
            assert_eq!(c.text.pooling, TextPooling::Argmax, "{name}");
            assert!(!c.to_json().contains("pooling"), "{name}");
        }
        let tiny = FlorenceConfig::preset("tiny").unwrap().to_json();
        let mut v: serde_json::Value = serde_json::from_str(&tiny).unwrap();
        v["text"]["pooling"] = "argmax".into();
        assert_eq!(FlorenceConfig::from_json(&v.to_string()).unwrap().text.pooling, TextPooling::Argmax);
        v["text"]["pooling"] = serde_json::json!({"eot_id": 999});
        let c = FlorenceConfig::from_json(&v.to_string()).unwrap();
        assert_eq!(c.text.pooling, TextPooling::EotId(999));
        assert!(c.to_json().contains("\"eot_id\": 999"), "{}", c.to_json());
        assert_eq!(FlorenceConfig::from_json(&c.to_json()).unwrap(), c);
        // The id must lie in the vocabulary (1000 tokens here).
        v["text"]["pooling"] = serde_json::json!({"eot_id": 1000});
        let e = FlorenceConfig::from_json(&v.to_string()).unwrap_err();
        assert!(matches!(e, FlorenceError::Config(_)), "{e}");
        assert!(e.to_string().contains("`text.pooling.eot_id` 1000"), "{e}");
        let mut c = FlorenceConfig::preset("unicl-swin-t").unwrap();
        c.text.pooling = TextPooling::EotId(49_408);
        assert!(matches!(c.validate(), Err(FlorenceError::Config(_))));
        c.text.pooling = TextPooling::EotId(49_407);
        c.validate().unwrap();
        use serde_json::json;
        for bad in [json!("eot"), json!({"eot_id": -1}), json!({"eot_id": 1, "x": 2})] {
            v["text"]["pooling"] = bad.clone();
            let e = FlorenceConfig::from_json(&v.to_string()).unwrap_err();
            assert!(matches!(e, FlorenceError::ConfigParse { .. }), "{bad}: {e}");
        }
    }
}
