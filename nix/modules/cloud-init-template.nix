# For VM templates that hostsmith clones (deploy-image): the clone's first boot installs the
# host key from the NoCloud seed BEFORE sshd starts, so the first key the machine ever serves
# is the one hostsmith generated, and no template key exists to be captured by a keyscan.
{ lib, ... }:
{
  services.cloud-init = {
    enable = true;
    network.enable = lib.mkDefault true;
    settings = {
      datasource_list = [
        "NoCloud"
        "None"
      ];
      # Remove any key the image carries, whatever the seed says.
      ssh_deletekeys = true;

      # Why these lists are restated: nixpkgs puts the `ssh` module (which writes
      # `ssh_keys` from user-data) in `cloud_config_modules`, run by cloud-config.service
      # after network-online.target, long after sshd.service has started and generated keys
      # of its own. Here `ssh` runs in `cloud_init_modules`, i.e. in cloud-init.service,
      # which nixpkgs already orders before sshd.service and sshd-keygen.service. The rest
      # of both lists is nixpkgs' default.
      cloud_init_modules = [
        "migrator"
        "seed_random"
        "bootcmd"
        "write-files"
        "growpart"
        "resizefs"
        "update_hostname"
        "resolv_conf"
        "ca-certs"
        "rsyslog"
        "users-groups"
        "ssh"
      ];
      cloud_config_modules = [
        "disk_setup"
        "mounts"
        "ssh-import-id"
        "set-passwords"
        "timezone"
        "disable-ec2-metadata"
        "runcmd"
      ];
    };
  };

  # deploy-image learns a DHCP address from the QEMU guest agent.
  services.qemuGuest.enable = lib.mkDefault true;

  services.openssh.enable = true;
  # No key is baked into the image and none is listed for generation but the ed25519 key the
  # seed provides: sshd's own key generation (in its pre-start) finds it already there.
  services.openssh.hostKeys = lib.mkForce [
    {
      path = "/etc/ssh/ssh_host_ed25519_key";
      type = "ed25519";
    }
  ];

  # Belt and braces: whatever nixpkgs does, sshd starts only after cloud-init has run.
  systemd.services.sshd = {
    after = [ "cloud-init.service" ];
    wants = [ "cloud-init.service" ];
  };
}
