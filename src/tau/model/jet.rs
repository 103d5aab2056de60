//! `jet`: the lecture's "reduced scale" regression, an MLP on the jet-level quantities
//! (log vis_pt, vis_mass) only; it never sees the particles.

use super::{Mlp, Regressor};
use crate::tau::dataset::{Batch, NG};
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

pub struct Jet {
    mlp: Mlp,
}

impl Jet {
    pub fn new(vb: VarBuilder, hidden: usize) -> Result<Self> {
        Ok(Self { mlp: Mlp::new(vb.pp("mlp"), &[NG, hidden, hidden, 1])? })
    }
}

impl Regressor for Jet {
    fn forward(&self, b: &Batch) -> Result<Tensor> {
        self.mlp.forward(&b.globals)?.squeeze(1)
    }
}
