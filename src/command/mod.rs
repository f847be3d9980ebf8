//! One module per subcommand: its clap `Args` and its `run`.

pub mod adopt;
pub mod audit;
pub mod cloud_init;
pub mod completions;
pub mod config;
pub mod connect;
pub mod demo;
pub mod deploy_image;
pub mod deploy_keys;
pub mod extra_files;
pub mod init;
pub mod keys;
pub mod known_hosts;
pub mod sops;
pub mod sops_rekey;
pub mod ssh_config;
pub mod sync;
pub mod verify;
pub mod vm_fresh;
