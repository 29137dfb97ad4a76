#!/usr/bin/env python3
"""The checks of deploy/observability that promtool does not make (scripts/check-observability).

  dashboards            every dashboard: valid JSON, schemaVersion >= 39, a unique uid, unique
                        panel ids, every datasource uid one the provisioning defines
  k8s-config OUT_DIR    prometheus-k8s.yml's Kubernetes service discovery checked here (Debian's
                        promtool is built without it), its relabelling run on sample pods, and
                        a copy with static targets in its place written to OUT_DIR for promtool
  vector                logs/vector.yaml: YAML, every input names a component, the Loki labels
                        bounded (no ids)
"""

import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path("deploy/observability")
problems = []


def problem(text):
    problems.append(text)
    print(f"  FAILED: {text}")


def check_dashboards():
    uids = set()
    for path in sorted((ROOT / "grafana/provisioning/datasources").glob("*.yml")):
        for source in yaml.safe_load(path.read_text()).get("datasources", []):
            uids.add(source["uid"])
    print(f"  datasource uids provisioned: {sorted(uids)}")
    boards = sorted((ROOT / "grafana/dashboards").glob("*.json"))
    if not boards:
        problem("no dashboard in grafana/dashboards")
    seen_uids = {}
    for path in boards:
        try:
            board = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            problem(f"{path}: not JSON: {error}")
            continue
        if board.get("schemaVersion", 0) < 39:
            problem(f"{path}: schemaVersion {board.get('schemaVersion')} < 39")
        uid = board.get("uid")
        if not uid or uid in seen_uids:
            problem(f"{path}: uid {uid!r} missing or also in {seen_uids.get(uid)}")
        seen_uids[uid] = path
        ids = []

        def walk(node):
            if isinstance(node, dict):
                source = node.get("datasource")
                if isinstance(source, dict) and source.get("type") != "grafana":
                    if source.get("uid") not in uids:
                        problem(f"{path}: datasource uid {source.get('uid')!r} is not provisioned")
                for child in node.values():
                    walk(child)
            elif isinstance(node, list):
                for child in node:
                    walk(child)

        def panels(items):
            for panel in items:
                ids.append(panel.get("id"))
                panels(panel.get("panels", []))

        panels(board.get("panels", []))
        walk(board)
        duplicates = sorted({i for i in ids if ids.count(i) > 1 or i is None}, key=str)
        if duplicates:
            problem(f"{path}: panel ids not unique: {duplicates}")
        print(f"  {path}: {len(ids)} panels, uid {uid}")


SD_KEYS = {"role", "namespaces", "selectors", "api_server", "kubeconfig_file", "attach_metadata",
           "follow_redirects", "enable_http2", "tls_config", "authorization", "oauth2", "proxy_url"}
ROLES = {"node", "pod", "service", "endpoints", "endpointslice", "ingress"}


def relabel(configs, labels):
    """Prometheus's relabelling (the actions this file uses); None when dropped."""
    labels = dict(labels)
    for config in configs:
        action = config.get("action", "replace")
        regex = re.compile(config.get("regex", "(.*)"))
        value = config.get("separator", ";").join(labels.get(l, "") for l in config.get("source_labels", []))
        if action == "keep":
            if not regex.fullmatch(value):
                return None
        elif action == "drop":
            if regex.fullmatch(value):
                return None
        elif action == "replace":
            match = regex.fullmatch(value)
            if match:
                result = match.expand(config.get("replacement", "$1").replace("$", "\\"))
                if result:
                    labels[config["target_label"]] = result
                else:
                    labels.pop(config["target_label"], None)
        elif action == "labeldrop":
            labels = {k: v for k, v in labels.items() if not regex.fullmatch(k)}
        else:
            raise SystemExit(f"relabel action {action} is not simulated here")
    return {k: v for k, v in labels.items() if not k.startswith("__") or k in ("__address__", "__metrics_path__")}


def pod(app, port, phase="Running", hash_=None):
    labels = {"__address__": f"10.0.0.1:{port[1]}", "__meta_kubernetes_namespace": "micromart",
              "__meta_kubernetes_pod_name": f"{app}-abc", "__meta_kubernetes_pod_phase": phase,
              "__meta_kubernetes_pod_container_name": app,
              "__meta_kubernetes_pod_container_port_name": port[0],
              "__meta_kubernetes_pod_label_app_kubernetes_io_name": app}
    if hash_:
        labels["__meta_kubernetes_pod_label_rollouts_pod_template_hash"] = hash_
    return labels


def check_k8s_config(out_dir):
    path = ROOT / "prometheus/prometheus-k8s.yml"
    config = yaml.safe_load(path.read_text())
    holders = list(config.get("scrape_configs", [])) + list(
        config.get("alerting", {}).get("alertmanagers", []))
    for holder in holders:
        for sd in holder.pop("kubernetes_sd_configs", []):
            unknown = set(sd) - SD_KEYS
            if unknown or sd.get("role") not in ROLES:
                problem(f"{path}: kubernetes_sd_configs {sd}: unknown keys {unknown} or role")
            names = sd.get("namespaces", {}).get("names", [])
            if not all(isinstance(n, str) for n in names):
                problem(f"{path}: namespaces.names must be strings: {names}")
            holder.setdefault("static_configs", []).append({"targets": ["sd-placeholder:9090"]})
    print(f"  {path}: kubernetes_sd_configs checked; promtool checks the rest on a copy")
    shop = next(c for c in config["scrape_configs"] if c["job_name"] == "micromart")
    cases = [
        (pod("gateway", ("admin", 9080), hash_="7d9f"), {"app": "gateway", "pod_template_hash": "7d9f"}),
        (pod("catalog", ("http", 8082)), {"app": "catalog", "namespace": "micromart", "pod": "catalog-abc"}),
        (pod("order", ("metrics", 9999)), {"app": "order"}),
        (pod("order", ("internal", 9084)), None),
        (pod("gateway", ("http", 8080)), None),
        (pod("postgres-order", ("postgres", 5432)), None),
        (pod("catalog", ("http", 8082), phase="Pending"), None),
    ]
    for meta, want in cases:
        got = relabel(shop["relabel_configs"], meta)
        name = f"{meta['__meta_kubernetes_pod_label_app_kubernetes_io_name']}:{meta['__meta_kubernetes_pod_container_port_name']}"
        if want is None:
            if got is not None:
                problem(f"relabelling keeps {name} ({meta['__meta_kubernetes_pod_phase']}): {got}")
        elif got is None or any(got.get(k) != v for k, v in want.items()):
            problem(f"relabelling of {name}: want {want} in {got}")
    print(f"  relabelling: {len(cases)} sample pods kept or dropped as expected" if not problems else "")
    out = pathlib.Path(out_dir)
    (out / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))


def check_vector():
    path = ROOT / "logs/vector.yaml"
    config = yaml.safe_load(path.read_text())
    components = set()
    for kind in ("sources", "transforms", "sinks"):
        components |= set(config.get(kind, {}))
    for kind in ("transforms", "sinks"):
        for name, component in config.get(kind, {}).items():
            for source in component.get("inputs", []):
                if source not in components:
                    problem(f"{path}: {name} reads {source!r}, which is no component")
    for name, sink in config.get("sinks", {}).items():
        for label, template in sink.get("labels", {}).items():
            if re.search(r"(request|trace|span|event)_id|pod\b|route", template):
                problem(f"{path}: sink {name}'s label {label} = {template}: an unbounded label")
    print(f"  {path}: {len(components)} components wired; Loki labels bounded "
          "(not run: no Vector binary on this machine)")


if __name__ == "__main__":
    command = sys.argv[1]
    {"dashboards": check_dashboards, "vector": check_vector}.get(command, lambda: None)()
    if command == "k8s-config":
        check_k8s_config(sys.argv[2])
    sys.exit(1 if problems else 0)
