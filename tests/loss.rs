//! The UniCL loss and its gradients against the PyTorch reference
//! (`scripts/reference/make_loss_fixtures.py`): random features, repeated labels, and the
//! all-distinct case where it must equal twice CLIP's loss.

mod common;

use burn::prelude::*;
use common::{F32_TOL, assert_close, device, load_fixture};
use florence::train::unicl_loss;

fn normalize(x: Tensor<2>) -> Tensor<2> {
    let n = x.clone().powi_scalar(2).sum_dim(1).sqrt();
    x / n
}

#[test]
fn loss_and_gradients_match_reference() {
    let io = load_fixture("unicl_loss.safetensors");
    let device = device().autodiff();
    for case in ["repeated", "distinct"] {
        let f = |k: &str| io[&format!("{case}.{k}")].clone().convert::<f32>();
        let labels: Vec<u64> = io[&format!("{case}.labels")]
            .clone()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .unwrap()
            .iter()
            .map(|&x| x as u64)
            .collect();
        let img = Tensor::<2>::from_data(f("img"), &device).require_grad();
        let txt = Tensor::<2>::from_data(f("txt"), &device).require_grad();
        let scale = Tensor::<1>::from_data(TensorData::new(vec![2.6592f32], [1]), &device).require_grad();
        let loss = unicl_loss(normalize(img.clone()), normalize(txt.clone()), scale.clone(), &labels, None).unwrap();

        let plain = |t: Tensor<1>| Tensor::<1>::from_data(t.into_data(), &common::device());
        let cpu = common::device();
        assert_close(
            &format!("{case}: L_i2t"),
            plain(loss.image_to_text.clone()),
            Tensor::from_data(f("i2t"), &cpu),
            F32_TOL,
        );
        assert_close(
            &format!("{case}: L_t2i"),
            plain(loss.text_to_image.clone()),
            Tensor::from_data(f("t2i"), &cpu),
            F32_TOL,
        );
        assert_close(&format!("{case}: loss"), plain(loss.total.clone()), Tensor::from_data(f("loss"), &cpu), F32_TOL);
        if case == "distinct" {
            let clip: Tensor<1> = Tensor::from_data(f("clip_loss"), &cpu);
            assert_close("distinct labels: 2 x CLIP loss", plain(loss.total.clone()), clip * 2.0, F32_TOL);
        }

        let grads = loss.total.backward();
        let g = |t: &Tensor<2>| Tensor::<2>::from_data(t.grad(&grads).expect("gradient").into_data(), &cpu);
        assert_close(&format!("{case}: d/d image features"), g(&img), Tensor::from_data(f("grad_img"), &cpu), F32_TOL);
        assert_close(&format!("{case}: d/d text features"), g(&txt), Tensor::from_data(f("grad_txt"), &cpu), F32_TOL);
        let gs = Tensor::<1>::from_data(scale.grad(&grads).expect("gradient").into_data(), &cpu);
        assert_close(&format!("{case}: d/d logit_scale"), gs, Tensor::from_data(f("grad_scale"), &cpu), F32_TOL);
    }
}

#[test]
fn clamp_and_bad_inputs() {
    let device = device();
    let u = normalize(Tensor::<2>::ones([3, 4], &device));
    let s = Tensor::<1>::from_data(TensorData::new(vec![10.0f32], [1]), &device);
    // Identical embeddings: every logit equals the scale, so each direction is ln(3)... minus
    // the positives' share: with all labels distinct, L = 2 ln 3 whatever the scale.
    let l = unicl_loss(u.clone(), u.clone(), s.clone(), &[0, 1, 2], Some(100.0)).unwrap();
    assert!((l.total.into_scalar::<f32>() - 2.0 * 3f32.ln()).abs() < 1e-5);
    // All one label: every pair is a positive, the targets are uniform, the loss is again 2 ln 3.
    let l = unicl_loss(u.clone(), u.clone(), s.clone(), &[7, 7, 7], None).unwrap();
    assert!((l.total.into_scalar::<f32>() - 2.0 * 3f32.ln()).abs() < 1e-5);
    assert!(unicl_loss(u.clone(), u.clone(), s.clone(), &[0, 1], None).is_err());
    assert!(unicl_loss(u.clone(), Tensor::ones([2, 4], &device), s, &[0, 1, 2], None).is_err());
}
