"""Which Ray cluster a run uses, and whether that cluster can hold the run.

Driver side only. ``connect`` attaches to ``LaunchConfig.address`` or starts a small
embedded Ray for this process; ``require_resources`` compares what the cluster has with
what ``LaunchConfig`` asks for (``guardtrain.core.resources``, pure) and fails at once,
before Ray Train would wait for resources that never come. ``attach`` does both, once
per run.

Codes: GT410 Ray could not be reached or started, GT411 this process is already attached
to another cluster, GT420 the cluster lacks CPUs, GT421 GPUs, GT422 no node fits one
worker.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import shutil
import socket
import tempfile
from guardtrain.core.errors import LaunchError
from guardtrain.core.launch_config import LaunchConfig
from guardtrain.core.resources import check_resources, resource_error

__all__ = ["RayConnection", "connect", "require_resources", "attach"]

logger = logging.getLogger(__name__)

#: Object store of the embedded Ray. Ray's default is 30% of RAM; guardtrain moves weights
#: and a few statistics through it, not datasets.
EMBEDDED_OBJECT_STORE_BYTES = 300 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class RayConnection:
    """The Ray cluster this process is attached to.

    Args:
        address: the cluster's GCS address (``"127.0.0.1:6390"``).
        owned: True when ``connect`` started it (embedded Ray): ``close`` shuts it down.
            False when it was attached to by address or initialised by the caller:
            ``close`` leaves it alone.
        temp_dir: the private temp dir of an embedded Ray, removed by ``close``.
    """

    address: str
    owned: bool
    temp_dir: str | None = None

    def close(self) -> None:
        """Shuts down the embedded Ray this process started; a no-op otherwise."""
        global _CONNECTION
        if not self.owned:
            return
        import ray

        # Only the Ray this connection started: close() also runs at exit, when the
        # process may have moved on to another cluster.
        if ray.is_initialized() and ray.get_runtime_context().gcs_address == self.address:
            ray.shutdown()
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        if _CONNECTION is self:
            _CONNECTION = None


# The embedded Ray this process started, reused by the next ``connect``: ray.init costs
# 3-7 s, and a second Ray on the same host only confuses Ray's own cleanup.
_CONNECTION: RayConnection | None = None


def connect(launch: LaunchConfig, *,
            object_store_bytes: int = EMBEDDED_OBJECT_STORE_BYTES) -> RayConnection:
    """Attaches this process to the Ray cluster ``launch`` names, or starts one.

    - Ray already initialised in this process: reused, unless ``launch.address`` names a
      different ``host:port`` (GT411).
    - ``launch.address`` given: attached to it (``"auto"``, ``"host:port"``,
      ``"ray://host:10001"``). A cluster with token auth needs its token here:
      ``RAY_AUTH_TOKEN_PATH`` (or ``RAY_AUTH_TOKEN``) is enough, ``RAY_AUTH_MODE=token``
      is implied; a token file that cannot be read, or a refusal, is GT410 with the fix.
    - otherwise: an embedded Ray for this process only (``address="local"``, so it never
      attaches to some other cluster running on the host), with a private temp dir, no
      dashboard and a small object store. Its auth token is kept in this process's
      environment instead of being written under ``$HOME``.

    Args:
        launch: where to run.
        object_store_bytes: object store size of an embedded Ray.

    Returns:
        The connection; ``close()`` shuts down an embedded Ray and nothing else.

    Raises:
        LaunchError: GT410 when the cluster cannot be reached or started, GT411 when
            this process is already attached to another cluster.

    Example:

    >>> conn = connect(LaunchConfig(workers=2))          # doctest: +SKIP
    >>> conn.owned                                       # doctest: +SKIP
    True
    """
    global _CONNECTION
    import ray

    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if launch.address and _is_host_port(launch.address) \
                and not _same_address(launch.address, current):
            raise LaunchError(
                f"this process is already attached to the Ray cluster at {current}, "
                f"but LaunchConfig(address={launch.address!r}) asks for another one",
                code="GT411",
                fix=("call ray.shutdown() before switching clusters, or pass "
                     f"address={current!r} (or address=None) to use the one attached"),
                details={"expected": launch.address, "found": current})
        if _CONNECTION is not None and _CONNECTION.address == current:
            return _CONNECTION
        return RayConnection(address=current, owned=False)

    if launch.address:
        _require_reachable(launch.address)
        _use_token_for_attach(launch.address)
        refused = _auth_refusal(launch.address)
        try:
            if refused is not None:
                raise refused
            ray.init(address=launch.address, logging_level=logging.WARNING,
                     log_to_driver=True)
        except Exception as err:  # Ray raises ConnectionError, RuntimeError, ValueError...
            if _is_auth_error(err):
                raise LaunchError(
                    f"the Ray cluster at {launch.address!r} refused this driver: it runs "
                    f"with token auth and {_token_source()}",
                    code="GT410", fix=_TOKEN_FIX,
                    details={"address": launch.address}) from None
            raise LaunchError(
                f"could not attach to the Ray cluster at {launch.address!r}: "
                f"{type(err).__name__}: {err}",
                code="GT410",
                fix=("start the cluster first (`ray start --head`, or "
                     "cluster/local-cluster.sh start) and check the address, or pass "
                     "address=None to run on an embedded Ray in this process"),
                details={"address": launch.address}) from err
        return RayConnection(address=ray.get_runtime_context().gcs_address, owned=False)

    temp_dir = _short_temp_dir()
    _keep_auth_token_out_of_home()
    try:
        ray.init(address="local", _temp_dir=temp_dir, include_dashboard=False,
                 object_store_memory=object_store_bytes, logging_level=logging.WARNING,
                 log_to_driver=True)
    except Exception as err:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise LaunchError(
            f"could not start an embedded Ray: {type(err).__name__}: {err}",
            code="GT410",
            fix=("start a cluster yourself and pass its address "
                 "(LaunchConfig(address='127.0.0.1:6379')), or run with workers=0"),
        ) from err
    _CONNECTION = RayConnection(address=ray.get_runtime_context().gcs_address, owned=True,
                                temp_dir=temp_dir)
    # Registered after ray.init, so it runs before Ray's own exit hook: Ray is shut down
    # first, then its temp dir is removed.
    atexit.register(_CONNECTION.close)
    logger.info("started an embedded Ray at %s (temp dir %s)", _CONNECTION.address, temp_dir)
    return _CONNECTION


def _require_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fails in seconds on a ``host:port`` nothing listens on (``ray.init`` retries for
    minutes there)."""
    if not _is_host_port(address):
        return  # "auto", "ray://...": Ray resolves these itself
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as err:
        raise LaunchError(
            f"could not attach to the Ray cluster at {address!r}: nothing answers there "
            f"({type(err).__name__}: {err})",
            code="GT410",
            fix=("start the cluster first (`ray start --head`, or cluster/local-cluster.sh "
                 "start) and check the address, or pass address=None to run on an embedded "
                 "Ray in this process"),
            details={"address": address}) from None


_TOKEN_FIX = ("give this driver the cluster's token: export RAY_AUTH_MODE=token and "
              "RAY_AUTH_TOKEN_PATH=<the token file> (for cluster/local-cluster.sh: "
              "eval \"$(cluster/local-cluster.sh env)\"), or RAY_AUTH_TOKEN; never turn "
              "the cluster's auth off")


def _use_token_for_attach(address: str) -> None:
    """Makes a token the user gave count when attaching by address.

    Ray only turns token auth on for a driver with an explicit address when
    ``RAY_AUTH_MODE=token`` is set: a token in ``RAY_AUTH_TOKEN``/``RAY_AUTH_TOKEN_PATH``
    alone would be ignored, and the cluster would refuse the driver. A token file that
    cannot be read is named here; Ray itself aborts the process on one.
    """
    env = os.environ
    token, path = env.get("RAY_AUTH_TOKEN"), env.get("RAY_AUTH_TOKEN_PATH")
    if env.get("RAY_AUTH_MODE") is None and (token or path):
        env["RAY_AUTH_MODE"] = "token"
    if env.get("RAY_AUTH_MODE", "").lower() == "token" and not token and path:
        try:
            with open(os.path.expanduser(path)) as f:
                readable = bool(f.read().strip())
        except OSError as err:
            readable, why = False, f"cannot be read ({type(err).__name__})"
        else:
            why = "is empty"
        if not readable:
            raise LaunchError(
                f"cannot attach to the Ray cluster at {address!r}: RAY_AUTH_TOKEN_PATH "
                f"names {path!r}, which {why}",
                code="GT410", fix=_TOKEN_FIX, details={"address": address})
    _refresh_ray_auth_config()


def _auth_refusal(address: str) -> Exception | None:
    """Ray's own refusal of this driver's token (or of its lack of one), in well under a
    second, or ``None``.

    ``ray.init`` meets a refusal with ~20 s of retries, then a ConnectionError that does
    not say why; one GCS client asks once and gets Ray's ``AuthenticationError``. Any
    other outcome is left to ``ray.init``.
    """
    if not _is_host_port(address):
        return None
    try:
        from ray._raylet import GcsClient

        GcsClient(address=address)
    except Exception as err:  # noqa: BLE001 - only an auth refusal is acted on
        return err if _is_auth_error(err) else None
    return None


def _refresh_ray_auth_config() -> None:
    # Ray's C++ side caches the auth mode and token when it is first read; an environment
    # set after `import ray` (a fixture, a notebook cell) only counts after a reload.
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):   # a Ray without token auth
        pass


def _token_source() -> str:
    env = os.environ
    if env.get("RAY_AUTH_MODE", "").lower() != "token":
        return (f"this process has no token (RAY_AUTH_MODE is "
                f"{env.get('RAY_AUTH_MODE', 'unset')})")
    if env.get("RAY_AUTH_TOKEN"):
        return "the token in RAY_AUTH_TOKEN is not its token"
    if env.get("RAY_AUTH_TOKEN_PATH"):
        return f"the token in {env['RAY_AUTH_TOKEN_PATH']!r} is not its token"
    return "this process has no token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token)"


def _is_auth_error(err: BaseException) -> bool:
    text = f"{type(err).__name__}: {err}".lower()
    return type(err).__name__ == "AuthenticationError" or "unauthenticated" in text \
        or "authentication token" in text


def require_resources(launch: LaunchConfig) -> None:
    """Raises at once when the attached cluster cannot hold ``launch``.

    Ray Train itself waits for missing resources and retries start-up indefinitely
    (``use_gpu=True`` on a CPU cluster never starts); this turns it into an error that
    names what was asked and what exists (``guardtrain.core.resources``). Resources that
    exist but are busy (another job holds them) are only logged: they may free up.

    Raises:
        LaunchError: GT420/GT421/GT422, with every problem in ``details["problems"]``.
    """
    import ray

    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    problems = check_resources(launch, nodes)
    if problems:
        raise resource_error(problems)
    busy = check_resources(launch, ray.available_resources())
    for problem in busy:
        logger.warning("Ray resources are busy, start-up will wait for them: %s; %s free now",
                       problem.expected, problem.found.replace(" in the Ray cluster", ""))


def attach(launch: LaunchConfig) -> RayConnection:
    """``connect`` then ``require_resources``: the driver's one way onto a cluster.

    Called once per run, before anything is sent to the cluster: a request the cluster
    cannot hold fails here, in seconds, before any data is shipped or worker started.
    """
    connection = connect(launch)
    require_resources(launch)
    return connection


def _is_host_port(address: str) -> bool:
    return "://" not in address and address not in ("auto", "local") and ":" in address


def _same_address(requested: str, current: str) -> bool:
    # Ray reports the node's reachable IP even when attached through 127.0.0.1.
    import ray

    host, _, port = requested.rpartition(":")
    current_host, _, current_port = current.rpartition(":")
    this_host = {"127.0.0.1", "localhost", "0.0.0.0", "::1", ray.util.get_node_ip_address()}
    return port == current_port and (host == current_host
                                     or (host in this_host and current_host in this_host))


def _short_temp_dir() -> str:
    # Ray puts Unix sockets under its temp dir, and a socket path is limited to 107 bytes:
    # a per-user TMPDIR (long on some systems) can be too deep, /tmp is not.
    base = "/tmp" if os.path.isdir("/tmp") else None
    return tempfile.mkdtemp(prefix="gtray-", dir=base)


def _keep_auth_token_out_of_home() -> None:
    # A new local Ray writes its token to ~/.ray/auth_token unless a token is already in
    # the environment. A random one here keeps auth on and $HOME clean; the raylet and its
    # workers inherit it. The mode is set too: some Ray releases with token auth leave it
    # off unless asked. An explicit choice by the user wins.
    if any(k in os.environ for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
        return
    import secrets

    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    _refresh_ray_auth_config()
