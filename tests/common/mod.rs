//! Shared helpers for the parity tests: fixture loading and named tolerances.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::prelude::*;
use burn::store::{ModuleStore, SafetensorsStore, bridge};

/// f32 on flex against f32 PyTorch: every comparison in this suite is at most this far apart
/// (the project's default; errors measured here are around 1e-6).
pub const F32_TOL: f32 = 1e-4;

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures").join(name)
}

/// All tensors of a fixture file, by name.
pub fn load_fixture(name: &str) -> BTreeMap<String, TensorData> {
    let mut store = SafetensorsStore::from_file(fixture_path(name));
    store
        .get_all_tensors()
        .expect("fixture readable")
        .iter()
        .map(|(k, t)| (k.clone(), bridge::to_data(t).expect("fixture data")))
        .collect()
}

/// The test device. Also forces florence's fast activation kernels, which a debug build would
/// otherwise leave to Burn's (`florence::activation::Kernels::Auto`), so that every suite that
/// takes its device from here checks the path release builds run.
pub fn device() -> Device {
    florence::activation::set_kernels(florence::activation::Kernels::Fast);
    florence::device::default_device().expect("a backend")
}

/// The device of the second and later replicas in the data-parallel tests:
/// `FLORENCE_REPLICA_DEVICE` (e.g. `wgpu:cpu`, a separate Burn device with its own memory and
/// queue beside `wgpu` on the same adapter, which is how CI runs them on lavapipe), else
/// [`device`] itself (flex has a single device, so its replicas share it).
pub fn replica_device() -> Device {
    match std::env::var("FLORENCE_REPLICA_DEVICE") {
        Ok(name) => {
            florence::device::device_by_name(name.trim()).expect("FLORENCE_REPLICA_DEVICE names a compiled-in device")
        }
        Err(_) => device(),
    }
}

pub fn float<const D: usize>(io: &BTreeMap<String, TensorData>, key: &str, device: &Device) -> Tensor<D> {
    let d = io.get(key).unwrap_or_else(|| panic!("fixture has no `{key}`")).clone().convert::<f32>();
    Tensor::from_data(d, device)
}

pub fn int<const D: usize>(io: &BTreeMap<String, TensorData>, key: &str, device: &Device) -> Tensor<D, Int> {
    let d = io.get(key).unwrap_or_else(|| panic!("fixture has no `{key}`")).clone();
    Tensor::from_data(d, device)
}

/// Max |a - b| over all elements; panics with the label when shapes differ or the error exceeds `tol`.
pub fn assert_close<const D: usize>(label: &str, got: Tensor<D>, want: Tensor<D>, tol: f32) -> f32 {
    assert_eq!(got.dims(), want.dims(), "{label}: shape");
    let a: Vec<f32> = got.into_data().iter::<f32>().collect();
    let b: Vec<f32> = want.into_data().iter::<f32>().collect();
    let err = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(err.is_finite() && err <= tol, "{label}: max abs error {err:e} > {tol:e}");
    eprintln!("{label}: max abs error {err:.2e}");
    err
}
