//! gen: character-level recipe models and tau-lepton momentum regression on candle.
//!
//! Recipes: corpus → tokenizer → model → train → checkpoint → sample.
//! Taus:    tau::generator → tau::dataset → tau::model → tau::train → tau::report.
//! The recurrent layer (`nn::recurrent`) is written once and serves both halves.

pub mod checkpoint;
pub mod corpus;
pub mod device;
pub mod duration;
pub mod eval;
pub mod fsutil;
pub mod judge;
pub mod model;
pub mod plot;
pub mod nn;
pub mod rng;
pub mod sample;
pub mod tau;
pub mod tokenizer;
pub mod train;
