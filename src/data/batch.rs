//! A batch of image-text pairs as the contrastive objective takes it, and the labels that say
//! which pairs are positives of each other.

use burn::prelude::*;

use crate::error::{FlorenceError, Result};

/// Image-text pairs with one UniCL label per pair.
#[derive(Debug, Clone)]
pub struct ContrastiveBatch {
    /// `[N, 3, S, S]` preprocessed images.
    pub images: Tensor<4>,
    /// `[N, L]` token ids.
    pub ids: Tensor<2, Int>,
    /// `N` labels: class ids, or [`label_for_text`] of the captions.
    pub labels: Vec<u64>,
}

impl ContrastiveBatch {
    /// The number of pairs; an error when images, token rows and labels disagree or are empty.
    pub(crate) fn check(&self) -> Result<usize> {
        let n = self.images.dims()[0];
        if self.ids.dims()[0] != n || self.labels.len() != n || n == 0 {
            return Err(FlorenceError::Input(format!(
                "a batch needs as many images, token rows and labels as pairs: {} images, {} texts, {} labels",
                n,
                self.ids.dims()[0],
                self.labels.len()
            )));
        }
        Ok(n)
    }
}

/// The label of a caption for image-text data: a 64-bit hash of the exact string, so that pairs
/// with identical captions are positives of each other (Florence: "y = hash key of the text").
/// Deterministic across runs and platforms (FNV-1a over the UTF-8 bytes).
pub fn label_for_text(text: &str) -> u64 {
    // FNV-1a over the bytes themselves (not `Hash for str`, whose byte stream is a std detail).
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caption_labels_are_stable_and_exact() {
        assert_eq!(label_for_text("a photo of a cat"), label_for_text("a photo of a cat"));
        assert_ne!(label_for_text("a photo of a cat"), label_for_text("a photo of a cat "));
        // Pinned (FNV-1a 64, computed independently in Python): saved datasets rely on it.
        assert_eq!(label_for_text("a photo of a cat"), 0x413a760fbd1d5bfe);
        assert_eq!(label_for_text(""), 0xcbf2_9ce4_8422_2325);
    }
}
