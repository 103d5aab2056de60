//! `gen corpus`: what the trainer will see, before training.

use anyhow::Result;
use clap::Args;
use gen::corpus::{self, Format};
use gen::tokenizer::CharTokenizer;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct CorpusArgs {
    /// Recipe Box JSON file, a directory of *.json files, or a plain text file.
    #[arg(long, default_value = "data/recipes")]
    pub data: PathBuf,
    /// How to read --data.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Share of recipes (chosen by a hash of their id) held out for validation.
    #[arg(long, default_value_t = 0.02)]
    pub val_fraction: f64,
    /// A character enters the vocabulary when it occurs this often in the training split.
    #[arg(long, default_value_t = 5)]
    pub min_char_count: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Report {
    files: Vec<String>,
    recipes_read: usize,
    recipes_kept: usize,
    dropped_no_title: usize,
    dropped_no_ingredients: usize,
    dropped_no_instructions: usize,
    duplicates: usize,
    chars: usize,
    vocab_size: usize,
    train_recipes: usize,
    val_recipes: usize,
    val_chars: usize,
    val_unknown_chars: usize,
    mean_recipe_chars: f64,
    p95_recipe_chars: usize,
    encode_seconds: f64,
}

pub fn run(args: &CorpusArgs) -> Result<()> {
    corpus::validate_fraction(args.val_fraction)?;
    let c = corpus::read(&args.data, args.format)?;
    let kept = c.docs.len();
    let mut lens: Vec<usize> = c.docs.iter().map(|d| d.text.chars().count()).collect();
    let chars: usize = lens.iter().sum();
    lens.sort_unstable();
    let p95 = lens[((lens.len() as f64 * 0.95).ceil() as usize).clamp(1, lens.len()) - 1];
    let (train, val) = corpus::split(c.docs, args.val_fraction);
    let tok = CharTokenizer::build(train.iter().map(|d| d.text.as_str()), args.min_char_count)?;
    let t0 = Instant::now();
    let mut ids = Vec::with_capacity(chars + kept);
    for d in train.iter().chain(&val) {
        tok.encode_into(&d.text, &mut ids);
    }
    let encode_seconds = t0.elapsed().as_secs_f64();
    let val_chars: usize = val.iter().map(|d| d.text.chars().count()).sum();
    let val_unknown_chars = val.iter().flat_map(|d| d.text.chars()).filter(|&ch| !tok.contains(ch)).count();
    let r = Report {
        files: c.stats.files,
        recipes_read: c.stats.recipes_read,
        recipes_kept: kept,
        dropped_no_title: c.stats.dropped_no_title,
        dropped_no_ingredients: c.stats.dropped_no_ingredients,
        dropped_no_instructions: c.stats.dropped_no_instructions,
        duplicates: c.stats.duplicates,
        chars,
        vocab_size: tok.vocab_size(),
        train_recipes: train.len(),
        val_recipes: val.len(),
        val_chars,
        val_unknown_chars,
        mean_recipe_chars: chars as f64 / kept as f64,
        p95_recipe_chars: p95,
        encode_seconds,
    };
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    println!("files read            {}", r.files.join(", "));
    println!("recipes read          {}", r.recipes_read);
    println!("recipes kept          {}", r.recipes_kept);
    println!("  dropped: no title   {}", r.dropped_no_title);
    println!("  dropped: no ingred. {}", r.dropped_no_ingredients);
    println!("  dropped: no instr.  {}", r.dropped_no_instructions);
    println!("  duplicates          {}", r.duplicates);
    println!("characters            {}", r.chars);
    println!("recipe length         mean {:.0}, 95th percentile {}", r.mean_recipe_chars, r.p95_recipe_chars);
    println!("vocabulary            {} (chars seen ≥ {} times, plus <eor> and <unk>)", r.vocab_size, args.min_char_count);
    println!("train / validation    {} / {} recipes ({} validation chars, {} unknown)", r.train_recipes, r.val_recipes, r.val_chars, r.val_unknown_chars);
    println!("encoding took         {:.2} s", r.encode_seconds);
    Ok(())
}
