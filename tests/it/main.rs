//! hostsmith's integration tests: one binary, a module per area. Tests run the real
//! `hostsmith` binary in throwaway fleets and check what a user would see, against the
//! real peers (sops, age, ssh, cloud-init, nix, just) where the design asks for them.

mod age_convert;
mod common;
mod first_boot;
mod seeds;
mod sops_config;
mod sops_engine;
mod sshd;
mod vm_fresh;
