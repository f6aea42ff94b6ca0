//! Reading the migrations folder and the fleet file into the model.

pub mod discover;
pub mod fleet;
pub mod layouts;
pub mod migrations;
pub mod source;
