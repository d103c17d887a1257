"""MQTT through paho-mqtt, driven by the Twisted reactor, and Mosquitto's
dynamic-security plugin.

paho-mqtt is the Eclipse project's client; it can run without its own
network thread ("external event loop": socket callbacks and
``loop_read``/``loop_write``/``loop_misc``).  :class:`ReactorMqtt` uses that:
the client's socket is a Twisted file descriptor, every paho callback runs on
the reactor thread, and nothing is shared with another thread — except the
TCP connect itself, which paho does blocking, so it runs in the reactor's
thread pool.  Reconnection (with the connectors' shared :class:`Backoff`) is :class:`mqtt311.KeptConnection`'s.
The control connection and MQTT 5 workers use it; MQTT 3.1.1 workers use
the leaner ``mqtt311.IngestConnection``.

Sessions are MQTT 5 with ``clean_start=False`` and a session that never
expires: what the broker accepted for us while we were away is delivered when
we are back.  Messages are acknowledged by the caller (``manual_ack``), so a
PUBACK goes back only once the message is persisted.
"""

import json
import secrets
from dataclasses import dataclass, field

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.threadable import isInIOThread

from .mqtt311 import KeptConnection

log = Logger()

DYNSEC_TOPIC = "$CONTROL/dynamic-security/v1"
DYNSEC_RESPONSE = DYNSEC_TOPIC + "/response"
DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"
AGENT_ROLE = "iot-agent"


class _Socket:
    """paho's socket as a Twisted IReadWriteDescriptor."""

    def __init__(self, owner, sock) -> None:
        self.owner = owner
        self.sock = sock
        self._fileno = sock.fileno()

    def fileno(self) -> int:
        return self._fileno

    def logPrefix(self) -> str:  # noqa: N802 - Twisted's name
        return "mqtt"

    def doRead(self):  # noqa: N802
        self.owner._read()

    def doWrite(self):  # noqa: N802
        self.owner._write()

    def connectionLost(self, reason) -> None:  # noqa: N802
        self.owner._lost()


class ReactorMqtt(KeptConnection):
    """One MQTT connection, kept up; ``on_message(msg)`` runs on the reactor thread."""

    _log = log

    def __init__(self, reactor, host: str, port: int, client_id: str, username: str, password: str,
                 on_message=None, on_connected=None, receive_maximum: int = 1000, name: str = "mqtt",
                 tls_context=None, protocol: str = "5") -> None:
        super().__init__(reactor, host, port, client_id, on_message, on_connected, name, 1.0)
        self.receive_maximum = receive_maximum
        self._socket = None
        self._published: dict[int, defer.Deferred] = {}
        self._subscribed: dict[int, defer.Deferred] = {}
        self.protocol = protocol
        if protocol == "5":
            self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                      protocol=paho.MQTTv5, manual_ack=True)
        else:  # 3.1.1: no properties to parse per message; the broker's max_inflight_messages bounds what is in flight
            self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                      protocol=paho.MQTTv311, clean_session=False, manual_ack=True)
        self.client.username_pw_set(username, password)
        if tls_context is not None:
            self.client.tls_set_context(tls_context)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_socket_open = self._socket_open
        self.client.on_socket_close = self._socket_close
        self.client.on_socket_register_write = self._register_write
        self.client.on_socket_unregister_write = self._unregister_write

    # ---------------------------------------------------------- lifecycle

    def _disconnect(self) -> None:
        if self._socket is not None:
            self.client.disconnect()
            self._write()
        self._forget_socket()

    def _connect(self) -> None:
        self._retry = None
        if not self._running:
            return
        self.status = "connecting"
        if self.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0xFFFFFFFF  # never: the broker keeps our session and queue
            props.ReceiveMaximum = self.receive_maximum
            kwargs = {"clean_start": False, "properties": props}
        else:
            kwargs = {}  # clean_session=False (the client's): a persistent session
        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self.client.connect,
                                      self.host, self.port, 30, **kwargs)
        d.addErrback(self._connect_failed)

    # ---------------------------------------------------- socket plumbing

    def _socket_open(self, client, userdata, sock) -> None:
        self.reactor.callFromThread(self._adopt, sock)

    def _adopt(self, sock) -> None:
        self._socket = _Socket(self, sock)
        self.reactor.addReader(self._socket)
        if self.client.want_write():
            self.reactor.addWriter(self._socket)

    def _socket_close(self, client, userdata, sock) -> None:
        if not isInIOThread():
            self.reactor.callFromThread(self._forget_socket)
        else:
            self._forget_socket()

    def _register_write(self, client, userdata, sock) -> None:
        if not isInIOThread():  # paho's connect runs in the thread pool
            self.reactor.callFromThread(self._register_write, client, userdata, sock)
        elif self._socket is not None:
            self.reactor.addWriter(self._socket)

    def _unregister_write(self, client, userdata, sock) -> None:
        if not isInIOThread():
            self.reactor.callFromThread(self._unregister_write, client, userdata, sock)
        elif self._socket is not None:
            self.reactor.removeWriter(self._socket)

    def _forget_socket(self) -> None:
        if self._socket is not None:
            self.reactor.removeReader(self._socket)
            self.reactor.removeWriter(self._socket)
            self._socket = None

    def _read(self) -> None:
        rc = self.client.loop_read(max_packets=256)
        if rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_AGAIN) and self._socket is not None:
            self._lost()

    def _write(self) -> None:
        self.client.loop_write()

    def _lost(self) -> None:
        self._forget_socket()

    def _tick(self) -> None:  # paho's loop_misc: keep-alive, retries
        if self._socket is not None:
            self.client.loop_misc()

    # ------------------------------------------------------------ events

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._note_error(f"the broker refused the connection: {reason_code}")
            return  # paho closes; _on_disconnect schedules the retry
        self.connected = True
        self.status = "ready"
        self.last_error = None
        self.backoff.reset()
        log.info("{name}: connected to {host}:{port} as {client_id} (session present: {present})",
                 name=self.name, host=self.host, port=self.port, client_id=self.client_id,
                 present=flags.session_present)
        if self.on_connected is not None:
            d = defer.maybeDeferred(self.on_connected, self)
            d.addErrback(lambda f: log.failure("{name}: setting up after connect failed", f, name=self.name))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self.connected
        self.connected = False
        self._forget_socket()
        self._connection_lost((self._published, self._subscribed), was, str(reason_code))

    def _on_message(self, client, userdata, message) -> None:
        if self.on_message is not None:
            self.on_message(self, message)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        d = self._published.pop(mid, None)
        if d is not None:
            d.callback(reason_code)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        d = self._subscribed.pop(mid, None)
        if d is not None:
            d.callback(reason_codes)

    # ------------------------------------------------------------- calls

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> defer.Deferred:
        """Fires with the broker's reason code once it acknowledged (QoS 1)."""
        if not self.connected:
            return defer.fail(ConnectionError("not connected to the MQTT broker"))
        info = self.client.publish(topic, payload, qos=qos)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            return defer.fail(ConnectionError(f"publish failed: {paho.error_string(info.rc)}"))
        d = defer.Deferred()
        if qos == 0:
            d.callback(None)
        else:
            self._published[info.mid] = d
        return d

    def subscribe(self, topics: list[tuple[str, int]]) -> defer.Deferred:
        rc, mid = self.client.subscribe(topics)
        if rc != paho.MQTT_ERR_SUCCESS:
            return defer.fail(ConnectionError(f"subscribe failed: {paho.error_string(rc)}"))
        d = defer.Deferred()
        self._subscribed[mid] = d
        return d

    def ack(self, mid: int, qos: int) -> None:
        if self.connected:
            self.client.ack(mid, qos)


class DynamicSecurity:
    """Device accounts in Mosquitto's dynamic-security plugin, over the
    agent's control connection (an account with the plugin's admin role).

    Every device account is bound to one client id, its username
    ``tenant:id``: the broker refuses the account under any other client id,
    so a device can neither resume nor take over a session that is not its
    own (the agent's persistent ones, another device's).  The account's
    ``textname`` records the credential generation the broker holds, which
    lets :meth:`reconcile` find accounts whose password, client id or role
    is out of date without setting (and so disconnecting) the others."""

    def __init__(self, mqtt: ReactorMqtt, reactor, timeout: float = 10.0) -> None:
        self.mqtt = mqtt
        self.reactor = reactor
        self.timeout = timeout
        self._waiting: dict[str, tuple[defer.Deferred, int, list]] = {}

    def on_response(self, payload: bytes) -> None:
        try:
            responses = json.loads(payload).get("responses", [])
        except (ValueError, AttributeError):
            return
        for response in responses:
            key, _, index = str(response.get("correlationData", "")).rpartition(".")
            entry = self._waiting.get(key)
            if entry is None or not index.isdigit():
                continue
            d, expected, got = entry
            got.append((int(index), response))
            if len(got) == expected:
                del self._waiting[key]
                # Outside paho's callback (it holds a lock that disconnect() takes too).
                self.reactor.callLater(0, d.callback, [r for _, r in sorted(got, key=lambda item: item[0])])

    def run(self, commands: list[dict]) -> defer.Deferred:
        """Fires with one response per command, in order (each may carry ``error``)."""
        key = secrets.token_hex(8)
        for i, command in enumerate(commands):
            command["correlationData"] = f"{key}.{i}"
        d = defer.Deferred()
        self._waiting[key] = (d, len(commands), [])
        sent = self.mqtt.publish(DYNSEC_TOPIC, json.dumps({"commands": commands}).encode(), qos=1)
        sent.addErrback(lambda f: self._fail(key, f))
        d.addTimeout(self.timeout, self.reactor, onTimeoutCancel=lambda *_: self._timed_out(key))
        return d

    def checked(self, commands: list[dict], allowed=()) -> defer.Deferred:
        """:meth:`run`, failing with :class:`DynsecError` on an error not in ``allowed``."""
        if not commands:
            return defer.succeed([])
        return self.run(commands).addCallback(_only_errors, allowed=allowed)

    def _fail(self, key, failure) -> None:
        entry = self._waiting.pop(key, None)
        if entry is not None:
            entry[0].errback(failure)

    def _timed_out(self, key):
        self._waiting.pop(key, None)
        raise TimeoutError("the broker's dynamic-security plugin did not answer")

    # --------------------------------------------------------- devices

    @staticmethod
    def topics(tenant: str, device_id: str) -> dict:
        return {"attrs": [f"{tenant}:{device_id}/attrs", f"/{tenant}/{device_id}/attrs"],
                "config": [f"{tenant}:{device_id}/config", f"/{tenant}/{device_id}/config"]}

    def _create_role(self, account: "DeviceAccount") -> dict:
        topics = self.topics(account.tenant, account.device_id)
        acls = [{"acltype": "publishClientSend", "topic": t, "allow": True} for t in topics["attrs"]]
        for t in topics["config"]:
            acls += [{"acltype": "subscribePattern", "topic": t, "allow": True},
                     {"acltype": "publishClientReceive", "topic": t, "allow": True}]
        return {"command": "createRole", "rolename": account.role, "acls": acls}

    def device_commands(self, account: "DeviceAccount") -> list[dict]:
        """A new account: its role, the client bound to its client id, enabled."""
        return [self._create_role(account),
                {"command": "createClient", **account.fields(), "roles": [{"rolename": account.role}]},
                {"command": "enableClient", "username": account.username}]

    @staticmethod
    def repair_command(account: "DeviceAccount") -> dict:
        """An existing account brought in line (the broker disconnects its session)."""
        return {"command": "modifyClient", **account.fields(), "roles": [{"rolename": account.role}]}

    def provision(self, account: "DeviceAccount", set_password: bool = False) -> defer.Deferred:
        commands = self.device_commands(account)
        if set_password:  # a new credential (the broker disconnects the device's session)
            commands.insert(2, self.repair_command(account))
        return self.checked(commands, allowed=("already exists",))

    def remove(self, tenant: str, device_id: str) -> defer.Deferred:
        return self.checked([{"command": "deleteClient", "username": f"{tenant}:{device_id}"},
                             {"command": "deleteRole", "rolename": _role(tenant, device_id)}],
                            allowed=("not found",))

    def enable(self, tenant: str, device_ids, enabled: bool) -> defer.Deferred:
        command = "enableClient" if enabled else "disableClient"
        return self.checked([{"command": command, "username": f"{tenant}:{d}"} for d in device_ids],
                            allowed=("not found",))

    @defer.inlineCallbacks
    def reconcile(self, accounts: list["DeviceAccount"], served, batch: int = 50):
        """Bring the broker in line with the registry: create missing accounts,
        repair those whose client id, credential generation or role differ
        (accounts made before client ids were bound, a credential rotated
        while the broker was out of reach), enable the accounts of served
        tenants and disable the others.  Fires with the number repaired."""
        [listing] = yield self.checked([{"command": "listClients", "verbose": True}])
        present = {c.get("username"): c for c in (listing.get("data") or {}).get("clients", [])}
        commands, repaired = [], 0
        for account in accounts:
            found = present.get(account.username)
            if found is None:
                commands += self.device_commands(account)[:2]
            elif not account.matches(found):
                commands += [self._create_role(account), self.repair_command(account)]
                repaired += 1
            enable = "enableClient" if served(account.tenant) else "disableClient"
            commands.append({"command": enable, "username": account.username})
        for start in range(0, len(commands), batch):
            yield self.checked(commands[start:start + batch], allowed=("already exists",))
        return repaired

    @defer.inlineCallbacks
    def grant_agent(self, username: str):
        """The agent's own account may publish actuation and read device topics.

        Giving an account a role makes the broker disconnect its sessions,
        so this happens once: when the account lacks the role."""
        [found] = yield self.run([{"command": "getClient", "username": username}])
        roles = {r.get("rolename") for r in (found.get("data") or {}).get("client", {}).get("roles", [])}
        if AGENT_ROLE in roles:
            return False
        acls = []
        for topic in ("+/config", "/+/+/config"):
            acls.append({"acltype": "publishClientSend", "topic": topic, "allow": True})
        for topic in ("+/attrs", "/+/+/attrs", "$SYS/#"):
            acls += [{"acltype": "subscribePattern", "topic": topic, "allow": True},
                     {"acltype": "publishClientReceive", "topic": topic, "allow": True}]
        try:
            responses = yield self.run([{"command": "createRole", "rolename": AGENT_ROLE, "acls": acls},
                                        {"command": "addClientRole", "username": username, "rolename": AGENT_ROLE,
                                         "priority": 10}])
        except ConnectionError:
            responses = []  # the broker disconnected us for the new role before answering: as expected
        _only_errors(responses, allowed=("already exists",))
        log.info("mqtt: gave account {username} the role {role} (the broker reconnects it once)",
                 username=username, role=AGENT_ROLE)
        return True


def _role(tenant: str, device_id: str) -> str:
    return f"iot-device:{tenant}:{device_id}"


@dataclass(frozen=True)
class DeviceAccount:
    """A device's broker account: username and client id both ``tenant:id``."""

    tenant: str
    device_id: str
    password: str = field(repr=False)
    generation: int

    @property
    def username(self) -> str:
        return f"{self.tenant}:{self.device_id}"

    client_id = username

    @property
    def role(self) -> str:
        return _role(self.tenant, self.device_id)

    @property
    def textname(self) -> str:
        return f"iot-agent device, credential generation {self.generation}"

    def fields(self) -> dict:
        return {"username": self.username, "password": self.password, "clientid": self.client_id,
                "textname": self.textname}

    def matches(self, found: dict) -> bool:
        """Whether the broker's account (``listClients`` verbose) is this one."""
        roles = {r.get("rolename") for r in found.get("roles") or []}
        return (found.get("clientid") == self.client_id and found.get("textname") == self.textname
                and self.role in roles)


class DynsecError(Exception):
    pass


def _only_errors(responses: list, allowed=()) -> list:
    for response in responses:
        error = response.get("error")
        if error and not any(a in error.lower() for a in allowed):
            raise DynsecError(f"{response.get('command')}: {error}")
    return responses
