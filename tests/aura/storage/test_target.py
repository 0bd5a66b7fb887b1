"""REDIS_URL and its companion variables read into one RedisTarget, refused with exact messages."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from aura.errors import ConfigError
from aura.storage.target import SCHEMES, RedisMode, RedisTarget, parse_address, parse_target, redact

SECRET = "s3cr#t/p@ss"  # every character a URL parser could trip on


def target(url: str, **companions: Any) -> RedisTarget:
    """parse_target with every companion variable unset unless given."""
    return parse_target(
        url,
        mode=companions.get("mode"),
        ca_file=companions.get("ca_file"),
        sentinel_master=companions.get("sentinel_master"),
        sentinel_username=companions.get("sentinel_username"),
        sentinel_password=companions.get("sentinel_password"),
    )


def refusal(url: str, **companions: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        target(url, **companions)
    return str(caught.value)


@pytest.fixture
def ca_file(tmp_path: Path) -> str:
    path = tmp_path / "server-ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")  # only readability is checked, not the PEM
    return str(path)


# ---------------------------------------------------------------- standalone


def test_a_plain_url_is_one_standalone_server() -> None:
    assert target("redis://cache:6380/2") == RedisTarget(RedisMode.STANDALONE, (("cache", 6380),), db=2)


@pytest.mark.parametrize("url", ["redis://cache", "redis://cache/", "redis://cache:6379", "redis://cache:6379/0"])
def test_port_and_database_default_to_6379_and_0(url: str) -> None:
    assert target(url) == RedisTarget(RedisMode.STANDALONE, (("cache", 6379),))


def test_standalone_is_also_chosen_explicitly() -> None:
    assert target("redis://cache", mode="standalone").mode is RedisMode.STANDALONE


def test_user_and_password_are_percent_decoded() -> None:
    parsed = target("rediss://aura%40svc:s3cr%23t%2Fp%40ss@cache.example:6380/1")
    assert (parsed.username, parsed.password, parsed.tls) == ("aura@svc", SECRET, True)
    assert parsed.nodes == (("cache.example", 6380),)


def test_an_unencoded_at_sign_or_slash_in_the_password_still_ends_at_the_last_at() -> None:
    parsed = target(f"redis://aura:{SECRET}@cache:6379/0")
    assert (parsed.username, parsed.password, parsed.nodes, parsed.db) == ("aura", SECRET, (("cache", 6379),), 0)


@pytest.mark.parametrize(
    ("userinfo", "username", "password"),
    [(":pw@", None, "pw"), ("alice@", "alice", None), ("alice:@", "alice", None), ("", None, None)],
)
def test_either_credential_may_be_missing(userinfo: str, username: str | None, password: str | None) -> None:
    parsed = target(f"redis://{userinfo}cache")
    assert (parsed.username, parsed.password) == (username, password)


@pytest.mark.parametrize(
    ("url", "node"),
    [
        ("redis://[::1]:6379/0", ("::1", 6379)),
        ("redis://[::1]", ("::1", 6379)),
        ("rediss://u:p@[2001:db8::7]:6380", ("2001:db8::7", 6380)),
    ],
)
def test_ipv6_addresses_go_in_brackets(url: str, node: tuple[str, int]) -> None:
    assert target(url).nodes == (node,)


def test_tls_with_a_ca_file(ca_file: str) -> None:
    parsed = target("rediss://cache:6380", ca_file=ca_file)
    assert (parsed.tls, parsed.ca_file) == (True, ca_file)


def test_a_unix_socket() -> None:
    assert target("unix:///run/redis/redis.sock") == RedisTarget(
        RedisMode.STANDALONE, (), unix_path="/run/redis/redis.sock"
    )
    parsed = target("unix://aura:p%40ss@/run/redis%20x.sock?db=3")
    assert (parsed.unix_path, parsed.db, parsed.username, parsed.password) == ("/run/redis x.sock", 3, "aura", "p@ss")


# ---------------------------------------------------------------- cluster


def test_a_cluster_is_a_seed_list_with_redis_mode_cluster() -> None:
    parsed = target("rediss://aura:pw@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002", mode="cluster")
    assert parsed == RedisTarget(
        RedisMode.CLUSTER,
        (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002)),
        username="aura",
        password="pw",
        tls=True,
    )


def test_a_cluster_may_have_one_seed_such_as_a_configuration_endpoint() -> None:
    parsed = target("rediss://clustercfg.example.cache.amazonaws.com:6379/0", mode="cluster")
    assert parsed.nodes == (("clustercfg.example.cache.amazonaws.com", 6379),)


# ---------------------------------------------------------------- sentinel


def test_sentinel_with_the_master_and_database_in_the_path() -> None:
    parsed = target("redis+sentinel://aura:pw@s1,s2:26380/mymaster/4")
    assert parsed == RedisTarget(
        RedisMode.SENTINEL,
        (("s1", 26379), ("s2", 26380)),
        db=4,
        username="aura",
        password="pw",
        sentinel_master="mymaster",
    )


def test_sentinel_with_the_master_from_redis_sentinel_master_and_sentinel_credentials() -> None:
    parsed = target(
        "rediss+sentinel://s1:26379", sentinel_master="mymaster", sentinel_username="watcher", sentinel_password="spw"
    )
    assert (parsed.mode, parsed.sentinel_master, parsed.db, parsed.tls) == (RedisMode.SENTINEL, "mymaster", 0, True)
    assert (parsed.sentinel_username, parsed.sentinel_password) == ("watcher", "spw")
    assert (parsed.username, parsed.password) == (None, None)  # the URL's are the master's, not the sentinels'


def test_the_same_master_in_the_url_and_the_variable_is_accepted() -> None:
    assert target("redis+sentinel://s1/m", sentinel_master="m").sentinel_master == "m"


def test_an_empty_master_segment_leaves_the_master_to_the_variable() -> None:
    parsed = target("redis+sentinel://s1//2", sentinel_master="m")
    assert (parsed.sentinel_master, parsed.db) == ("m", 2)


def test_redis_mode_sentinel_makes_a_plain_urls_hosts_sentinels() -> None:
    parsed = target("redis://s1,s2:26380/1", mode="sentinel", sentinel_master="m")
    assert parsed.mode is RedisMode.SENTINEL
    assert parsed.nodes == (("s1", 26379), ("s2", 26380))  # the sentinels' default port
    assert (parsed.db, parsed.sentinel_master) == (1, "m")


# ---------------------------------------------------------------- describe


def test_describe_says_mode_hosts_database_and_tls() -> None:
    seeds = target("rediss://127.0.0.1:7000,127.0.0.1:7001", mode="cluster")
    assert seeds.describe() == "cluster 127.0.0.1:7000,127.0.0.1:7001 db 0 tls"
    assert target("redis://[::1]:6379/2").describe() == "standalone [::1]:6379 db 2"
    assert target("unix://alice@/tmp/r.sock").describe() == "standalone unix:/tmp/r.sock db 0 user alice"
    assert target("redis+sentinel://s1/mymaster").describe() == "sentinel master mymaster via s1:26379 db 0"


def test_describe_and_repr_never_show_a_password(ca_file: str) -> None:
    parsed = target(
        f"rediss+sentinel://alice:{SECRET}@s1/m", ca_file=ca_file, sentinel_username="w", sentinel_password="other-secret"
    )
    assert parsed.describe() == f"sentinel master m via s1:26379 db 0 user alice tls ca {ca_file}"
    for text in (parsed.describe(), repr(parsed)):
        assert SECRET not in text and "other-secret" not in text
        assert "s3cr" not in text


# ---------------------------------------------------------------- refusals

SCHEME_MESSAGE = (
    "REDIS_URL must start with redis://, rediss://, unix://, redis+sentinel:// or rediss+sentinel:// (got {!r})"
)


@pytest.mark.parametrize("url", ["http://x", "localhost:6379", "redis:/x", "REDIS://x", " redis://x", ""])
def test_an_unknown_scheme_is_refused(url: str) -> None:
    assert refusal(url) == SCHEME_MESSAGE.format(url)


def test_the_scheme_message_names_exactly_the_accepted_schemes() -> None:
    assert all(scheme in SCHEME_MESSAGE for scheme in SCHEMES)


@pytest.mark.parametrize(
    ("url", "companions", "message"),
    [
        ("redis://x", {"mode": "x"}, "REDIS_MODE must be one of standalone, cluster, sentinel (got 'x')"),
        (
            "redis://h1:7000,h2:7001",
            {},
            "REDIS_URL lists 2 hosts; a list of hosts needs REDIS_MODE=cluster, or a redis+sentinel:// URL for Sentinel",
        ),
        (
            "redis://h1,h2,h3",
            {"mode": "standalone"},
            "REDIS_URL lists 3 hosts; a list of hosts needs REDIS_MODE=cluster, or a redis+sentinel:// URL for Sentinel",
        ),
        (
            "redis://h1:7000/3",
            {"mode": "cluster"},
            "REDIS_URL must name database 0 with REDIS_MODE=cluster: a Redis Cluster has only database 0 (got 3)",
        ),
        (
            "unix:///tmp/r.sock",
            {"mode": "cluster"},
            "REDIS_URL must list TCP hosts with REDIS_MODE=cluster, not a unix:// socket",
        ),
        (
            "unix:///tmp/r.sock",
            {"mode": "sentinel"},
            "REDIS_URL must list the sentinels' TCP hosts with REDIS_MODE=sentinel, not a unix:// socket",
        ),
        (
            "redis+sentinel://s1/m",
            {"mode": "standalone"},
            "REDIS_MODE must be sentinel or unset with a redis+sentinel:// URL (got 'standalone')",
        ),
        (
            "rediss+sentinel://s1/m",
            {"mode": "cluster"},
            "REDIS_MODE must be sentinel or unset with a rediss+sentinel:// URL (got 'cluster')",
        ),
        (
            "redis+sentinel://s1/a",
            {"sentinel_master": "b"},
            "REDIS_SENTINEL_MASTER must match the master REDIS_URL names (got 'b'; REDIS_URL names 'a')",
        ),
        (
            "redis+sentinel://s1",
            {},
            "REDIS_SENTINEL_MASTER must name the master for Sentinel, or REDIS_URL must: redis+sentinel://host:26379/<master>",
        ),
        (
            "redis://s1:26379",
            {"mode": "sentinel"},
            "REDIS_SENTINEL_MASTER must name the master for Sentinel, or REDIS_URL must: redis+sentinel://host:26379/<master>",
        ),
        (
            "redis+sentinel://s1/m/0/x",
            {},
            "REDIS_URL must end in /<master> or /<master>/<db> for Sentinel (got '/m/0/x')",
        ),
        (
            "redis+sentinel://s1/m/x",
            {},
            "REDIS_URL must give the database as a non-negative integer (got 'x')",
        ),
        *[
            (
                "redis://cache",
                {key: "v"},
                f"{variable} is set but Redis is not in Sentinel mode: use a redis+sentinel:// URL or REDIS_MODE=sentinel",
            )
            for key, variable in [
                ("sentinel_master", "REDIS_SENTINEL_MASTER"),
                ("sentinel_username", "REDIS_SENTINEL_USERNAME"),
                ("sentinel_password", "REDIS_SENTINEL_PASSWORD"),
            ]
        ],
        (
            "redis://cache",
            {"mode": "cluster", "sentinel_password": "v"},
            "REDIS_SENTINEL_PASSWORD is set but Redis is not in Sentinel mode: use a redis+sentinel:// URL or REDIS_MODE=sentinel",
        ),
        (
            "redis://cache",
            {"ca_file": "/etc/ssl/ca.pem"},
            "REDIS_CA_FILE is set but REDIS_URL is not TLS: use rediss:// (or rediss+sentinel://), "
            "or REDIS_TLS=true with REDIS_HOST",
        ),
        (
            "unix:///tmp/r.sock",
            {"ca_file": "/etc/ssl/ca.pem"},
            "REDIS_CA_FILE is set but REDIS_URL is not TLS: use rediss:// (or rediss+sentinel://), "
            "or REDIS_TLS=true with REDIS_HOST",
        ),
        ("rediss://cache", {"ca_file": "/nonexistent/ca.pem"}, "REDIS_CA_FILE must name a readable file (got '/nonexistent/ca.pem')"),
        ("redis://", {}, "REDIS_URL must name a host (got 'redis://')"),
        ("redis://:6379/0", {}, "REDIS_URL must name a host (got 'redis://:6379/0')"),
        ("redis://u:pw@/0", {}, "REDIS_URL must name a host (got 'redis://u:***@/0')"),
        ("redis://h1,,h2", {"mode": "cluster"}, "REDIS_URL must name a host (got 'redis://h1,,h2')"),
        ("redis://h1:7000,", {"mode": "cluster"}, "REDIS_URL must name a host (got 'redis://h1:7000,')"),
        ("redis://cache:abc", {}, "REDIS_URL must give each port as an integer between 1 and 65535 (got 'cache:abc')"),
        ("redis://cache:", {}, "REDIS_URL must give each port as an integer between 1 and 65535 (got 'cache:')"),
        ("redis://cache:0", {}, "REDIS_URL must give each port as an integer between 1 and 65535 (got 'cache:0')"),
        ("redis://cache:65536", {}, "REDIS_URL must give each port as an integer between 1 and 65535 (got 'cache:65536')"),
        ("redis://cache:+1", {}, "REDIS_URL must give each port as an integer between 1 and 65535 (got 'cache:+1')"),
        ("redis://[::1]:x", {}, "REDIS_URL must give each port as an integer between 1 and 65535 (got '[::1]:x')"),
        ("redis://::1:6379", {}, "REDIS_URL must put an IPv6 address in brackets, e.g. [::1]:6379 (got '::1:6379')"),
        ("redis://[::1", {}, "REDIS_URL must give each host as name, name:port or [IPv6]:port (got '[::1')"),
        ("redis://[zz]:1", {}, "REDIS_URL must give each host as name, name:port or [IPv6]:port (got '[zz]:1')"),
        ("redis://[::1]6379", {}, "REDIS_URL must give each host as name, name:port or [IPv6]:port (got '[::1]6379')"),
        ("redis://ca che", {}, "REDIS_URL must give each host as name, name:port or [IPv6]:port (got 'ca che')"),
        (
            "redis://h1:7000, h2:7001",
            {"mode": "cluster"},
            "REDIS_URL must give each host as name, name:port or [IPv6]:port (got ' h2:7001')",
        ),
        ("redis://cache/zero", {}, "REDIS_URL must give the database as a non-negative integer (got 'zero')"),
        ("redis://cache/-1", {}, "REDIS_URL must give the database as a non-negative integer (got '-1')"),
        ("redis://cache/0/1", {}, "REDIS_URL must give the database as a non-negative integer (got '0/1')"),
        (
            "redis://cache/0?password=hunter2",
            {},
            "REDIS_URL must not have a query or fragment (?... or #...): give the database in the path, e.g. redis://host:6379/0",
        ),
        (
            "redis://cache/0#x",
            {},
            "REDIS_URL must not have a query or fragment (?... or #...): give the database in the path, e.g. redis://host:6379/0",
        ),
        (
            "unix://",
            {},
            "REDIS_URL must give an absolute socket path after unix://, e.g. unix:///run/redis.sock (got 'unix://')",
        ),
        (
            "unix://localhost/tmp/r.sock",
            {},
            "REDIS_URL must give an absolute socket path after unix://, e.g. unix:///run/redis.sock "
            "(got 'unix://localhost/tmp/r.sock')",
        ),
        (
            "unix://u:pw@/",
            {},
            "REDIS_URL must give an absolute socket path after unix://, e.g. unix:///run/redis.sock (got 'unix://u:***@/')",
        ),
        (
            "unix:///tmp/r.sock?db=x",
            {},
            "REDIS_URL must end in ?db=N (a non-negative integer) or nothing after its unix:// socket path",
        ),
        (
            "unix:///tmp/r.sock?password=hunter2",
            {},
            "REDIS_URL must end in ?db=N (a non-negative integer) or nothing after its unix:// socket path",
        ),
    ],
)
def test_refusals_have_exact_messages(url: str, companions: dict[str, Any], message: str) -> None:
    assert refusal(url, **companions) == message


def test_a_directory_is_not_a_readable_ca_file(tmp_path: Path) -> None:
    assert refusal("rediss://cache", ca_file=str(tmp_path)) == f"REDIS_CA_FILE must name a readable file (got {str(tmp_path)!r})"


@pytest.mark.parametrize(
    "url",
    [
        f"http://alice:{SECRET}@cache",
        f"redis://alice:{SECRET}@:6379",
        f"redis://alice:{SECRET}@cache:x",
        f"redis://alice:{SECRET}@cache/x",
        f"redis://alice:{SECRET}@h1,h2",
        f"rediss+sentinel://alice:{SECRET}@s1",
        f"unix://alice:{SECRET}@/",
        f"ftp://alice:{SECRET}@cache/0?password={SECRET}",
        f"redis://cache/0?password={SECRET}",
    ],
)
def test_no_refusal_shows_the_password(url: str) -> None:
    message = refusal(url)
    assert SECRET not in message and "s3cr" not in message


# ---------------------------------------------------------------- the helpers


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("redis://alice@cache", "redis://alice@cache"),
        ("redis://alice:pw@cache", "redis://alice:***@cache"),
        ("redis://:p@w/x@cache/0", "redis://:***@cache/0"),
        ("alice:pw@cache", "alice:***@cache"),
        ("redis://cache/0?password=pw", "redis://cache/0?***"),
    ],
)
def test_redact_hides_the_password_and_the_query(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_parse_address_names_the_variable_it_is_given() -> None:
    assert parse_address("h", default_port=1, variable="REDIS_HOST") == ("h", 1)
    with pytest.raises(ConfigError, match=r"^REDIS_HOST must give each port as an integer between 1 and 65535 \(got 'h:x'\)$"):
        parse_address("h:x", default_port=1, variable="REDIS_HOST")


def test_a_username_with_reserved_characters_must_be_percent_encoded() -> None:
    message = "REDIS_URL must percent-encode / ? # [ ] @ in its username, e.g. %40 for @"
    assert refusal("redis://cache/0?password=s3cr#t/p@ss") == message  # the "@" was the password's, not userinfo's
    assert refusal("unix://a?b:pw@/tmp/r.sock") == message
    assert redact("redis://cache/0?password=pw@ss") == "redis://***@ss"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_file_without_read_permission_is_not_a_readable_ca_file(ca_file: str) -> None:
    os.chmod(ca_file, 0)
    assert refusal("rediss://cache", ca_file=ca_file) == f"REDIS_CA_FILE must name a readable file (got {ca_file!r})"


def test_absurdly_long_numbers_are_refused_not_crashed_on() -> None:
    digits = "9" * 5000  # past int()'s digit limit
    assert refusal(f"redis://cache:{digits}") == (
        f"REDIS_URL must give each port as an integer between 1 and 65535 (got {'cache:' + digits!r})"
    )
    assert refusal(f"redis://cache/{digits}") == f"REDIS_URL must give the database as a non-negative integer (got {digits!r})"
    assert refusal(f"unix:///tmp/r.sock?db={digits}").startswith("REDIS_URL must end in ?db=N")
    assert refusal("redis://cache:00006379").startswith("REDIS_URL must give each port")
