//! AdamW (Loshchilov & Hutter) with state we own, so a checkpoint can hold the moments and a resumed
//! run continues exactly (candle's `AdamW` keeps them private). Gradient-norm clipping lives here too:
//! it needs every gradient before any update.

use candle_core::{backprop::GradStore, DType, Result, Tensor, Var};
use std::collections::HashMap;

#[derive(Clone, Debug)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.01 }
    }
}

struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
    /// Decoupled weight decay applies to matrices only, not to biases and norm gains (as nanoGPT).
    decay: bool,
}

pub struct AdamW {
    cfg: AdamWConfig,
    slots: Vec<Slot>,
    /// Updates applied so far (for bias correction).
    pub t: u64,
}

/// What one optimizer step saw.
#[derive(Clone, Copy, Debug)]
pub struct StepInfo {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

impl AdamW {
    /// `named` in a fixed order (sorted by name), so state files are stable.
    pub fn new(mut named: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = named
            .into_iter()
            .map(|(name, var)| {
                let m = var.zeros_like()?;
                let v = var.zeros_like()?;
                let decay = var.rank() >= 2;
                Ok(Slot { name, var, m, v, decay })
            })
            .collect::<Result<_>>()?;
        Ok(Self { cfg, slots, t: 0 })
    }

    /// Global L2 norm of the gradients (missing gradients count as zero).
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut sq = 0f64;
        for s in &self.slots {
            if let Some(g) = grads.get(s.var.as_tensor()) {
                sq += g.sqr()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            }
        }
        Ok(sq.sqrt())
    }

    /// Clips the global gradient norm to `clip` (if > 0) and applies one AdamW update at `lr`.
    pub fn step(&mut self, grads: &GradStore, lr: f64, clip: f64) -> Result<StepInfo> {
        let grad_norm = self.grad_norm(grads)?;
        let scale = if clip > 0.0 && grad_norm > clip { clip / grad_norm } else { 1.0 };
        self.t += 1;
        let AdamWConfig { beta1: b1, beta2: b2, eps, weight_decay } = self.cfg;
        let bc1 = 1.0 - b1.powi(self.t as i32);
        let bc2 = 1.0 - b2.powi(self.t as i32);
        for s in &mut self.slots {
            let Some(g) = grads.get(s.var.as_tensor()) else { continue };
            let g = if scale != 1.0 { (g * scale)? } else { g.clone() };
            s.m = ((&s.m * b1)? + (&g * (1.0 - b1))?)?;
            s.v = ((&s.v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let update = ((&s.m / bc1)? / ((&s.v / bc2)?.sqrt()? + eps)?)?;
            let mut theta = s.var.as_tensor().clone();
            if s.decay && weight_decay > 0.0 {
                theta = (theta * (1.0 - lr * weight_decay))?;
            }
            s.var.set(&(theta - (update * lr)?)?)?;
        }
        Ok(StepInfo { grad_norm })
    }

    /// Moments as named tensors (`m.<param>`, `v.<param>`) for `optimizer.safetensors`.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for s in &self.slots {
            out.insert(format!("m.{}", s.name), s.m.clone());
            out.insert(format!("v.{}", s.name), s.v.clone());
        }
        out
    }

    /// Restores moments saved by `state_tensors`; every parameter must be present with its shape.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, t: u64) -> anyhow::Result<()> {
        for s in &mut self.slots {
            for (key, slot) in [(format!("m.{}", s.name), &mut s.m), (format!("v.{}", s.name), &mut s.v)] {
                let x = tensors
                    .get(&key)
                    .ok_or_else(|| anyhow::anyhow!("optimizer state has no {key}: it belongs to another model"))?;
                if x.dims() != slot.dims() {
                    anyhow::bail!("optimizer state {key} has shape {:?}, the model needs {:?}", x.dims(), slot.dims());
                }
                *slot = x.to_device(slot.device())?.to_dtype(slot.dtype())?;
            }
        }
        self.t = t;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn minimizes_a_quadratic_and_clips() -> Result<()> {
        let dev = Device::Cpu;
        let w = Var::from_vec(vec![3f32, -2.0], (1, 2), &dev)?;
        let mut opt = AdamW::new(vec![("w".into(), w.clone())], AdamWConfig { weight_decay: 0.0, ..Default::default() })?;
        for _ in 0..500 {
            let loss = w.as_tensor().sqr()?.sum_all()?;
            let grads = loss.backward()?;
            opt.step(&grads, 0.05, 1.0)?;
        }
        let v: Vec<f32> = w.as_tensor().flatten_all()?.to_vec1()?;
        assert!(v.iter().all(|x| x.abs() < 1e-2), "{v:?}");
        Ok(())
    }
}
