from typing import Optional, List

machine.start()
machine.wait_for_unit("multi-user.target")


def entries(
    machine,
    pattern: Optional[str] = None,
    *,
    directory: str = "/boot/loader/entries",
) -> List[str]:
    out = machine.succeed(f"ls {directory}").split()
    if pattern is not None:
        out = [e for e in out if pattern in e]
    return out


default_entry: str = machine.succeed("bootctl status | grep 'Current Entry'").split(": ")[-1].strip()
generations: int

with subtest("a new generation adds an entry"):
    before = entries(machine)
    machine.succeed("/run/current-system/bin/switch-to-configuration boot")
    after = entries(machine)
    assert len(after) >= len(before), f"{before} -> {after}"

with subtest("the default entry is bootable"):
    machine.succeed(f"test -e /boot/loader/entries/{default_entry}")
    generations = len(entries(machine, "nixos-generation"))
    assert generations > 0

machine.shutdown()
machine.start()
machine.wait_for_unit("multi-user.target")
assert machine.succeed("cat /proc/cmdline").find("init=") != -1
