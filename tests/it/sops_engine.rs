//! The native SOPS engine against real sops 3.11, both directions.
