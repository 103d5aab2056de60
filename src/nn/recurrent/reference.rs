//! The op-level recurrent layer: plain candle ops, one step at a time.
//!
//! It runs on any device and defines the function the fused CPU kernels must match. The input
//! projection is done per step on the `[B, F]` slice rather than on one `[B, T, G·H]` tensor: candle's
//! `narrow` backward writes a full-size gradient, so slicing the large projection would make the
//! backward pass O(T²·G·H); slicing the small input keeps it to O(T²·F).

use super::{Cell, Recurrent, State, Steps};
use candle_core::{Result, Tensor, D};

fn sigmoid(x: &Tensor) -> Result<Tensor> {
    // 1 / (1 + e^-x) from differentiable primitives.
    (x.neg()?.exp()? + 1.0)?.recip()
}

/// One step of the cell; `mask: [B, 1]` (1 = active) freezes finished sequences.
pub fn step(layer: &Recurrent, x_t: &Tensor, state: &State, mask: Option<&Tensor>) -> Result<State> {
    let h = &state.h;
    let gi = x_t.broadcast_matmul(&layer.w_ih.t()?)?.broadcast_add(&layer.b_ih)?;
    let gh = h.matmul(&layer.w_hh.t()?)?.broadcast_add(&layer.b_hh)?;
    let hs = layer.hidden_size;
    let new = match layer.cell {
        Cell::Lstm => {
            let gates = (gi + gh)?;
            let i = sigmoid(&gates.narrow(D::Minus1, 0, hs)?)?;
            let f = sigmoid(&gates.narrow(D::Minus1, hs, hs)?)?;
            let g = gates.narrow(D::Minus1, 2 * hs, hs)?.tanh()?;
            let o = sigmoid(&gates.narrow(D::Minus1, 3 * hs, hs)?)?;
            let c_prev = state.c.as_ref().expect("LSTM state carries c");
            let c = ((f * c_prev)? + (i * g)?)?;
            let h = (o * c.tanh()?)?;
            State { h, c: Some(c) }
        }
        Cell::Gru => {
            let r = sigmoid(&(gi.narrow(D::Minus1, 0, hs)? + gh.narrow(D::Minus1, 0, hs)?)?)?;
            let z = sigmoid(&(gi.narrow(D::Minus1, hs, hs)? + gh.narrow(D::Minus1, hs, hs)?)?)?;
            let n = (gi.narrow(D::Minus1, 2 * hs, hs)? + (r * gh.narrow(D::Minus1, 2 * hs, hs)?)?)?.tanh()?;
            // h' = (1 − z)·n + z·h = n + z·(h − n)
            let h = (&n + (z * (h - &n)?)?)?;
            State { h, c: None }
        }
        Cell::Rnn => State { h: (gi + gh)?.tanh()?, c: None },
    };
    let Some(m) = mask else { return Ok(new) };
    let keep = |new: &Tensor, old: &Tensor| -> Result<Tensor> { old + m.broadcast_mul(&(new - old)?)? };
    Ok(State {
        h: keep(&new.h, &state.h)?,
        c: match (&new.c, &state.c) {
            (Some(n), Some(o)) => Some(keep(n, o)?),
            _ => None,
        },
    })
}

pub fn forward(layer: &Recurrent, x: &Tensor, state: &State, steps: Steps) -> Result<(Tensor, State)> {
    let (b, t, _) = x.dims3()?;
    // A `[B, 1]` column per step, 1.0 where `pick(b, step)` holds.
    let columns = |pick: &dyn Fn(usize, usize) -> bool| -> Result<Vec<Tensor>> {
        (0..t)
            .map(|s| {
                let m: Vec<f32> = (0..b).map(|i| if pick(i, s) { 1.0 } else { 0.0 }).collect();
                Tensor::from_vec(m, (b, 1), x.device())
            })
            .collect()
    };
    let masks = steps.lengths.map(|l| columns(&|i, s| s < l[i])).transpose()?;
    let keeps = steps.resets.map(|r| columns(&|i, s| !r[i * t + s])).transpose()?;
    let mut state = state.clone();
    let mut outputs = Vec::with_capacity(t);
    for s in 0..t {
        if let Some(k) = &keeps {
            let cut = |v: &Tensor| v.broadcast_mul(&k[s]);
            state = State { h: cut(&state.h)?, c: state.c.as_ref().map(cut).transpose()? };
        }
        let x_t = x.narrow(1, s, 1)?.squeeze(1)?;
        let mask = masks.as_ref().map(|m| &m[s]);
        state = step(layer, &x_t, &state, mask)?;
        outputs.push(match mask {
            Some(m) => state.h.broadcast_mul(m)?,
            None => state.h.clone(),
        });
    }
    Ok((Tensor::stack(&outputs, 1)?, state))
}
