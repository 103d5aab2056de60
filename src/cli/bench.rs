//! `gen bench train|sample`: throughput of the real training step and the real sampling loop,
//! printed as one JSON line. Benchmarks are commands, not timed tests.

use super::train::ModelArgs;
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use gen::checkpoint::Checkpoint;
use gen::corpus::Format;
use gen::nn::adamw::{AdamW, AdamWConfig};
use gen::rng::Rng;
use gen::sample::{generate, SampleSettings};
use gen::tokenizer::CharTokenizer;
use gen::train::streams::Streams;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Training throughput: forward + backward + AdamW step, in characters per second.
    Train(BenchTrainArgs),
    /// Sampling throughput: generated characters per second over all streams, sampling included.
    Sample(BenchSampleArgs),
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Args, Debug)]
pub struct BenchTrainArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Streams per batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Characters per stream per step (the transformer uses its --context).
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    /// Timed steps (after 3 warm-up steps).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Train on this corpus; without it, on random characters from a --vocab alphabet.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Vocabulary size when there is no --data.
    #[arg(long, default_value_t = 162)]
    pub vocab: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

#[derive(Args, Debug)]
pub struct BenchSampleArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Sample from this checkpoint instead of a random model of the --vocab / model flags.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Vocabulary size of the random model.
    #[arg(long, default_value_t = 162)]
    pub vocab: usize,
    /// Streams sampled in parallel.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Characters to generate per stream.
    #[arg(long, default_value_t = 4000)]
    pub chars: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    match &args.command {
        BenchCommand::Train(a) => train(a),
        BenchCommand::Sample(a) => sample(a),
    }
}

/// A tokenizer of exactly `n` tokens (for random models): `<eor>`, `<unk>` and n−2 characters.
fn synthetic_tokenizer(n: usize) -> Result<CharTokenizer> {
    if n < 3 {
        bail!("--vocab must be at least 3");
    }
    let text: String = (0..n - 2).map(|i| char::from_u32(0x21 + i as u32).unwrap_or('?')).collect();
    CharTokenizer::build([text.as_str()], 1)
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn train(a: &BenchTrainArgs) -> Result<()> {
    let device = gen::device::parse(&a.device)?;
    let (tok, docs) = match &a.data {
        Some(p) => {
            let c = gen::train::data::prepare(p, Format::Auto, 0.02, 5, None)?;
            (c.tokenizer, c.train)
        }
        None => {
            let tok = synthetic_tokenizer(a.vocab)?;
            let mut rng = Rng::new(1);
            let need = (a.batch * (a.seq.max(1024) + 1) * (a.steps + 4)) / 1000 + 1;
            let docs = (0..need).map(|_| (0..999).map(|_| 2 + rng.below(a.vocab as u64 - 2) as u32).collect()).collect();
            (tok, docs)
        }
    };
    let cfg = a.model.config(tok.vocab_size())?;
    let seq = cfg.context().unwrap_or(a.seq);
    let describe = cfg.describe();
    let ckpt = Checkpoint::init(cfg, tok, &device, 1)?;
    let mut streams = Streams::new(docs, a.batch, seq, 1)?;
    let mut opt = AdamW::new(ckpt.named_vars(), AdamWConfig::default())?;
    let mut carry = ckpt.model.initial_carry(a.batch, &device)?;
    let mut rng = Rng::new(2);
    let wpe = streams.windows_per_epoch();
    let vocab = ckpt.config.vocab();
    let mut step = |i: usize| -> Result<f32> {
        let (x, y) = streams.batch(0, i as u64 % wpe);
        let x = candle_core::Tensor::from_vec(x, (a.batch, seq), &device)?;
        let y = candle_core::Tensor::from_vec(y, a.batch * seq, &device)?;
        let (logits, next) = ckpt.model.forward_window(&x, &carry, Some(&mut rng))?;
        let loss = gen::nn::cross_entropy::cross_entropy(&logits.reshape((a.batch * seq, vocab))?, &y)?;
        let grads = loss.backward()?;
        opt.step(&grads, 1e-3, 5.0)?;
        carry = next.detach();
        Ok(loss.to_scalar::<f32>()?)
    };
    for i in 0..3 {
        step(i)?;
    }
    let t0 = Instant::now();
    let mut last = 0.0;
    for i in 0..a.steps {
        last = step(3 + i)?;
    }
    device.synchronize()?;
    let secs = t0.elapsed().as_secs_f64();
    let chars = (a.steps * a.batch * seq) as f64;
    println!(
        "{}",
        json!({
            "bench": "train", "model": describe, "params": ckpt.num_params(), "batch": a.batch, "seq": seq,
            "steps": a.steps, "seconds": secs, "train_chars_per_s": chars / secs, "ms_per_step": 1e3 * secs / a.steps as f64,
            "last_loss": last, "peak_rss_mb": peak_rss_mb(), "device": a.device,
        })
    );
    Ok(())
}

fn sample(a: &BenchSampleArgs) -> Result<()> {
    let device = gen::device::parse(&a.device)?;
    if a.batch == 0 || a.chars == 0 {
        bail!("--batch and --chars must be at least 1");
    }
    let ckpt = match &a.checkpoint {
        Some(dir) => Checkpoint::load(dir, &device)?,
        None => {
            let tok = synthetic_tokenizer(a.vocab)?;
            Checkpoint::init(a.model.config(tok.vocab_size())?, tok, &device, 1)?
        }
    };
    let settings = SampleSettings { temperature: 1.0, top_k: None, top_p: None, seed: 1, max_chars: a.chars, stop_at_eor: false, no_repeat_ingredients: false };
    // Warm-up (allocations, weight conversion), then the timed run.
    generate(&ckpt.model, &ckpt.tokenizer, &[], a.batch, &SampleSettings { max_chars: 50, ..settings.clone() }, &device, &mut |_, _| {})?;
    let t0 = Instant::now();
    let out = generate(&ckpt.model, &ckpt.tokenizer, &[], a.batch, &settings, &device, &mut |_, _| {})?;
    let secs = t0.elapsed().as_secs_f64();
    let chars: usize = out.iter().map(|g| g.tokens).sum();
    println!(
        "{}",
        json!({
            "bench": "sample", "model": ckpt.config.describe(), "batch": a.batch, "chars": chars, "seconds": secs,
            "sample_chars_per_s": chars as f64 / secs, "peak_rss_mb": peak_rss_mb(), "device": a.device,
        })
    );
    Ok(())
}
