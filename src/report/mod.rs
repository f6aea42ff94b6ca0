//! Consumers of events and results: they write text or JSON and never touch a database.

pub mod check;
pub mod drift;
pub mod gates;
pub mod html;
pub mod json;
pub mod lint;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod progress;
pub mod refusals;
pub mod run;
pub mod status;
pub mod tables;
pub mod text;
