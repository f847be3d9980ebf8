//! One module per subcommand: its clap `Args` and its `run`.

pub mod adopt;
pub mod cloud_init;
pub mod demo;
pub mod extra_files;
pub mod init;
pub mod known_hosts;
pub mod sops;
pub mod verify;
pub mod vm_fresh;
