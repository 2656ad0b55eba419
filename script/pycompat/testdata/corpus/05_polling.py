start_all()
machine.wait_for_unit("multi-user.target")


@polling_condition
def service_running():
    machine.succeed("systemctl is-active --quiet demo.service")


@polling_condition(interval=10)
def disk_not_full():
    "the root filesystem has free space"
    used = int(machine.succeed("df --output=pcent / | tail -1").strip().rstrip("%"))
    return used < 95

machine.wait_for_unit("demo.service")

with service_running, disk_not_full:
    machine.succeed("demo-client --ping")
    machine.succeed("demo-client --write /var/lib/demo/file")
    machine.wait_for_file("/var/lib/demo/file")

with subtest("the condition can be waited for"):
    machine.systemctl("restart demo.service")
    service_running.wait(timeout=30)

machine.succeed("systemctl stop demo.service")
machine.fail("systemctl is-active --quiet demo.service")
