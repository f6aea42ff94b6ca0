//! Pure decisions: what to run on a tenant, which tenants a selector picks.

pub mod adopt;
pub mod drift;
pub mod lint;
pub mod select;
pub mod status;
pub mod tenant;
pub mod waves;
