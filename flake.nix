{
  description = "vmdriver: boots virtual machines and runs NixOS-style integration tests; a drop-in nixos-test-driver";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        vmdriver = pkgs.callPackage ./nix/package.nix { };
        default = vmdriver;
      });

      # withVmdriver { test = ...; extraArgs = [ ... ]; }: run a NixOS test with vmdriver.
      lib = forAllSystems (pkgs: {
        withVmdriver = pkgs.callPackage ./nix/with-vmdriver.nix {
          vmdriver = self.packages.${pkgs.stdenv.hostPlatform.system}.vmdriver;
        };
      });

      overlays.default = final: _prev: {
        vmdriver = final.callPackage ./nix/package.nix { };
      };
    };
}
