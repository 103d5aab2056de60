//! Neural-network building blocks shared by the recipe and tau models.

pub mod recurrent;
