"""docker-compose.yml: the stack users bring up. No Docker engine here, so the file is checked
as data: every service is there, every mounted file exists, ports and wiring line up."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_the_whole_stack_is_declared() -> None:
    assert {"nats", "redis", "toxiproxy", "prometheus", "alertmanager", "grafana",
            "locust-master", "locust-worker-1", "locust-worker-2"} <= set(SERVICES)


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
    assert sorted(targets) == sorted(f"{w}:9464" for w in workers)
    for w in workers:
        assert "--metrics-port 9464" in SERVICES[w]["command"]
    rules = prom["rule_files"][0]
    mount = next(v for v in SERVICES["prometheus"]["volumes"] if v.startswith("./alerts"))
    assert rules.startswith(mount.split(":")[1])
    assert (ROOT / "alerts" / Path(rules).name).exists()
