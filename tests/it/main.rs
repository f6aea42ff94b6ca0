//! The one integration-test binary: fleetmig against real SQLite files, PostgreSQL and
//! MariaDB. Server tests skip loudly when a server is missing, unless
//! FLEETMIG_REQUIRE_SERVERS=1 (CI) makes them mandatory.

mod support;

mod adopt;
mod aftermath;
mod architecture;
mod bad_input;
mod bad_input2;
mod breaker;
mod change_window;
mod check;
mod cli;
mod discover;
mod drift;
mod engines;
mod errors;
mod faults_pg;
mod final_report;
mod fleet_keys;
mod fuzz;
mod gates;
mod history_compat;
mod html;
mod join;
mod json_schema;
mod junit;
mod layout_sets;
mod layouts;
mod ledger;
mod ledger_faults;
mod lint;
mod metrics;
mod notify;
mod partition;
mod per_engine;
mod repeatables;
mod rollout;
mod safety;
mod seat;
mod selector_waves;
mod signals;
mod sqlite_fk;
mod status;
mod stock_tools;
mod truth;
mod versions;
