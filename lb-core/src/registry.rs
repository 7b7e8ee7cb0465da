//! The server's backend registry: static backends from the configuration and backends
//! registered by agents, with what operators, agents and health checks say about each. Pure:
//! every change takes `now` and returns the [`Update`]s the data paths must apply, so each
//! data-path thread's [`crate::State`] follows the registry by messages alone.
//!
//! A backend's state in the data path ([`BackendState`]) follows from, in this order:
//! health down (active checks failed `fall` times) or a drain past its deadline → `Down` (its
//! tracked flows move); paused by its agent or draining → `Draining` (tracked flows stay, no
//! new ones); otherwise `Active`.

use crate::backend::{BackendSpec, BackendState};
use crate::time::Nanos;
use crate::wire::MacAddr;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// A backend as operators see it (`lb ctl backends`), finer than the data path's
/// [`BackendState`]: a paused and a draining backend are both `Draining` there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Takes new flows.
    Active,
    /// Paused by its agent: no new flows, tracked flows continue.
    Paused,
    /// Drained by an operator, deadline not passed: no new flows, tracked flows continue.
    Draining,
    /// Drained and the deadline passed: down.
    Drained,
    /// Its active checks failed: down.
    Down,
}

impl Status {
    /// The word, as on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Paused => "paused",
            Status::Draining => "draining",
            Status::Drained => "drained",
            Status::Down => "down",
        }
    }
}

/// Where a backend came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The configuration (`[[server.backends]]` or `--backend`): no agent.
    Static,
    /// An agent's registration over :1338, on control connection `conn`.
    Agent {
        /// The control connection's id.
        conn: u64,
    },
}

/// An operator's drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Drain {
    /// When the drain started.
    pub since: Nanos,
    /// When tracked flows stop being honoured (the backend goes down).
    pub deadline: Nanos,
}

/// Active health-check state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// Whether the application answers (starts true; see docs/protocol.md).
    pub up: bool,
    /// Consecutive successes (while down) or failures (while up) toward a change.
    pub streak: u32,
    /// Checks done.
    pub checks: u64,
    /// The last failure, if the last check failed.
    pub last_error: Option<String>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            up: true,
            streak: 0,
            checks: 0,
            last_error: None,
        }
    }
}

/// One backend as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Name (unique).
    pub name: String,
    /// Data address.
    pub addr: Ipv4Addr,
    /// MAC for DSR.
    #[serde(skip)]
    pub mac: MacAddr,
    /// Maglev weight.
    pub weight: u32,
    /// Static or registered.
    pub origin: Origin,
    /// Paused by its agent (`PAUSE`).
    pub paused: bool,
    /// Draining by an operator (`lb ctl drain`).
    pub drain: Option<Drain>,
    /// Active checks.
    pub health: Health,
    /// When it was added.
    pub since: Nanos,
    /// Bumped on every (re-)registration, so a stale check result is ignored.
    pub epoch: u64,
}

impl Entry {
    /// The state the data paths give this backend at `now`.
    pub fn state(&self, now: Nanos) -> BackendState {
        if !self.health.up || self.drain.is_some_and(|d| now >= d.deadline) {
            BackendState::Down
        } else if self.paused || self.drain.is_some() {
            BackendState::Draining
        } else {
            BackendState::Active
        }
    }

    /// What operators are told: active, paused, draining, drained (deadline passed), down.
    pub fn status(&self, now: Nanos) -> Status {
        if !self.health.up {
            Status::Down
        } else if self.drain.is_some_and(|d| now >= d.deadline) {
            Status::Drained
        } else if self.drain.is_some() {
            Status::Draining
        } else if self.paused {
            Status::Paused
        } else {
            Status::Active
        }
    }

    fn spec(&self, now: Nanos) -> BackendSpec {
        BackendSpec::new(self.name.clone(), self.addr, self.mac)
            .with_weight(self.weight)
            .with_state(self.state(now))
    }
}

/// One change for the data paths, by backend name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Add the backend, or replace its spec.
    Upsert(BackendSpec),
    /// Remove the backend.
    Remove(String),
}

/// Why the registry refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No backend by this name.
    #[error("no backend named {0:?}")]
    Unknown(String),
    /// The name is taken by a static backend or another agent.
    #[error("name {name:?} is taken by {by}")]
    NameTaken {
        /// The name.
        name: String,
        /// Who holds it.
        by: String,
    },
    /// The address is another backend's.
    #[error("address {addr} is already backend {name:?}'s")]
    AddrTaken {
        /// The address.
        addr: Ipv4Addr,
        /// The backend holding it.
        name: String,
    },
    /// Too many registered backends.
    #[error("backend limit reached ({0})")]
    Full(usize),
    /// The backend is in no state for this.
    #[error("{0}")]
    State(&'static str),
}

/// Rise and fall counts of the active checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive successes that bring a down backend up.
    pub rise: u32,
    /// Consecutive failures that take an up backend down.
    pub fall: u32,
}

/// The registry.
#[derive(Debug, Clone)]
pub struct Registry {
    entries: BTreeMap<String, Entry>,
    max_agents: usize,
    thresholds: Thresholds,
    epochs: u64,
}

impl Registry {
    /// An empty registry accepting at most `max_agents` registered backends.
    pub fn new(max_agents: usize, thresholds: Thresholds) -> Registry {
        Registry {
            entries: BTreeMap::new(),
            max_agents,
            thresholds,
            epochs: 0,
        }
    }

    /// Every backend, by name.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.entries.values()
    }

    /// The backend named `name`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// Registered backends.
    pub fn agents(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e.origin, Origin::Agent { .. }))
            .count()
    }

    fn snapshot(&self, now: Nanos) -> BTreeMap<String, BackendSpec> {
        self.entries
            .iter()
            .map(|(n, e)| (n.clone(), e.spec(now)))
            .collect()
    }

    /// Runs `f` and returns the data-path updates its changes need.
    fn change<T>(
        &mut self,
        now: Nanos,
        f: impl FnOnce(&mut Self) -> Result<T, RegistryError>,
    ) -> Result<(T, Vec<Update>), RegistryError> {
        let before = self.snapshot(now);
        let out = f(self)?;
        Ok((out, diff(&before, &self.snapshot(now))))
    }

    /// Adds a static backend.
    pub fn add_static(
        &mut self,
        spec: &BackendSpec,
        now: Nanos,
    ) -> Result<Vec<Update>, RegistryError> {
        let origin = Origin::Static;
        self.change(now, |r| {
            r.insert(&spec.name, spec.addr, spec.mac, spec.weight, origin, now)
        })
        .map(|(_, u)| u)
    }

    /// Removes a static backend (`lb ctl remove`); an agent's backend leaves when its agent
    /// deregisters.
    pub fn remove_static(&mut self, name: &str, now: Nanos) -> Result<Vec<Update>, RegistryError> {
        match self.entries.get(name).map(|e| e.origin) {
            None => Err(RegistryError::Unknown(name.into())),
            Some(Origin::Agent { .. }) => Err(RegistryError::State(
                "registered by an agent: it leaves when its agent deregisters (lb ctl deregister on the backend)",
            )),
            Some(Origin::Static) => self
                .change(now, |r| {
                    r.entries.remove(name);
                    Ok(())
                })
                .map(|(_, u)| u),
        }
    }

    /// Checks that an agent may register `name` at `addr` from connection `conn`; returns the
    /// connection that holds the name now (same name and address: the agent came back, its
    /// old connection is replaced).
    pub fn may_register(&self, name: &str, addr: Ipv4Addr) -> Result<Option<u64>, RegistryError> {
        if let Some(e) = self.entries.get(name) {
            return match e.origin {
                Origin::Agent { conn } if e.addr == addr => Ok(Some(conn)),
                Origin::Agent { .. } => Err(RegistryError::NameTaken {
                    name: name.into(),
                    by: format!("an agent at {}", e.addr),
                }),
                Origin::Static => Err(RegistryError::NameTaken {
                    name: name.into(),
                    by: "a static backend".into(),
                }),
            };
        }
        if let Some(e) = self.entries.values().find(|e| e.addr == addr) {
            return Err(RegistryError::AddrTaken {
                addr,
                name: e.name.clone(),
            });
        }
        if self.agents() >= self.max_agents {
            return Err(RegistryError::Full(self.max_agents));
        }
        Ok(None)
    }

    /// Registers (or re-registers) an agent's backend on connection `conn`.
    pub fn register(
        &mut self,
        name: &str,
        addr: Ipv4Addr,
        conn: u64,
        now: Nanos,
    ) -> Result<Vec<Update>, RegistryError> {
        self.may_register(name, addr)?;
        self.change(now, |r| {
            r.entries.remove(name);
            r.insert(
                name,
                addr,
                MacAddr::default(),
                1,
                Origin::Agent { conn },
                now,
            )
        })
        .map(|(_, u)| u)
    }

    fn insert(
        &mut self,
        name: &str,
        addr: Ipv4Addr,
        mac: MacAddr,
        weight: u32,
        origin: Origin,
        now: Nanos,
    ) -> Result<(), RegistryError> {
        if let Some(e) = self.entries.get(name) {
            return Err(RegistryError::NameTaken {
                name: name.into(),
                by: format!("backend at {}", e.addr),
            });
        }
        self.epochs += 1;
        self.entries.insert(
            name.to_string(),
            Entry {
                name: name.to_string(),
                addr,
                mac,
                weight,
                origin,
                paused: false,
                drain: None,
                health: Health::default(),
                since: now,
                epoch: self.epochs,
            },
        );
        Ok(())
    }

    /// Removes an agent's backend if it is still held by connection `conn`.
    pub fn deregister(&mut self, name: &str, conn: u64, now: Nanos) -> Vec<Update> {
        self.change(now, |r| {
            if r.entries
                .get(name)
                .is_some_and(|e| e.origin == Origin::Agent { conn })
            {
                r.entries.remove(name);
            }
            Ok(())
        })
        .map(|(_, u)| u)
        .unwrap_or_default()
    }

    /// `PAUSE` from the agent: no new flows, tracked flows stay.
    pub fn pause(&mut self, name: &str, now: Nanos) -> Result<Vec<Update>, RegistryError> {
        self.change(now, |r| {
            let e = r.entry(name)?;
            if e.paused {
                return Err(RegistryError::State("backend already paused"));
            }
            e.paused = true;
            Ok(())
        })
        .map(|(_, u)| u)
    }

    /// `RESUME` from the agent.
    pub fn resume(&mut self, name: &str, now: Nanos) -> Result<Vec<Update>, RegistryError> {
        self.change(now, |r| {
            let e = r.entry(name)?;
            if !e.paused {
                return Err(RegistryError::State("backend already active"));
            }
            e.paused = false;
            Ok(())
        })
        .map(|(_, u)| u)
    }

    /// An operator's drain: no new flows; tracked ones until `deadline`.
    pub fn drain(
        &mut self,
        name: &str,
        deadline: Nanos,
        now: Nanos,
    ) -> Result<Vec<Update>, RegistryError> {
        self.change(now, |r| {
            r.entry(name)?.drain = Some(Drain {
                since: now,
                deadline,
            });
            Ok(())
        })
        .map(|(_, u)| u)
    }

    /// Ends a drain.
    pub fn undrain(&mut self, name: &str, now: Nanos) -> Result<Vec<Update>, RegistryError> {
        self.change(now, |r| {
            let e = r.entry(name)?;
            if e.drain.take().is_none() {
                return Err(RegistryError::State("backend is not draining"));
            }
            Ok(())
        })
        .map(|(_, u)| u)
    }

    /// One active-check result for `name` as of registration `epoch` (stale ones are ignored).
    pub fn check_result(
        &mut self,
        name: &str,
        epoch: u64,
        result: Result<(), String>,
        now: Nanos,
    ) -> Vec<Update> {
        let t = self.thresholds;
        self.change(now, |r| {
            let Some(e) = r.entries.get_mut(name).filter(|e| e.epoch == epoch) else {
                return Ok(());
            };
            let h = &mut e.health;
            h.checks += 1;
            let ok = result.is_ok();
            h.last_error = result.err();
            if ok == h.up {
                h.streak = 0;
            } else {
                h.streak += 1;
                if h.streak >= if h.up { t.fall } else { t.rise } {
                    h.up = ok;
                    h.streak = 0;
                }
            }
            Ok(())
        })
        .map(|(_, u)| u)
        .unwrap_or_default()
    }

    /// Time passing: drains whose deadline passed take their backend down.
    pub fn tick(&mut self, before: Nanos, now: Nanos) -> Vec<Update> {
        diff(&self.snapshot(before), &self.snapshot(now))
    }

    fn entry(&mut self, name: &str) -> Result<&mut Entry, RegistryError> {
        self.entries
            .get_mut(name)
            .ok_or_else(|| RegistryError::Unknown(name.into()))
    }
}

fn diff(
    before: &BTreeMap<String, BackendSpec>,
    after: &BTreeMap<String, BackendSpec>,
) -> Vec<Update> {
    let mut out: Vec<Update> = before
        .keys()
        .filter(|n| !after.contains_key(*n))
        .map(|n| Update::Remove(n.clone()))
        .collect();
    out.extend(
        after
            .iter()
            .filter(|(n, s)| before.get(*n) != Some(s))
            .map(|(_, s)| Update::Upsert(s.clone())),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds { rise: 2, fall: 3 };

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, n)
    }

    fn s(n: u64) -> Nanos {
        Nanos::from_secs(n)
    }

    fn state_of(u: &[Update], name: &str) -> Option<BackendState> {
        u.iter().find_map(|u| match u {
            Update::Upsert(s) if s.name == name => Some(s.state),
            _ => None,
        })
    }

    #[test]
    fn register_pause_resume_deregister() {
        let mut r = Registry::new(8, T);
        let u = r.register("h2", ip(2), 1, s(0)).unwrap();
        assert_eq!(state_of(&u, "h2"), Some(BackendState::Active));
        let u = r.pause("h2", s(1)).unwrap();
        assert_eq!(state_of(&u, "h2"), Some(BackendState::Draining));
        assert_eq!(
            r.pause("h2", s(1)),
            Err(RegistryError::State("backend already paused"))
        );
        let u = r.resume("h2", s(2)).unwrap();
        assert_eq!(state_of(&u, "h2"), Some(BackendState::Active));
        // Another connection cannot remove it; its own can.
        assert!(r.deregister("h2", 9, s(3)).is_empty());
        assert_eq!(
            r.deregister("h2", 1, s(3)),
            vec![Update::Remove("h2".into())]
        );
        assert_eq!(r.agents(), 0);
    }

    #[test]
    fn names_and_addresses_are_unique() {
        let mut r = Registry::new(2, T);
        r.add_static(&BackendSpec::new("s1", ip(9), MacAddr::default()), s(0))
            .unwrap();
        assert!(matches!(
            r.register("s1", ip(2), 1, s(0)),
            Err(RegistryError::NameTaken { .. })
        ));
        assert!(matches!(
            r.register("x", ip(9), 1, s(0)),
            Err(RegistryError::AddrTaken { .. })
        ));
        r.register("h2", ip(2), 1, s(0)).unwrap();
        // The same agent coming back on a new connection replaces its old one.
        assert_eq!(r.may_register("h2", ip(2)), Ok(Some(1)));
        r.register("h2", ip(2), 2, s(1)).unwrap();
        assert_eq!(r.get("h2").unwrap().origin, Origin::Agent { conn: 2 });
        assert!(matches!(
            r.register("h2", ip(3), 3, s(1)),
            Err(RegistryError::NameTaken { .. })
        ));
        r.register("h3", ip(3), 3, s(1)).unwrap();
        assert_eq!(
            r.register("h4", ip(4), 4, s(1)),
            Err(RegistryError::Full(2))
        );
    }

    #[test]
    fn health_rise_and_fall() {
        let mut r = Registry::new(8, T);
        r.register("h2", ip(2), 1, s(0)).unwrap();
        let epoch = r.get("h2").unwrap().epoch;
        let fail = || Err("connection refused".to_string());
        assert!(r.check_result("h2", epoch, fail(), s(1)).is_empty());
        assert!(r.check_result("h2", epoch, fail(), s(2)).is_empty());
        let u = r.check_result("h2", epoch, fail(), s(3));
        assert_eq!(state_of(&u, "h2"), Some(BackendState::Down));
        assert_eq!(r.get("h2").unwrap().status(s(3)), Status::Down);
        assert!(r.check_result("h2", epoch, Ok(()), s(4)).is_empty());
        let u = r.check_result("h2", epoch, Ok(()), s(5));
        assert_eq!(state_of(&u, "h2"), Some(BackendState::Active));
        // A result for an older registration is ignored.
        for t in 6..10 {
            assert!(r.check_result("h2", epoch + 1, fail(), s(t)).is_empty());
        }
        // A success in the middle of failures resets the streak.
        r.check_result("h2", epoch, fail(), s(10));
        r.check_result("h2", epoch, fail(), s(11));
        r.check_result("h2", epoch, Ok(()), s(12));
        assert!(r.check_result("h2", epoch, fail(), s(13)).is_empty());
    }

    #[test]
    fn drain_until_deadline() {
        let mut r = Registry::new(8, T);
        r.add_static(&BackendSpec::new("s1", ip(9), MacAddr::default()), s(0))
            .unwrap();
        let u = r.drain("s1", s(10), s(0)).unwrap();
        assert_eq!(state_of(&u, "s1"), Some(BackendState::Draining));
        assert!(r.tick(s(0), s(5)).is_empty());
        let u = r.tick(s(5), s(10));
        assert_eq!(state_of(&u, "s1"), Some(BackendState::Down));
        assert_eq!(r.get("s1").unwrap().status(s(10)), Status::Drained);
        let u = r.undrain("s1", s(11)).unwrap();
        assert_eq!(state_of(&u, "s1"), Some(BackendState::Active));
        assert!(r.undrain("s1", s(11)).is_err());
        assert_eq!(
            r.drain("nope", s(1), s(0)),
            Err(RegistryError::Unknown("nope".into()))
        );
    }
}
