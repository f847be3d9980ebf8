# The host side of a hostsmith fleet: the machine serves the ed25519 host key hostsmith
# generated (delivered by the cloud-init seed or the nixos-anywhere --extra-files tree),
# sops-nix decrypts the host's file with the age identity derived from that same key, and
# the deploy keys and the fleet's known hosts follow from the records.
#
# Evaluates with or without sops-nix: the `sops.*` settings are made only when sops-nix's
# module is in the configuration, and deploy keys (which sops-nix installs) then refuse to
# evaluate without it, saying so.
{
  config,
  lib,
  options,
  pkgs,
  ...
}:
let
  inherit (lib)
    mkOption
    mkEnableOption
    mkIf
    mkMerge
    mkDefault
    types
    ;
  hostsmithLib = import ../lib.nix;
  cfg = config.hostsmith.host;

  # Where cloud-init's ssh module writes the key, whatever the layout.
  installedKey = "/etc/ssh/ssh_host_ed25519_key";
  keyPath = "${cfg.persist}/etc/ssh/ssh_host_ed25519_key";
  persisting = cfg.persist != "";

  recordsDir = cfg.fleet + "/${cfg.recordsDir}";
  validName = builtins.match "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?" cfg.name != null;
  recordFile = "${cfg.recordsDir}/${cfg.name}.json";
  hasRecord = validName && builtins.pathExists (recordsDir + "/${cfg.name}.json");
  record = if hasRecord then hostsmithLib.readHost recordsDir cfg.name else null;
  template = if cfg.hostFile != null then cfg.hostFile else "${cfg.hostDir}/{host}.yaml";
  hostFile = hostsmithLib.hostFile {
    inherit record template;
    inherit (cfg) name;
  };
  hostFilePath = cfg.fleet + "/${hostFile}";
  deployKeys =
    if cfg.deployKeys != null then
      cfg.deployKeys
    else
      lib.attrNames (if record == null then { } else record.deploy_keys or { });

  # sops-nix, when its module is part of the configuration. Its two ways of installing
  # secrets (an activation script, or sops-install-secrets.service with
  # `sops.useSystemdActivation`) need the key at different times.
  hasSops = options ? sops;
  secrets = if hasSops then config.sops.secrets else { };
  regularSecrets = lib.filterAttrs (_: s: !(s.neededForUsers or false)) secrets;
  userSecrets = lib.filterAttrs (_: s: s.neededForUsers or false) secrets;
  systemdActivation = hasSops && (config.sops.useSystemdActivation or false);

  # cloud-init in this same configuration: at first boot the key arrives with
  # cloud-init.service, long after NixOS activation has run.
  cloudInit = config.services.cloud-init.enable;
  startWhenNeeded = config.services.openssh.startWhenNeeded or false;

  # The persist step: the key cloud-init installed goes to `keyPath` (see the script).
  persistStep = "${pkgs.runtimeShell} ${./persist-host-key.sh} ${lib.escapeShellArg keyPath} ${installedKey}";
  persistTools = [
    pkgs.coreutils
    pkgs.diffutils
  ];

  persistFs = config.fileSystems.${cfg.persist} or null;

  refusals = [
    {
      assertion = validName;
      message = "hostsmith.host.name is `${cfg.name}`, not a host name of the fleet: set hostsmith.host.name (networking.hostName is its default, and the cloud-init template leaves that empty so cloud-init can name the machine)";
    }
    {
      assertion = !validName || hasRecord;
      message = "hostsmith.host: the fleet has no record `${recordFile}` for host `${cfg.name}`: give the host an identity with `hostsmith vm-fresh ${cfg.name}` in the fleet and commit the record, or set hostsmith.host.name to the host's name in the fleet";
    }
    {
      assertion = !hasRecord || !hasSops || builtins.pathExists hostFilePath;
      message = "hostsmith.host: the host's SOPS file `${hostFile}` is missing from the fleet: run `hostsmith vm-fresh ${cfg.name}` there (it writes the file without changing the host's keys), or restore it from version control";
    }
    {
      assertion = deployKeys == [ ] || hasSops;
      message = "hostsmith.host: host `${cfg.name}` has deploy keys (${lib.concatStringsSep ", " deployKeys}), which sops-nix installs from `${hostFile}`: import sops-nix's NixOS module (sops-nix.nixosModules.sops) into this configuration, or set hostsmith.host.deployKeys = [ ] to go without them";
    }
    {
      assertion = !(cloudInit && regularSecrets != { } && !systemdActivation);
      message = "hostsmith.host: cloud-init is enabled in this configuration, so at first boot the host key arrives with cloud-init.service, after NixOS activation has already run sops-nix, which would find no key and install no secret. Set `sops.useSystemdActivation = true` (hostsmith then orders sops-install-secrets.service after cloud-init), or build the image from the cloud-init template alone and deploy this configuration once the machine has booted";
    }
    {
      assertion = !(cloudInit && userSecrets != { });
      message = "hostsmith.host: cloud-init is enabled in this configuration, and sops-nix installs secrets with `neededForUsers = true` (${lib.concatStringsSep ", " (lib.attrNames userSecrets)}) before users are created, long before cloud-init delivers the host key at first boot: build the image from the cloud-init template alone and deploy this configuration once the machine has booted, or drop neededForUsers";
    }
    {
      assertion = !(persisting && persistFs != null && !(persistFs.neededForBoot or false) && !systemdActivation);
      message = "hostsmith.host: the host key lives under ${cfg.persist}, which NixOS activation (and sops-nix in it) reads before ${cfg.persist} would be mounted: set fileSystems.\"${cfg.persist}\".neededForBoot = true";
    }
  ];
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
      type = types.strMatching "(/[^/]*[^/.][^/]*)*";
      default = "";
      example = "/persist";
      description = ''
        Prefix of persistent state for impermanence layouts (`host.persist` of hostsmith.toml).
        sshd and sops-nix then read the key at `<persist>/etc/ssh/ssh_host_ed25519_key`; the key
        cloud-init installs at /etc/ssh is moved there (in activation, and after cloud-init.service
        when cloud-init is in this configuration) before either reads it. The file system holding
        it must be mounted at activation: `fileSystems."/persist".neededForBoot = true`.
      '';
    };

    deployKeys = mkOption {
      type = types.nullOr (types.listOf types.str);
      default = null;
      description = "Repositories with a deploy key in the host's file; default: those in the host's record. Needs sops-nix.";
    };

    knownHosts = mkOption {
      type = types.bool;
      default = true;
      description = "Pin every fleet host's key in `programs.ssh.knownHosts` (from `hosts/*.json`).";
    };

    pinGitHub = mkOption {
      type = types.bool;
      default = true;
      description = "Pin GitHub's published host keys in `programs.ssh.knownHosts` when the host has deploy keys, so `git clone git@github.com-<repo>:…` verifies github.com.";
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions = refusals;

      # The pre-generated key is the machine's only host key: sshd serves it, and no other key
      # type is generated that a keyscan could pick up instead.
      services.openssh.hostKeys = [
        {
          path = keyPath;
          type = "ed25519";
        }
      ];

      # `git clone git@github.com-<repo>:owner/<repo>.git` picks the repository's own key, and
      # github.com must answer with a key pinned below: never trust on first use.
      programs.ssh.extraConfig = lib.concatMapStrings (repo: ''
        Host github.com-${repo}
          HostName github.com
          User git
          IdentityFile /root/.ssh/${repo}-deploy
          IdentitiesOnly yes
          StrictHostKeyChecking yes
      '') deployKeys;

      programs.ssh.knownHosts = mkMerge [
        (mkIf cfg.knownHosts (hostsmithLib.knownHosts recordsDir))
        (mkIf (cfg.pinGitHub && deployKeys != [ ]) hostsmithLib.githubKnownHosts)
      ];
    }

    (mkIf persisting {
      # A host configuration deployed onto a machine that booted the template (or any key at
      # /etc/ssh from cloud-init): moved before sops-nix's activation script reads it.
      system.activationScripts.hostsmith-host-key = {
        deps = [ "specialfs" ];
        text = "PATH=${lib.makeBinPath persistTools}:$PATH ${persistStep}";
      };

      # cloud-init in this configuration: its key arrives after activation, at first boot.
      systemd.services.hostsmith-host-key = mkIf cloudInit {
        description = "Move the host key cloud-init installed to ${keyPath}";
        wantedBy = [ "multi-user.target" ];
        after = [ "cloud-init.service" ];
        before = [
          "sshd-keygen.service"
        ]
        ++ lib.optional (!startWhenNeeded) "sshd.service"
        ++ lib.optional (regularSecrets != { }) "sops-install-secrets.service";
        requiredBy = [ "sshd-keygen.service" ] ++ lib.optional (!startWhenNeeded) "sshd.service";
        path = persistTools;
        unitConfig.RequiresMountsFor = [ (dirOf keyPath) ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = persistStep;
        };
      };
      systemd.services."sshd@" = mkIf (cloudInit && startWhenNeeded) {
        after = [ "hostsmith-host-key.service" ];
        wants = [ "hostsmith-host-key.service" ];
      };
    })

    (lib.optionalAttrs hasSops {
      # sops-nix derives the age identity from this key (the ssh-to-age conversion), the same
      # derivation hostsmith used to encrypt the host's file.
      sops.age.sshKeyPaths = [ keyPath ];
      # The host's file is the default only if the configuration names no other; the deploy
      # keys name it themselves either way.
      sops.defaultSopsFile = mkDefault hostFilePath;
      sops.secrets = lib.listToAttrs (
        map (repo: {
          name = "deploy-keys/${repo}";
          value = {
            key = "deploy-keys/${repo}";
            sopsFile = hostFilePath;
            path = "/root/.ssh/${repo}-deploy";
            mode = "0400";
            owner = "root";
          };
        }) deployKeys
      );
    })

    # The key must be in place before sops-nix reads it: after the persist step in
    # activation, after cloud-init (and the persist step) with systemd activation. The
    # conditions are sops-nix's own for defining these.
    (lib.optionalAttrs hasSops {
      system.activationScripts.setupSecrets = mkIf (persisting && !systemdActivation && regularSecrets != { }) {
        deps = [ "hostsmith-host-key" ];
      };
      system.activationScripts.setupSecretsForUsers = mkIf (persisting && !systemdActivation && userSecrets != { }) {
        deps = [ "hostsmith-host-key" ];
      };
      systemd.services.sops-install-secrets = mkIf (cloudInit && systemdActivation && regularSecrets != { }) {
        after = [ "cloud-init.service" ] ++ lib.optional persisting "hostsmith-host-key.service";
        wants = [ "cloud-init.service" ] ++ lib.optional persisting "hostsmith-host-key.service";
      };
    })
  ]);
}
