//! The choice between florence's own CPU kernels and Burn's, and the helpers they share.
//!
//! florence runs a few operations through its own flex kernels (GELU and QuickGELU in
//! [`crate::activation`], the fused linear layer in [`crate::linear`]). The loops of
//! [`crate::activation`] are compiled with this crate, so they are only as fast as this crate's optimisation level: in a debug
//! build (`cargo run` / `cargo test` without `--release`, where this crate is unoptimised and
//! the loops are ~13x slower than Burn's optimised dependency code) [`Kernels::Auto`] keeps
//! Burn's kernels. [`set_kernels`] overrides the choice for the process (the parity tests force
//! [`Kernels::Fast`], so that the fast path is what they check). The fused linear layer calls
//! `gemm`, optimised dependency code, and is used in every build.

use std::sync::atomic::{AtomicU8, Ordering};

use burn::prelude::*;

/// Which kernels florence's in-crate loops use on flex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// The fast loops in optimised builds, Burn's kernels in debug builds (see the module docs).
    #[default]
    Auto,
    /// Always the fast loops (where the CPU runs them: see [`vectorised`]).
    Fast,
    /// Always Burn's own kernels.
    Burn,
}

static KERNELS: AtomicU8 = AtomicU8::new(0);

/// Sets the kernels for the whole process (all threads, from the next call on).
pub fn set_kernels(kernels: Kernels) {
    KERNELS.store(kernels as u8, Ordering::Relaxed);
}

/// The kernels in use (as set by [`set_kernels`]; [`Kernels::Auto`] by default).
pub fn kernels() -> Kernels {
    match KERNELS.load(Ordering::Relaxed) {
        1 => Kernels::Fast,
        2 => Kernels::Burn,
        _ => Kernels::Auto,
    }
}

/// Whether the in-crate loops are chosen ([`Kernels`]) and the CPU runs them vectorised.
pub(crate) fn loops_chosen() -> bool {
    let chosen = match kernels() {
        Kernels::Auto => !cfg!(debug_assertions),
        Kernels::Fast => true,
        Kernels::Burn => false,
    };
    chosen && vectorised()
}

/// Whether this CPU runs the vectorised loops (x86-64 with AVX2 and FMA, or AVX-512F; on other
/// architectures the loops are compiled for the baseline, which has FMA on aarch64). Without it
/// the callers keep Burn's own kernels, since `mul_add` would be a software call.
pub fn vectorised() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(target_arch = "aarch64")]
    {
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Whether `x` is an f32 tensor on flex (with or without autodiff).
pub(crate) fn on_flex_f32<const D: usize>(x: &Tensor<D>) -> bool {
    #[cfg(feature = "flex")]
    {
        x.dtype() == burn::tensor::DType::F32
            && matches!(x.device().inner().as_dispatch(), burn::backend::DispatchDevice::Flex(_))
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = x;
        false
    }
}

/// Storage helpers for the flex kernels.
#[cfg(feature = "flex")]
pub(crate) mod flex {
    use burn::backend::DType;
    use burn::backend::flex::{FlexTensor, Layout};
    use burn::tensor::{Bytes, Shape};

    /// `t` with a contiguous, row-major layout (itself if it has one already).
    pub(crate) fn contiguous(t: FlexTensor) -> FlexTensor {
        if t.as_slice::<f32>().is_some() { t } else { t.to_contiguous() }
    }

    /// The f32 values of a tensor returned by [`contiguous`], in row-major order. Callers check
    /// the dtype first ([`assert_f32`], or [`super::on_flex_f32`] before choosing the fast path).
    pub(crate) fn values(t: &FlexTensor) -> &[f32] {
        // Two invariants make this infallible: the dtype is f32 (checked by every caller before
        // it gets here), and `contiguous` leaves a layout that `as_slice` accepts: either the
        // input's own (checked by `as_slice` itself) or `to_contiguous`'s fresh row-major buffer.
        t.as_slice::<f32>().expect("a tensor made contiguous has a row-major f32 slice")
    }

    /// Whether `t` can be written in place: uniquely owned, contiguous, starting at offset 0.
    pub(crate) fn writable(t: &FlexTensor) -> bool {
        t.is_unique() && t.layout().is_contiguous() && t.layout().start_offset() == 0
    }

    /// A contiguous f32 tensor of `shape` holding `values` (no zero-fill, no copy: flex's
    /// `FlexTensor::empty` zero-fills and then copies to reach its alignment).
    pub(crate) fn from_vec(values: Vec<f32>, shape: Shape) -> FlexTensor {
        debug_assert_eq!(values.len(), shape.num_elements());
        FlexTensor::new(Bytes::from_elems(values), Layout::contiguous(shape), DType::F32)
    }

    /// `f` writing every element of a new f32 vector of `n` elements.
    pub(crate) fn filled(n: usize, f: impl FnOnce(&mut [f32])) -> Vec<f32> {
        // Zero-filled by the allocator (calloc: fresh pages are already zero), then written once.
        let mut out = vec![0.0f32; n];
        f(&mut out);
        out
    }

    /// The dtype check every flex kernel starts with.
    pub(crate) fn assert_f32(t: &FlexTensor, what: &str) {
        assert_eq!(t.dtype(), DType::F32, "{what} runs on f32 only (checked by the caller)");
    }
}
