#!/usr/bin/env python3
"""Offline validation of clipguard's Kubernetes manifests.

Renders each kustomization given on the command line with `kubectl kustomize` and checks every
rendered document:
  - Kubernetes kinds against the Kubernetes OpenAPI schemas (PyPI `kubernetes-validate`,
    strict: unknown fields are errors, as `kubectl apply --validate=strict` makes them);
  - custom resources (KEDA ScaledObject / TriggerAuthentication, Strimzi KafkaTopic /
    KafkaUser) against the openAPIV3Schema of their CRDs (unknown fields are errors unless the
    schema preserves them), including the CRDs' CEL rules (each one known here by its text; a
    rule this script does not know is an error, so a newer CRD cannot be skipped silently);
  - the references between documents that no schema sees: every ConfigMap, Secret and volume
    claim a pod uses exists (or is made by a KafkaUser), Services, PodDisruptionBudgets and
    spread constraints select a Deployment's pods, each ScaledObject scales an existing
    Deployment on that Deployment's own consumer group and input topic and never past the
    topic's partitions, every topic has the same partition count as `kafka.partitions` in the
    config, the termination grace covers preStop + the SIGTERM drain + the final commit, and
    requests never exceed limits;
  - with --stages, that every stage has exactly one Deployment and ScaledObject, on the input
    topic given; with --clipguard, that each rendered config.toml passes `clipguard validate`.

Exit status 0 when everything passes; 1 with one line per problem otherwise.

    deploy/k8s/check.py --crds ../shared/conformance/k8s-crds deploy/k8s/overlays/dev deploy/k8s/overlays/prod
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

# The CEL rules of the CRDs, by their text (x-kubernetes-validations).
CEL_RULES = {
    "!has(self.minReplicaCount) || self.minReplicaCount <= (has(self.maxReplicaCount) ? "
    "self.maxReplicaCount : 100)": lambda s: "minReplicaCount" not in s
    or s["minReplicaCount"] <= s.get("maxReplicaCount", 100),
    "self.type == 'tls' || (!has(self.validityDays) && !has(self.renewalDays))": lambda s: s.get(
        "type"
    )
    == "tls"
    or ("validityDays" not in s and "renewalDays" not in s),
    "self.type != 'tls' || (has(self.renewalDays) == has(self.validityDays))": lambda s: s.get(
        "type"
    )
    != "tls"
    or (("renewalDays" in s) == ("validityDays" in s)),
    "self.type != 'tls' || !has(self.renewalDays) || !has(self.validityDays) || "
    "self.renewalDays < self.validityDays": lambda s: s.get("type") != "tls"
    or "renewalDays" not in s
    or "validityDays" not in s
    or s["renewalDays"] < s["validityDays"],
}

# Time a stage may take after its drain to commit and leave the group (pipeline/src/kafka.rs).
FINAL_COMMIT_S = 10


def load_crds(folder: Path) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> openAPIV3Schema of every served version of every CRD in folder."""
    schemas = {}
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group = doc["spec"]["group"]
            kind = doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                if version.get("served", True):
                    schema = version["schema"]["openAPIV3Schema"]
                    schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def strict_schema(schema: dict) -> dict:
    """The schema with unknown fields refused wherever the API server would refuse them."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def cel_problems(schema: dict, value, where: str) -> list[str]:
    problems = []
    for rule in schema.get("x-kubernetes-validations", []):
        check = CEL_RULES.get(" ".join(rule["rule"].split()))
        if check is None:
            problems.append(f"{where}: CRD rule not known to this check: {rule['rule']}")
        elif isinstance(value, dict) and not check(value):
            problems.append(f"{where}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                problems += cel_problems(sub, value[key], f"{where}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems += cel_problems(schema["items"], item, f"{where}[{i}]")
    return problems


def ident(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def validate_schema(doc: dict, crds: dict, version: str) -> list[str]:
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in crds:
        schema = crds[key]
        validator = jsonschema.Draft7Validator(strict_schema(schema))
        problems = [
            f"{ident(doc)}: {'.'.join(str(p) for p in err.absolute_path) or '(root)'}: {err.message}"
            for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        ]
        return problems + cel_problems(schema, doc, ident(doc))
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as err:
        path = ".".join(str(p) for p in err.path) or "(root)"
        return [f"{ident(doc)}: {path}: {err.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{ident(doc)}: no schema for {key[0]} {key[1]} (Kubernetes {version} or the CRDs)"]
    return []


def quantity(q) -> float:
    """A Kubernetes quantity as a number (cores or bytes)."""
    s = str(q)
    suffixes = {
        "m": 1e-3,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
    }
    for suffix in sorted(suffixes, key=len, reverse=True):
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * suffixes[suffix]
    return float(s)


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def stage_of(deployment: dict) -> str | None:
    """The stage a Deployment runs: the argument after `stage` in its first container."""
    containers = deployment["spec"]["template"]["spec"].get("containers", [])
    args = containers[0].get("args", []) if containers else []
    for i, a in enumerate(args[:-1]):
        if a == "stage":
            return args[i + 1]
    return None


def config_of(docs: list[dict], deployment: dict) -> tuple[str | None, dict]:
    """The config.toml a Deployment mounts (its text and parsed form), if any."""
    spec = deployment["spec"]["template"]["spec"]
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    for volume in spec.get("volumes", []):
        name = volume.get("configMap", {}).get("name")
        if name in configmaps and "config.toml" in configmaps[name].get("data", {}):
            text = configmaps[name]["data"]["config.toml"]
            try:
                return text, tomllib.loads(text)
            except tomllib.TOMLDecodeError as err:
                return text, {"__error__": str(err)}
    return None, {}


def cross_problems(docs: list[dict], stages: dict[str, str] | None) -> list[str]:
    problems = []
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    names = lambda kind: {d["metadata"]["name"] for d in by_kind.get(kind, [])}  # noqa: E731
    deployments = by_kind.get("Deployment", [])
    # Secrets made by Strimzi: one per KafkaUser (its credentials), and each cluster's CA
    # certificate `<cluster>-cluster-ca-cert`.
    clusters = {d["metadata"].get("labels", {}).get("strimzi.io/cluster") for k in ("KafkaTopic", "KafkaUser") for d in by_kind.get(k, [])}
    secrets = names("Secret") | names("KafkaUser") | {f"{c}-cluster-ca-cert" for c in clusters if c}
    topics = {d["spec"].get("topicName", d["metadata"]["name"]): d for d in by_kind.get("KafkaTopic", [])}

    partitions = {t["spec"].get("partitions") for t in topics.values()}
    if len(partitions) > 1:
        problems.append(f"KafkaTopics differ in partitions {sorted(partitions)}: a clip's messages must share a partition number")

    for dep in deployments:
        where = ident(dep)
        pod = dep["spec"]["template"]
        pod_labels = pod["metadata"].get("labels", {})
        spec = pod["spec"]
        if not selects(dep["spec"]["selector"].get("matchLabels"), pod_labels):
            problems.append(f"{where}: selector does not match its pod labels")
        for volume in spec.get("volumes", []):
            if "configMap" in volume and volume["configMap"]["name"] not in names("ConfigMap"):
                problems.append(f"{where}: volume {volume['name']}: no ConfigMap {volume['configMap']['name']}")
            # An optional Secret (one an operator creates, e.g. a signing key) may be absent.
            if (
                "secret" in volume
                and not volume["secret"].get("optional", False)
                and volume["secret"]["secretName"] not in secrets
            ):
                problems.append(f"{where}: volume {volume['name']}: no Secret {volume['secret']['secretName']}")
            claim = volume.get("persistentVolumeClaim", {}).get("claimName")
            if claim and claim not in names("PersistentVolumeClaim"):
                problems.append(f"{where}: volume {volume['name']}: no PersistentVolumeClaim {claim}")
        mounted = {v["name"] for v in spec.get("volumes", [])}
        text, config = config_of(docs, dep)
        if "__error__" in config:
            problems.append(f"{where}: config.toml does not parse: {config['__error__']}")
            config = {}
        for c in spec.get("containers", []):
            for m in c.get("volumeMounts", []):
                if m["name"] not in mounted:
                    problems.append(f"{where}: container {c['name']} mounts undeclared volume {m['name']}")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional", False) and ref["name"] not in secrets:
                    problems.append(f"{where}: env {e['name']}: no Secret {ref['name']}")
            res = c.get("resources", {})
            for r, lim in res.get("limits", {}).items():
                req = res.get("requests", {}).get(r)
                if req is not None and quantity(req) > quantity(lim):
                    problems.append(f"{where}: {r} request {req} above its limit {lim}")
            pre = c.get("lifecycle", {}).get("preStop", {})
            pre_s = 0
            if "sleep" in pre:
                pre_s = pre["sleep"]["seconds"]
            elif pre.get("exec", {}).get("command", [None])[0] == "sleep":
                pre_s = int(pre["exec"]["command"][1])
            drain = config.get("host", {}).get("drain_timeout_s", 30)
            need = pre_s + drain + FINAL_COMMIT_S
            grace = spec.get("terminationGracePeriodSeconds", 30)
            if grace < need:
                problems.append(
                    f"{where}: terminationGracePeriodSeconds {grace} < preStop {pre_s} + drain {drain} + final commit {FINAL_COMMIT_S}"
                )
        kafka_partitions = config.get("kafka", {}).get("partitions", 6)
        for p in partitions:
            if text is not None and p != kafka_partitions:
                problems.append(f"{where}: config kafka.partitions = {kafka_partitions} but the topics have {p}")
        for t in spec.get("topologySpreadConstraints", []):
            if not selects(t.get("labelSelector", {}).get("matchLabels"), pod_labels):
                problems.append(f"{where}: topology spread on {t['topologyKey']} does not select its own pods")

    pods = [d["spec"]["template"]["metadata"].get("labels", {}) for d in deployments]
    for kind in ("Service", "PodDisruptionBudget"):
        for d in by_kind.get(kind, []):
            sel = d["spec"].get("selector", {})
            sel = sel.get("matchLabels", sel) if kind == "PodDisruptionBudget" else sel
            if not any(selects(sel, labels) for labels in pods):
                problems.append(f"{ident(d)}: selects no Deployment's pods")

    for np in by_kind.get("NetworkPolicy", []):
        ports = {p.get("name") for d in deployments for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for rule in np["spec"].get("ingress", []):
            for p in rule.get("ports", []):
                if isinstance(p.get("port"), str) and p["port"] not in ports:
                    problems.append(f"{ident(np)}: names port {p['port']}, which no container has")

    by_name = {d["metadata"]["name"]: d for d in deployments}
    scaled: dict[str, list[dict]] = {}
    auths = names("TriggerAuthentication")
    for so in by_kind.get("ScaledObject", []):
        where = ident(so)
        target = so["spec"]["scaleTargetRef"]["name"]
        dep = by_name.get(target)
        if dep is None:
            problems.append(f"{where}: scales Deployment {target}, which does not exist")
            continue
        stage = stage_of(dep)
        scaled.setdefault(stage or "", []).append(so)
        for trig in so["spec"]["triggers"]:
            ref = trig.get("authenticationRef", {}).get("name")
            if ref and ref not in auths:
                problems.append(f"{where}: no TriggerAuthentication {ref}")
            if trig["type"] != "kafka":
                continue
            meta = trig["metadata"]
            if meta.get("consumerGroup") != f"clipguard-{stage}":
                problems.append(
                    f"{where}: consumerGroup {meta.get('consumerGroup')} is not the group of stage {stage} (clipguard-{stage})"
                )
            topic = topics.get(meta.get("topic"))
            if topic is None:
                problems.append(f"{where}: topic {meta.get('topic')} is not a KafkaTopic here")
                continue
            if stages and stage in stages and meta.get("topic") != stages[stage]:
                problems.append(f"{where}: stage {stage} consumes {stages[stage]}, not {meta.get('topic')}")
            most = so["spec"].get("maxReplicaCount", 100)
            if most > topic["spec"]["partitions"]:
                problems.append(
                    f"{where}: maxReplicaCount {most} exceeds the {topic['spec']['partitions']} partitions of {meta['topic']}"
                )

    for stage in stages or {}:
        deps = [d for d in deployments if stage_of(d) == stage]
        if len(deps) != 1:
            problems.append(f"stage {stage}: {len(deps)} Deployments (want 1)")
        if len(scaled.get(stage, [])) != 1:
            problems.append(f"stage {stage}: {len(scaled.get(stage, []))} ScaledObjects (want 1)")
    return problems


def check(kustomization: Path, kubectl: str, crds: dict, version: str, stages, clipguard) -> list[str]:
    rendered = subprocess.run([kubectl, "kustomize", str(kustomization)], capture_output=True, text=True)
    if rendered.returncode != 0:
        return [f"kubectl kustomize failed: {rendered.stderr.strip()}"]
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    problems = []
    for doc in docs:
        problems += validate_schema(doc, crds, version)
    if problems:  # cross-references assume well-formed documents
        return problems
    problems += cross_problems(docs, stages)
    if clipguard:
        for cm in (d for d in docs if d["kind"] == "ConfigMap"):
            text = cm.get("data", {}).get("config.toml")
            if text is None:
                continue
            with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
                f.write(text)
            try:
                out = subprocess.run([clipguard, "validate", "--config", f.name], capture_output=True, text=True)
            finally:
                os.unlink(f.name)
            if out.returncode != 0:
                problems.append(f"{ident(cm)}: config.toml: {(out.stderr or out.stdout).strip()}")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kustomizations", nargs="+", type=Path)
    ap.add_argument("--crds", type=Path, required=True, help="folder of CRD YAML files")
    ap.add_argument("--kubectl", default="kubectl")
    ap.add_argument("--kubernetes-version", default="1.33.0")
    ap.add_argument("--stages", help="stage=input_topic,... that must each have one Deployment and ScaledObject")
    ap.add_argument("--clipguard", help="clipguard binary: each rendered config.toml must pass `validate`")
    args = ap.parse_args()
    crds = load_crds(args.crds)
    stages = dict(s.split("=", 1) for s in args.stages.split(",")) if args.stages else None
    failed = False
    for k in args.kustomizations:
        problems = check(k, args.kubectl, crds, args.kubernetes_version, stages, args.clipguard)
        for p in problems:
            print(f"{k}: {p}")
        if problems:
            failed = True
        else:
            print(f"{k}: ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
