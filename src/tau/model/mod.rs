//! The four tau_pt regressions, trained and reported side by side. Each predicts the standardised
//! target log(tau_pt / vis_pt) for a `Batch`:
//! - `const`: one learned number (the best single scale);
//! - `jet`: an MLP on (log vis_pt, vis_mass) — the lecture's "reduced scale" NN(pT_jet);
//! - `deepsets`: an order-invariant per-particle MLP, sum and mean pooling, then an MLP;
//! - `rnn`: the shared recurrent layer reading the particles hardest first, the same weights at
//!   every step; its state after each tau's own last particle and (log vis_pt, vis_mass) feed an MLP.

pub mod constant;
pub mod deepsets;
pub mod jet;
pub mod rnn;

use crate::nn::recurrent::Cell;
use crate::tau::dataset::Batch;
use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Const,
    Jet,
    #[value(name = "deepsets")]
    DeepSets,
    Rnn,
}

impl Arch {
    pub const ALL: [Arch; 4] = [Arch::Const, Arch::Jet, Arch::DeepSets, Arch::Rnn];

    pub fn name(self) -> &'static str {
        match self {
            Arch::Const => "const",
            Arch::Jet => "jet",
            Arch::DeepSets => "deepsets",
            Arch::Rnn => "rnn",
        }
    }
}

/// Everything needed to rebuild a model's parameters (saved in the checkpoint's config.json).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub arch: Arch,
    /// Width of every hidden layer (and of the recurrent state).
    pub hidden: usize,
    /// Recurrent cell (used by `rnn` only).
    pub cell: Cell,
}

pub trait Regressor {
    /// Standardised log(tau_pt/vis_pt) for each tau of the batch: `[B]`.
    fn forward(&self, b: &Batch) -> Result<Tensor>;
}

/// Builds `spec` with parameters from `vb` (fresh and seeded, or to be overwritten by a checkpoint).
pub fn build(spec: &ModelSpec, vb: VarBuilder) -> Result<Box<dyn Regressor>> {
    let h = spec.hidden;
    Ok(match spec.arch {
        Arch::Const => Box::new(constant::Constant::new(vb)?),
        Arch::Jet => Box::new(jet::Jet::new(vb, h)?),
        Arch::DeepSets => Box::new(deepsets::DeepSets::new(vb, h)?),
        Arch::Rnn => Box::new(rnn::Rnn::new(vb, spec.cell, h)?),
    })
}

/// Dense layers with SiLU between them (none after the last).
pub struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    /// `sizes`: input, hidden…, output.
    pub fn new(vb: VarBuilder, sizes: &[usize]) -> Result<Mlp> {
        let layers = sizes.windows(2).enumerate().map(|(i, w)| candle_nn::linear(w[0], w[1], vb.pp(i.to_string()))).collect::<Result<_>>()?;
        Ok(Mlp { layers })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (i, l) in self.layers.iter().enumerate() {
            x = l.forward(&x)?;
            if i + 1 < self.layers.len() {
                x = x.silu()?;
            }
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tau::checkpoint::Trained;
    use crate::tau::dataset::{Encoded, Scaling};
    use crate::tau::generator::{generate, GenConfig};
    use candle_core::Device;

    fn batch() -> (crate::tau::dataset::Batch, Vec<usize>) {
        let taus = generate(&GenConfig::default(), 64, 9).unwrap();
        let s = Scaling::fit(&taus).unwrap();
        let e = Encoded::new(&taus, &s, "test").unwrap();
        let idx: Vec<usize> = (0..64).collect();
        (e.batch(&idx, &Device::Cpu).unwrap(), e.lengths.clone())
    }

    #[test]
    fn padding_never_changes_a_prediction() {
        let (b, lengths) = batch();
        // Mixed lengths, so some taus are padded inside the batch already.
        assert!(lengths.iter().min() < lengths.iter().max());
        for arch in Arch::ALL {
            for cell in [Cell::Gru, Cell::Lstm, Cell::Rnn] {
                let m = Trained::init(ModelSpec { arch, hidden: 8, cell }, 3, &Device::Cpu).unwrap();
                let want: Vec<f32> = m.model.forward(&b).unwrap().to_vec1().unwrap();
                // Three extra steps and every padded slot filled with garbage.
                let padded = b.padded(b.x.dim(1).unwrap() + 3, 7.5).unwrap();
                let got: Vec<f32> = m.model.forward(&padded).unwrap().to_vec1().unwrap();
                assert_eq!(want.len(), 64);
                for (w, g) in want.iter().zip(&got) {
                    assert!((w - g).abs() < 1e-5, "{arch:?} {cell:?}: {w} vs {g}");
                }
                if arch != Arch::Rnn {
                    break;
                }
            }
        }
    }

    #[test]
    fn the_rnn_reads_the_particles_in_order() {
        // Order matters to the RNN (it is not a set function): swapping two particles of a
        // multi-particle tau changes its prediction; deepsets is blind to the swap.
        let (b, lengths) = batch();
        let i = lengths.iter().position(|&l| l >= 2).unwrap();
        let x = b.x.get(i).unwrap();
        let swapped = Tensor::cat(&[x.narrow(0, 1, 1).unwrap(), x.narrow(0, 0, 1).unwrap(), x.narrow(0, 2, x.dim(0).unwrap() - 2).unwrap()], 0).unwrap();
        let one = |x: Tensor| crate::tau::dataset::Batch {
            x: x.unsqueeze(0).unwrap(),
            mask: b.mask.get(i).unwrap().unsqueeze(0).unwrap(),
            lengths: vec![lengths[i]],
            globals: b.globals.narrow(0, i, 1).unwrap(),
            y: b.y.narrow(0, i, 1).unwrap(),
        };
        let pred = |arch, x: &Tensor| -> f32 {
            let m = Trained::init(ModelSpec { arch, hidden: 8, cell: Cell::Gru }, 3, &Device::Cpu).unwrap();
            m.model.forward(&one(x.clone())).unwrap().to_vec1::<f32>().unwrap()[0]
        };
        assert!((pred(Arch::Rnn, &x) - pred(Arch::Rnn, &swapped)).abs() > 1e-6);
        assert!((pred(Arch::DeepSets, &x) - pred(Arch::DeepSets, &swapped)).abs() < 1e-5);
    }
}
