//! The `.sops.yaml` reader and in-place editor (being written).
