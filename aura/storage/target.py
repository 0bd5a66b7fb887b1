"""Where Aura's Redis is: one server, a Redis Cluster, or a master found through Sentinel.

:func:`parse_target` reads the text of REDIS_URL, together with REDIS_MODE,
REDIS_CA_FILE and the REDIS_SENTINEL_* variables, into a :class:`RedisTarget`.
Every refusal is a ConfigError naming the variable to change; none shows a
password (the URL is echoed with its password as ``***``).

Only the standard library and :mod:`aura.errors`: :mod:`aura.config` imports this.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote

from aura.errors import ConfigError

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_SENTINEL_PORT",
    "MODES",
    "SCHEMES",
    "RedisMode",
    "RedisTarget",
    "parse_address",
    "parse_target",
    "redact",
]

DEFAULT_PORT: Final = 6379
DEFAULT_SENTINEL_PORT: Final = 26379
SCHEMES: Final = ("redis://", "rediss://", "unix://", "redis+sentinel://", "rediss+sentinel://")

_HOSTNAME: Final = re.compile(r"[A-Za-z0-9._-]+")  # DNS names, IPv4, and compose/k8s service names
_DIGITS: Final = re.compile(r"[0-9]+")  # int() would also take "+1", " 1" and "1_0"
_UNSAFE_IN_USER: Final = re.compile(r"[/?#\[\]]")  # must be percent-encoded in a username (RFC 3986 userinfo)


class RedisMode(str, enum.Enum):
    STANDALONE = "standalone"
    CLUSTER = "cluster"
    SENTINEL = "sentinel"


MODES: Final = tuple(mode.value for mode in RedisMode)


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A parsed Redis deployment; the passwords stay out of ``repr`` so that logging one is safe."""

    mode: RedisMode
    nodes: tuple[tuple[str, int], ...]  # standalone: one server; cluster: the seeds; sentinel: the sentinels
    db: int = 0
    username: str | None = None  # ACL user of the data nodes
    password: str | None = field(default=None, repr=False)
    tls: bool = False  # rediss:// (also to the sentinels for rediss+sentinel://)
    ca_file: str | None = None
    unix_path: str | None = None  # standalone over a unix socket (nodes is then empty)
    sentinel_master: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        """One line for logs, e.g. ``cluster 127.0.0.1:7000,127.0.0.1:7001 db 0 tls``; never a password."""
        where = f"unix:{self.unix_path}" if self.unix_path is not None else ",".join(
            f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in self.nodes
        )
        words = [self.mode.value]
        if self.mode is RedisMode.SENTINEL:
            words += ["master", str(self.sentinel_master), "via", where]
        else:
            words.append(where)
        words += ["db", str(self.db)]
        if self.username is not None:
            words += ["user", self.username]
        if self.tls:
            words.append("tls")
        if self.ca_file is not None:
            words += ["ca", self.ca_file]
        return " ".join(words)


def redact(text: str) -> str:
    """``text`` with the password of its userinfo, and any query (redis-py reads ``?password=``), as ``***``.

    The userinfo ends at the last ``@``, so an unencoded ``@``, ``/`` or ``?`` in a password is hidden too.
    """
    head, sep, rest = text.partition("://")
    if not sep:
        head, rest = "", text
    userinfo, at, tail = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        if _UNSAFE_IN_USER.search(user):  # not a username: the "@" belonged to something else
            rest = f"***@{tail}"
        else:
            rest = f"{user}{':***' if colon else ''}@{tail}"
    before, question, _ = rest.partition("?")
    return f"{head}{sep}{before}{'?***' if question else ''}"


def parse_address(text: str, *, default_port: int, variable: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[IPv6]`` or ``[IPv6]:port`` as ``(host, port)``; IPv6 without brackets."""
    shape = f"{variable} must give each host as name, name:port or [IPv6]:port (got {text!r})"
    port_text: str | None = None
    if text.startswith("["):
        host, bracket, after = text[1:].partition("]")
        if not bracket:
            raise ConfigError(shape)
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise ConfigError(shape) from exc
        if after:
            if not after.startswith(":"):
                raise ConfigError(shape)
            port_text = after[1:]
    else:
        host, colon, port_text_or_empty = text.partition(":")
        if colon:
            if ":" in port_text_or_empty:  # a bare IPv6 address: its last group would read as a port
                raise ConfigError(f"{variable} must put an IPv6 address in brackets, e.g. [::1]:6379 (got {text!r})")
            port_text = port_text_or_empty
        if not _HOSTNAME.fullmatch(host):
            raise ConfigError(shape)
    if port_text is None:
        return host, default_port
    port = int(port_text) if _DIGITS.fullmatch(port_text) and len(port_text) <= 5 else 0
    if not 1 <= port <= 65535:
        raise ConfigError(f"{variable} must give each port as an integer between 1 and 65535 (got {text!r})")
    return host, port


def parse_target(
    url: str,
    *,
    mode: str | None,
    ca_file: str | None,
    sentinel_master: str | None,
    sentinel_username: str | None,
    sentinel_password: str | None,
) -> RedisTarget:
    """The deployment REDIS_URL (``url``) and its companion variables describe, or ConfigError.

    ``mode`` None is auto: Sentinel for a ``+sentinel`` scheme, else standalone.
    """
    shown = redact(url)
    scheme, sep, rest = url.partition("://")
    if not sep or f"{scheme}://" not in SCHEMES:
        raise ConfigError(f"REDIS_URL must start with {_either(SCHEMES)} (got {shown!r})")
    if mode is not None and mode not in MODES:
        raise ConfigError(f"REDIS_MODE must be one of {', '.join(MODES)} (got {mode!r})")
    chosen = RedisMode(mode) if mode is not None else None
    tls = scheme.startswith("rediss")

    if scheme.endswith("+sentinel"):
        if chosen not in (None, RedisMode.SENTINEL):
            raise ConfigError(f"REDIS_MODE must be sentinel or unset with a {scheme}:// URL (got {mode!r})")
        resolved = RedisMode.SENTINEL
    elif scheme == "unix":
        if chosen is RedisMode.CLUSTER:
            raise ConfigError("REDIS_URL must list TCP hosts with REDIS_MODE=cluster, not a unix:// socket")
        if chosen is RedisMode.SENTINEL:
            raise ConfigError("REDIS_URL must list the sentinels' TCP hosts with REDIS_MODE=sentinel, not a unix:// socket")
        resolved = RedisMode.STANDALONE
    else:
        resolved = chosen or RedisMode.STANDALONE

    if resolved is not RedisMode.SENTINEL:
        for variable, value in (
            ("REDIS_SENTINEL_MASTER", sentinel_master),
            ("REDIS_SENTINEL_USERNAME", sentinel_username),
            ("REDIS_SENTINEL_PASSWORD", sentinel_password),
        ):
            if value is not None:
                raise ConfigError(
                    f"{variable} is set but Redis is not in Sentinel mode: use a redis+sentinel:// URL or REDIS_MODE=sentinel"
                )

    if scheme == "unix":
        userinfo, unix_path, db = _unix(rest, shown)
        nodes: tuple[tuple[str, int], ...] = ()
        url_master = ""
    else:
        userinfo, nodes, db, url_master = _network(rest, shown, resolved, scheme.endswith("+sentinel"))
        unix_path = None
    username, password = _credentials(userinfo)

    if len(nodes) > 1 and resolved is RedisMode.STANDALONE:
        raise ConfigError(
            f"REDIS_URL lists {len(nodes)} hosts; a list of hosts needs REDIS_MODE=cluster, "
            "or a redis+sentinel:// URL for Sentinel"
        )
    if resolved is RedisMode.CLUSTER and db != 0:
        raise ConfigError(f"REDIS_URL must name database 0 with REDIS_MODE=cluster: a Redis Cluster has only database 0 (got {db})")

    master: str | None = None
    if resolved is RedisMode.SENTINEL:
        if url_master and sentinel_master is not None and sentinel_master != url_master:
            raise ConfigError(
                f"REDIS_SENTINEL_MASTER must match the master REDIS_URL names (got {sentinel_master!r}; REDIS_URL names {url_master!r})"
            )
        master = url_master or sentinel_master
        if not master:
            raise ConfigError(
                "REDIS_SENTINEL_MASTER must name the master for Sentinel, "
                "or REDIS_URL must: redis+sentinel://host:26379/<master>"
            )

    if ca_file is not None:
        if not tls:
            raise ConfigError(
                "REDIS_CA_FILE is set but REDIS_URL is not TLS: use rediss:// (or rediss+sentinel://), "
                "or REDIS_TLS=true with REDIS_HOST"
            )
        unreadable = ConfigError(f"REDIS_CA_FILE must name a readable file (got {ca_file!r})")
        if not os.path.isfile(ca_file):  # also keeps open() below from blocking on a FIFO
            raise unreadable
        try:
            with open(ca_file, "rb"):  # opening is the one honest test of "readable" (ACLs, root, ...)
                pass
        except OSError as exc:
            raise unreadable from exc

    return RedisTarget(
        mode=resolved,
        nodes=nodes,
        db=db,
        username=username,
        password=password,
        tls=tls,
        ca_file=ca_file,
        unix_path=unix_path,
        sentinel_master=master,
        sentinel_username=sentinel_username if resolved is RedisMode.SENTINEL else None,
        sentinel_password=sentinel_password if resolved is RedisMode.SENTINEL else None,
    )


def _network(
    rest: str, shown: str, mode: RedisMode, sentinel_scheme: bool
) -> tuple[str | None, tuple[tuple[str, int], ...], int, str]:
    """``[userinfo@]hosts[/path]`` as (userinfo, nodes, db, master named in the path)."""
    userinfo: str | None
    userinfo, at, tail = rest.rpartition("@")
    if not at:
        userinfo = None
    if "?" in tail or "#" in tail:  # not echoed: redis-py URLs may carry ?password=
        raise ConfigError(
            "REDIS_URL must not have a query or fragment (?... or #...): give the database in the path, e.g. redis://host:6379/0"
        )
    hosts_text, _, path = tail.partition("/")
    entries = hosts_text.split(",")
    if any(not entry or (entry.startswith(":") and entry.count(":") == 1) for entry in entries):
        raise ConfigError(f"REDIS_URL must name a host (got {shown!r})")
    default_port = DEFAULT_SENTINEL_PORT if mode is RedisMode.SENTINEL else DEFAULT_PORT
    nodes = tuple(parse_address(entry, default_port=default_port, variable="REDIS_URL") for entry in entries)
    if sentinel_scheme:
        segments = path.split("/")
        if len(segments) > 2:
            raise ConfigError(f"REDIS_URL must end in /<master> or /<master>/<db> for Sentinel (got {'/' + path!r})")
        master, db_text = segments[0], segments[1] if len(segments) == 2 else ""
    else:
        master, db_text = "", path
    return userinfo, nodes, _db(db_text), master


def _unix(rest: str, shown: str) -> tuple[str | None, str, int]:
    """``[userinfo@]/path[?db=N]`` as (userinfo, path, db); the userinfo ends at the ``@`` before the path."""
    userinfo: str | None = None
    if not rest.startswith("/"):
        end = rest.find("@/")
        if end < 0:
            raise ConfigError(f"REDIS_URL must give an absolute socket path after unix://, e.g. unix:///run/redis.sock (got {shown!r})")
        userinfo, rest = rest[:end], rest[end + 1 :]
    path, question, query = rest.partition("?")
    if path == "/" or "#" in rest:
        raise ConfigError(f"REDIS_URL must give an absolute socket path after unix://, e.g. unix:///run/redis.sock (got {shown!r})")
    db = 0
    if question:
        found = re.fullmatch(r"db=([0-9]{1,10})", query)
        if found is None:  # not echoed: redis-py URLs may carry ?password=
            raise ConfigError("REDIS_URL must end in ?db=N (a non-negative integer) or nothing after its unix:// socket path")
        db = int(found.group(1))
    return userinfo, unquote(path), db


def _db(text: str) -> int:
    if not text:
        return 0
    if not _DIGITS.fullmatch(text) or len(text) > 10:  # Redis counts databases in an int
        raise ConfigError(f"REDIS_URL must give the database as a non-negative integer (got {text!r})")
    return int(text)


def _credentials(userinfo: str | None) -> tuple[str | None, str | None]:
    if userinfo is None:
        return None, None
    user, colon, password = userinfo.partition(":")  # a username cannot hold ":" unencoded; a password can
    if _UNSAFE_IN_USER.search(user):  # not echoed: the text may hold a password
        raise ConfigError("REDIS_URL must percent-encode / ? # [ ] @ in its username, e.g. %40 for @")
    return unquote(user) or None, (unquote(password) or None) if colon else None


def _either(items: tuple[str, ...]) -> str:
    *rest, last = items
    return f"{', '.join(rest)} or {last}" if rest else last
