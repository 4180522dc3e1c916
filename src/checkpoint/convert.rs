//! Pure conversions between checkpoint layouts, applied to tensor data before the strict
//! loader matches keys (see [`super::loader::Layout::rename`]). Each is a function of the data
//! alone, unit-tested against the reference formula it restates.

use burn::prelude::*;

use crate::error::{FlorenceError, Result};

fn f32s(data: &TensorData) -> Result<Vec<f32>> {
    data.clone()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| FlorenceError::Input(format!("cannot read tensor data: {e:?}")))
}

/// Splits a tensor into `parts` equal blocks along its first axis (`nn.MultiheadAttention`'s
/// packed `in_proj_bias [3E]` into the q, k and v biases of separate projections, or a packed
/// `in_proj_weight [3E, E]` into three `[E, E]`).
pub fn split_first_axis(data: &TensorData, parts: usize) -> Result<Vec<TensorData>> {
    let shape = data.shape().to_vec();
    let Some(&rows) = shape.first() else {
        return Err(FlorenceError::Input("cannot split a scalar".into()));
    };
    if parts == 0 || rows % parts != 0 {
        return Err(FlorenceError::Input(format!("cannot split {rows} rows into {parts} equal parts")));
    }
    let values = f32s(data)?;
    let per = values.len() / parts;
    let mut part_shape = shape;
    part_shape[0] = rows / parts;
    Ok(values.chunks(per.max(1)).take(parts).map(|c| TensorData::new(c.to_vec(), part_shape.clone())).collect())
}

/// Inflates a 2D patch-embedding kernel `[O, I, kh, kw]` to 3D `[O, I, t, kh, kw]` by repeating
/// it `t` times along the new axis and dividing by `t`, so a video of identical frames gives the
/// 2D response (Video Swin's `inflate_weights`: `w.unsqueeze(2).repeat(1, 1, t, 1, 1) / t`).
pub fn inflate_conv_2d_to_3d(weight: &TensorData, t: usize) -> Result<TensorData> {
    let [o, i, kh, kw] = <[usize; 4]>::try_from(weight.shape().to_vec())
        .map_err(|s| FlorenceError::Input(format!("a 2D kernel is [O, I, kh, kw], got {s:?}")))?;
    if t == 0 {
        return Err(FlorenceError::Input("the temporal kernel size must be at least 1".into()));
    }
    let w = f32s(weight)?;
    let plane = kh * kw;
    let mut out = Vec::with_capacity(w.len() * t);
    for oi in w.chunks(plane) {
        for _ in 0..t {
            out.extend(oi.iter().map(|v| v / t as f32));
        }
    }
    Ok(TensorData::new(out, [o, i, t, kh, kw]))
}

/// Inflates a 2D relative-position-bias table `[(2wh-1)(2ww-1), heads]` to a 3D window of
/// temporal size `wd` by tiling it `2wd - 1` times along the table's (outermost) temporal digit
/// (Video Swin's `inflate_weights`: `table.repeat(2 * wd - 1, 1)`): every temporal offset starts
/// from the 2D bias. Tables of another 2D window need resizing first, which is not done here.
pub fn inflate_bias_table_2d_to_3d(table: &TensorData, window_2d: (usize, usize), wd: usize) -> Result<TensorData> {
    let [rows, heads] = <[usize; 2]>::try_from(table.shape().to_vec())
        .map_err(|s| FlorenceError::Input(format!("a bias table is [rows, heads], got {s:?}")))?;
    let want = (2 * window_2d.0 - 1) * (2 * window_2d.1 - 1);
    if rows != want {
        return Err(FlorenceError::Input(format!(
            "the 2D table has {rows} rows but a {}x{} window needs {want}; resize it (bicubic, as Video Swin does) first",
            window_2d.0, window_2d.1
        )));
    }
    if wd == 0 {
        return Err(FlorenceError::Input("the temporal window must be at least 1".into()));
    }
    let t = f32s(table)?;
    let reps = 2 * wd - 1;
    Ok(TensorData::new(t.repeat(reps), [rows * reps, heads]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::geometry::{relative_position_index, relative_table_size};

    #[test]
    fn split_packed_bias_and_weight() {
        let bias = TensorData::new((0..6).map(|v| v as f32).collect::<Vec<_>>(), [6]);
        let parts = split_first_axis(&bias, 3).unwrap();
        assert_eq!(parts[1].clone().try_into_vec::<f32>().unwrap(), vec![2.0, 3.0]);
        let w = TensorData::new((0..12).map(|v| v as f32).collect::<Vec<_>>(), [6, 2]);
        let parts = split_first_axis(&w, 3).unwrap();
        assert_eq!(parts[2].shape().to_vec(), vec![2, 2]);
        assert_eq!(parts[2].clone().try_into_vec::<f32>().unwrap(), vec![8.0, 9.0, 10.0, 11.0]);
        assert!(split_first_axis(&w, 4).is_err());
    }

    #[test]
    fn inflated_kernel_sums_back_to_the_2d_one() {
        let w = TensorData::new((0..2 * 3 * 4).map(|v| v as f32).collect::<Vec<_>>(), [1, 2, 3, 4]);
        let w3 = inflate_conv_2d_to_3d(&w, 2).unwrap();
        assert_eq!(w3.shape().to_vec(), vec![1, 2, 2, 3, 4]);
        let v = w3.clone().try_into_vec::<f32>().unwrap();
        // [o=0, i=1, t, 0, 1] for t = 0, 1: half of w[0, 1, 0, 1] = 13 each.
        assert_eq!((v[12 * 2 + 1], v[12 * 2 + 12 + 1]), (6.5, 6.5));
        assert!(inflate_conv_2d_to_3d(&TensorData::new(vec![1.0f32], [1]), 2).is_err());
    }

    #[test]
    fn inflated_table_gives_every_frame_offset_the_2d_bias() {
        let (wh, ww, wd, heads) = (2, 3, 2, 2);
        let rows = relative_table_size([wh, ww]);
        let t2: Vec<f32> = (0..rows * heads).map(|v| v as f32).collect();
        let t3 = inflate_bias_table_2d_to_3d(&TensorData::new(t2.clone(), [rows, heads]), (wh, ww), wd).unwrap();
        assert_eq!(t3.shape().to_vec(), vec![relative_table_size([wd, wh, ww]), heads]);
        let t3 = t3.clone().try_into_vec::<f32>().unwrap();
        // Token pairs of the 3D window read, at any temporal offset, the 2D entry of their
        // spatial offset.
        let (i2, i3) = (relative_position_index([wh, ww]), relative_position_index([wd, wh, ww]));
        let n2 = wh * ww;
        for p in 0..wd * n2 {
            for q in 0..wd * n2 {
                let spatial = i2[(p % n2) * n2 + (q % n2)] as usize;
                let row = i3[p * wd * n2 + q] as usize;
                assert_eq!(t3[row * heads..row * heads + heads], t2[spatial * heads..spatial * heads + heads]);
            }
        }
        assert!(inflate_bias_table_2d_to_3d(&TensorData::new(t2, [rows, heads]), (3, 3), wd).is_err());
    }
}
