# A NixOS-style suite of ten subtests on the systemd guest (machine
# "systemd"), the shape of a real nixpkgs test: units, ports, files, users,
# the journal, a timer, a failing unit, exit codes, a large output and many
# small commands. Every subtest stands alone, so the suite also runs with
# --fork-subtests (each subtest on its own clone of the booted machine).
# The benchmark times it cold, --warm, and --warm --fork-subtests;
# examples/scripts_test.go runs it in every `make test`.
start_all()
systemd.wait_for_unit("multi-user.target")

with subtest("a service starts and stops"):
    systemd.succeed("systemd-run --unit=worker sleep 1000")
    systemd.wait_for_unit("worker.service")
    systemd.succeed("systemctl stop worker.service")
    systemd.require_unit_state("worker.service", "inactive")

with subtest("a listener opens its port"):
    systemd.succeed("systemd-run --unit=listener nc -lk 8080")
    systemd.wait_for_open_port(8080)
    systemd.succeed("systemctl stop listener.service")
    systemd.wait_for_closed_port(8080)

with subtest("files are written and found"):
    systemd.succeed("mkdir -p /srv/data && echo payload > /srv/data/file")
    systemd.wait_for_file("/srv/data/file")
    t.assertEqual(systemd.succeed("cat /srv/data/file"), "payload\n")

with subtest("a user is created and runs commands"):
    systemd.succeed("useradd --create-home alice")
    t.assertEqual(systemd.succeed("su - alice -c whoami").strip(), "alice")
    t.assertIn("alice", systemd.succeed("getent passwd alice"))

with subtest("the journal records a message"):
    systemd.succeed("logger -t suite hello-journal")
    systemd.wait_until_succeeds("journalctl -t suite | grep -q hello-journal", timeout=60)

with subtest("a timer fires"):
    systemd.succeed("systemd-run --unit=tick --on-active=1s --timer-property=AccuracySec=100ms touch /tmp/ticked")
    systemd.wait_for_file("/tmp/ticked")

with subtest("a failing unit is reported failed"):
    systemd.execute("systemd-run --wait --unit=broken -p Type=oneshot false")
    systemd.fail("systemctl is-active broken.service")
    t.assertEqual(systemd.succeed("systemctl is-failed broken.service || true").strip(), "failed")

with subtest("exit codes come back"):
    status, out = systemd.execute("echo partial; exit 3")
    t.assertEqual(status, 3)
    t.assertEqual(out, "partial\n")
    systemd.fail("false")

with subtest("a megabyte of output arrives whole"):
    out = systemd.succeed("head -c 1000000 /dev/zero | tr '\\0' x")
    t.assertEqual(len(out), 1000000)

with subtest("thirty commands in a row"):
    for i in range(30):
        t.assertEqual(systemd.succeed("echo " + str(i)), str(i) + "\n")
