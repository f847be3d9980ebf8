//! hostsmith: forge a machine's identity before the machine exists.
//!
//! The modules the integration tests drive directly are `pub`; the rest are the crate's own.
//! docs/architecture.md has one line per module.
#![forbid(unsafe_code)]

pub(crate) mod address;
pub(crate) mod admin_identity;
pub(crate) mod age_convert;
pub(crate) mod age_ui;
pub mod atomic;
pub mod cli;
pub(crate) mod cloud_init;
pub(crate) mod command;
pub(crate) mod config;
pub(crate) mod deploy_key_check;
pub mod deploy_keys;
pub(crate) mod duration;
pub(crate) mod enroll;
pub(crate) mod error;
pub(crate) mod fleet;
pub(crate) mod fleet_check;
pub(crate) mod fleet_justfile;
pub(crate) mod fleet_report;
pub(crate) mod github_keys;
pub mod gnupg;
pub(crate) mod host_file;
pub(crate) mod host_name;
pub(crate) mod host_template;
pub(crate) mod journal;
pub(crate) mod key_audit;
pub(crate) mod keyscan;
pub(crate) mod known_hosts;
pub(crate) mod layout_guess;
pub(crate) mod openssh;
pub(crate) mod out_tree;
pub(crate) mod output;
pub(crate) mod parallel;
pub(crate) mod process;
pub(crate) mod proxmox;
pub mod recipient;
pub(crate) mod record;
pub(crate) mod rekey;
pub(crate) mod seed;
pub mod sops;
pub mod ssh_keys;
pub(crate) mod state;
pub mod sync;
pub(crate) mod trust;
