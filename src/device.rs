//! Picking a device from the compiled-in backends.

use burn::tensor::{Device, DeviceKind};

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
        FlorenceError::Config(
            "no backend compiled in: enable one of the features flex, wgpu, vulkan, metal, cuda, tch".into(),
        )
    })
}

/// Which device a name selects (see [`parse_device_name`]). Pure data, independent of the
/// compiled-in backends, so the grammar is the same in every build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The pure-Rust CPU backend (it has a single device).
    Flex,
    /// `wgpu`, `vulkan` or `metal`, and which adapter.
    Graphics { backend: &'static str, kind: DeviceKind },
    /// CUDA device `index`.
    Cuda(usize),
    /// libtorch on its CPU, a CUDA device or Apple's MPS.
    Tch(TchTarget),
}

/// The libtorch device of a [`DeviceSpec::Tch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TchTarget {
    Cpu,
    Cuda(usize),
    Mps,
}

const GRAMMAR: &str = "flex | wgpu|vulkan|metal[:N | :discrete[:N] | :integrated[:N] | :virtual[:N] | :cpu | :default] \
                       | cuda[:N] | tch[:cpu | :cuda[:N] | :mps]";

/// Parses a device name: a backend, optionally followed by which of its devices.
///
/// - `flex`
/// - `wgpu`, `vulkan`, `metal`: the best adapter (Burn's `DefaultDevice`); `wgpu:N` is discrete GPU
///   N; `wgpu:discrete:N`, `wgpu:integrated:N`, `wgpu:virtual:N` (N defaults to 0) and `wgpu:cpu`
///   name an adapter class as Burn's [`DeviceKind`] does.
/// - `cuda` (device 0), `cuda:N`
/// - `tch` (libtorch CPU), `tch:cuda[:N]`, `tch:mps`
///
/// Several names make several devices for data-parallel training (`devices = ["cuda:0",
/// "cuda:1"]`); two names that parse to the same spec are the same device.
pub fn parse_device_name(name: &str) -> Result<DeviceSpec> {
    let bad = |why: &str| FlorenceError::Config(format!("bad device name `{name}`: {why}; the form is {GRAMMAR}"));
    let parts: Vec<&str> = name.trim().split(':').map(str::trim).collect();
    let index = |s: &str| s.parse::<usize>().map_err(|_| bad(&format!("`{s}` is not a device index")));
    let backend = parts[0].to_ascii_lowercase();
    match (backend.as_str(), &parts[1..]) {
        ("flex", []) => Ok(DeviceSpec::Flex),
        ("flex", _) => Err(bad("flex has a single device")),
        ("cuda", []) => Ok(DeviceSpec::Cuda(0)),
        ("cuda", [i]) => Ok(DeviceSpec::Cuda(index(i)?)),
        ("tch", []) | ("tch", ["cpu"]) => Ok(DeviceSpec::Tch(TchTarget::Cpu)),
        ("tch", ["cuda"]) => Ok(DeviceSpec::Tch(TchTarget::Cuda(0))),
        ("tch", ["cuda", i]) => Ok(DeviceSpec::Tch(TchTarget::Cuda(index(i)?))),
        ("tch", ["mps"]) => Ok(DeviceSpec::Tch(TchTarget::Mps)),
        (b @ ("wgpu" | "vulkan" | "metal"), rest) => {
            let backend = match b {
                "wgpu" => "wgpu",
                "vulkan" => "vulkan",
                _ => "metal",
            };
            let n = |r: &[&str]| match r {
                [] => Ok(0),
                [i] => index(i),
                _ => Err(bad("too many parts")),
            };
            let kind = match rest {
                [] | ["default"] => DeviceKind::DefaultDevice,
                ["cpu"] => DeviceKind::Cpu,
                ["discrete", r @ ..] => DeviceKind::DiscreteGpu(n(r)?),
                ["integrated", r @ ..] => DeviceKind::IntegratedGpu(n(r)?),
                ["virtual", r @ ..] => DeviceKind::VirtualGpu(n(r)?),
                [i] => DeviceKind::DiscreteGpu(i.parse().map_err(|_| bad(&format!("unknown adapter `{i}`")))?),
                _ => return Err(bad("unknown adapter")),
            };
            Ok(DeviceSpec::Graphics { backend, kind })
        }
        ("cuda" | "tch", _) => Err(bad("unknown device of this backend")),
        _ => Err(FlorenceError::Config(format!(
            "unknown backend `{}` in device name `{name}`; known: flex, wgpu, vulkan, metal, cuda, tch",
            parts[0]
        ))),
    }
}

/// A device by name: a backend (`flex`, `wgpu`, `vulkan`, `metal`, `cuda`, `tch`) and optionally
/// which of its devices (`cuda:1`, `wgpu:cpu`; the grammar is [`parse_device_name`]'s).
pub fn device_by_name(name: &str) -> Result<Device> {
    let spec = parse_device_name(name)?;
    let backend = match &spec {
        DeviceSpec::Flex => "flex",
        DeviceSpec::Graphics { backend, .. } => backend,
        DeviceSpec::Cuda(_) => "cuda",
        DeviceSpec::Tch(_) => "tch",
    };
    let missing = || {
        FlorenceError::Config(format!(
            "backend `{backend}` (device `{name}`) is not compiled into this build (available: {}); rebuild with `--features {backend}`",
            available().join(", ")
        ))
    };
    #[allow(unreachable_patterns, unused_variables)]
    match spec {
        #[cfg(feature = "flex")]
        DeviceSpec::Flex => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        DeviceSpec::Graphics { backend: "wgpu", kind } => Ok(Device::wgpu(kind)),
        #[cfg(feature = "vulkan")]
        DeviceSpec::Graphics { backend: "vulkan", kind } => Ok(Device::vulkan(kind)),
        #[cfg(feature = "metal")]
        DeviceSpec::Graphics { backend: "metal", kind } => Ok(Device::metal(kind)),
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(i) => Ok(Device::cuda(i)),
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        DeviceSpec::Tch(TchTarget::Cpu) => Ok(Device::libtorch()),
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        DeviceSpec::Tch(TchTarget::Cuda(i)) => Ok(Device::libtorch_cuda(i)),
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        DeviceSpec::Tch(TchTarget::Mps) => Ok(Device::libtorch_mps()),
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        let g = |backend, kind| DeviceSpec::Graphics { backend, kind };
        let cases = [
            ("flex", DeviceSpec::Flex),
            ("cuda", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
            ("wgpu", g("wgpu", DeviceKind::DefaultDevice)),
            ("WGPU:default", g("wgpu", DeviceKind::DefaultDevice)),
            ("wgpu:1", g("wgpu", DeviceKind::DiscreteGpu(1))),
            ("vulkan:discrete", g("vulkan", DeviceKind::DiscreteGpu(0))),
            ("wgpu:integrated:2", g("wgpu", DeviceKind::IntegratedGpu(2))),
            ("metal:virtual:1", g("metal", DeviceKind::VirtualGpu(1))),
            ("wgpu:cpu", g("wgpu", DeviceKind::Cpu)),
            ("tch", DeviceSpec::Tch(TchTarget::Cpu)),
            ("tch:cuda", DeviceSpec::Tch(TchTarget::Cuda(0))),
            ("tch:cuda:1", DeviceSpec::Tch(TchTarget::Cuda(1))),
            ("tch:mps", DeviceSpec::Tch(TchTarget::Mps)),
        ];
        for (name, want) in cases {
            assert_eq!(parse_device_name(name).unwrap(), want, "{name}");
        }
        for (name, says) in [
            ("flex:1", "single device"),
            ("cuda:x", "not a device index"),
            ("cuda:-1", "not a device index"),
            ("wgpu:gpu", "unknown adapter"),
            ("wgpu:discrete:1:2", "too many parts"),
            ("tch:rocm", "unknown device"),
            ("tpu", "unknown backend `tpu`"),
            ("", "unknown backend"),
        ] {
            let e = parse_device_name(name).unwrap_err().to_string();
            assert!(e.contains(says), "{name}: {e}");
        }
    }

    #[test]
    fn missing_backends_say_how_to_build_them() {
        for name in ["flex", "wgpu:1", "vulkan", "metal", "cuda:1", "tch:mps"] {
            let backend = name.split(':').next().unwrap();
            if !available().contains(&backend) {
                let e = device_by_name(name).unwrap_err().to_string();
                assert!(e.contains(&format!("--features {backend}")), "{e}");
            }
        }
    }
}
