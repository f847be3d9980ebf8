# `hostsmith.lib.fleetCheck { pkgs; fleet = ./.; }`: a derivation for a fleet's own `checks`
# that fails when `.sops.yaml`, the host records and the SOPS files disagree — what
# `hostsmith check` reports, in the build log. It reads only the public and encrypted files,
# so it needs no key and no network, and it is an ordinary build (no evaluation-time read).
{
  pkgs,
  fleet,
  hostsmith,
  name ? "hostsmith-fleet-check",
}:
let
  # Only what `hostsmith check` reads (configuration, rules, records, SOPS files), so the
  # check is rebuilt when one of those changes and not for every other commit of the fleet.
  wanted = path: type: type == "directory" || builtins.match ".*\\.(ya?ml|json|toml)" (baseNameOf path) != null;
  src = builtins.path {
    name = "fleet";
    path = fleet;
    filter = path: type: baseNameOf path != ".git" && wanted path type;
  };
in
pkgs.runCommand name { nativeBuildInputs = [ hostsmith ]; } ''
  set -o pipefail
  export HOME=$TMPDIR
  hostsmith --color never --fleet ${src} check 2>&1 | tee $out
''
