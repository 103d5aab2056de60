//! Training one regression: AdamW with clipping, warm-up then cosine over the epoch budget, Huber
//! loss on the standardised log(tau_pt/vis_pt), early stopping on the validation loss with the
//! best epoch's weights kept. Every model goes through this same loop.

use crate::nn::adamw::{AdamW, AdamWConfig};
use crate::nn::schedule::Schedule;
use crate::rng::Rng;
use crate::tau::dataset::Encoded;
use crate::tau::model::Regressor;
use anyhow::{bail, Result};
use candle_core::{Device, Tensor, Var};
use serde::Serialize;
use std::collections::HashMap;
use std::time::Instant;

/// Huber transition in log(r) units. The conditional distribution of r is skewed (neutrinos only
/// ever add): a quadratic loss would aim at the conditional mean, an L1 loss at the median, which
/// is what the IQR/median figure and a response of 1 want. 0.05 is below the ~0.1 conditional
/// width, so the loss is median-like where the data are, yet smooth enough to train fast.
pub const HUBER_DELTA_LOG: f64 = 0.05;

#[derive(Clone, Debug, Serialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    /// Stop after this many epochs without a better validation loss.
    pub patience: usize,
    pub weight_decay: f64,
    pub clip: f64,
    pub seed: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub seconds: f64,
    pub taus_per_s: f64,
    /// Training taus per CPU-second of this process (Linux): the speed on an idle core, which
    /// `taus_per_s` is not when other jobs share the machine.
    pub taus_per_cpu_s: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TrainResult {
    pub best_epoch: usize,
    pub best_val_loss: f64,
    pub epochs_run: usize,
    /// Training taus per second of training-step time, over all epochs.
    pub taus_per_s: f64,
    /// The same per CPU-second of this process (Linux only).
    pub taus_per_cpu_s: Option<f64>,
    pub seconds: f64,
    pub history: Vec<EpochLog>,
}

/// Mean Huber loss between standardised prediction and target; `delta` in standardised units.
pub fn huber(pred: &Tensor, y: &Tensor, delta: f64) -> candle_core::Result<Tensor> {
    // 0.5·min(a, δ)² + δ·(a − min(a, δ)): quadratic inside δ, linear outside, one expression.
    let a = (pred - y)?.abs()?;
    let q = a.clamp(0f32, delta as f32)?;
    ((q.sqr()? * 0.5)? + ((a - &q)? * delta)?)?.mean_all()
}

/// Standardised predictions for every tau of `data`.
pub fn predict(model: &dyn Regressor, data: &Encoded, device: &Device) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(data.n);
    let idx: Vec<usize> = (0..data.n).collect();
    for chunk in idx.chunks(8192) {
        let b = data.batch(chunk, device)?;
        out.extend(model.forward(&b)?.to_vec1::<f32>()?);
    }
    Ok(out)
}

fn mean_loss(model: &dyn Regressor, data: &Encoded, delta: f64, device: &Device) -> Result<f64> {
    let idx: Vec<usize> = (0..data.n).collect();
    let mut total = 0.0;
    for chunk in idx.chunks(8192) {
        let b = data.batch(chunk, device)?;
        let l = huber(&model.forward(&b)?, &b.y, delta)?.to_scalar::<f32>()? as f64;
        total += l * chunk.len() as f64;
    }
    Ok(total / data.n as f64)
}

/// CPU time (user + system) this process has used, from /proc (Linux; `None` elsewhere). Clock
/// ticks of /proc are USER_HZ, 100 on every Linux ABI.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn snapshot(vars: &[(String, Var)]) -> Result<HashMap<String, Tensor>> {
    vars.iter().map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?))).collect()
}

/// Trains `model` (whose parameters are `vars`) and leaves the best epoch's weights in `vars`.
/// `target_std` converts the Huber transition to standardised units; `log` gets one line per epoch.
pub fn fit(
    model: &dyn Regressor,
    vars: &[(String, Var)],
    train: &Encoded,
    val: &Encoded,
    target_std: f64,
    cfg: &TrainConfig,
    device: &Device,
    mut log: impl FnMut(&EpochLog),
) -> Result<TrainResult> {
    if cfg.batch == 0 || cfg.epochs == 0 {
        bail!("--batch and --epochs must be at least 1");
    }
    let delta = HUBER_DELTA_LOG / target_std;
    let mut opt = AdamW::new(vars.to_vec(), AdamWConfig { weight_decay: cfg.weight_decay, ..Default::default() })?;
    let steps_per_epoch = train.n.div_ceil(cfg.batch) as u64;
    let total = steps_per_epoch * cfg.epochs as u64;
    let schedule = Schedule { lr: cfg.lr, warmup: (total / 20).min(200), total: Some(total), min_ratio: 0.05 };
    let mut order: Vec<usize> = (0..train.n).collect();
    let (mut best, mut best_loss, mut best_epoch) = (snapshot(vars)?, f64::INFINITY, 0);
    let (mut history, mut step, mut train_time, mut train_cpu) = (Vec::new(), 0u64, 0.0, Some(0.0));
    let t_all = Instant::now();
    for epoch in 1..=cfg.epochs {
        let mut rng = Rng::derive(cfg.seed, epoch as u64);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let (t0, cpu0) = (Instant::now(), process_cpu_seconds());
        let mut sum = 0.0;
        for chunk in order.chunks(cfg.batch) {
            let b = train.batch(chunk, device)?;
            let loss = huber(&model.forward(&b)?, &b.y, delta)?;
            let grads = loss.backward()?;
            opt.step(&grads, schedule.at(step), cfg.clip)?;
            step += 1;
            sum += loss.to_scalar::<f32>()? as f64 * chunk.len() as f64;
        }
        let seconds = t0.elapsed().as_secs_f64();
        let cpu = process_cpu_seconds().zip(cpu0).map(|(b, a)| b - a);
        train_time += seconds;
        train_cpu = train_cpu.zip(cpu).map(|(a, b)| a + b);
        let train_loss = sum / train.n as f64;
        if !train_loss.is_finite() {
            bail!("training diverged (loss {train_loss}) in epoch {epoch}: lower --lr (now {})", cfg.lr);
        }
        let val_loss = mean_loss(model, val, delta, device)?;
        let e = EpochLog { epoch, train_loss, val_loss, seconds, taus_per_s: train.n as f64 / seconds, taus_per_cpu_s: cpu.filter(|&c| c > 0.0).map(|c| train.n as f64 / c) };
        log(&e);
        history.push(e);
        if val_loss < best_loss {
            (best, best_loss, best_epoch) = (snapshot(vars)?, val_loss, epoch);
        } else if epoch - best_epoch >= cfg.patience {
            break;
        }
    }
    for (k, v) in vars {
        v.set(&best[k])?;
    }
    Ok(TrainResult {
        best_epoch,
        best_val_loss: best_loss,
        epochs_run: history.len(),
        taus_per_s: (history.len() * train.n) as f64 / train_time,
        taus_per_cpu_s: train_cpu.filter(|&c| c > 0.0).map(|c| (history.len() * train.n) as f64 / c),
        seconds: t_all.elapsed().as_secs_f64(),
        history,
    })
}
