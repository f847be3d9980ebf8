# For VM templates that hostsmith clones (deploy-image): the clone's first boot installs the
# host key from the NoCloud seed BEFORE sshd starts, so the first key the machine ever serves
# is the one hostsmith generated, and no template key exists to be captured by a keyscan.
#
# Order at boot: cloud-init.service (cloud-init's init stage, where the `ssh` module runs
# here) is ordered before sshd-keygen.service and sshd.service by nixpkgs; sshd-keygen then
# finds the seeded key already there and generates nothing.
{ config, lib, ... }:
let
  startWhenNeeded = config.services.openssh.startWhenNeeded or false;
in
{
  services.cloud-init = {
    enable = true;
    network.enable = lib.mkDefault true;
    # The settings are plain data so that the tests can apply them with a real cloud-init.
    settings = import ./cloud-init-settings.nix;
  };

  # The seed names the machine: an empty NixOS host name leaves the name to cloud-init's
  # set_hostname/update_hostname, where a fixed one would override the seed's at every
  # activation.
  networking.hostName = lib.mkDefault "";
  # cloud-init's network-config is rendered for systemd-networkd; NixOS' own DHCP on every
  # interface would run beside it.
  networking.useDHCP = lib.mkIf config.services.cloud-init.network.enable (lib.mkDefault false);

  # deploy-image learns a DHCP address from the QEMU guest agent.
  services.qemuGuest.enable = lib.mkDefault true;

  services.openssh.enable = true;
  # Only the ed25519 key the seed provides: sshd-keygen.service finds it in place and
  # generates no other type. A default, so that the host module's key path (a persist layout)
  # wins when both modules are in one configuration.
  services.openssh.hostKeys = lib.mkDefault [
    {
      path = "/etc/ssh/ssh_host_ed25519_key";
      type = "ed25519";
    }
  ];

  # Belt and braces: whatever nixpkgs does, sshd starts only after cloud-init has run. With
  # `startWhenNeeded`, sshd.socket listens from early boot and each connection starts an
  # `sshd@` instance: those wait for cloud-init instead (ordering the socket itself after
  # cloud-init.service would be a cycle through sockets.target).
  systemd.services.sshd = lib.mkIf (!startWhenNeeded) {
    after = [ "cloud-init.service" ];
    wants = [ "cloud-init.service" ];
  };
  systemd.services."sshd@" = lib.mkIf startWhenNeeded {
    after = [ "cloud-init.service" ];
    wants = [ "cloud-init.service" ];
  };
}
