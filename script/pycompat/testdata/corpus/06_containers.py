start_all()
host.wait_for_unit("podman.socket")


def run_container(name, image="busybox", args=""):
    with subtest(f"start {name}"):
        cid = host.succeed(f"podman run -d --name {name} {image} {args}").strip()
        host.wait_until_succeeds(f"podman inspect -f '{{{{.State.Running}}}}' {name} | grep true")
        return cid


with subtest("import the image"):
    host.succeed("podman load -i /etc/images/busybox.tar")
    images = host.succeed("podman images --format '{{.Repository}}'")

assert "busybox" in images, images

first = run_container("sleeper", args="sleep 1000")
second = run_container("echoer", args="sh -c 'while true; do echo hi; sleep 1; done'")
assert first != second

with subtest("logs"):
    host.wait_until_succeeds("podman logs echoer | grep -q hi")
    logs = host.succeed("podman logs echoer")

print("echoer said", len(logs.splitlines()), "lines")

for name in ["sleeper", "echoer"]:
    host.succeed(f"podman rm -f {name}")
host.fail("podman inspect sleeper")
