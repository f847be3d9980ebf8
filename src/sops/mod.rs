//! Everything SOPS, with no knowledge of fleets: the positioned YAML layer both sides read
//! with, the `.sops.yaml` rules (read as sops reads them, edited in place), and the native
//! engine for SOPS files. Callers above this layer turn its typed errors into the CLI's.

pub mod file;
pub mod rules;
pub mod yaml;
