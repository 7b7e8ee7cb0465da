//! The `lab` command's subcommands, one module each; `main.rs` parses and dispatches to them.

pub mod capture;
pub mod doctor;
pub mod explore;
pub mod impair;
pub mod lifecycle;
pub mod list;
pub mod rootless;
pub mod run;

/// Who builds a lab's network (`--backend`, `--switch`).
#[derive(clap::Args, Debug, Clone)]
pub struct BuildArgs {
    /// Who builds the network: lab itself (namespaces over netlink), or Mininet 2.3 through
    /// its Python API (hosts in namespaces, switches in the root namespace).
    #[arg(long, value_enum, default_value_t = BackendArg::Native)]
    pub backend: BackendArg,
    /// Mininet's switch: Linux bridges (`lxbr`), or Open vSwitch in standalone mode (`ovs`).
    /// Needs --backend mininet.
    #[arg(long, value_enum, value_name = "SWITCH")]
    pub switch: Option<SwitchArg>,
}

/// `--backend`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendArg {
    /// Namespaces, veth and bridges built by lab.
    Native,
    /// The same, built by Mininet.
    Mininet,
}

/// `--switch`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchArg {
    /// Mininet's LinuxBridge.
    Lxbr,
    /// Mininet's OVSSwitch, standalone (no controller).
    Ovs,
}

impl BuildArgs {
    /// The builder these flags choose, or what is wrong with them.
    pub fn builder(&self) -> Result<lab::Builder, String> {
        use lab::state::SwitchKind;
        match (self.backend, self.switch) {
            (BackendArg::Native, None) => Ok(lab::Builder::Native),
            (BackendArg::Native, Some(_)) => {
                Err("--switch chooses Mininet's switch: it needs --backend mininet".into())
            }
            (BackendArg::Mininet, s) => Ok(lab::Builder::Mininet(match s {
                Some(SwitchArg::Ovs) => SwitchKind::Ovs,
                _ => SwitchKind::Lxbr,
            })),
        }
    }
}
