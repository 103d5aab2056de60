//! Mean cross-entropy of logits `[N, V]` against target ids, fused into one CPU pass (log-softmax,
//! pick, mean) with the softmax kept for an exact one-pass backward: dlogits = (softmax − onehot)/N.
//! candle's op-level version makes six passes forward and as many backward; on the small-hidden
//! recipe models the loss is a fifth of the step. Other devices use the op-level version.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use std::sync::Mutex;

struct CrossEntropy {
    targets: Vec<u32>,
    /// softmax(logits), filled by the forward pass for the backward pass.
    probs: Mutex<Vec<f32>>,
}

/// Mean −log softmax(logits)[target] over rows; differentiable with respect to `logits`.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if !logits.device().is_cpu() || logits.dtype() != candle_core::DType::F32 {
        return candle_nn::loss::cross_entropy(logits, targets);
    }
    let targets = targets.flatten_all()?.to_vec1::<u32>()?;
    logits.apply_op1(CrossEntropy { targets, probs: Mutex::new(Vec::new()) })
}

impl CustomOp1 for CrossEntropy {
    fn name(&self) -> &'static str {
        "fused-cross-entropy"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, v) = layout.shape().dims2()?;
        if n != self.targets.len() {
            candle_core::bail!("cross_entropy: {n} rows but {} targets", self.targets.len());
        }
        let CpuStorage::F32(data) = storage else { candle_core::bail!("cross_entropy: f32 logits only") };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("cross_entropy: logits must be contiguous")
        };
        let data = &data[start..end];
        let mut probs = vec![0f32; n * v];
        let mut total = 0f64;
        for (r, (row, p)) in data.chunks_exact(v).zip(probs.chunks_exact_mut(v)).enumerate() {
            let t = self.targets[r] as usize;
            if t >= v {
                candle_core::bail!("cross_entropy: target {t} outside the vocabulary of {v}");
            }
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for (pi, &x) in p.iter_mut().zip(row) {
                *pi = (x - max).exp();
                sum += *pi;
            }
            let inv = 1.0 / sum;
            p.iter_mut().for_each(|pi| *pi *= inv);
            total += (sum.ln() + max - row[t]) as f64;
        }
        *self.probs.lock().unwrap() = probs;
        Ok((CpuStorage::F32(vec![(total / n as f64) as f32]), Shape::from(())))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (n, v) = arg.dims2()?;
        let g = grad_res.to_scalar::<f32>()? / n as f32;
        let mut d = self.probs.lock().unwrap().clone();
        for (r, &t) in self.targets.iter().enumerate() {
            d[r * v + t as usize] -= 1.0;
        }
        d.iter_mut().for_each(|x| *x *= g);
        Ok(Some(Tensor::from_vec(d, (n, v), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_candle_value_and_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let vals: Vec<f32> = (0..5 * 7).map(|i| ((i * 31 % 17) as f32 - 8.0) / 3.0).collect();
        let x = Var::from_vec(vals, (5, 7), &dev)?;
        let y = Tensor::new(&[0u32, 6, 3, 3, 1], &dev)?;
        let a = cross_entropy(x.as_tensor(), &y)?;
        let b = candle_nn::loss::cross_entropy(x.as_tensor(), &y)?;
        assert!((a.to_scalar::<f32>()? - b.to_scalar::<f32>()?).abs() < 1e-6);
        let ga = a.backward()?.get(x.as_tensor()).unwrap().flatten_all()?.to_vec1::<f32>()?;
        let gb = b.backward()?.get(x.as_tensor()).unwrap().flatten_all()?.to_vec1::<f32>()?;
        for (p, q) in ga.iter().zip(&gb) {
            assert!((p - q).abs() < 1e-6, "{p} vs {q}");
        }
        Ok(())
    }
}
