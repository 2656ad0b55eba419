# vmdriver as a Nix package: the `vmdriver` command, and `nixos-test-driver`
# (the same binary, which then takes the NixOS test driver's command line).
{
  lib,
  buildGoModule,
  makeWrapper,
  qemu-utils,
  vde2,
  zstd,
  tesseract,
  # OCR (wait_for_text, get_screen_text) needs tesseract; it is large.
  withOCR ? true,
}:

buildGoModule {
  pname = "vmdriver";
  version = "0.1.0";

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../go.mod
      ../go.sum
      ../api
      ../backdoor
      ../backend
      ../cmd
      ../driver
      ../images
      ../internal
      ../machine
      ../ocr
      ../qmp
      ../report
      ../script
      ../vlan
      ../vmtest
    ];
  };

  # `go mod vendor` of go.mod; nix/nix_test.go recomputes it.
  vendorHash = "sha256-ELcoVOP81ytKoFa+c6pXPnAjfozAtSyHNv8bgpAOPI8=";

  subPackages = [ "cmd/vmdriver" ];
  env.CGO_ENABLED = 0;
  ldflags = [ "-s" "-w" ];

  nativeBuildInputs = [ makeWrapper ];

  # The tests boot virtual machines: they run in the project's CI, not in
  # the build sandbox.
  doCheck = false;

  # The tools vmdriver runs beside a start script's own QEMU: qemu-img
  # (snapshots), zstd (compressed snapshots), vde_switch (VLANs) and, with
  # OCR, tesseract.
  postInstall = ''
    wrapProgram $out/bin/vmdriver --prefix PATH : ${
      lib.makeBinPath ([ qemu-utils vde2 zstd ] ++ lib.optional withOCR tesseract)
    }
    ln -s vmdriver $out/bin/nixos-test-driver
  '';

  meta = {
    description = "Boots virtual machines and runs NixOS-style integration tests; a drop-in nixos-test-driver";
    mainProgram = "vmdriver";
    platforms = lib.platforms.linux;
  };
}
