"""The rules deploy/compose/compose.yaml must keep beyond its schema (scripts/check-containers).

    python check_compose.py COMPOSE_FILE MICROMART_BINARY

Checks, printing one line per broken rule and exiting 1 if any:
- every service has a healthcheck, and every `depends_on` waits for health (or completion);
- every service is hardened: read-only root, no capabilities, no-new-privileges; the micromart
  ones run as 65532:65532 from the one local image;
- only the gateway's 8080 is published beyond loopback;
- third-party images are pinned by digest;
- what it mounts exists (bind mounts), and file secrets live under the ignored ./secrets/;
- every ${VAR} it reads is listed in .env.example, and .env.example lists nothing unused;
- each micromart service's environment is a configuration `micromart check-config` accepts
  (an unknown MICROMART_* variable or a bad value stops a service at start; this finds it
  first), and MICROMART_SERVICE names the service.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

MICROMART_IMAGE = "micromart:local"
MICROMART_USER = "65532:65532"
# service -> the host ports it may publish beyond 127.0.0.1.
PUBLIC_PORTS = {"gateway": {"8080"}}
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
# ${NAME}, ${NAME:?message}, ${NAME?message}, ${NAME:-default}, ${NAME-default}
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[?-])([^}]*))?\}")

def stand_in(variable: str) -> str:
    """What a variable stands for in the configuration check: 64 hex digits, as init-secrets
    makes, and different per variable (the internal token and the gateway credential must
    differ); an email address where one is wanted."""
    if variable.endswith("EMAIL"):
        return "admin@example.com"
    return hashlib.sha256(variable.encode()).hexdigest()


def strings_in(value) -> list[str]:
    """Every string of a parsed YAML document (comments are gone by then)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in strings_in(k) + strings_in(v)]
    if isinstance(value, list):
        return [s for item in value for s in strings_in(item)]
    return []


def environment_of(service: dict) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {name: "" if value is None else str(value) for name, value in environment.items()}


def interpolate(text: str) -> str:
    return VARIABLE.sub(
        lambda m: stand_in(m.group(1)) if m.group(2) in (None, ":?", "?") else m.group(3), text
    )


def main(compose_path: Path, binary: Path) -> int:
    problems: list[str] = []
    text = compose_path.read_text()
    compose = yaml.safe_load(text)
    here = compose_path.parent
    services: dict = compose.get("services") or {}
    if not services:
        problems.append("no services")

    for name, service in services.items():
        where = f"services.{name}"
        health = service.get("healthcheck")
        if not health or health.get("disable") or health.get("test") in (None, ["NONE"]):
            problems.append(f"{where}: no healthcheck")
        for dependency, condition in (service.get("depends_on") or {}).items():
            wanted = {"service_healthy", "service_completed_successfully"}
            if not isinstance(condition, dict) or condition.get("condition") not in wanted:
                problems.append(f"{where}.depends_on.{dependency}: must wait for service_healthy")
        if service.get("read_only") is not True:
            problems.append(f"{where}: read_only must be true")
        if "ALL" not in (service.get("cap_drop") or []):
            problems.append(f"{where}: cap_drop must hold ALL")
        if "no-new-privileges:true" not in (service.get("security_opt") or []):
            problems.append(f"{where}: security_opt must hold no-new-privileges:true")
        if service.get("privileged") or service.get("cap_add"):
            problems.append(f"{where}: no privileged mode or added capability")
        image = str(service.get("image", ""))
        if image == MICROMART_IMAGE:
            if service.get("user") != MICROMART_USER:
                problems.append(f"{where}: must run as {MICROMART_USER}")
        elif not DIGEST.search(image):
            problems.append(f"{where}: image {image!r} is not pinned by digest")
        for port in service.get("ports") or []:
            spec = str(port["published"] if isinstance(port, dict) else port)
            if spec.startswith("127.0.0.1:"):
                continue
            published = spec.split(":")[0]
            if published not in PUBLIC_PORTS.get(name, set()):
                problems.append(f"{where}: port {spec} is published beyond 127.0.0.1")
        for volume in service.get("volumes") or []:
            source = volume.get("source") if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith((".", "/")) and not (here / source).exists():
                problems.append(
                    f"{where}: mounts {source}, which does not exist "
                    f"(deploy/observability provides the Prometheus and Grafana files)"
                )

    for name, secret in (compose.get("secrets") or {}).items():
        source = secret.get("file")
        if source is None or not (here / source).resolve().is_relative_to((here / "secrets").resolve()):
            problems.append(f"secrets.{name}: a file under ./secrets/ (kept out of git)")

    used = {m.group(1) for string in strings_in(compose) for m in VARIABLE.finditer(string)}
    example = here / ".env.example"
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", example.read_text(), re.M)) if example.exists() else set()
    for variable in sorted(used - listed):
        problems.append(f"${{{variable}}} is not listed in {example.name}")
    for variable in sorted(listed - used):
        problems.append(f"{example.name} lists {variable}, which compose.yaml does not use")

    for name, service in services.items():
        if service.get("image") != MICROMART_IMAGE:
            continue
        environment = {key: interpolate(value) for key, value in environment_of(service).items()}
        if environment.get("MICROMART_SERVICE") != name:
            problems.append(f"services.{name}: MICROMART_SERVICE must be {name!r}")
        result = subprocess.run(
            [str(binary), "check-config"],
            env={"PATH": os.environ.get("PATH", ""), **environment},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            problems.append(f"services.{name}: environment refused: {result.stderr.strip()}")

    for problem in problems:
        print(f"  {compose_path}: {problem}")
    print(f"  {len(services)} services, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
