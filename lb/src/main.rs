//! `lb`: the load balancer binary: `lb server` (the balancer), `lb agent` (its backend side)
//! and `lb ctl` (the operator's client). Everything is in the library (`lb::main`); the pure
//! data path is the `lb-core` crate.

fn main() -> std::process::ExitCode {
    lb::main()
}
