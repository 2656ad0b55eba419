start_all()

walled.wait_for_unit("firewall.service")
walled.wait_for_unit("httpd.service")
attacker.wait_for_unit("network.target")

# The rules mention \$ and \@ the way the shell sees them.
rules = walled.succeed("iptables-save")
assert "-A nixos-fw -p tcp" in rules

with subtest("the allowed port is open"):
    attacker.succeed("curl -sf --connect-timeout 5 http://walled:22 || true")

with subtest("the web server is blocked"):
    attacker.fail("curl -sf --connect-timeout 5 http://walled/")

with subtest("logging"):
    walled.succeed("logger -t test 'refused connection from \$ATTACKER'")
    walled.wait_until_succeeds("journalctl -t test | grep -q 'refused connection'")
    pattern = "rejected connection: .* SRC=[0-9.]+ DST=[0-9.]+ .*DPT=80"
    walled.succeed(f"journalctl -k | grep -E '{pattern}' || true")

walled.succeed("nixos-firewall-tool open tcp 80")
attacker.succeed("curl -sf --connect-timeout 5 http://walled/")
walled.succeed("nixos-firewall-tool reset")
attacker.fail("curl -sf --connect-timeout 5 http://walled/")

message = ("the firewall "
           "behaves \
as configured")
print(message)
