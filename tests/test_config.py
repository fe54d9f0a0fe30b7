"""Config: defaults, validation (fact sheet §13.1 #13), secrets, and Config.load's precedence."""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import pytest

from polyn import ConfigError
from polyn.config import Config

BASE = {"domain": "com.test", "source_root": "user.backend"}


def write_pyproject(folder: Path, body: str) -> Path:
    path = folder / "pyproject.toml"
    path.write_text(f'[project]\nname = "svc"\n\n[tool.polyn]\n{body}\n', encoding="utf-8")
    return path


def test_defaults() -> None:
    config = Config(**BASE)
    assert config.servers == ("nats://127.0.0.1:4222",)
    assert config.schema_store == "POLYN_SCHEMAS"
    assert config.migrations_bucket == "POLYN_MIGRATIONS"
    assert config.max_replicas is None
    assert (config.migrations_dir, config.schemas_dir) == ("migrations", "schemas")
    assert config.kv_replicas == 1
    assert config.credentials is config.password is config.tls_ca_file is None


def test_config_is_frozen() -> None:
    config = Config(**BASE)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.domain = "com.other"  # type: ignore[misc]


@pytest.mark.parametrize(
    "name",
    ["user.backend", "nats.graphql.proxy", "user:backend", "com.test", "com.test.foo", "com:test"],
)
def test_valid_domains_and_source_roots(name: str) -> None:
    config = Config(domain=name, source_root=name)
    assert (config.domain, config.source_root) == (name, name)


@pytest.mark.parametrize(
    "name",
    [
        "user   created",
        "user\tcreated",
        "user\n\rcreated",
        "user:*%[]<>$!@#-_created",
        ".user",
        "user.",
        ":user",
        "user:",
        None,
    ],
)
def test_invalid_source_root_names_the_field_and_value(name: str | None) -> None:
    with pytest.raises(ConfigError) as caught:
        Config(domain="com.test", source_root=name)  # type: ignore[arg-type]
    assert str(caught.value) == (
        "You must configure the `source_root` for Polyn. Event source must be lowercase, "
        f"alphanumeric and dot/colon separated, got {name}"
    )


@pytest.mark.parametrize("name", ["com test", "com.", "Com.Test", None])
def test_invalid_domain_names_the_field_and_value(name: str | None) -> None:
    with pytest.raises(ConfigError) as caught:
        Config(domain=name, source_root="user.backend")  # type: ignore[arg-type]
    assert str(caught.value) == (
        "You must configure the `domain` for Polyn. It must be lowercase, alphanumeric and "
        f"dot/colon separated, got {name}"
    )


def test_servers_accept_a_list_or_a_comma_separated_string() -> None:
    assert Config(**BASE, servers=["nats://a:4222", "nats://b:4222"]).servers == (
        "nats://a:4222",
        "nats://b:4222",
    )
    assert Config(**BASE, servers="nats://a:4222, nats://b:4222").servers == (
        "nats://a:4222",
        "nats://b:4222",
    )
    with pytest.raises(ConfigError, match="at least one NATS server"):
        Config(**BASE, servers=[])
    with pytest.raises(ConfigError, match="servers must be NATS URLs"):
        Config(**BASE, servers=[4222])  # type: ignore[list-item]


def test_kv_replicas_are_capped_by_max_replicas() -> None:
    assert Config(**BASE, kv_replicas=3, max_replicas=1).kv_replicas == 1
    assert Config(**BASE, kv_replicas=3, max_replicas=5).kv_replicas == 3
    assert Config(**BASE, kv_replicas=3).kv_replicas == 3


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("kv_replicas", 0, "kv_replicas must be a whole number >= 1, got 0"),
        ("max_replicas", True, "max_replicas must be a whole number >= 1, got True"),
        ("schema_store", "MY STORE", "schema_store must be a NATS key-value bucket name"),
        ("migrations_bucket", "a.b", "migrations_bucket must be a NATS key-value bucket name"),
        ("user", 5, "user must be a string or None, got 5"),
    ],
)
def test_invalid_values_name_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(**BASE, **{field: value})


def test_paths_accept_pathlike(tmp_path: Path) -> None:
    config = Config(**BASE, schemas_dir=tmp_path / "schemas", credentials=tmp_path / "x.creds")
    assert config.schemas_dir == str(tmp_path / "schemas")
    assert config.credentials == str(tmp_path / "x.creds")


def test_secrets_never_appear_in_repr_or_errors() -> None:
    config = Config(
        **BASE,
        servers=["nats://alice:s3cret-pw@nats-1:4222", "tls://t0ken-value@nats-2:4222"],
        user="alice",
        password="hunter2-pw",
        token="tok-123456",
        nkeys_seed="SUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4GY",
    )
    shown = repr(config)
    for secret in ("s3cret-pw", "t0ken-value", "hunter2-pw", "tok-123456", "SUAMK2FG"):
        assert secret not in shown
    assert "user='alice'" in shown
    assert "password='***'" in shown
    assert "nats://alice:***@nats-1:4222" in shown
    assert "tls://***@nats-2:4222" in shown
    assert config.password == "hunter2-pw"  # hidden from view, not lost
    with pytest.raises(ConfigError) as caught:
        Config(**BASE, password=12345678)  # type: ignore[arg-type]
    assert "12345678" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        Config.load(environ=_env(), cwd="/", token=987654321)
    assert "987654321" not in str(caught.value)


# -- Config.load -----------------------------------------------------------------------------------


def test_a_password_with_at_signs_and_slashes_is_hidden_whole() -> None:
    # Pasted unencoded, "p@ss/w@rd" used to leave "ss/w@rd" on view after the first "@".
    config = Config(**BASE, servers=["nats://alice:p@ss/w@rd@nats-1:4222", "n@t/a@nats-2:4222"])
    shown = repr(config)
    assert "nats://alice:***@nats-1:4222" in shown
    assert "***@nats-2:4222" in shown
    for piece in ("p@ss", "ss/w", "w@rd", "n@t", "t/a"):
        assert piece not in shown


def test_load_reads_tool_polyn_from_pyproject(tmp_path: Path) -> None:
    path = write_pyproject(
        tmp_path,
        'domain = "com.acme"\nsource-root = "orders.payments"\nservers = ["nats://n1:4222"]\n'
        "kv_replicas = 3\nmax_replicas = 2\n",
    )
    config = Config.load(pyproject=path, environ={})
    assert config.domain == "com.acme"
    assert config.source_root == "orders.payments"
    assert config.servers == ("nats://n1:4222",)
    assert config.kv_replicas == 2


def test_load_precedence_later_wins(tmp_path: Path) -> None:
    path = write_pyproject(
        tmp_path, 'domain = "com.file"\nsource_root = "from.file"\nschema_store = "FILE_STORE"\n'
    )
    environ = {"POLYN_SOURCE_ROOT": "from.env", "POLYN_SCHEMA_STORE": "ENV_STORE"}
    config = Config.load(pyproject=path, environ=environ, schema_store="FLAG_STORE")
    assert config.domain == "com.file"  # only the file sets it
    assert config.source_root == "from.env"  # the variable beats the file
    assert config.schema_store == "FLAG_STORE"  # the override beats both


def test_load_ignores_none_overrides_and_empty_variables() -> None:
    environ = {**_env(), "POLYN_SCHEMA_STORE": "", "POLYN_ENV": "production"}
    config = Config.load(cwd="/", environ=environ, servers=None, schema_store=None)
    assert config.schema_store == "POLYN_SCHEMAS"
    assert config.servers == ("nats://127.0.0.1:4222",)


def test_load_nats_variables_and_their_precedence() -> None:
    environ = {**_env(), "NATS_URL": "nats://url:4222"}
    assert Config.load(cwd="/", environ=environ).servers == ("nats://url:4222",)
    environ["NATS_SERVERS"] = "nats://s1:4222,nats://s2:4222"
    assert Config.load(cwd="/", environ=environ).servers == ("nats://s1:4222", "nats://s2:4222")
    environ["POLYN_SERVERS"] = "nats://polyn:4222"
    assert Config.load(cwd="/", environ=environ).servers == ("nats://polyn:4222",)
    environ.update(NATS_CREDENTIALS="/etc/nats/app.creds", NATS_CA_FILE="/etc/nats/ca.pem")
    config = Config.load(cwd="/", environ=environ)
    assert (config.credentials, config.tls_ca_file) == ("/etc/nats/app.creds", "/etc/nats/ca.pem")
    environ["POLYN_TLS_CA_FILE"] = "/etc/polyn/ca.pem"
    assert Config.load(cwd="/", environ=environ).tls_ca_file == "/etc/polyn/ca.pem"


def test_load_every_field_has_a_polyn_variable() -> None:
    environ = {
        **_env(),
        "POLYN_MIGRATIONS_BUCKET": "MIG",
        "POLYN_MAX_REPLICAS": "3",
        "POLYN_KV_REPLICAS": "5",
        "POLYN_MIGRATIONS_DIR": "db/migrations",
        "POLYN_SCHEMAS_DIR": "db/schemas",
        "POLYN_CREDENTIALS": "app.creds",
        "POLYN_NKEYS_SEED": "seed.nk",
        "POLYN_USER": "alice",
        "POLYN_PASSWORD": "pw",
        "POLYN_TOKEN": "tok",
        "POLYN_TLS_CERT_FILE": "cert.pem",
        "POLYN_TLS_KEY_FILE": "key.pem",
    }
    config = Config.load(cwd="/", environ=environ)
    assert config.migrations_bucket == "MIG"
    assert (config.max_replicas, config.kv_replicas) == (3, 3)
    assert (config.migrations_dir, config.schemas_dir) == ("db/migrations", "db/schemas")
    assert (config.credentials, config.nkeys_seed) == ("app.creds", "seed.nk")
    assert (config.user, config.password, config.token) == ("alice", "pw", "tok")
    assert (config.tls_cert_file, config.tls_key_file) == ("cert.pem", "key.pem")


def test_load_finds_the_nearest_pyproject_and_resolves_its_paths(tmp_path: Path) -> None:
    write_pyproject(
        tmp_path,
        'domain = "com.acme"\nsource_root = "orders"\nmigrations_dir = "db/migrations"\n'
        'credentials = "/abs/app.creds"\n',
    )
    nested = tmp_path / "src" / "svc"
    nested.mkdir(parents=True)
    config = Config.load(cwd=nested, environ={})
    assert config.domain == "com.acme"
    assert config.migrations_dir == os.path.join(tmp_path, "db/migrations")
    assert config.credentials == "/abs/app.creds"


def test_load_without_domain_says_how_to_set_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.load(cwd=tmp_path, environ={"POLYN_SOURCE_ROOT": "orders"})
    assert "You must configure the `domain` for Polyn" in str(caught.value)
    assert "POLYN_DOMAIN" in str(caught.value)


def test_load_rejects_unknown_keys_and_settings(tmp_path: Path) -> None:
    path = write_pyproject(tmp_path, 'domain = "com.acme"\nsource_root = "x"\nsorce_root = "y"\n')
    with pytest.raises(ConfigError, match=r"Unknown key 'sorce_root' in \[tool\.polyn\]"):
        Config.load(pyproject=path, environ={})
    with pytest.raises(ConfigError, match="unknown setting 'servrs'"):
        Config.load(cwd="/", environ=_env(), servrs="nats://x:4222")


def test_load_reports_bad_values_with_their_origin(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match="POLYN_KV_REPLICAS must be a whole number >= 1, got 'two'"
    ):
        Config.load(cwd="/", environ={**_env(), "POLYN_KV_REPLICAS": "two"})
    path = write_pyproject(tmp_path, 'domain = "com.acme"\nsource_root = "x"\nservers = 4222\n')
    with pytest.raises(ConfigError, match=r"servers in .* must be a list of NATS URLs"):
        Config.load(pyproject=path, environ={})
    (tmp_path / "pyproject.toml").write_text("[tool.polyn\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="Could not read"):
        Config.load(pyproject=path, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        Config.load(pyproject=tmp_path / "missing.toml", environ={})


def test_load_source_root_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"`source_root` .* got orders payments"):
        Config.load(cwd=tmp_path, environ={**_env(), "POLYN_SOURCE_ROOT": "orders payments"})


def _env() -> dict[str, str]:
    return {"POLYN_DOMAIN": "com.test", "POLYN_SOURCE_ROOT": "user.backend"}
