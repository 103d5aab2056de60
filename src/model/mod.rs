//! Character-level language models over the recipe token stream.

pub mod transformer;
