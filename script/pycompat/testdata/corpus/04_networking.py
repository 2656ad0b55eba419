import re

start_all()

for m in [router, client1, client2]:
    m.wait_for_unit("network-online.target")

with subtest("static addresses"):
    out = client1.succeed("ip -4 addr show dev eth1")
    match = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/(\d+)", out)
    assert match is not None, "no IPv4 address on eth1"
    prefix = int(match.group(2))
    assert 8 <= prefix <= 30, f"odd prefix length {prefix}"

with subtest("routing through the router"):
    client1.succeed("ping -c 1 -W 2 192.168.2.2")
    client2.succeed("ping -c 1 -W 2 192.168.1.2")
    routes = router.succeed("ip route").splitlines()
    assert any("192.168.1.0/24" in r for r in routes), routes

with subtest("bond"):
    status = router.succeed("cat /proc/net/bonding/bond0")
    slaves = [l.split(": ")[1] for l in status.splitlines() if l.startswith("Slave Interface")]
    assert len(slaves) == 2, "expected two slaves, got %d" % len(slaves)
    mii = re.findall(r"MII Status: (\w+)", status)
    assert all(s == "up" for s in mii), mii

router.succeed("ip link set eth2 down")
client2.fail("ping -c 1 -W 1 192.168.1.2")
router.succeed("ip link set eth2 up")
client2.wait_until_succeeds("ping -c 1 -W 1 192.168.1.2", timeout=60)
