//! `gen sample`: write new recipes with a trained model.

use anyhow::{bail, Result};
use clap::Args;
use gen::checkpoint::Checkpoint;
use gen::sample::{self, recipe_text, SampleSettings};
use std::io::Write;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// The recipes as text, separated by a blank line, streamed as they are written.
    Text,
    /// Recipe Box JSON: {"<id>": {"title", "ingredients", "instructions", "picture_link", "valid"}}.
    Json,
}

/// Sampling controls shared by `gen sample` and `gen judge`.
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Checkpoint directory to sample from.
    #[arg(long, default_value = "checkpoints/recipes")]
    pub checkpoint: PathBuf,
    /// Softmax temperature: lower is safer, higher is wilder (finite, > 0).
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    pub temperature: f64,
    /// Sample only among the K most likely characters.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sample only among the most likely characters whose probabilities add up to P (0 < P ≤ 1).
    #[arg(long, allow_negative_numbers = true)]
    pub top_p: Option<f64>,
    /// Random seed; the same seed gives the same output [default: from the clock, printed on stderr]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Text to start every recipe with (after the end-of-recipe token) [default: none]
    #[arg(long, conflicts_with = "title")]
    pub prime: Option<String>,
    /// Start every recipe with "Title: TEXT".
    #[arg(long)]
    pub title: Option<String>,
    /// Stop a recipe after this many generated characters if it has not ended [default: 2000 for
    /// `sample`, 4000 for `judge`]
    #[arg(long)]
    pub max_chars: Option<usize>,
    /// Keep ingredient lines the recipe already lists. By default such a line is sampled again from
    /// its start (recurrent models; the transformer cannot step back one stream).
    #[arg(long)]
    pub allow_repeats: bool,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

impl SamplingArgs {
    pub fn settings(&self, default_max_chars: usize) -> SampleSettings {
        let seed = self.seed.unwrap_or_else(|| {
            let s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
            eprintln!("seed {s}");
            s
        });
        SampleSettings {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            seed,
            max_chars: self.max_chars.unwrap_or(default_max_chars),
            stop_at_eor: true,
            no_repeat_ingredients: !self.allow_repeats,
        }
    }

    /// Everything a sampling command needs: validated settings, the device, the checkpoint, and the
    /// prime's token ids (checked against the vocabulary).
    pub fn prepare(&self, count: usize, default_max_chars: usize) -> Result<Prepared> {
        if count == 0 {
            bail!("--count must be at least 1");
        }
        let settings = self.settings(default_max_chars);
        settings.validate()?;
        let device = gen::device::parse(&self.device)?;
        let ckpt = Checkpoint::load(&self.checkpoint, &device)?;
        if !self.allow_repeats && matches!(ckpt.model, gen::model::CharModel::Transformer(_)) {
            eprintln!("note: repeated ingredient lines are kept: the transformer's streams cannot step back one line");
        }
        let prime = match self.prime_text() {
            Some(p) => sample::encode_prime(&ckpt.tokenizer, &p)?,
            None => Vec::new(),
        };
        Ok(Prepared { settings, device, ckpt, prime })
    }

    fn prime_text(&self) -> Option<String> {
        match (&self.prime, &self.title) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(t)) => Some(format!("Title: {t}\n")),
            // Recurrent models are trained to start every recipe from the zero state after <eor>,
            // which is where sampling starts: the model writes the whole recipe, title line included.
            (None, None) => None,
        }
    }
}

pub struct Prepared {
    pub settings: SampleSettings,
    pub device: candle_core::Device,
    pub ckpt: Checkpoint,
    pub prime: Vec<u32>,
}

#[derive(Args, Debug)]
pub struct SampleArgs {
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Number of recipes, generated in parallel as one batch.
    #[arg(short = 'n', long = "count", default_value_t = 1)]
    pub count: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

pub fn run(args: &SampleArgs) -> Result<()> {
    let Prepared { settings, device, ckpt, prime } = args.sampling.prepare(args.count, 2000)?;
    let stream_live = args.format == OutputFormat::Text;
    let mut stdout = std::io::stdout().lock();
    // Stream 0 is printed as it is generated; the others when the batch is done.
    let mut on_token = |i: usize, piece: &str| {
        if stream_live && i == 0 {
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
        }
    };
    let out = sample::generate(&ckpt.model, &ckpt.tokenizer, &prime, args.count, &settings, &device, &mut on_token)?;
    let mut stdout = std::io::stdout().lock();
    match args.format {
        OutputFormat::Text => {
            for (i, g) in out.iter().enumerate() {
                if i > 0 {
                    write!(stdout, "{}", g.text)?;
                }
                if !g.text.ends_with('\n') {
                    writeln!(stdout)?;
                }
                writeln!(stdout)?;
            }
        }
        OutputFormat::Json => {
            let mut map = serde_json::Map::new();
            for (i, g) in out.iter().enumerate() {
                let entry = match recipe_text::parse(&g.text) {
                    Some(r) => serde_json::json!({
                        "title": r.title, "ingredients": r.ingredients, "instructions": r.instructions.join("\n"),
                        "picture_link": null, "valid": g.finished,
                    }),
                    None => serde_json::json!({
                        "title": null, "ingredients": [], "instructions": null, "picture_link": null,
                        "valid": false, "text": g.text,
                    }),
                };
                map.insert(format!("gen-{}-{i}", settings.seed), entry);
            }
            writeln!(stdout, "{}", serde_json::to_string_pretty(&map)?)?;
        }
    }
    Ok(())
}
