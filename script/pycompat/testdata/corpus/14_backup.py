import os
import tempfile

password_file = "/run/keys/restic-password"
repository = "/var/lib/restic-repo"

start_all()
server.wait_for_unit("multi-user.target")

server.succeed(
    f"echo secret > {password_file}",
    f"restic -r {repository} --password-file {password_file} init",
)


def snapshots():
    out = server.succeed(f"restic -r {repository} --password-file {password_file} snapshots --json")
    return json_lib.loads(out)


import json as json_lib

with subtest("first backup"):
    server.succeed("mkdir -p /opt/data && echo hello > /opt/data/file")
    server.systemctl("start restic-backups-local.service")
    server.wait_until_fails("systemctl is-active restic-backups-local.service")
    first = snapshots()
    assert len(first) == 1, first

with subtest("restore"):
    server.succeed(
        f"restic -r {repository} --password-file {password_file} restore latest -t /tmp/restore"
    )
    content = server.succeed("cat /tmp/restore/opt/data/file")
    assert content == "hello\n", repr(content)

with subtest("prune keeps the newest"):
    for _ in range(3):
        server.systemctl("start restic-backups-local.service")
    retry(lambda _: len(snapshots()) <= 2, timeout=60)

tmp = tempfile.mkdtemp() if os.environ.get("KEEP_LOGS") else None
if tmp is not None:
    server.copy_from_vm("/var/log/restic.log", tmp)
