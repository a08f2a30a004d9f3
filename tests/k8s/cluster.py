"""A real Kubernetes control plane for the k8s test tier, run as local processes.

This is what controller-runtime's envtest does, taken further: there is no container engine here, so
the real binaries built by `make k8s-tools` are started on free loopback ports: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler, kwok (fake nodes whose Pods become Running and Ready
without a kubelet) and the KServe controller manager with its admission webhooks. What the tests see
is what real controllers did: Deployments get ReplicaSets and Pods, Pods are scheduled onto the fake
nodes, garbage collection and namespace deletion work, and an InferenceService becomes Ready because
KServe's controller says so. No container ever runs: "Ready" means reconciled, not serving.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import ctypes
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSIONS_FILE = REPO_ROOT / "hack" / "k8s-tools" / "versions.env"
TOOLS_DIR = REPO_ROOT / ".tools"
BIN_DIR = TOOLS_DIR / "bin"
STAMP_DIR = TOOLS_DIR / "stamps"
KSERVE_CRD_DIR = TOOLS_DIR / "crds" / "kserve"
# Rendered from the KServe module by build.sh: inferenceservice-config, ClusterServingRuntimes, the
# default ClusterStorageContainer and the webhook configurations.
KSERVE_CONFIG_DIR = TOOLS_DIR / "kserve"
KWOK_STAGES = TOOLS_DIR / "kwok" / "stages.yaml"
HELM = BIN_DIR / "helm"
KUBECTL = BIN_DIR / "kubectl"

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
FIELD_MANAGER = "shipyard-test-harness"
ADMIN_USER = "shipyard-test-admin"
START_TIMEOUT_S = 90.0
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Where KServe's controller runs and reads its `inferenceservice-config` ConfigMap from.
KSERVE_NAMESPACE = "kserve"
#: The deployment mode an InferenceService gets when it names none: KServe's "Standard" (formerly
#: RawDeployment): a Deployment, a Service and an HPA, no Knative or Istio.
DEFAULT_DEPLOYMENT_MODE = "Standard"
#: The fake nodes kwok manages; every one is Ready, schedulable and untainted.
NODE_NAMES = ("kwok-node-0", "kwok-node-1")
#: Labels every fake node carries (plus kubernetes.io/hostname and a zone of its own).
NODE_LABELS = {"type": "kwok", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
NODE_CAPACITY = {"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "200Gi"}
#: The annotation kwok selects its nodes by (kwok's documented convention).
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")

COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kserve-manager",
)


class ClusterStartError(RuntimeError):
    """A component did not come up; the message names it and carries its log tail."""


class ToolError(RuntimeError):
    """A kubectl or helm command failed; the message carries its stderr."""


class WaitTimeout(AssertionError):
    """`Cluster.wait_for` gave up; the message carries the object's last status."""


def pinned_versions() -> dict[str, str]:
    """The tool versions `make k8s-tools` builds, read from the one file that pins them."""
    versions: dict[str, str] = {}
    for raw in VERSIONS_FILE.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


def missing_tools() -> list[str]:
    """What `make k8s-tools` still has to build, so a stale .tools/ cannot pass as the pinned one."""
    versions = pinned_versions()
    kubernetes = versions["KUBERNETES_VERSION"]
    wanted: dict[str, tuple[tuple[Path, ...], str]] = {
        "kube-apiserver": ((BIN_DIR / "kube-apiserver",), kubernetes),
        "kubectl": ((KUBECTL,), kubernetes),
        "kube-controller-manager": ((BIN_DIR / "kube-controller-manager",), kubernetes),
        "kube-scheduler": ((BIN_DIR / "kube-scheduler",), kubernetes),
        "etcd": ((BIN_DIR / "etcd",), versions["ETCD_VERSION"]),
        "helm": ((HELM,), versions["HELM_VERSION"]),
        "kserve-crds": ((KSERVE_CRD_DIR,), versions["KSERVE_VERSION"]),
        "kserve-manager": (
            (BIN_DIR / "kserve-manager", KSERVE_CONFIG_DIR / "webhooks.yaml"),
            versions["KSERVE_VERSION"],
        ),
        "kwok": ((BIN_DIR / "kwok", KWOK_STAGES), versions["KWOK_VERSION"]),
    }
    missing = []
    for name, (paths, version) in wanted.items():
        stamp = STAMP_DIR / name
        built = stamp.read_text().split()[0] if stamp.is_file() else None
        if not all(path.exists() for path in paths) or built != version:
            missing.append(f"{name} {version}" + (f" (found {built})" if built else ""))
    return missing


# --- resources by kind -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """One API resource as discovery describes it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name is not None else base


class _ResourceIndex:
    """Kind, plural, singular, short name or `plural.group` → Resource, from the server's discovery.

    Built on first use and rebuilt when a name is unknown (a test may have installed a CRD since).
    """

    def __init__(self, api_client: client.ApiClient) -> None:
        self._api_client = api_client
        self._by_name: dict[str, Resource] = {}

    def __call__(self, kind: str) -> Resource:
        key = kind.lower()
        if key not in self._by_name:
            self._refresh()
        try:
            return self._by_name[key]
        except KeyError:
            raise KeyError(f"the test apiserver serves no resource called {kind!r}") from None

    def _get(self, path: str) -> dict[str, Any]:
        body: dict[str, Any] = self._api_client.call_api(
            path,
            "GET",
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            response_type="object",
            _return_http_data_only=True,
        )
        return body

    def _refresh(self) -> None:
        lists = [("", "v1", self._get("/api/v1"))]
        for group in self._get("/apis")["groups"]:
            # Every version (a kind may exist in only one, like KServe's v1alpha1 runtimes), the
            # preferred one first so that it wins for kinds served in several.
            preferred = group["preferredVersion"]["version"]
            versions = [preferred] + [v["version"] for v in group["versions"] if v["version"] != preferred]
            for version in versions:
                lists.append((group["name"], version, self._get(f"/apis/{group['name']}/{version}")))
        index: dict[str, Resource] = {}
        # Earlier entries are never shadowed: the core group wins "events", "pods", ...
        for group, version, resource_list in lists:
            for item in resource_list["resources"]:
                if "/" in item["name"]:
                    continue  # subresources (pods/log, deployments/scale, ...)
                resource = Resource(group, version, item["name"], item["kind"], item["namespaced"])
                names = [item["kind"], item["name"], item.get("singularName") or ""]
                names += item.get("shortNames") or []
                names += [f"{item['name']}.{group}", f"{item['kind']}.{group}"] if group else []
                for name in names:
                    if name:
                        index.setdefault(name.lower(), resource)
        self._by_name = index


def condition(obj: Mapping[str, Any] | None, type_: str) -> dict[str, Any] | None:
    """The status condition of the given type of an object (as a dict), or None."""
    if not obj:
        return None
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            found: dict[str, Any] = cond
            return found
    return None


def _condition_check(spec: str) -> Callable[[dict[str, Any]], bool]:
    # "Ready" means status True; "Ready=False" / "PodScheduled=False" a given status.
    type_, _, want = spec.partition("=")
    want = want or "True"

    def check(obj: dict[str, Any]) -> bool:
        cond = condition(obj, type_)
        return cond is not None and cond.get("status") == want

    return check


def _status_summary(obj: Mapping[str, Any] | None) -> str:
    if obj is None:
        return "(the object does not exist)"
    status = obj.get("status") or {}
    conditions = status.get("conditions") or []
    lines = [
        f"  {c.get('type')}={c.get('status')} {c.get('reason') or ''} {c.get('message') or ''}".rstrip()
        for c in conditions
    ]
    rest = {k: v for k, v in status.items() if k != "conditions"}
    if rest:
        lines.append("  status: " + json.dumps(rest, sort_keys=True)[:1500])
    return "\n".join(lines) or "  (no status yet)"


# --- the cluster -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """A running test control plane and the ways to talk to it."""

    server: str
    kubeconfig: Path
    ca_file: Path
    api_client: client.ApiClient
    log_file: Path
    etcd_log_file: Path
    workdir: Path
    #: component name (see COMPONENTS) → its log file; all live in `workdir`.
    logs: Mapping[str, Path]
    #: The fake (kwok) nodes Pods are scheduled onto.
    nodes: tuple[str, ...] = NODE_NAMES
    kserve_namespace: str = KSERVE_NAMESPACE
    _resources: _ResourceIndex | None = field(default=None, repr=False, compare=False)

    def client_for_token(self, token: str) -> client.ApiClient:
        """An ApiClient that authenticates with a bearer token, e.g. a ServiceAccount's."""
        config = client.Configuration()
        config.host = self.server
        config.ssl_ca_cert = str(self.ca_file)
        config.api_key = {"authorization": token}
        config.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(config)

    def kubectl(self, *args: str, timeout_s: float = 120) -> str:
        """Run the kubectl built with the apiserver (same release, so no version skew) on this cluster."""
        return self._run(KUBECTL, args, timeout_s)

    def helm(self, *args: str, timeout_s: float = 120) -> str:
        """Run the pinned helm against this cluster and return its stdout."""
        return self._run(HELM, args, timeout_s)

    def _run(self, tool: Path, args: tuple[str, ...], timeout_s: float) -> str:
        # The tools' homes live in the cluster's temp dir, so tests never read or write the
        # developer's ~/.kube cache or ~/.config/helm repositories and plugins.
        home = self.workdir / "home"
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "KUBECACHEDIR": str(home / "kube-cache"),
            "HELM_CACHE_HOME": str(home / "helm-cache"),
            "HELM_CONFIG_HOME": str(home / "helm-config"),
            "HELM_DATA_HOME": str(home / "helm-data"),
        }
        result = subprocess.run(
            [str(tool), *args], env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if result.returncode != 0:
            raise ToolError(f"{tool.name} {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result.stdout

    def log_tail(self, lines: int = 40, component: str = "kube-apiserver") -> str:
        """The last lines of a component's log (see COMPONENTS)."""
        path = self.logs.get(component)
        if path is None:
            return f"(no component {component!r}; known: {', '.join(self.logs)})"
        return _tail(path, lines)

    # --- objects by kind ---

    def resource(self, kind: str) -> Resource:
        """Look a resource up by kind ("Deployment"), plural ("deployments"), short name ("deploy")
        or `plural.group` ("inferenceservices.serving.kserve.io"), as kubectl does."""
        index = self._resources or _ResourceIndex(self.api_client)
        if self._resources is None:
            object.__setattr__(self, "_resources", index)
        return index(kind)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.api_client.call_api(
            path,
            method,
            header_params={"Accept": "application/json", **kwargs.pop("header_params", {})},
            auth_settings=["BearerToken"],
            response_type="object",
            _return_http_data_only=True,
            **kwargs,
        )

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object as a dict, or None when it does not exist."""
        try:
            obj: dict[str, Any] = self._call("GET", self.resource(kind).path(namespace, name))
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise
        return obj

    def list_objects(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """The objects of a kind (in a namespace, or cluster-wide), as dicts."""
        query = [("labelSelector", label_selector)] if label_selector else []
        body = self._call("GET", self.resource(kind).path(namespace), query_params=query)
        items: list[dict[str, Any]] = body["items"]
        return items

    def apply(self, manifests: str | Mapping[str, Any], namespace: str | None = None) -> list[dict[str, Any]]:
        """Server-side apply one manifest (dict) or a YAML stream of them; returns the applied objects.

        Namespaced objects without `metadata.namespace` go to `namespace`.
        """
        docs = (
            [copy.deepcopy(dict(manifests))]
            if isinstance(manifests, Mapping)
            else [d for d in yaml.load_all(manifests, Loader=_YAML_LOADER) if d]
        )
        applied = []
        for doc in docs:
            group, _, version = str(doc["apiVersion"]).rpartition("/")
            found = self.resource(f"{doc['kind']}.{group}" if group else doc["kind"])
            # The manifest's own version, which need not be the one discovery prefers.
            resource = Resource(group, version, found.plural, found.kind, found.namespaced)
            meta = doc.setdefault("metadata", {})
            ns = meta.get("namespace") or namespace
            if resource.namespaced:
                if ns is None:
                    raise ValueError(f"{doc['kind']} {meta.get('name')} needs a namespace")
                meta["namespace"] = ns
            applied.append(server_side_apply(self.api_client, resource.path(ns, meta["name"]), doc))
        return applied

    def delete(
        self, kind: str, name: str, namespace: str | None = None, propagation: str = "Background"
    ) -> None:
        """Delete an object (no error if it is already gone)."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        try:
            self._call("DELETE", self.resource(kind).path(namespace, name), body=body)
        except client.ApiException as error:
            if error.status != 404:
                raise

    def wait_for(
        self,
        kind: str,
        name: str,
        namespace: str | None = None,
        condition: str | Callable[[dict[str, Any]], bool] = "Ready",
        timeout_s: float = 60.0,
    ) -> dict[str, Any]:
        """Poll until the object exists and meets the condition; return it.

        `condition` is a status condition type that must be "True" ("Ready", "Available"), a
        `Type=Status` pair ("Ready=False", "PodScheduled=False"), or a predicate on the object dict.
        On timeout raises WaitTimeout (an AssertionError) with the object's last status.
        """
        check = _condition_check(condition) if isinstance(condition, str) else condition
        deadline = time.monotonic() + timeout_s
        while True:
            obj = self.get(kind, name, namespace)
            if obj is not None and check(obj):
                return obj
            if time.monotonic() > deadline:
                where = f" in {namespace}" if namespace else ""
                raise WaitTimeout(
                    f"{kind} {name}{where} did not meet {condition!r} within {timeout_s:.0f}s;"
                    f" last status:\n{_status_summary(obj)}"
                )
            time.sleep(0.2)

    def wait_for_deletion(
        self, kind: str, name: str, namespace: str | None = None, timeout_s: float = 60.0
    ) -> None:
        """Poll until the object is gone (e.g. garbage-collected); WaitTimeout if it stays."""
        deadline = time.monotonic() + timeout_s
        while (obj := self.get(kind, name, namespace)) is not None:
            if time.monotonic() > deadline:
                raise WaitTimeout(
                    f"{kind} {name} still exists after {timeout_s:.0f}s"
                    f" (deletionTimestamp={obj['metadata'].get('deletionTimestamp')},"
                    f" finalizers={obj['metadata'].get('finalizers')})"
                )
            time.sleep(0.2)


def _tail(path: Path, lines: int) -> str:
    if not path.is_file():
        return f"(no log at {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _free_ports(count: int) -> list[int]:
    # All sockets stay bound until every port is picked, so the ports are distinct.
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: if pytest is killed outright, the kernel kills the servers too, so no
    # orphaned apiserver keeps running. SIGKILL, because the apiserver's graceful SIGTERM shutdown
    # can hang once etcd is gone, and the data is disposable anyway.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)


# --- certificates ----------------------------------------------------------------------------------


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server_ips: tuple[str, ...] = (),
    client_auth: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH if client_auth else ExtendedKeyUsageOID.SERVER_AUTH]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if server_ips:
        names: list[x509.GeneralName] = [x509.DNSName("localhost")]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class _Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    admin_cert: Path
    admin_key: Path
    sa_private_key: Path
    sa_public_key: Path
    controller_manager_cert: Path
    controller_manager_key: Path
    scheduler_cert: Path
    scheduler_key: Path
    webhook_cert: Path
    webhook_key: Path


def _write_pki(directory: Path) -> _Pki:
    """Throwaway CA, serving and client certs, and the ServiceAccount token signing key pair.

    EC P-256 keys: generating them takes milliseconds, which keeps the fixture start fast. The
    controller-manager and scheduler authenticate as the users Kubernetes' bootstrap RBAC policy
    grants their permissions to (so they run with their real, limited rights); the KServe webhook
    server gets a serving cert for 127.0.0.1 from the same CA, which is the webhooks' caBundle.
    """
    directory.mkdir(parents=True)

    def name(common_name: str, org: str | None = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("shipyard-test-ca")
    ca = _issue(ca_name, ca_key, None, ca=True)
    issuer = (ca_name, ca_key)

    def write(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
        cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_pem_key(key))
        return cert_path, key_path

    def leaf(stem: str, subject: x509.Name, **kwargs: Any) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        return write(stem, _issue(subject, key, issuer, **kwargs), key)

    ca_cert = directory / "ca.crt"
    ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server = leaf("apiserver", name("kube-apiserver"), server_ips=("127.0.0.1",))
    # system:masters is the cluster-admin group RBAC's bootstrap policy grants everything to.
    admin = leaf("admin", name(ADMIN_USER, "system:masters"), client_auth=True)
    controller_manager = leaf("controller-manager", name("system:kube-controller-manager"), client_auth=True)
    scheduler = leaf("scheduler", name("system:kube-scheduler"), client_auth=True)
    webhook = leaf("kserve-webhook", name("kserve-webhook-server"), server_ips=("127.0.0.1",))
    sa_key = ec.generate_private_key(ec.SECP256R1())
    sa_private_key, sa_public_key = directory / "sa.key", directory / "sa.pub"
    sa_private_key.write_bytes(_pem_key(sa_key))
    sa_public_key.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return _Pki(
        ca_cert=ca_cert,
        server_cert=server[0],
        server_key=server[1],
        admin_cert=admin[0],
        admin_key=admin[1],
        sa_private_key=sa_private_key,
        sa_public_key=sa_public_key,
        controller_manager_cert=controller_manager[0],
        controller_manager_key=controller_manager[1],
        scheduler_cert=scheduler[0],
        scheduler_key=scheduler[1],
        webhook_cert=webhook[0],
        webhook_key=webhook[1],
    )


def _write_kubeconfig(path: Path, server: str, ca_cert: Path, cert: Path, key: Path, user: str) -> None:
    """Certificates are inlined so the file works for kubectl and helm from any directory."""

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "shipyard-test",
                "cluster": {"server": server, "certificate-authority-data": b64(ca_cert)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)},
            }
        ],
        "contexts": [{"name": "shipyard-test", "context": {"cluster": "shipyard-test", "user": user}}],
        "current-context": "shipyard-test",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


# --- processes -------------------------------------------------------------------------------------


class _Server:
    """One child process whose output goes to a log file."""

    def __init__(
        self, name: str, argv: list[str], log_file: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.log_file = log_file
        with log_file.open("wb") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
                preexec_fn=_die_with_parent,
            )

    def check_running(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise ClusterStartError(
                f"{self.name} exited with code {code}; last log lines:\n{_tail(self.log_file, 40)}"
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _wait_until(
    what: str,
    ready: Callable[[], bool],
    servers: list[_Server],
    timeout_s: float,
    blame: _Server | None = None,
) -> None:
    """Poll `ready` while every server keeps running; on timeout name `blame` (the component whose
    job `what` is) and show its log tail first."""
    deadline = time.monotonic() + timeout_s
    while True:
        for server in servers:
            server.check_running()
        if ready():
            return
        if time.monotonic() > deadline:
            suspects = [blame] if blame else []
            suspects += [s for s in reversed(servers) if s is not blame]
            tails = "\n".join(f"--- {s.name} log ---\n{_tail(s.log_file, 30)}" for s in suspects[:3])
            who = f"{blame.name}: " if blame else ""
            raise ClusterStartError(f"{who}timed out after {timeout_s:.0f}s waiting for {what}\n{tails}")
        time.sleep(0.1)


def _https_ok(url: str, context: ssl.SSLContext | None) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            with urllib.request.urlopen(url, context=context, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    return ready


def _readyz(url: str, pki: _Pki) -> Callable[[], bool]:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    return _https_ok(f"{url}/readyz", context)


# --- CRDs ------------------------------------------------------------------------------------------


def server_side_apply(api_client: client.ApiClient, path: str, manifest: Mapping[str, Any]) -> Any:
    """Server-side apply, which the generated client of kubernetes 30.1 cannot request.

    Server-side because the InferenceService CRD (~2 MB) is far over the 256 KiB limit of the
    last-applied annotation a client-side apply would write.
    """
    return api_client.call_api(
        path,
        "PATCH",
        query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
        header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
        body=manifest,
        auth_settings=["BearerToken"],
        response_type="object",
        _return_http_data_only=True,
    )


def install_crds(api_client: client.ApiClient, crd_dir: Path, timeout_s: float = 60.0) -> list[str]:
    """Apply every CRD in crd_dir and wait until each is Established (servable)."""
    names = []
    for manifest_file in sorted(crd_dir.glob("*.yaml")):
        # libyaml's loader: the pure-Python one needs seconds for the 2 MB InferenceService CRD.
        for manifest in yaml.load_all(manifest_file.read_text(), Loader=_YAML_LOADER):
            if not manifest or manifest.get("kind") != "CustomResourceDefinition":
                continue
            name = manifest["metadata"]["name"]
            server_side_apply(
                api_client, f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}", manifest
            )
            names.append(name)
    extensions = client.ApiextensionsV1Api(api_client)
    deadline = time.monotonic() + timeout_s
    pending = set(names)
    while pending:
        for name in sorted(pending):
            crd = extensions.read_custom_resource_definition(name)
            conditions = (crd.status.conditions if crd.status else None) or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                pending.discard(name)
        if pending and time.monotonic() > deadline:
            raise ClusterStartError(f"CRDs not Established after {timeout_s:.0f}s: {sorted(pending)}")
        if pending:
            time.sleep(0.1)
    return names


def _load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.load_all(path.read_text(), Loader=_YAML_LOADER) if doc]


# --- the components --------------------------------------------------------------------------------


def _clean_env(workdir: Path, name: str, **extra: str) -> dict[str, str]:
    """A minimal environment: nothing of the developer's KUBECONFIG, HOME dotfiles or proxies leaks
    into a component, and each gets a HOME and TMPDIR of its own in the cluster's temp dir."""
    home, tmp = workdir / "homes" / name, workdir / "tmp" / name
    home.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TMPDIR": str(tmp), **extra}


def _start_kube_controllers(
    workdir: Path, server_url: str, pki: _Pki, admin_kubeconfig: Path
) -> list[_Server]:
    """kube-controller-manager, kube-scheduler and kwok; they need nothing but the apiserver."""
    cm_kubeconfig = workdir / "controller-manager.kubeconfig"
    _write_kubeconfig(
        cm_kubeconfig,
        server_url,
        pki.ca_cert,
        pki.controller_manager_cert,
        pki.controller_manager_key,
        "system:kube-controller-manager",
    )
    scheduler_kubeconfig = workdir / "scheduler.kubeconfig"
    _write_kubeconfig(
        scheduler_kubeconfig,
        server_url,
        pki.ca_cert,
        pki.scheduler_cert,
        pki.scheduler_key,
        "system:kube-scheduler",
    )
    controller_manager = _Server(
        "kube-controller-manager",
        [
            str(BIN_DIR / "kube-controller-manager"),
            f"--kubeconfig={cm_kubeconfig}",
            # No serving endpoint: nothing scrapes it, and it would want certs and a fixed port.
            "--secure-port=0",
            "--leader-elect=false",
            # Each controller acts as its own ServiceAccount in kube-system (tokens by TokenRequest)
            # with the rights bootstrap RBAC gives it, as in kubeadm clusters.
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.sa_private_key}",
            f"--root-ca-file={pki.ca_cert}",
            # Its default (/usr/libexec/kubernetes/...) is outside the temp dir and may not be writable.
            f"--flex-volume-plugin-dir={workdir / 'flexvolume'}",
            "--profiling=false",
            # kwok renews node leases; a node whose lease stops is NotReady after 40 s (the default).
            "--node-monitor-grace-period=40s",
        ],
        workdir / "kube-controller-manager.log",
        _clean_env(workdir, "kube-controller-manager"),
    )
    scheduler = _Server(
        "kube-scheduler",
        [
            str(BIN_DIR / "kube-scheduler"),
            f"--kubeconfig={scheduler_kubeconfig}",
            "--secure-port=0",
            "--leader-elect=false",
            "--profiling=false",
        ],
        workdir / "kube-scheduler.log",
        _clean_env(workdir, "kube-scheduler"),
    )
    kwok_config = workdir / "kwok.yaml"
    _write_kwok_config(kwok_config)
    kwok = _Server(
        "kwok",
        [
            str(BIN_DIR / "kwok"),
            f"--kubeconfig={admin_kubeconfig}",
            f"--config={kwok_config}",
        ],
        workdir / "kwok.log",
        # kwok also reads ~/.kwok/kwok.yaml when it exists: HOME is the temp dir's.
        _clean_env(workdir, "kwok"),
    )
    return [controller_manager, scheduler, kwok]


# A bare Pod that runs once (restartPolicy Never/OnFailure, no owner) succeeds after it ran, the
# way kwok's pod-complete stage finishes Jobs' Pods. Without it a `helm test` hook Pod would stay
# Running forever. It proves the hook ran, not what its command checks: nothing runs in a kwok Pod.
_RUN_ONCE_STAGE: dict[str, Any] = {
    "apiVersion": "kwok.x-k8s.io/v1alpha1",
    "kind": "Stage",
    "metadata": {"name": "shipyard-pod-run-once-complete"},
    "spec": {
        "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
        "selector": {
            "matchExpressions": [
                {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                {"key": ".metadata.ownerReferences", "operator": "DoesNotExist"},
                {"key": ".spec.restartPolicy", "operator": "In", "values": ["Never", "OnFailure"]},
            ]
        },
        "next": {
            "statusTemplate": (
                "{{ $now := Now }}\n"
                "containerStatuses:\n"
                "{{ range .spec.containers }}\n"
                "- image: {{ .image | Quote }}\n"
                "  name: {{ .name | Quote }}\n"
                "  ready: false\n"
                "  restartCount: 0\n"
                "  started: false\n"
                "  state:\n"
                "    terminated:\n"
                "      exitCode: 0\n"
                "      finishedAt: {{ $now | Quote }}\n"
                "      reason: Completed\n"
                "      startedAt: {{ $now | Quote }}\n"
                "{{ end }}\n"
                "phase: Succeeded\n"
            )
        },
    },
}


def _write_kwok_config(path: Path) -> None:
    """kwok's configuration plus its stages, in one multi-document file for --config.

    The standalone binary applies no defaults to options a config file leaves out (it exits on a
    zero parallelism), so every one is set here, to kwokctl's defaults. The stages are the ones
    kwokctl installs by default (node/fast, node/heartbeat-with-lease, pod/fast), copied from the
    kwok module by build.sh, plus the harness' run-once stage above.
    """
    options: dict[str, Any] = {
        "cidr": "10.244.0.0/16",
        "nodeIP": "10.240.0.1",
        "manageNodesWithAnnotationSelector": "=".join(KWOK_NODE_ANNOTATION),
        "enableDebuggingHandlers": False,
        "enableContentionProfiling": False,
        "enableProfilingHandler": False,
        "podPlayStageParallelism": 4,
        "nodePlayStageParallelism": 4,
        "nodeLeaseParallelism": 4,
        "nodeLeaseDurationSeconds": 40,
        "podsOnNodeSyncParallelism": 1,
        "enablePodsOnNodeSyncListPager": True,
        "enablePodsOnNodeSyncStreamWatch": False,
    }
    docs: list[dict[str, Any]] = [
        {"apiVersion": "config.kwok.x-k8s.io/v1alpha1", "kind": "KwokConfiguration", "options": options}
    ]
    docs += _load_yaml_docs(KWOK_STAGES)
    docs.append(_RUN_ONCE_STAGE)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def _create_nodes(api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    for index, name in enumerate(NODE_NAMES):
        labels = {
            **NODE_LABELS,
            "kubernetes.io/hostname": name,
            "topology.kubernetes.io/zone": f"zone-{'abcdefgh'[index % 8]}",
        }
        node = client.V1Node(
            metadata=client.V1ObjectMeta(name=name, labels=labels, annotations=dict([KWOK_NODE_ANNOTATION])),
            # kwok's node-initialize stage keeps a given capacity (else it reports 1k CPUs, 1 Ti)
            # and addresses (else every node gets the one configured nodeIP).
            status=client.V1NodeStatus(
                capacity=NODE_CAPACITY,
                allocatable=NODE_CAPACITY,
                addresses=[
                    client.V1NodeAddress(type="InternalIP", address=f"10.240.0.{index + 1}"),
                    client.V1NodeAddress(type="Hostname", address=name),
                ],
            ),
        )
        core.create_node(node)


def _inferenceservice_config() -> dict[str, Any]:
    """KServe's own inferenceservice-config ConfigMap, Standard (raw Deployment) mode by default.

    Upstream defaults to Serverless, which needs Knative and Istio; Standard needs neither.
    """
    (config_map,) = _load_yaml_docs(KSERVE_CONFIG_DIR / "inferenceservice-config.yaml")
    config_map["metadata"]["namespace"] = KSERVE_NAMESPACE
    config_map["metadata"].pop("creationTimestamp", None)
    deploy = json.loads(config_map["data"]["deploy"])
    deploy["defaultDeploymentMode"] = DEFAULT_DEPLOYMENT_MODE
    config_map["data"]["deploy"] = json.dumps(deploy)
    return dict(config_map)


def _webhook_configurations(webhook_url: str, ca_bundle: bytes) -> list[dict[str, Any]]:
    """KServe's webhook configurations with each service reference turned into a loopback URL."""
    configurations = _load_yaml_docs(KSERVE_CONFIG_DIR / "webhooks.yaml")
    for configuration in configurations:
        configuration["metadata"].pop("creationTimestamp", None)
        for hook in configuration["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {
                "url": f"{webhook_url}{path}",
                "caBundle": base64.b64encode(ca_bundle).decode(),
            }
    return configurations


def _start_kserve(
    workdir: Path, api_client: client.ApiClient, kubeconfig: Path, pki: _Pki, servers: list[_Server]
) -> _Server:
    """The KServe controller manager with its webhooks registered, its ConfigMap, the default
    ClusterStorageContainer and the ClusterServingRuntimes (applied through its webhook)."""
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=KSERVE_NAMESPACE)))
    server_side_apply(
        api_client,
        f"/api/v1/namespaces/{KSERVE_NAMESPACE}/configmaps/inferenceservice-config",
        _inferenceservice_config(),
    )
    metrics_port, probe_port, webhook_port = _free_ports(3)
    env = _clean_env(workdir, "kserve-manager", KUBECONFIG=str(kubeconfig), POD_NAMESPACE=KSERVE_NAMESPACE)
    # controller-runtime's webhook server reads its serving cert from $TMPDIR/k8s-webhook-server/
    # serving-certs (KServe has no flag for it), hence a TMPDIR per run.
    certs = Path(env["TMPDIR"]) / "k8s-webhook-server" / "serving-certs"
    certs.mkdir(parents=True)
    shutil.copyfile(pki.webhook_cert, certs / "tls.crt")
    shutil.copyfile(pki.webhook_key, certs / "tls.key")
    kserve = _Server(
        "kserve-manager",
        [
            str(BIN_DIR / "kserve-manager"),
            f"--metrics-addr=127.0.0.1:{metrics_port}",
            f"--health-probe-addr=127.0.0.1:{probe_port}",
            # KServe has no host flag for its webhook server: it listens on all interfaces.
            f"--webhook-port={webhook_port}",
            "--leader-elect=false",
            # Readable logs: one line per event, no stack traces on every reconcile error.
            "--zap-encoder=console",
            "--zap-stacktrace-level=panic",
        ],
        workdir / "kserve-manager.log",
        env,
    )
    servers.append(kserve)
    # Its readiness check is the webhook server having started.
    _wait_until(
        "KServe's /readyz (its webhook server)",
        _https_ok(f"http://127.0.0.1:{probe_port}/readyz", None),
        servers,
        START_TIMEOUT_S,
        blame=kserve,
    )
    for configuration in _webhook_configurations(
        f"https://127.0.0.1:{webhook_port}", pki.ca_cert.read_bytes()
    ):
        plural = configuration["kind"].lower() + "s"
        server_side_apply(
            api_client,
            f"/apis/admissionregistration.k8s.io/v1/{plural}/{configuration['metadata']['name']}",
            configuration,
        )
    # Through KServe's validating webhook: this proves the apiserver reaches it.
    for path, plural in (
        (KSERVE_CONFIG_DIR / "storagecontainers.yaml", "clusterstoragecontainers"),
        (KSERVE_CONFIG_DIR / "runtimes.yaml", "clusterservingruntimes"),
    ):
        for manifest in _load_yaml_docs(path):
            name = manifest["metadata"]["name"]
            try:
                server_side_apply(api_client, f"/apis/serving.kserve.io/v1alpha1/{plural}/{name}", manifest)
            except client.ApiException as error:
                raise ClusterStartError(
                    f"kserve-manager: applying {plural}/{name} through its webhook failed:"
                    f" {error.status} {error.body}\n--- kserve-manager log ---\n{_tail(kserve.log_file, 30)}"
                ) from error
    return kserve


def _check_workloads_run(api_client: client.ApiClient, servers: list[_Server]) -> None:
    """Prove the kube controllers and kwok work before any test relies on them: the fake nodes are
    Ready, and a canary Pod is admitted (its namespace's ServiceAccount exists: the controller-
    manager), scheduled (the scheduler) and Running and Ready (kwok)."""
    by_name = {s.name: s for s in servers}
    core = client.CoreV1Api(api_client)

    def nodes_ready() -> bool:
        nodes = core.list_node().items
        ready = {
            n.metadata.name
            for n in nodes
            if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
        }
        return ready >= set(NODE_NAMES)

    _wait_until("the kwok nodes to be Ready", nodes_ready, servers, START_TIMEOUT_S, blame=by_name["kwok"])

    def service_account() -> bool:
        try:
            core.read_namespaced_service_account("default", "default")
        except client.ApiException:
            return False
        return True

    _wait_until(
        "the ServiceAccount controller to create default/default",
        service_account,
        servers,
        START_TIMEOUT_S,
        blame=by_name["kube-controller-manager"],
    )
    canary = client.V1Pod(
        metadata=client.V1ObjectMeta(name="harness-canary"),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="main", image="registry.k8s.io/pause:3.10")],
            automount_service_account_token=False,
        ),
    )
    core.create_namespaced_pod("default", canary)

    def pod_condition(type_: str) -> Callable[[], bool]:
        def check() -> bool:
            pod = core.read_namespaced_pod("harness-canary", "default")
            return any(c.type == type_ and c.status == "True" for c in (pod.status.conditions or []))

        return check

    _wait_until(
        "a canary Pod to be scheduled",
        pod_condition("PodScheduled"),
        servers,
        START_TIMEOUT_S,
        blame=by_name["kube-scheduler"],
    )
    _wait_until(
        "kwok to make a canary Pod Ready",
        pod_condition("Ready"),
        servers,
        START_TIMEOUT_S,
        blame=by_name["kwok"],
    )
    # kwok's pod-delete stage lets it go (no kubelet confirms the deletion).
    core.delete_namespaced_pod("harness-canary", "default")


# --- the cluster -----------------------------------------------------------------------------------


@contextlib.contextmanager
def run_cluster(
    crd_dirs: tuple[Path, ...] = (KSERVE_CRD_DIR,), *, controllers: bool = True
) -> Iterator[Cluster]:
    """Start the control plane, install the CRDs, and always stop everything and delete its data.

    With `controllers=False` only etcd and kube-apiserver run (the CRDs are still installed).
    """
    workdir = Path(tempfile.mkdtemp(prefix="shipyard-k8s-"))
    servers: list[_Server] = []
    api_client: client.ApiClient | None = None
    try:
        pki = _write_pki(workdir / "pki")
        etcd_port, etcd_peer_port, api_port = _free_ports(3)
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{etcd_peer_port}"
        servers.append(
            _Server(
                "etcd",
                [
                    str(BIN_DIR / "etcd"),
                    "--name=shipyard-test",
                    f"--data-dir={workdir / 'etcd'}",
                    f"--listen-client-urls={etcd_url}",
                    f"--advertise-client-urls={etcd_url}",
                    f"--listen-peer-urls={peer_url}",
                    f"--initial-advertise-peer-urls={peer_url}",
                    f"--initial-cluster=shipyard-test={peer_url}",
                    # Test data is thrown away: skipping fsync makes writes (and the suite) fast.
                    "--unsafe-no-fsync",
                    "--log-level=warn",
                ],
                workdir / "etcd.log",
                _clean_env(workdir, "etcd"),
            )
        )
        server_url = f"https://127.0.0.1:{api_port}"
        apiserver = _Server(
            "kube-apiserver",
            [
                str(BIN_DIR / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki.server_cert}",
                f"--tls-private-key-file={pki.server_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--authorization-mode=RBAC",
                # On by default since 1.25; named so the tier keeps testing it if defaults move.
                "--enable-admission-plugins=PodSecurity,NamespaceLifecycle,ServiceAccount",
                # Privileged Pods are allowed cluster-wide, so a rejection can only come from
                # the namespace's Pod Security level.
                "--allow-privileged=true",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.sa_public_key}",
                f"--service-account-signing-key-file={pki.sa_private_key}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--profiling=false",
                # Nothing runs behind the `kubernetes` Service, and a loopback endpoint is invalid.
                "--endpoint-reconciler-type=none",
            ],
            workdir / "kube-apiserver.log",
            _clean_env(workdir, "kube-apiserver"),
        )
        servers.append(apiserver)
        _wait_until(
            f"{server_url}/readyz",
            _readyz(server_url, pki),
            servers,
            timeout_s=START_TIMEOUT_S,
            blame=apiserver,
        )

        config = client.Configuration()
        config.host = server_url
        config.ssl_ca_cert = str(pki.ca_cert)
        config.cert_file = str(pki.admin_cert)
        config.key_file = str(pki.admin_key)
        api_client = client.ApiClient(config)
        kubeconfig = workdir / "kubeconfig"
        _write_kubeconfig(kubeconfig, server_url, pki.ca_cert, pki.admin_cert, pki.admin_key, ADMIN_USER)
        for crd_dir in crd_dirs:
            install_crds(api_client, crd_dir)
        if controllers:
            # After the CRDs: the controller-manager's garbage collector discovers resource types at
            # start and then only every 30 s, so KServe's objects are collected at once this way.
            servers += _start_kube_controllers(workdir, server_url, pki, kubeconfig)
            _create_nodes(api_client)
            _start_kserve(workdir, api_client, kubeconfig, pki, servers)
            _check_workloads_run(api_client, servers)
        yield Cluster(
            server=server_url,
            kubeconfig=kubeconfig,
            ca_file=pki.ca_cert,
            api_client=api_client,
            log_file=apiserver.log_file,
            etcd_log_file=servers[0].log_file,
            workdir=workdir,
            logs={s.name: s.log_file for s in servers},
            nodes=NODE_NAMES if controllers else (),
        )
    finally:
        if api_client is not None:
            api_client.close()
        # Dependents first, the apiserver and etcd last.
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def api_error_body(error: client.ApiException) -> dict[str, Any]:
    """The Status object of a failed request, for asserting on the server's reason and message."""
    body: dict[str, Any] = json.loads(error.body) if error.body else {}
    return body
