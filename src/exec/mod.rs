//! Running commands over tenants: fan-out under limits, one event stream out.

pub mod breaker;
pub mod check;
pub mod dispatch;
pub mod drift;
pub mod events;
pub mod join;
pub mod run;
pub mod tenant;
pub mod turns;
pub mod wait;
pub mod window;
pub mod work;
