//! The recurrent layer, written once for both halves of gen: a whole-sequence LSTM / GRU / tanh-RNN
//! over `[B, T, F]` with optional per-sequence lengths, returning every hidden state and the final state.
//!
//! Parameters follow PyTorch's `nn.LSTM` / `nn.GRU` / `nn.RNN` (names `weight_ih_l{k}`, `weight_hh_l{k}`,
//! `bias_ih_l{k}`, `bias_hh_l{k}`; gate order i,f,g,o for LSTM and r,z,n for GRU), so checkpoints load there.
//!
//! Two implementations compute the same function:
//! - `reference`: plain candle ops, one small step at a time. Runs on every device (CUDA uses it) and is
//!   the ground truth the fused path is tested against.
//! - `fused`: a CPU `CustomOp` that runs the whole sequence with hand-written backward through time.

mod buffers;
pub mod fused;
mod kernels;
pub mod reference;
mod step_gemm;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Cell {
    Lstm,
    Gru,
    /// Elman RNN with tanh.
    Rnn,
}

impl Cell {
    /// Rows of the stacked gate matrices per hidden unit.
    pub fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
            Cell::Rnn => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Cell::Lstm => "lstm",
            Cell::Gru => "gru",
            Cell::Rnn => "rnn",
        }
    }
}

/// Which implementation runs the sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// Fused on CPU, reference elsewhere.
    #[default]
    Auto,
    Fused,
    Reference,
}

/// Hidden state between windows: `h` is `[B, H]`; `c` (LSTM only) is `[B, H]`.
#[derive(Clone, Debug)]
pub struct State {
    pub h: Tensor,
    pub c: Option<Tensor>,
}

impl State {
    pub fn detach(&self) -> State {
        State { h: self.h.detach(), c: self.c.as_ref().map(|c| c.detach()) }
    }
}

/// Per-step control of a batch of sequences `[B, T, …]`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Steps<'a> {
    /// Sequence `b` stops after `lengths[b]` steps (variable-length inputs).
    pub lengths: Option<&'a [usize]>,
    /// `resets[b·T + t]`: sequence `b` restarts from the zero state before step `t`, as at a document
    /// boundary in a stream of concatenated documents. No gradient flows back across a reset.
    pub resets: Option<&'a [bool]>,
}

/// One recurrent layer: the same weights at every time step.
#[derive(Clone, Debug)]
pub struct Recurrent {
    pub cell: Cell,
    pub input_size: usize,
    pub hidden_size: usize,
    /// `[G·H, F]`
    pub w_ih: Tensor,
    /// `[G·H, H]`
    pub w_hh: Tensor,
    /// `[G·H]`
    pub b_ih: Tensor,
    /// `[G·H]`
    pub b_hh: Tensor,
}

impl Recurrent {
    /// Layer `layer` of a stack, initialised like PyTorch: U(−1/√H, 1/√H) for every parameter.
    pub fn new(vb: VarBuilder, cell: Cell, input_size: usize, hidden_size: usize, layer: usize) -> Result<Self> {
        let g = cell.gates() * hidden_size;
        let k = 1.0 / (hidden_size as f64).sqrt();
        let init = candle_nn::Init::Uniform { lo: -k, up: k };
        Ok(Self {
            cell,
            input_size,
            hidden_size,
            w_ih: vb.get_with_hints((g, input_size), &format!("weight_ih_l{layer}"), init)?,
            w_hh: vb.get_with_hints((g, hidden_size), &format!("weight_hh_l{layer}"), init)?,
            b_ih: vb.get_with_hints(g, &format!("bias_ih_l{layer}"), init)?,
            b_hh: vb.get_with_hints(g, &format!("bias_hh_l{layer}"), init)?,
        })
    }

    pub fn zero_state(&self, batch: usize, device: &Device) -> Result<State> {
        let h = Tensor::zeros((batch, self.hidden_size), DType::F32, device)?;
        let c = (self.cell == Cell::Lstm).then(|| h.clone());
        Ok(State { h, c })
    }

    /// Runs the whole sequence `x: [B, T, F]` from `state` (zeros when `None`).
    ///
    /// With `lengths`, sequence `b` stops after `lengths[b]` steps: its outputs past that are zero and
    /// its final state is the one after its own last step, so padding never leaks into results.
    /// Returns all hidden states `[B, T, H]` and the final state.
    pub fn forward(&self, x: &Tensor, state: Option<&State>, lengths: Option<&[usize]>) -> Result<(Tensor, State)> {
        self.forward_with(Backend::Auto, x, state, Steps { lengths, resets: None })
    }

    pub fn forward_with(&self, backend: Backend, x: &Tensor, state: Option<&State>, steps: Steps) -> Result<(Tensor, State)> {
        let (b, t, f) = x.dims3()?;
        if f != self.input_size {
            candle_core::bail!("recurrent layer expects {} input features, got {f}", self.input_size);
        }
        if let Some(l) = steps.lengths {
            if l.len() != b || l.iter().any(|&n| n > t) {
                candle_core::bail!("lengths must give one value ≤ {t} per sequence ({b} sequences)");
            }
        }
        if steps.resets.is_some_and(|r| r.len() != b * t) {
            candle_core::bail!("resets must give one flag per step ({b}×{t})");
        }
        let zero;
        let state = match state {
            Some(s) => s,
            None => {
                zero = self.zero_state(b, x.device())?;
                &zero
            }
        };
        match backend {
            Backend::Reference => reference::forward(self, x, state, steps),
            Backend::Fused => fused::forward(self, x, state, steps),
            Backend::Auto if fused::supported(self, x, state) => fused::forward(self, x, state, steps),
            Backend::Auto => reference::forward(self, x, state, steps),
        }
    }

    /// One step for generation: `x_t: [B, F]` → new state. No gradients needed.
    pub fn step(&self, x_t: &Tensor, state: &State) -> Result<State> {
        reference::step(self, x_t, state, None)
    }
}
