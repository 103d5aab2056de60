//! Reading generated text back into a recipe: the inverse of the canonical serialization in
//! `corpus` ("Title: …\nIngredients:\n- …\nInstructions:\n…").

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ParsedRecipe {
    pub title: String,
    pub ingredients: Vec<String>,
    pub instructions: Vec<String>,
}

/// The recipe in `text`, or `None` when it lacks a title, an ingredient or an instruction, or its
/// sections are out of order.
pub fn parse(text: &str) -> Option<ParsedRecipe> {
    let mut lines = text.lines();
    let title = lines.next()?.strip_prefix("Title: ")?.trim().to_string();
    if title.is_empty() || lines.next()? != "Ingredients:" {
        return None;
    }
    let mut ingredients = Vec::new();
    let mut instructions = Vec::new();
    let mut in_instructions = false;
    for line in lines {
        if !in_instructions {
            if line == "Instructions:" {
                in_instructions = true;
            } else {
                ingredients.push(line.strip_prefix("- ")?.trim().to_string());
            }
        } else if !line.trim().is_empty() {
            instructions.push(line.trim().to_string());
        }
    }
    (!ingredients.is_empty() && !instructions.is_empty()).then_some(ParsedRecipe { title, ingredients, instructions })
}

/// A line as the repetition and novelty measures compare it: lower case, whitespace collapsed.
pub fn normalize(s: &str) -> String {
    s.to_lowercase().split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::serialize_recipe;

    #[test]
    fn round_trips_the_canonical_form() {
        let text = serialize_recipe("Pie", &["1 cup flour", "2 eggs"], "Mix.\nBake.").unwrap();
        let r = parse(&text).unwrap();
        assert_eq!(r.title, "Pie");
        assert_eq!(r.ingredients, vec!["1 cup flour", "2 eggs"]);
        assert_eq!(r.instructions, vec!["Mix.", "Bake."]);
        assert!(parse("Title: Pie\nIngredients:\nInstructions:\nMix.\n").is_none());
        assert!(parse("Pie\n").is_none());
        assert!(parse("Title: Pie\nIngredients:\n- egg\n").is_none());
    }
}
