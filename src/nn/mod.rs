//! Neural-network building blocks shared by the recipe and tau models.

pub mod attention;
pub mod layer_norm;
pub mod recurrent;
