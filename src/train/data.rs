//! Corpus → tokenizer → token ids: what training and evaluation consume.

use crate::corpus::{self, Format, ReadStats};
use crate::tokenizer::CharTokenizer;
use anyhow::Result;
use std::path::Path;

pub struct EncodedCorpus {
    pub tokenizer: CharTokenizer,
    pub train: Vec<Vec<u32>>,
    pub val: Vec<Vec<u32>>,
    pub stats: ReadStats,
}

/// Reads `data`, splits it, builds the vocabulary from the training split (or uses `tokenizer`, as a
/// resumed run must) and encodes both splits.
pub fn prepare(
    data: &Path,
    format: Format,
    val_fraction: f64,
    min_char_count: usize,
    tokenizer: Option<CharTokenizer>,
) -> Result<EncodedCorpus> {
    corpus::validate_fraction(val_fraction)?;
    let c = corpus::read(data, format)?;
    let (train, val) = corpus::split(c.docs, val_fraction);
    let tokenizer = match tokenizer {
        Some(t) => t,
        None => CharTokenizer::build(train.iter().map(|d| d.text.as_str()), min_char_count)?,
    };
    let encode = |docs: Vec<corpus::Doc>| docs.iter().map(|d| tokenizer.encode(&d.text)).collect::<Vec<_>>();
    let (train, val) = (encode(train), encode(val));
    Ok(EncodedCorpus { tokenizer, train, val, stats: c.stats })
}
