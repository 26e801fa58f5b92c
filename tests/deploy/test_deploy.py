"""deploy/: Prometheus config and rules, Grafana dashboard, compose and Kubernetes files.

No Docker or Kubernetes here, so each file is checked by what does run: promtool
(config, rules, rule unit tests, PromQL syntax of the dashboard), the metric names
streamer really exports, YAML parsing, streamer's own config decoder, and, in the
integration test, the real Debian ``prometheus`` scraping a live ``streamer run``
with the alert rules loaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamer.config import load_config
from streamer.metrics import METRIC_NAMES

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
PROM = DEPLOY / "prometheus"
ALERTS = PROM / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "streamer-dashboard.json"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "docker-compose.yml"
METRICS_PORT = 9108

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="Debian package prometheus (promtool) not installed")
needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None,
                                      reason="Debian package prometheus not installed")

_METRIC_RE = re.compile(r"streamer_[a-z_]+")
_SUFFIXES = ("_bucket", "_sum", "_count")


# -- helpers ---------------------------------------------------------------------------
def _metric_names(promql: str) -> set[str]:
    """Every ``streamer_*`` name in a PromQL text, histogram series suffixes stripped."""
    names: set[str] = set()
    for name in _METRIC_RE.findall(promql):
        for suffix in _SUFFIXES:
            if name.endswith(suffix) and name[: -len(suffix)] in METRIC_NAMES:
                name = name[: -len(suffix)]
                break
        names.add(name)
    return names


def _unknown_metrics(promql: str) -> set[str]:
    return _metric_names(promql) - METRIC_NAMES


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _alert_rules() -> list[dict[str, Any]]:
    groups = _load_yaml(ALERTS)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _walk_panels(panel.get("panels", []))


def _dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in _walk_panels(_dashboard()["panels"])
            for target in panel.get("targets", []) if target.get("expr")]


def _template_queries() -> list[str]:
    queries = []
    for var in _dashboard()["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def _as_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced by what they expand to."""
    return (expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")
            .replace("$job", ".*").replace("$instance", ".*"))


def _k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in sorted(K8S.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _k8s(kind: str) -> dict[str, Any]:
    (doc,) = [doc for _, doc in _k8s_docs() if doc["kind"] == kind]
    return doc


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *map(str, args)], capture_output=True, text=True,
                          timeout=60, check=False)


# -- Prometheus config and rules --------------------------------------------------------
@needs_promtool
def test_promtool_accepts_the_prometheus_config() -> None:
    result = _promtool("check", "config", PROM / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr


@needs_promtool
def test_promtool_accepts_the_alert_rules() -> None:
    result = _promtool("check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_of_the_alert_rules_pass() -> None:
    result = _promtool("test", "rules", PROM / "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_unit_tests_cover_firing_and_quiet_cases_of_several_alerts() -> None:
    tests = _load_yaml(PROM / "alerts_test.yml")["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert len(firing & quiet) >= 4, (firing, quiet)
    assert firing <= {rule["alert"] for rule in _alert_rules()}


def test_the_metric_name_check_catches_a_name_streamer_does_not_export() -> None:
    expr = ('rate(streamer_tick_total[5m]) + streamer_calibration_seconds_bucket'
            ' + streamer_ticks_total{job="streamer"}')
    assert _unknown_metrics(expr) == {"streamer_tick_total"}


def test_alert_expressions_use_only_metrics_streamer_exports() -> None:
    rules = _alert_rules()
    used: set[str] = set().union(*(_metric_names(rule["expr"]) for rule in rules))
    assert used - METRIC_NAMES == set()
    assert len(used) >= 8, used


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    rules = _alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    assert {"StreamerDown", "TickToPublishP99High", "SurfaceStale", "VenueDisconnected",
            "KafkaErrors", "HighRejectRate", "FitRmseHigh"} <= set(names)
    for rule in rules:
        assert rule["labels"]["severity"] in {"page", "warning"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]


def test_fit_rmse_alert_selects_a_stat_label_streamer_sets() -> None:
    (rule,) = [r for r in _alert_rules() if r["alert"] == "FitRmseHigh"]
    stats = set(re.findall(r'stat="([a-z]+)"', rule["expr"]))
    app_source = (ROOT / "streamer" / "app.py").read_text()
    assert stats, rule["expr"]
    assert all(f'stat="{stat}"' in app_source for stat in stats), stats


# -- Grafana ----------------------------------------------------------------------------
def test_dashboard_queries_use_only_metrics_streamer_exports() -> None:
    exprs = _dashboard_exprs() + _template_queries()
    used: set[str] = set().union(*(_metric_names(e) for e in exprs))
    assert used - METRIC_NAMES == set()
    for wanted in ("streamer_tick_to_publish_seconds", "streamer_calibration_seconds",
                   "streamer_ticks_total", "streamer_ticks_rejected_total",
                   "streamer_fit_rmse_vol", "streamer_surface_age_seconds",
                   "streamer_venue_connected", "streamer_kafka_errors_total",
                   "streamer_pending_surfaces", "streamer_event_loop_lag_seconds"):
        assert wanted in used, wanted


def test_dashboard_panels_use_the_ds_prometheus_variable() -> None:
    dashboard = _dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    for panel in _walk_panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses PromQL only inside rule files: wrap each query as a recording rule.
    rules = [{"record": f"dashboard:query_{i}", "expr": _as_promql(expr)}
             for i, expr in enumerate(_dashboard_exprs())]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


# -- YAML, Kubernetes, compose ------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.y*ml")),
                         ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_file_parses(path: Path) -> None:
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert docs, path
    assert all(isinstance(doc, dict) for doc in docs), path


def test_every_k8s_manifest_has_api_version_kind_and_name() -> None:
    docs = _k8s_docs()
    kinds = {doc["kind"] for _, doc in docs}
    assert {"Deployment", "ConfigMap", "Service", "ServiceMonitor",
            "PodDisruptionBudget"} <= kinds
    for path, doc in docs:
        assert doc.get("apiVersion"), path
        assert doc.get("kind"), path
        assert doc.get("metadata", {}).get("name"), path


def _container() -> dict[str, Any]:
    (container,) = _k8s("Deployment")["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = container
    return result


def _port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return int(number)


def test_deployment_probes_hit_readyz_and_healthz_on_the_metrics_port() -> None:
    container = _container()
    ports = {p["containerPort"] for p in container["ports"]}
    assert ports == {METRICS_PORT}
    ready = container["readinessProbe"]["httpGet"]
    live = container["livenessProbe"]["httpGet"]
    assert ready["path"] == "/readyz"
    assert live["path"] == "/healthz"
    assert _port_number(container, ready["port"]) == METRICS_PORT
    assert _port_number(container, live["port"]) == METRICS_PORT
    assert "resources" in container
    assert {"requests", "limits"} <= set(container["resources"])


def test_deployment_runs_non_root_with_sasl_credentials_from_a_secret() -> None:
    pod = _k8s("Deployment")["spec"]["template"]["spec"]
    container = _container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    env = {e["name"]: e for e in container["env"]}
    config = yaml.safe_load(_k8s("ConfigMap")["data"]["config.yaml"])
    for key in ("sasl_username_env", "sasl_password_env"):
        assert "secretKeyRef" in env[config["kafka"][key]]["valueFrom"], key
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/etc/streamer/config.yaml" in mounts
    assert container["args"][-1] == "/etc/streamer/config.yaml"


def test_configmap_config_decodes_with_streamers_loader(tmp_path: Path) -> None:
    embedded = _k8s("ConfigMap")["data"]["config.yaml"]
    path = tmp_path / "config.yaml"
    path.write_text(embedded)
    config = load_config(path, env={})
    assert not config.kafka.embedded
    assert "svc" in config.kafka.bootstrap_servers
    assert config.metrics.host == "0.0.0.0"
    assert config.metrics.port == METRICS_PORT


def test_configmap_config_has_the_same_keys_as_the_repository_config() -> None:
    def keys(tree: dict[str, Any]) -> set[str]:
        out: set[str] = set()
        for section, value in tree.items():
            out.add(section)
            if isinstance(value, dict):
                out |= {f"{section}.{key}" for key in value}
            elif isinstance(value, list) and value and isinstance(value[0], dict):
                out |= {f"{section}[].{key}" for key in value[0]}
        return out

    embedded = yaml.safe_load(_k8s("ConfigMap")["data"]["config.yaml"])
    repository = _load_yaml(ROOT / "config.yaml")
    assert keys(embedded) == keys(repository)


def test_service_and_servicemonitor_reach_the_container_port() -> None:
    container = _container()
    service = _k8s("Service")
    monitor = _k8s("ServiceMonitor")
    pod_labels = _k8s("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert _port_number(container, port["targetPort"]) == METRICS_PORT
    monitor_selector = monitor["spec"]["selector"]["matchLabels"]
    assert monitor_selector.items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [port["name"]]
    assert service["metadata"]["name"] == "streamer"  # the job label the alert rules expect
    pdb_selector = _k8s("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    assert pdb_selector.items() <= pod_labels.items()


def test_compose_prometheus_scrapes_the_streamer_metrics_port() -> None:
    compose = _load_yaml(COMPOSE)
    services = compose["services"]
    assert {"streamer", "kafka", "prometheus", "grafana"} <= set(services)
    streamer = services["streamer"]
    env = streamer["environment"]
    assert env["STREAMER_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["STREAMER_METRICS__HOST"] == "0.0.0.0"
    port = int(env.get("STREAMER_METRICS__PORT", METRICS_PORT))
    assert any(str(p).endswith(f":{port}") for p in streamer["ports"])
    assert services["kafka"]["image"].startswith("apache/kafka")
    # the Prometheus config compose mounts scrapes streamer:<port>
    mounts: dict[str, str] = {}
    for mount in services["prometheus"]["volumes"]:
        src, dst, *_ = mount.split(":")
        mounts[src] = dst
    config_src = next(src for src, dst in mounts.items() if dst.endswith("prometheus.yml"))
    config = _load_yaml(DEPLOY / config_src)
    targets = [t for job in config["scrape_configs"] if job["job_name"] == "streamer"
               for static in job["static_configs"] for t in static["targets"]]
    assert targets == [f"streamer:{port}"]
    rule_dsts = {dst for src, dst in mounts.items() if src.endswith("alerts.yml")}
    config_dir = Path(mounts[config_src]).parent
    assert {str(config_dir / f) for f in config["rule_files"]} <= rule_dsts


def test_compose_grafana_gets_the_dashboard_and_provisioning() -> None:
    grafana = _load_yaml(COMPOSE)["services"]["grafana"]
    sources = {m.split(":")[0] for m in grafana["volumes"]}
    assert "./grafana/streamer-dashboard.json" in sources
    assert "./grafana/provisioning" in sources
    provider = _load_yaml(DEPLOY / "grafana/provisioning/dashboards/streamer.yaml")
    dash_dst = next(m.split(":")[1] for m in grafana["volumes"]
                    if m.startswith("./grafana/streamer-dashboard.json"))
    assert Path(dash_dst).parent == Path(provider["providers"][0]["options"]["path"])


# -- a real Prometheus scraping a real run -------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _api(base: str, path: str, **params: str) -> Any:
    """GET a Prometheus API path; API errors (HTTP 4xx/5xx with a JSON body) are returned."""
    url = f"{base}{path}?{urllib.parse.urlencode(params)}" if params else f"{base}{path}"
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            body = exc.read()
        try:
            return json.loads(body)
        except ValueError:
            raise exc from None


def _stop(proc: subprocess.Popen[bytes], grace_s: float) -> int:
    """Terminate and wait; kill after ``grace_s``. The exit code (negative: killed)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _ticks(base: str) -> float:
    body = _api(base, "/api/v1/query", query="sum(streamer_ticks_total)")
    return sum(float(r["value"][1]) for r in body["data"]["result"])


def _rules_ok(base: str) -> bool:
    groups = _api(base, "/api/v1/rules")["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    return bool(rules) and all(rule["health"] == "ok" for rule in rules)


@pytest.mark.integration
@needs_prometheus
def test_prometheus_scrapes_a_live_run_and_loads_the_alert_rules(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    metrics_port, prom_port = _free_port(), _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [{"job_name": "streamer",
                            "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}],
    }))
    env = dict(os.environ, STREAMER_KAFKA__BOOTSTRAP_SERVERS=kafka_bootstrap,
               STREAMER_KAFKA__ENABLE_IDEMPOTENCE="false",
               # Its own topic: the end-to-end test reads vol.surface.v1 on this broker.
               STREAMER_KAFKA__SURFACE_TOPIC="vol.surface.deploy-test",
               STREAMER_METRICS__PORT=str(metrics_port))
    streamer_cmd = [sys.executable, "-m", "streamer.cli", "run", "--config", "config.yaml",
                    "--speed", "20", "--duration", "40"]
    prom_cmd = ["prometheus", f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}"]
    base = f"http://127.0.0.1:{prom_port}"
    expected_groups = {g["name"] for g in _load_yaml(ALERTS)["groups"]}
    ticks, rules_ok = 0.0, False
    with (tmp_path / "streamer.log").open("wb") as s_log, \
            (tmp_path / "prometheus.log").open("wb") as p_log:
        streamer = subprocess.Popen(streamer_cmd, env=env, cwd=ROOT, stdout=s_log,
                                    stderr=subprocess.STDOUT)
        prometheus = subprocess.Popen(prom_cmd, cwd=tmp_path, stdout=p_log,
                                      stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (ticks > 0 and rules_ok):
                assert streamer.poll() is None, "streamer exited early"
                assert prometheus.poll() is None, "prometheus exited early"
                time.sleep(1)
                try:
                    ticks = _ticks(base)
                    rules_ok = _rules_ok(base)
                except OSError:
                    continue
            groups = {g["name"] for g in _api(base, "/api/v1/rules")["data"]["groups"]}
            statuses = {expr: _api(base, "/api/v1/query", query=_as_promql(expr))
                        for expr in _dashboard_exprs()}
        finally:
            # streamer's own shutdown is tests/e2e's subject; here it only has to go away
            _stop(streamer, grace_s=10)
            prometheus_code = _stop(prometheus, grace_s=30)
    logs = (f"\n--- streamer ---\n{(tmp_path / 'streamer.log').read_text()[-3000:]}"
            f"\n--- prometheus ---\n{(tmp_path / 'prometheus.log').read_text()[-3000:]}")
    assert ticks > 0, logs
    assert rules_ok, logs
    assert groups == expected_groups
    failed = {e: r.get("error") for e, r in statuses.items() if r["status"] != "success"}
    assert not failed
    assert prometheus_code == 0, logs
