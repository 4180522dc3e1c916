//! Checkpoint key conventions, mapped onto one internal naming (UniCL's, convention A below, as
//! https://github.com/microsoft/UniCL/blob/9983bf8/model/model.py saves them).
//!
//! | convention | where | keys |
//! |---|---|---|
//! | A | released UniCL checkpoints (`UniCLModel`) | `image_encoder.*`, `text_encoder.*`, `image_projection`, `text_projection`, `logit_scale` |
//! | B | K-LITE "old weights" (`_convert_old_weights`) | `visual.*`, `text.*`, `vision_projection`, `text_projection`, `logit_scale` |
//! | C | ELEVATER toolkit | `image_encoder.*`, `lang_encoder.*`, `image_projection`, `lang_projection`, `logit_scale` |
//!
//! Wrappers are stripped first: a `model.` (UniCL's `{'model': state_dict}`), `state_dict.` or
//! DDP's `module.` prefix.

use std::collections::BTreeMap;

/// Which naming convention a checkpoint used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convention {
    /// UniCL release naming.
    UniclA,
    /// K-LITE old naming.
    KliteB,
    /// ELEVATER naming.
    ElevaterC,
}

const WRAPPERS: &[&str] = &["model.", "state_dict.", "module."];

/// Strips container prefixes: when some keys sit under a wrapper (`model.` for UniCL's
/// `{'model': ..., 'optimizer': ...}`), only those are kept.
pub fn strip_wrappers<T>(mut tensors: BTreeMap<String, T>) -> BTreeMap<String, T> {
    loop {
        let Some(prefix) = WRAPPERS.iter().find(|p| tensors.keys().any(|k| k.starts_with(*p))) else {
            return tensors;
        };
        tensors = tensors.into_iter().filter_map(|(k, v)| k.strip_prefix(prefix).map(|s| (s.to_string(), v))).collect();
    }
}

/// Detects the convention of already-unwrapped keys.
pub fn detect(keys: impl IntoIterator<Item = impl AsRef<str>>) -> Convention {
    let mut conv = Convention::UniclA;
    for k in keys {
        let k = k.as_ref();
        if k.starts_with("visual.") || k == "vision_projection" {
            return Convention::KliteB;
        }
        if k.starts_with("lang_encoder.") || k == "lang_projection" {
            conv = Convention::ElevaterC;
        }
    }
    conv
}

/// The UniCL (convention A) name of a key from `conv`, plus the one internal rename:
/// `nn.MultiheadAttention`'s `in_proj_weight`/`in_proj_bias` become `in_proj.weight`/`in_proj.bias`
/// (florence models the packed projection as a `Linear` named `in_proj`).
pub fn canonical(key: &str, conv: Convention) -> String {
    let k = match conv {
        Convention::UniclA => key.to_string(),
        Convention::KliteB => {
            if let Some(rest) = key.strip_prefix("visual.") {
                format!("image_encoder.{rest}")
            } else if let Some(rest) = key.strip_prefix("text.") {
                format!("text_encoder.{rest}")
            } else if key == "vision_projection" {
                "image_projection".into()
            } else {
                key.into()
            }
        }
        Convention::ElevaterC => {
            if let Some(rest) = key.strip_prefix("lang_encoder.") {
                format!("text_encoder.{rest}")
            } else if key == "lang_projection" {
                "text_projection".into()
            } else {
                key.into()
            }
        }
    };
    if let Some(stem) = k.strip_suffix(".in_proj_weight") {
        format!("{stem}.in_proj.weight")
    } else if let Some(stem) = k.strip_suffix(".in_proj_bias") {
        format!("{stem}.in_proj.bias")
    } else {
        k
    }
}

/// The inverse of the internal rename, for writing UniCL-layout files.
pub fn to_unicl(key: &str) -> String {
    if let Some(stem) = key.strip_suffix(".in_proj.weight") {
        format!("{stem}.in_proj_weight")
    } else if let Some(stem) = key.strip_suffix(".in_proj.bias") {
        format!("{stem}.in_proj_bias")
    } else {
        key.to_string()
    }
}

/// Whether a (canonical) key names a buffer that florence recomputes instead of loading.
pub fn is_known_buffer(key: &str) -> bool {
    key.starts_with("image_encoder.") && (key.ends_with(".attn.relative_position_index") || key.ends_with(".attn_mask"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conventions_map_to_unicl_names() {
        let b = ["visual.norm.weight", "text.ln_final.bias", "vision_projection", "text_projection", "logit_scale"];
        assert_eq!(detect(b), Convention::KliteB);
        let mapped: Vec<_> = b.iter().map(|k| canonical(k, Convention::KliteB)).collect();
        assert_eq!(
            mapped,
            [
                "image_encoder.norm.weight",
                "text_encoder.ln_final.bias",
                "image_projection",
                "text_projection",
                "logit_scale"
            ]
        );
        let c = ["image_encoder.norm.weight", "lang_encoder.resblocks.0.attn.in_proj_weight", "lang_projection"];
        assert_eq!(detect(c), Convention::ElevaterC);
        assert_eq!(canonical(c[1], Convention::ElevaterC), "text_encoder.resblocks.0.attn.in_proj.weight");
        assert_eq!(canonical(c[2], Convention::ElevaterC), "text_projection");
        assert_eq!(
            to_unicl("text_encoder.resblocks.0.attn.in_proj.bias"),
            "text_encoder.resblocks.0.attn.in_proj_bias"
        );
    }

    #[test]
    fn wrappers_are_stripped_and_siblings_dropped() {
        let m: BTreeMap<String, u8> =
            [("model.logit_scale".into(), 1), ("optimizer.state.0.exp_avg".into(), 2), ("epoch".into(), 3)].into();
        let s = strip_wrappers(m);
        assert_eq!(s.keys().collect::<Vec<_>>(), ["logit_scale"]);
        let m: BTreeMap<String, u8> = [("module.text_projection".into(), 1)].into();
        assert_eq!(strip_wrappers(m).keys().collect::<Vec<_>>(), ["text_projection"]);
    }

    #[test]
    fn buffers_are_recognised() {
        assert!(is_known_buffer("image_encoder.layers.0.blocks.1.attn_mask"));
        assert!(is_known_buffer("image_encoder.layers.2.blocks.0.attn.relative_position_index"));
        assert!(!is_known_buffer("image_encoder.layers.2.blocks.0.attn.relative_position_bias_table"));
    }
}
