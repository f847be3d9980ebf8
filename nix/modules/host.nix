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
  recordPath = cfg.fleet + "/hosts/${cfg.name}.json";
  record = if builtins.pathExists recordPath then hostsmithLib.readHost (cfg.fleet + "/hosts") cfg.name else null;
  deployKeys = if cfg.deployKeys != null then cfg.deployKeys else lib.attrNames (if record == null then { } else record.deploy_keys or { });
in
{
  options.hostsmith.host = {
    enable = mkEnableOption "the hostsmith host identity (host key, sops-nix, deploy keys, known hosts)";

    name = mkOption {
      type = types.str;
      default = config.networking.hostName;
      defaultText = lib.literalExpression "config.networking.hostName";
      description = "The host's name in the fleet (its `hosts/<name>.json` and `sops/<name>.yaml`).";
    };

    fleet = mkOption {
      type = types.path;
      description = "The fleet directory: the one holding `.sops.yaml`, `hosts/` and the SOPS files.";
    };

    hostDir = mkOption {
      type = types.str;
      default = "sops";
      description = "`sops.host_dir` of hostsmith.toml: the host's secrets are `<hostDir>/<name>.yaml`.";
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
    sops.defaultSopsFile = cfg.fleet + "/${cfg.hostDir}/${cfg.name}.yaml";

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

    programs.ssh.knownHosts = mkIf cfg.knownHosts (hostsmithLib.knownHosts (cfg.fleet + "/hosts"));
  };
}
