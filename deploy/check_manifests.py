#!/usr/bin/python3
"""Checks rendered StreamBus Kubernetes manifests (kustomize output) offline.

usage: check_manifests.py --replicas N [--name OVERLAY] RENDERED.yaml

Prints one line per violation and exits 1 if there is any, 0 otherwise.
"""
import argparse
import re
import sys

import yaml

PORT = 7070
SHUTDOWN_GRACE_MS_DEFAULT = 10000
UID = 10001
IANA_SVC_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


class Checker:
    def __init__(self, name):
        self.name = name
        self.errors = []
        self.passed = 0

    def check(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.errors.append(what)
        return cond


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def one(c, docs, kind, name=None):
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    c.check(len(found) == 1, f"exactly one {kind}{' ' + name if name else ''} (found {len(found)})")
    return found[0] if found else None


def check_probe(c, ctr, probe, service):
    p = ctr.get(probe)
    if not c.check(isinstance(p, dict), f"{probe} present"):
        return None
    g = p.get("grpc")
    c.check(isinstance(g, dict), f"{probe} is a native grpc probe")
    c.check(not any(k in p for k in ("exec", "httpGet", "tcpSocket")), f"{probe} has no exec/httpGet/tcpSocket handler")
    if isinstance(g, dict):
        c.check(g.get("port") == PORT, f"{probe}.grpc.port == {PORT} (got {g.get('port')})")
        c.check(g.get("service") == service, f"{probe}.grpc.service == {service!r} (got {g.get('service')!r})")
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--replicas", type=int, required=True)
    ap.add_argument("--name", default="overlay")
    ap.add_argument("rendered")
    a = ap.parse_args()
    with open(a.rendered) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    c = Checker(a.name)

    cms = {d["metadata"]["name"]: d for d in by_kind(docs, "ConfigMap")}
    sts = one(c, docs, "StatefulSet", "streambus")
    hl = one(c, docs, "Service", "streambus-headless")
    cli = one(c, docs, "Service", "streambus")
    pdb = one(c, docs, "PodDisruptionBudget")

    # Services
    if hl:
        c.check(hl["spec"].get("clusterIP") == "None", "streambus-headless is headless (clusterIP: None)")
        c.check(hl["spec"].get("publishNotReadyAddresses") is True, "streambus-headless publishNotReadyAddresses: true")
    if cli:
        c.check(cli["spec"].get("clusterIP") != "None", "client Service streambus is not headless")
        c.check(any(p.get("port") == PORT for p in cli["spec"].get("ports", [])), f"client Service exposes {PORT}")
    # PDB
    if pdb:
        c.check(pdb.get("apiVersion") == "policy/v1", "PDB apiVersion policy/v1")
        c.check(pdb["spec"].get("maxUnavailable") == 1, "PDB maxUnavailable: 1")
    if not sts:
        return report(c)

    spec = sts["spec"]
    tpl = spec["template"]
    pod = tpl["spec"]
    labels = tpl["metadata"].get("labels", {})
    sel = spec["selector"].get("matchLabels", {})
    c.check(spec.get("replicas") == a.replicas, f"replicas == {a.replicas} (got {spec.get('replicas')})")
    c.check(spec.get("serviceName") == "streambus-headless", "serviceName: streambus-headless")
    c.check(spec.get("podManagementPolicy") == "Parallel", "podManagementPolicy: Parallel")
    c.check(bool(sel) and all(labels.get(k) == v for k, v in sel.items()), "selector matches pod labels")
    for svc in (hl, cli):
        if svc:
            s = svc["spec"].get("selector", {})
            c.check(bool(s) and all(labels.get(k) == v for k, v in s.items()), f"Service {svc['metadata']['name']} selects the pods")
    if pdb:
        s = pdb["spec"]["selector"].get("matchLabels", {})
        c.check(bool(s) and all(labels.get(k) == v for k, v in s.items()), "PDB selects the pods")

    vcts = spec.get("volumeClaimTemplates") or []
    c.check(any(v["metadata"]["name"] == "data" for v in vcts), "volumeClaimTemplates has 'data'")
    for v in vcts:
        c.check(bool(v["spec"].get("resources", {}).get("requests", {}).get("storage")), f"PVC {v['metadata']['name']} requests storage")

    keys = {t.get("topologyKey") for t in pod.get("topologySpreadConstraints") or []}
    for k in ("kubernetes.io/hostname", "topology.kubernetes.io/zone"):
        c.check(k in keys, f"topologySpreadConstraints over {k}")

    psc = pod.get("securityContext") or {}
    c.check(psc.get("runAsNonRoot") is True, "pod runAsNonRoot: true")
    c.check(psc.get("runAsUser") == UID, f"pod runAsUser: {UID}")
    c.check(psc.get("fsGroup") == UID, f"pod fsGroup: {UID}")
    c.check((psc.get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost"), "pod seccompProfile RuntimeDefault (or Localhost)")
    c.check(not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), "no hostNetwork/hostPID/hostIPC")

    ctrs = pod.get("containers") or []
    c.check(len(ctrs) >= 1, "at least one container")
    env = {}
    for ctr in ctrs + (pod.get("initContainers") or []):
        n = ctr["name"]
        sc = ctr.get("securityContext") or {}
        c.check(sc.get("privileged") is not True, f"{n}: not privileged")
        c.check(sc.get("allowPrivilegeEscalation") is False, f"{n}: allowPrivilegeEscalation: false")
        c.check(sc.get("readOnlyRootFilesystem") is True, f"{n}: readOnlyRootFilesystem: true")
        c.check("ALL" in ((sc.get("capabilities") or {}).get("drop") or []), f"{n}: capabilities drop ALL")
        c.check(not (sc.get("capabilities") or {}).get("add"), f"{n}: no capabilities added")
        c.check(sc.get("runAsUser", psc.get("runAsUser")) == UID, f"{n}: runs as {UID}")
        img = ctr.get("image", "")
        tagged = "@sha256:" in img or re.search(r":[A-Za-z0-9_][A-Za-z0-9_.-]*$", img.rsplit("/", 1)[-1])
        c.check(bool(tagged), f"{n}: image pinned to a tag or digest (got {img!r})")
        c.check(not img.endswith(":latest"), f"{n}: image tag is not :latest")
        res = ctr.get("resources") or {}
        for k in ("requests", "limits"):
            for r in ("cpu", "memory"):
                c.check(bool((res.get(k) or {}).get(r)), f"{n}: resources.{k}.{r} set")
        for ef in ctr.get("envFrom") or []:
            ref = (ef.get("configMapRef") or {}).get("name")
            if c.check(ref in cms, f"{n}: envFrom ConfigMap {ref} exists in the render"):
                env.update(cms[ref].get("data") or {})
        for e in ctr.get("env") or []:
            if "value" in e:
                env[e["name"]] = e["value"]
            else:
                env[e["name"]] = e.get("valueFrom")

    main_ctr = next((x for x in ctrs if x["name"] == "streambusd"), None)
    if c.check(main_ctr is not None, "container 'streambusd' exists") and main_ctr:
        ctr = main_ctr
        c.check(any(p.get("containerPort") == PORT for p in ctr.get("ports") or []), f"containerPort {PORT}")
        # Cross-object references the API schemas cannot see: a Service targetPort
        # (a container port name or number) that matches nothing sends traffic nowhere.
        cports = [p for x in ctrs for p in x.get("ports") or []]
        for p in cports:
            pn = p.get("name")
            if pn is not None:
                c.check(bool(IANA_SVC_NAME.match(pn)) and "--" not in pn and len(pn) <= 15,
                        f"container port name {pn!r} is an IANA_SVC_NAME (<= 15 chars, [a-z0-9-], a letter)")
        for svc in (hl, cli):
            for p in (svc["spec"].get("ports") or []) if svc else []:
                tp = p.get("targetPort", p.get("port"))
                hit = any(cp.get("name") == tp for cp in cports) if isinstance(tp, str) else \
                    any(cp.get("containerPort") == tp for cp in cports)
                c.check(hit, f"Service {svc['metadata']['name']} port {p.get('name')}: targetPort {tp!r} is a container port")
        check_probe(c, ctr, "readinessProbe", "readiness")
        check_probe(c, ctr, "livenessProbe", "liveness")
        sp = check_probe(c, ctr, "startupProbe", "liveness")
        if sp:
            budget = sp.get("failureThreshold", 3) * sp.get("periodSeconds", 10)
            c.check(budget >= 120, f"startupProbe allows >= 120 s for recovery (got {budget} s)")
        cmd = ctr.get("command") or []
        c.check(cmd[:1] == ["/usr/local/bin/streambus-entrypoint"], "command is the streambus-entrypoint wrapper")
        mounts = {m["mountPath"]: m["name"] for m in ctr.get("volumeMounts") or []}
        c.check(mounts.get("/var/lib/streambus") == "data", "data PVC mounted at /var/lib/streambus")
        vols = {v["name"]: v for v in pod.get("volumes") or []}
        c.check("/tmp" in mounts and "emptyDir" in vols.get(mounts["/tmp"], {}), "emptyDir mounted at /tmp")
        ps = (ctr.get("lifecycle") or {}).get("preStop") or {}
        pre_cmd = (ps.get("exec") or {}).get("command") or []
        pre_s = 0
        if c.check(len(pre_cmd) == 2 and pre_cmd[0] == "sleep", "preStop hook is exec [sleep, N]"):
            try:
                pre_s = int(pre_cmd[1])
            except ValueError:
                c.check(False, f"preStop sleep duration is an integer (got {pre_cmd[1]!r})")
        grace_ms = int(env.get("STREAMBUS_SHUTDOWN_GRACE_MS", SHUTDOWN_GRACE_MS_DEFAULT))
        tgp = pod.get("terminationGracePeriodSeconds", 30)
        c.check(tgp * 1000 > grace_ms + pre_s * 1000,
                f"terminationGracePeriodSeconds ({tgp}) > preStop ({pre_s}s) + shutdown grace ({grace_ms} ms)")
        # Settings the entrypoint and seccomp depend on
        c.check(str(env.get("STREAMBUS_REPLICAS")) == str(a.replicas),
                f"STREAMBUS_REPLICAS == replicas ({env.get('STREAMBUS_REPLICAS')!r} vs {a.replicas})")
        if (psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault":
            c.check(env.get("STREAMBUS_IO", "auto") in ("auto", "sync"),
                    "STREAMBUS_IO is auto/sync under RuntimeDefault seccomp (io_uring is blocked)")
        c.check(env.get("STREAMBUS_DATA_DIR") == "/var/lib/streambus", "STREAMBUS_DATA_DIR is the PVC mount")
        for v in ("POD_NAME", "POD_NAMESPACE"):
            fr = env.get(v)
            c.check(isinstance(fr, dict) and "fieldRef" in fr, f"{v} comes from the downward API")
        c.check("STREAMBUS_PEERS" not in env and "STREAMBUS_NODE_ID" not in env,
                "peers/node id are left to the entrypoint (no STREAMBUS_PEERS/NODE_ID env)")
    return report(c)


def report(c):
    for e in c.errors:
        print(f"FAIL [{c.name}] {e}")
    print(f"{c.name}: {c.passed} checks passed, {len(c.errors)} failed")
    return 1 if c.errors else 0


if __name__ == "__main__":
    sys.exit(main())
