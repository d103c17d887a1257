"""The device registry and data store, on SQLite and on PostgreSQL."""

import json

import pytest

from connectors.iot_agent.registry import RegistryError, Tables, connect, definitions

from .pg import own_database


@pytest.fixture(params=["sqlite", "postgresql"])
def tables(request, tmp_path):
    if request.param == "sqlite":
        t = Tables(*connect(str(tmp_path / "registry.sqlite3")))
        yield t
        t.close()
    else:
        with own_database() as dsn:
            t = Tables(*connect(dsn))
            yield t
            t.close()


SPEC = {"id": "dev1", "label": "thermometer", "attrs": [{"label": "temperature", "type": "float"}]}


def test_create_get_list_update_delete(tables):
    created = tables.create_device("admin", SPEC, now=1000.0)
    assert created["id"] == "dev1" and created["tenant"] == "admin" and created["generation"] == 1
    assert created["created"] == "1970-01-01T00:16:40.000Z"
    assert tables.get_device("admin", "dev1") == created
    other = tables.create_device("admin", {"label": "generated id"})
    assert len(other["id"]) == 6 and int(other["id"], 16) >= 0
    tables.create_device("other", SPEC)
    assert [d["id"] for d in tables.list_devices("admin")] == sorted(["dev1", other["id"]])
    assert len(tables.list_devices()) == 3
    updated = tables.update_device("admin", "dev1", {"label": "renamed"}, now=2000.0)
    assert updated["label"] == "renamed" and updated["attrs"] == SPEC["attrs"]
    assert definitions(updated) == {"temperature": "float"}
    assert tables.rotate_credential("admin", "dev1")["generation"] == 2
    assert tables.delete_device("admin", "dev1")["label"] == "renamed"
    assert tables.find_device("admin", "dev1") is None
    assert tables.find_device("other", "dev1") is not None  # tenants are separate
    tables.commit()


def test_refusals(tables):
    tables.create_device("admin", SPEC)
    with pytest.raises(RegistryError) as caught:
        tables.create_device("admin", SPEC)
    assert caught.value.status == 409 and "already exists" in caught.value.message
    with pytest.raises(RegistryError) as caught:
        tables.get_device("admin", "nope")
    assert caught.value.status == 404 and caught.value.error == "no_such_device"
    with pytest.raises(RegistryError, match="cannot change"):
        tables.update_device("admin", "dev1", {"id": "dev2"})


@pytest.mark.parametrize("tenant, spec, words", [
    ("Admin", SPEC, "tenant 'Admin' must be"),
    ("admin", [], "a device is a JSON object, not list"),
    ("admin", {"label": "x", "colour": 1}, "unknown device key 'colour'"),
    ("admin", {"id": "a b", "label": "x"}, "device id 'a b' must be"),
    ("admin", {}, "'label' must be non-empty text"),
    ("admin", {"label": " "}, "'label' must be non-empty text"),
    ("admin", {"label": "x", "attrs": {}}, "'attrs' must be a list"),
    ("admin", {"label": "x", "attrs": [{"label": "t"}]}, "attrs[0] must be"),
    ("admin", {"label": "x", "attrs": [{"label": "t", "type": "kelvin"}]}, "attrs[0].type 'kelvin' is not one of"),
    ("admin", {"label": "x", "attrs": [{"label": 'a"b', "type": "float"}]}, "attrs[0].label must be"),
    ("admin", {"label": "x", "attrs": [{"label": "t", "type": "float"}, {"label": "t", "type": "bool"}]},
     "attrs[1].label 't' is defined twice"),
])
def test_bad_specs(tables, tenant, spec, words):
    with pytest.raises(RegistryError) as caught:
        tables.create_device(tenant, spec)
    assert caught.value.status == 400 and words in caught.value.message


def _msg(device, ts, **attrs):
    return {"metadata": {"tenant": "admin", "deviceid": device, "timestamp": ts}, "attrs": attrs}


def test_a_batch_is_stored_row_by_row_in_its_order_with_its_attributes_as_compact_json(tables):
    """SQLite inserts a batch as one statement over one JSON document: each
    row must hold what a row of its own would (the same text, escapes,
    integers beyond 64 bits, NaN), in the batch's order."""
    odd = [{"q": 'a "quote", a \\ backslash\n\u00e9 \U0001F600 \u0000'}, {"big": 2 ** 70, "neg": -2 ** 65},
           {"f": 1e308, "tiny": 1.5e-300, "g": 0.1, "z": -0.0}, {"nan": float("nan"), "inf": float("-inf")},
           {"nested": {"x": [1, {"y": None}], "t": True}}, {}, {"k\u00e9y": "v"}]
    messages = [{"metadata": {"tenant": "admin", "deviceid": f'd"{i % 2}', "timestamp": 7}, "attrs": attrs}
                for i, attrs in enumerate(odd)]
    tables.insert_data(messages)
    tables.commit()
    rows = tables._run("SELECT tenant, device, ts, attrs FROM device_data ORDER BY seq").fetchall()
    assert [tuple(row) for row in rows] == [
        ("admin", m["metadata"]["deviceid"], 7, json.dumps(m["attrs"], separators=(",", ":"))) for m in messages]


def test_data_queries(tables):
    tables.insert_data([_msg("d", 1000 + i, t=i, **({"h": i} if i % 2 else {})) for i in range(10)]
                       + [_msg("e", 1000, t=99)])
    tables.commit()
    rows, total = tables.query_data("admin", "d")
    assert total == 10 and [ts for ts, _ in rows] == list(range(1009, 999, -1))
    rows, total = tables.query_data("admin", "d", order="asc", limit=3, offset=3)
    assert total == 10 and [a["t"] for _, a in rows] == [3, 4, 5]
    rows, total = tables.query_data("admin", "d", date_from=1002, date_to=1004)  # [from, to)
    assert total == 2 and [a["t"] for _, a in rows] == [3, 2]
    rows, total = tables.query_data("admin", "d", attr="h")
    assert total == 5 and all("h" in a for _, a in rows)
    assert tables.query_data("other", "d") == ([], 0)
    assert tables.count_data("admin") == 11 and tables.count_data() == 11
