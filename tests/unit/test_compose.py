"""docker-compose.yml: the stack users bring up. No Docker engine here, so the file is checked
as data: every service is there, every mounted file exists, ports and wiring line up."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_the_whole_stack_is_declared() -> None:
    assert {"nats", "redis", "toxiproxy", "prometheus", "alertmanager", "grafana", "core",
            "locust-master", "locust-worker-1", "locust-worker-2"} <= set(SERVICES)


def test_the_core_is_served_and_driven_over_the_broker() -> None:
    core = SERVICES["core"]
    assert core["entrypoint"] == ["catga-bench"]
    assert core["command"].startswith("serve --transport ${TRANSPORT:-nats}")
    assert "--metrics-host 0.0.0.0" in core["command"]
    for name in ("locust-master", "locust-worker-1", "locust-worker-2"):
        assert "--transport ${TRANSPORT:-nats}" in SERVICES[name]["command"]
    env = COMPOSE["x-catga"]["environment"]
    assert env["CATGA_NATS_URL"] == "nats://nats:4222"
    assert env["CATGA_METRICS_HOST"] == "0.0.0.0"  # reachable from the Prometheus container


def test_every_mounted_file_exists() -> None:
    for name, svc in SERVICES.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and source != "./reports":
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_nats_fsyncs_every_write() -> None:
    conf = (ROOT / "deploy" / "nats.conf").read_text()
    assert "sync_interval: always" in conf


def test_prometheus_scrapes_both_workers_and_loads_the_rules() -> None:
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
    workers = [n for n in SERVICES if n.startswith("locust-worker")]
    assert sorted(targets) == sorted(["core:9464", *(f"{w}:9465" for w in workers)])
    for w in workers:
        assert "--metrics-port 9465" in SERVICES[w]["command"]
    assert "--metrics-port 9464" in SERVICES["core"]["command"]
    rules = prom["rule_files"][0]
    mount = next(v for v in SERVICES["prometheus"]["volumes"] if v.startswith("./alerts"))
    assert rules.startswith(mount.split(":")[1])
    assert (ROOT / "alerts" / Path(rules).name).exists()


def test_docker_compose_config_validates_the_file() -> None:
    """Debian's docker-compose (v1.29) parses and validates without an engine."""
    import subprocess

    from _support import require_tool

    exe = require_tool("docker-compose", "apt-get install -y docker-compose")
    proc = subprocess.run([exe, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    full = subprocess.run([exe, "-f", str(ROOT / "docker-compose.yml"), "config"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    resolved = yaml.safe_load(full.stdout)
    assert resolved["services"]["core"]["command"].startswith("serve --transport nats ")
