"""A real kube-apiserver + etcd for the k8s test tier, run as local processes.

This is what controller-runtime's envtest does: there is no container engine here, and what decides
Shipyard's Kubernetes behaviour (CRD schemas, RBAC, admission) lives in the API server anyway, so the
real binaries built by `make k8s-tools` are started on free loopback ports. No controller-manager,
scheduler or kubelet runs: namespaces stay Terminating after deletion, ServiceAccounts are not
auto-created and Pods are never scheduled, so tests create what controllers would have.
"""

from __future__ import annotations

import base64
import contextlib
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
HELM = BIN_DIR / "helm"
KUBECTL = BIN_DIR / "kubectl"

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
FIELD_MANAGER = "shipyard-test-harness"
ADMIN_USER = "shipyard-test-admin"
START_TIMEOUT_S = 90.0
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ClusterStartError(RuntimeError):
    """The apiserver or etcd did not come up; the message carries their log tails."""


class ToolError(RuntimeError):
    """A kubectl or helm command failed; the message carries its stderr."""


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
    wanted = {
        "kube-apiserver": (BIN_DIR / "kube-apiserver", versions["KUBERNETES_VERSION"]),
        "kubectl": (KUBECTL, versions["KUBERNETES_VERSION"]),
        "etcd": (BIN_DIR / "etcd", versions["ETCD_VERSION"]),
        "helm": (HELM, versions["HELM_VERSION"]),
        "kserve-crds": (KSERVE_CRD_DIR, versions["KSERVE_VERSION"]),
    }
    missing = []
    for name, (path, version) in wanted.items():
        stamp = STAMP_DIR / name
        built = stamp.read_text().split()[0] if stamp.is_file() else None
        if not path.exists() or built != version:
            missing.append(f"{name} {version}" + (f" (found {built})" if built else ""))
    return missing


@dataclass(frozen=True)
class Cluster:
    """A running test apiserver and the ways to talk to it."""

    server: str
    kubeconfig: Path
    ca_file: Path
    api_client: client.ApiClient
    log_file: Path
    etcd_log_file: Path
    workdir: Path

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

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_file, lines)


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


def _write_pki(directory: Path) -> _Pki:
    """Throwaway CA, serving and admin client certs, and the ServiceAccount token signing key pair.

    EC P-256 keys: generating them takes milliseconds, which keeps the fixture start fast.
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
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue(name("kube-apiserver"), server_key, (ca_name, ca_key), server_ips=("127.0.0.1",))
    admin_key = ec.generate_private_key(ec.SECP256R1())
    # system:masters is the cluster-admin group RBAC's bootstrap policy grants everything to.
    admin = _issue(name(ADMIN_USER, "system:masters"), admin_key, (ca_name, ca_key), client_auth=True)
    sa_key = ec.generate_private_key(ec.SECP256R1())

    pki = _Pki(
        ca_cert=directory / "ca.crt",
        server_cert=directory / "apiserver.crt",
        server_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        sa_private_key=directory / "sa.key",
        sa_public_key=directory / "sa.pub",
    )
    pki.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.server_cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    pki.server_key.write_bytes(_pem_key(server_key))
    pki.admin_cert.write_bytes(admin.public_bytes(serialization.Encoding.PEM))
    pki.admin_key.write_bytes(_pem_key(admin_key))
    pki.sa_private_key.write_bytes(_pem_key(sa_key))
    pki.sa_public_key.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki


def _write_kubeconfig(path: Path, server: str, pki: _Pki) -> None:
    """Certificates are inlined so the file works for kubectl and helm from any directory."""

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "shipyard-test",
                "cluster": {"server": server, "certificate-authority-data": b64(pki.ca_cert)},
            }
        ],
        "users": [
            {
                "name": ADMIN_USER,
                "user": {
                    "client-certificate-data": b64(pki.admin_cert),
                    "client-key-data": b64(pki.admin_key),
                },
            }
        ],
        "contexts": [{"name": "shipyard-test", "context": {"cluster": "shipyard-test", "user": ADMIN_USER}}],
        "current-context": "shipyard-test",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


# --- processes -------------------------------------------------------------------------------------


class _Server:
    """One child process whose output goes to a log file."""

    def __init__(self, name: str, argv: list[str], log_file: Path) -> None:
        self.name = name
        self.log_file = log_file
        with log_file.open("wb") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
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


def _wait_until(what: str, ready: Callable[[], bool], servers: list[_Server], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        for server in servers:
            server.check_running()
        if ready():
            return
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {s.name} log ---\n{_tail(s.log_file, 30)}" for s in servers)
            raise ClusterStartError(f"timed out after {timeout_s:.0f}s waiting for {what}\n{tails}")
        time.sleep(0.1)


def _readyz(url: str, pki: _Pki) -> Callable[[], bool]:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/readyz", context=context, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    return ready


# --- CRDs ------------------------------------------------------------------------------------------


def server_side_apply(api_client: client.ApiClient, path: str, manifest: dict[str, Any]) -> Any:
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


# --- the cluster -----------------------------------------------------------------------------------


@contextlib.contextmanager
def run_cluster(crd_dirs: tuple[Path, ...] = (KSERVE_CRD_DIR,)) -> Iterator[Cluster]:
    """Start etcd and kube-apiserver, install the CRDs, and always stop both and delete their data."""
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
            )
        )
        server_url = f"https://127.0.0.1:{api_port}"
        servers.append(
            _Server(
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
            )
        )
        _wait_until(f"{server_url}/readyz", _readyz(server_url, pki), servers, timeout_s=START_TIMEOUT_S)

        config = client.Configuration()
        config.host = server_url
        config.ssl_ca_cert = str(pki.ca_cert)
        config.cert_file = str(pki.admin_cert)
        config.key_file = str(pki.admin_key)
        api_client = client.ApiClient(config)
        for crd_dir in crd_dirs:
            install_crds(api_client, crd_dir)
        kubeconfig = workdir / "kubeconfig"
        _write_kubeconfig(kubeconfig, server_url, pki)
        yield Cluster(
            server=server_url,
            kubeconfig=kubeconfig,
            ca_file=pki.ca_cert,
            api_client=api_client,
            log_file=servers[1].log_file,
            etcd_log_file=servers[0].log_file,
            workdir=workdir,
        )
    finally:
        if api_client is not None:
            api_client.close()
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def api_error_body(error: client.ApiException) -> dict[str, Any]:
    """The Status object of a failed request, for asserting on the server's reason and message."""
    body: dict[str, Any] = json.loads(error.body) if error.body else {}
    return body
