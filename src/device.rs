//! Picking a device from the compiled-in backends.

use burn::tensor::Device;

use crate::error::{FlorenceError, Result};

/// Backends this build can run, in order of preference.
pub fn available() -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg!(feature = "cuda") {
        v.push("cuda");
    }
    if cfg!(feature = "metal") {
        v.push("metal");
    }
    if cfg!(feature = "vulkan") {
        v.push("vulkan");
    }
    if cfg!(feature = "wgpu") {
        v.push("wgpu");
    }
    if cfg!(feature = "tch") {
        v.push("tch");
    }
    if cfg!(feature = "flex") {
        v.push("flex");
    }
    v
}

/// The default device: the backend named by the `FLORENCE_DEVICE` environment variable if set
/// (e.g. `FLORENCE_DEVICE=wgpu`), else the first of [`available`].
pub fn default_device() -> Result<Device> {
    device_by_name(&default_name()?)
}

/// The backend name [`default_device`] picks: `FLORENCE_DEVICE` if set, else the first of
/// [`available`].
pub fn default_name() -> Result<String> {
    if let Ok(name) = std::env::var("FLORENCE_DEVICE") {
        return Ok(name.trim().to_string());
    }
    available().first().map(|s| s.to_string()).ok_or_else(|| {
        FlorenceError::Config("no backend compiled in: enable one of the features flex, wgpu, vulkan, metal, cuda, tch".into())
    })
}

/// A device by backend name (`flex`, `wgpu`, `vulkan`, `metal`, `cuda`, `tch`).
pub fn device_by_name(name: &str) -> Result<Device> {
    let missing = || {
        FlorenceError::Config(format!(
            "backend `{name}` is not compiled into this build (available: {}); rebuild with `--features {name}`",
            available().join(", ")
        ))
    };
    match name {
        #[cfg(feature = "flex")]
        "flex" => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(feature = "vulkan")]
        "vulkan" => Ok(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(feature = "metal")]
        "metal" => Ok(Device::metal(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::cuda(0)),
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        "tch" => Ok(Device::libtorch()),
        #[allow(unreachable_patterns)]
        "flex" | "wgpu" | "vulkan" | "metal" | "cuda" | "tch" => Err(missing()),
        other => Err(FlorenceError::Config(format!(
            "unknown backend `{other}`; known: flex, wgpu, vulkan, metal, cuda, tch"
        ))),
    }
}
