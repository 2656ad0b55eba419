machine.wait_for_unit("multi-user.target")
machine.wait_until_tty_matches("1", "login: ")

with subtest("log in on the console"):
    machine.send_chars("alice\n")
    machine.wait_until_tty_matches("1", "Password: ")
    machine.send_chars("foobar\n")
    machine.wait_until_succeeds("pgrep -u alice bash")
    machine.screenshot("logged-in")

with subtest("virtual consoles"):
    machine.send_key("alt-f2")
    machine.wait_until_succeeds("[ $(fgconsole) = 2 ]")
    machine.wait_for_unit("getty@tty2.service")
    machine.wait_until_tty_matches("2", "login: ")
    machine.send_key("alt-f1")

print("checking the user's environment", end="")
print("...", sep="")

with subtest("environment"):
    machine.send_chars("env > /tmp/env\n")
    machine.wait_for_file("/tmp/env")
    env = dict(
        line.split("=", 1)
        for line in machine.succeed("cat /tmp/env").splitlines()
        if "=" in line
    )
    assert env.get("USER") == "alice", env
    assert env["HOME"] == "/home/alice"

with subtest("log out"):
    machine.send_chars("exit\n")
    machine.wait_until_fails("pgrep -u alice bash")
    machine.wait_until_tty_matches("1", "login: ")
