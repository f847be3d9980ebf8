# The host side of a hostsmith fleet: the machine serves the ed25519 host key hostsmith
# generated (delivered by the cloud-init seed or the nixos-anywhere --extra-files tree),
# sops-nix decrypts the host's file with the age identity derived from that same key, and
# the deploy keys and the fleet's known hosts follow from the records.
#
# Needs sops-nix (for the `sops.*` options) in the same configuration.
{ config, lib, ... }:
let
  inherit (lib) mkOption mkEnableOption mkIf types;
  hostsmithLib = import ../lib.nix;
  cfg = config.hostsmith.host;
  keyPath = "${cfg.persist}/etc/ssh/ssh_host_ed25519_key";
  recordsDir = cfg.fleet + "/${cfg.recordsDir}";
  recordPath = recordsDir + "/${cfg.name}.json";
  record = if builtins.pathExists recordPath then hostsmithLib.readHost recordsDir cfg.name else null;
  template = if cfg.hostFile != null then cfg.hostFile else "${cfg.hostDir}/{host}.yaml";
  hostFile = hostsmithLib.hostFile {
    inherit record template;
    inherit (cfg) name;
  };
  deployKeys = if cfg.deployKeys != null then cfg.deployKeys else lib.attrNames (if record == null then { } else record.deploy_keys or { });
in
{
  options.hostsmith.host = {
    enable = mkEnableOption "the hostsmith host identity (host key, sops-nix, deploy keys, known hosts)";

    name = mkOption {
      type = types.str;
      default = config.networking.hostName;
      defaultText = lib.literalExpression "config.networking.hostName";
      description = "The host's name in the fleet (its `hosts/<name>.json` and its SOPS file, `sops/<name>.yaml` by default).";
    };

    fleet = mkOption {
      type = types.path;
      description = "The fleet directory: the one holding `.sops.yaml`, `hosts/` and the SOPS files.";
    };

    hostDir = mkOption {
      type = types.str;
      default = "sops";
      description = "`sops.host_dir` of hostsmith.toml: the host's secrets are `<hostDir>/<name>.yaml` (shorthand of `hostFile = \"<hostDir>/{host}.yaml\"`).";
    };

    hostFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "hosts/{host}/secrets.yaml";
      description = "`sops.host_file` of hostsmith.toml: where the host's secrets are, `{host}` standing for its name; default `<hostDir>/{host}.yaml`. A `sops_file` in the host's record takes precedence.";
    };

    recordsDir = mkOption {
      type = types.str;
      default = "hosts";
      description = "`host.records_dir` of hostsmith.toml: the directory of the `<name>.json` records, relative to the fleet.";
    };

    persist = mkOption {
      type = types.str;
      default = "";
      example = "/persist";
      description = "Prefix of persistent state for impermanence layouts (`host.persist` of hostsmith.toml).";
    };

    deployKeys = mkOption {
      type = types.nullOr (types.listOf types.str);
      default = null;
      description = "Repositories with a deploy key in the host's file; default: those in the host's record.";
    };

    knownHosts = mkOption {
      type = types.bool;
      default = true;
      description = "Pin every fleet host's key in `programs.ssh.knownHosts` (from `hosts/*.json`).";
    };
  };

  config = mkIf cfg.enable {
    # The pre-generated key is the machine's only host key: sshd serves it, and no other key
    # type is generated that a keyscan could pick up instead.
    services.openssh.hostKeys = [
      {
        path = keyPath;
        type = "ed25519";
      }
    ];

    # sops-nix derives the age identity from this key (the ssh-to-age conversion), the same
    # derivation hostsmith used to encrypt the host's file.
    sops.age.sshKeyPaths = [ keyPath ];
    sops.defaultSopsFile = cfg.fleet + "/${hostFile}";

    sops.secrets = lib.listToAttrs (
      map (repo: {
        name = "deploy-keys/${repo}";
        value = {
          key = "deploy-keys/${repo}";
          path = "/root/.ssh/${repo}-deploy";
          mode = "0400";
          owner = "root";
        };
      }) deployKeys
    );

    # `git clone git@github.com-<repo>:owner/<repo>.git` picks the repository's own key.
    programs.ssh.extraConfig = lib.concatMapStrings (repo: ''
      Host github.com-${repo}
        HostName github.com
        User git
        IdentityFile /root/.ssh/${repo}-deploy
        IdentitiesOnly yes
    '') deployKeys;

    programs.ssh.knownHosts = mkIf cfg.knownHosts (hostsmithLib.knownHosts recordsDir);
  };
}
