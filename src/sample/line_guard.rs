//! Sampling without repeated ingredient lines.
//!
//! Character models lose track of what they have listed and write "1 teaspoon ground cinnamon" five
//! times (a quarter of the shipped model's samples repeat a line; 4.8% of real recipes do). The guard
//! watches each stream's lines: when an ingredient line ends that the recipe already lists, the
//! stream steps back to the start of that line (its model state and logits as they were) and samples
//! the line again, so the model itself picks something else. Like `no_repeat_ngram_size` in other
//! generators, this is a decoding rule, not a better model; `--allow-repeats` turns it off.

use super::recipe_text::normalize;
use std::collections::HashSet;

/// Attempts per line before a repeat is accepted (a model that insists would otherwise loop).
const MAX_RETRIES: u32 = 20;

/// One stream's record of its recipe's lines.
pub struct LineGuard {
    in_ingredients: bool,
    listed: HashSet<String>,
    /// Byte offset in the text where the current line starts.
    pub line_start: usize,
    retries: u32,
    /// Rewound lines so far (reported by `judge`).
    pub rewinds: u32,
}

impl LineGuard {
    /// A guard that has read `prime` (its complete lines count as written).
    pub fn new(prime: &str) -> Self {
        let mut g = LineGuard { in_ingredients: false, listed: HashSet::new(), line_start: 0, retries: 0, rewinds: 0 };
        let mut start = 0;
        while let Some(n) = prime[start..].find('\n') {
            g.accept(&prime[start..start + n]);
            start += n + 1;
        }
        g.line_start = start;
        g
    }

    /// Whether `line` (without its newline) ends a line the recipe already lists; if so it counts a
    /// retry, and after `MAX_RETRIES` it lets the line through. Otherwise records the line.
    pub fn rejects(&mut self, line: &str) -> bool {
        if let Some(item) = line.strip_prefix("- ").filter(|_| self.in_ingredients) {
            if self.listed.contains(&normalize(item)) && self.retries < MAX_RETRIES {
                self.retries += 1;
                self.rewinds += 1;
                return true;
            }
        }
        self.accept(line);
        false
    }

    fn accept(&mut self, line: &str) {
        self.retries = 0;
        match line {
            "Ingredients:" => self.in_ingredients = true,
            "Instructions:" => self.in_ingredients = false,
            _ => {
                if let Some(item) = line.strip_prefix("- ").filter(|_| self.in_ingredients) {
                    self.listed.insert(normalize(item));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_only_repeated_ingredient_lines() {
        let mut g = LineGuard::new("Title: Pie\nIngredients:\n- 1 cup flour\n- 2 eggs\n");
        assert!(g.rejects("- 1 Cup  flour"));
        assert!(!g.rejects("- 1 cup sugar"));
        assert!(g.rejects("- 1 cup sugar"));
        assert!(!g.rejects("Instructions:"));
        assert!(!g.rejects("- 1 cup flour"), "instruction lines are never rewound");
        assert_eq!(g.rewinds, 2);
    }

    #[test]
    fn gives_up_after_the_retry_limit() {
        let mut g = LineGuard::new("Ingredients:\n- salt\n");
        for _ in 0..MAX_RETRIES {
            assert!(g.rejects("- salt"));
        }
        assert!(!g.rejects("- salt"));
        assert!(g.rejects("- salt"), "the count starts again on the next line");
    }
}
