# hostsmith, callPackage-style. The version comes from Cargo.toml; shell completions and
# man pages are generated from the built binary; every program hostsmith may run is put on
# its PATH, so `nix run` works on a machine that has none of them.
{
  lib,
  rustPlatform,
  makeWrapper,
  installShellFiles,
  openssh,
  sops,
  xorriso,
  gh,
}:
let
  cargoToml = lib.importTOML ../Cargo.toml;
in
rustPlatform.buildRustPackage {
  pname = cargoToml.package.name;
  inherit (cargoToml.package) version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../rustfmt.toml
      ../src
      ../tests
    ];
  };
  cargoLock.lockFile = ../Cargo.lock;

  nativeBuildInputs = [
    makeWrapper
    installShellFiles
  ];

  # The integration tests drive real peers (sops, sshd, cloud-init in a debootstrap root)
  # and need root; the sandboxed build runs the library's own tests.
  cargoTestFlags = [ "--lib" ];

  postInstall = ''
    installShellCompletion --cmd hostsmith \
      --bash <($out/bin/hostsmith completions bash) \
      --zsh <($out/bin/hostsmith completions zsh) \
      --fish <($out/bin/hostsmith completions fish)
    $out/bin/hostsmith man --out man
    installManPage man/*.1
    wrapProgram $out/bin/hostsmith --prefix PATH : ${
      lib.makeBinPath [
        openssh
        sops
        xorriso
        gh
      ]
    }
  '';

  meta = {
    description = cargoToml.package.description;
    license = lib.licenses.mit;
    mainProgram = "hostsmith";
    platforms = lib.platforms.linux;
  };
}
