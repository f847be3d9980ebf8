# Helpers over a fleet's public records (hosts/<host>.json), written with builtins only so
# they evaluate anywhere: in a flake, in `nix eval --impure --expr`, or with no nixpkgs.
let
  # Every record in `dir` (a path to the fleet's hosts/ directory), keyed by host name.
  readHosts =
    dir:
    let
      entries = builtins.readDir dir;
      isRecord = name: entries.${name} == "regular" && builtins.match ".*\\.json" name != null;
      names = builtins.filter isRecord (builtins.attrNames entries);
      read = name: builtins.fromJSON (builtins.readFile (dir + "/${name}"));
      records = map read names;
    in
    builtins.listToAttrs (
      map (r: {
        name = r.name;
        value = r;
      }) records
    );

  # The host's names in known_hosts: its name, then every recorded address
  # (`[addr]:port` for a port other than 22, as OpenSSH writes them).
  hostNames =
    record:
    let
      addresses = record.addresses or [ ];
      form =
        a:
        let
          m = builtins.match "\\[?([^]]*[^]:]|[^:]+)]?:([0-9]+)" a;
        in
        if m == null then
          a
        else if builtins.elemAt m 1 == "22" then
          builtins.elemAt m 0
        else
          "[${builtins.elemAt m 0}]:${builtins.elemAt m 1}";
    in
    [ record.name ] ++ map form addresses;

  # `programs.ssh.knownHosts` for every host of the fleet: the key of each host is pinned
  # before it ever answers, so no connection has to trust on first use.
  knownHosts =
    dir:
    builtins.mapAttrs (name: r: {
      hostNames = hostNames r;
      publicKey = r.ssh_host_ed25519_public;
    }) (readHosts dir);

  # The age recipients of the fleet's hosts, keyed by host name.
  ageRecipients = dir: builtins.mapAttrs (name: r: r.age_recipient) (readHosts dir);
in
{
  inherit
    readHosts
    hostNames
    knownHosts
    ageRecipients
    ;
}
