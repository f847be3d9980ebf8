# `nix flake check`: the package (its tests run in the build), clippy, rustfmt, evaluation
# of both NixOS modules, `lib.fleetCheck` on a committed fleet, and a NixOS VM test of the
# first boot. Nothing here reads a derivation's output while evaluating (no
# import-from-derivation): the modules are evaluated against a fleet committed to the
# repository, and the fleet hostsmith makes at build time is only used inside builds.
{ pkgs, self }:
let
  inherit (pkgs) lib;
  system = pkgs.stdenv.hostPlatform.system;
  hostsmith = self.packages.${system}.hostsmith;

  # A small fleet made by `hostsmith init` and `vm-fresh web01 db01` (two addresses added
  # to web01's record), committed as it was written. Its SOPS files are encrypted for an
  # admin key that was thrown away: only the public side is of use here.
  fixtureFleet = ../tests/fixtures/nix-fleet;

  # A throwaway fleet made by hostsmith at build time, for the VM test that needs the host's
  # private key in a seed. Its keys end up in the world-readable Nix store, which is fine for
  # a test fleet and never for a real one.
  testFleet =
    pkgs.runCommand "hostsmith-test-fleet"
      {
        nativeBuildInputs = [
          hostsmith
          pkgs.openssh
        ];
      }
      ''
        export HOME=$TMPDIR
        hostsmith demo $out/fleet > /dev/null
        ssh-keygen -q -t ed25519 -N "" -C test-admin -f $out/admin
        SOPS_AGE_KEY_FILE=$out/fleet/admin-age-key.txt hostsmith --fleet $out/fleet \
          cloud-init web01 --out $TMPDIR/seed --iso $out/seed.iso --authorized-key $out/admin.pub
      '';

  baseSystem = {
    boot.loader.grub.enable = false;
    fileSystems."/" = {
      device = "/dev/vda";
      fsType = "ext4";
    };
    system.stateVersion = "25.05";
  };

  nixos = modules: (pkgs.nixos { imports = modules ++ [ baseSystem ]; }).config;
  failed = config: map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);

  template = nixos [ self.nixosModules.cloud-init-template ];
  # The host module without sops-nix: it evaluates, and refuses deploy keys it cannot install.
  hostWith =
    settings:
    nixos [
      self.nixosModules.host
      {
        networking.hostName = "web01";
        hostsmith.host = {
          enable = true;
          fleet = fixtureFleet;
        }
        // settings;
      }
    ];
  host = hostWith {
    persist = "/persist";
    deployKeys = [ ];
  };
  withDeployKeys = hostWith { };
  # Both modules in one configuration, as an image that is also the host's configuration.
  combined = nixos [
    self.nixosModules.cloud-init-template
    self.nixosModules.host
    {
      hostsmith.host = {
        enable = true;
        name = "web01";
        fleet = fixtureFleet;
        persist = "/persist";
        deployKeys = [ ];
      };
    }
  ];
  persistKey = "/persist/etc/ssh/ssh_host_ed25519_key";
in
{
  package = hostsmith;

  clippy = hostsmith.overrideAttrs (old: {
    pname = "hostsmith-clippy";
    nativeBuildInputs = old.nativeBuildInputs ++ [ pkgs.clippy ];
    buildPhase = "cargo clippy --all-targets --offline -- -D warnings";
    doCheck = false;
    installPhase = "touch $out";
    postInstall = "";
  });

  fmt =
    pkgs.runCommand "hostsmith-fmt"
      {
        nativeBuildInputs = [
          pkgs.cargo
          pkgs.rustfmt
        ];
      }
      ''
        cd ${hostsmith.src}
        cargo fmt --all -- --check
        touch $out
      '';

  modules =
    assert lib.elem "ssh" template.services.cloud-init.settings.cloud_init_modules;
    assert !(lib.elem "ssh" template.services.cloud-init.settings.cloud_config_modules);
    assert template.services.cloud-init.settings.ssh_genkeytypes == [ "ed25519" ];
    assert lib.elem "cloud-init.service" template.systemd.services.sshd.after;
    assert template.networking.hostName == "";
    assert !template.networking.useDHCP;
    assert failed host == [ ];
    assert host.sops or null == null;
    assert (lib.head host.services.openssh.hostKeys).path == persistKey;
    assert host.programs.ssh.knownHosts ? web01;
    assert !(host.programs.ssh.knownHosts ? "github.com-ed25519");
    assert lib.any (lib.hasInfix "import sops-nix's NixOS module") (failed withDeployKeys);
    assert withDeployKeys.programs.ssh.knownHosts ? "github.com-ed25519";
    assert failed combined == [ ];
    assert map (k: k.path) combined.services.openssh.hostKeys == [ persistKey ];
    assert lib.elem "cloud-init.service" combined.systemd.services.hostsmith-host-key.after;
    assert lib.elem "sshd.service" combined.systemd.services.hostsmith-host-key.before;
    pkgs.writeText "hostsmith-modules" ''
      ${template.system.build.toplevel}
      ${host.system.build.toplevel}
      ${combined.system.build.toplevel}
    '';

  # What a fleet puts in its own checks, on the committed fleet.
  fleet = self.lib.fleetCheck {
    inherit pkgs;
    fleet = fixtureFleet;
  };

  # Boots a template with hostsmith's seed attached as a `cidata` disk and checks that the key
  # the VM serves is the one in the host's record.
  first-boot = pkgs.testers.runNixOSTest {
    name = "hostsmith-first-boot";
    nodes.machine = {
      imports = [ self.nixosModules.cloud-init-template ];
      virtualisation.qemu.options = [ "-drive if=virtio,format=raw,readonly=on,file=${testFleet}/seed.iso" ];
    };
    testScript = ''
      import json
      record = json.load(open("${testFleet}/fleet/hosts/web01.json"))
      machine.wait_for_unit("cloud-init.service")
      machine.wait_for_unit("sshd.service")
      served = machine.succeed("ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub").split()[1]
      assert served == record["fingerprint"], f"the VM serves {served}, the record says {record['fingerprint']}"
      scan = machine.succeed("ssh-keyscan -t ed25519 127.0.0.1 2>/dev/null")
      assert record["ssh_host_ed25519_public"].split()[1] in scan, scan
      machine.fail("ls /etc/ssh/ssh_host_rsa_key")
      assert machine.succeed("hostname").strip() == "web01"
    '';
  };
}
