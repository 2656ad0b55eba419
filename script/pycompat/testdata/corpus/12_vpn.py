start_all()

for peer in (peer0, peer1):
    peer.wait_for_unit("wireguard-wg0.service")

with subtest("handshake"):
    peer1.succeed("ping -c 1 -W 5 10.23.42.1")
    peer0.succeed("ping -c 1 -W 5 10.23.42.2")

with peer0.nested("checking the interface"), peer1.nested("and the other one"):
    for peer, addr in [(peer0, "10.23.42.1"), (peer1, "10.23.42.2")]:
        out = peer.succeed("ip -br addr show wg0")
        assert addr in out, f"{peer.name}: {out}"

with subtest("transfer"):
    with subtest("prepare a file"):
        peer0.succeed("dd if=/dev/urandom of=/tmp/blob bs=1M count=2")
        digest = peer0.succeed("sha256sum /tmp/blob | cut -d' ' -f1").strip()
    peer0.succeed("nc -l -p 1234 < /tmp/blob &")
    peer1.wait_until_succeeds("nc -z 10.23.42.1 1234")
    peer1.succeed("nc 10.23.42.1 1234 > /tmp/blob")
    assert peer1.succeed("sha256sum /tmp/blob").split()[0] == digest

latest = int(peer0.succeed("wg show wg0 latest-handshakes | cut -f2").strip())
assert latest is not None and latest > 0
