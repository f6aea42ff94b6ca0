//! `lint`: statements that hurt a live fleet, found in migration text. Pure: text in,
//! findings out; the fleet's counts come in as data.

mod facts;
mod file;
mod postgres;
mod reach;
mod rules;
mod sql;
mod suppress;

pub use file::{Context, Source, lint_file, lint_set};
pub use reach::{Surveyed, reach};
