# A NixOS-style test script against the minimal guest (machine "minimal").
import json

start_all()

with subtest("commands and output"):
    kernel = minimal.succeed("uname -r").strip()
    assert kernel, "no kernel version"
    minimal.fail("test -e /no/such/file")
    status, out = minimal.execute("echo hello; exit 3")
    t.assertEqual(status, 3)
    t.assertEqual(out, "hello\n")

with subtest("files through the shared directory"):
    minimal.succeed("echo '{\"answer\": 42}' > /tmp/shared/data.json")
    data = json.loads(minimal.succeed("cat /tmp/shared/data.json"))
    t.assertEqual(data["answer"], 42)
    minimal.wait_for_file("/tmp/shared/data.json", timeout=30)

with subtest("console"):
    minimal.succeed("echo marker-from-guest > /dev/ttyS0")
    minimal.wait_for_console_text("marker-from-guest", timeout=30)

print(f"kernel {kernel} passed")
minimal.shutdown()
