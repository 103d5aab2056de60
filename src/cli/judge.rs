//! `gen judge`: sample N recipes and measure structure, novelty, repetition and coherence.

use super::sample::{Prepared, SamplingArgs};
use anyhow::Result;
use clap::Args;
use gen::corpus::{self, Format};
use gen::judge::{judge, titles_of};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct JudgeArgs {
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Samples to generate and judge (in one batch).
    #[arg(short = 'n', long = "count", default_value_t = 200)]
    pub count: usize,
    /// Training corpus, for the share of titles that are new [skipped when absent]
    #[arg(long, default_value = "data/recipes")]
    pub data: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &JudgeArgs) -> Result<()> {
    let Prepared { settings, device, ckpt, prime } = args.sampling.prepare(args.count)?;
    let titles = if args.data.exists() {
        Some(titles_of(&corpus::read(&args.data, Format::Auto)?.docs))
    } else {
        eprintln!("note: {} not found, so title novelty is not measured (pass --data)", args.data.display());
        None
    };
    let out = gen::sample::generate(&ckpt.model, &ckpt.tokenizer, &prime, args.count, &settings, &device, &mut |_, _| {})?;
    let texts: Vec<(String, bool)> = out.into_iter().map(|g| (g.text, g.finished)).collect();
    let j = judge(&texts, titles.as_ref());
    if args.json {
        let mut v = serde_json::to_value(&j)?;
        v["temperature"] = settings.temperature.into();
        v["seed"] = settings.seed.into();
        println!("{v}");
    } else {
        let pct = |x: f64| format!("{:.1}%", 100.0 * x);
        println!("samples                 {} at temperature {}", j.samples, settings.temperature);
        println!("valid structure         {}", pct(j.valid_structure));
        println!("novel titles            {}", j.novel_titles.map_or("not measured".into(), pct));
        println!("repeated ingredient     {}", pct(j.repeated_ingredient));
        println!("ingredient coherence    {}", pct(j.ingredient_coherence));
        println!("mean length             {:.0} characters", j.mean_chars);
    }
    Ok(())
}
