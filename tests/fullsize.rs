//! Full-size check: a random-weight `unicl-swin-t` (about 91M parameters, fp16 `.pth` in the
//! released layout) against PyTorch. Not committed (about 180 MB); generate it first:
//!
//! ```sh
//! python scripts/reference/make_fixtures.py --fullsize fullsize
//! cargo test --release --test fullsize -- --ignored
//! ```

mod common;

use std::path::PathBuf;

use burn::prelude::*;
use burn::store::{ModuleStore, SafetensorsStore, bridge};
use common::*;
use florence::{Florence, FlorenceConfig};

#[test]
#[ignore = "needs the generated full-size checkpoint (see the module docs)"]
fn unicl_swin_t_random_weights_match_pytorch() {
    let dir = std::env::var("FLORENCE_FULLSIZE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fullsize"));
    let dev = device();
    let config = FlorenceConfig::preset("unicl-swin-t").unwrap();
    let model = Florence::load(&config, dir.join("unicl_swin_t_random_fp16.pth"), &dev).unwrap();
    let mut store = SafetensorsStore::from_file(dir.join("unicl_swin_t_random_io.safetensors"));
    let io: std::collections::BTreeMap<String, TensorData> =
        store.get_all_tensors().unwrap().iter().map(|(k, t)| (k.clone(), bridge::to_data(t).unwrap())).collect();
    let images: Tensor<4> = float(&io, "images", &dev);
    let ids: Tensor<2, Int> = int(&io, "input_ids", &dev);
    assert_close(
        "full-size image embeddings",
        model.encode_image(images.clone()).unwrap(),
        float(&io, "image_embeds", &dev),
        F32_TOL,
    );
    assert_close(
        "full-size text embeddings",
        model.encode_text(ids.clone()).unwrap(),
        float(&io, "text_embeds", &dev),
        F32_TOL,
    );
    let logits = model.logits(images, ids).unwrap();
    let scale = model.scale_value();
    assert_close("full-size logits", logits.per_image, float(&io, "logits_per_image", &dev), scale * F32_TOL);
}
