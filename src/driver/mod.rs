//! The only code that speaks SQL: one narrow trait, one implementation per engine.

pub mod catalog;
pub mod compat;
pub mod connect;
pub mod error;
pub mod foreign;
pub mod ledger;
pub mod mysql;
pub mod offline;
pub mod postgres;
pub mod quote;
pub mod registry;
pub mod repeatable;
pub mod scratch;
pub mod session;
pub mod sqlite;
