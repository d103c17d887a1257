"""What the agent's broker provisioning lets each account do, in process
against a real Mosquitto with the dynamic-security plugin: a device publishes
its own attributes (both topic forms) and reads its own configuration, and
nothing of another device or tenant; the agent's own role is given once and
lets it actuate and read; enabling, disabling, removing and reconciling
leave the broker as the registry says."""

import pytest
import pytest_twisted

from connectors.iot_agent.mqtt import DeviceAccount, DynsecError

from .clients import MqttDevice, blocking
from .test_dynsec import NOT_AUTHORIZED, account, broker, connects, control  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(120)


@pytest_twisted.inlineCallbacks
def test_a_device_publishes_its_own_attributes_in_both_forms_and_nothing_else(broker, control):  # noqa: F811
    dynsec = yield control.start()
    mine = account("acme", "p1")
    for other in (mine, account("acme", "p2"), account("globex", "p1")):
        yield dynsec.provision(other)
    device = MqttDevice(broker.port, mine.username, mine.password)
    assert not (yield blocking(device.connect)).is_failure
    for topic in ("acme:p1/attrs", "/acme/p1/attrs"):
        assert not (yield blocking(device.publish, topic, "{}")).is_failure, topic
    for topic in ("acme:p2/attrs", "/acme/p2/attrs", "globex:p1/attrs", "/globex/p1/attrs",
                  "acme:p1/config", "/acme/p1/config"):  # no one else's data, no forged actuation
        assert (yield blocking(device.publish, topic, "{}")).value == NOT_AUTHORIZED, topic
    for topic in ("acme:p1/config", "/acme/p1/config"):
        [granted] = yield blocking(device.subscribe, topic)
        assert not granted.is_failure, topic
    for topic in ("globex:p1/config", "/globex/p1/config", "acme:p2/config", "+/config"):
        [granted] = yield blocking(device.subscribe, topic)
        assert granted.is_failure, topic
    device.close()


@pytest_twisted.inlineCallbacks
def test_the_agents_role_is_given_once_and_lets_it_actuate_devices_and_read_them(broker, control):  # noqa: F811
    dynsec = yield control.start()
    yield dynsec.checked([{"command": "createClient", "username": "agent-acl", "password": "agent-acl-secret"}])
    assert (yield dynsec.grant_agent("agent-acl")) is True
    assert (yield dynsec.grant_agent("agent-acl")) is False  # it has the role: not given (nor disconnected) again
    mine = account("acme", "a1")
    yield dynsec.provision(mine)
    agent = MqttDevice(broker.port, "agent-acl", "agent-acl-secret", client_id="agent-acl-1")
    device = MqttDevice(broker.port, mine.username, mine.password)
    assert not (yield blocking(agent.connect)).is_failure
    assert not (yield blocking(device.connect)).is_failure
    [granted] = yield blocking(agent.subscribe, "+/attrs")
    assert not granted.is_failure
    yield blocking(device.subscribe, "acme:a1/config")
    assert not (yield blocking(agent.publish, "acme:a1/config", '{"led": 1}')).is_failure
    assert (yield blocking(device.next_message)) == ("acme:a1/config", b'{"led": 1}')
    assert not (yield blocking(device.publish, "acme:a1/attrs", '{"t": 2}')).is_failure
    assert (yield blocking(agent.next_message)) == ("acme:a1/attrs", b'{"t": 2}')
    agent.close()
    device.close()


@pytest_twisted.inlineCallbacks
def test_disabling_and_enabling_a_devices_account(broker, control):  # noqa: F811
    dynsec = yield control.start()
    mine = account("acme", "e1")
    yield dynsec.provision(mine)
    yield dynsec.enable("acme", ["e1"], False)
    assert (yield connects(broker, mine)).is_failure
    yield dynsec.enable("acme", ["e1"], True)
    assert not (yield connects(broker, mine)).is_failure
    yield dynsec.enable("acme", ["e1"], False)
    yield dynsec.provision(mine)  # provisioning an existing account enables it again
    assert not (yield connects(broker, mine)).is_failure
    assert (yield dynsec.enable("acme", [], True)) == []  # nothing to enable: nothing asked of the broker


@pytest_twisted.inlineCallbacks
def test_removing_a_device_removes_its_role_too(broker, control):  # noqa: F811
    dynsec = yield control.start()
    mine = account("acme", "d1")
    yield dynsec.provision(mine)
    [found] = yield dynsec.run([{"command": "getRole", "rolename": mine.role}])
    assert "error" not in found
    yield dynsec.remove("acme", "d1")
    [found] = yield dynsec.run([{"command": "getRole", "rolename": mine.role}])
    assert "not found" in found["error"].lower()


@pytest_twisted.inlineCallbacks
def test_reconcile_gives_back_a_role_taken_away_and_binds_a_client_id_left_out(broker, control):  # noqa: F811
    dynsec = yield control.start()
    roleless, unbound = account("acme", "k1"), account("acme", "k2")
    fields = {k: v for k, v in unbound.fields().items() if k != "clientid"}
    yield dynsec.checked([dynsec.device_commands(roleless)[0], dynsec.device_commands(unbound)[0],
                          {"command": "createClient", **roleless.fields()},
                          {"command": "createClient", **fields, "roles": [{"rolename": unbound.role}]}])
    assert (yield dynsec.reconcile([roleless, unbound], served=lambda tenant: True)) == 2
    device = MqttDevice(broker.port, roleless.username, roleless.password)
    assert not (yield blocking(device.connect)).is_failure
    assert not (yield blocking(device.publish, "acme:k1/attrs", "{}")).is_failure
    device.close()
    assert (yield connects(broker, unbound, client_id="iot-agent-0")).is_failure
    assert not (yield connects(broker, unbound)).is_failure


@pytest_twisted.inlineCallbacks
def test_reconcile_in_small_batches_makes_every_account_with_its_role(broker, control):  # noqa: F811
    dynsec = yield control.start()
    accounts = [account("acme", f"b{i}") for i in range(3)] + [account("gone", "b0")]
    served = lambda tenant: tenant == "acme"  # noqa: E731
    assert (yield dynsec.reconcile(accounts, served=served, batch=2)) == 0
    for acct in accounts[:3]:
        device = MqttDevice(broker.port, acct.username, acct.password)
        assert not (yield blocking(device.connect)).is_failure, acct.username
        assert not (yield blocking(device.publish, f"{acct.username}/attrs", "{}")).is_failure, acct.username
        device.close()
    assert (yield connects(broker, accounts[3])).is_failure


@pytest_twisted.inlineCallbacks
def test_a_broker_error_while_provisioning_or_reconciling_is_raised(broker, control):  # noqa: F811
    dynsec = yield control.start()
    bad = DeviceAccount("acme", "x1", None, 1)  # the broker refuses an account without a password
    with pytest.raises(DynsecError, match="createClient"):
        yield dynsec.provision(bad)
    with pytest.raises(DynsecError, match="createClient"):
        yield dynsec.reconcile([DeviceAccount("acme", "x2", None, 1)], served=lambda tenant: True)
