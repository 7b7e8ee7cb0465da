//! How `lb server` receives the VIP's packets (`--intake`): [`nfqueue`] (rules and verdicts)
//! or [`packet`] (an AF_PACKET socket, no rule). Each loop hands batches to a `DataPath`.

pub mod nfqueue;
pub mod packet;
