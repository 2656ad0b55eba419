import json
from urllib.parse import urlencode

start_all()
monitor.wait_for_unit("prometheus.service")
monitor.wait_for_open_port(9090)
node.wait_for_unit("prometheus-node-exporter.service")
node.wait_for_open_port(9100)


def query(expr):
    params = urlencode({"query": expr})
    out = monitor.succeed(f"curl -sf 'http://localhost:9090/api/v1/query?{params}'")
    data = json.loads(out)
    assert data["status"] == "success", data
    return data["data"]["result"]


with subtest("targets are up"):
    monitor.wait_until_succeeds(
        "curl -sf http://localhost:9090/api/v1/targets | grep -q '\"health\":\"up\"'"
    )
    up = query("up")
    assert len(up) >= 2, f"only {len(up)} targets"
    assert all(r["value"][1] == "1" for r in up), up

with subtest("load average is a number"):
    load = float(query("node_load1")[0]["value"][1])
    print(f"load: {load:.2f}, cpus: {len(query('node_cpu_seconds_total')):>4}")
    assert 0.0 <= load < 100.0

with subtest("memory"):
    total = sum(float(r["value"][1]) for r in query("node_memory_MemTotal_bytes"))
    assert total > 0, "no memory reported"
