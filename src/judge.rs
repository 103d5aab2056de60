//! Quality measures for generated recipes, aimed at what char-RNN recipe generators are known to get
//! wrong: broken structure, copied titles, the same ingredient listed twice, and instructions that
//! ignore the ingredient list.

use crate::sample::recipe_text::{normalize, parse, ParsedRecipe};
use serde::Serialize;
use std::collections::HashSet;

#[derive(Clone, Debug, Serialize)]
pub struct Judgement {
    pub samples: usize,
    /// Closed with `<eor>` and has a title, ≥ 1 ingredient and ≥ 1 instruction.
    pub valid_structure: f64,
    /// Stopped by the character budget before `<eor>` (counted as invalid).
    pub unfinished: f64,
    /// Among valid samples: titles not found (case-insensitively) among the training titles;
    /// `None` without a corpus to compare with.
    pub novel_titles: Option<f64>,
    /// Among valid samples: share with an ingredient line listed twice.
    pub repeated_ingredient: f64,
    /// Among valid samples: share of ingredient key words that the instructions mention.
    pub ingredient_coherence: f64,
    pub mean_chars: f64,
}

/// Words that end an ingredient line without naming the ingredient.
const NOT_KEYWORDS: &[&str] = &[
    "cup", "cups", "tablespoon", "tablespoons", "teaspoon", "teaspoons", "tbsp", "tsp", "ounce", "ounces", "pound",
    "pounds", "lb", "lbs", "oz", "g", "kg", "ml", "large", "small", "medium", "taste", "needed", "optional",
    "chopped", "minced", "sliced", "diced", "divided", "fresh", "freshly", "ground", "whole", "package", "can",
    "cans", "pinch", "dash", "more", "about", "each", "for", "and", "the", "into", "inch", "pieces", "piece",
];

/// The ingredient's key word: the last noun-ish word before any comma or parenthesis, singular.
pub fn ingredient_keyword(line: &str) -> Option<String> {
    let lower = line.to_lowercase();
    let mut head = String::new();
    let mut depth = 0;
    for c in lower.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = (depth - 1).max(0),
            ',' | ';' if depth == 0 => break,
            _ if depth == 0 => head.push(c),
            _ => {}
        }
    }
    let word = head
        .split(|c: char| !c.is_alphabetic())
        .rfind(|w| w.chars().count() >= 3 && !NOT_KEYWORDS.contains(w))?;
    Some(singular(word))
}

fn singular(w: &str) -> String {
    if let Some(s) = w.strip_suffix("ies") {
        format!("{s}y")
    } else if let Some(s) = w.strip_suffix("oes") {
        format!("{s}o")
    } else if w.ends_with('s') && !w.ends_with("ss") && w.len() > 3 {
        w[..w.len() - 1].to_string()
    } else {
        w.to_string()
    }
}

/// Judges generated texts; `finished[i]` says whether sample i ended with `<eor>`.
pub fn judge(texts: &[(String, bool)], training_titles: Option<&HashSet<String>>) -> Judgement {
    let parsed: Vec<Option<ParsedRecipe>> =
        texts.iter().map(|(t, finished)| if *finished { parse(t) } else { None }).collect();
    let valid: Vec<&ParsedRecipe> = parsed.iter().flatten().collect();
    let share = |n: usize, d: usize| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    let novel = training_titles.map(|titles| share(valid.iter().filter(|r| !titles.contains(&normalize(&r.title))).count(), valid.len()));
    let repeated = valid
        .iter()
        .filter(|r| {
            let mut seen = HashSet::new();
            !r.ingredients.iter().all(|i| seen.insert(normalize(i)))
        })
        .count();
    let (mut mentioned, mut keywords) = (0usize, 0usize);
    for r in &valid {
        let instructions = r.instructions.join(" ").to_lowercase();
        for k in r.ingredients.iter().filter_map(|i| ingredient_keyword(i)) {
            keywords += 1;
            // "tomato" is mentioned by "tomatoes"; the stem test allows plural and -ed forms.
            let stem: String = k.chars().take(k.chars().count().max(4) - 1).collect();
            if instructions.contains(&k) || (stem.chars().count() >= 4 && instructions.contains(&stem)) {
                mentioned += 1;
            }
        }
    }
    Judgement {
        samples: texts.len(),
        valid_structure: share(valid.len(), texts.len()),
        unfinished: share(texts.iter().filter(|(_, finished)| !finished).count(), texts.len()),
        novel_titles: novel,
        repeated_ingredient: share(repeated, valid.len()),
        ingredient_coherence: share(mentioned, keywords),
        mean_chars: texts.iter().map(|(t, _)| t.chars().count()).sum::<usize>() as f64 / texts.len().max(1) as f64,
    }
}

/// Titles of a corpus, normalized for the novelty test.
pub fn titles_of(docs: &[crate::corpus::Doc]) -> HashSet<String> {
    docs.iter().filter_map(|d| d.text.lines().next()?.strip_prefix("Title: ").map(normalize)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords() {
        assert_eq!(ingredient_keyword("2 cloves garlic, minced").as_deref(), Some("garlic"));
        assert_eq!(ingredient_keyword("4 large tomatoes (about 2 pounds)").as_deref(), Some("tomato"));
        assert_eq!(ingredient_keyword("1 cup all-purpose flour").as_deref(), Some("flour"));
        assert_eq!(ingredient_keyword("salt and pepper to taste").as_deref(), Some("pepper"));
        assert_eq!(ingredient_keyword("3 cherries").as_deref(), Some("cherry"));
    }

    #[test]
    fn measures() {
        let good = "Title: Soup\nIngredients:\n- 2 tomatoes\n- 1 onion\nInstructions:\nChop the tomatoes and simmer.\n";
        let dup = "Title: New Pie\nIngredients:\n- 1 egg\n- 1 Egg\nInstructions:\nBake.\n";
        let texts = vec![(good.to_string(), true), (dup.to_string(), true), ("Title: x\n".to_string(), true), (good.to_string(), false)];
        let titles: HashSet<String> = ["soup".to_string()].into();
        let j = judge(&texts, Some(&titles));
        assert_eq!(j.valid_structure, 0.5);
        assert_eq!(j.unfinished, 0.25);
        assert_eq!(j.novel_titles, Some(0.5));
        assert_eq!(j.repeated_ingredient, 0.5);
        assert!((j.ingredient_coherence - 1.0 / 4.0).abs() < 1e-12, "{}", j.ingredient_coherence); // tomato of 4 keywords
    }
}
