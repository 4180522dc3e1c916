//! The batch stream: a seeded, resumable order over a [`Dataset`], parallel decoding and
//! augmentation, and a prefetching thread so the model is not starved.
//!
//! Batches are windows of `batch_size` positions over an endless sequence of epochs, each epoch a
//! permutation of the dataset drawn from `(seed, epoch)`. Position `p` of the stream is example
//! `perm(p / N)[p % N]`, and batch `b` holds positions `b·B .. (b+1)·B`. Every random draw for a
//! sample (augmentation, prompt template) is seeded by `(seed, epoch, example)`. Batch `b` is
//! therefore a pure function of the config and the files, which is what makes `--resume` exact:
//! a resumed loader starts at batch `b` and yields what the uninterrupted one would have.
//!
//! A file that cannot be decoded is left out of its batch and reported in
//! [`HostBatch::skipped`]; the batch is smaller, never fatal.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use burn::prelude::*;

use super::augment::{AugmentConfig, augment, normalize};
use super::batch::ContrastiveBatch;
use super::rng::Rng;
use super::source::Dataset;
use crate::error::{FlorenceError, Result};
use crate::files::Skipped;
use crate::ops::par_map;
use crate::preprocess::{DecodeOptions, PreprocessConfig, decode_image_file};
use crate::text::tokenizer::Tokenizer;

const PERMUTATION: u64 = 0x5045_524d;
const SAMPLE: u64 = 0x5341_4d50;

/// Everything a batch is made from.
#[derive(Debug, Clone)]
pub struct BatchSource {
    /// The examples.
    pub dataset: Dataset,
    /// Turns captions into ids.
    pub tokenizer: Tokenizer,
    /// Training augmentation.
    pub augment: AugmentConfig,
    /// Normalisation (and the eval transform when augmentation is off).
    pub preprocess: PreprocessConfig,
    /// Pairs per batch.
    pub batch_size: usize,
    /// Seed of the order and of every augmentation.
    pub seed: u64,
    /// Decoding threads per batch (0: all cores).
    pub workers: usize,
    /// How images are decoded.
    pub decode: DecodeOptions,
}

/// A batch in host memory, ready to move to a device.
#[derive(Debug, Clone)]
pub struct HostBatch {
    /// Index of the batch in the stream.
    pub index: u64,
    /// `[n, 3, S, S]` normalised pixels, row-major.
    pub images: Vec<f32>,
    /// Crop size S.
    pub size: usize,
    /// `[n, L]` token ids.
    pub ids: Vec<i64>,
    /// Context length L.
    pub context: usize,
    /// UniCL labels.
    pub labels: Vec<u64>,
    /// The captions, as fed to the tokenizer.
    pub captions: Vec<String>,
    /// Examples (dataset indices) in the batch.
    pub examples: Vec<usize>,
    /// Files left out because they could not be decoded.
    pub skipped: Vec<Skipped>,
}

impl HostBatch {
    /// Pairs in the batch (after skipped files were left out).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether every file of the batch was skipped.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The batch as tensors on `device`.
    pub fn to_device(&self, device: &Device) -> ContrastiveBatch {
        let n = self.len();
        ContrastiveBatch {
            images: Tensor::from_data(TensorData::new(self.images.clone(), [n, 3, self.size, self.size]), device),
            ids: Tensor::from_data(TensorData::new(self.ids.clone(), [n, self.context]), device),
            labels: self.labels.clone(),
        }
    }
}

impl BatchSource {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.dataset.is_empty() {
            return Err(FlorenceError::Input("the training data has no examples".into()));
        }
        if self.batch_size == 0 {
            return Err(FlorenceError::Config("`batch_size` must be at least 1".into()));
        }
        if self.dataset.templates.is_empty() {
            return Err(FlorenceError::Config("the templates for image-label data are empty".into()));
        }
        self.augment.validate()?;
        self.preprocess.validate()
    }

    /// The example order of `epoch`.
    pub fn permutation(&self, epoch: u64) -> Vec<usize> {
        let mut p: Vec<usize> = (0..self.dataset.len()).collect();
        Rng::derive(self.seed, &[PERMUTATION, epoch]).shuffle(&mut p);
        p
    }

    /// `(epoch, example)` of every position of batch `b`.
    pub fn positions(&self, b: u64, cache: &mut Option<(u64, Vec<usize>)>) -> Vec<(u64, usize)> {
        let n = self.dataset.len() as u64;
        let start = b * self.batch_size as u64;
        (start..start + self.batch_size as u64)
            .map(|p| {
                let epoch = p / n;
                if cache.as_ref().is_none_or(|(e, _)| *e != epoch) {
                    *cache = Some((epoch, self.permutation(epoch)));
                }
                (epoch, cache.as_ref().expect("filled above").1[(p % n) as usize])
            })
            .collect()
    }

    /// Loads batch `b`: decodes, augments and tokenizes in parallel.
    pub fn load(&self, b: u64, cache: &mut Option<(u64, Vec<usize>)>) -> Result<HostBatch> {
        let positions = self.positions(b, cache);
        let size = self.preprocess.crop;
        let one = |&(epoch, i): &(u64, usize)| -> std::result::Result<(Vec<f32>, String, u64), Skipped> {
            let path = &self.dataset.examples[i].path;
            let img = decode_image_file(path, &self.decode)
                .map_err(|e| Skipped { path: path.clone(), reason: e.to_string() })?;
            let mut rng = Rng::derive(self.seed, &[SAMPLE, epoch, i as u64]);
            let template = rng.below(self.dataset.templates.len());
            let view = augment(&img, size, &self.augment, &self.preprocess, &mut rng);
            let (caption, label) = self.dataset.caption_and_label(i, template);
            Ok((normalize(&view, &self.preprocess), caption, label))
        };
        let results = par_map(&positions, self.workers, one);
        let mut batch = HostBatch {
            index: b,
            images: Vec::new(),
            size: size as usize,
            ids: Vec::new(),
            context: self.tokenizer.context_length(),
            labels: Vec::new(),
            captions: Vec::new(),
            examples: Vec::new(),
            skipped: Vec::new(),
        };
        for (r, &(_, i)) in results.into_iter().zip(&positions) {
            match r {
                Ok((px, caption, label)) => {
                    batch.images.extend(px);
                    batch.captions.push(caption);
                    batch.labels.push(label);
                    batch.examples.push(i);
                }
                Err(s) => batch.skipped.push(s),
            }
        }
        let texts: Vec<&str> = batch.captions.iter().map(String::as_str).collect();
        if !texts.is_empty() {
            batch.ids = self.tokenizer.encode_batch(&texts)?.into_iter().flatten().map(i64::from).collect();
        }
        Ok(batch)
    }
}

/// Batches `first, first + 1, ...` prepared on a background thread, `prefetch` ahead. Generic
/// over the batch type: any task's data stream that is a function of the batch index.
pub struct Loader<B = HostBatch> {
    rx: Option<Receiver<Result<B>>>,
    handle: Option<JoinHandle<()>>,
}

impl Loader<HostBatch> {
    /// Starts producing from batch `first`; at most `prefetch` (at least 1) batches wait ready.
    pub fn start(source: Arc<BatchSource>, first: u64, prefetch: usize) -> Result<Self> {
        source.validate()?;
        let mut cache = None;
        Self::from_fn(move |b| source.load(b, &mut cache), first, prefetch)
    }
}

impl<B: Send + 'static> Loader<B> {
    /// Produces `load(first)`, `load(first + 1)`, ... on a background thread, at most `prefetch`
    /// (at least 1) ahead of [`Loader::next_batch`].
    pub fn from_fn(
        mut load: impl FnMut(u64) -> Result<B> + Send + 'static,
        first: u64,
        prefetch: usize,
    ) -> Result<Self> {
        let (tx, rx): (SyncSender<Result<B>>, _) = sync_channel(prefetch.max(1));
        let handle = std::thread::Builder::new()
            .name("florence-loader".into())
            .spawn(move || {
                for b in first.. {
                    if tx.send(load(b)).is_err() {
                        break; // the consumer is gone
                    }
                }
            })
            .map_err(|e| FlorenceError::Input(format!("cannot start the data-loading thread: {e}")))?;
        Ok(Self { rx: Some(rx), handle: Some(handle) })
    }

    /// The next batch (blocks until it is ready).
    pub fn next_batch(&mut self) -> Result<B> {
        self.rx
            .as_ref()
            .and_then(|rx| rx.recv().ok())
            .unwrap_or_else(|| Err(FlorenceError::Input("the data-loading thread stopped".into())))
    }
}

impl<B> Drop for Loader<B> {
    fn drop(&mut self) {
        drop(self.rx.take()); // unblocks the producer's send
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
