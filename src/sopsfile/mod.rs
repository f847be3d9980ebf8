//! The native SOPS engine (being written).
