# Helpers over a fleet's public records (hosts/<host>.json), written with builtins only so
# they evaluate anywhere: in a flake, in `nix eval --impure --expr`, or with no nixpkgs.
let
  # A record is untrusted input (anyone who can write to the fleet can change it) and its
  # fields end up in known_hosts, ssh_config and file paths: the same checks as hostsmith's
  # own reader, so a forged record fails evaluation instead of injecting a line.
  matches = re: s: builtins.isString s && builtins.match re s != null;
  hostNameRe = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
  repoRe = "[A-Za-z0-9_][A-Za-z0-9._-]{0,99}";
  keyRe = "ssh-ed25519 [A-Za-z0-9+/]+={0,2}( [^[:cntrl:]]*)?";
  addressRe = "[A-Za-z0-9.:-]+|[[][0-9A-Fa-f:.]+[]](:[0-9]{1,5})?";
  # A host's own SOPS file: relative, inside the fleet (no `..`, `.` or empty component, no
  # control character), SOPS YAML.
  isFleetFile =
    p:
    builtins.isString p
    && builtins.match "[^[:cntrl:]]*\\.ya?ml" p != null
    && builtins.all (c: c != "" && c != "." && c != "..") (builtins.filter builtins.isString (builtins.split "/" p));
  checked =
    file: r:
    let
      stem = builtins.head (builtins.match "(.*)\\.json" file);
      bad = what: throw "hostsmith: hosts/${file} is not a valid host record: ${what}; restore it from version control";
      deployKeys = r.deploy_keys or { };
    in
    if !(matches hostNameRe (r.name or null)) || r.name != stem then
      bad "field `name` is not the host name `${stem}`"
    else if !(matches keyRe (r.ssh_host_ed25519_public or null)) then
      bad "field `ssh_host_ed25519_public` is not one ssh-ed25519 key line"
    else if !(builtins.all (n: matches repoRe n && matches keyRe deployKeys.${n}) (builtins.attrNames deployKeys)) then
      bad "field `deploy_keys` holds a name that is not a repository name, or a value that is not a key line"
    else if !(builtins.all (matches addressRe) (r.addresses or [ ])) then
      bad "field `addresses` holds something that is not an address"
    else if r ? sops_file && !(isFleetFile r.sops_file) then
      bad "field `sops_file` is not a relative .yaml/.yml path inside the fleet"
    else
      r;

  # Every record in `dir` (a path to the fleet's hosts/ directory), keyed by host name.
  readHosts =
    dir:
    let
      entries = builtins.readDir dir;
      isRecord = name: entries.${name} == "regular" && builtins.match ".*\\.json" name != null;
      names = builtins.filter isRecord (builtins.attrNames entries);
      read = name: checked name (builtins.fromJSON (builtins.readFile (dir + "/${name}")));
      records = map read names;
    in
    builtins.listToAttrs (
      map (r: {
        name = r.name;
        value = r;
      }) records
    );

  # The record of one host (`name`) in `dir`, checked like every record.
  readHost = dir: name: checked "${name}.json" (builtins.fromJSON (builtins.readFile (dir + "/${name}.json")));

  # The host's SOPS file, relative to the fleet: its record's `sops_file` when it has one,
  # else `template` (`sops.host_file` of hostsmith.toml) with the host's name for `{host}`.
  hostFile =
    {
      record ? null,
      name,
      template ? "sops/{host}.yaml",
    }:
    if record != null && record ? sops_file then record.sops_file else builtins.replaceStrings [ "{host}" ] [ name ] template;

  # The host's names in known_hosts, as `hostsmith known-hosts` writes them: its name, then
  # every recorded address once, `[host]:port` for a port other than 22. An address is
  # `host`, `host:port`, a bare IPv6 address (two colons or more: the last group is part of
  # the address, not a port), `[v6]` or `[v6]:port`.
  hostNames =
    record:
    let
      bracketed = a: builtins.match "\\[([^]]+)](:0*([0-9]+))?" a;
      hostPort = a: builtins.match "([^:]+):0*([0-9]+)" a;
      form =
        host: port:
        if port == null || port == "22" then host else "[${host}]:${port}";
      known =
        a:
        let
          b = bracketed a;
          hp = hostPort a;
        in
        if b != null then
          form (builtins.elemAt b 0) (builtins.elemAt b 2)
        else if hp != null then
          form (builtins.elemAt hp 0) (builtins.elemAt hp 1)
        else
          a;
      dedup = builtins.foldl' (seen: n: if builtins.elem n seen then seen else seen ++ [ n ]) [ ];
    in
    dedup ([ record.name ] ++ map known (record.addresses or [ ]));

  # GitHub's published SSH host keys (docs.github.com, "GitHub's SSH key fingerprints":
  # SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU, SHA256:p2QAMXNIC1TJYWeIOttrVc98/R1BUFWu3/LiyKgUfQM,
  # SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s), as `programs.ssh.knownHosts`: a
  # deploy key's `git clone` then verifies github.com instead of trusting its first answer.
  githubKnownHosts =
    builtins.mapAttrs
      (type: key: {
        hostNames = [ "github.com" ];
        publicKey = key;
      })
      {
        "github.com-ed25519" = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        "github.com-ecdsa" =
          "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=";
        "github.com-rsa" =
          "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQCj7ndNxQowgcQnjshcLrqPEiiphnt+VTTvDP6mHBL9j1aNUkY4Ue1gvwnGLVlOhGeYrnZaMgRK6+PKCUXaDbC7qtbW8gIkhL7aGCsOr/C56SJMy/BCZfxd1nWzAOxSDPgVsmerOBYfNqltV9/hWCqBywINIR+5dIg6JTJ72pcEpEjcYgXkE2YEFXV1JHnsKgbLWNlhScqb2UmyRkQyytRLtL+38TGxkxCflmO+5Z8CSSNY7GidjMIZ7Q4zMjA2n1nGrlTDkzwDCsw+wqFPGQA179cnfGWOWRVruj16z6XyvxvjJwbz0wQZ75XK5tKSb7FNyeIEs4TT4jk+S4dhPeAUC5y+bDYirYgM4GC7uEnztnZyaVWQ7B381AK4Qdrwt51ZqExKbQpTUNn+EjqoTwvqNj4kqx5QUCI0ThS/YkOxJCXmPUWZbhjpCg56i+2aB6CmK2JGhn57K5mj0MNdBXA4/WnwH6XoPWJzK5Nyu2zB3nAZp+S5hpQs+p1vN1/wsjk=";
      };

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
    readHost
    hostFile
    hostNames
    githubKnownHosts
    knownHosts
    ageRecipients
    ;
}
