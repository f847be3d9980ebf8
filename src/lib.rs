//! hostsmith: forge a machine's identity before the machine exists.
#![forbid(unsafe_code)]

pub mod sops_config;
pub mod sopsfile;
pub mod yaml;
