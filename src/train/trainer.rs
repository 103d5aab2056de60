//! The training loop shared by every character model: batches from `Streams`, AdamW with clipping,
//! warm-up + cosine schedule, periodic validation, checkpoints (latest and `best/`), early stopping,
//! Ctrl-C handling and exact resume.

use super::metrics::{MetricsLog, Record};
use super::progress::Progress;
use super::streams::Streams;
use crate::checkpoint::{self, Checkpoint, TrainState};
use crate::eval;
use crate::model::Carry;
use crate::nn::adamw::{AdamW, AdamWConfig};
use crate::nn::schedule::Schedule;
use crate::rng::Rng;
use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Serialize)]
pub struct TrainOptions {
    pub out: PathBuf,
    pub batch: usize,
    pub seq: usize,
    pub lr: f64,
    pub min_lr_ratio: f64,
    pub warmup: u64,
    pub weight_decay: f64,
    pub clip: f64,
    pub steps: Option<u64>,
    pub decay_steps: Option<u64>,
    pub epochs: Option<u64>,
    #[serde(skip)]
    pub time: Option<Duration>,
    pub patience: Option<u32>,
    pub eval_every: u64,
    pub log_every: u64,
    pub seed: u64,
    pub val_fraction: f64,
}

/// What a run did, printed at the end (and as JSON with `--json`).
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub out: String,
    pub arch: String,
    pub params: usize,
    pub steps: u64,
    pub epochs: f64,
    pub tokens: u64,
    pub elapsed_s: f64,
    pub train_chars_per_s: f64,
    pub last_train_bpc: Option<f64>,
    pub val_bpc: Option<f64>,
    pub best_val_bpc: Option<f64>,
    pub best_step: Option<u64>,
    pub stopped_by: String,
}

pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler once: the loop notices the flag, saves and exits.
pub fn install_ctrlc() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                std::process::exit(130); // a second Ctrl-C: stop now
            }
        });
    });
}

pub struct Trainer<'a> {
    pub ckpt: &'a Checkpoint,
    pub opts: TrainOptions,
    pub streams: Streams,
    pub val_docs: Vec<Vec<u32>>,
    pub device: Device,
    /// Set on resume: the state the checkpoint was saved in.
    pub resume: Option<Resume>,
}

pub struct Resume {
    pub state: TrainState,
    pub optimizer: std::collections::HashMap<String, Tensor>,
    pub carry: std::collections::HashMap<String, Tensor>,
}

impl Trainer<'_> {
    pub fn run(mut self) -> Result<Summary> {
        let o = self.opts.clone();
        let o = &o;
        let model = &self.ckpt.model;
        let vocab = self.ckpt.config.vocab();
        let wpe = self.streams.windows_per_epoch();
        let mut opt = AdamW::new(self.ckpt.named_vars(), AdamWConfig { weight_decay: o.weight_decay, ..Default::default() })?;
        let total_steps = match (o.steps, o.epochs) {
            (Some(s), Some(e)) => Some(s.min(e * wpe)),
            (Some(s), None) => Some(s),
            (None, Some(e)) => Some(e * wpe),
            (None, None) => None,
        };
        let schedule = Schedule { lr: o.lr, warmup: o.warmup, total: o.decay_steps.or(total_steps), min_ratio: o.min_lr_ratio };
        let settings = serde_json::to_value(o)?;
        let mut state = TrainState {
            step: 0,
            epoch: 0,
            window: 0,
            tokens_seen: 0,
            rng: Rng::derive(o.seed, 0xd70f),
            best_val_bpc: None,
            best_step: None,
            evals_since_best: 0,
            elapsed_s: 0.0,
            settings: settings.clone(),
        };
        let mut carry = model.initial_carry(o.batch, &self.device)?;
        if let Some(r) = &self.resume {
            opt.load_state(&r.optimizer, r.state.step)?;
            carry = model.carry_from(o.batch, &self.device, &r.carry)?;
            state = r.state.clone();
            state.settings = settings;
        }
        let mut metrics = MetricsLog::open(&o.out, self.resume.as_ref().map(|r| r.state.step))?;
        let started = Instant::now();
        let elapsed_before = state.elapsed_s;
        let elapsed = |s: &Instant| elapsed_before + s.elapsed().as_secs_f64();
        let mut progress = Progress::new(total_steps, o.time, state.step, elapsed_before);
        progress.log(&format!(
            "training {} ({} parameters) on {} tokens/epoch, batch {} × seq {}, {} windows/epoch",
            self.ckpt.config.describe(),
            self.ckpt.num_params(),
            self.streams.tokens_per_epoch(),
            o.batch,
            o.seq,
            wpe
        ));
        let save = |state: &TrainState, opt: &AdamW, carry: &Carry| -> Result<()> {
            self.ckpt.save_model(&o.out)?;
            checkpoint::save_training(&o.out, opt.state_tensors(), carry.tensors(), state)
        };

        let (mut window_loss, mut window_n, mut window_tokens) = (0f64, 0u64, 0u64);
        let mut window_start = Instant::now();
        let (mut last_train_bpc, mut last_val_bpc) = (None, None);
        let stopped_by = loop {
            if INTERRUPTED.load(Ordering::SeqCst) {
                break "interrupt";
            }
            if total_steps.is_some_and(|t| state.step >= t) {
                break if o.steps.is_some_and(|s| state.step >= s) { "steps" } else { "epochs" };
            }
            if o.time.is_some_and(|t| elapsed(&started) >= t.as_secs_f64()) {
                break "time";
            }
            let lr = match (schedule.total, o.time) {
                (None, Some(t)) => schedule.at_progress(state.step, elapsed(&started) / t.as_secs_f64()),
                _ => schedule.at(state.step),
            };
            let (inputs, targets) = self.streams.batch(state.epoch, state.window);
            let x = Tensor::from_vec(inputs, (o.batch, o.seq), &self.device)?;
            let y = Tensor::from_vec(targets, o.batch * o.seq, &self.device)?;
            let (logits, next) = model.forward_window(&x, &carry, Some(&mut state.rng))?;
            let loss = crate::nn::cross_entropy::cross_entropy(&logits.reshape((o.batch * o.seq, vocab))?, &y)?;
            let loss_value = loss.to_scalar::<f32>()? as f64;
            if !loss_value.is_finite() {
                bail!(
                    "loss became {loss_value} at step {}; stopped without saving, the last good checkpoint in {} is from step {}; lower --lr or --clip",
                    state.step + 1,
                    o.out.display(),
                    last_saved_step(&o.out).map_or("(none)".into(), |s| s.to_string())
                );
            }
            let grads = loss.backward()?;
            let info = opt.step(&grads, lr, o.clip)?;
            carry = next.detach();
            state.step += 1;
            state.tokens_seen += (o.batch * o.seq) as u64;
            state.window += 1;
            if state.window >= wpe {
                state.window = 0;
                state.epoch += 1;
                carry = model.initial_carry(o.batch, &self.device)?; // new shuffle: streams restart
            }
            window_loss += loss_value;
            window_n += 1;
            window_tokens += (o.batch * o.seq) as u64;
            let bpc = loss_value / std::f64::consts::LN_2;
            progress.step(state.step, bpc, elapsed(&started));

            if state.step.is_multiple_of(o.log_every) {
                let cps = window_tokens as f64 / window_start.elapsed().as_secs_f64();
                let train_bpc = window_loss / window_n as f64 / std::f64::consts::LN_2;
                last_train_bpc = Some(train_bpc);
                progress.set_rate(cps);
                progress.log_step(state.step, total_steps, train_bpc, lr, cps, elapsed(&started));
                metrics.push(Record {
                    step: state.step,
                    train_bpc: Some(train_bpc),
                    val_bpc: None,
                    lr: Some(lr),
                    grad_norm: Some(info.grad_norm),
                    chars_per_s: Some(cps),
                    elapsed_s: elapsed(&started),
                })?;
                (window_loss, window_n, window_tokens) = (0.0, 0, 0);
                window_start = Instant::now();
            }
            if state.step.is_multiple_of(o.eval_every) {
                let val = self.evaluate_and_save(&mut state, &opt, &carry, &mut metrics, &mut progress, elapsed(&started), &save)?;
                last_val_bpc = val;
                window_start = Instant::now(); // evaluation time is not training throughput
                if o.patience.is_some_and(|p| state.evals_since_best >= p) {
                    break "patience";
                }
            }
        };
        // Final evaluation and checkpoint, unless the last step just did both. An interrupted run
        // saves without evaluating, so Ctrl-C returns at once.
        let just_saved = state.step > 0 && state.step.is_multiple_of(o.eval_every);
        if stopped_by == "interrupt" {
            if !just_saved {
                state.elapsed_s = elapsed(&started);
                save(&state, &opt, &carry)?;
            }
            progress.finish();
            eprintln!("interrupted at step {}: checkpoint saved; continue with --resume {}", state.step, o.out.display());
        } else if !just_saved {
            last_val_bpc = self.evaluate_and_save(&mut state, &opt, &carry, &mut metrics, &mut progress, elapsed(&started), &save)?;
        }
        progress.finish();
        if let Err(e) = super::plot_metrics(&o.out.join("loss.png"), &metrics.records) {
            eprintln!("warning: no loss.png: {e:#}");
        }
        let secs = elapsed(&started);
        Ok(Summary {
            out: o.out.display().to_string(),
            arch: self.ckpt.config.arch().into(),
            params: self.ckpt.num_params(),
            steps: state.step,
            epochs: state.tokens_seen as f64 / self.streams.tokens_per_epoch() as f64,
            tokens: state.tokens_seen,
            elapsed_s: secs,
            train_chars_per_s: (state.tokens_seen as f64) / secs.max(1e-9),
            last_train_bpc,
            val_bpc: last_val_bpc,
            best_val_bpc: state.best_val_bpc,
            best_step: state.best_step,
            stopped_by: stopped_by.into(),
        })
    }

    /// Validation bpc, `metrics.jsonl`, the latest checkpoint and `best/` when it improved.
    #[allow(clippy::too_many_arguments)]
    fn evaluate_and_save(
        &self,
        state: &mut TrainState,
        opt: &AdamW,
        carry: &Carry,
        metrics: &mut MetricsLog,
        progress: &mut Progress,
        elapsed_s: f64,
        save: &dyn Fn(&TrainState, &AdamW, &Carry) -> Result<()>,
    ) -> Result<Option<f64>> {
        state.elapsed_s = elapsed_s;
        let val = if self.val_docs.is_empty() {
            None
        } else {
            Some(eval::score(&self.ckpt.model, &self.val_docs, &self.device)?.bpc())
        };
        if let Some(v) = val.filter(|v| !v.is_finite()) {
            bail!(
                "validation bpc became {v} at step {}; stopped without saving, the last good checkpoint in {} is from step {}; lower --lr or --clip",
                state.step,
                self.opts.out.display(),
                last_saved_step(&self.opts.out).map_or("(none)".into(), |s| s.to_string())
            );
        }
        if let Some(v) = val {
            progress.log(&format!("step {}: validation bpc {v:.4}", state.step));
            metrics.push(Record {
                step: state.step,
                train_bpc: None,
                val_bpc: Some(v),
                lr: None,
                grad_norm: None,
                chars_per_s: None,
                elapsed_s,
            })?;
            if state.best_val_bpc.is_none_or(|b| v < b) {
                state.best_val_bpc = Some(v);
                state.best_step = Some(state.step);
                state.evals_since_best = 0;
                self.ckpt.save_model(&self.opts.out.join("best"))?;
            } else {
                state.evals_since_best += 1;
            }
        }
        save(state, opt, carry)?;
        Ok(val)
    }
}

fn last_saved_step(dir: &std::path::Path) -> Option<u64> {
    crate::fsutil::read_json::<TrainState>(&dir.join("train_state.json")).ok().map(|s| s.step)
}
