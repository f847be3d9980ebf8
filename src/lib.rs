//! hostsmith: forge a machine's identity before the machine exists.
#![forbid(unsafe_code)]

pub mod sops_config;
pub mod sopsfile;
pub mod yaml;
pub mod age_convert;
pub mod error;
pub mod host_name;
pub mod ssh_keys;
pub mod atomic;
pub mod config;
pub mod identity;
pub mod record;
pub mod fleet;
pub mod output;
