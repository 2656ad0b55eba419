import json
from shlex import quote

start_all()
forge.wait_for_unit("gitea.service")
forge.wait_for_open_port(3000)
client.wait_for_unit("multi-user.target")

api = "http://forge:3000/api/v1"
headers = {"Content-Type": "application/json"}

with subtest("create the admin user"):
    forge.succeed(
        "su -l gitea -c 'gitea admin user create --admin"
        " --username root --password totally-safe --email root@example.org'"
    )
    token = forge.succeed(
        "curl -sf -X POST -u root:totally-safe"
        f" -H 'Content-Type: application/json' {api}/users/root/tokens"
        " -d '{\"name\": \"t\", \"scopes\": [\"all\"]}'"
        " | jq -r .sha1"
    ).strip()

with subtest("create a repository"):
    body = json.dumps({"name": "repo", "private": False})
    client.succeed(
        f"curl -sf -X POST -H 'Authorization: token {token}' "
        f"-H 'Content-Type: application/json' {api}/user/repos -d {quote(body)}"
    )
    repos = json.loads(client.succeed(f"curl -sf -H 'Authorization: token {token}' {api}/user/repos"))
    names = {r["name"] for r in repos}
    assert names == {"repo"}, names

with subtest("push"):
    client.succeed(
        "cd /tmp && git init -b main repo && cd repo",
        "git -C /tmp/repo commit --allow-empty -m init",
        f"git -C /tmp/repo push http://root:{token}@forge:3000/root/repo.git main",
    )
    log = client.succeed("git -C /tmp/repo log --oneline")
    assert len(log.splitlines()) == 1, log
