import json, time

start_all()

server.wait_for_unit("k3s.service")
server.wait_until_succeeds("kubectl get node server | grep -w Ready")

node_count = ready = 0
deadline = time.monotonic() + 300
while ready < 1:
    nodes = json.loads(server.succeed("kubectl get nodes -o json"))["items"]
    node_count = len(nodes)
    ready = sum(
        1
        for n in nodes
        for c in n["status"]["conditions"]
        if c["type"] == "Ready" and c["status"] == "True"
    )
    if time.monotonic() > deadline:
        raise Exception(f"only {ready} of {node_count} nodes ready")
    time.sleep(2)


def pod_phase(name: str, namespace="default") -> str:
    out = server.succeed(f"kubectl get pod {name} -n {namespace} -o json")
    return json.loads(out)["status"]["phase"]


def wait_for_pod(name):
    for attempt in range(60):
        phase = pod_phase(name)
        if phase == "Running":
            return attempt
        elif phase in ("Failed", "Unknown"):
            raise Exception(f"pod {name} is {phase}")
        time.sleep(1)
    raise TimeoutError(f"pod {name} never ran")


with subtest("run a pod"):
    server.succeed("kubectl apply -f /etc/test/pod.yaml")
    attempts = wait_for_pod("test")
    print(f"pod ran after {attempts} attempts")

with subtest("logs"):
    server.wait_until_succeeds("kubectl logs test | grep -q ready")

server.succeed("kubectl delete -f /etc/test/pod.yaml")
server.shutdown()
