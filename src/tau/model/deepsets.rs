//! `deepsets`: the order-invariant alternative to the RNN. A per-particle MLP φ, pooled over each
//! tau's own particles by sum (which carries the multiplicity) and mean, then an MLP ρ on the
//! pooled vector and (log vis_pt, vis_mass).

use super::{Mlp, Regressor};
use crate::tau::dataset::{Batch, NF, NG};
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

pub struct DeepSets {
    phi: Mlp,
    rho: Mlp,
}

impl DeepSets {
    pub fn new(vb: VarBuilder, hidden: usize) -> Result<Self> {
        Ok(Self { phi: Mlp::new(vb.pp("phi"), &[NF, hidden, hidden])?, rho: Mlp::new(vb.pp("rho"), &[2 * hidden + NG, hidden, 1])? })
    }
}

impl Regressor for DeepSets {
    fn forward(&self, b: &Batch) -> Result<Tensor> {
        // φ on [B·T, F]: a plain matmul (the batched 3-D one is several times slower in backward).
        // φ of the padding is not zero (biases); the mask removes it before pooling.
        let (bs, t, f) = b.x.dims3()?;
        let h = self.phi.forward(&b.x.reshape((bs * t, f))?)?.silu()?;
        let h = h.reshape((bs, t, ()))?.broadcast_mul(&b.mask)?;
        let sum = h.sum(1)?;
        let count = b.mask.sum(1)?;
        let mean = sum.broadcast_div(&count)?;
        let z = Tensor::cat(&[&sum, &mean, &b.globals], 1)?;
        self.rho.forward(&z)?.squeeze(1)
    }
}
