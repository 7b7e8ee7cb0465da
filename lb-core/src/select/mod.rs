//! Choosing a flow's backend: the stable flow [`hash`], the [`maglev`] table for new flows and
//! the [`conntable`] that keeps tracked flows on the backend they started with.

pub mod conntable;
pub mod hash;
pub mod maglev;
