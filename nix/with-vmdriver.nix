# withVmdriver test: the NixOS test `test` (what pkgs.testers.runNixOSTest,
# pkgs.nixosTest or nixos/lib/testing makeTest return) run by vmdriver
# instead of the Python driver: the same nodes, start scripts, test script
# and flags, read from the test's own driver wrapper.
#
#   withVmdriver { test = pkgs.nixosTests.login; extraArgs = [ "--fork-subtests" ]; }
{
  lib,
  runCommand,
  runtimeShell,
  vmdriver,
}:

{
  test,
  # Extra vmdriver flags, e.g. [ "--fork-subtests" "-j" "4" ].
  extraArgs ? [ ],
}:

let
  name = test.config.name or test.name or "nixos-test";
  driver = runCommand "vmdriver-driver-${name}" { } ''
    ${runtimeShell} ${./swap-driver.sh} ${test.driver} ${vmdriver} $out
  '';
in
runCommand "vm-test-run-${name}-vmdriver"
  {
    requiredSystemFeatures = [ "nixos-test" "kvm" ];
    passthru = {
      inherit driver test;
    };
    meta.mainProgram = "nixos-test-driver";
  }
  ''
    mkdir -p $out
    export HOME=$TMPDIR
    ${driver}/bin/nixos-test-driver -o $out ${lib.escapeShellArgs extraArgs}
  ''
