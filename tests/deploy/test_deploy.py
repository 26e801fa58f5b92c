"""deploy/ and the Dockerfile: Prometheus config and rules, Grafana dashboard, compose,
Kubernetes (single-process and split ingest/calibrate) and the image.

No Docker or Kubernetes here, so each file is checked by what does run: promtool
(config, rules, rule unit tests, PromQL syntax of the dashboard), the metric names
streamer really exports, YAML parsing, streamer's own config decoder and CLI parser,
a parse of the Dockerfile (and hadolint when installed), and, in the integration
test, the real Debian ``prometheus`` scraping a live ``streamer run`` with the alert
rules loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import types
import typing
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from streamer.cli import _parser
from streamer.config import ENV_PREFIX, AppConfig, KafkaConfig, MetricsConfig, load_config
from streamer.telemetry.metrics import METRIC_NAMES, Health, Metrics, serve_http

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
PROM = DEPLOY / "prometheus"
ALERTS = PROM / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "streamer.json"
K8S = DEPLOY / "k8s"
SPLIT = K8S / "split"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
METRICS_PORT = 9108
CONFIG_PATH = "/etc/streamer/config.yaml"  # where the image, compose and k8s put config.yaml

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="Debian package prometheus (promtool) not installed")
needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None,
                                      reason="Debian package prometheus not installed")
needs_hadolint = pytest.mark.skipif(shutil.which("hadolint") is None,
                                    reason="hadolint not installed")

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


def _k8s_docs(pattern: str = "*.yaml") -> list[tuple[Path, dict[str, Any]]]:
    """Manifests of the single-process set (``k8s/*.yaml``), or ``pattern`` under k8s/."""
    return [(path, doc) for path in sorted(K8S.glob(pattern))
            for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _deployments() -> dict[str, dict[str, Any]]:
    """Every Deployment, single-process and split, by file name relative to k8s/."""
    out: dict[str, dict[str, Any]] = {}
    for path, doc in _k8s_docs("**/*.yaml"):
        if doc["kind"] == "Deployment":
            out[str(path.relative_to(K8S))] = doc
    return out


def _pod_container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = container
    return result


def _configmap_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(_k8s("ConfigMap")["data"]["config.yaml"])
    return config


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


def test_rule_unit_tests_cover_firing_and_quiet_cases_of_every_alert() -> None:
    tests = _load_yaml(PROM / "alerts_test.yml")["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    alerts = {rule["alert"] for rule in _alert_rules()}
    assert firing == alerts, alerts ^ firing
    assert quiet == alerts, alerts ^ quiet
    assert {"WsReconnectStorm", "FitErrorSpike"} <= firing & quiet


def test_the_metric_name_check_catches_a_name_streamer_does_not_export() -> None:
    expr = ('rate(streamer_tick_total[5m]) + streamer_calibration_seconds_bucket'
            ' + streamer_ticks_total{job="streamer"}')
    assert _unknown_metrics(expr) == {"streamer_tick_total"}


def test_alert_expressions_use_only_metrics_streamer_exports() -> None:
    rules = _alert_rules()
    used: set[str] = set().union(*(_metric_names(rule["expr"]) for rule in rules))
    assert used - METRIC_NAMES == set()
    assert len(used) >= 8, used


# What ops asked to be paged or warned on, and a predicate on the rule that does it.
_REQUIRED_ALERTS: dict[str, tuple[str, re.Pattern[str]]] = {
    "stale surface": ("SurfaceStale", re.compile(r"streamer_surface_age_seconds\s*>")),
    "tick→publish p99 over budget": (
        "TickToPublishP99High",
        re.compile(r"histogram_quantile\(0\.99,.*streamer_tick_to_publish_seconds_bucket.*\)"
                   r"\s*>", re.S)),
    "reconnect storm": ("WsReconnectStorm",
                        re.compile(r"rate\(streamer_ws_reconnects_total\[5m\]\)\)?\s*>")),
    "fit error spike": ("FitErrorSpike", re.compile(r"streamer_fit_rmse_vol.*>\s*3 \*", re.S)),
    "Kafka errors": ("KafkaErrors", re.compile(r"rate\(streamer_kafka_errors_total\[")),
    "not ready": ("VenueDisconnected", re.compile(r"streamer_venue_connected\s*==\s*0")),
    "down": ("StreamerDown", re.compile(r'up\{job="streamer"\}\s*==\s*0')),
}


@pytest.mark.parametrize("what", sorted(_REQUIRED_ALERTS))
def test_the_alerts_ops_asked_for_exist(what: str) -> None:
    name, pattern = _REQUIRED_ALERTS[what]
    rules = {rule["alert"]: rule for rule in _alert_rules()}
    assert name in rules, what
    assert pattern.search(rules[name]["expr"]), (what, rules[name]["expr"])
    assert rules[name]["annotations"]["runbook"].strip()


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    rules = _alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    assert {"StreamerDown", "TickToPublishP99High", "SurfaceStale", "VenueDisconnected",
            "KafkaErrors", "HighRejectRate", "FitRmseHigh", "WsReconnectStorm",
            "FitErrorSpike"} <= set(names)
    for rule in rules:
        assert rule["labels"]["severity"] in {"page", "warning"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]


@pytest.mark.parametrize("alert", ["FitRmseHigh", "FitErrorSpike"])
def test_fit_rmse_alerts_select_a_stat_label_streamer_sets(alert: str) -> None:
    (rule,) = [r for r in _alert_rules() if r["alert"] == alert]
    stats = set(re.findall(r'stat="([a-z]+)"', rule["expr"]))
    app_source = (ROOT / "streamer" / "app" / "service.py").read_text()
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


def _panel_exprs() -> list[tuple[str, str]]:
    """(panel title, expression) for every query of the dashboard."""
    return [(panel["title"], target["expr"]) for panel in _walk_panels(_dashboard()["panels"])
            for target in panel.get("targets", []) if target.get("expr")]


def _by(expr: str) -> set[str]:
    """The labels of every ``by (...)`` clause in an expression."""
    return {label.strip() for group in re.findall(r"by \(([^)]*)\)", expr)
            for label in group.split(",")}


# What ops asked to see: (metric, quantile or None, labels the query must keep).
_REQUIRED_PANELS: dict[str, tuple[str, str | None, set[str]]] = {
    "tick→publish p50 by stage": ("streamer_tick_to_publish_seconds_bucket", "0.5", {"stage"}),
    "tick→publish p99 by stage": ("streamer_tick_to_publish_seconds_bucket", "0.99", {"stage"}),
    "calibration p99 by model/underlying": ("streamer_calibration_seconds_bucket", "0.99",
                                            {"model", "underlying"}),
    "Kafka send p99": ("streamer_kafka_send_seconds_bucket", "0.99", set()),
    "event-loop lag p99": ("streamer_event_loop_lag_seconds_bucket", "0.99", set()),
    "ticks/s by venue": ("streamer_ticks_total", None, {"venue"}),
    "rejects by reason": ("streamer_ticks_rejected_total", None, {"reason"}),
    "fit RMSE per underlying": ("streamer_fit_rmse_vol", None, {"underlying"}),
    "surface age": ("streamer_surface_age_seconds", None, set()),
    "reconnects": ("streamer_ws_reconnects_total", None, {"venue"}),
    "Kafka errors": ("streamer_kafka_errors_total", None, {"reason"}),
    "pending surfaces": ("streamer_pending_surfaces", None, set()),
    "conflated surfaces": ("streamer_kafka_conflated_total", None, set()),
}


@pytest.mark.parametrize("what", sorted(_REQUIRED_PANELS))
def test_the_dashboard_has_the_panels_ops_asked_for(what: str) -> None:
    metric, quantile, labels = _REQUIRED_PANELS[what]
    matches = []
    for title, expr in _panel_exprs():
        if not re.search(rf"\b{metric}\b", expr):
            continue
        if quantile is not None and not expr.startswith(f"histogram_quantile({quantile},"):
            continue
        # either aggregated keeping the labels, or the raw series (which keeps them all)
        if labels <= _by(expr) or "by (" not in expr:
            matches.append(title)
    assert matches, what


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
    kinds = {doc["kind"] for _, doc in _k8s_docs()}
    assert {"Deployment", "ConfigMap", "Service", "ServiceMonitor",
            "PodDisruptionBudget"} <= kinds
    split_kinds = {doc["kind"] for _, doc in _k8s_docs("split/*.yaml")}
    assert split_kinds == {"Deployment", "PodDisruptionBudget"}
    for path, doc in _k8s_docs("**/*.yaml"):
        assert doc.get("apiVersion"), path
        assert doc.get("kind"), path
        assert doc.get("metadata", {}).get("name"), path


def _port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return int(number)


_DEPLOYMENTS = sorted(_deployments())


def test_there_are_the_single_process_and_the_split_deployments() -> None:
    assert _DEPLOYMENTS == ["deployment.yaml", "split/calibrate.yaml", "split/ingest.yaml"]


@pytest.mark.parametrize("name", _DEPLOYMENTS)
def test_deployment_probes_hit_readyz_and_healthz_on_the_metrics_port(name: str) -> None:
    container = _pod_container(_deployments()[name])
    ports = {p["containerPort"] for p in container["ports"]}
    assert ports == {METRICS_PORT}
    ready = container["readinessProbe"]["httpGet"]
    assert ready["path"] == "/readyz"
    assert _port_number(container, ready["port"]) == METRICS_PORT
    for probe in ("livenessProbe", "startupProbe"):
        live = container[probe]["httpGet"]
        assert live["path"] == "/healthz", probe
        assert _port_number(container, live["port"]) == METRICS_PORT, probe
    resources = container["resources"]
    assert {"requests", "limits"} <= set(resources)
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), kind


@pytest.mark.parametrize("name", _DEPLOYMENTS)
def test_deployment_runs_non_root_read_only_with_a_writable_tmp(name: str) -> None:
    pod = _deployments()[name]["spec"]["template"]["spec"]
    container = _pod_container(_deployments()[name])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[tmp["name"]]


@pytest.mark.parametrize("name", _DEPLOYMENTS)
def test_deployment_gets_config_from_the_configmap_and_sasl_from_a_secret(name: str) -> None:
    pod = _deployments()[name]["spec"]["template"]["spec"]
    container = _pod_container(_deployments()[name])
    env = {e["name"]: e for e in container["env"]}
    config = _configmap_config()
    for key in ("sasl_username_env", "sasl_password_env"):
        assert "secretKeyRef" in env[config["kafka"][key]]["valueFrom"], key
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == CONFIG_PATH]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mount["name"]]["configMap"]["name"] == _k8s("ConfigMap")["metadata"]["name"]
    assert mount["subPath"] in _k8s("ConfigMap")["data"]
    args = container["args"]
    assert args[args.index("--config") + 1] == CONFIG_PATH


@pytest.mark.parametrize(("name", "command", "replicas"), [
    ("deployment.yaml", "run", 1),
    ("split/ingest.yaml", "ingest", 1),
    ("split/calibrate.yaml", "calibrate", 3),
])
def test_deployment_runs_its_streamer_subcommand(name: str, command: str, replicas: int) -> None:
    deployment = _deployments()[name]
    args = _pod_container(deployment)["args"]
    assert args == [command, "--config", CONFIG_PATH]
    assert deployment["spec"]["replicas"] == replicas
    subcommands = next(a for a in _parser()._actions
                       if isinstance(a, argparse._SubParsersAction)).choices
    if command not in subcommands:
        pytest.skip(f"`streamer {command}` is not in the CLI yet")
    assert _parser().parse_args(args).command == command


def test_split_deployments_select_only_their_own_pods() -> None:
    deployments = _deployments()
    budgets = {doc["metadata"]["name"]: doc for _, doc in _k8s_docs("**/*.yaml")
               if doc["kind"] == "PodDisruptionBudget"}
    pod_labels = {name: d["spec"]["template"]["metadata"]["labels"]
                  for name, d in deployments.items()}
    for name, deployment in deployments.items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        chosen = [other for other, labels in pod_labels.items()
                  if selector.items() <= labels.items()]
        assert chosen == [name], (name, chosen)
        (budget,) = [b for b in budgets.values()
                     if b["spec"]["selector"]["matchLabels"] == selector]
        assert budget["spec"]["maxUnavailable"] == 1, name


@pytest.mark.parametrize("name", _DEPLOYMENTS)
def test_pods_carry_scrape_annotations_for_the_metrics_port(name: str) -> None:
    template = _deployments()[name]["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == METRICS_PORT


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

    embedded = _configmap_config()
    repository = _load_yaml(ROOT / "config.yaml")
    assert keys(embedded) == keys(repository)


def test_service_and_servicemonitor_reach_every_deployments_metrics_port() -> None:
    service = _k8s("Service")
    monitor = _k8s("ServiceMonitor")
    (port,) = service["spec"]["ports"]
    for name, deployment in _deployments().items():
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items(), name
        assert _port_number(_pod_container(deployment), port["targetPort"]) == METRICS_PORT
    pod_labels = _k8s("Deployment")["spec"]["template"]["metadata"]["labels"]
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
    assert "./grafana/streamer.json" in sources
    assert "./grafana/provisioning" in sources
    provider = _load_yaml(DEPLOY / "grafana/provisioning/dashboards/streamer.yaml")
    dash_dst = next(m.split(":")[1] for m in grafana["volumes"]
                    if m.startswith("./grafana/streamer.json"))
    assert Path(dash_dst).parent == Path(provider["providers"][0]["options"]["path"])
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == dash_dst
    assert not list(DEPLOY.rglob("streamer-dashboard.json"))


def test_compose_mounts_config_where_the_image_reads_it() -> None:
    streamer = _load_yaml(COMPOSE)["services"]["streamer"]
    destinations = {m.split(":")[1] for m in streamer["volumes"]}
    assert CONFIG_PATH in destinations
    assert streamer["command"] == ["run", "--config", CONFIG_PATH]


# -- every env var and config key the deploy files name exists in streamer.config ----------
def _credential_env_names() -> set[str]:
    """Env vars that hold secrets, named by kafka.sasl_*_env (defaults and the ConfigMap)."""
    names = {KafkaConfig().sasl_username_env, KafkaConfig().sasl_password_env}
    kafka = _configmap_config()["kafka"]
    return names | {kafka["sasl_username_env"], kafka["sasl_password_env"]}


def _setting_path(env_name: str) -> list[str]:
    """``STREAMER_KAFKA__CLIENT_ID`` → ``["kafka", "client_id"]``."""
    return [part.lower() for part in env_name[len(ENV_PREFIX):].split("__")]


def _config_field(path: list[str]) -> bool:
    """Whether ``path`` names a field of AppConfig (a section, then its keys)."""
    struct: Any = AppConfig
    for part in path:
        if typing.get_origin(struct) is tuple:  # venues: tuple[VenueConfig, ...]
            struct = typing.get_args(struct)[0]
        if isinstance(struct, types.UnionType):  # VenueConfig: the venue that has the key
            struct = next((s for s in typing.get_args(struct)
                           if part in getattr(s, "__struct_fields__", ())), None)
        if not (isinstance(struct, type) and issubclass(struct, msgspec.Struct)):
            return False
        if part not in struct.__struct_fields__:
            return False
        struct = msgspec.structs.fields(struct)[struct.__struct_fields__.index(part)].type
    return True


def _compose_env() -> dict[str, str]:
    env = _load_yaml(COMPOSE)["services"]["streamer"]["environment"]
    return {str(k): str(v) for k, v in env.items()}


def _k8s_env(name: str) -> dict[str, str]:
    """A Deployment's env, with values from Secrets and the downward API made up."""
    return {e["name"]: str(e.get("value", f"<{e['name']} from valueFrom>"))
            for e in _pod_container(_deployments()[name])["env"]}


_ENV_SOURCES: dict[str, Any] = {
    "docker-compose.yml": _compose_env,
    **{f"k8s/{name}": (lambda n=name: _k8s_env(n)) for name in _DEPLOYMENTS},
}


def test_the_setting_check_catches_a_name_streamer_does_not_have() -> None:
    assert _config_field(["kafka", "client_id"])
    assert _config_field(["metrics"])
    assert _config_field(["venues", "url"])
    assert not _config_field(["kafka", "group"])
    assert not _config_field(["kafka", "client_id", "x"])
    assert not _config_field(["metric", "port"])


@pytest.mark.parametrize("source", sorted(_ENV_SOURCES))
def test_every_streamer_env_var_is_a_setting_or_a_named_credential(source: str) -> None:
    env = _ENV_SOURCES[source]()
    settings = {name for name in env if name.startswith(ENV_PREFIX)}
    credentials = settings & _credential_env_names()
    unknown = {name for name in settings - credentials if not _config_field(_setting_path(name))}
    assert not unknown, unknown


@pytest.mark.parametrize("source", sorted(_ENV_SOURCES))
def test_the_env_values_decode_with_the_config_they_go_with(source: str, tmp_path: Path) -> None:
    env = _ENV_SOURCES[source]()
    if source.startswith("k8s/"):
        config = tmp_path / "config.yaml"
        config.write_text(_k8s("ConfigMap")["data"]["config.yaml"])
    else:
        config = ROOT / "config.yaml"  # what compose mounts
    loaded = load_config(config, env=env)
    assert loaded.metrics.host == "0.0.0.0"
    assert loaded.metrics.port == METRICS_PORT


# A config key written in prose or comments: `kafka.ticks_topic`, `venues[].url`.
_KEY_RE = re.compile(r"(?<![\w.\-/$])(" + "|".join(AppConfig.__struct_fields__) +
                     r")(?:\[\d*\])?\.([a-z_]+)\b(?!\.\w|[\-/])")
_ENV_RE = re.compile(rf"\b{ENV_PREFIX}[A-Z][A-Z0-9_]*\b")
_DEPLOY_TEXTS = sorted([*DEPLOY.rglob("*.y*ml"), *DEPLOY.rglob("*.md"), DOCKERFILE])


@pytest.mark.parametrize("path", _DEPLOY_TEXTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_keys_and_env_vars_named_in_deploy_files_exist(path: Path) -> None:
    text = path.read_text()
    keys = {(section, key) for section, key in _KEY_RE.findall(text)}
    unknown_keys = {f"{s}.{k}" for s, k in keys if not _config_field([s, k])}
    assert not unknown_keys, unknown_keys
    envs = set(_ENV_RE.findall(text)) - _credential_env_names()
    unknown_envs = {e for e in envs if not _config_field(_setting_path(e))}
    assert not unknown_envs, unknown_envs


# -- the Dockerfile -------------------------------------------------------------------------
def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        op, _, rest = (pending + stripped).partition(" ")
        instructions.append((op.upper(), rest.strip()))
        pending = ""
    assert not pending, "dangling line continuation"
    return instructions


def _stages() -> list[list[tuple[str, str]]]:
    """The build stages, each starting with its FROM."""
    stages: list[list[tuple[str, str]]] = []
    for op, rest in _dockerfile():
        if op == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((op, rest))
    return stages


def _exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list), rest
    return [str(v) for v in value]


def _index(stage: list[tuple[str, str]], op: str, pattern: str) -> int:
    hits = [i for i, (o, rest) in enumerate(stage) if o == op and re.search(pattern, rest)]
    assert hits, (op, pattern)
    return hits[0]


def test_dockerfile_is_multi_stage_on_a_slim_base() -> None:
    args = {}
    for op, rest in _dockerfile():
        if op == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args[name] = default
    stages = _stages()
    assert len(stages) >= 2
    for stage in stages:
        image = stage[0][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], image)
        assert image.startswith("python:"), image
        assert "slim" in image, image
    # the runtime stage takes the build's result from an earlier stage, not the sources
    runtime = stages[-1]
    assert any(op == "COPY" and rest.startswith("--from=") for op, rest in runtime)
    assert not any(op == "COPY" and re.search(r"\bstreamer\b\s", rest + " ")
                   and not rest.startswith("--from=") for op, rest in runtime)


def test_dockerfile_installs_dependencies_before_copying_the_source() -> None:
    (builder,) = [s for s in _stages() if any(re.search(r"\bpyproject\.toml\b", rest)
                                                for op, rest in s if op == "COPY")]
    copy_pyproject = _index(builder, "COPY", r"\bpyproject\.toml\b")
    install_deps = _index(builder, "RUN", r"pip install")
    copy_source = _index(builder, "COPY", r"(^|\s)streamer\b")
    assert copy_pyproject < install_deps < copy_source
    # the dependency layer sees pyproject.toml only: nothing else is copied before it
    copies = [rest for op, rest in builder[:install_deps] if op == "COPY"]
    assert copies == [builder[copy_pyproject][1]]
    assert builder[copy_pyproject][1].split()[:-1] == ["pyproject.toml"]


def test_dockerfile_builds_the_native_fast_path_in_the_builder_only() -> None:
    builder, runtime = _stages()[0], _stages()[-1]
    compiler = _index(builder, "RUN", r"apt-get install .*\bgcc\b")
    copy_setup = _index(builder, "COPY", r"(^|\s)setup\.py\b")
    install_package = _index(builder, "RUN", r"pip install --no-deps \.")
    assert compiler < copy_setup < install_package
    assert not any(op == "RUN" and "gcc" in rest for op, rest in runtime)


def test_dockerfile_runs_as_a_non_root_user_matching_the_k8s_pods() -> None:
    runtime = _stages()[-1]
    users = [rest for op, rest in runtime if op == "USER"]
    assert users, "no USER in the runtime stage"
    user, _, group = users[-1].partition(":")
    assert user not in {"root", "0"}
    assert group not in {"root", "0"}
    for name, deployment in _deployments().items():
        pod = deployment["spec"]["template"]["spec"]["securityContext"]
        assert str(pod["runAsUser"]) == user, name
        if group:
            assert str(pod["runAsGroup"]) == group, name


def test_dockerfile_exposes_the_default_metrics_port() -> None:
    exposed = [rest for op, rest in _dockerfile() if op == "EXPOSE"]
    assert exposed == [str(MetricsConfig().port)]
    assert MetricsConfig().port == METRICS_PORT
    assert load_config(ROOT / "config.yaml", env={}).metrics.port == METRICS_PORT


def test_dockerfile_entrypoint_and_default_command() -> None:
    runtime = _stages()[-1]
    (entrypoint,) = [_exec_form(rest) for op, rest in runtime if op == "ENTRYPOINT"]
    (cmd,) = [_exec_form(rest) for op, rest in runtime if op == "CMD"]
    assert entrypoint == ["streamer"]
    scripts = _load_yaml_toml(ROOT / "pyproject.toml")["project"]["scripts"]
    assert "streamer" in scripts
    assert cmd == ["run", "--config", CONFIG_PATH]
    assert _parser().parse_args(cmd).command == "run"
    # the image ships a default config where compose and k8s mount theirs
    assert any(op == "COPY" and rest.split()[-1] == CONFIG_PATH for op, rest in runtime)


def _load_yaml_toml(path: Path) -> dict[str, Any]:
    import tomllib

    with path.open("rb") as f:
        return tomllib.load(f)


def _healthcheck_command() -> list[str]:
    (healthcheck,) = [rest for op, rest in _stages()[-1] if op == "HEALTHCHECK"]
    options, _, command = healthcheck.partition("CMD ")
    assert "--interval=" in options
    return _exec_form(command)


def test_dockerfile_healthcheck_gets_healthz_with_python_urllib() -> None:
    command = _healthcheck_command()
    assert command[:2] == ["python", "-c"]
    assert "urllib.request" in command[2]
    assert "/healthz" in command[2]


async def test_dockerfile_healthcheck_command_passes_on_a_live_endpoint_only() -> None:
    code = _healthcheck_command()[2]
    handle = await serve_http(Metrics(), Health(), "127.0.0.1", 0)

    async def check(port: int) -> int:
        env = dict(os.environ, STREAMER_METRICS__PORT=str(port))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        return await asyncio.wait_for(proc.wait(), timeout=30)

    try:
        assert await check(handle.port) == 0
    finally:
        await handle.close()
    assert await check(handle.port) != 0  # nothing listens any more


def test_dockerignore_keeps_what_the_build_copies() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    sources = [src for op, rest in _dockerfile() if op == "COPY" and "--from=" not in rest
               for src in rest.split()[:-1]]
    assert {"pyproject.toml", "setup.py", "streamer", "config.yaml"} <= set(sources)
    for src in sources:
        assert (ROOT / src).exists(), src
        assert not any(fnmatch.fnmatch(src, pattern.lstrip("/")) for pattern in patterns), src
    assert ".venv" in patterns
    assert ".git" in patterns


@needs_hadolint
def test_hadolint_accepts_the_dockerfile() -> None:
    result = subprocess.run(["hadolint", str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


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


def _query(base: str, promql: str) -> list[float]:
    """The sample values of an instant query (empty when it has no result)."""
    body = _api(base, "/api/v1/query", query=promql)
    assert body["status"] == "success", (promql, body)
    return [float(r["value"][1]) for r in body["data"]["result"]]


def _rules_ok(base: str) -> bool:
    groups = _api(base, "/api/v1/rules")["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    return bool(rules) and all(rule["health"] == "ok" for rule in rules)


JOB = 'job="streamer"'
SCRAPES = 10  # ~10 s of 1 s scrapes before the assertions
P99 = ("histogram_quantile(0.99, sum by (le) "
       f"(rate(streamer_tick_to_publish_seconds_bucket{{{JOB}}}[30s])))")


def _scraped_enough(base: str) -> bool:
    """At least SCRAPES successful scrapes, surfaces published, and the rules loaded."""
    scrapes = _query(base, f"sum_over_time(up{{{JOB}}}[30s])")
    published = _query(base, f"sum(streamer_tick_to_publish_seconds_count{{{JOB}}})")
    return (bool(scrapes) and scrapes[0] >= SCRAPES and bool(published) and published[0] > 0
            and _rules_ok(base))


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
    # --loop keeps quotes (and so tick→publish observations) coming for the whole test;
    # --duration only bounds a run this test fails to stop.
    streamer_cmd = [sys.executable, "-m", "streamer.cli", "run", "--config", "config.yaml",
                    "--speed", "20", "--loop", "--duration", "120"]
    prom_cmd = ["prometheus", f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}"]
    base = f"http://127.0.0.1:{prom_port}"
    expected_groups = {g["name"] for g in _load_yaml(ALERTS)["groups"]}
    ready = False
    with (tmp_path / "streamer.log").open("wb") as s_log, \
            (tmp_path / "prometheus.log").open("wb") as p_log:
        streamer = subprocess.Popen(streamer_cmd, env=env, cwd=ROOT, stdout=s_log,
                                    stderr=subprocess.STDOUT)
        prometheus = subprocess.Popen(prom_cmd, cwd=tmp_path, stdout=p_log,
                                      stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not ready:
                assert streamer.poll() is None, "streamer exited early"
                assert prometheus.poll() is None, "prometheus exited early"
                time.sleep(1)
                try:
                    ready = _scraped_enough(base)
                except OSError:
                    continue
            up = _query(base, f"up{{{JOB}}}")
            count = _query(base, f"sum(streamer_tick_to_publish_seconds_count{{{JOB}}})")
            p99 = _query(base, P99)
            groups = {g["name"] for g in _api(base, "/api/v1/rules")["data"]["groups"]}
            statuses = {expr: _api(base, "/api/v1/query", query=_as_promql(expr))
                        for expr in _dashboard_exprs()}
        finally:
            streamer_code = _stop(streamer, grace_s=20)
            prometheus_code = _stop(prometheus, grace_s=30)
    logs = (f"\n--- streamer ---\n{(tmp_path / 'streamer.log').read_text()[-3000:]}"
            f"\n--- prometheus ---\n{(tmp_path / 'prometheus.log').read_text()[-3000:]}")
    assert ready, logs
    assert up == [1.0], logs
    assert len(count) == 1, logs
    assert count[0] > 0, logs
    assert len(p99) == 1, (p99, logs)
    assert math.isfinite(p99[0]), (p99, logs)
    assert p99[0] > 0, (p99, logs)
    assert groups == expected_groups
    failed = {e: r.get("error") for e, r in statuses.items() if r["status"] != "success"}
    assert not failed
    # SIGTERM is a clean stop for both: streamer flushes and exits 0, so does prometheus
    assert streamer_code == 0, logs
    assert prometheus_code == 0, logs
