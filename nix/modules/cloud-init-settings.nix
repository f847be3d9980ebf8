# The cloud-init settings the template module adds to nixpkgs' defaults, as plain data
# (builtins only): the module merges them into `services.cloud-init.settings`, and the tests
# hand the very same settings to a real cloud-init in a Debian root, where they must install
# the seed's key before sshd could start and leave no other key behind.
{
  datasource_list = [
    "NoCloud"
    "None"
  ];

  # Remove any key the image carries, whatever the seed says.
  ssh_deletekeys = true;
  # A clone booted without hostsmith's seed gets one key, an ed25519 one, not three: a
  # keyscan then sees one unknown key instead of picking among rsa/ecdsa/ed25519.
  ssh_genkeytypes = [ "ed25519" ];

  # Why these lists are restated: nixpkgs puts the `ssh` module (which installs `ssh_keys`
  # from user-data) in `cloud_config_modules`, run by cloud-config.service after
  # network-online.target, long after sshd has started with keys of its own. Here `ssh` runs
  # last in `cloud_init_modules`, i.e. in cloud-init.service, which nixpkgs orders before
  # sshd.service and sshd-keygen.service. `set_hostname` runs before `update_hostname`, as
  # in cloud-init's own default: a seed that names the machine only in user-data (as
  # Proxmox's does) names it too. The rest of both lists is nixpkgs' default.
  cloud_init_modules = [
    "migrator"
    "seed_random"
    "bootcmd"
    "write-files"
    "growpart"
    "resizefs"
    "set_hostname"
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
}
