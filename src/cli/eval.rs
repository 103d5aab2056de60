//! `gen eval`: bits per character of a checkpoint on a corpus (see `gen::eval` for the definition).

use anyhow::Result;
use clap::Args;
use gen::checkpoint::Checkpoint;
use gen::corpus::{self, Format};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    /// Every recipe in --data.
    All,
    /// Only the validation split (the recipes training held out).
    Val,
    /// Only the training split.
    Train,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Checkpoint directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long, default_value = "checkpoints/recipes")]
    pub checkpoint: PathBuf,
    /// Recipes to score: Recipe Box JSON file or directory, or plain text.
    #[arg(long, default_value = "data/recipes")]
    pub data: PathBuf,
    /// How to read --data.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Which recipes of --data to score.
    #[arg(long, value_enum, default_value_t = Split::All)]
    pub split: Split,
    /// Validation share used to define --split (must match training's).
    #[arg(long, default_value_t = 0.02)]
    pub val_fraction: f64,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print one JSON object: {"bpc", "tokens", "recipes", …}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Report {
    bpc: f64,
    tokens: u64,
    recipes: usize,
    unknown_chars: usize,
    seconds: f64,
    chars_per_s: f64,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let device = gen::device::parse(&args.device)?;
    corpus::validate_fraction(args.val_fraction)?;
    let ckpt = Checkpoint::load(&args.checkpoint, &device)?;
    let docs = corpus::read(&args.data, args.format)?.docs;
    let docs: Vec<_> = match args.split {
        Split::All => docs,
        Split::Val => corpus::split(docs, args.val_fraction).1,
        Split::Train => corpus::split(docs, args.val_fraction).0,
    };
    if docs.is_empty() {
        anyhow::bail!("{}: the {:?} split is empty; use --split all or a larger --val-fraction", args.data.display(), args.split);
    }
    let unknown_chars = docs.iter().flat_map(|d| d.text.chars()).filter(|&c| !ckpt.tokenizer.contains(c)).count();
    let ids: Vec<Vec<u32>> = docs.iter().map(|d| ckpt.tokenizer.encode(&d.text)).collect();
    let t0 = Instant::now();
    let score = gen::eval::score(&ckpt.model, &ids, &device)?;
    let seconds = t0.elapsed().as_secs_f64();
    let r = Report {
        bpc: score.bpc(),
        tokens: score.tokens,
        recipes: score.recipes,
        unknown_chars,
        seconds,
        chars_per_s: score.tokens as f64 / seconds,
    };
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{:.4} bits per character over {} tokens of {} recipes ({} characters outside the vocabulary scored as <unk>); {:.1}s",
            r.bpc, r.tokens, r.recipes, r.unknown_chars, r.seconds
        );
    }
    Ok(())
}
