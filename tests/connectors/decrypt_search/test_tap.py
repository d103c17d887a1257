"""twistd decrypt-search's options: keys from a file or the environment, errors naming the option."""

import json

import pytest

from connectors.decrypt_search import tap

from .support import World, connector_toml


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


@pytest.fixture
def options(tmp_path, world, monkeypatch):
    config = tmp_path / "ds.toml"
    (tmp_path / "order.schema.json").write_text("{}")
    config.write_text(connector_toml(world, "acme"))
    monkeypatch.delenv(tap.KEY_ENV, raising=False)

    def parse(env, *extra):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        opts = tap.Options()
        opts.parseOptions(["--config", str(config), "--state-dir", str(tmp_path / "state"), *extra])
        return opts

    return parse


def test_the_key_from_the_environment_wins_over_the_files(world, options):
    (world.dir / "acme.key").chmod(0o644)  # would be refused, but is not read
    opts = options({tap.KEY_ENV: world.keys["acme"].to_json()})
    assert opts.keys.public == world.public("acme")
    assert opts.settings.payload_passthru is True


def test_key_file_option_and_loose_permissions(world, options):
    opts = options({}, "--key-file", str(world.dir / "acme.key"))
    assert opts.keys.public == world.public("acme")
    (world.dir / "acme.key").chmod(0o640)
    with pytest.raises(SystemExit, match="configuration error: key file .* loose permissions 0640"):
        options({}, "--key-file", str(world.dir / "acme.key"))


def test_someone_elses_key_or_a_bad_variable_is_refused(world, options):
    with pytest.raises(SystemExit, match="organisation.name: the key file is 'globex'"):
        options({}, "--key-file", str(world.dir / "globex.key"))
    with pytest.raises(SystemExit, match=f"environment variable {tap.KEY_ENV} is not a relayrouter key"):
        options({tap.KEY_ENV: "not json"})
    bad = json.loads(world.keys["acme"].to_json())
    bad["ed25519_seed"] = "c2hvcnQ="
    with pytest.raises(SystemExit) as caught:
        options({tap.KEY_ENV: json.dumps(bad)})
    assert "ed25519_seed is 5 bytes" in str(caught.value)
    assert bad["x25519_private"] not in str(caught.value)


def test_config_is_required_and_named():
    opts = tap.Options()
    with pytest.raises(SystemExit, match=r"--config \(DECRYPT_SEARCH_CONFIG\): required"):
        opts.parseOptions([])
    assert "DECRYPT_SEARCH_KEY" in str(opts) or "[env DECRYPT_SEARCH_KEY_FILE]" in opts.docs["key-file"]


def test_a_short_jwt_secret_is_named_at_start(world, options):
    world.jwt_secret_file.write_text("too-short")
    with pytest.raises(SystemExit, match=r"configuration error: http.auth.keys\[0\]: .* 9 bytes; HS256 needs "
                                               "at least 32"):
        options({})
