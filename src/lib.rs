//! hostsmith: forge a machine's identity before the machine exists.
#![forbid(unsafe_code)]

pub mod address;
pub mod admin_identity;
pub mod age_convert;
pub mod atomic;
pub mod cli;
pub mod cloud_init;
pub mod command;
pub mod config;
pub mod deploy_keys;
pub mod enroll;
pub mod error;
pub mod fleet;
pub mod host_file;
pub mod host_name;
pub mod keyscan;
pub mod known_hosts;
pub mod openssh;
pub mod output;
pub mod process;
pub mod proxmox;
pub mod record;
pub mod rekey;
pub mod seed;
pub mod sops;
pub mod ssh_keys;
pub mod sync;
