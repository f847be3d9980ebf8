//! `.sops.yaml` editing against real sops and an independent YAML parser.
