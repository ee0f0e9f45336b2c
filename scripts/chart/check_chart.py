#!/usr/bin/env python3
"""Offline checks of the calanque Helm chart (charts/calanque).

Run by scripts/check-chart.sh inside its virtualenv (target/chart-venv), one step per call:

  values      values.yaml: every key has a comment; values.schema.json is a valid draft-07
              schema that closes every object (additionalProperties: false, free-form maps
              only where listed in OPEN_OBJECTS); the defaults and the example values pass it
  lint        `helm lint --strict` with the default and the example values, at the chart's
              lowest Kubernetes version (Chart.yaml kubeVersion) and the newest one
              kubernetes-validate knows
  render      `helm template` for every value set (VALUE_SETS), written to
              target/chart-render/<set>.yaml
  kubernetes  every rendered object: kubernetes-validate --strict at both versions for the
              built-in kinds; scripts/chart/schemas/*.json for PrometheusRule, ServiceMonitor
              and PodMonitor (their CRDs are not here); names, namespaces and labels; any
              other kind fails, except PbxCluster (next step)
  pbxcluster  the CRD (crds/pbxclusters.calanque.io.yaml, when generated): kubernetes-validate
              --strict and the contract's names; examples/two-datacenters.yaml and the rendered
              PbxCluster against the CRD's openAPIV3Schema, closed like a strict API server,
              and its CEL rules (x-kubernetes-validations, evaluated with cel-python);
              values.schema.json's pbxCluster.spec stands in while the CRD is not generated;
              the example's spec is docs/pbxcluster.md's and the example values' pbxCluster.spec
  policy      what the chart promises: pod and container securityContext, resources, the
              operator's command, probes, port and failover store (CALANQUE_ETCD, the etcd TLS
              mount), the exact RBAC rules, the failover controller (one Deployment per serving
              datacenter, pinned and labelled there, its calanque-failover arguments derived
              here from the values, probes, its own ServiceAccount with no token and no
              binding, its Service and PDB), honorLabels on the operator's and the failover
              controller's scrapes, the PrometheusRule holding both rule files, every dashboard
              in the ConfigMap, the chart test, NOTES.txt
  self-test   each check above rejects a broken input (and accepts the unbroken one)

Helm comes from PyPI's helm-python-sdk: a ctypes binding to libhelm_c, Helm v4's own Go SDK
built as a shared library and shipped inside the wheel. It loads, lints and renders charts in
this process: no helm binary, no cluster, no network.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import celpy
import helm_python as helm
import jsonschema
import yaml
from kubernetes_validate import utils as kubevalidate

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "calanque"
CRD_FILE = CHART / "crds" / "pbxclusters.calanque.io.yaml"
EXAMPLE = CHART / "examples" / "two-datacenters.yaml"
EXAMPLE_VALUES = CHART / "examples" / "values-two-datacenters.yaml"
CONTRACT_DOC = ROOT / "docs" / "pbxcluster.md"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
RENDER_DIR = ROOT / "target" / "chart-render"

RELEASE = "calanque"
NAMESPACE = "calanque"

Errors = list[str]
Obj = dict[str, Any]

# Kinds outside kubernetes-validate, checked against a schema of ours.
CUSTOM_SCHEMAS = {
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor.json",
}
PBXCLUSTER = ("calanque.io/v1alpha1", "PbxCluster")
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}

# Objects of values.schema.json that are not closed, on purpose: free-form maps have
# `additionalProperties: {type: string}` and are not listed; these are Kubernetes objects the
# values pass through whole, checked by the strict Kubernetes schema once rendered.
OPEN_OBJECTS = {
    "/definitions/affinity/properties/nodeAffinity",
    "/definitions/affinity/properties/podAffinity",
    "/definitions/affinity/properties/podAntiAffinity",
    "/definitions/envVar/properties/valueFrom",
}

# The operator's permissions: (apiGroup, resource) -> verbs. Anything else is a failure.
EXPECTED_RBAC = {
    ("calanque.io", "pbxclusters"): {"get", "list", "watch", "patch", "update"},
    ("calanque.io", "pbxclusters/status"): {"patch", "update"},
    ("calanque.io", "pbxclusters/finalizers"): {"update"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("", "services"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("policy", "poddisruptionbudgets"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
SECRETS = ("", "secrets")

DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


# ---------------------------------------------------------------------------------------------
# Inputs


def rel(path: Path) -> str:
    """A path as shown in messages: relative to the repository when inside it."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def load_yaml(path: Path) -> Any:
    with path.open() as f:
        return yaml.safe_load(f)


def load_all(text: str) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def deep_merge(base: Obj, override: Obj) -> Obj:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def example_values() -> Obj:
    return load_yaml(EXAMPLE_VALUES)


def effective_values(values: Obj) -> Obj:
    """The chart's defaults (values.yaml) with `values` over them, as Helm coalesces them for
    these value sets (maps merged, lists replaced)."""
    return deep_merge(load_yaml(CHART / "values.yaml"), values)


ETCD_TLS_DIR = "/etc/calanque/tls/etcd"
NATS_TLS_DIR = "/etc/calanque/tls/nats"
# The binaries' client TLS variables (ADR 0019), per store/bus: where the Secret is mounted.
CLIENT_TLS_DIRS = {"ETCD": ETCD_TLS_DIR, "NATS": NATS_TLS_DIR}


def expected_etcd(values: Obj) -> tuple[list[str], str]:
    """The failover store the chart should give: etcd.endpoints and etcd.tlsSecret, else the
    etcd of the PbxCluster the chart creates, else none."""
    v = effective_values(values)
    etcd = v.get("etcd") or {}
    if etcd.get("endpoints"):
        return list(etcd["endpoints"]), etcd.get("tlsSecret") or ""
    if (v.get("pbxCluster") or {}).get("create"):
        spec_etcd = v["pbxCluster"]["spec"].get("etcd") or {}
        return list(spec_etcd.get("endpoints") or []), spec_etcd.get("tlsSecret") or ""
    return [], ""


def expected_failover_nats_tls(values: Obj) -> str:
    """The NATS client TLS Secret of the failover controller: the PbxCluster's, when it has
    NATS URLs (the controller gets --nats only then)."""
    nats = effective_values(values)["pbxCluster"]["spec"].get("nats") or {}
    return (nats.get("tlsSecret") or "") if nats.get("urls") else ""


def client_tls_errors(where: str, pod: Obj, container: Obj, secrets: dict[str, str]) -> Errors:
    """Per kind (ETCD, NATS): the client TLS Secret mounted read-only at its directory and the
    binaries' CALANQUE_<KIND>_{CA,CERT,KEY}_FILE naming the mounted ca.crt, tls.crt, tls.key
    when there is one; neither mount nor variable when there is none; no other Secret volume."""
    errors = []
    volumes = {
        v.get("name"): (v.get("secret") or {}).get("secretName")
        for v in pod.get("volumes") or []
        if "secret" in v
    }
    env = {e.get("name"): e.get("value") for e in container.get("env") or []}
    for kind, directory in CLIENT_TLS_DIRS.items():
        secret = secrets.get(kind, "")
        label = kind.lower()
        mounts = [m for m in container.get("volumeMounts") or [] if m.get("mountPath") == directory]
        files = {
            f"CALANQUE_{kind}_{part}_FILE": f"{directory}/{name}"
            for part, name in (("CA", "ca.crt"), ("CERT", "tls.crt"), ("KEY", "tls.key"))
        }
        if secret:
            if len(mounts) != 1 or volumes.get(mounts[0].get("name")) != secret or mounts[0].get("readOnly") is not True:
                errors.append(f"{where}: the {label} TLS Secret {secret!r} is not mounted read-only at {directory}")
            for variable, path in files.items():
                if env.get(variable) != path:
                    errors.append(f"{where}: {variable} is {env.get(variable)!r}, expected {path!r}")
        else:
            if mounts:
                errors.append(f"{where}: mounts {directory} with no {label} tlsSecret given")
            if any(variable in env for variable in files):
                errors.append(f"{where}: sets CALANQUE_{kind}_*_FILE with no {label} tlsSecret given")
    unexpected = set(volumes.values()) - {secret for secret in secrets.values() if secret}
    if unexpected:
        errors.append(f"{where}: mounts Secrets {sorted(unexpected)} that no tlsSecret names")
    return errors


# The value sets the chart is rendered and checked with.
VALUE_SETS: dict[str, Callable[[], Obj]] = {
    # Nothing set: the operator alone, namespaced.
    "default": dict,
    # examples/values-two-datacenters.yaml: the PbxCluster, an operator per datacenter, every
    # monitoring switch on.
    "example": example_values,
    # The same, cluster-wide RBAC, no PbxCluster, TLS Secrets listed by hand, the failover
    # store given by hand (etcd.endpoints, etcd.tlsSecret).
    "cluster-wide": lambda: deep_merge(
        example_values(),
        {
            "rbac": {"clusterWide": True, "tlsSecretNames": ["sip-tls"]},
            "pbxCluster": {"create": False},
            "etcd": {
                "endpoints": ["http://etcd-a.calanque:2379", "http://etcd-b.calanque:2379"],
                "tlsSecret": "etcd-store-tls",
            },
        },
    ),
    # The example with the failover controller tuned: an IPv6 SIP address (probed in
    # brackets), the store given by hand without TLS, a witness, automatic failback, a probe
    # timeout, two instances per datacenter, extra scheduling and arguments.
    "failover-custom": lambda: deep_merge(
        example_values(),
        {
            "pbxCluster": {
                "name": "metro",
                "spec": {
                    "datacenters": [
                        {
                            "name": "north",
                            "role": "serving",
                            "nodeSelector": {"topology.kubernetes.io/zone": "north"},
                            "sipAddresses": ["2001:db8::10", "192.0.2.11"],
                        },
                        {"name": "south", "role": "serving", "sipAddresses": ["198.51.100.10"]},
                    ],
                    "sip": {"udpPort": 5080, "tcpPort": 5080},
                    "failover": {"detectionSeconds": 5, "failbackAfterSeconds": 120, "automaticFailback": True},
                },
            },
            "etcd": {"endpoints": ["http://etcd.calanque:2379"], "tlsSecret": ""},
            "failover": {
                "replicaCount": 2,
                "probeIntervalMs": 250,
                "probeTimeoutMs": 200,
                "leaseTtlSeconds": 3,
                "witnessUrl": "http://etcd-w.calanque:2379/health",
                "nodeSelector": {"node-role.calanque.io/control": "true"},
                "extraArgs": ["--trace-sample-ratio=0.1"],
                "serviceAccount": {"name": "failover-probe"},
                "podDisruptionBudget": {"enabled": False},
            },
        },
    ),
    # The example with the failover controller off: the operator still follows the store.
    "failover-off": lambda: deep_merge(example_values(), {"failover": {"enabled": False}}),
}


def chart_kube_versions() -> tuple[str, str]:
    """The chart's lowest Kubernetes version (Chart.yaml kubeVersion) and the newest one
    kubernetes-validate has schemas for."""
    constraint = load_yaml(CHART / "Chart.yaml").get("kubeVersion", "")
    match = re.search(r">=\s*v?(\d+\.\d+)", constraint)
    if not match:
        raise SystemExit(f"Chart.yaml kubeVersion {constraint!r} names no lowest version (>=X.Y)")
    return match.group(1), kubevalidate.major_minor(kubevalidate.latest_version())


class Rendered:
    """One `helm template`: the objects with their template, and NOTES.txt."""

    def __init__(self, manifests: dict[str, str]):
        self.objects: list[tuple[str, Obj]] = []
        self.notes = ""
        for source, text in sorted(manifests.items()):
            if source.endswith("NOTES.txt"):
                self.notes = text
                continue
            for doc in load_all(text):
                self.objects.append((source, doc))

    def of_kind(self, kind: str) -> list[Obj]:
        return [obj for _, obj in self.objects if obj.get("kind") == kind]

    def yaml(self) -> str:
        parts = []
        for source, obj in self.objects:
            parts.append(f"---\n# Source: {source}\n" + yaml.safe_dump(obj, sort_keys=False))
        return "".join(parts)


def render(values: Obj, chart: Path | None = None) -> Rendered:
    """`helm template RELEASE chart -n NAMESPACE` with these values (schema-validated by Helm)."""
    with helm.Chart.load(str(chart or CHART)) as loaded:
        return Rendered(loaded.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True))


_RENDERS: dict[str, Rendered] = {}


def render_set(name: str) -> Rendered:
    if name not in _RENDERS:
        _RENDERS[name] = render(VALUE_SETS[name]())
    return _RENDERS[name]


def contract_spec() -> Obj:
    """The PbxCluster of docs/pbxcluster.md's first YAML block."""
    text = CONTRACT_DOC.read_text()
    match = re.search(r"```yaml\n(.*?)```", text, re.S)
    if not match:
        raise SystemExit(f"{CONTRACT_DOC}: no ```yaml block")
    return yaml.safe_load(match.group(1))


def load_crd() -> Obj | None:
    if not CRD_FILE.exists():
        return None
    docs = load_all(CRD_FILE.read_text())
    if len(docs) != 1:
        raise SystemExit(f"{CRD_FILE}: {len(docs)} documents, expected one CustomResourceDefinition")
    return docs[0]


def crd_missing() -> str:
    return (
        f"CRD not generated yet ({rel(CRD_FILE)} is absent): PbxCluster objects are checked "
        "against values.schema.json's pbxCluster.spec instead"
    )


# ---------------------------------------------------------------------------------------------
# Checks: each returns the problems it found.


def comment_errors(text: str, name: str = "values.yaml") -> Errors:
    """Every key of a values file has a comment on the line(s) above it, or on its line."""
    errors = []
    previous = ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        key = re.match(r"^\s*(?:-\s+)?([A-Za-z0-9_.\-/\"]+):(\s|$)", line)
        commented = previous.startswith("#") or " #" in line
        if key and not stripped.startswith("#") and not commented:
            errors.append(f"{name}:{number}: key {key.group(1)!r} has no comment")
        previous = stripped
    return errors


def schema_closure_errors(schema: Obj, allowed_open: Iterable[str] = OPEN_OBJECTS) -> Errors:
    """Every object in the schema is closed: `additionalProperties: false` with its properties,
    or a schema for free-form map values; only `allowed_open` paths may be left open."""
    allowed = set(allowed_open)
    errors = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            is_object = node.get("type") == "object" or "properties" in node
            if is_object:
                extra = node.get("additionalProperties")
                if "properties" in node and extra is not False:
                    errors.append(
                        f"values.schema.json#{path}: object with properties is not closed (additionalProperties: false)"
                    )
                elif "properties" not in node and not isinstance(extra, dict) and path not in allowed:
                    errors.append(
                        f"values.schema.json#{path}: free-form object (neither properties nor a schema for its values)"
                    )
            for key, value in node.items():
                if key in ("properties", "definitions", "patternProperties"):
                    for name, sub in value.items():
                        walk(sub, f"{path}/{key}/{name}")
                elif key in ("enum", "const", "default", "required", "examples"):
                    continue
                elif key in ("if", "then", "else", "not"):
                    # Conditions laid over an object already closed, not objects of their own.
                    continue
                else:
                    walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{path}/{index}")

    walk(schema, "")
    return errors


def values_schema() -> Obj:
    return json.loads((CHART / "values.schema.json").read_text())


def values_schema_errors(values: Obj, schema: Obj, name: str) -> Errors:
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{name}: {'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(values), key=lambda e: list(map(str, e.path)))
    ]


def lint_errors(values: Obj, kube_version: str, chart: Path | None = None) -> Errors:
    """`helm lint --strict`: warnings count as errors, as the CLI's --strict makes them."""
    report = helm.lint(str(chart or CHART), values, strict=True, kube_version=f"v{kube_version}.0")
    errors = [f"lint: {message}" for message in report.get("errors") or []]
    for message in report.get("messages") or []:
        if message["severity"] >= 2:
            errors.append(f"lint: {message['path']}: {message['error'].strip()}")
    return sorted(set(errors))


def _custom_validator(api_kind: tuple[str, str]) -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / CUSTOM_SCHEMAS[api_kind]).read_text())
    return jsonschema.Draft7Validator(schema)


def label_errors(where: str, labels: Any) -> Errors:
    errors = []
    if labels is None:
        return errors
    if not isinstance(labels, dict):
        return [f"{where}: labels are not a map"]
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if (
            (prefix and (len(prefix) > 253 or not LABEL_PREFIX.match(prefix)))
            or len(name) > 63
            or not LABEL_NAME.match(name)
        ):
            errors.append(f"{where}: label key {key!r} is not a valid label name")
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            errors.append(f"{where}: label {key}={value!r} is not a valid label value")
    return errors


def object_errors(obj: Obj, kube_versions: Iterable[str], source: str = "") -> Errors:
    """One object: its identity, then the schema of its kind. PbxCluster is left to
    pbxcluster_errors (its schema is the CRD)."""
    api, kind = obj.get("apiVersion"), obj.get("kind")
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    where = f"{source}: {kind}/{name}" if source else f"{kind}/{name}"
    if not api or not kind or not name:
        return [f"{where}: apiVersion, kind and metadata.name are required"]
    errors = []
    if kind == "Service":
        if not isinstance(name, str) or len(name) > 63 or not DNS_1035_LABEL.match(name):
            errors.append(
                f"{where}: a Service's name must be a DNS-1035 label (63 characters at most), not {name!r}"
            )
    elif not isinstance(name, str) or len(name) > 253 or not DNS_SUBDOMAIN.match(name):
        errors.append(f"{where}: metadata.name {name!r} is not a DNS subdomain")
    if kind in CLUSTER_SCOPED:
        if "namespace" in meta:
            errors.append(f"{where}: a cluster-scoped object has no namespace")
    elif meta.get("namespace") != NAMESPACE:
        errors.append(
            f"{where}: metadata.namespace is {meta.get('namespace')!r}, not the release namespace {NAMESPACE!r}"
        )
    errors += label_errors(where, meta.get("labels"))
    if (api, kind) == PBXCLUSTER:
        return errors
    if (api, kind) in CUSTOM_SCHEMAS:
        validator = _custom_validator((api, kind))
        for error in validator.iter_errors(obj):
            path = "/".join(map(str, error.absolute_path)) or "(root)"
            errors.append(f"{where}: {path}: {error.message}")
        return errors
    for version in kube_versions:
        try:
            kubevalidate.validate(obj, version, strict=True)
        except kubevalidate.SchemaNotFoundError:
            errors.append(
                f"{where}: no schema for {api} {kind}: neither Kubernetes {version} nor scripts/chart/schemas know it"
            )
            break
        except kubevalidate.ValidationError as error:
            path = "/".join(map(str, error.absolute_path)) or "(root)"
            errors.append(f"{where}: Kubernetes {version} (strict): {path}: {error.message}")
    return errors


def objects_errors(rendered: Rendered, kube_versions: Iterable[str]) -> Errors:
    errors = []
    seen: set[tuple[str, str, str]] = set()
    for source, obj in rendered.objects:
        errors += object_errors(obj, kube_versions, source)
        identity = (
            obj.get("kind", ""),
            (obj.get("metadata") or {}).get("namespace", ""),
            (obj.get("metadata") or {}).get("name", ""),
        )
        if identity in seen:
            errors.append(f"{source}: {identity[0]}/{identity[2]} is rendered twice")
        seen.add(identity)
    return errors


def closed_openapi(schema: Any) -> Any:
    """A CRD's openAPIV3Schema as a strict API server applies it: an object with properties
    and no `additionalProperties` or `x-kubernetes-preserve-unknown-fields` rejects unknown
    fields (fieldValidation=Strict; kubectl --validate=strict), `nullable: true` allows null,
    and apiVersion, kind and metadata are known at the root (the server adds them; metadata
    is checked by object_errors)."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            if node.get("nullable") is True and isinstance(node.get("type"), str):
                node["type"] = [node["type"], "null"]
            for key, value in node.items():
                if key == "properties":
                    for sub in value.values():
                        walk(sub)
                elif key not in ("enum", "default", "example", "required"):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema)
    # The API server knows these at the root of every object, whatever the CRD lists.
    if isinstance(schema, dict):
        properties = schema.setdefault("properties", {})
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties.setdefault("metadata", {"type": "object"})
    return schema


def crd_errors(crd: Obj, kube_versions: Iterable[str]) -> Errors:
    """The CRD is a valid apiextensions.k8s.io/v1 object and says what docs/pbxcluster.md says."""
    errors = object_errors(crd, kube_versions, "crds/pbxclusters.calanque.io.yaml")
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    expect = {
        "metadata.name": ((crd.get("metadata") or {}).get("name"), "pbxclusters.calanque.io"),
        "spec.group": (spec.get("group"), "calanque.io"),
        "spec.names.kind": (names.get("kind"), "PbxCluster"),
        "spec.names.plural": (names.get("plural"), "pbxclusters"),
        "spec.scope": (spec.get("scope"), "Namespaced"),
    }
    for field, (got, want) in expect.items():
        if got != want:
            errors.append(f"CRD {field} is {got!r}, docs/pbxcluster.md says {want!r}")
    if "pbx" not in (names.get("shortNames") or []):
        errors.append("CRD spec.names.shortNames lacks 'pbx' (docs/pbxcluster.md)")
    versions = {v.get("name"): v for v in spec.get("versions") or []}
    version = versions.get("v1alpha1")
    if not version:
        errors.append(f"CRD has no version v1alpha1 (has {sorted(versions)})")
    else:
        if not (version.get("served") and version.get("storage")):
            errors.append("CRD version v1alpha1 is not served and stored")
        if "status" not in (version.get("subresources") or {}):
            errors.append(
                "CRD version v1alpha1 has no status subresource (the operator patches pbxclusters/status)"
            )
        openapi = (version.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(openapi, dict):
            errors.append("CRD version v1alpha1 has no openAPIV3Schema")
        else:
            try:
                jsonschema.Draft4Validator.check_schema(closed_openapi(openapi))
            except jsonschema.SchemaError as error:
                errors.append(f"CRD openAPIV3Schema is not a valid schema: {error.message}")
    return errors


class CelRules:
    """The CRD's CEL rules (`x-kubernetes-validations`), evaluated with cel-python where the
    API server would: at each schema node, with `self` bound to the object's value there.
    Transition rules (those reading `oldSelf`) only apply to updates and are skipped."""

    def __init__(self, openapi: Obj):
        self.schema = openapi
        self.environment = celpy.Environment()
        self.programs: dict[str, Any] = {}

    def program(self, rule: str) -> Any:
        if rule not in self.programs:
            self.programs[rule] = self.environment.program(self.environment.compile(rule))
        return self.programs[rule]

    def errors(self, value: Any) -> Errors:
        errors: Errors = []
        self._walk(self.schema, value, "", errors)
        return errors

    def _walk(self, schema: Obj, value: Any, path: str, errors: Errors) -> None:
        if not isinstance(schema, dict) or value is None:
            return
        for validation in schema.get("x-kubernetes-validations") or []:
            rule = validation.get("rule", "")
            if "oldSelf" in rule:
                continue
            try:
                result = self.program(rule).evaluate({"self": celpy.json_to_cel(value)})
            except Exception as error:  # noqa: BLE001 - a rule we cannot evaluate is reported
                errors.append(f"{path or '(root)'}: CEL rule {rule!r} could not be evaluated: {error}")
                continue
            if result is not True and not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
                message = validation.get("message") or f"failed rule: {rule}"
                errors.append(f"{path or '(root)'}: {message} (CEL: {rule})")
        if isinstance(value, dict):
            for key, sub in (schema.get("properties") or {}).items():
                if key in value:
                    self._walk(sub, value[key], f"{path}/{key}".lstrip("/"), errors)
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                for key, sub_value in value.items():
                    if key not in (schema.get("properties") or {}):
                        self._walk(extra, sub_value, f"{path}/{key}".lstrip("/"), errors)
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for index, item in enumerate(value):
                self._walk(schema["items"], item, f"{path}/{index}".lstrip("/"), errors)


PbxClusterCheck = Callable[[Obj], Errors]


def _schema_check(validator: Any) -> PbxClusterCheck:
    def check(obj: Obj) -> Errors:
        return [
            f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
            for error in validator.iter_errors(obj)
        ]

    return check


def pbxcluster_validator(crd: Obj | None) -> tuple[str, PbxClusterCheck | None]:
    """What PbxCluster objects are checked against: the CRD's schema and CEL rules, or the
    values schema's pbxCluster.spec while the CRD is not generated."""
    if crd is not None:
        for version in (crd.get("spec") or {}).get("versions") or []:
            if version.get("name") == "v1alpha1":
                openapi = (version.get("schema") or {}).get("openAPIV3Schema") or {}
                schema_check = _schema_check(jsonschema.Draft4Validator(closed_openapi(openapi)))
                rules = CelRules(openapi)

                def check(obj: Obj, schema_check=schema_check, rules=rules) -> Errors:
                    return schema_check(obj) + rules.errors(obj)

                return "the CRD's openAPIV3Schema (closed) and CEL rules", check
        return "the CRD (no v1alpha1)", None
    schema = values_schema()
    wrapped = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": PBXCLUSTER[0]},
            "kind": {"const": PBXCLUSTER[1]},
            "metadata": {"type": "object"},
            "spec": schema["properties"]["pbxCluster"]["properties"]["spec"],
            "status": {"type": "object"},
        },
        "definitions": schema["definitions"],
    }
    return (
        "values.schema.json's pbxCluster.spec (the stand-in until the CRD is generated)",
        _schema_check(jsonschema.Draft7Validator(wrapped)),
    )


def pbxcluster_errors(obj: Obj, check: PbxClusterCheck | None, where: str) -> Errors:
    if check is None:
        return [f"{where}: no schema to check it against"]
    errors = []
    if (obj.get("apiVersion"), obj.get("kind")) != PBXCLUSTER:
        errors.append(f"{where}: not a {PBXCLUSTER[0]} {PBXCLUSTER[1]}")
    errors += [f"{where}: {error}" for error in check(obj)]
    return errors


def component(obj: Obj) -> str | None:
    return ((obj.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/component")


def of_component(rendered: Rendered, kind: str, name: str) -> list[Obj]:
    return [o for o in rendered.of_kind(kind) if component(o) == name]


def pod_spec_errors(where: str, pod: Obj) -> Errors:
    """Pod and container hardening and resources."""
    errors = []
    pod_sc = pod.get("securityContext") or {}
    if pod_sc.get("runAsNonRoot") is not True:
        errors.append(f"{where}: pod securityContext.runAsNonRoot is not true")
    if (pod_sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        errors.append(f"{where}: pod seccompProfile is not RuntimeDefault")
    for container in (pod.get("containers") or []) + (pod.get("initContainers") or []):
        cwhere = f"{where}: container {container.get('name')}"
        sc = container.get("securityContext") or {}
        if sc.get("readOnlyRootFilesystem") is not True:
            errors.append(f"{cwhere}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{cwhere}: allowPrivilegeEscalation is not false")
        if sc.get("privileged"):
            errors.append(f"{cwhere}: privileged")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            errors.append(f"{cwhere}: capabilities do not drop ALL")
        if (sc.get("capabilities") or {}).get("add"):
            errors.append(f"{cwhere}: adds capabilities")
        if sc.get("runAsNonRoot") is False or (sc.get("runAsUser") == 0):
            errors.append(f"{cwhere}: may run as root")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp != "RuntimeDefault":
            errors.append(f"{cwhere}: seccompProfile is {seccomp!r}, not RuntimeDefault")
        resources = container.get("resources") or {}
        for bound in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if not (resources.get(bound) or {}).get(resource):
                    errors.append(f"{cwhere}: no {bound}.{resource}")
        image = str(container.get("image", ""))
        if "@" not in image and (":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")):
            errors.append(f"{cwhere}: image {image!r} has no pinned tag")
    return errors


def operator_errors(rendered: Rendered, values: Obj) -> Errors:
    """The operator's Deployments, Service and test, as the brief and docs/metrics.md say."""
    errors = []
    port = (values.get("operator") or {}).get("port", 9090)
    deployments = [
        d
        for d in rendered.of_kind("Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"
    ]
    if not deployments:
        errors.append("no operator Deployment")
    for deployment in deployments:
        where = f"Deployment/{deployment['metadata']['name']}"
        pod = deployment["spec"]["template"]["spec"]
        errors += pod_spec_errors(where, pod)
        containers = {c["name"]: c for c in pod.get("containers", [])}
        operator = containers.get("operator")
        if operator is None:
            errors.append(f"{where}: no container named operator")
            continue
        if operator.get("command") != ["calanque-operator"] or (operator.get("args") or [None])[0] != "run":
            errors.append(
                f"{where}: does not run `calanque-operator run` (command {operator.get('command')}, args {operator.get('args')})"
            )
        ports = {p.get("name"): p.get("containerPort") for p in operator.get("ports", [])}
        if ports.get("metrics") != port:
            errors.append(f"{where}: metrics port is {ports.get('metrics')}, not {port}")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = (operator.get(probe) or {}).get("httpGet") or {}
            if get.get("path") != path or get.get("port") not in ("metrics", port):
                errors.append(f"{where}: {probe} is not GET {path} on the metrics port ({get})")
        env = {e["name"]: e.get("value") for e in operator.get("env", [])}
        if env.get("CALANQUE_TELEMETRY_LISTEN") != f"0.0.0.0:{port}":
            errors.append(f"{where}: CALANQUE_TELEMETRY_LISTEN is {env.get('CALANQUE_TELEMETRY_LISTEN')!r}")
        cluster_wide = (values.get("rbac") or {}).get("clusterWide", False)
        namespace = env.get("CALANQUE_OPERATOR_NAMESPACE")
        if namespace != (None if cluster_wide else NAMESPACE):
            errors.append(
                f"{where}: CALANQUE_OPERATOR_NAMESPACE is {namespace!r}: the release namespace with a "
                "Role, absent (every namespace) with rbac.clusterWide"
            )
        endpoints, tls_secret = expected_etcd(values)
        etcd = env.get("CALANQUE_ETCD")
        if etcd != (",".join(endpoints) if endpoints else None):
            errors.append(
                f"{where}: CALANQUE_ETCD is {etcd!r}, expected {','.join(endpoints) or 'absent'} "
                "(etcd.endpoints, else the chart's PbxCluster's)"
            )
        errors += client_tls_errors(where, pod, operator, {"ETCD": tls_secret})
    services = [
        s
        for s in rendered.of_kind("Service")
        if s["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"
    ]
    if len(services) != 1:
        errors.append(f"{len(services)} operator metrics Services, expected 1")
    for service in services:
        ports = service["spec"].get("ports", [])
        if [(p.get("name"), p.get("port"), p.get("targetPort")) for p in ports] != [
            ("metrics", port, "metrics")
        ]:
            errors.append(
                f"Service/{service['metadata']['name']}: ports {ports}, expected metrics {port} -> metrics"
            )
        selector = service["spec"].get("selector") or {}
        for deployment in deployments:
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            if any(labels.get(k) != v for k, v in selector.items()):
                errors.append(
                    f"Service/{service['metadata']['name']} does not select Deployment/{deployment['metadata']['name']}'s pods"
                )
    total = sum(d["spec"].get("replicas", 1) for d in deployments)
    pdbs = of_component(rendered, "PodDisruptionBudget", "operator")
    pdb_enabled = ((values.get("operator") or {}).get("podDisruptionBudget") or {}).get("enabled", True)
    if (total > 1 and pdb_enabled) != bool(pdbs):
        errors.append(f"{len(pdbs)} PodDisruptionBudget(s) for {total} operator pod(s)")
    tests = [
        p
        for p in rendered.of_kind("Pod")
        if (p["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"
    ]
    if not tests:
        errors.append("no chart test pod (helm.sh/hook: test)")
    for test in tests:
        errors += pod_spec_errors(f"Pod/{test['metadata']['name']}", test["spec"])
        command = " ".join(
            c
            for container in test["spec"]["containers"]
            for c in container.get("command", []) + container.get("args", [])
        )
        if services and f"{services[0]['metadata']['name']}.{NAMESPACE}.svc:{port}/readyz" not in command:
            errors.append(
                f"Pod/{test['metadata']['name']}: does not ask the operator Service for /readyz ({command})"
            )
    if "calanque" not in rendered.notes:
        errors.append("NOTES.txt is empty")
    return errors


def failover_on(values: Obj) -> bool:
    """The failover controller runs with failover.enabled and the PbxCluster the chart creates."""
    v = effective_values(values)
    return bool(v["failover"]["enabled"] and v["pbxCluster"]["create"])


def expected_failover(values: Obj) -> list[tuple[str, Obj, list[tuple[str, str | None]]]]:
    """Per serving datacenter (the PbxCluster's order), then per witness datacenter when
    failover.atWitness: its name, its nodeSelector and the
    calanque-failover arguments every one of its pods runs with, as (flag, value) pairs,
    derived here from the values independently of the templates (extraArgs not included)."""
    v = effective_values(values)
    if not failover_on(values):
        return []
    spec = v["pbxCluster"]["spec"]
    cluster = v["pbxCluster"]["name"]
    f = v["failover"]
    serving = [dc for dc in spec["datacenters"] if dc["role"] == "serving"]
    targets = []
    for dc in serving:
        address = dc["sipAddresses"][0]
        host = f"[{address}]" if ":" in address else address
        urls = [
            f"readyz:http://{cluster}-{dc['name']}-{c}.{NAMESPACE}.svc:9090/readyz" for c in ("edge", "call-control")
        ]
        targets.append(f"{dc['name']}=" + ",".join([f"sip:{host}:{spec['sip']['udpPort']}", *urls]))
    endpoints, _ = expected_etcd(values)
    args: list[tuple[str, str | None]] = [("--instance", "$(POD_NAME)"), ("--etcd", ",".join(endpoints))]
    nats_at = 2  # where --nats goes, when the PbxCluster has NATS URLs
    args += [("--datacenter", target) for target in targets]
    if f.get("witnessUrl"):
        args.append(("--witness", f["witnessUrl"]))
    args += [
        ("--detection-seconds", str(spec["failover"]["detectionSeconds"])),
        ("--failback-after-seconds", str(spec["failover"]["failbackAfterSeconds"])),
    ]
    if spec["failover"]["automaticFailback"]:
        args.append(("--automatic-failback", None))
    args.append(("--probe-interval-ms", str(f["probeIntervalMs"])))
    if f.get("probeTimeoutMs"):
        args.append(("--probe-timeout-ms", str(f["probeTimeoutMs"])))
    args += [
        ("--lease-ttl-seconds", str(f["leaseTtlSeconds"])),
        ("--telemetry-listen", f"0.0.0.0:{f['port']}"),
        ("--log-format", f["logFormat"]),
    ]
    # Every serving datacenter, then the witness when failover.atWitness: same arguments, the
    # witness's instances probe the serving datacenters too (their view breaks ties), except
    # that each lists its own datacenter's NATS servers first (ADR 0022).
    places = [dc for dc in spec["datacenters"] if dc["role"] == "serving" or (dc["role"] == "witness" and f["atWitness"])]
    expected = []
    for dc in places:
        place_args = list(args)
        urls = spec["nats"].get("urls") or []
        if urls:
            own = dc.get("natsUrls") or []
            ordered = [u for u in urls if u in own] + [u for u in urls if u not in own]
            place_args.insert(nats_at, ("--nats", ",".join(ordered)))
        expected.append((dc["name"], dc.get("nodeSelector") or {}, place_args))
    return expected


def parse_flags(args: list[str]) -> list[tuple[str, str | None]]:
    return [(a.split("=", 1)[0], a.split("=", 1)[1] if "=" in a else None) for a in args]


def failover_errors(rendered: Rendered, values: Obj) -> Errors:
    """The failover controller (ADR 0018): one Deployment per serving datacenter and one at the
    witness (failover.atWitness), pinned and labelled there, running calanque-failover with the arguments the values imply, hardened
    like the operator, probes on /healthz and /readyz, its own ServiceAccount bound to no Role
    with no token mounted, a metrics Service, and its PodDisruptionBudget."""
    errors = []
    v = effective_values(values)
    f = v["failover"]
    expected = expected_failover(values)
    deployments = of_component(rendered, "Deployment", "failover")
    by_dc = {(d["metadata"].get("labels") or {}).get("calanque.io/datacenter"): d for d in deployments}
    if sorted(map(str, by_dc)) != sorted(name for name, _, _ in expected) or len(deployments) != len(expected):
        errors.append(
            f"failover Deployments for datacenters {sorted(map(str, by_dc))}, expected {[n for n, _, _ in expected]}"
        )
    account = (f["serviceAccount"].get("name") or f"{RELEASE}-failover") if expected else None
    _, tls_secret = expected_etcd(values)
    for name, node_selector, args in expected:
        deployment = by_dc.get(name)
        if deployment is None:
            continue
        where = f"Deployment/{deployment['metadata']['name']}"
        template = deployment["spec"]["template"]
        pod = template["spec"]
        errors += pod_spec_errors(where, pod)
        for part, labels in (
            ("selector", deployment["spec"]["selector"].get("matchLabels") or {}),
            ("pod template", template["metadata"].get("labels") or {}),
        ):
            if labels.get("calanque.io/datacenter") != name or labels.get("app.kubernetes.io/component") != "failover":
                errors.append(f"{where}: {part} labels lack calanque.io/datacenter={name}, component=failover")
        selector = pod.get("nodeSelector") or {}
        if any(selector.get(k) != val for k, val in node_selector.items()):
            errors.append(f"{where}: nodeSelector {selector} lacks datacenter {name}'s {node_selector}")
        if deployment["spec"].get("replicas") != f["replicaCount"]:
            errors.append(f"{where}: {deployment['spec'].get('replicas')} replicas, failover.replicaCount is {f['replicaCount']}")
        if pod.get("automountServiceAccountToken") is not False:
            errors.append(f"{where}: automountServiceAccountToken is not false (the failover controller needs no API access)")
        if pod.get("serviceAccountName") != account:
            errors.append(f"{where}: serviceAccountName {pod.get('serviceAccountName')!r}, expected {account!r}")
        containers = {c["name"]: c for c in pod.get("containers", [])}
        container = containers.get("failover")
        if container is None or len(containers) != 1:
            errors.append(f"{where}: expected one container named failover, got {sorted(containers)}")
            continue
        if container.get("command") != ["calanque-failover"]:
            errors.append(f"{where}: command is {container.get('command')}, not calanque-failover")
        got = parse_flags(container.get("args") or [])
        extra = parse_flags(f.get("extraArgs") or [])
        if got[: len(got) - len(extra)] != args or got[len(got) - len(extra) :] != extra:
            errors.append(f"{where}: arguments {container.get('args')}, expected {args} then failover.extraArgs")
        env = {e["name"]: e for e in container.get("env") or []}
        if ((env.get("POD_NAME") or {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
            errors.append(f"{where}: POD_NAME (the --instance) is not the pod name from the downward API")
        ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
        if ports.get("metrics") != f["port"]:
            errors.append(f"{where}: metrics port is {ports.get('metrics')}, not {f['port']}")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = (container.get(probe) or {}).get("httpGet") or {}
            if get.get("path") != path or get.get("port") not in ("metrics", f["port"]):
                errors.append(f"{where}: {probe} is not GET {path} on the metrics port ({get})")
        errors += client_tls_errors(
            where, pod, container, {"ETCD": tls_secret, "NATS": expected_failover_nats_tls(values)}
        )
    # The ServiceAccount: token never mounted, bound to nothing.
    accounts = of_component(rendered, "ServiceAccount", "failover")
    want_account = bool(expected) and f["serviceAccount"]["create"]
    if len(accounts) != (1 if want_account else 0):
        errors.append(f"{len(accounts)} failover ServiceAccount(s), expected {1 if want_account else 0}")
    for sa in accounts:
        if sa["metadata"]["name"] != account:
            errors.append(f"ServiceAccount/{sa['metadata']['name']}: expected {account!r}")
        if sa.get("automountServiceAccountToken") is not False:
            errors.append(f"ServiceAccount/{sa['metadata']['name']}: automountServiceAccountToken is not false")
    for binding in rendered.of_kind("RoleBinding") + rendered.of_kind("ClusterRoleBinding"):
        for subject in binding.get("subjects") or []:
            if subject.get("kind") == "ServiceAccount" and account and subject.get("name") == account:
                errors.append(
                    f"{binding['kind']}/{binding['metadata']['name']} binds the failover controller's ServiceAccount: it needs no RBAC"
                )
    if any(component(r) == "failover" for r in rendered.of_kind("Role") + rendered.of_kind("ClusterRole")):
        errors.append("a Role for the failover controller: it needs no RBAC")
    # Its metrics Service.
    services = of_component(rendered, "Service", "failover")
    if len(services) != (1 if expected else 0):
        errors.append(f"{len(services)} failover metrics Services, expected {1 if expected else 0}")
    for service in services:
        ports = service["spec"].get("ports", [])
        if [(p.get("name"), p.get("port"), p.get("targetPort")) for p in ports] != [("metrics", f["port"], "metrics")]:
            errors.append(f"Service/{service['metadata']['name']}: ports {ports}, expected metrics {f['port']} -> metrics")
        selector = service["spec"].get("selector") or {}
        if selector.get("app.kubernetes.io/component") != "failover":
            errors.append(f"Service/{service['metadata']['name']}: does not select component=failover")
        for deployment in deployments:
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            if any(labels.get(k) != val for k, val in selector.items()):
                errors.append(
                    f"Service/{service['metadata']['name']} does not select Deployment/{deployment['metadata']['name']}'s pods"
                )
    total = sum(d["spec"].get("replicas", 1) for d in deployments)
    pdbs = of_component(rendered, "PodDisruptionBudget", "failover")
    if (total > 1 and f["podDisruptionBudget"]["enabled"]) != bool(pdbs):
        errors.append(f"{len(pdbs)} failover PodDisruptionBudget(s) for {total} failover pod(s)")
    if expected and "failover controller" not in rendered.notes:
        errors.append("NOTES.txt does not mention the failover controller")
    return errors


def rbac_errors(rendered: Rendered, values: Obj) -> Errors:
    """Exactly EXPECTED_RBAC (plus `get` on the named TLS Secrets), in a Role or a ClusterRole
    as rbac.clusterWide says, bound to the operator's ServiceAccount."""
    errors = []
    rbac = values.get("rbac") or {}
    cluster_wide = rbac.get("clusterWide", False)
    role_kind = "ClusterRole" if cluster_wide else "Role"
    roles = rendered.of_kind("Role") + rendered.of_kind("ClusterRole")
    if [r["kind"] for r in roles] != [role_kind]:
        return [f"expected one {role_kind}, got {[r['kind'] for r in roles]}"]
    granted: dict[tuple[str, str], set[str]] = {}
    secret_names: set[str] = set()
    for rule in roles[0].get("rules", []):
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            if "*" in (rule.get(field) or []):
                errors.append(f"{role_kind} rule {rule} has a wildcard in {field}")
        if rule.get("nonResourceURLs"):
            errors.append(f"{role_kind} rule {rule} grants non-resource URLs")
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                key = (group, resource)
                if key == SECRETS:
                    if set(rule.get("verbs", [])) != {"get"} or not rule.get("resourceNames"):
                        errors.append(f"secrets: only `get` by name is allowed, got {rule}")
                    secret_names |= set(rule.get("resourceNames") or [])
                    continue
                if rule.get("resourceNames"):
                    errors.append(f"{key}: unexpected resourceNames")
                granted.setdefault(key, set()).update(rule.get("verbs", []))
    for key in sorted(set(granted) | set(EXPECTED_RBAC)):
        if granted.get(key, set()) != EXPECTED_RBAC.get(key, set()):
            errors.append(
                f"{role_kind} grants {sorted(granted.get(key, set()))} on {key[0] or 'core'}/{key[1]}, expected {sorted(EXPECTED_RBAC.get(key, set()))}"
            )
    expected_secrets = set(rbac.get("tlsSecretNames") or [])
    pbx = values.get("pbxCluster") or {}
    if pbx.get("create"):
        spec = pbx.get("spec") or {}
        for section in ("nats", "etcd", "sip"):
            name = (spec.get(section) or {}).get("tlsSecret")
            if name:
                expected_secrets.add(name)
    if secret_names != expected_secrets:
        errors.append(
            f"{role_kind} may read Secrets {sorted(secret_names)}, expected the TLS Secrets {sorted(expected_secrets)}"
        )
    bindings = rendered.of_kind("RoleBinding") + rendered.of_kind("ClusterRoleBinding")
    accounts = [s["metadata"]["name"] for s in of_component(rendered, "ServiceAccount", "operator")]
    if len(bindings) != 1:
        errors.append(f"{len(bindings)} role bindings, expected 1")
    for binding in bindings:
        ref = binding.get("roleRef") or {}
        if ref.get("kind") != role_kind or ref.get("name") != roles[0]["metadata"]["name"]:
            errors.append(f"{binding['kind']} binds {ref}, not the operator's {role_kind}")
        subjects = binding.get("subjects") or []
        if [(s.get("kind"), s.get("name"), s.get("namespace")) for s in subjects] != [
            ("ServiceAccount", accounts[0] if accounts else None, NAMESPACE)
        ]:
            errors.append(f"{binding['kind']} subjects {subjects} are not the operator's ServiceAccount")
    return errors


def rule_files_groups() -> list[Obj]:
    groups = []
    for name in ("recording-rules.yaml", "alert-rules.yaml"):
        groups += load_yaml(CHART / "files" / "prometheus" / name)["groups"]
    return groups


def monitoring_errors(rendered: Rendered, values: Obj) -> Errors:
    errors = []
    monitoring = values.get("monitoring") or {}
    switches = {
        "PrometheusRule": (monitoring.get("prometheusRules") or {}).get("enabled", False),
        # The operator's, and the failover controller's when it runs.
        "PodMonitor": (monitoring.get("serviceMonitor") or {}).get("enabled", False)
        and ((monitoring.get("serviceMonitor") or {}).get("services") or {}).get("enabled", True),
    }
    for kind, enabled in switches.items():
        count = len(rendered.of_kind(kind))
        if count != (1 if enabled else 0):
            errors.append(f"{count} {kind}(s) rendered, expected {1 if enabled else 0}")
    monitors_on = (monitoring.get("serviceMonitor") or {}).get("enabled", False)
    expected_monitors = {"operator", "failover"} if failover_on(values) else {"operator"}
    monitors = [component(m) for m in rendered.of_kind("ServiceMonitor")]
    if sorted(monitors) != (sorted(expected_monitors) if monitors_on else []):
        errors.append(
            f"ServiceMonitors for {sorted(map(str, monitors))}, expected {sorted(expected_monitors) if monitors_on else []}"
        )
    for monitor in rendered.of_kind("ServiceMonitor"):
        selector = (monitor["spec"].get("selector") or {}).get("matchLabels") or {}
        selected = [
            s["metadata"]["name"]
            for s in rendered.of_kind("Service")
            if all((s["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
        ]
        if len(selected) != 1 or selector.get("app.kubernetes.io/component") != component(monitor):
            errors.append(
                f"ServiceMonitor/{monitor['metadata']['name']} selects Services {selected}, expected its own component's one"
            )
    for rule in rendered.of_kind("PrometheusRule"):
        if rule["spec"].get("groups") != rule_files_groups():
            errors.append(
                "PrometheusRule groups differ from files/prometheus/recording-rules.yaml + alert-rules.yaml"
            )
    for monitor in rendered.of_kind("ServiceMonitor"):
        for endpoint in monitor["spec"].get("endpoints", []):
            if endpoint.get("honorLabels") is not True:
                errors.append(
                    f"ServiceMonitor/{monitor['metadata']['name']}: the {component(monitor)}'s scrape needs honorLabels: true (docs/metrics.md)"
                )
            errors += relabel_errors(
                f"ServiceMonitor/{monitor['metadata']['name']}", endpoint, service="operator"
            )
    for monitor in rendered.of_kind("PodMonitor"):
        for endpoint in monitor["spec"].get("podMetricsEndpoints", []):
            errors += relabel_errors(f"PodMonitor/{monitor['metadata']['name']}", endpoint, service=None)
        components = [
            e for e in monitor["spec"]["selector"].get("matchExpressions", []) if e.get("operator") == "In"
        ]
        if not components or set(components[0].get("values", [])) != {
            "edge",
            "call-control",
            "media",
            "directory",
        }:
            errors.append(
                f"PodMonitor/{monitor['metadata']['name']}: does not select exactly edge, call-control, media and directory"
            )
    dashboards_on = (monitoring.get("dashboards") or {}).get("enabled", False)
    maps = [
        c
        for c in rendered.of_kind("ConfigMap")
        if (c["metadata"].get("labels") or {}).get("grafana_dashboard") == "1"
    ]
    if len(maps) != (1 if dashboards_on else 0):
        errors.append(f"{len(maps)} dashboard ConfigMap(s), expected {1 if dashboards_on else 0}")
    files = {p.name: p for p in sorted((CHART / "dashboards").glob("*.json"))}
    for configmap in maps:
        data = configmap.get("data") or {}
        if set(data) != set(files):
            errors.append(f"dashboards ConfigMap holds {sorted(data)}, the chart has {sorted(files)}")
        for name, path in files.items():
            if name in data and json.loads(data[name]) != json.loads(path.read_text()):
                errors.append(f"dashboards ConfigMap: {name} differs from dashboards/{name}")
    return errors


def relabel_errors(where: str, endpoint: Obj, service: str | None) -> Errors:
    """The `service` and `datacenter` labels docs/metrics.md says every series carries."""
    errors = []
    relabelings = endpoint.get("relabelings") or []
    to_service = [r for r in relabelings if r.get("targetLabel") == "service"]
    to_datacenter = [r for r in relabelings if r.get("targetLabel") == "datacenter"]
    if service is not None:
        if not any(r.get("replacement") == service and not r.get("sourceLabels") for r in to_service):
            errors.append(f"{where}: no relabeling sets service={service}")
    elif not any(
        str((r.get("sourceLabels") or [""])[0]).startswith("__meta_kubernetes_pod_label_") for r in to_service
    ):
        errors.append(f"{where}: no relabeling copies a pod label to `service`")
    if not any(
        r.get("sourceLabels") == ["__meta_kubernetes_pod_label_calanque_io_datacenter"] for r in to_datacenter
    ):
        errors.append(f"{where}: no relabeling copies the pod's calanque.io/datacenter label to `datacenter`")
    return errors


def policy_errors(rendered: Rendered, values: Obj) -> Errors:
    errors = operator_errors(rendered, values)
    errors += failover_errors(rendered, values)
    errors += rbac_errors(rendered, values)
    errors += monitoring_errors(rendered, values)
    for pod in rendered.of_kind("Pod"):
        if (pod["metadata"].get("annotations") or {}).get("helm.sh/hook") != "test":
            errors.append(f"Pod/{pod['metadata']['name']}: the chart renders no bare Pod but its test")
    return errors


# ---------------------------------------------------------------------------------------------
# Steps


def step_values() -> Errors:
    errors = comment_errors((CHART / "values.yaml").read_text())
    schema = values_schema()
    try:
        jsonschema.Draft7Validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        return errors + [f"values.schema.json is not a valid draft-07 schema: {error.message}"]
    errors += schema_closure_errors(schema)
    defaults = load_yaml(CHART / "values.yaml")
    errors += values_schema_errors(defaults, schema, "values.yaml")
    with helm.Chart.load(str(CHART)) as chart:
        for name, make in VALUE_SETS.items():
            errors += values_schema_errors(chart.merge_values(make()), schema, f"values ({name})")
    return errors


def step_lint() -> Errors:
    errors = []
    for version in chart_kube_versions():
        for name in ("default", "example"):
            errors += [f"{name}, Kubernetes {version}: {e}" for e in lint_errors(VALUE_SETS[name](), version)]
            print(f"  helm lint --strict ({name} values, Kubernetes {version})")
    return errors


def step_render() -> Errors:
    RENDER_DIR.mkdir(parents=True, exist_ok=True)
    errors = []
    for name in VALUE_SETS:
        try:
            rendered = render_set(name)
        except helm.HelmError as error:
            errors.append(f"{name}: helm template failed: {error}")
            continue
        out = RENDER_DIR / f"{name}.yaml"
        # Made again before each write: target/ is shared, and may be cleaned meanwhile.
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(rendered.yaml())
        kinds: dict[str, int] = {}
        for _, obj in rendered.objects:
            kinds[obj["kind"]] = kinds.get(obj["kind"], 0) + 1
        summary = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        print(f"  {name}: {summary} -> {rel(out)}")
    return errors


def step_kubernetes() -> Errors:
    versions = chart_kube_versions()
    errors = []
    for name in VALUE_SETS:
        rendered = render_set(name)
        problems = objects_errors(rendered, versions)
        errors += [f"{name}: {e}" for e in problems]
        print(
            f"  {name}: {len(rendered.objects)} objects against Kubernetes {' and '.join(versions)} (strict) and scripts/chart/schemas"
        )
    return errors


def step_pbxcluster() -> Errors:
    versions = chart_kube_versions()
    errors = []
    crd = load_crd()
    if crd is None:
        print(f"  {crd_missing()}")
    else:
        errors += crd_errors(crd, versions)
        with helm.Chart.load(str(CHART)) as chart:
            if [c["name"] for c in chart.crds] != ["crds/pbxclusters.calanque.io.yaml"]:
                errors.append(f"Helm sees the CRDs {[c['name'] for c in chart.crds]}")
        print(
            f"  CRD {rel(CRD_FILE)}: Kubernetes {' and '.join(versions)} (strict), names per docs/pbxcluster.md"
        )
    described, validator = pbxcluster_validator(crd)
    example = load_yaml(EXAMPLE)
    contract = contract_spec()
    if "status" in example:
        errors.append("examples/two-datacenters.yaml: spec only, no status")
    if example.get("spec") != contract.get("spec"):
        errors.append("examples/two-datacenters.yaml: spec differs from docs/pbxcluster.md's")
    if {k: example.get(k) for k in ("apiVersion", "kind", "metadata")} != {
        k: contract.get(k) for k in ("apiVersion", "kind", "metadata")
    }:
        errors.append(
            "examples/two-datacenters.yaml: apiVersion, kind or metadata differ from docs/pbxcluster.md's"
        )
    if example_values()["pbxCluster"]["spec"] != example.get("spec"):
        errors.append(
            "examples/values-two-datacenters.yaml: pbxCluster.spec differs from examples/two-datacenters.yaml's spec"
        )
    errors += object_errors(example, versions, "examples/two-datacenters.yaml")
    errors += pbxcluster_errors(example, validator, "examples/two-datacenters.yaml")
    print(f"  examples/two-datacenters.yaml against {described}; its spec is docs/pbxcluster.md's")
    for name in VALUE_SETS:
        rendered = render_set(name)
        created = (VALUE_SETS[name]().get("pbxCluster") or {}).get("create", False)
        clusters = rendered.of_kind("PbxCluster")
        if len(clusters) != (1 if created else 0):
            errors.append(f"{name}: {len(clusters)} PbxCluster(s) rendered, expected {1 if created else 0}")
        for cluster in clusters:
            errors += pbxcluster_errors(
                cluster, validator, f"{name}: rendered PbxCluster/{cluster['metadata']['name']}"
            )
            if name == "example" and cluster.get("spec") != example.get("spec"):
                errors.append(
                    f"{name}: the rendered PbxCluster's spec differs from examples/two-datacenters.yaml's"
                )
            print(f"  {name}: rendered PbxCluster/{cluster['metadata']['name']} against {described}")
    return errors


def step_policy() -> Errors:
    errors = []
    for name, make in VALUE_SETS.items():
        values = make()
        errors += [f"{name}: {e}" for e in policy_errors(render_set(name), values)]
        print(
            f"  {name}: securityContext, resources, operator and failover controller, RBAC, monitoring, test, NOTES"
        )
    example = example_values()
    monitoring = example.get("monitoring") or {}
    if not (
        example["pbxCluster"]["create"]
        and failover_on(example)
        and all(
            (monitoring.get(k) or {}).get("enabled")
            for k in ("prometheusRules", "dashboards", "serviceMonitor")
        )
    ):
        errors.append(
            "examples/values-two-datacenters.yaml must create the PbxCluster, run the failover controller "
            "and turn every monitoring switch on"
        )
    return errors


# ---------------------------------------------------------------------------------------------
# Self-test: every check rejects a broken input and accepts the unbroken one.


def _find(rendered: Rendered, kind: str) -> Obj:
    return copy.deepcopy(rendered.of_kind(kind)[0])


def self_test() -> Errors:
    versions = chart_kube_versions()
    default = render_set("default")
    example = render_set("example")
    example_vals = example_values()
    crd = load_crd()
    failures: Errors = []
    ran = 0

    def expect(name: str, good: Callable[[], Errors], bad: Callable[[], Errors]) -> None:
        nonlocal ran
        ran += 1
        try:
            good_errors = good()
        except Exception as error:  # noqa: BLE001 - a crash is a failure of the check itself
            good_errors = [f"raised {error!r}"]
        try:
            bad_errors = bad()
        except Exception as error:  # noqa: BLE001
            bad_errors = [f"raised {type(error).__name__}"]
        if good_errors:
            failures.append(f"{name}: the unbroken input is rejected: {good_errors[:3]}")
        elif not bad_errors:
            failures.append(f"{name}: the broken input is accepted")
        else:
            print(f"  ok  {name}: {' '.join(bad_errors[0].split())[:150]}")

    def obj_check(obj: Obj) -> Callable[[], Errors]:
        return lambda: object_errors(obj, versions)

    def mutated(obj: Obj, change: Callable[[Obj], None]) -> Obj:
        out = copy.deepcopy(obj)
        change(out)
        return out

    deployment = _find(default, "Deployment")
    expect(
        "kubernetes-validate rejects an unknown container field",
        obj_check(deployment),
        obj_check(
            mutated(
                deployment,
                lambda d: d["spec"]["template"]["spec"]["containers"][0].update(imagePullPolice="Always"),
            )
        ),
    )
    expect(
        "kubernetes-validate rejects a wrong type",
        obj_check(deployment),
        obj_check(mutated(deployment, lambda d: d["spec"].update(replicas="two"))),
    )
    service = _find(default, "Service")
    expect(
        "kubernetes-validate rejects a wrong apiVersion group",
        obj_check(service),
        obj_check(mutated(service, lambda s: s.update(apiVersion="core.example/v1"))),
    )
    expect(
        "an unknown kind is rejected, not skipped",
        obj_check(service),
        obj_check(mutated(service, lambda s: s.update(apiVersion="example.com/v1", kind="Gadget"))),
    )
    expect(
        "a Service name that is not a DNS label is rejected",
        obj_check(service),
        obj_check(mutated(service, lambda s: s["metadata"].update(name="Calanque_Operator"))),
    )
    expect(
        "an object outside the release namespace is rejected",
        obj_check(service),
        obj_check(mutated(service, lambda s: s["metadata"].update(namespace="default"))),
    )
    expect(
        "an invalid label value is rejected",
        obj_check(service),
        obj_check(mutated(service, lambda s: s["metadata"]["labels"].update(bad="not a label value"))),
    )
    rule = _find(example, "PrometheusRule")
    expect(
        "PrometheusRule: a rule without expr is rejected",
        obj_check(rule),
        obj_check(mutated(rule, lambda r: r["spec"]["groups"][0]["rules"][0].pop("expr"))),
    )
    expect(
        "PrometheusRule: a rule both record and alert is rejected",
        obj_check(rule),
        obj_check(mutated(rule, lambda r: r["spec"]["groups"][0]["rules"][0].update(alert="Both"))),
    )
    expect(
        "PrometheusRule: no groups is rejected",
        obj_check(rule),
        obj_check(mutated(rule, lambda r: r["spec"].pop("groups"))),
    )
    monitor = _find(example, "ServiceMonitor")
    expect(
        "ServiceMonitor: no selector is rejected",
        obj_check(monitor),
        obj_check(mutated(monitor, lambda m: m["spec"].pop("selector"))),
    )
    podmonitor = _find(example, "PodMonitor")
    expect(
        "PodMonitor: an unknown endpoint field is rejected",
        obj_check(podmonitor),
        obj_check(
            mutated(podmonitor, lambda m: m["spec"]["podMetricsEndpoints"][0].update(honourLabels=True))
        ),
    )
    expect(
        "PodMonitor: a bad interval is rejected",
        obj_check(podmonitor),
        obj_check(
            mutated(podmonitor, lambda m: m["spec"]["podMetricsEndpoints"][0].update(interval="30 seconds"))
        ),
    )

    # PbxCluster: against the CRD when generated, and against the stand-in in any case.
    cluster = load_yaml(EXAMPLE)
    validators = [pbxcluster_validator(None)]
    if crd is not None:
        validators.insert(0, pbxcluster_validator(crd))
    for described, validator in validators:
        expect(
            f"PbxCluster against {described}: an unknown spec field is rejected",
            lambda v=validator: pbxcluster_errors(cluster, v, "example"),
            lambda v=validator: pbxcluster_errors(
                mutated(cluster, lambda c: c["spec"]["replicas"].update(edgee=2)), v, "example"
            ),
        )
        expect(
            f"PbxCluster against {described}: a missing spec.datacenters is rejected",
            lambda v=validator: pbxcluster_errors(cluster, v, "example"),
            lambda v=validator: pbxcluster_errors(
                mutated(cluster, lambda c: c["spec"].pop("datacenters")), v, "example"
            ),
        )
        expect(
            f"PbxCluster against {described}: a string where a number goes is rejected",
            lambda v=validator: pbxcluster_errors(cluster, v, "example"),
            lambda v=validator: pbxcluster_errors(
                mutated(cluster, lambda c: c["spec"]["rtp"].update(portFirst="16384")), v, "example"
            ),
        )

    # CEL rules: the evaluator on a small schema, then the CRD's own rules when it has some.
    cel_schema = {
        "type": "object",
        "properties": {
            "sip": {
                "type": "object",
                "properties": {"tlsPort": {"type": "integer"}, "tlsSecret": {"type": "string"}},
                "x-kubernetes-validations": [
                    {"rule": "has(self.tlsPort) == has(self.tlsSecret)", "message": "go together"}
                ],
            },
            "datacenters": {
                "type": "array",
                "items": {"type": "object", "properties": {"role": {"type": "string"}}},
                "x-kubernetes-validations": [
                    {"rule": "self.filter(d, d.role == 'serving').size() == 2", "message": "two serving"}
                ],
            },
        },
    }
    cel_good = {"sip": {"tlsPort": 5061, "tlsSecret": "sip-tls"}, "datacenters": [{"role": "serving"}] * 2}
    expect(
        "CEL: a broken x-kubernetes-validations rule is reported",
        lambda: CelRules(cel_schema).errors(cel_good),
        lambda: CelRules(cel_schema).errors(mutated(cel_good, lambda v: v["sip"].pop("tlsSecret"))),
    )
    expect(
        "CEL: a rule over a list (filter, size) is reported",
        lambda: CelRules(cel_schema).errors(cel_good),
        lambda: CelRules(cel_schema).errors(
            mutated(cel_good, lambda v: v["datacenters"].append({"role": "serving"}))
        ),
    )
    if crd is not None and "x-kubernetes-validations" in json.dumps(crd):
        described, validator = pbxcluster_validator(crd)
        expect(
            "PbxCluster against the CRD's CEL rules: three serving datacenters are rejected",
            lambda: pbxcluster_errors(cluster, validator, "example"),
            lambda: pbxcluster_errors(
                mutated(
                    cluster,
                    lambda c: c["spec"]["datacenters"][2].update(
                        role="serving", sipAddresses=["203.0.113.1"]
                    ),
                ),
                validator,
                "example",
            ),
        )

    # The CRD check itself, on the real CRD or a small one.
    sample_crd = crd or {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "pbxclusters.calanque.io"},
        "spec": {
            "group": "calanque.io",
            "scope": "Namespaced",
            "names": {
                "kind": "PbxCluster",
                "plural": "pbxclusters",
                "singular": "pbxcluster",
                "shortNames": ["pbx"],
                "listKind": "PbxClusterList",
            },
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object"}}}
                    },
                }
            ],
        },
    }
    expect(
        "CRD: an unknown field is rejected by kubernetes-validate",
        lambda: crd_errors(sample_crd, versions),
        lambda: crd_errors(
            mutated(sample_crd, lambda c: c["spec"].update(preserveUnknownFields=False, conversionn={})),
            versions,
        ),
    )
    expect(
        "CRD: a wrong short name is rejected",
        lambda: crd_errors(sample_crd, versions),
        lambda: crd_errors(
            mutated(sample_crd, lambda c: c["spec"]["names"].update(shortNames=["pbc"])), versions
        ),
    )

    # Values: the schema (through Helm's render) and the template's own checks.
    def renders(values: Obj) -> Callable[[], Errors]:
        def run() -> Errors:
            try:
                render(values)
            except helm.HelmError as error:
                return [str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__]
            return []

        return run

    expect(
        "values: an unknown key is rejected by values.schema.json",
        renders({}),
        renders({"operator": {"replicas": 2}}),
    )
    expect(
        "values: a wrong type is rejected by values.schema.json",
        renders({}),
        renders({"operator": {"replicaCount": "two"}}),
    )
    expect(
        "values: three serving datacenters fail the render",
        renders(example_vals),
        renders(
            mutated(
                example_vals,
                lambda v: v["pbxCluster"]["spec"]["datacenters"][2].update(
                    role="serving", sipAddresses=["203.0.113.1"]
                ),
            )
        ),
    )
    expect(
        "values: a TLS port without a TLS Secret fails the render",
        renders(example_vals),
        renders(mutated(example_vals, lambda v: v["pbxCluster"]["spec"]["sip"].pop("tlsSecret"))),
    )
    expect(
        "values: a TLS Secret without a TLS port fails the render",
        renders(example_vals),
        renders(mutated(example_vals, lambda v: v["pbxCluster"]["spec"]["sip"].update(tlsPort=0))),
    )
    expect(
        "values: a datacenter's NATS server missing from nats.urls fails the render",
        renders(example_vals),
        renders(
            mutated(
                example_vals,
                lambda v: v["pbxCluster"]["spec"]["datacenters"][1].update(natsUrls=["nats://elsewhere:4222"]),
            )
        ),
    )
    expect(
        "values: one NATS server in two datacenters' natsUrls fails the render",
        renders(example_vals),
        renders(
            mutated(
                example_vals,
                lambda v: v["pbxCluster"]["spec"]["datacenters"][1].update(
                    natsUrls=v["pbxCluster"]["spec"]["datacenters"][0]["natsUrls"]
                ),
            )
        ),
    )
    expect(
        "values: an RTP range that ends before it starts fails the render",
        renders(example_vals),
        renders(
            mutated(
                example_vals, lambda v: v["pbxCluster"]["spec"]["rtp"].update(portFirst=32768, portLast=32000)
            )
        ),
    )
    expect(
        "values: a host name where an IP address goes is rejected by values.schema.json",
        renders(example_vals),
        renders(
            mutated(
                example_vals,
                lambda v: v["pbxCluster"]["spec"]["datacenters"][0].update(sipAddresses=["sip.example.com"]),
            )
        ),
    )
    expect(
        "values: etcd.tlsSecret without etcd.endpoints fails the render",
        renders({}),
        renders({"etcd": {"endpoints": [], "tlsSecret": "etcd-client-tls"}}),
    )
    expect(
        "values: an etcd endpoint that is not a URL is rejected by values.schema.json",
        renders({"etcd": {"endpoints": ["http://etcd-a:2379"], "tlsSecret": ""}}),
        renders({"etcd": {"endpoints": ["etcd-a:2379"], "tlsSecret": ""}}),
    )
    expect(
        "values: the failover controller with no etcd endpoints fails",
        renders(example_vals),
        renders(mutated(example_vals, lambda v: v["pbxCluster"]["spec"]["etcd"].update(endpoints=[], tlsSecret=""))),
    )
    expect(
        "values: a probe interval above half the detection period fails the render",
        renders(example_vals),
        renders(mutated(example_vals, lambda v: v.setdefault("failover", {}).update(probeIntervalMs=6000))),
    )
    expect(
        "values: an unknown failover key is rejected by values.schema.json",
        renders(example_vals),
        renders(mutated(example_vals, lambda v: v.setdefault("failover", {}).update(detectionSeconds=5))),
    )
    expect(
        "values: PbxCluster with no NATS URL fails",
        renders(example_vals),
        renders(mutated(example_vals, lambda v: v["pbxCluster"]["spec"]["nats"].update(urls=[]))),
    )

    expect(
        "values.yaml: a key without a comment is rejected",
        lambda: comment_errors("# a comment\nkey: 1\n"),
        lambda: comment_errors("# a comment\nkey: 1\nother: 2\n"),
    )
    schema = values_schema()
    expect(
        "values.schema.json: an open object is rejected",
        lambda: schema_closure_errors(schema),
        lambda: schema_closure_errors(
            mutated(schema, lambda s: s["properties"]["rbac"].pop("additionalProperties"))
        ),
    )

    # Lint: a chart with a template that fails is reported.
    def lint_copy(extra: str | None) -> Callable[[], Errors]:
        def run() -> Errors:
            with tempfile.TemporaryDirectory() as tmp:
                copy_dir = Path(tmp) / "calanque"
                shutil.copytree(CHART, copy_dir)
                if extra is not None:
                    (copy_dir / "templates" / "broken.yaml").write_text(extra)
                return lint_errors({}, versions[-1], copy_dir)

        return run

    expect(
        "helm lint --strict reports a template that fails",
        lint_copy(None),
        lint_copy("value: {{ .Values.nothing.here }}\n"),
    )

    # Policy: what the chart promises.
    values = {}
    expect(
        "policy: a writable root filesystem is rejected",
        lambda: policy_errors(default, values),
        lambda: policy_errors(
            _with(
                default,
                "Deployment",
                lambda d: d["spec"]["template"]["spec"]["containers"][0]["securityContext"].update(
                    readOnlyRootFilesystem=False
                ),
            ),
            values,
        ),
    )
    expect(
        "policy: a container without limits is rejected",
        lambda: policy_errors(default, values),
        lambda: policy_errors(
            _with(
                default,
                "Deployment",
                lambda d: d["spec"]["template"]["spec"]["containers"][0]["resources"].pop("limits"),
            ),
            values,
        ),
    )
    expect(
        "policy: capabilities not dropped is rejected",
        lambda: policy_errors(default, values),
        lambda: policy_errors(
            _with(
                default,
                "Deployment",
                lambda d: d["spec"]["template"]["spec"]["containers"][0]["securityContext"].pop(
                    "capabilities"
                ),
            ),
            values,
        ),
    )
    expect(
        "policy: a readiness probe elsewhere than /readyz is rejected",
        lambda: policy_errors(default, values),
        lambda: policy_errors(
            _with(
                default,
                "Deployment",
                lambda d: d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"].update(
                    path="/healthz"
                ),
            ),
            values,
        ),
    )
    expect(
        "policy: a namespaced operator watching every namespace is rejected",
        lambda: policy_errors(default, values),
        lambda: policy_errors(
            _with(
                default,
                "Deployment",
                lambda d: d["spec"]["template"]["spec"]["containers"][0].update(
                    env=[
                        e
                        for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
                        if e["name"] != "CALANQUE_OPERATOR_NAMESPACE"
                    ]
                ),
            ),
            values,
        ),
    )
    def operator_container(d: Obj) -> Obj:
        return d["spec"]["template"]["spec"]["containers"][0]

    def operator_deployment(change: Callable[[Obj], None]) -> Callable[[Obj], None]:
        def run(d: Obj) -> None:
            if d["metadata"]["labels"].get("app.kubernetes.io/component") == "operator":
                change(d)

        return run

    expect(
        "policy: an operator not following the failover store (no CALANQUE_ETCD) is rejected",
        lambda: policy_errors(example, example_vals),
        lambda: policy_errors(
            _with_all(
                example,
                "Deployment",
                operator_deployment(
                    lambda d: operator_container(d).update(
                        env=[e for e in operator_container(d)["env"] if e["name"] != "CALANQUE_ETCD"]
                    )
                ),
            ),
            example_vals,
        ),
    )
    expect(
        "policy: an operator without the etcd TLS Secret mounted is rejected",
        lambda: policy_errors(example, example_vals),
        lambda: policy_errors(
            _with_all(
                example,
                "Deployment",
                operator_deployment(
                    lambda d: operator_container(d).update(
                        volumeMounts=[m for m in operator_container(d)["volumeMounts"] if m["name"] != "etcd-tls"]
                    )
                ),
            ),
            example_vals,
        ),
    )
    def failover_deployments(change: Callable[[Obj], None]) -> Callable[[Obj], None]:
        def run(d: Obj) -> None:
            if component(d) == "failover":
                change(d)

        return run

    def failover_broken(change: Callable[[Obj], None], kind: str = "Deployment") -> Callable[[], Errors]:
        return lambda: policy_errors(
            _with_all(example, kind, failover_deployments(change) if kind == "Deployment" else change),
            example_vals,
        )

    def failover_container(d: Obj) -> Obj:
        return d["spec"]["template"]["spec"]["containers"][0]

    expect(
        "policy: a failover controller without the etcd client TLS variables is rejected",
        lambda: policy_errors(example, example_vals),
        failover_broken(
            lambda d: failover_container(d).update(
                env=[e for e in failover_container(d)["env"] if e["name"] != "CALANQUE_ETCD_KEY_FILE"]
            )
        ),
    )
    expect(
        "policy: a failover controller without the NATS TLS Secret mounted is rejected",
        lambda: policy_errors(example, example_vals),
        failover_broken(
            lambda d: failover_container(d).update(
                volumeMounts=[m for m in failover_container(d)["volumeMounts"] if m["name"] != "nats-tls"]
            )
        ),
    )
    expect(
        "policy: a failover container with a writable root filesystem is rejected",
        lambda: policy_errors(example, example_vals),
        failover_broken(lambda d: failover_container(d)["securityContext"].update(readOnlyRootFilesystem=False)),
    )
    expect(
        "policy: a failover container without a memory limit is rejected",
        lambda: policy_errors(example, example_vals),
        failover_broken(lambda d: failover_container(d)["resources"]["limits"].pop("memory")),
    )
    expect(
        "policy: a failover pod mounting a service account token is rejected",
        lambda: policy_errors(example, example_vals),
        failover_broken(lambda d: d["spec"]["template"]["spec"].update(automountServiceAccountToken=True)),
    )
    expect(
        "policy: a failover ServiceAccount that mounts its token is rejected",
        lambda: policy_errors(example, example_vals),
        failover_broken(
            lambda sa: sa.update(automountServiceAccountToken=True) if component(sa) == "failover" else None,
            kind="ServiceAccount",
        ),
    )
    expect(
        "policy: a RoleBinding granting the failover controller permissions is rejected",
        lambda: policy_errors(example, example_vals),
        failover_broken(
            lambda b: b["subjects"].append(
                {"kind": "ServiceAccount", "name": f"{RELEASE}-failover", "namespace": NAMESPACE}
            ),
            kind="RoleBinding",
        ),
    )
    expect(
        "policy: a failover Deployment not pinned to its datacenter is rejected",
        lambda: policy_errors(example, example_vals),
        failover_broken(lambda d: d["spec"]["template"]["spec"].pop("nodeSelector")),
    )
    expect(
        "policy: a failover controller missing a datacenter is rejected",
        lambda: policy_errors(example, example_vals),
        failover_broken(
            lambda d: failover_container(d).update(
                args=[a for a in failover_container(d)["args"] if not a.startswith("--datacenter=dc-b=")]
            )
        ),
    )
    expect(
        "policy: a failover controller probing another Service's /readyz is rejected",
        lambda: policy_errors(example, example_vals),
        failover_broken(
            lambda d: failover_container(d).update(
                args=[a.replace("city-dc-a-call-control", "city-dc-a-media") for a in failover_container(d)["args"]]
            )
        ),
    )
    expect(
        "policy: failover instances sharing one name (no --instance from the pod name) are rejected",
        lambda: policy_errors(example, example_vals),
        failover_broken(
            lambda d: failover_container(d).update(
                args=["--instance=failover" if a.startswith("--instance") else a for a in failover_container(d)["args"]]
            )
        ),
    )
    given_nats = ",".join(example_vals["pbxCluster"]["spec"]["nats"]["urls"])
    expect(
        "policy: failover controllers all given the NATS servers in one order (not their own first) are rejected",
        lambda: policy_errors(example, example_vals),
        failover_broken(
            lambda d: failover_container(d).update(
                args=[f"--nats={given_nats}" if a.startswith("--nats=") else a for a in failover_container(d)["args"]]
            )
        ),
    )
    expect(
        "policy: a failover readiness probe elsewhere than /readyz is rejected",
        lambda: policy_errors(example, example_vals),
        failover_broken(lambda d: failover_container(d)["readinessProbe"]["httpGet"].update(path="/healthz")),
    )
    expect(
        "policy: the failover controller's scrape without honorLabels is rejected",
        lambda: policy_errors(example, example_vals),
        failover_broken(
            lambda m: m["spec"]["endpoints"][0].update(honorLabels=False) if component(m) == "failover" else None,
            kind="ServiceMonitor",
        ),
    )
    expect(
        "policy: a failover ServiceMonitor selecting the operator's Service is rejected",
        lambda: policy_errors(example, example_vals),
        failover_broken(
            lambda m: m["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/component": "operator"})
            if component(m) == "failover"
            else None,
            kind="ServiceMonitor",
        ),
    )
    expect(
        "policy: the failover controller missing from a render that enables it is rejected",
        lambda: policy_errors(example, example_vals),
        lambda: policy_errors(
            _without(example, lambda o: o.get("kind") == "Deployment" and component(o) == "failover"), example_vals
        ),
    )
    expect(
        "policy: no failover controller at the witness (failover.atWitness) is rejected",
        lambda: policy_errors(example, example_vals),
        lambda: policy_errors(
            _without(
                example,
                lambda o: o.get("kind") == "Deployment"
                and component(o) == "failover"
                and (o["metadata"].get("labels") or {}).get("calanque.io/datacenter") == "witness",
            ),
            example_vals,
        ),
    )
    expect(
        "policy: a wildcard verb is rejected",
        lambda: policy_errors(default, values),
        lambda: policy_errors(_with(default, "Role", lambda r: r["rules"][0].update(verbs=["*"])), values),
    )
    expect(
        "policy: listing Secrets is rejected",
        lambda: policy_errors(default, values),
        lambda: policy_errors(
            _with(
                default,
                "Role",
                lambda r: r["rules"].append(
                    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}
                ),
            ),
            values,
        ),
    )
    expect(
        "policy: a missing permission is rejected",
        lambda: policy_errors(default, values),
        lambda: policy_errors(_with(default, "Role", lambda r: r["rules"].pop(2)), values),
    )
    expect(
        "policy: the operator's scrape without honorLabels is rejected",
        lambda: policy_errors(example, example_vals),
        lambda: policy_errors(
            _with_all(
                example,
                "ServiceMonitor",
                lambda m: m["spec"]["endpoints"][0].update(honorLabels=False) if component(m) == "operator" else None,
            ),
            example_vals,
        ),
    )
    expect(
        "policy: a PrometheusRule missing a rule group is rejected",
        lambda: policy_errors(example, example_vals),
        lambda: policy_errors(
            _with(example, "PrometheusRule", lambda r: r["spec"]["groups"].pop()), example_vals
        ),
    )
    expect(
        "policy: a dashboard missing from the ConfigMap is rejected",
        lambda: policy_errors(example, example_vals),
        lambda: policy_errors(
            _with(example, "ConfigMap", lambda c: c["data"].pop(sorted(c["data"])[0])), example_vals
        ),
    )

    print(f"  {ran} cases")
    return failures


def _with(rendered: Rendered, kind: str, change: Callable[[Obj], None]) -> Rendered:
    """A copy of the render whose first object of `kind` is changed."""
    out = copy.copy(rendered)
    out.objects = copy.deepcopy(rendered.objects)
    for _, obj in out.objects:
        if obj.get("kind") == kind:
            change(obj)
            break
    return out


def _without(rendered: Rendered, drop: Callable[[Obj], bool]) -> Rendered:
    """A copy of the render without the objects `drop` picks."""
    out = copy.copy(rendered)
    out.objects = [(s, copy.deepcopy(o)) for s, o in rendered.objects if not drop(o)]
    return out


def _with_all(rendered: Rendered, kind: str, change: Callable[[Obj], None]) -> Rendered:
    """A copy of the render with every object of `kind` changed."""
    out = copy.copy(rendered)
    out.objects = copy.deepcopy(rendered.objects)
    for _, obj in out.objects:
        if obj.get("kind") == kind:
            change(obj)
    return out


STEPS: dict[str, Callable[[], Errors]] = {
    "values": step_values,
    "lint": step_lint,
    "render": step_render,
    "kubernetes": step_kubernetes,
    "pbxcluster": step_pbxcluster,
    "policy": step_policy,
    "self-test": self_test,
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("step", choices=sorted(STEPS))
    args = parser.parse_args()
    try:
        errors = STEPS[args.step]()
    except helm.HelmError as error:
        errors = [f"helm: {error}"]
    for error in errors:
        print(f"  FAIL {error}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
