# Three machines on two VLANs, NixOS style:
#
#     client --- VLAN 1 --- router --- VLAN 2 --- server
#
# Built with `vmdriver image build --kind minimal --out vms client:1 router:1,2 server:2`
# and run with `--vlans "1 2"`. Every /etc/hosts names every node by its first
# VLAN address, so the machines reach each other by name. The router does not
# route: client and server share no VLAN, so they must not reach each other.
#
# VMDRIVER_NETWORK_HOST_PORT names a free host port for the port-forwarding
# check (network_test.go picks one).
import os
import subprocess

host_port = int(os.environ.get("VMDRIVER_NETWORK_HOST_PORT", "18080"))

# /etc/hosts names a machine by its first VLAN address only (the NixOS rule):
# "router" is 192.168.1.2 on VLAN 1, so the server, on VLAN 2 alone, knows the
# router as 192.168.2.2. Each entry: who connects, to what, who must answer.
linked = [
    (client, "router", "router"),
    (router, "client", "client"),
    (router, "server", "server"),
    (server, "192.168.2.2", "router"),
]
cut = [(client, "server"), (server, "client"), (server, "router")]

start_all()

with subtest("guests stay inside the test"):
    # Proven before any packet that could leave is sent. QEMU's own report
    # (`info network`): the user-mode NIC, eth0, lets nothing out but
    # forwarded host ports.
    for m in machines:
        user = [l for l in m.links() if l["vlan"] == 0]
        t.assertEqual([l["restricted"] for l in user], [True])
    # The guests' routing tables: no default route, so a VLAN a machine
    # is not on is unreachable, not handed to QEMU.
    for m in machines:
        t.assertEqual(m.succeed("ip -4 route show default; ip -6 route show default"), "")
    client.fail("ip route get 192.168.2.3")
    server.fail("ip route get 192.168.1.1")

with subtest("every machine runs a TCP service that answers with its name"):
    for m in machines:
        m.succeed("nc -ll -p 7000 -e hostname </dev/null >/dev/null 2>&1 &")
    for m in machines:
        m.wait_for_open_port(7000, timeout=30)

with subtest("machines on a shared VLAN reach each other by name"):
    for src, dst, name in linked:
        src.succeed(f"ping -c 1 -W 2 {dst}")
        t.assertEqual(src.succeed(f"nc -w 5 {dst} 7000 </dev/null").strip(), name)

with subtest("machines without a shared VLAN cannot reach each other"):
    for src, dst in cut:
        src.fail(f"ping -c 1 -W 1 {dst}")
        src.fail(f"nc -w 2 {dst} 7000 </dev/null")
    # Those fail at once for want of a route. Put on VLAN 1's wire directly,
    # a ping for the server's address still finds nobody there.
    client.fail("ping -c 1 -W 1 -I eth1 192.168.2.3")

with subtest("block() cuts the router off, unblock() reconnects it"):
    router.block()
    t.assertEqual([l["up"] for l in router.links() if l["vlan"] != 0], [False, False])
    client.fail("ping -c 1 -W 1 router")
    server.fail("ping -c 1 -W 1 192.168.2.2")
    client.fail("nc -w 2 router 7000 </dev/null")
    router.unblock()
    t.assertEqual([l["up"] for l in router.links() if l["vlan"] != 0], [True, True])
    client.wait_until_succeeds("ping -c 1 -W 1 router", timeout=30)
    server.wait_until_succeeds("ping -c 1 -W 1 192.168.2.2", timeout=30)
    t.assertEqual(client.succeed("nc -w 5 router 7000 </dev/null").strip(), "router")

with subtest("a forwarded host port reaches a guest web server"):
    router.succeed(
        "mkdir -p /srv/www",
        "echo 'hello from router' > /srv/www/index.html",
        "httpd -p 8080 -h /srv/www",
    )
    router.wait_for_open_port(8080, timeout=30)
    router.forward_port(host_port, 8080)
    # Plain bash on the host: no curl needed.
    page = subprocess.check_output(
        [
            "bash",
            "-c",
            'exec 3<>"/dev/tcp/127.0.0.1/$0"; printf "GET /index.html HTTP/1.0\\r\\n\\r\\n" >&3; cat <&3',
            str(host_port),
        ],
        text=True,
        timeout=30,
    )
    t.assertIn("200 OK", page)
    t.assertIn("hello from router", page)
