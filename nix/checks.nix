# `nix flake check`: the package (its tests run in the build), clippy, rustfmt, evaluation
# of both NixOS modules, and a NixOS VM test of the first boot.
{ pkgs, self }:
let
  inherit (pkgs) lib;
  hostsmith = self.packages.${pkgs.system}.hostsmith;

  # Option declarations standing in for sops-nix, which is not an input of this flake: just
  # enough for the host module to evaluate.
  sopsNixStandIn =
    { lib, ... }:
    {
      options.sops = {
        age.sshKeyPaths = lib.mkOption { type = lib.types.listOf lib.types.str; };
        defaultSopsFile = lib.mkOption { type = lib.types.path; };
        secrets = lib.mkOption { type = lib.types.attrsOf (lib.types.attrsOf lib.types.str); };
      };
    };

  # A throwaway fleet made by hostsmith at build time. Its keys end up in the world-readable
  # Nix store, which is fine for a test fleet and never for a real one.
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
    let
      template = pkgs.nixos {
        imports = [
          self.nixosModules.cloud-init-template
          baseSystem
        ];
      };
      host = pkgs.nixos {
        imports = [
          self.nixosModules.host
          sopsNixStandIn
          baseSystem
          {
            networking.hostName = "web01";
            hostsmith.host = {
              enable = true;
              fleet = "${testFleet}/fleet";
              persist = "/persist";
            };
          }
        ];
      };
      tc = template.config;
      hc = host.config;
    in
    assert lib.elem "ssh" tc.services.cloud-init.settings.cloud_init_modules;
    assert !(lib.elem "ssh" tc.services.cloud-init.settings.cloud_config_modules);
    assert lib.elem "cloud-init.service" tc.systemd.services.sshd.after;
    assert hc.sops.age.sshKeyPaths == [ "/persist/etc/ssh/ssh_host_ed25519_key" ];
    assert (lib.head hc.services.openssh.hostKeys).path == "/persist/etc/ssh/ssh_host_ed25519_key";
    assert hc.sops.secrets."deploy-keys/nix-config".path == "/root/.ssh/nix-config-deploy";
    assert hc.programs.ssh.knownHosts ? web01;
    pkgs.runCommand "hostsmith-modules" { } ''
      echo ${builtins.unsafeDiscardStringContext tc.system.build.toplevel.drvPath} > $out
      echo ${builtins.unsafeDiscardStringContext hc.system.build.toplevel.drvPath} >> $out
    '';

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
    '';
  };
}
