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
      # `nix run .#<name> -- ARGS` runs `hostsmith <name> ARGS`.
      subcommand = pkgs: name: {
        type = "app";
        program = "${pkgs.writeShellScript "hostsmith-${name}" ''
          exec ${self.packages.${pkgs.system}.hostsmith}/bin/hostsmith ${name} "$@"
        ''}";
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
          program = "${self.packages.${pkgs.system}.hostsmith}/bin/hostsmith";
        };
        vm-fresh = subcommand pkgs "vm-fresh";
        deploy-image = subcommand pkgs "deploy-image";
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.system}.hostsmith ];
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

      lib = import ./nix/lib.nix;

      checks = forAllSystems (pkgs: import ./nix/checks.nix { inherit pkgs self; });

      formatter = forAllSystems (pkgs: pkgs.nixfmt-rfc-style);
    };
}
