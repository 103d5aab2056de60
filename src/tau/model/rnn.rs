//! `rnn`: the lecture's regression. The shared recurrent layer reads the particles hardest first
//! with the same weights at every step; its state after each tau's own last particle (the layer's
//! final state with lengths, so padding never enters) is concatenated with (log vis_pt, vis_mass)
//! and an MLP head gives the estimate. The jet quantities are given to the head directly so the
//! state only has to learn what the particle list adds.

use super::{Mlp, Regressor};
use crate::nn::recurrent::{Cell, Recurrent};
use crate::tau::dataset::{Batch, NF, NG};
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

pub struct Rnn {
    layer: Recurrent,
    head: Mlp,
}

impl Rnn {
    pub fn new(vb: VarBuilder, cell: Cell, hidden: usize) -> Result<Self> {
        Ok(Self { layer: Recurrent::new(vb.pp("rnn"), cell, NF, hidden, 0)?, head: Mlp::new(vb.pp("head"), &[hidden + NG, hidden, 1])? })
    }
}

impl Regressor for Rnn {
    fn forward(&self, b: &Batch) -> Result<Tensor> {
        let (_, last) = self.layer.forward(&b.x, None, Some(&b.lengths))?;
        let z = Tensor::cat(&[&last.h, &b.globals], 1)?;
        self.head.forward(&z)?.squeeze(1)
    }
}
