"""contrib/kubernetes/ and contrib/container/: what a cluster would rely on.

No cluster and no image registry here, so the manifests are checked as data
(python3-yaml) for what docs/scaling.md promises: probes on the echo port, one
Service for TCP and UDP, resources, a PodDisruptionBudget, a locked-down pod,
and a stop sequence that fits in the termination grace period.  The echod
arguments of the Deployment are given to the echod this tree builds, which
must start with them.

Run with Debian's interpreter: /usr/bin/python3 -m pytest -q tests/contrib
"""

import json
import os
import re
import select
import signal
import subprocess
import time

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K8S = os.path.join(ROOT, "contrib", "kubernetes")
CONTAINERFILE = os.path.join(ROOT, "contrib", "container", "Containerfile")
ECHOD = os.environ.get("ECHOD_BIN", os.path.join(ROOT, "build", "echod"))
ECHO_PORT = 7127
LABEL = {"app.kubernetes.io/name": "echod"}


def load_manifests():
    """{kind: object} from every manifest the kustomization lists."""
    with open(os.path.join(K8S, "kustomization.yaml")) as f:
        kustomization = yaml.safe_load(f)
    objects = {}
    for name in kustomization["resources"]:
        with open(os.path.join(K8S, name)) as f:
            for doc in yaml.safe_load_all(f):
                assert doc["kind"] not in objects, f"two {doc['kind']} objects"
                objects[doc["kind"]] = doc
    return kustomization, objects


KUSTOMIZATION, OBJECTS = load_manifests()
DEPLOYMENT = OBJECTS["Deployment"]
POD = DEPLOYMENT["spec"]["template"]["spec"]
(CONTAINER,) = POD["containers"]


def option(name):
    """The value of --name=VALUE among the container's args (None if absent)."""
    for arg in CONTAINER["args"]:
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def container_port(name):
    (port,) = [p for p in CONTAINER["ports"] if p["name"] == name]
    return port


def quantity_cpu(q):
    q = str(q)
    return int(q[:-1]) / 1000 if q.endswith("m") else float(q)


def quantity_bytes(q):
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", str(q))
    assert m, f"unexpected quantity {q!r}"
    return int(m.group(1)) * units.get(m.group(2), 1)


def test_kustomization_lists_every_manifest():
    on_disk = {f for f in os.listdir(K8S) if f.endswith(".yaml") and f != "kustomization.yaml"}
    assert set(KUSTOMIZATION["resources"]) == on_disk
    assert set(OBJECTS) == {"Deployment", "Service", "PodDisruptionBudget"}


def test_every_object_selects_the_pods():
    assert DEPLOYMENT["spec"]["selector"]["matchLabels"] == LABEL
    assert DEPLOYMENT["spec"]["template"]["metadata"]["labels"] == LABEL
    assert OBJECTS["Service"]["spec"]["selector"] == LABEL
    assert OBJECTS["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == LABEL


def test_probes_connect_to_the_echo_port():
    for probe in ("readinessProbe", "livenessProbe"):
        target = CONTAINER[probe]["tcpSocket"]["port"]
        port = container_port(target) if isinstance(target, str) else {"containerPort": target}
        assert port["containerPort"] == ECHO_PORT, probe
        assert port.get("protocol", "TCP") == "TCP", probe


def test_service_carries_tcp_and_udp_echo_to_the_container():
    ports = OBJECTS["Service"]["spec"]["ports"]
    echo = {p["protocol"]: p for p in ports if p["port"] == ECHO_PORT}
    assert set(echo) == {"TCP", "UDP"}
    for protocol, p in echo.items():
        target = container_port(p["targetPort"])
        assert target["containerPort"] == ECHO_PORT
        assert target["protocol"] == protocol
    assert "--udp" in CONTAINER["args"], "the Service offers UDP: echod must serve it"


def test_resources_are_guaranteed_and_match_the_workers():
    res = CONTAINER["resources"]
    for kind in ("cpu", "memory"):
        assert res["requests"][kind] == res["limits"][kind], f"{kind}: requests != limits"
    cpus = quantity_cpu(res["limits"]["cpu"])
    # echod's default worker count is the node's CPUs, not the container's.
    assert option("workers") is not None and int(option("workers")) == cpus
    assert quantity_bytes(res["limits"]["memory"]) >= 256 * 2**20


def test_pod_is_locked_down():
    pod_sc, sc = POD["securityContext"], CONTAINER["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] != 0
    assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "add" not in sc["capabilities"]
    # The port is above 1023: no capability is needed to bind it.
    assert all(p["containerPort"] > 1023 for p in CONTAINER["ports"])


def test_stop_sequence_fits_in_the_termination_grace_period():
    pre_stop = CONTAINER["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = float(option("grace"))
    assert pre_stop + grace < POD["terminationGracePeriodSeconds"]


def test_disruption_budget_leaves_replicas_serving():
    budget = OBJECTS["PodDisruptionBudget"]["spec"]
    assert budget["maxUnavailable"] < DEPLOYMENT["spec"]["replicas"]
    assert DEPLOYMENT["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_image_runs_as_the_pods_user():
    with open(CONTAINERFILE) as f:
        text = f.read()
    (user,) = re.findall(r"^USER (\d+)", text, re.M)
    assert int(user.split(":")[0]) == POD["securityContext"]["runAsUser"]
    assert "LDFLAGS='-static'" in text
    assert re.search(r"^EXPOSE .*\b7127/tcp\b.*\b7127/udp\b", text, re.M)


def loopback_args():
    """The Deployment's args, bound to loopback port 0 instead of every address."""
    args = ["-l", "127.0.0.1:0"]
    for arg in CONTAINER["args"]:
        if arg.startswith("--metrics="):
            arg = "--metrics=127.0.0.1:0"
        args.append(arg)
    return args


def message(line):
    """A log line's message: the "listening on" lines are always text, the
    rest follow --log-format (the Deployment asks for json)."""
    if line.startswith("{"):
        return json.loads(line)["msg"]
    return line.removeprefix("echod: ")


def read_until_listening(proc, deadline):
    """Messages on stderr up to the engine line (or EOF, or the deadline)."""
    buf, lines = b"", []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(proc.stderr.fileno(), 65536)
        if not chunk:
            break
        buf += chunk
        *done, buf = buf.split(b"\n")
        lines += [message(line.decode(errors="replace")) for line in done]
        if any(line.startswith("engine ") for line in lines):
            break
    return lines


def echod_has_option(name):
    out = subprocess.run([ECHOD, "--help"], capture_output=True, text=True, timeout=10)
    return f"--{name}" in out.stdout + out.stderr


def test_echod_starts_with_the_deployments_args():
    if not echod_has_option("metrics"):
        pytest.skip("this echod has no --metrics yet; the Deployment asks for it")
    proc = subprocess.Popen([ECHOD] + loopback_args(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        lines = read_until_listening(proc, time.monotonic() + 10)
        kinds = {line.split()[2] for line in lines if line.startswith("listening on ")}
        assert {"tcp", "udp"} <= kinds, lines
        workers = f", {option('workers')} workers"
        assert any(line.startswith("engine ") and line.endswith(workers) for line in lines), lines
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=float(option("grace")) + 5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
