//! The balancer's contact with the kernel: route netlink, iptables rules, sockets and sysctls.
//! Everything here runs in the namespace of the calling process.

pub mod flowmap;
pub mod markroute;
pub mod netlink;
pub mod rules;
pub mod sock;
pub mod wake;

use anyhow::{Context, Result};
use std::time::Instant;

/// Monotonic nanoseconds since the process's first call, for the core's clock.
pub fn now() -> lb_core::Nanos {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    lb_core::Nanos(start.elapsed().as_nanos() as u64)
}

/// The file under /proc/sys of a sysctl. The name is dotted (`net.ipv4.ip_forward`) or, as
/// `sysctl(8)` also accepts, slash-separated (`net/ipv4/conf/eth0.100/forwarding`), the form
/// for interface names that hold a dot.
fn sysctl_path(name: &str) -> String {
    match name.contains('/') {
        true => format!("/proc/sys/{name}"),
        false => format!("/proc/sys/{}", name.replace('.', "/")),
    }
}

/// A sysctl's value (names as [`sysctl_path`] takes them).
pub fn read_sysctl(name: &str) -> Result<String> {
    let value = std::fs::read_to_string(sysctl_path(name))
        .with_context(|| format!("read sysctl {name}"))?;
    Ok(value.trim().to_string())
}

/// A sysctl read then written; returns the old value (names as [`sysctl_path`] takes them).
pub fn set_sysctl(name: &str, value: &str) -> Result<String> {
    let old = read_sysctl(name)?;
    std::fs::write(sysctl_path(name), value)
        .with_context(|| format!("set sysctl {name}={value}"))?;
    Ok(old)
}

/// Sysctls set by this process, restored (in reverse order) when dropped.
#[derive(Debug, Default)]
pub struct Sysctls {
    old: Vec<(String, String)>,
}

impl Sysctls {
    /// Sets each `(name, value)` (names as [`set_sysctl`] takes them), remembering the old
    /// values; on an error the ones already set are restored.
    pub fn set(settings: &[(&str, &str)]) -> Result<Sysctls> {
        let mut s = Sysctls::default();
        for &(name, value) in settings {
            let old = set_sysctl(name, value)?;
            s.old.push((name.to_string(), old));
        }
        Ok(s)
    }
}

impl Drop for Sysctls {
    fn drop(&mut self) {
        for (name, old) in self.old.drain(..).rev() {
            if let Err(e) = set_sysctl(&name, &old) {
                tracing::error!("restore sysctl {name}={old}: {e:#}");
            }
        }
    }
}

/// Runs the future `make` builds on a thread of its own named `name`, on a current-thread
/// tokio runtime inside a `LocalSet` (the control planes share state through `Rc`, so their
/// futures are not `Send`); returns when the future does.
pub fn spawn_local_thread<F>(
    name: &str,
    make: impl FnOnce() -> F + Send + 'static,
) -> Result<std::thread::JoinHandle<()>>
where
    F: std::future::Future<Output = ()> + 'static,
{
    let what = name.to_string();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("{what} runtime: {e}");
                    return;
                }
            };
            tokio::task::LocalSet::new().block_on(&rt, make());
        })
        .with_context(|| format!("spawn the {name} thread"))
}
