"""Private RabbitMQ and PostgreSQL servers that a fault test may stop, kill, pause and start again.

Each node has its own ports and its own folder, named ``pcfault-<pid of the pytest process>-<random>`` under the
temporary directory, so stopping one never touches the machine's RabbitMQ (5672) or PostgreSQL (5432), nor another
test session's nodes. The folder name is also in each server's command line: :func:`reap_orphans` finds servers
left behind by a pytest that died before its clean-up (a timeout's ``os._exit``, a SIGKILL) by that name, and
kills them only when the pytest that started them is gone.

Run as root, the servers run as their own users: the packaged RabbitMQ as ``rabbitmq`` (so its files must be
owned by it, and it uses the machine's Erlang cookie in ``/var/lib/rabbitmq``, which lets ``rabbitmqctl -n NODE``
reach the node from a root shell), PostgreSQL as ``pgserver`` (created on demand, as the ``pgserver`` package does
for the embedded database: PostgreSQL refuses to run as root). Otherwise both run as the current user.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import pwd
import random
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

import pika
import psutil
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from tests import services

MARKER = "pcfault"
TOKEN = re.compile(rf"{MARKER}-(\d+)-([0-9a-f]{{8}})")
KEPT = "KEPT"  # a file in a node's folder kept for a failed test: reap_orphans leaves that folder alone
EPMD_PORT = int(os.environ.get("ERL_EPMD_PORT", "4369"))
POLL = 0.02
# What opening an AMQP connection to a node that is down raises: refused, reset, or a handshake that times out
# (pika raises the last as its own AMQPConnectorStackTimeout, outside pika.exceptions).
CONNECT_ERRORS = (pika.exceptions.AMQPError, AMQPConnectorException, OSError)

_open_nodes: set[_Server] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now, below the kernel's ephemeral range: a port the kernel hands
    out to outgoing connections (the workers' own, other tests') could be taken again before a node binds it."""
    low, _ = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    for _ in range(200):
        port = random.randrange(max(1024, low - 12_000), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def port_accepts(port: int, timeout: float = 0.2) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout).close()
    except OSError:
        return False
    return True


def new_root() -> Path:
    """A fresh folder for one node, traversable by the user the server runs as."""
    root = Path(tempfile.gettempdir()) / f"{MARKER}-{os.getpid()}-{secrets.token_hex(4)}"
    root.mkdir(mode=0o755)
    root.chmod(0o755)  # whatever the umask
    _ensure_traversable(root)
    return root


def _ensure_traversable(path: Path) -> None:
    """Let every user traverse the folders above ``path``: the server's user must reach its files (what pgserver's
    ``ensure_prefix_permissions`` does for its binaries). A no-op on the usual ``/tmp``."""
    if os.geteuid() != 0:
        return
    for folder in path.parents:
        mode = folder.stat().st_mode
        if mode & (stat.S_IXGRP | stat.S_IXOTH) != stat.S_IXGRP | stat.S_IXOTH:
            folder.chmod(mode | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL)


@dataclass(frozen=True)
class Account:
    """The user a server runs as, and how to start a process as that user from root."""

    name: str
    uid: int
    gid: int
    home: Path

    @classmethod
    def current(cls) -> Account:
        entry = pwd.getpwuid(os.geteuid())
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, Path(os.environ.get("HOME", entry.pw_dir)))

    @classmethod
    def for_server(cls, user: str, *, create: bool) -> Account:
        """``user`` when running as root (created if ``create``, as pgserver does), else the current user."""
        if os.geteuid() != 0:
            return cls.current()
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            if not create:
                raise RuntimeError(f"running as root, the {user!r} user must exist to run this server") from None
            subprocess.run(["useradd", "-s", "/bin/bash", user], check=True, capture_output=True, text=True)
            entry = pwd.getpwnam(user)
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))

    def popen_kwargs(self) -> dict[str, Any]:
        """``subprocess`` arguments that drop root (and root's supplementary groups) for this user."""
        if os.geteuid() == self.uid:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def own(self, *paths: Path) -> None:
        """Give ``paths`` (recursively) to this user: a server started as root writes as its own user."""
        if os.geteuid() != 0:
            return
        for path in paths:
            os.chown(path, self.uid, self.gid)
            for folder, dirs, files in os.walk(path):
                for name in [*dirs, *files]:
                    os.chown(os.path.join(folder, name), self.uid, self.gid, follow_symlinks=False)


class _Server:
    """A server process in its own session, so one signal reaches it and all its children."""

    root: Path
    process: subprocess.Popen[bytes] | None
    paused: bool

    @property
    def running(self) -> bool:
        """The server's process exists (it may be booting, stopping, paused or refusing connections)."""
        return self.process is not None and self.process.poll() is None

    def _signal_group(self, signum: int) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def _reap(self, timeout: float) -> None:
        """Wait for the process to exit; SIGKILL the group when it does not in time (and then still raise)."""
        assert self.process is not None
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill_group()
            raise TimeoutError(f"{self} did not exit within {timeout}s: killed") from None
        finally:
            self.paused = False
        self._kill_group()

    def _kill_group(self) -> None:
        """SIGKILL every process of the group and wait until none runs. Popen.wait is not enough: postgres backends
        and beam.smp (under its sh) are not our children, and SIGKILL takes effect asynchronously; until they are
        gone they hold the ports, the shared memory and the epmd name a restart needs."""
        assert self.process is not None
        group = self.process.pid
        self._signal_group(signal.SIGKILL)
        self.process.wait(10)
        wait_until(lambda: not live_group_members(group), 10, f"the processes of {self} to exit")

    def kill(self) -> float:
        """SIGKILL the server and every process of its group at once: a crash, with no chance to flush or close
        anything cleanly. Returns the seconds it took."""
        began = time.monotonic()
        if self.process is not None:  # even if its leader is gone: a beam.smp may outlive its sh
            self._kill_group()
            self.paused = False
        self._after_exit()
        return time.monotonic() - began

    def pause(self) -> None:
        """SIGSTOP the server: it keeps its sockets open but answers nothing (a hung server, not a dead one)."""
        if not self.running:
            raise RuntimeError(f"{self} is not running")
        self._signal_group(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT a paused server."""
        if self.running:
            self._signal_group(signal.SIGCONT)
        self.paused = False

    def _after_exit(self) -> None:
        """Hook: wait for whatever outlives the process (RabbitMQ's epmd registration)."""

    def close(self, keep_files: bool = False) -> None:
        """Kill the server whatever its state (paused, booting, hung) and remove its folder unless ``keep_files``
        (then a ``KEPT`` file keeps :func:`reap_orphans` off it). Safe to call twice."""
        try:
            if self.process is not None:
                self._kill_group()
        finally:
            self.paused = False
            _open_nodes.discard(self)
            if keep_files:
                with contextlib.suppress(OSError):
                    (self.root / KEPT).touch()
            else:
                shutil.rmtree(self.root, ignore_errors=True)

    def _spawn(self, args: list[str], env: Mapping[str, str], account: Account, log: Path) -> None:
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                args,
                cwd=self.root,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **account.popen_kwargs(),
            )
        self.paused = False
        _open_nodes.add(self)

    def _check_alive(self, log: Path) -> None:
        assert self.process is not None
        code = self.process.poll()
        if code is not None:
            raise RuntimeError(f"{self} exited with code {code} while starting; its log ends:\n{tail(log)}")


def live_group_members(group: int) -> list[int]:
    """The processes of a process group that still run (zombies waiting for init to reap them do not)."""
    members = []
    for proc in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == group:
                members.append(proc.pid)
    return members


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"({path}: {exc})"


# --- RabbitMQ ------------------------------------------------------------------------------------------------


def _rabbitmq_script(name: str) -> str:
    """The real RabbitMQ script, not Debian's ``/usr/sbin`` wrapper, which ``su``s to ``rabbitmq`` and resets
    ``HOME``: the node is started as that user here, with the environment this module chooses."""
    packaged = Path("/usr/lib/rabbitmq/bin") / name
    if packaged.exists():
        return str(packaged)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install rabbitmq-server to run the fault tests")
    return found


def _erl_call() -> str | None:
    """``erl_call``, the C client that evaluates an expression on a running node in milliseconds (rabbitmqctl
    takes 1.5 s to boot its own VM); it ships with Erlang but is not on PATH."""
    erl = shutil.which("erl")
    if erl is None:
        return None
    erlang_root = Path(erl).resolve().parent.parent
    candidates = sorted(erlang_root.glob("erts-*/bin/erl_call")) + sorted(
        erlang_root.glob("lib/erl_interface-*/bin/erl_call")
    )
    return str(candidates[-1]) if candidates else None


class BrokerNode(_Server):
    """A RabbitMQ node of its own: ``start()``, ``stop()`` (graceful), ``kill()`` (SIGKILL), ``stop_app()`` /
    ``start_app()`` (the broker down with the Erlang VM up), ``pause()`` / ``resume()``, ``reset()``.

    It runs without plugins and without a config file (``rabbitmq.conf`` goes through cuttlefish: 1 s per boot),
    listening on 127.0.0.1 only; ``consumer_timeout_ms`` lowers RabbitMQ's consumer timeout for tests of it.
    """

    def __init__(self, root: Path | None = None, *, consumer_timeout_ms: int | None = None) -> None:
        self.root = root or new_root()
        token = TOKEN.search(self.root.name)
        if token is None:
            raise ValueError(f"a node's folder is named {MARKER}-<pid>-<8 hex digits>, not {self.root.name}")
        self.name = f"{token[0]}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.process = None
        self.paused = False
        self.app_stopped = False
        self.account = Account.for_server("rabbitmq", create=False)
        self.log_path = self.root / "log" / f"{self.name}.log"
        self.stdout_path = self.root / "stdout.log"
        self._erl_call = _erl_call()
        for folder in ("mnesia", "log"):
            (self.root / folder).mkdir(exist_ok=True)
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq-env.conf").write_text("")  # instead of the machine's /etc/rabbitmq/rabbitmq-env.conf
        self.account.own(self.root)
        erl_args = [
            "-kernel inet_dist_use_interface {127,0,0,1}",
            f"-{MARKER} {token[0]}",  # an inert flag: what reap_orphans finds in the command line
        ]
        if consumer_timeout_ms is not None:
            erl_args.append(f"-rabbit consumer_timeout {consumer_timeout_ms}")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.account.home),  # where the Erlang cookie is, for the node and rabbitmqctl alike
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_PID_FILE": str(self.root / "rabbitmq.pid"),
            # Absent files: neither the machine's /etc/rabbitmq/rabbitmq.conf (its listener is 5672) nor cuttlefish.
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.root / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": " ".join(erl_args),
        }

    def __repr__(self) -> str:
        return f"BrokerNode({self.name}, port {self.port})"

    @property
    def url(self) -> str:
        """The AMQP URL of the default vhost (guest may log in from loopback only, which this is)."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def accepts_connections(self) -> bool:
        """An AMQP connection opens and closes (the port alone opens before the broker can serve it)."""
        if not port_accepts(self.port):
            return False
        params = pika.URLParameters(f"{self.url}?connection_attempts=1&socket_timeout=2&stack_timeout=5")
        try:
            pika.BlockingConnection(params).close()
        except CONNECT_ERRORS:
            return False
        return True

    def start(self, timeout: float = 60) -> float:
        """Boot the node (keeping whatever queues and messages its folder holds) and wait until it accepts an AMQP
        connection. Returns the seconds it took."""
        if self.running:
            raise RuntimeError(f"{self} is already running")
        began = time.monotonic()
        self._await_unregistered(timeout)
        self._spawn([_rabbitmq_script("rabbitmq-server")], self.env, self.account, self.stdout_path)
        self.app_stopped = False
        self._await_ready(began + timeout)
        return time.monotonic() - began

    def stop(self, timeout: float = 30) -> float:
        """Graceful shutdown: what ``rabbitmqctl stop`` does (``rabbit:stop()``: listeners and connections closed,
        queues and message stores written and closed), then the VM halts at once instead of spending another
        second in ``init:stop()``. Returns when the process has exited; the seconds it took."""
        began = time.monotonic()
        if not self.running:
            return 0.0
        self.resume()
        halt = (
            "catch rabbit:stop(),"
            " [catch M:filesync(Id) || #{id := Id, module := M} <- logger:get_handler_config()],"
            " erlang:halt(0)."
        )
        if self._erl_call is not None:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.eval(halt, timeout)  # the node halts before it answers: an error is expected
        else:
            self.ctl("stop", timeout=timeout)
        self._reap(timeout)
        self._after_exit()
        return time.monotonic() - began

    def restart(self, graceful: bool = True) -> float:
        """``stop()`` (or ``kill()``) then ``start()``; the seconds it took."""
        return (self.stop() if graceful else self.kill()) + self.start()

    def stop_app(self) -> float:
        """Stop the broker inside a running VM (``rabbitmqctl stop_app``): connections dropped, the port refuses,
        messages kept; ``start_app()`` brings it back in under a second, where ``start()`` needs four."""
        began = time.monotonic()
        self.eval("ok = rabbit:stop().")
        self.app_stopped = True
        wait_until(lambda: not port_accepts(self.port), 10, f"{self} to close its port")
        return time.monotonic() - began

    def start_app(self, timeout: float = 60) -> float:
        began = time.monotonic()
        self.eval("ok = rabbit:start().", timeout)
        self.app_stopped = False
        self._await_ready(began + timeout)
        return time.monotonic() - began

    def reset(self, timeout: float = 60) -> float:
        """Empty the node (``stop_app``, ``reset``, ``start_app``): no queues, messages, vhosts but ``/``, users
        but guest. A second, against four for a new node."""
        began = time.monotonic()
        self.eval("ok = rabbit:stop(), ok = rabbit_mnesia:reset(), ok = rabbit:start().", timeout)
        self.app_stopped = False
        self._await_ready(began + timeout)
        return time.monotonic() - began

    def ensure_ready(self) -> None:
        """Bring the node back to serving however the last test left it: paused, app stopped, stopped, killed."""
        if self.paused:
            self.resume()
        if not self.running:
            self.start()
            return
        if self.app_stopped:
            self.start_app()
            return
        try:
            wait_until(self.accepts_connections, 10, f"{self} to accept connections")
        except TimeoutError:
            self.kill()
            self.start()

    def eval(self, expression: str, timeout: float = 30) -> str:
        """Evaluate an Erlang expression (ending with ``.``) on the node; its printed value."""
        if not self.name.startswith(f"{MARKER}-"):  # never, ever the machine's rabbit@localhost
            raise RuntimeError(f"refusing to evaluate on {self.name}")
        if self._erl_call is None:
            result = self.ctl("eval", expression, timeout=timeout)
            if result.returncode != 0:
                raise RuntimeError(f"rabbitmqctl eval on {self.name} failed: {result.stdout}{result.stderr}")
            return result.stdout.strip()
        cookie = (self.account.home / ".erlang.cookie").read_text().strip()
        args = [self._erl_call, "-sname", self.name, "-c", cookie, "-timeout", str(int(timeout)), "-e"]
        result = subprocess.run(args, input=expression + "\n", capture_output=True, text=True, timeout=timeout + 5)
        out = result.stdout.strip()
        if result.returncode != 0 or not out.startswith("{ok,"):
            raise RuntimeError(f"erl_call on {self.name} failed ({result.returncode}): {out} {result.stderr.strip()}")
        return out.removeprefix("{ok,").removesuffix("}").strip()

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``rabbitmqctl -n NODE ARGS`` as the node's user (1.5 s each: prefer ``eval`` in a loop)."""
        return subprocess.run(
            [_rabbitmq_script("rabbitmqctl"), "-n", self.name, *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            **self.account.popen_kwargs(),
        )

    def _await_ready(self, deadline: float) -> None:
        """Wait for an AMQP connection to succeed, then for the boot to finish: the listener opens before the boot
        ends, and ``rabbit:start()`` while its ``rabbit_boot`` marker lives returns ``ok`` and starts nothing (a
        ``reset()`` right after ``start()`` left the broker down)."""
        while not (self.accepts_connections() and self._booted()):
            self._check_alive(self.stdout_path)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self} did not accept AMQP connections in time; its log ends:\n{tail(self.log_path)}"
                )
            time.sleep(POLL)

    def _booted(self) -> bool:
        try:
            return self.eval("whereis(rabbit_boot).") == "undefined"
        except RuntimeError:  # the node does not answer yet
            return False

    def _after_exit(self) -> None:
        self.app_stopped = False
        self._await_unregistered(10)

    def _await_unregistered(self, timeout: float) -> None:
        """A VM that just died may still be registered with epmd for an instant: a new one with its name would fail
        to boot ("the name ... seems to be in use")."""
        short = self.name.split("@")[0]
        wait_until(lambda: short not in epmd_names(), timeout, f"epmd to forget {short}")


def epmd_names() -> set[str]:
    """The node names epmd knows (its NAMES request), or none when no epmd runs."""
    try:
        with socket.create_connection(("127.0.0.1", EPMD_PORT), 1) as sock:
            sock.sendall(b"\x00\x01n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
    except OSError:
        return set()
    return set(re.findall(r"^name (\S+) at port", data[4:].decode(errors="replace"), re.MULTILINE))


# --- PostgreSQL ----------------------------------------------------------------------------------------------

StopMode = Literal["smart", "fast", "immediate"]
STOP_SIGNALS: dict[str, int] = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


def pgserver_bin() -> Path:
    """The PostgreSQL 16 + pgvector binaries of the ``pgserver`` wheel, found without importing it (its import
    warns when XDG_RUNTIME_DIR is unset, which the test settings turn into an error)."""
    spec = find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the pgserver package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class PostgresNode(_Server):
    """A PostgreSQL server of its own on 127.0.0.1 (trust auth, no unix socket): ``start()``, ``stop(mode)``,
    ``kill()`` (then ``start()`` runs crash recovery), ``pause()`` / ``resume()``, ``create_database()``.

    ``fsync=off``: a test kills processes, never the machine, and the OS keeps what a killed server wrote, so
    crash recovery is exercised exactly as with fsync on, at a fraction of the cost. ``settings`` adds ``-c``
    options (``{"idle_session_timeout": "2s"}``).
    """

    def __init__(self, root: Path | None = None, *, settings: Mapping[str, str] | None = None) -> None:
        self.root = root or new_root()
        self.data_dir = self.root / "data"
        self.port = free_port()
        self.process = None
        self.paused = False
        self.log_path = self.root / "postgres.log"
        self.bin = pgserver_bin()
        self.account = Account.for_server("pgserver", create=True)
        self.settings = {"fsync": "off", "shared_buffers": "32MB", **(settings or {})}
        self._template_ready = False
        _ensure_traversable(self.bin)
        self.account.own(self.root)

    def __repr__(self) -> str:
        return f"PostgresNode(port {self.port}, {self.data_dir})"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self, timeout: float = 30) -> float:
        """Start the server (``initdb`` first, on the first start) and wait until it accepts connections; after a
        ``kill()`` that includes crash recovery. Returns the seconds it took."""
        if self.running:
            raise RuntimeError(f"{self} is already running")
        began = time.monotonic()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        args = [str(self.bin / "postgres"), "-D", str(self.data_dir), "-h", "127.0.0.1", "-p", str(self.port), "-k", ""]
        for key, value in self.settings.items():
            args += ["-c", f"{key}={value}"]
        self._spawn(
            args, {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}, self.account, self.log_path
        )
        wait_until(self._ready, timeout, f"{self} to accept connections")
        return time.monotonic() - began

    def stop(self, mode: StopMode = "fast", timeout: float = 30) -> float:
        """``pg_ctl stop -m MODE``: smart waits for clients to leave, fast disconnects them and checkpoints,
        immediate quits without a checkpoint (the next start recovers). Returns the seconds it took."""
        began = time.monotonic()
        if not self.running:
            return 0.0
        self.resume()
        self._signal_postmaster(STOP_SIGNALS[mode])  # the postmaster only: SIGINT to a backend cancels its query
        self._reap(timeout)
        return time.monotonic() - began

    def restart(self, mode: StopMode | Literal["kill"] = "fast") -> float:
        return (self.kill() if mode == "kill" else self.stop(mode)) + self.start()

    def create_database(self) -> str:
        """A new database migrated like the other tiers' (a copy of a template migrated on first use); its URL.
        Call it from synchronous code: it runs its own event loop."""

        async def create() -> str:
            if not self._template_ready:
                await services.prepare_template(self.url())
                self._template_ready = True
            return await services.create_test_database(self.url())

        return asyncio.run(create())

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _signal_postmaster(self, signum: int) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signum)

    def _initdb(self) -> None:
        args = [str(self.bin / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust"]
        args += ["--encoding=utf8", "--no-sync", "--no-instructions"]
        result = subprocess.run(args, cwd=self.root, capture_output=True, text=True, **self.account.popen_kwargs())
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}): {result.stderr.strip()}")

    def _ready(self) -> bool:
        """``postmaster.pid`` says "ready" and names this process (after a kill the old file lingers)."""
        self._check_alive(self.log_path)
        assert self.process is not None
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return False
        return len(lines) >= 8 and lines[0].strip() == str(self.process.pid) and lines[7].strip() == "ready"


# --- clean-up ------------------------------------------------------------------------------------------------


def reap_orphans() -> list[str]:
    """Kill the servers of pytest sessions that died without cleaning up (their pytest's pid is gone) and remove
    their folders, except those kept for a failed test. Returns what it killed, for the log."""
    killed: list[str] = []
    own_group = os.getpgid(0)
    for proc in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            found = TOKEN.search(" ".join(proc.info["cmdline"] or []))
            if found is None or psutil.pid_exists(int(found[1])):
                continue
            group = os.getpgid(proc.pid)
            if group not in (own_group, 0, 1):
                os.killpg(group, signal.SIGKILL)
                killed.append(f"{found[0]} (process group {group})")
    for folder in Path(tempfile.gettempdir()).glob(f"{MARKER}-*-*"):
        found = TOKEN.fullmatch(folder.name)
        if found and not psutil.pid_exists(int(found[1])) and not (folder / KEPT).exists():
            shutil.rmtree(folder, ignore_errors=True)
    return killed


def open_nodes() -> Iterator[_Server]:
    return iter(list(_open_nodes))


@atexit.register
def _close_open_nodes() -> None:
    """Last resort when a session ends without its fixtures' finalizers (KeyboardInterrupt at the wrong time)."""
    for node in open_nodes():
        with contextlib.suppress(Exception):
            node.close(keep_files=True)
