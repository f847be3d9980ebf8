//! One module per subcommand: its clap `Args` and its `run`.

pub mod adopt;
pub mod demo;
pub mod init;
pub mod sops;
pub mod vm_fresh;
