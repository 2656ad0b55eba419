# A NixOS-style test against the systemd guest (machine "systemd"): units,
# ports and files, the way nixpkgs tests use them.
systemd.start()
systemd.wait_for_unit("multi-user.target")

with subtest("a service comes up and answers on its port"):
    systemd.succeed("systemd-run --unit=echo-server nc -lk 8080")
    systemd.wait_for_unit("echo-server.service")
    systemd.wait_for_open_port(8080)
    info = systemd.get_unit_info("echo-server.service")
    t.assertEqual(info["ActiveState"], "active")

with subtest("stopping it closes the port"):
    systemd.stop_job("echo-server.service")
    systemd.wait_for_closed_port(8080)
    systemd.require_unit_state("echo-server.service", "inactive")

with subtest("files both ways"):
    systemd.succeed("echo from-guest > /root/out.txt")
    systemd.copy_from_machine("/root/out.txt")
