start_all()

server.wait_for_unit("sshd.service")
server.wait_for_open_port(22)
client.wait_for_unit("network.target")

with subtest("generate a key on the client"):
    client.succeed("mkdir -m 700 /root/.ssh")
    client.succeed(
        "ssh-keygen -t ed25519 -N '' -f /root/.ssh/id_ed25519"
    )
    pubkey = client.succeed("cat /root/.ssh/id_ed25519.pub").strip()

with subtest("authorise the key on the server"):
    server.succeed("mkdir -m 700 -p /root/.ssh")
    server.succeed(f"echo '{pubkey}' >> /root/.ssh/authorized_keys")
    server.succeed("chmod 600 /root/.ssh/authorized_keys")

with subtest("log in"):
    client.succeed(
        "ssh -o UserKnownHostsFile=/dev/null"
        " -o StrictHostKeyChecking=no"
        " server true",
        timeout=30,
    )
    client.fail("ssh -o BatchMode=yes -i /nonexistent nobody@server true")

with subtest("password login is refused"):
    server.succeed("grep -q '^PasswordAuthentication no' /etc/ssh/sshd_config")
    out = client.fail(
        "ssh -o PreferredAuthentications=password -o BatchMode=yes "  \
        "server true 2>&1"
    )
    assert "Permission denied" in out

client.copy_from_host("/etc/hostname", "/tmp/hostname")
