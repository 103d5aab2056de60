//! `gen train-recipes`: train a character model on a recipe corpus (or any text), resumably.

use anyhow::{bail, Context, Result};
use clap::Args;
use gen::checkpoint::{self, Checkpoint};
use gen::corpus::Format;
use gen::duration::parse_duration;
use gen::model::rnn_lm::RnnConfig;
use gen::model::transformer::TransformerConfig;
use gen::model::ModelConfig;
use gen::train::data;
use gen::train::streams::Streams;
use gen::train::trainer::{install_ctrlc, Resume, TrainOptions, Trainer};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    Lstm,
    Gru,
    /// Elman RNN (tanh).
    Rnn,
    /// Decoder-only transformer (pre-norm, learned positions, tied head).
    Transformer,
}

/// Model shape flags, shared with `gen bench`.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Architecture [default: lstm]
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// Character embedding size (recurrent models) [default: 64]
    #[arg(long)]
    pub embed: Option<usize>,
    /// Hidden units per recurrent layer [default: 256]
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Layers [default: 1 for recurrent models, 4 for the transformer]
    #[arg(long)]
    pub layers: Option<usize>,
    /// Dropout (between recurrent layers; on embeddings and residual branches of the transformer) [default: 0]
    #[arg(long)]
    pub dropout: Option<f32>,
    /// Transformer width [default: 128]
    #[arg(long)]
    pub dim: Option<usize>,
    /// Transformer attention heads; must divide --dim [default: 4]
    #[arg(long)]
    pub heads: Option<usize>,
    /// Transformer context (block size): characters it attends over, and its training window [default: 256]
    #[arg(long)]
    pub context: Option<usize>,
}

impl ModelArgs {
    pub fn arch(&self) -> Arch {
        self.arch.unwrap_or(Arch::Lstm)
    }

    /// The model these flags describe for a vocabulary of `vocab` characters.
    pub fn config(&self, vocab: usize) -> Result<ModelConfig> {
        let arch = self.arch();
        if arch == Arch::Transformer {
            if let Some(flag) = [("--embed", self.embed.is_some()), ("--hidden", self.hidden.is_some())].iter().find(|f| f.1) {
                bail!("{} is a recurrent-model flag; the transformer's width is --dim", flag.0);
            }
        } else if let Some(flag) =
            [("--dim", self.dim.is_some()), ("--heads", self.heads.is_some()), ("--context", self.context.is_some())].iter().find(|f| f.1)
        {
            bail!("{} is a transformer flag; use --arch transformer or drop it", flag.0);
        }
        let rnn = || RnnConfig {
            vocab,
            embed: self.embed.unwrap_or(64),
            hidden: self.hidden.unwrap_or(256),
            layers: self.layers.unwrap_or(1),
            dropout: self.dropout.unwrap_or(0.0),
        };
        let cfg = match arch {
            Arch::Lstm => ModelConfig::Lstm(rnn()),
            Arch::Gru => ModelConfig::Gru(rnn()),
            Arch::Rnn => ModelConfig::Rnn(rnn()),
            Arch::Transformer => ModelConfig::Transformer(TransformerConfig {
                vocab,
                dim: self.dim.unwrap_or(128),
                layers: self.layers.unwrap_or(4),
                heads: self.heads.unwrap_or(4),
                context: self.context.unwrap_or(256),
                dropout: self.dropout.unwrap_or(0.0),
            }),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// On resume: every flag given must agree with the checkpoint.
    fn check_against(&self, saved: &ModelConfig, dir: &std::path::Path) -> Result<()> {
        let s = |v: Option<usize>| v.map(|v| v.to_string());
        let f = |v: Option<f32>| v.map(|v| v.to_string());
        let arch = self.arch.map(|a| format!("{a:?}").to_lowercase());
        let mut pairs = vec![("--arch", arch, saved.arch().to_string())];
        match saved {
            ModelConfig::Lstm(c) | ModelConfig::Gru(c) | ModelConfig::Rnn(c) => pairs.extend([
                ("--embed", s(self.embed), c.embed.to_string()),
                ("--hidden", s(self.hidden), c.hidden.to_string()),
                ("--layers", s(self.layers), c.layers.to_string()),
                ("--dropout", f(self.dropout), c.dropout.to_string()),
            ]),
            ModelConfig::Transformer(c) => pairs.extend([
                ("--dim", s(self.dim), c.dim.to_string()),
                ("--heads", s(self.heads), c.heads.to_string()),
                ("--context", s(self.context), c.context.to_string()),
                ("--layers", s(self.layers), c.layers.to_string()),
                ("--dropout", f(self.dropout), c.dropout.to_string()),
            ]),
        }
        for (flag, given, have) in pairs {
            if let Some(w) = given {
                if w != have {
                    bail!("{}: checkpoint has {flag} {have}, not {w}; drop the flag to resume it or train a new model with --out", dir.display());
                }
            }
        }
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Recipe Box JSON file, a directory of *.json files, or a plain text file.
    #[arg(long, default_value = "data/recipes")]
    pub data: PathBuf,
    /// How to read --data.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Checkpoint directory to write [default: runs/<arch>, or the --resume directory]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run saved in this checkpoint directory exactly where it stopped.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Parallel streams per batch [default: 32; 16 for the transformer]
    #[arg(long)]
    pub batch: Option<usize>,
    /// Truncated-BPTT window of the recurrent models: characters per stream per step [default: 128]
    #[arg(long)]
    pub seq: Option<usize>,
    /// Peak learning rate [default: 0.002]
    #[arg(long)]
    pub lr: Option<f64>,
    /// The cosine decays to this fraction of --lr [default: 0.1]
    #[arg(long)]
    pub min_lr_ratio: Option<f64>,
    /// Linear warm-up steps [default: 100]
    #[arg(long)]
    pub warmup: Option<u64>,
    /// AdamW decoupled weight decay on weight matrices [default: 0.01]
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Clip the global gradient norm to this (0 = off) [default: 5]
    #[arg(long)]
    pub clip: Option<f64>,
    /// Stop after this many optimizer steps (total, counting resumed ones).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Steps over which the cosine decays [default: --steps, or the --epochs budget; a --time
    /// budget decays over the time]. Set it to stop early inside a longer plan.
    #[arg(long)]
    pub decay_steps: Option<u64>,
    /// Stop after this many passes over the training text.
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Stop after this much training time in all, e.g. 90s, 10m, 2h.
    #[arg(long, value_parser = parse_duration)]
    pub time: Option<Duration>,
    /// Stop after this many evaluations without a better validation bpc.
    #[arg(long)]
    pub patience: Option<u32>,
    /// Validate and checkpoint every N steps.
    #[arg(long, default_value_t = 500)]
    pub eval_every: u64,
    /// Log training bpc and speed every N steps.
    #[arg(long, default_value_t = 50)]
    pub log_every: u64,
    /// Seed for initialisation, shuffling and dropout [default: 1]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Share of recipes (by a hash of their id) held out for validation [default: 0.02]
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// A character enters the vocabulary when it occurs this often in the training split.
    #[arg(long, default_value_t = 5)]
    pub min_char_count: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print the final summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// A flag's value: given on the command line, else saved in the checkpoint, else the default.
/// For settings that shape the data or the schedule, a resume must not change them.
fn keep<T: PartialEq + std::fmt::Display + Copy + serde::de::DeserializeOwned>(
    flag: &str,
    given: Option<T>,
    saved: Option<&serde_json::Value>,
    default: T,
) -> Result<T> {
    let saved: Option<T> = saved.and_then(|v| serde_json::from_value(v.clone()).ok());
    match (given, saved) {
        (Some(g), Some(s)) if g != s => bail!("{flag} {g} differs from the resumed run's {s}; an exact resume needs the same value"),
        (Some(g), _) => Ok(g),
        (None, Some(s)) => Ok(s),
        (None, None) => Ok(default),
    }
}

pub fn run(args: &TrainArgs) -> Result<()> {
    let device = gen::device::parse(&args.device)?;
    if args.eval_every == 0 || args.log_every == 0 {
        bail!("--eval-every and --log-every must be at least 1");
    }
    // A resumed run: its model, tokenizer, optimizer state and settings.
    let resumed = match &args.resume {
        Some(dir) => {
            let ckpt = Checkpoint::load(dir, &device)?;
            args.model.check_against(&ckpt.config, dir)?;
            let (optimizer, carry, state) = checkpoint::load_training(dir, &device)?;
            Some((dir.clone(), ckpt, Resume { state, optimizer, carry }))
        }
        None => None,
    };
    let settings = resumed.as_ref().map(|(_, _, r)| r.state.settings.clone()).unwrap_or_default();
    let s = |k: &str| settings.get(k);
    let val_fraction = keep("--val-fraction", args.val_fraction, s("val_fraction"), 0.02)?;
    let seed = keep("--seed", args.seed, s("seed"), 1)?;
    let transformer = match &resumed {
        Some((_, ck, _)) => ck.config.context(),
        None => (args.model.arch() == Arch::Transformer).then(|| args.model.context.unwrap_or(256)),
    };
    // The transformer trains on windows of its context; the RNNs on --seq steps of truncated BPTT.
    if transformer.is_some() && args.seq.is_some() {
        bail!("the transformer trains on windows of --context characters; drop --seq");
    }
    let batch = keep("--batch", args.batch, s("batch"), if transformer.is_some() { 16 } else { 32 })?;
    let seq = keep("--seq", transformer.or(args.seq), s("seq"), 128)?;

    let corpus = data::prepare(&args.data, args.format, val_fraction, args.min_char_count, None)?;
    let (ckpt, resume, out) = match resumed {
        Some((dir, ckpt, resume)) => {
            if ckpt.tokenizer.inner().get_vocab(true) != corpus.tokenizer.inner().get_vocab(true) {
                bail!(
                    "{}: the checkpoint's vocabulary ({} tokens) differs from the one {} gives ({}); resume with the data it was trained on",
                    dir.display(),
                    ckpt.tokenizer.vocab_size(),
                    args.data.display(),
                    corpus.tokenizer.vocab_size()
                );
            }
            let out = args.out.clone().unwrap_or(dir);
            (ckpt, Some(resume), out)
        }
        None => {
            let config = args.model.config(corpus.tokenizer.vocab_size())?;
            let out = args.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(config.arch()));
            if out.join("train_state.json").exists() {
                bail!("{} already holds a training run; continue it with --resume {0} or choose another --out", out.display());
            }
            (Checkpoint::init(config, corpus.tokenizer, &device, seed)?, None, out)
        }
    };
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let streams = Streams::new(corpus.train, batch, seq, seed)?;
    let opts = TrainOptions {
        out,
        batch,
        seq,
        lr: keep("--lr", args.lr, s("lr"), 2e-3)?,
        min_lr_ratio: keep("--min-lr-ratio", args.min_lr_ratio, s("min_lr_ratio"), 0.1)?,
        warmup: keep("--warmup", args.warmup, s("warmup"), 100)?,
        weight_decay: keep("--weight-decay", args.weight_decay, s("weight_decay"), 0.01)?,
        clip: keep("--clip", args.clip, s("clip"), 5.0)?,
        steps: args.steps,
        decay_steps: args.decay_steps,
        epochs: args.epochs,
        time: args.time,
        patience: args.patience,
        eval_every: args.eval_every,
        log_every: args.log_every,
        seed,
        val_fraction,
    };
    if !(opts.lr > 0.0 && opts.lr.is_finite()) {
        bail!("--lr must be a positive number, got {}", opts.lr);
    }
    install_ctrlc();
    let summary = Trainer { ckpt: &ckpt, opts, streams, val_docs: corpus.val, device, resume }.run()?;
    if summary.stopped_by == "interrupt" {
        std::process::exit(130); // the conventional status for SIGINT; the checkpoint is saved
    }
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "{} steps ({:.2} epochs) in {:.0}s, {:.0} chars/s; validation bpc {} (best {} at step {}); stopped by {}; checkpoint in {}",
            summary.steps,
            summary.epochs,
            summary.elapsed_s,
            summary.train_chars_per_s,
            summary.val_bpc.map_or("-".into(), |v| format!("{v:.4}")),
            summary.best_val_bpc.map_or("-".into(), |v| format!("{v:.4}")),
            summary.best_step.map_or("-".into(), |v| v.to_string()),
            summary.stopped_by,
            summary.out
        );
    }
    Ok(())
}
