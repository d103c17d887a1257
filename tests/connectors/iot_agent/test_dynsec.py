"""The agent's broker provisioning, in process, against a real Mosquitto with
the dynamic-security plugin: the code that creates, repairs, enables and
removes device accounts runs in the test's own reactor, and real paho
devices try the accounts it made."""

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from connectors.iot_agent.mqtt import (DYNSEC_RESPONSE, DeviceAccount, DynamicSecurity, DynsecError,
                                       ReactorMqtt)
from connectors.iot_agent.tap import Options

from .clients import MqttDevice, blocking, try_connect
from .harness import ADMIN_PASSWORD, Mosquitto

pytestmark = pytest.mark.timeout(120)

NOT_AUTHORIZED = 135


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    broker = Mosquitto(tmp_path_factory.mktemp("dynsec") / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


class Control:
    """The agent's control connection and dynamic-security client, in process."""

    def __init__(self, broker, client_id: str) -> None:
        self.ready = defer.Deferred()
        self.mqtt = ReactorMqtt(reactor, "127.0.0.1", broker.port, client_id, "admin", ADMIN_PASSWORD,
                                on_message=lambda _, m: self.dynsec.on_response(m.payload),
                                on_connected=self._up, name=f"test {client_id}")
        self.dynsec = DynamicSecurity(self.mqtt, reactor)

    def _up(self, mqtt):
        d = mqtt.subscribe([(DYNSEC_RESPONSE, 1)])
        d.addCallback(lambda _: None if self.ready.called else reactor.callLater(0, self._ready))
        return d

    def _ready(self) -> None:
        if not self.ready.called:  # outside paho's callback, whose lock stop() needs
            self.ready.callback(self.dynsec)

    def start(self) -> defer.Deferred:
        self.mqtt.start()
        return self.ready.addTimeout(20, reactor)

    def stop(self) -> None:
        self.mqtt.stop()


@pytest.fixture
def control(broker, request):
    control = Control(broker, "test-control-" + request.node.name[-40:].replace("[", "-").replace("]", ""))
    yield control
    control.stop()


def account(tenant: str, device_id: str, generation: int = 1) -> DeviceAccount:
    return DeviceAccount(tenant, device_id, f"secret-{tenant}-{device_id}-{generation}", generation)


def connects(broker, acct: DeviceAccount, client_id=None, password=None, **kwargs) -> defer.Deferred:
    return blocking(try_connect, broker.port, acct.username, password or acct.password,
                    acct.client_id if client_id is None else client_id, **kwargs)


# ------------------------------------------------------------- client ids

@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
@pytest.mark.parametrize("clean", [True, False])
@pytest_twisted.inlineCallbacks
def test_device_account_is_bound_to_its_own_client_id(broker, control, protocol, clean):
    dynsec = yield control.start()
    mine, other = account("acme", "b1"), account("globex", "b2")
    yield dynsec.provision(mine)
    yield dynsec.provision(other)
    for foreign in ("iot-agent-0", "iot-agent-control", other.client_id, "acme:b1x"):
        rc = yield connects(broker, mine, client_id=foreign, protocol=protocol, clean=clean)
        assert rc.is_failure, f"{mine.username} connected as {foreign!r}"
    if protocol == "5" or clean:  # an empty id: the broker's own choice is not the account's either
        rc = yield connects(broker, mine, client_id="", protocol=protocol, clean=True)
        assert rc.is_failure
    rc = yield connects(broker, mine, protocol=protocol, clean=clean)
    assert not rc.is_failure


@pytest_twisted.inlineCallbacks
def test_reconcile_binds_accounts_made_without_a_client_id(broker, control):
    """Accounts an earlier agent made (no client id, no generation) are
    repaired once: the device is disconnected, its own id works, others are
    refused; a second reconcile changes nothing and disconnects nobody."""
    dynsec = yield control.start()
    old = account("acme", "old1")
    yield dynsec.checked([dynsec.device_commands(old)[0],
                          {"command": "createClient", "username": old.username, "password": old.password,
                           "roles": [{"rolename": old.role}]}])
    squatter = MqttDevice(broker.port, old.username, old.password, client_id="iot-agent-0")
    assert not (yield blocking(squatter.connect)).is_failure  # before: any client id
    repaired = yield dynsec.reconcile([old], served=lambda tenant: True)
    assert repaired == 1
    yield blocking(squatter.disconnects.get, timeout=20)  # the broker ended the squatter's session
    squatter.client.loop_stop()
    assert (yield connects(broker, old, client_id="iot-agent-0")).is_failure
    device = MqttDevice(broker.port, old.username, old.password)
    assert not (yield blocking(device.connect)).is_failure
    repaired = yield dynsec.reconcile([old], served=lambda tenant: True)
    assert repaired == 0
    assert not (yield blocking(device.publish, "acme:old1/attrs", "{}")).is_failure
    assert device.disconnects.empty()
    device.close()


# ------------------------------------------------------------------ roles

@pytest_twisted.inlineCallbacks
def test_the_same_device_id_in_two_tenants_has_two_roles(broker, control):
    dynsec = yield control.start()
    acme, globex = account("acme", "s1"), account("globex", "s1")
    yield dynsec.provision(acme)
    yield dynsec.provision(globex)
    device = MqttDevice(broker.port, globex.username, globex.password)
    assert not (yield blocking(device.connect)).is_failure
    assert not (yield blocking(device.publish, "globex:s1/attrs", "{}")).is_failure
    rc = yield blocking(device.publish, "acme:s1/attrs", "{}")
    assert rc.value == NOT_AUTHORIZED
    device.close()
    yield dynsec.remove("globex", "s1")
    assert (yield connects(broker, globex)).is_failure
    device = MqttDevice(broker.port, acme.username, acme.password)
    assert not (yield blocking(device.connect)).is_failure
    assert not (yield blocking(device.publish, "acme:s1/attrs", "{}")).is_failure  # its role is intact
    device.close()


# ------------------------------------------------------------ credentials

@pytest.mark.parametrize("how", ["rotated", "rotated while the broker was away, then reconciled"])
@pytest_twisted.inlineCallbacks
def test_a_new_password_reaches_the_broker(broker, control, how):
    dynsec = yield control.start()
    first = account("acme", f"r{len(how)}", generation=1)
    yield dynsec.provision(first)
    second = account("acme", first.device_id, generation=2)
    if how == "rotated":
        yield dynsec.provision(second, set_password=True)
    else:
        assert (yield dynsec.reconcile([second], served=lambda tenant: True)) == 1
    assert (yield connects(broker, first)).is_failure
    assert not (yield connects(broker, second)).is_failure


# ---------------------------------------------------------------- tenants

@pytest_twisted.inlineCallbacks
def test_reconcile_disables_devices_of_tenants_not_served(broker, control):
    dynsec = yield control.start()
    kept, gone = account("acme", "t1"), account("gone", "t1")
    yield dynsec.reconcile([kept, gone], served=lambda tenant: tenant == "acme")
    assert not (yield connects(broker, kept)).is_failure
    assert (yield connects(broker, gone)).is_failure
    yield dynsec.reconcile([kept, gone], served=lambda tenant: True)
    assert not (yield connects(broker, gone)).is_failure


# ----------------------------------------------------------------- errors

@pytest_twisted.inlineCallbacks
def test_broker_errors_are_raised_not_swallowed(broker, control):
    dynsec = yield control.start()
    with pytest.raises(DynsecError, match="addClientRole: Client not found"):
        yield dynsec.grant_agent("no-such-account")
    with pytest.raises(DynsecError, match="createRole: Role already exists"):
        yield dynsec.checked([{"command": "createRole", "rolename": "made-twice"}] * 2)
    yield dynsec.enable("acme", ["never-made"], True)  # not found: nothing to enable
    yield dynsec.remove("acme", "never-made")


# ---------------------------------------------------------- configuration

@pytest.mark.parametrize("value", ["acme:agent", ""])
def test_an_agent_client_id_that_could_be_a_device_id_is_refused(tmp_path, monkeypatch, value):
    monkeypatch.setenv("IOT_AGENT_MQTT_PASSWORD", "x")
    options = Options()
    with pytest.raises(SystemExit, match="--mqtt-client-id.*without ':'"):
        options.parseOptions(["--state-dir", str(tmp_path), "--mqtt-username", "admin",
                              "--mqtt-client-id", value])
