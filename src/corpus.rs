//! The recipe corpus: reading Recipe Box JSON (or plain text), the canonical serialization every
//! bpc figure is measured on, de-duplication and the hash-based validation split.
//!
//! Canonical text of one recipe (issue #2, exactly):
//! `"Title: " + title + "\nIngredients:\n" + ("- " + ingredient + "\n")… + "Instructions:\n" + (line + "\n")…`
//! followed by the end-of-recipe token, which is not part of `Doc::text` but added by the tokenizer stage.

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// One training document: a canonical recipe (or a paragraph of plain text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Doc {
    pub id: String,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `.json` files are Recipe Box JSON, anything else plain text.
    Auto,
    /// Recipe Box JSON: an object mapping ids to {title, ingredients, instructions}.
    Recipes,
    /// Plain UTF-8 text, split into documents at blank lines.
    Text,
}

/// What reading a corpus did, for `gen corpus` and for logs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReadStats {
    pub files: Vec<String>,
    pub recipes_read: usize,
    pub dropped_no_title: usize,
    pub dropped_no_ingredients: usize,
    pub dropped_no_instructions: usize,
    pub duplicates: usize,
}

pub struct Corpus {
    pub docs: Vec<Doc>,
    pub stats: ReadStats,
}

/// clean(s): remove every `ADVERTISEMENT`, collapse each run of whitespace to one space, trim.
pub fn clean(s: &str) -> String {
    let s = s.replace("ADVERTISEMENT", "");
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Why a recipe is not used.
#[derive(Debug, PartialEq, Eq)]
pub enum Drop {
    NoTitle,
    NoIngredients,
    NoInstructions,
}

/// The canonical text of a recipe, or why it is dropped.
pub fn serialize_recipe(title: &str, ingredients: &[&str], instructions: &str) -> Result<String, Drop> {
    let title = clean(title);
    if title.is_empty() {
        return Err(Drop::NoTitle);
    }
    let ingredients: Vec<String> = ingredients.iter().map(|s| clean(s)).filter(|s| !s.is_empty()).collect();
    if ingredients.is_empty() {
        return Err(Drop::NoIngredients);
    }
    let lines: Vec<String> = instructions.split('\n').map(clean).filter(|s| !s.is_empty()).collect();
    if lines.is_empty() {
        return Err(Drop::NoInstructions);
    }
    let mut text = format!("Title: {title}\nIngredients:\n");
    for ing in &ingredients {
        text.push_str("- ");
        text.push_str(ing);
        text.push('\n');
    }
    text.push_str("Instructions:\n");
    for line in &lines {
        text.push_str(line);
        text.push('\n');
    }
    Ok(text)
}

/// Reads every document under `path` (a file, or a directory of `*.json` / `*.txt` files).
pub fn read(path: &Path, format: Format) -> Result<Corpus> {
    let files = list_files(path, format)?;
    let mut stats = ReadStats::default();
    let mut docs = Vec::new();
    for file in &files {
        stats.files.push(file.display().to_string());
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            anyhow!(
                "{}: not valid UTF-8 (first bad byte at offset {}); convert it to UTF-8 first",
                file.display(),
                e.utf8_error().valid_up_to()
            )
        })?;
        match resolve_format(file, format) {
            Format::Text => docs.extend(text_docs(file, &text)),
            _ => docs.extend(recipe_docs(file, &text, &mut stats)?),
        }
    }
    // Sort by id so that de-duplication keeps the same copy whatever the file order.
    docs.sort_by(|a, b| (&a.id, &a.text).cmp(&(&b.id, &b.text)));
    let mut seen = HashSet::new();
    let before = docs.len();
    docs.retain(|d| seen.insert(d.text.clone()));
    stats.duplicates = before - docs.len();
    if docs.is_empty() {
        bail!(
            "{}: no usable recipe (read {}, dropped {} without title, {} without ingredients, {} without instructions)",
            path.display(),
            stats.recipes_read,
            stats.dropped_no_title,
            stats.dropped_no_ingredients,
            stats.dropped_no_instructions
        );
    }
    Ok(Corpus { docs, stats })
}

fn resolve_format(file: &Path, format: Format) -> Format {
    match format {
        Format::Auto if file.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) => Format::Recipes,
        Format::Auto => Format::Text,
        f => f,
    }
}

fn list_files(path: &Path, format: Format) -> Result<Vec<PathBuf>> {
    if !path.exists() {
        bail!(
            "{}: no such file or directory; download the corpus with scripts/fetch-recipe-box.sh or pass --data",
            path.display()
        );
    }
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let want = if format == Format::Text { "txt" } else { "json" };
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot list {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case(want)))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: directory has no *.{want} files; point --data at the corpus file or its directory", path.display());
    }
    Ok(files)
}

/// Plain text: one document per blank-line-separated paragraph, ids `file:N`.
fn text_docs(file: &Path, text: &str) -> Vec<Doc> {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let text = text.replace("\r\n", "\n");
    text.split("\n\n")
        .map(|p| p.trim_matches('\n'))
        .filter(|p| !p.trim().is_empty())
        .enumerate()
        .map(|(i, p)| Doc { id: format!("{name}:{i}"), text: format!("{p}\n") })
        .collect::<Vec<_>>()
}

fn recipe_docs(file: &Path, text: &str, stats: &mut ReadStats) -> Result<Vec<Doc>> {
    let shown = file.display();
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        anyhow!("{shown}: malformed JSON at line {} column {}: {e}", e.line(), e.column())
    })?;
    let serde_json::Value::Object(map) = value else {
        bail!("{shown}: expected a JSON object mapping recipe ids to recipes (Recipe Box format); use --format text for plain text");
    };
    let mut docs = Vec::with_capacity(map.len());
    for (id, recipe) in map {
        stats.recipes_read += 1;
        let obj = match recipe {
            serde_json::Value::Object(o) => o,
            serde_json::Value::Null => serde_json::Map::new(),
            _ => bail!("{shown}: recipe {id:?} is not an object with title/ingredients/instructions"),
        };
        let field_str = |name: &str| -> Result<String> {
            match obj.get(name) {
                None | Some(serde_json::Value::Null) => Ok(String::new()),
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(_) => bail!("{shown}: recipe {id:?}: field {name:?} must be a string or null"),
            }
        };
        let title = field_str("title")?;
        let instructions = field_str("instructions")?;
        let ingredients: Vec<String> = match obj.get("ingredients") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|v| match v {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(Ok(s.clone())),
                    _ => Some(Err(anyhow!("{shown}: recipe {id:?}: ingredients must be strings"))),
                })
                .collect::<Result<_>>()?,
            Some(_) => bail!("{shown}: recipe {id:?}: field \"ingredients\" must be a list of strings"),
        };
        let refs: Vec<&str> = ingredients.iter().map(String::as_str).collect();
        match serialize_recipe(&title, &refs, &instructions) {
            Ok(text) => docs.push(Doc { id, text }),
            Err(Drop::NoTitle) => stats.dropped_no_title += 1,
            Err(Drop::NoIngredients) => stats.dropped_no_ingredients += 1,
            Err(Drop::NoInstructions) => stats.dropped_no_instructions += 1,
        }
    }
    Ok(docs)
}

/// FNV-1a, 64 bit: a stable hash so the split never changes across Rust versions or platforms.
pub fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Final avalanche: FNV's low bits are weak for short, similar ids.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// True when the recipe with this id belongs to the validation split.
pub fn is_validation(id: &str, val_fraction: f64) -> bool {
    (stable_hash(id) as f64) < val_fraction * (u64::MAX as f64)
}

/// Splits documents into (train, validation) by the hash of their id.
pub fn split(docs: Vec<Doc>, val_fraction: f64) -> (Vec<Doc>, Vec<Doc>) {
    docs.into_iter().partition(|d| !is_validation(&d.id, val_fraction))
}

pub fn validate_fraction(f: f64) -> Result<()> {
    if !(0.0..1.0).contains(&f) || f.is_nan() {
        bail!("--val-fraction must be in [0, 1), got {f}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_removes_ads_and_collapses_space() {
        assert_eq!(clean("  Mix\t\twell ADVERTISEMENT now \n"), "Mix well now");
        assert_eq!(clean("ADVERTISEMENT"), "");
    }

    #[test]
    fn serialization_is_canonical() {
        let t = serialize_recipe(" Pie ", &["1 cup  flour", "", "ADVERTISEMENT"], "Mix.\n\n Bake.  ").unwrap();
        assert_eq!(t, "Title: Pie\nIngredients:\n- 1 cup flour\nInstructions:\nMix.\nBake.\n");
        assert_eq!(serialize_recipe(" ", &["x"], "y"), Err(Drop::NoTitle));
        assert_eq!(serialize_recipe("t", &["ADVERTISEMENT"], "y"), Err(Drop::NoIngredients));
        assert_eq!(serialize_recipe("t", &["x"], "\n \n"), Err(Drop::NoInstructions));
    }

    #[test]
    fn split_is_by_id_only() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("recipe{i}")).collect();
        let n_val = ids.iter().filter(|id| is_validation(id, 0.02)).count();
        assert!((150..250).contains(&n_val), "{n_val}");
        assert!(!is_validation("anything", 0.0));
    }
}
