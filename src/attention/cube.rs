//! Launching the CubeCL kernels on `CubeBackend` (wgpu, vulkan, metal, cuda); `Fusion<CubeBackend>`
//! reaches these through the generated lazy wrapper.

use burn::backend::Shape;
use burn::backend::TensorMetadata;
use burn::backend::cubecl::dtype_to_storage_type;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn_cubecl::CubeBackend;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;

use super::kernels::{
    window_attention_backward_kv_kernel, window_attention_backward_q_kernel, window_attention_delta_kernel,
    window_attention_forward_kernel,
};
use super::ops::{WindowAttentionOps, output_shape};
use super::reference::dims;

/// Units per cube: one query (or key) row each; 64 covers a 7x7 window in one cube.
const ROWS: u32 = 64;
/// Windows of one bias class whose `dS` one backward cube sums before writing it out: the
/// partial-bias buffer is `1 / WINDOWS_PER_CHUNK` of the score tensor the kernel never writes.
const WINDOWS_PER_CHUNK: usize = 8;

/// Key/query rows per shared-memory tile: two `tile x hd` f32 tiles stay within 16 KB, half of
/// Metal's 32 KB threadgroup limit.
fn tile_rows(hd: usize) -> usize {
    (2048 / hd).clamp(1, 32)
}

/// A cube grid of `blocks` row blocks for each of `pairs` (window, head) pairs, the pairs spread
/// over y and z (each at most 65,535); the kernels skip the surplus pairs.
fn grid(blocks: u32, pairs: usize) -> CubeCount {
    let y = pairs.clamp(1, 65_535);
    CubeCount::Static(blocks, y as u32, pairs.div_ceil(y) as u32)
}

fn row_blocks(n: usize) -> u32 {
    (n as u32).div_ceil(ROWS)
}

fn forward(qkv: CubeTensor, bias: CubeTensor, heads: usize, scale: f64, with_lse: bool) -> (CubeTensor, CubeTensor) {
    let qkv = into_contiguous(qkv);
    let bias = into_contiguous(bias);
    let (bw, n, h, hd, nwb) = dims(&qkv.shape(), &bias.shape(), heads);
    let (client, device, dtype) = (qkv.client.clone(), qkv.device.clone(), qkv.dtype);
    let out = empty_device_contiguous_dtype(client.clone(), device.clone(), output_shape(&qkv.shape()), dtype);
    let lse_shape = if with_lse { Shape::new([bw, h, n]) } else { Shape::new([1]) };
    let lse = empty_device_contiguous_dtype(client.clone(), device, lse_shape, dtype);
    window_attention_forward_kernel::launch(
        &client,
        grid(row_blocks(n), bw * h),
        CubeDim::new_1d(ROWS),
        qkv.into_tensor_arg(),
        bias.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        lse.clone().into_tensor_arg(),
        scale as f32,
        n as u32,
        h as u32,
        bw as u32,
        nwb as u32,
        hd,
        tile_rows(hd),
        with_lse,
        dtype_to_storage_type(dtype),
    );
    (out, lse)
}

impl WindowAttentionOps for CubeBackend {
    fn window_attention(
        qkv: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        heads: usize,
        scale: f64,
    ) -> FloatTensor<Self> {
        forward(qkv, bias, heads, scale, false).0
    }

    fn window_attention_with_lse(
        qkv: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        heads: usize,
        scale: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        forward(qkv, bias, heads, scale, true)
    }

    fn window_attention_backward(
        qkv: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        dout: FloatTensor<Self>,
        heads: usize,
        scale: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let [qkv, bias, out, lse, dout] = [qkv, bias, out, lse, dout].map(into_contiguous);
        let (bw, n, h, hd, nwb) = dims(&qkv.shape(), &bias.shape(), heads);
        let (client, device, dtype) = (qkv.client.clone(), qkv.device.clone(), qkv.dtype);
        let storage = dtype_to_storage_type(dtype);
        let tile = tile_rows(hd);

        let delta = empty_device_contiguous_dtype(client.clone(), device.clone(), Shape::new([bw, h, n]), dtype);
        let rows = bw * h * n;
        window_attention_delta_kernel::launch(
            &client,
            grid(1, rows.div_ceil(ROWS as usize)),
            CubeDim::new_1d(ROWS),
            out.into_tensor_arg(),
            dout.clone().into_tensor_arg(),
            delta.clone().into_tensor_arg(),
            n as u32,
            h as u32,
            hd,
            storage,
        );

        let dqkv = empty_device_contiguous_dtype(client.clone(), device.clone(), qkv.shape(), dtype);
        let per_class = bw / nwb;
        let chunks = per_class.div_ceil(WINDOWS_PER_CHUNK);
        let part = empty_device_contiguous_dtype(client.clone(), device, Shape::new([chunks, nwb, h, n, n]), dtype);
        window_attention_backward_q_kernel::launch(
            &client,
            grid(row_blocks(n), h * nwb * chunks),
            CubeDim::new_1d(ROWS),
            qkv.clone().into_tensor_arg(),
            bias.clone().into_tensor_arg(),
            dout.clone().into_tensor_arg(),
            lse.clone().into_tensor_arg(),
            delta.clone().into_tensor_arg(),
            dqkv.clone().into_tensor_arg(),
            part.clone().into_tensor_arg(),
            scale as f32,
            n as u32,
            h as u32,
            bw as u32,
            nwb as u32,
            WINDOWS_PER_CHUNK as u32,
            chunks as u32,
            hd,
            tile,
            storage,
        );
        window_attention_backward_kv_kernel::launch(
            &client,
            grid(row_blocks(n), bw * h),
            CubeDim::new_1d(ROWS),
            qkv.into_tensor_arg(),
            bias.into_tensor_arg(),
            dout.into_tensor_arg(),
            lse.into_tensor_arg(),
            delta.into_tensor_arg(),
            dqkv.clone().into_tensor_arg(),
            scale as f32,
            n as u32,
            h as u32,
            bw as u32,
            nwb as u32,
            hd,
            tile,
            storage,
        );
        let dbias = Self::float_reshape(Self::float_sum_dim(part, 0), Shape::new([nwb, h, n, n]));
        (dqkv, dbias)
    }
}
