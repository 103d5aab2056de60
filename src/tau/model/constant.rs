//! `const`: one learned number for every tau — the baseline any regression must beat.

use super::Regressor;
use crate::tau::dataset::Batch;
use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

pub struct Constant {
    value: Tensor,
}

impl Constant {
    pub fn new(vb: VarBuilder) -> Result<Self> {
        // The standardised target has mean 0: start there.
        Ok(Self { value: vb.get_with_hints(1, "value", Init::Const(0.0))? })
    }
}

impl Regressor for Constant {
    fn forward(&self, b: &Batch) -> Result<Tensor> {
        self.value.broadcast_as(b.lengths.len())?.contiguous()
    }
}
