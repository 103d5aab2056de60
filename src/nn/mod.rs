//! Neural-network building blocks shared by the recipe and tau models.

pub mod attention;
pub(crate) mod cpu;
pub mod gelu;
pub mod layer_norm;
pub mod linear;
pub mod recurrent;
