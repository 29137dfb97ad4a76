"""The properties scripts/check-k8s asserts on a rendered overlay (kubectl kustomize output).

Usage: check_k8s.py OVERLAY RENDERED.yaml DEFAULTS.toml
  OVERLAY   dev | prod (what differs: autoscalers, budgets, Rollouts, external Secrets)
  DEFAULTS  `micromart defaults` output: the configuration keys that exist

Exits 1 listing every violation. What it checks is in docs/deploy.md ("Checks").
"""

from __future__ import annotations

import json
import pathlib
import re
import sys
import tomllib

import jsonschema
import yaml

NAMESPACE = "micromart"
MICROMART = ["gateway", "identity", "catalog", "payment", "order", "web"]
PUBLIC_PORT = {"gateway": 8080, "identity": 8081, "catalog": 8082, "payment": 8083,
               "order": 8084, "web": 8085}
# Keys the defaults document only in comments (secrets and bootstrap values have no default).
COMMENTED_KEYS = {
    "internal.token", "internal.gateway_credential", "identity.signing_key",
    "identity.admin_email", "identity.admin_password", "payment.provider.seed",
}
# What a micromart process may still do after SIGTERM, past its drain setting: the
# services stop consumers, the outbox relay and the pool after their requests.
SERVICE_STOP_MARGIN_S = 5
SCHEMA = json.loads(
    (pathlib.Path(__file__).parent / "schemas" / "argoproj.io-v1alpha1.json").read_text())

errors: list[str] = []


def fail(where: str, message: str) -> None:
    errors.append(f"{where}: {message}")


def config_keys(defaults_toml: str) -> set[str]:
    """Every dotted key `micromart defaults` prints (tables of tables flattened; arrays of
    tables such as gateway.routes count by their own name)."""
    keys: set[str] = set()

    def walk(prefix: str, table: dict) -> None:
        for key, value in table.items():
            path = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict):
                walk(path, value)
            else:
                keys.add(path)

    walk("", tomllib.loads(defaults_toml))
    return keys | COMMENTED_KEYS


def env_key(name: str) -> str:
    return ".".join(part.lower() for part in name.removeprefix("MICROMART_").split("__"))


def main() -> int:
    overlay, rendered, defaults = sys.argv[1], sys.argv[2], sys.argv[3]
    docs = [d for d in yaml.safe_load_all(pathlib.Path(rendered).read_text()) if d]
    known_keys = config_keys(pathlib.Path(defaults).read_text())
    settings = tomllib.loads(pathlib.Path(defaults).read_text())
    by_kind: dict[str, dict[str, dict]] = {}
    for doc in docs:
        kind, meta = doc.get("kind"), doc.get("metadata") or {}
        where = f"{kind}/{meta.get('name')}"
        if not doc.get("apiVersion") or not kind or not meta.get("name"):
            fail(where, "apiVersion, kind and metadata.name are required")
            continue
        if kind != "Namespace" and meta.get("namespace") != NAMESPACE:
            fail(where, f"must be in namespace {NAMESPACE}")
        by_kind.setdefault(kind, {})[meta["name"]] = doc
        if doc["apiVersion"].startswith("argoproj.io/"):
            definition = SCHEMA["$defs"].get(kind)
            if definition is None:
                fail(where, "a CRD kind without a schema in deploy/checks/schemas")
            else:
                validator = jsonschema.Draft202012Validator({**SCHEMA, **definition})
                for error in validator.iter_errors(doc):
                    fail(where, f"schema: {'/'.join(map(str, error.absolute_path))}: {error.message}")

    get = lambda kind: by_kind.get(kind, {})  # noqa: E731
    configmaps, secrets = get("ConfigMap"), get("Secret")
    namespace = get("Namespace").get(NAMESPACE)
    if not namespace or namespace["metadata"].get("labels", {}).get(
            "pod-security.kubernetes.io/enforce") != "restricted":
        fail(f"Namespace/{NAMESPACE}", "must enforce the restricted Pod Security Standard")

    workloads = {**{("Deployment", n): d for n, d in get("Deployment").items()},
                 **{("StatefulSet", n): d for n, d in get("StatefulSet").items()}}
    for (kind, name), doc in workloads.items():
        check_workload(kind, name, doc, get("ServiceAccount"), configmaps, secrets,
                       known_keys, settings, overlay)
    for name in MICROMART:
        if name not in get("Deployment"):
            fail(f"Deployment/{name}", "missing")
        for service in (name, f"{name}-headless"):
            if service not in get("Service"):
                fail(f"Service/{service}", "missing")
        if get("Service").get(f"{name}-headless", {}).get("spec", {}).get("clusterIP") != "None":
            fail(f"Service/{name}-headless", "must be headless (clusterIP: None)")

    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in workloads.values()]
    check_services(get("Service"), workloads)
    check_network_policies(get("NetworkPolicy"), pod_labels)
    check_scaling(overlay, get("HorizontalPodAutoscaler"), get("PodDisruptionBudget"),
                  get("Deployment"), get("Rollout"), pod_labels)
    check_rollouts(overlay, get("Rollout"), get("AnalysisTemplate"), get("Deployment"),
                   get("Service"), get("Ingress"))
    for name, ingress in get("Ingress").items():
        spec = ingress["spec"]
        if spec.get("ingressClassName") != "nginx" or not spec.get("tls"):
            fail(f"Ingress/{name}", "must use ingressClassName nginx with TLS")
        for rule in spec.get("rules", []):
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]["name"]
                if backend not in get("Service"):
                    fail(f"Ingress/{name}", f"backend Service {backend} does not exist")

    for message in errors:
        print(f"  FAIL {message}")
    print(f"  {len(docs)} objects, {len(workloads)} workloads: "
          f"{'ok' if not errors else f'{len(errors)} violation(s)'}")
    return 1 if errors else 0


def check_workload(kind, name, doc, accounts, configmaps, secrets, known_keys, settings,
                   overlay) -> None:
    where = f"{kind}/{name}"
    pod = doc["spec"]["template"]["spec"]
    account = pod.get("serviceAccountName")
    if not account or account == "default" or account not in accounts:
        fail(where, "needs its own ServiceAccount")
    elif accounts[account].get("automountServiceAccountToken") is not False:
        fail(where, f"ServiceAccount {account} must not mount its token")
    if pod.get("automountServiceAccountToken") is not False:
        fail(where, "automountServiceAccountToken must be false")
    pod_security = pod.get("securityContext") or {}
    if pod_security.get("runAsNonRoot") is not True:
        fail(where, "pod securityContext.runAsNonRoot must be true")
    if (pod_security.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        fail(where, "pod seccompProfile must be RuntimeDefault")
    single_server = kind == "StatefulSet" and name.endswith("-postgres")
    if not single_server and not pod.get("topologySpreadConstraints") and not (
            pod.get("affinity") or {}).get("podAntiAffinity"):
        fail(where, "needs topologySpreadConstraints or podAntiAffinity")
    for volume in pod.get("volumes", []):
        if not set(volume) & {"secret", "configMap", "emptyDir", "persistentVolumeClaim"}:
            fail(where, f"volume {volume['name']}: only secret, configMap, emptyDir, PVC")
    grace = pod.get("terminationGracePeriodSeconds")
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        cwhere = f"{where} container {container['name']}"
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe not in container:
                fail(cwhere, f"{probe} missing")
        resources = container.get("resources") or {}
        for part in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in (resources.get(part) or {}):
                    fail(cwhere, f"resources.{part}.{resource} missing")
        security = container.get("securityContext") or {}
        expected = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                    "runAsNonRoot": True}
        for key, value in expected.items():
            if security.get(key) is not value:
                fail(cwhere, f"securityContext.{key} must be {value}")
        if (security.get("capabilities") or {}).get("drop") != ["ALL"]:
            fail(cwhere, "securityContext.capabilities.drop must be [ALL]")
        if security.get("privileged"):
            fail(cwhere, "must not be privileged")
        image = container.get("image", "")
        if image.endswith(":latest") or (":" not in image.rsplit("/", 1)[-1] and "@" not in image):
            fail(cwhere, f"image {image!r} must name a tag or digest, never latest")
        pre_stop = ((container.get("lifecycle") or {}).get("preStop")) or {}
        if not pre_stop:
            fail(cwhere, "lifecycle.preStop missing")
        if kind == "Deployment" and container["name"] in MICROMART:
            check_micromart_container(cwhere, container, pre_stop, grace, configmaps, secrets,
                                      known_keys, settings, overlay)


def check_micromart_container(where, container, pre_stop, grace, configmaps, secrets,
                              known_keys, settings, overlay) -> None:
    name = container["name"]
    if container.get("args") != ["serve", name]:
        fail(where, f'args must be ["serve", "{name}"]')
    if not container.get("image", "").startswith("ghcr.io/micromart/micromart"):
        fail(where, "image must be ghcr.io/micromart/micromart")
    probe_port = "admin" if name == "gateway" else "http"
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                        ("startupProbe", "/healthz")):
        get = (container.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path or get.get("port") != probe_port:
            fail(where, f"{probe} must GET {path} on port {probe_port}")
    if "sleep" not in pre_stop:
        fail(where, "preStop must be the native sleep action (distroless: no shell, no sleep)")
    # The environment the process gets, and the MICROMART_* names in it.
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or {}
        configmap = configmaps.get(ref.get("name"))
        if configmap is None:
            fail(where, f"envFrom ConfigMap {ref.get('name')} does not exist")
            continue
        env.update(configmap.get("data") or {})
        if "secretRef" in source:
            fail(where, "secrets come key by key (secretKeyRef), not whole")
    for variable in container.get("env", []):
        env[variable["name"]] = variable.get("value", "<secret>")
        ref = (variable.get("valueFrom") or {}).get("secretKeyRef")
        if ref and overlay == "dev":
            secret = secrets.get(ref["name"])
            if secret is None or ref["key"] not in (secret.get("data") or {}):
                fail(where, f"{variable['name']}: Secret {ref['name']} key {ref['key']} missing")
    for variable in env:
        if variable.startswith("MICROMART_") and variable != "MICROMART_CONFIG":
            key = env_key(variable)
            if key not in known_keys:
                fail(where, f"{variable} names no configuration key ({key}): the process "
                     "would refuse to start")
    section = name.upper()
    listen = env.get(f"MICROMART_{section}__LISTEN", "")
    if not listen.startswith("0.0.0.0:") or listen != f"0.0.0.0:{PUBLIC_PORT[name]}":
        fail(where, f"MICROMART_{section}__LISTEN must be 0.0.0.0:{PUBLIC_PORT[name]}")
    second = "ADMIN_LISTEN" if name == "gateway" else "INTERNAL_LISTEN"
    if not env.get(f"MICROMART_{section}__{second}", "").startswith("0.0.0.0:"):
        fail(where, f"MICROMART_{section}__{second} must listen on 0.0.0.0")
    if "MICROMART_INTERNAL__GATEWAY_CREDENTIAL" not in env:
        fail(where, "needs the gateway credential")
    if name == "gateway" and "MICROMART_INTERNAL__TOKEN" in env:
        fail(where, "the gateway must not hold the internal token (ADR 13)")
    if name != "gateway" and f"MICROMART_{section}__DATABASE_URL" not in env:
        fail(where, "needs its database URL")
    # Shutdown: the grace period must cover the preStop sleep and the drain.
    def setting(var: str, *path: str) -> int:
        value = env.get(var)
        if value is not None:
            return int(value)
        table = settings
        for part in path:
            table = table[part]
        return int(table)

    if name == "gateway":
        drain_s = (setting("MICROMART_GATEWAY__DRAIN_TIMEOUT_MS", "gateway", "drain_timeout_ms")
                   + setting("MICROMART_GATEWAY__SHUTDOWN_GRACE_MS", "gateway",
                             "shutdown_grace_ms")) / 1000
    else:
        drain_s = setting(f"MICROMART_{section}__HTTP__REQUEST_TIMEOUT_MS", name, "http",
                          "request_timeout_ms") / 1000 + SERVICE_STOP_MARGIN_S
    needed = pre_stop.get("sleep", {}).get("seconds", 0) + drain_s
    if grace is None or grace < needed:
        fail(where, f"terminationGracePeriodSeconds {grace} < preStop + drain = {needed:g} s")


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def check_services(services, workloads) -> None:
    for name, service in services.items():
        selector = service["spec"].get("selector") or {}
        targets = [d for d in workloads.values()
                   if selects(selector, d["spec"]["template"]["metadata"]["labels"])]
        if not targets:
            fail(f"Service/{name}", "selects no workload's pods")
            continue
        ports = {p.get("name") for d in targets
                 for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            if isinstance(port.get("targetPort"), str) and port["targetPort"] not in ports:
                fail(f"Service/{name}", f"targetPort {port['targetPort']} is no container port")


def check_network_policies(policies, pod_labels) -> None:
    deny = policies.get("default-deny")
    if not deny or deny["spec"].get("podSelector") != {} or sorted(
            deny["spec"].get("policyTypes", [])) != ["Egress", "Ingress"] or any(
            k in deny["spec"] for k in ("ingress", "egress")):
        fail("NetworkPolicy/default-deny", "must deny all ingress and egress of every pod")
    if "allow-dns" not in policies:
        fail("NetworkPolicy/allow-dns", "missing: no pod could resolve a name")
    for labels in pod_labels:
        own = [n for n, p in policies.items() if p["spec"].get("podSelector")
               and selects(p["spec"]["podSelector"].get("matchLabels"), labels)
               and p["spec"]["podSelector"].get("matchLabels")]
        if not own:
            fail(f"pods {labels.get('app.kubernetes.io/name')}",
                 "no NetworkPolicy of their own: they could talk to nothing")


def check_scaling(overlay, hpas, pdbs, deployments, rollouts, pod_labels) -> None:
    if overlay == "dev":
        if hpas or pdbs or rollouts:
            fail("overlay dev", "runs one pod each: no autoscalers, budgets or Rollouts")
        return
    for name in MICROMART:
        hpa = hpas.get(name)
        if hpa is None:
            fail(f"HorizontalPodAutoscaler/{name}", "missing")
            continue
        target = hpa["spec"]["scaleTargetRef"]
        if (target["kind"], target["name"]) != ("Rollout", name) or name not in rollouts:
            fail(f"HorizontalPodAutoscaler/{name}", "must scale the Rollout of the same name")
        if hpa["spec"].get("minReplicas", 1) < 2:
            fail(f"HorizontalPodAutoscaler/{name}", "minReplicas must be at least 2")
        resources = {m["resource"]["name"] for m in hpa["spec"].get("metrics", [])
                     if m["type"] == "Resource"}
        if resources != {"cpu", "memory"}:
            fail(f"HorizontalPodAutoscaler/{name}", "must scale on cpu and memory")
        pdb = pdbs.get(name)
        if pdb is None or "minAvailable" not in pdb["spec"]:
            fail(f"PodDisruptionBudget/{name}", "missing or without minAvailable")
        elif not any(selects(pdb["spec"]["selector"]["matchLabels"], l) for l in pod_labels):
            fail(f"PodDisruptionBudget/{name}", "selects no pods")


def check_rollouts(overlay, rollouts, templates, deployments, services, ingresses) -> None:
    if overlay == "dev":
        return
    for name in MICROMART:
        where = f"Rollout/{name}"
        rollout = rollouts.get(name)
        if rollout is None:
            fail(where, "missing")
            continue
        if deployments.get(name, {}).get("spec", {}).get("replicas") != 0:
            fail(f"Deployment/{name}", "must run no pods (replicas 0): its Rollout does")
        canary = rollout["spec"]["strategy"]["canary"]
        steps = canary["steps"]
        analysed = [s["analysis"] for s in steps if "analysis" in s]
        if not analysed:
            fail(where, "no analysis step: the canary would be judged by nobody")
        for analysis in analysed:
            for template in analysis["templates"]:
                if template["templateName"] not in templates:
                    fail(where, f"AnalysisTemplate {template['templateName']} does not exist")
            if not any(a.get("valueFrom", {}).get("podTemplateHashValue") == "Latest"
                       for a in analysis.get("args", [])):
                fail(where, "the analysis must select the canary's pods (podTemplateHashValue)")
        weights = [s["setWeight"] for s in steps if "setWeight" in s]
        if weights != sorted(weights) or not weights or weights[0] > 25:
            fail(where, "weights must rise from a small first step")
        if name == "gateway":
            routing = canary.get("trafficRouting", {}).get("nginx", {})
            ingress = ingresses.get(routing.get("stableIngress"))
            if ingress is None:
                fail(where, "trafficRouting.nginx.stableIngress names no Ingress")
            else:
                backends = {p["backend"]["service"]["name"] for r in ingress["spec"]["rules"]
                            for p in r["http"]["paths"]}
                if backends != {canary.get("stableService")}:
                    fail(where, "the stable Ingress must send to the stableService")
            for key in ("canaryService", "stableService"):
                if canary.get(key) not in services:
                    fail(where, f"{key} {canary.get(key)} does not exist")
    for name, template in templates.items():
        for metric in template["spec"]["metrics"]:
            query = metric["provider"]["prometheus"]["query"]
            if "pod_template_hash=" not in query or 'namespace="micromart"' not in query:
                fail(f"AnalysisTemplate/{name}",
                     f"{metric['name']}: the query must select the canary's pods only")


if __name__ == "__main__":
    sys.exit(main())
