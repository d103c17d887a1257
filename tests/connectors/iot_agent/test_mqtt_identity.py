"""MQTT identity is bound to the broker account, end to end: the real agent,
router and Mosquitto, attackers that are registered devices using their own
credentials with a client id that is not theirs — ``mosquitto_sub`` and paho,
MQTT 3.1.1 and 5, clean and persistent sessions.

A device's account connects only as ``tenant:id``: it can neither take over
the agent's persistent sessions (and with them other tenants' messages) nor
knock another device off the broker; what other devices publish meanwhile
all reaches history."""

import itertools
import subprocess

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from .clients import MqttDevice, blocking, http, try_connect
from .harness import ADMIN_PASSWORD
# env: the module's own agent, router and broker
from .test_agent import ADMIN, _wait_served, create, env, make_tenant, user  # noqa: F401

pytestmark = pytest.mark.timeout(240)

ATTEMPTS = list(itertools.product(("mosquitto_sub", "paho"), ("3.1.1", "5"), (True, False)))
# The harness agent's client ids (--mqtt-client-id iot-agent, 4 workers by default).
AGENT_IDS = ("iot-agent-0", "iot-agent-1", "iot-agent-2", "iot-agent-3", "iot-agent-control")


def mosquitto_sub(port, credentials, client_id, protocol, clean) -> subprocess.CompletedProcess:
    argv = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-u", credentials["username"],
            "-P", credentials["password"], "-i", client_id, "-V", "mqttv5" if protocol == "5" else "mqttv311",
            "-t", f"{credentials['username']}/config", "-v", "-W", "3"]
    if not clean:
        argv += ["-c"] + (["-x", "3600"] if protocol == "5" else [])
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


@defer.inlineCallbacks
def attack(port, credentials, client_id, tool, protocol, clean, during):
    """One connection attempt under ``credentials`` as ``client_id``; calls
    ``during()`` (a Deferred) while it is under way.  Fires with what the
    attacker got: ``(refused, received)``."""
    if tool == "mosquitto_sub":
        attempt = blocking(mosquitto_sub, port, credentials, client_id, protocol, clean)
        yield during()
        done = yield attempt
        refused = done.returncode != 0 and "not authori" in done.stderr.lower()
        return refused, done.stdout
    device = MqttDevice(port, credentials["username"], credentials["password"], client_id=client_id,
                        protocol=protocol, clean=clean)
    rc = yield blocking(device.connect)
    yield during()
    received = []
    if not rc.is_failure:
        message = yield blocking(device.next_message, 1.0)
        received = [message] if message else []
        device.close()
    return rc.is_failure, received


@defer.inlineCallbacks
def stored_values(agent_url, tenant, device_id, count):
    """The device's stored ``humidity`` values, once there are ``count`` (or the deadline passed)."""
    deadline = reactor.seconds() + 30
    while True:
        status, body = yield http("GET", f"{agent_url}/tss/v1/devices/{device_id}/attrs/humidity/data"
                                         "?order=asc&limit=256", bearer=user(tenant))
        assert status == 200, body
        values = sorted(d["value"] for d in body["data"])
        if len(values) >= count or reactor.seconds() > deadline:
            return values
        yield task.deferLater(reactor, 0.1, lambda: None)


@defer.inlineCallbacks
def connected_device(env, made, clean=True):
    mqtt = made["credentials"]["mqtt"]
    device = MqttDevice(env.broker.port, mqtt["username"], mqtt["password"], client_id=mqtt["client_id"],
                        clean=clean)
    rc = yield blocking(device.connect)
    assert not rc.is_failure
    return device


class Sender:
    """A device of another tenant that publishes a new ``humidity`` on each call."""

    def __init__(self, device, topic) -> None:
        self.device, self.topic, self.sent = device, topic, 0

    @defer.inlineCallbacks
    def __call__(self):
        rc = yield blocking(self.device.publish, self.topic, {"humidity": self.sent})
        assert not rc.is_failure, rc
        self.sent += 1


@pytest_twisted.inlineCallbacks
def test_a_device_cannot_take_over_the_agents_sessions(env):
    """Finding: a device connecting as ``iot-agent-0`` (clean session off)
    was handed the agent's stored session and the other tenants' messages."""
    port = env.broker.port
    attacker = (yield create(env, "acme", "thief1"))["credentials"]["mqtt"]
    victim = yield connected_device(env, (yield create(env, "globex", "victim1")))
    send = Sender(victim, "globex:victim1/attrs")
    for (tool, protocol, clean), agent_id in zip(ATTEMPTS, itertools.cycle(AGENT_IDS)):
        refused, received = yield attack(port, attacker, agent_id, tool, protocol, clean, send)
        assert refused and not received, f"{tool} MQTT {protocol} clean={clean} as {agent_id}: {received!r}"
    values = yield stored_values(env.agent.url, "globex", "victim1", send.sent)
    assert values == list(range(send.sent))  # every message reached the agent and history
    victim.close()


@pytest_twisted.inlineCallbacks
def test_a_device_cannot_knock_another_device_off_the_broker(env):
    """Finding: a device connecting with another device's client id under its
    own credentials ended that device's connection (and its session)."""
    port = env.broker.port
    attacker = (yield create(env, "acme", "thief2"))["credentials"]["mqtt"]
    other_tenant = yield connected_device(env, (yield create(env, "globex", "victim2")), clean=False)
    same_tenant = yield connected_device(env, (yield create(env, "acme", "victim3")), clean=False)
    send = Sender(other_tenant, "globex:victim2/attrs")
    for (tool, protocol, clean), target in zip(ATTEMPTS, itertools.cycle(("globex:victim2", "acme:victim3"))):
        refused, received = yield attack(port, attacker, target, tool, protocol, clean, send)
        assert refused and not received, f"{tool} MQTT {protocol} clean={clean} as {target}: {received!r}"
    rc = yield blocking(same_tenant.publish, "acme:victim3/attrs", {"humidity": 1})
    assert not rc.is_failure
    assert other_tenant.disconnects.empty() and same_tenant.disconnects.empty()  # neither was knocked off
    values = yield stored_values(env.agent.url, "globex", "victim2", send.sent)
    assert values == list(range(send.sent))
    other_tenant.close()
    same_tenant.close()


@pytest.mark.parametrize("tool, protocol, clean", ATTEMPTS)
@pytest_twisted.inlineCallbacks
def test_a_device_connects_with_its_own_client_id(env, tool, protocol, clean):
    made = yield create(env, "acme", f"own-{tool[0]}{protocol[0]}{int(clean)}")
    mqtt = made["credentials"]["mqtt"]
    assert mqtt["client_id"] == mqtt["username"] == f"acme:{made['device']['id']}"
    if tool == "mosquitto_sub":
        done = yield blocking(mosquitto_sub, env.broker.port, mqtt, mqtt["client_id"], protocol, clean)
        assert done.returncode == 27, done.stderr  # 27: connected, then ended by -W
        return
    device = MqttDevice(env.broker.port, mqtt["username"], mqtt["password"], client_id=mqtt["client_id"],
                        protocol=protocol, clean=clean)
    assert not (yield blocking(device.connect)).is_failure
    rc = yield blocking(device.publish, f"{mqtt['username']}/attrs", {"humidity": 3})
    assert not rc.is_failure
    device.close()


@pytest_twisted.inlineCallbacks
def test_a_restart_binds_accounts_of_earlier_versions_and_disables_tenants_gone_meanwhile(env):
    """Last: it restarts the module's agent. An account an earlier version made
    (no client id) connects under any id until the agent starts again; a tenant
    deleted while the agent was down keeps an enabled account until then."""
    port = env.broker.port
    yield blocking(make_tenant, env.router, "fleeting")
    yield blocking(_wait_served, env.agent, {"fleeting"})
    legacy = (yield create(env, "acme", "legacy1"))["credentials"]["mqtt"]
    fleeting = (yield create(env, "fleeting", "f1"))["credentials"]["mqtt"]
    yield blocking(subprocess.run, ["mosquitto_ctrl", "-h", "127.0.0.1", "-p", str(port), "-u", "admin",
                                    "-P", ADMIN_PASSWORD, "dynsec", "setClientId", legacy["username"]],
                   check=True, capture_output=True, timeout=30)
    rc = yield connects(port, legacy, "someone-else")
    assert not rc.is_failure  # as an earlier version left it
    yield blocking(env.agent.stop)
    status, _ = yield http("DELETE", f"{env.router.http_url}/realms/fleeting", bearer=ADMIN)
    assert status == 200
    assert not (yield connects(port, fleeting, fleeting["client_id"])).is_failure  # nobody disabled it
    yield blocking(env.agent.start)
    yield blocking(_wait_served, env.agent, {"acme", "globex"})
    assert (yield connects(port, legacy, "someone-else")).is_failure
    assert not (yield connects(port, legacy, legacy["client_id"])).is_failure
    assert (yield connects(port, fleeting, fleeting["client_id"])).is_failure


def connects(port, credentials, client_id) -> defer.Deferred:
    return blocking(try_connect, port, credentials["username"], credentials["password"], client_id)


@pytest_twisted.inlineCallbacks
def test_a_device_reads_and_writes_only_its_own_topics(env):
    """Under its own client id, a device can subscribe to no other device's topics (nor
    wildcards, shared subscriptions, $SYS or the dynamic-security API) and publish to none:
    MQTT 5 names each refusal; what it tried to publish never reaches history."""
    from paho.mqtt.reasoncodes import ReasonCode

    spy_account = (yield create(env, "acme", "spy1"))["credentials"]["mqtt"]
    victim = yield connected_device(env, (yield create(env, "globex", "victim4")))
    spy = MqttDevice(env.broker.port, spy_account["username"], spy_account["password"],
                     client_id=spy_account["client_id"], protocol="5")
    assert not (yield blocking(spy.connect)).is_failure
    try:
        for topic in ("#", "+/attrs", "+/config", "globex:victim4/config", "globex:victim4/attrs",
                      "$share/g/+/attrs", "$SYS/#", "$CONTROL/dynamic-security/v1/response"):
            codes = yield blocking(spy.subscribe, topic)
            assert all(isinstance(c, ReasonCode) and c.is_failure for c in codes), (topic, codes)
        for topic, payload in (("globex:victim4/attrs", {"humidity": 99}),
                               ("$CONTROL/dynamic-security/v1", {"commands": [{"command": "listClients"}]}),
                               ("acme:spy1/config", {"humidity": 99})):
            rc = yield blocking(spy.publish, topic, payload)
            assert rc.is_failure, (topic, rc)
        send = Sender(victim, "globex:victim4/attrs")
        yield send()
        yield send()
        assert (yield stored_values(env.agent.url, "globex", "victim4", 2)) == [0, 1]  # not the spy's 99
        assert (yield blocking(spy.next_message, 1.0)) is None
    finally:
        spy.close()
        victim.close()
