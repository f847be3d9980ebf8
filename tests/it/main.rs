//! hostsmith's integration tests: one binary, a module per area. Tests run the real
//! `hostsmith` binary in throwaway fleets and check what a user would see, against the
//! real peers (sops, age, ssh, cloud-init, nix, just) where the design asks for them.

mod admin_keys;
mod adopt_fleet;
mod age_convert;
mod architecture;
mod common;
mod deploy_image;
mod docs;
mod errors;
mod exact;
mod faults;
mod first_boot;
mod fleet_check_cmd;
mod fleet_justfile;
mod fuzz;
mod hardening;
mod keys;
mod layouts;
mod nix;
mod nixos_modules;
mod outputs;
mod pgp;
mod pve_standin;
mod reliability;
mod seeds;
mod sops_config;
mod sops_engine;
mod sshd;
mod sync;
mod sync_config;
mod sync_harden;
mod sync_many;
mod sync_script;
mod terminal;
mod vm_fresh;
