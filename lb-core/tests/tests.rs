//! `lb-core` integration tests, one binary: fixture tables, properties, state behaviour, batches.

#[path = "suite/batch.rs"]
mod batch;
#[path = "suite/fixtures.rs"]
mod fixtures;
#[path = "suite/gen_fixtures.rs"]
mod gen_fixtures;
#[path = "suite/props.rs"]
mod props;
#[path = "suite/provision.rs"]
mod provision;
#[path = "suite/state.rs"]
mod state;
