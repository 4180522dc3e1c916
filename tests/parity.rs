//! Parity of the two towers, stage by stage, against the PyTorch references in
//! `scripts/reference/` (timm Swin re-keyed to the Microsoft layout, timm Swin blocks with GLIP's
//! CvT ConvEmbed for CoSwin, UniCL's text Transformer). Weights go through the public loader.

mod common;

use std::collections::BTreeMap;

use burn::prelude::*;
use common::*;
use florence::{Florence, FlorenceConfig};

struct Case {
    model: Florence,
    io: BTreeMap<String, TensorData>,
    dev: Device,
}

fn case(preset: &str, weights: &str, io: &str) -> Case {
    let dev = device();
    let config = FlorenceConfig::preset(preset).unwrap();
    let model = Florence::load(&config, fixture_path(weights), &dev).unwrap();
    Case { model, io: load_fixture(io), dev }
}

fn check_image_tower(c: &Case, prefix: &str, label: &str) {
    let images: Tensor<4> = float(&c.io, &format!("{prefix}images"), &c.dev);
    let enc = &c.model.image_encoder;
    assert_close(
        &format!("{label} patch_embed"),
        enc.patch_embed.forward_nchw(images.clone()),
        float(&c.io, &format!("{prefix}image.patch_embed"), &c.dev),
        F32_TOL,
    );
    let (maps, last) = enc.forward_stages(images.clone()).unwrap();
    for (i, m) in maps.iter().enumerate() {
        assert_eq!(m.channels, 12 << i);
        assert_eq!(m.stride, 4 << i);
        assert_close(
            &format!("{label} stage{i}"),
            m.tensor.clone(),
            float(&c.io, &format!("{prefix}image.stage{i}"), &c.dev),
            F32_TOL,
        );
    }
    assert_close(&format!("{label} final norm"), last, float(&c.io, &format!("{prefix}image.norm"), &c.dev), F32_TOL);
    assert_close(
        &format!("{label} pooled"),
        enc.forward_features(images.clone()).unwrap(),
        float(&c.io, &format!("{prefix}image.pooled"), &c.dev),
        F32_TOL,
    );
    assert_close(
        &format!("{label} image embeddings"),
        c.model.encode_image(images).unwrap(),
        float(&c.io, &format!("{prefix}image_embeds"), &c.dev),
        F32_TOL,
    );
}

/// One attention block without and with the cyclic shift, fed the reference's own input.
fn check_blocks(c: &Case, label: &str) {
    let stage = &c.model.image_encoder.layers[0];
    let x: Tensor<4> = float(&c.io, "image.patch_embed", &c.dev);
    let [_, h, w, _] = x.dims();
    assert!(!stage.blocks[0].is_shifted() && stage.blocks[1].is_shifted());
    let mask = stage.shift_mask(h, w, &c.dev, burn::tensor::DType::F32);
    let b0 = stage.blocks[0].forward(x, None);
    assert_close(&format!("{label} block (no shift)"), b0, float(&c.io, "image.stage0.block0.out", &c.dev), F32_TOL);
    let b1 = stage.blocks[1].forward(float(&c.io, "image.stage0.block0.out", &c.dev), mask);
    assert_close(
        &format!("{label} block (shifted, -100 mask)"),
        b1,
        float(&c.io, "image.stage0.block1.out", &c.dev),
        F32_TOL,
    );
}

fn check_text_and_logits(c: &Case, label: &str) {
    let ids: Tensor<2, Int> = int(&c.io, "input_ids", &c.dev);
    assert_close(
        &format!("{label} text hidden"),
        c.model.text_encoder.forward(ids.clone()).unwrap(),
        float(&c.io, "text.last_hidden_state", &c.dev),
        F32_TOL,
    );
    assert_close(
        &format!("{label} text embeddings"),
        c.model.encode_text(ids.clone()).unwrap(),
        float(&c.io, "text_embeds", &c.dev),
        F32_TOL,
    );
    let images: Tensor<4> = float(&c.io, "images", &c.dev);
    let logits = c.model.logits(images, ids).unwrap();
    // Logits are scaled by exp(2.6592) = 14.3: the tolerance scales with them.
    assert_close(
        &format!("{label} logits per image"),
        logits.per_image,
        float(&c.io, "logits_per_image", &c.dev),
        14.3 * F32_TOL,
    );
    assert_close(
        &format!("{label} logits per text"),
        logits.per_text,
        float(&c.io, "logits_per_text", &c.dev),
        14.3 * F32_TOL,
    );
}

#[test]
fn swin_from_fp16_pth_matches_timm_stage_by_stage() {
    // The released-checkpoint path: {'model': ...}, fp16, int64 buffers, 0-D logit_scale. The
    // reference weights are fp16-representable, so fp16 -> f32 loading is exact.
    let c = case("tiny", "tiny_swin_fp16.pth", "tiny_swin_io.safetensors");
    check_blocks(&c, "swin");
    check_image_tower(&c, "", "swin");
    check_text_and_logits(&c, "swin");
    // logit_scale came from a 0-D fp16 tensor; exp of it matches the f32 fixture's value to the
    // last bit or two (GPU exp may differ by an ulp).
    let st = load_fixture("tiny_swin.safetensors");
    let want = st["logit_scale"].iter::<f32>().next().unwrap().exp();
    assert!((c.model.scale_value() - want).abs() <= want * 1e-6, "{} vs {want}", c.model.scale_value());
}

#[test]
fn swin_from_safetensors_matches() {
    let c = case("tiny", "tiny_swin.safetensors", "tiny_swin_io.safetensors");
    check_image_tower(&c, "", "swin/st");
    check_text_and_logits(&c, "swin/st");
}

#[test]
fn swin_at_a_size_that_is_not_a_window_multiple() {
    // 72x88: stage maps 18x22, 9x11, 5x6, 3x3 against window 4, so every stage pads, and the odd
    // sides pad before patch merging. Reference: timm's dynamic path (roll, then pad).
    let c = case("tiny", "tiny_swin.safetensors", "tiny_swin_io.safetensors");
    check_image_tower(&c, "odd.", "swin 72x88");
}

#[test]
fn coswin_matches_timm_blocks_with_cvt_embedding() {
    let c = case("tiny-coswin", "tiny_coswin.safetensors", "tiny_coswin_io.safetensors");
    check_blocks(&c, "coswin");
    check_image_tower(&c, "", "coswin");
    check_image_tower(&c, "odd.", "coswin 72x88");
    check_text_and_logits(&c, "coswin");
}

#[test]
fn tiny_presets_match_the_fixture_configs() {
    for (preset, file) in [("tiny", "tiny_swin_config.json"), ("tiny-coswin", "tiny_coswin_config.json")] {
        let c = FlorenceConfig::preset(preset).unwrap();
        let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture_path(file)).unwrap()).unwrap();
        assert_eq!(j["image"]["embed_dim"], c.image.embed_dim);
        assert_eq!(j["image"]["window_size"], c.image.window_size);
        assert_eq!(j["image"]["image_size"], c.image.image_size);
        assert_eq!(j["image"]["depths"], serde_json::json!(c.image.depths));
        assert_eq!(j["image"]["num_heads"], serde_json::json!(c.image.num_heads));
        assert_eq!(j["image"]["embedding"], serde_json::to_value(c.image.embedding).unwrap());
        assert_eq!(j["text"]["width"], c.text.width);
        assert_eq!(j["text"]["vocab_size"], c.text.vocab_size);
        assert_eq!(j["text"]["context_length"], c.text.context_length);
        assert_eq!(j["projection_dim"], c.projection_dim);
        // The built model has exactly the parameter count the formulas give.
        let m = c.init(&device()).unwrap();
        use burn::module::Module;
        assert_eq!(m.num_params(), c.num_params(), "{preset}");
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let dev = device();
    let m = FlorenceConfig::preset("tiny").unwrap().init(&dev).unwrap();
    let e = m.encode_image(Tensor::zeros([1, 1, 64, 64], &dev)).unwrap_err().to_string();
    assert!(e.contains("[batch, 3, height, width]"), "{e}");
    let e = m.encode_image(Tensor::zeros([1, 3, 2, 64], &dev)).unwrap_err().to_string();
    assert!(e.contains("too small"), "{e}");
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![998i64, 5, 1000], [1, 3]), &dev);
    let e = m.encode_text(ids).unwrap_err().to_string();
    assert!(e.contains("outside the vocabulary"), "{e}");
    let ids = Tensor::<2, Int>::zeros([1, 17], &dev);
    let e = m.encode_text(ids).unwrap_err().to_string();
    assert!(e.contains("context length"), "{e}");
}

/// `Linear` from a PyTorch `[out, in]` weight and a bias.
fn linear(w: Tensor<2>, b: Option<Tensor<1>>) -> burn::nn::Linear {
    use burn::module::Param;
    burn::nn::Linear { weight: Param::from_tensor(w.transpose()), bias: b.map(Param::from_tensor) }
}

/// The shared attention layer against `torch.nn.MultiheadAttention` (`tests/fixtures/mha.safetensors`,
/// `scripts/reference/make_attention_fixtures.py`): self-attention with a causal float mask,
/// cross-attention with separate query and key/value inputs and a key-padding mask (output and
/// head-averaged weights), and `kdim = vdim != embed_dim` with separate projections.
#[test]
fn shared_attention_matches_torch_multihead_attention() {
    use burn::tensor::DType;
    use florence::layers::{MultiHeadAttention, key_padding_mask};
    let io = load_fixture("mha.safetensors");
    let dev = device();
    let f2 = |k: &str| -> Tensor<2> { float(&io, k, &dev) };
    let f1 = |k: &str| -> Tensor<1> { float(&io, k, &dev) };
    let f3 = |k: &str| -> Tensor<3> { float(&io, k, &dev) };
    let packed = |case: &str, heads: usize| {
        let mut m = MultiHeadAttention::new(16, heads, true, &dev);
        m.in_proj = Some(linear(f2(&format!("{case}.in_proj_weight")), Some(f1(&format!("{case}.in_proj_bias")))));
        m.out_proj = linear(f2(&format!("{case}.out_proj.weight")), Some(f1(&format!("{case}.out_proj.bias"))));
        m
    };
    let padding =
        |case: &str| -> Tensor<2, Bool> { int::<2>(&io, &format!("{case}.key_padding_mask"), &dev).equal_elem(1) };

    // Self-attention; torch's -inf causal mask, as given.
    let m = packed("self", 4);
    let mask: Tensor<2> = f2("self.attn_mask");
    let out = m.forward(f3("self.x"), Some(mask.unsqueeze::<4>()));
    assert_close("mha self", out, f3("self.out"), F32_TOL);

    // Cross-attention, batch 1's last three keys padded.
    let m = packed("cross", 4);
    let mask = key_padding_mask(padding("cross"), 5, DType::F32);
    assert_eq!(mask.dims(), [2, 1, 5, 7]);
    let (out, weights) = m.forward_cross_with_weights(f3("cross.q"), f3("cross.kv"), Some(mask));
    assert_close("mha cross", out, f3("cross.out"), F32_TOL);
    assert_close("mha cross weights", weights, f3("cross.weights"), F32_TOL);

    // kdim = vdim = 12: separate q/k/v projections sharing torch's packed `in_proj_bias`.
    let mut m = MultiHeadAttention::separate(16, 12, 12, 2, true, &dev);
    let bias = f1("kdim.in_proj_bias");
    let part = |i: usize| Some(bias.clone().slice_dim(0, i * 16..(i + 1) * 16));
    m.q_proj = Some(linear(f2("kdim.q_proj_weight"), part(0)));
    m.k_proj = Some(linear(f2("kdim.k_proj_weight"), part(1)));
    m.v_proj = Some(linear(f2("kdim.v_proj_weight"), part(2)));
    m.out_proj = linear(f2("kdim.out_proj.weight"), Some(f1("kdim.out_proj.bias")));
    let mask = key_padding_mask(padding("kdim"), 3, DType::F32);
    let out = m.forward_cross(f3("kdim.q"), f3("kdim.kv"), Some(mask));
    assert_close("mha kdim", out, f3("kdim.out"), F32_TOL);
}

/// What adapters read from the backbone: `feature_info` from the config alone agrees with a
/// forward; `forward_intermediates` gives the chosen stages as NCHW maps (against timm's stage
/// outputs), optional output norms, and the final tokens before pooling (their mean is timm's
/// pooled feature). With `mode: runtime` the window decisions follow the input, so a large
/// detection-style input shifts its last stage, which the fixed mode built for 64x64 does not.
#[test]
fn backbone_outputs_for_adapters() {
    use florence::image::layout::{BlockLayout, PadOrder, WindowMode};
    let c = case("tiny", "tiny_swin.safetensors", "tiny_swin_io.safetensors");
    let enc = &c.model.image_encoder;
    let images: Tensor<4> = float(&c.io, "images", &c.dev);
    let info = FlorenceConfig::preset("tiny").unwrap().image.feature_info();
    let (maps, _) = enc.forward_stages(images.clone()).unwrap();
    assert_eq!(info.len(), maps.len());
    for (i, m) in info.iter().zip(&maps) {
        assert_eq!((i.channels, i.stride), (m.channels, m.stride), "{i:?}");
    }
    assert_eq!(info[2].module, "layers.2");
    let out = enc.forward_intermediates(images.clone(), &[3, 1]).unwrap();
    for (got, i) in out.maps.iter().zip([3, 1]) {
        let want: Tensor<4> = float(&c.io, &format!("image.stage{i}"), &c.dev);
        assert_close(&format!("intermediate {i}"), got.clone(), want.permute([0, 3, 1, 2]), F32_TOL);
    }
    let pooled = out.tokens.clone().mean_dim(1).squeeze_dim::<2>(1);
    assert_close("tokens pooled", pooled, float(&c.io, "image.pooled", &c.dev), F32_TOL);
    assert_eq!(out.tokens.dims()[1], out.grid.0 * out.grid.1);
    assert!(enc.forward_intermediates(images.clone(), &[4]).is_err());

    // Output norms (fresh: unit gain, zero bias) are a LayerNorm over channels.
    let normed = c.model.image_encoder.clone().with_out_norms(&[1], 1e-5, &c.dev);
    let got = normed.forward_intermediates(images, &[1]).unwrap().maps.remove(0);
    let x: Tensor<4> = float(&c.io, "image.stage1", &c.dev);
    let mean = x.clone().mean_dim(3);
    let var = (x.clone() - mean.clone()).powi_scalar(2).mean_dim(3);
    let want = ((x - mean) / (var + 1e-5).sqrt()).permute([0, 3, 1, 2]);
    assert_close("output norm", got, want, F32_TOL);

    // Runtime window decisions on a 200x328 input (stage maps 50x82 ... 7x11).
    let mut config = FlorenceConfig::preset("tiny").unwrap();
    config.image.layout = BlockLayout { order: PadOrder::PadThenRoll, mode: WindowMode::Runtime, ..Default::default() };
    let runtime = Florence::load(&config, fixture_path("tiny_swin.safetensors"), &c.dev).unwrap();
    let last = &runtime.image_encoder.layers[3].blocks[1];
    assert_eq!(last.decide(&[7, 11]), (vec![2, 2], vec![1, 1]), "runtime: the last stage shifts");
    assert_eq!(c.model.image_encoder.layers[3].blocks[1].decide(&[7, 11]).1, vec![0, 0], "fixed at 64x64: no shift");
    let big = Tensor::<4>::random([1, 3, 200, 328], burn::tensor::Distribution::Normal(0.0, 1.0), &c.dev);
    let out = runtime.image_encoder.forward_intermediates(big, &[0, 1, 2, 3]).unwrap();
    let shapes: Vec<[usize; 4]> = out.maps.iter().map(|m| m.dims()).collect();
    assert_eq!(shapes, vec![[1, 12, 50, 82], [1, 24, 25, 41], [1, 48, 13, 21], [1, 96, 7, 11]]);
    assert!(!out.maps.iter().any(|m| m.clone().is_nan().any().into_scalar::<bool>()));
}

/// Stochastic depth in training against the references' own code
/// (`scripts/reference/make_drop_path_fixtures.py`): the tiny UniCL model with drop-path rates
/// 0.4 (image, timm's `SwinTransformer` blocks, per-sample draws) and 0.3 (text, UniCL's
/// `Transformer`, whose draws are per token position), in training mode, with torch's Bernoulli
/// draws replaced by florence's replayable ones. This checks where the branches are dropped, the
/// 1/keep scaling, the decay of the rates over the blocks and the text tower's per-position quirk;
/// the same tolerance as the inference parity (the drops only rescale branches).
#[test]
fn stochastic_depth_matches_timm_and_unicl_in_training() {
    let dev = device();
    let io = load_fixture("drop_path_io.safetensors");
    let scalar = |k: &str| io[k].clone().convert::<f64>().try_to_vec::<f64>().unwrap();
    let mut config = FlorenceConfig::preset("tiny").unwrap();
    config.image.drop_path_rate = scalar("image_rate")[0];
    config.text.drop_path_rate = scalar("text_rate")[0];
    let model = Florence::load(&config, fixture_path("tiny_swin.safetensors"), &dev).unwrap();
    let image_rates: Vec<f64> =
        model.image_encoder.layers.iter().flat_map(|s| s.blocks.iter().map(|b| b.drop_path)).collect();
    assert_eq!(image_rates, scalar("rates.image"), "timm's rates, torch.linspace in f32");
    let text_rates: Vec<f64> = model.text_encoder.resblocks.iter().map(|b| b.drop_path).collect();
    assert_eq!(text_rates, scalar("rates.text"), "UniCL's text rates");

    let images: Tensor<4> = float(&io, "images", &dev);
    let ids: Tensor<2, Int> = int(&io, "input_ids", &dev);
    let seed = io["seed"].clone().convert::<i64>().try_to_vec::<i64>().unwrap()[0] as u64;
    let noise = florence::layers::DropPathNoise::for_rows(seed, 0..images.dims()[0]);
    let u = model.encode_image_with_noise(images.clone(), Some(&noise)).unwrap();
    let v = model.encode_text_with_noise(ids.clone(), Some(&noise)).unwrap();
    assert_close("drop path: image embeddings", u, float(&io, "image_embeds", &dev), F32_TOL);
    assert_close("drop path: text embeddings", v, float(&io, "text_embeds", &dev), F32_TOL);
    // Without noise the rates do nothing (inference), and the result is far from the fixture.
    let plain = model.encode_image(images).unwrap();
    let moved = (plain - float::<2>(&io, "image_embeds", &dev)).abs().max().into_scalar::<f32>();
    assert!(moved > 0.05, "the fixture's draws dropped branches ({moved})");
    // The noise must have a row per image.
    let short = florence::layers::DropPathNoise::for_rows(seed, 0..2);
    assert!(model.encode_text_with_noise(ids, Some(&short)).is_err());
}

/// The end-of-text cut of a causal text tower (`text::LengthCut`): the pooled features of a batch
/// with mixed lengths are the same cut to the longest end-of-text position, and in length buckets
/// (rows sorted, run in groups, put back), as at the full context length; and the cut never
/// changes the reference's result (the UniCL text fixture still passes at its tolerance through
/// the default path). Tolerance: on flex 1e-6 (the attention sums run over fewer zero terms,
/// nothing else; observed 0 to 2.4e-7); on the CubeCL backends 1e-5, because their matmul kernels
/// tile by shape, so a shorter sequence also reorders the f32 sums (1.3e-6 seen on lavapipe, about
/// 10 ulp of the pooled values).
#[test]
fn text_length_cut_and_buckets_keep_the_pooled_features() {
    let c = case("tiny", "tiny_swin.safetensors", "tiny_swin_io.safetensors");
    let tol = if format!("{:?}", c.dev).contains("Flex") { 1e-6 } else { 1e-5 };
    let enc = &c.model.text_encoder;
    let (rows, ctx, vocab) = (70usize, 16usize, 1000i64);
    let mut ids = vec![vocab - 1; rows * ctx];
    for r in 0..rows {
        let len = (r * 7 + 3) % (ctx - 1); // end-of-text at positions 1..=15, mixed order
        ids[r * ctx] = vocab - 2;
        for j in 1..len {
            ids[r * ctx + j] = ((r * 31 + j * 17) % 990) as i64;
        }
    }
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [rows, ctx]), &c.dev);
    let mut full = enc.clone();
    full.cut.enabled = false;
    let want = full.forward_pooled(ids.clone()).unwrap();
    for (label, bucket) in [("one bucket", 0usize), ("buckets of 64", 64), ("buckets of 8", 8)] {
        let mut cut = enc.clone();
        cut.cut.bucket_rows = bucket;
        let got = cut.forward_pooled(ids.clone()).unwrap();
        assert_close(&format!("text cut, {label}"), got, want.clone(), tol);
    }
    // Short rows alone: the batch is cut to 4 positions.
    let short = ids.clone().slice_dim(0, 0..1);
    assert_close(
        "text cut, one row",
        enc.forward_pooled(short.clone()).unwrap(),
        full.forward_pooled(short).unwrap(),
        tol,
    );
    assert_close(
        "UniCL text through the cut",
        c.model.encode_text(int(&c.io, "input_ids", &c.dev)).unwrap(),
        float(&c.io, "text_embeds", &c.dev),
        F32_TOL,
    );
}
