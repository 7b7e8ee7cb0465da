//! What an ordinary user's `lab` does before its command runs, while the process still has one
//! thread (the kernel lets only such a process enter a user namespace): nothing for root.
//!
//! - `lab up` starts a holder for the new lab and joins it;
//! - `lab run`, `lab up --hold` and `lab doctor` enter namespaces of their own;
//! - `lab exec`, `capture`, `check` join the holder of the lab they name;
//! - `lab down NAME` joins a lab's holder when it is another program's (`lab up --hold`,
//!   `lab run`); a lab with a holder of its own is removed from outside, by its processes;
//! - `lab list`, `clean`, `convert` need no namespace.

use anyhow::{Context, Result};
use lab::rootless::{self, Mode};
use lab::state::StateRecord;

/// What the command needs.
pub enum Need {
    /// Nothing: it reads or removes records.
    Nothing,
    /// Namespaces of its own, which end with it.
    Private,
    /// A holder for a new persistent lab.
    Holder,
    /// The namespaces of the named lab (or of the only lab).
    Join(Option<String>),
    /// `lab down NAME`: the lab's namespaces only when another live program holds them.
    Down(String),
}

/// Enters what `need` asks for.
pub fn enter(need: Need) -> Result<()> {
    if rootless::mode() != Mode::Rootless {
        return Ok(());
    }
    if matches!(need, Need::Nothing | Need::Down(_)) {
        rootless::name_dirs()?;
    } else {
        rootless::prepare_dirs()?;
    }
    match need {
        Need::Nothing => {}
        Need::Private => rootless::enter_private()?,
        Need::Holder => {
            let holder = rootless::spawn_holder()?;
            rootless::join(holder).context("joining the new lab's holder")?;
        }
        Need::Join(name) => {
            let lab = lab::Lab::attach_or_only(name.as_deref())?;
            join(lab.record())?;
        }
        Need::Down(name) => {
            let record =
                StateRecord::load(&name).with_context(|| format!("cannot remove lab `{name}`"))?;
            if rootless::held_elsewhere(&record) {
                join(&record)?;
            }
        }
    }
    Ok(())
}

fn join(record: &StateRecord) -> Result<()> {
    let Some(u) = &record.userns else {
        anyhow::bail!("lab `{}` was made by root: run this with sudo", record.name);
    };
    rootless::join(u.holder).with_context(|| format!("entering lab `{}`", record.name))?;
    Ok(())
}
