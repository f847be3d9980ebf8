{
  description = "hostsmith: forge a machine's SSH and age identity before the machine exists";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      hostsmithFor = pkgs: self.packages.${pkgs.stdenv.hostPlatform.system}.hostsmith;
      # `nix run .#<name> -- ARGS` runs `hostsmith <name> ARGS`.
      subcommand = pkgs: name: description: {
        type = "app";
        program = "${pkgs.writeShellScript "hostsmith-${name}" ''
          exec ${hostsmithFor pkgs}/bin/hostsmith ${name} "$@"
        ''}";
        meta = { inherit description; };
      };
    in
    {
      packages = forAllSystems (pkgs: rec {
        hostsmith = pkgs.callPackage ./nix/package.nix { };
        default = hostsmith;
      });

      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = "${hostsmithFor pkgs}/bin/hostsmith";
          meta.description = "hostsmith: forge a machine's SSH and age identity before the machine exists";
        };
        vm-fresh = subcommand pkgs "vm-fresh" "Give hosts an identity in the fleet of the current directory";
        deploy-image = subcommand pkgs "deploy-image" "Proxmox: clone a VM with a host's identity injected, start it, verify its key";
        check = subcommand pkgs "check" "Check that the fleet's .sops.yaml, host records and SOPS files agree";
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ (hostsmithFor pkgs) ];
          packages = with pkgs; [
            clippy
            rustfmt
            rust-analyzer
            sops
            age
            ssh-to-age
            just
            cloud-init
            xorriso
            openssh
          ];
        };
      });

      nixosModules = {
        host = ./nix/modules/host.nix;
        cloud-init-template = ./nix/modules/cloud-init-template.nix;
        default = self.nixosModules.host;
      };

      # The builtins-only helpers over a fleet's records, and `fleetCheck`, the derivation a
      # fleet puts in its own `checks`.
      lib = import ./nix/lib.nix // {
        fleetCheck =
          args@{ pkgs, ... }:
          import ./nix/fleet-check.nix ({ hostsmith = hostsmithFor pkgs; } // args);
      };

      checks = forAllSystems (pkgs: import ./nix/checks.nix { inherit pkgs self; });

      formatter = forAllSystems (pkgs: pkgs.nixfmt);
    };
}
