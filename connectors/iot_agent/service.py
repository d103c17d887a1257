"""``twistd iot-agent``: the services and the operations they share.

:class:`IotAgent` (a MultiService) holds the store thread, the device
directory, the tenant sessions (one per tenant realm), the MQTT side (a
control connection for dynamic security, actuation and the broker's drop
counter, and ``mqtt_workers`` connections sharing one subscription), the
ingestion pipeline, Kafka-WS, and the HTTP listeners.  Operations reachable
by HTTP and WAMP (device registry, actuation, history) are methods here, so
both sides answer the same way.
"""

import functools
import gc
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import RegisterOptions
from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.logger import Logger

from relayrouter.api import httpinput

from connectors.common import HttpService, RouterSettings, StatusResource
from connectors.common.state import open_state_dir

from . import http_api, http_lane
from .devices import DeviceDirectory, load_key
from .dojot_api import DojotError
from .history import BadQuery, LegacyQuery, PageQuery
from .ingest import DEVICE_DATA, Ingest
from .kafka_ws import KafkaWsHub, Tickets, make_factory
from .mqtt import DROPPED_TOPIC, DYNSEC_RESPONSE, DeviceAccount, DynamicSecurity, ReactorMqtt
from .mqtt311 import IngestConnection
from .normalize import Invalid, convert
from .registry import RegistryError
from .store import Store
from .tenants import TenantSessions

log = Logger()

DEVICE_EVENTS = "iot_agent.device.on_change"
PROCEDURES = ("device.create", "device.update", "device.get", "device.list", "device.delete",
              "device.credentials", "device.actuate", "history.device", "history.attr", "history.legacy")


@dataclass(frozen=True)
class AgentConfig:
    router: RouterSettings
    state_dir: str
    listen: str = "tcp:8090:interface=127.0.0.1"
    database: str | None = None  # None: SQLite in the state dir
    sqlite_synchronous: str = "full"
    tenants: tuple[str, ...] | None = None  # None: follow the router's tenants
    device_tls_listen: str | None = None
    device_tls_cert: str | None = None
    device_tls_key: str | None = None
    device_tls_ca: str | None = None
    mqtt_host: str | None = "127.0.0.1"  # None: no MQTT
    mqtt_port: int = 1883
    mqtt_username: str | None = None
    mqtt_password: str | None = field(default=None, repr=False)
    mqtt_client_id: str = "iot-agent"
    mqtt_workers: int = 4
    mqtt_share_group: str = "iot-agent"
    mqtt_receive_maximum: int = 1000
    mqtt_worker_protocol: str = "3.1.1"
    legacy_topics: bool = True
    api_jwt_key: object = field(default=None, repr=False)
    api_jwt_algorithms: tuple[str, ...] = ("HS256",)
    api_jwt_audience: str | None = None
    api_jwt_issuer: str | None = None
    api_tenant_claim: str = "service"
    ticket_lifetime: float = 60.0
    kafka_ws_max_lifetime: float = 7200.0
    kafka_ws_jwt_exp: bool = False
    compat: str = "relayrouter"  # or "dojot": dojot v0.8.0 also where we differ on purpose


def _error(e) -> ApplicationError:
    if isinstance(e, RegistryError):
        uri = {"no_such_device": "iot_agent.error.no_such_device",
               "device_exists": "iot_agent.error.device_exists"}.get(e.error, "iot_agent.error.invalid_request")
        return ApplicationError(uri, e.message)
    return ApplicationError("iot_agent.error.invalid_request", str(e))


class MqttSide:
    """The control connection and the ingesting workers."""

    def __init__(self, agent: "IotAgent", config: AgentConfig, reactor) -> None:
        self.agent = agent
        self.config = config
        self.reactor = reactor
        self.broker_dropped = None
        self.control = ReactorMqtt(reactor, config.mqtt_host, config.mqtt_port, f"{config.mqtt_client_id}-control",
                                   config.mqtt_username, config.mqtt_password, on_message=self._control_message,
                                   on_connected=self._control_up, name="mqtt control")
        self.dynsec = DynamicSecurity(self.control, reactor)
        self.workers = [self._worker(i) for i in range(config.mqtt_workers)]
        self.provisioned = False

    def _worker(self, i: int):
        config = self.config
        if config.mqtt_worker_protocol == "3.1.1":
            return IngestConnection(self.reactor, config.mqtt_host, config.mqtt_port, f"{config.mqtt_client_id}-{i}",
                                    config.mqtt_username, config.mqtt_password, on_message=self._device_message,
                                    on_connected=self._worker_up, name=f"mqtt worker {i}")
        return ReactorMqtt(self.reactor, config.mqtt_host, config.mqtt_port, f"{config.mqtt_client_id}-{i}",
                           config.mqtt_username, config.mqtt_password, on_message=self._device_message,
                           on_connected=self._worker_up, receive_maximum=config.mqtt_receive_maximum,
                           name=f"mqtt worker {i}", protocol=config.mqtt_worker_protocol)

    def start(self) -> None:
        self.control.start()
        for worker in self.workers:
            worker.start()

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.control.stop()

    # ------------------------------------------------------------ control

    @defer.inlineCallbacks
    def _control_up(self, control):
        yield control.subscribe([(DYNSEC_RESPONSE, 1), (DROPPED_TOPIC, 0)])
        granted = yield self.dynsec.grant_agent(self.config.mqtt_username)
        if granted:
            return  # the broker disconnects us for the new role; the next connection carries on
        accounts = [self.agent.account(device) for device in self.agent.devices.devices.values()]
        repaired = yield self.dynsec.reconcile(accounts, self.agent.tenants.served)
        self.provisioned = True
        log.info("mqtt: {count} device accounts provisioned in the broker ({repaired} brought up to date)",
                 count=len(accounts), repaired=repaired)

    def _control_message(self, client, message) -> None:
        if message.topic == DYNSEC_RESPONSE:
            self.dynsec.on_response(message.payload)
        elif message.topic == DROPPED_TOPIC:
            try:
                self.broker_dropped = int(message.payload)
            except ValueError:
                pass

    # ------------------------------------------------------------ workers

    def _worker_up(self, worker):
        group = self.config.mqtt_share_group
        return worker.subscribe([(f"$share/{group}/+/attrs", 1), (f"$share/{group}//+/+/attrs", 1)])

    def _device_message(self, worker, message) -> None:
        agent = self.agent
        counters = agent.counters
        mid, qos = message.mid, message.qos
        device = self._device_of(message.topic)
        if device is None:
            counters["mqtt_refused_unknown_device"] += 1
            worker.ack(mid, qos)
            return
        try:
            body = httpinput.json_value(message.payload, field="the payload")
        except httpinput.BadInput as e:
            counters["mqtt_refused_malformed"] += 1
            agent.note_refusal(device, e.message)
            worker.ack(mid, qos)
            return
        try:
            d = agent.ingest.accept(device, [body], envelope_only=False)
        except Invalid as e:
            counters["mqtt_refused_invalid"] += 1
            agent.note_refusal(device, str(e))
            worker.ack(mid, qos)
            return
        counters["mqtt_accepted"] += 1
        # PUBACK only once stored; a store failure leaves it unacknowledged (the broker keeps it).
        d.addCallbacks(lambda _: worker.ack(mid, qos), lambda f: None)

    def _device_of(self, topic: str):
        parts = topic.split("/")
        if len(parts) == 2 and parts[1] == "attrs":
            tenant, sep, device_id = parts[0].partition(":")
            if not sep:
                return None
        elif len(parts) == 4 and parts[0] == "" and parts[3] == "attrs":
            tenant, device_id = parts[1], parts[2]
        else:
            return None
        device = self.agent.devices.get(tenant, device_id)
        if device is None or not self.agent.tenants.served(tenant):
            return None
        return device

    # ------------------------------------------------------------- uses

    @defer.inlineCallbacks
    def actuate(self, device: dict, attrs: dict) -> dict:
        tenant, device_id = device["tenant"], device["id"]
        payload = json.dumps(attrs, separators=(",", ":")).encode()
        topics = DynamicSecurity.topics(tenant, device_id)["config"]
        if not self.config.legacy_topics:
            topics = topics[:1]
        results = []
        for topic in topics:
            try:
                reason = yield self.control.publish(topic, payload, qos=1)
                results.append({"topic": topic, "accepted": not reason.is_failure, "reason": str(reason)})
            except ConnectionError as e:
                results.append({"topic": topic, "accepted": False, "reason": str(e)})
        return {"accepted": any(r["accepted"] for r in results), "topics": results}

    def describe(self) -> dict:
        return {"control": self.control.status, "workers": [w.status for w in self.workers],
                "provisioned": self.provisioned, "broker_dropped": self.broker_dropped,
                "last_error": self.control.last_error or next((w.last_error for w in self.workers
                                                               if w.last_error), None)}


class IotAgent(service.MultiService):
    def __init__(self, config: AgentConfig, reactor=None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        self.reactor = reactor
        self.counters: Counter = Counter()
        self.started_at = time.time()
        open_state_dir(config.state_dir)
        dsn = config.database or os.path.join(config.state_dir, "iot-agent.sqlite3")
        self.store = Store(dsn, reactor, synchronous=config.sqlite_synchronous)
        self.devices = DeviceDirectory(self.store, load_key(config.state_dir))
        self.tickets = Tickets(reactor.seconds, config.ticket_lifetime)
        self.kafka_ws_jwt_exp = config.kafka_ws_jwt_exp
        self.hub = KafkaWsHub(self.tickets, reactor.seconds, config.kafka_ws_max_lifetime,
                              local_subjects=(DEVICE_DATA, DEVICE_EVENTS), compat=config.compat)
        self.tenants = TenantSessions(config.router, reactor, on_tenant_up=self._tenant_up,
                                      on_tenant_down=self._tenant_down, fixed=config.tenants)
        self.tenants.setServiceParent(self)
        self.hub.tenants = self.tenants
        self.ingest = Ingest(self.store, self.devices, reactor, publish=self.tenants.publish, hub=self.hub)
        self.ingest.counters = self.counters
        self.mqtt = MqttSide(self, config, reactor) if config.mqtt_host else None
        self.last_refusal: dict = {}
        jwt = http_api.ApiJwt(config.api_jwt_key, list(config.api_jwt_algorithms), config.api_jwt_audience,
                              config.api_jwt_issuer, config.api_tenant_claim)
        self.api = http_api.ApiResource(self, jwt)
        root = http_api.Root(self.api, StatusResource(self.describe, http_api.http_doc.STATUS), make_factory(self.hub))
        self.http = HttpService(config.listen, root, name="iot-agent", reactor=reactor)
        self.http.site.requestFactory = http_api.AgentRequest
        self.http.factory = self.lane(self.http.site)
        self.http.setServiceParent(self)
        self.device_tls = None
        if config.device_tls_listen:
            self.device_tls = _TlsListener(config, root, reactor, self.lane)
            self.device_tls.setServiceParent(self)

    def lane(self, site) -> http_lane.LaneFactory:
        """``site`` behind the device-post lane (http_lane.py)."""
        return http_lane.LaneFactory(site, functools.partial(http_api.lane_take, self), http_api.MAX_BODY,
                                     self.counters)

    # ------------------------------------------------------------ service

    def startService(self) -> None:
        self.store.start()
        log.info("iot-agent: store {where}", where=self.store.describe())
        d = self.devices.load()
        d.addCallback(self._loaded)
        d.addErrback(self._failed_start)

    def _loaded(self, count) -> None:
        log.info("iot-agent: {count} devices in the registry", count=count)
        # What is alive now (modules, classes, the registry) lives as long as
        # the process: out of the cyclic collector's sight, each collection
        # of the older generations walks only what ingestion made since.
        gc.freeze()
        super().startService()
        if self.mqtt is not None:
            # Not before we know which tenants are served: a message taken
            # earlier could not be told from one of a tenant that is gone.
            self.tenants.ready.addCallback(lambda _: self.mqtt.start())

    def _failed_start(self, failure) -> None:
        log.failure("iot-agent: cannot start", failure)
        if self.reactor.running:
            self.reactor.stop()

    @defer.inlineCallbacks
    def stopService(self):
        if self.mqtt is not None:
            self.mqtt.stop()
        yield defer.maybeDeferred(super().stopService)
        self.store.close()

    def describe(self) -> dict:
        return {"status": "ready" if self.tenants.sessions else "starting",
                "router": self.tenants.describe(), "mqtt": self.mqtt.describe() if self.mqtt else None,
                "store": self.store.describe(), "store_stats": self.store.stats(),
                "devices": len(self.devices.devices),
                "counters": dict(self.counters), "kafka_ws": dict(self.hub.counters),
                "kafka_ws_connections": sum(len(v) for v in self.hub.connections.values())}

    def note_refusal(self, device: dict, text: str) -> None:
        key = (device["tenant"], device["id"])
        if self.last_refusal.get(key) != text:
            log.info("device {tenant}:{device}: message refused: {text}", tenant=key[0], device=key[1], text=text)
        self.last_refusal[key] = text

    # ------------------------------------------------------------ tenants

    @defer.inlineCallbacks
    def _tenant_up(self, tenant: str, session):
        options = RegisterOptions(invoke="roundrobin")
        for name in PROCEDURES:
            method = getattr(self, "wamp_" + name.replace(".", "_"))
            yield session.register(lambda *a, _m=method, **kw: _m(tenant, *a, **kw), f"iot_agent.{name}",
                                   options=options)
        if self.mqtt is not None and self.mqtt.provisioned:
            ids = [d["id"] for d in self.devices.of_tenant(tenant)]
            self.mqtt.dynsec.enable(tenant, ids, True).addErrback(
                lambda f: log.warn("tenant {tenant}: enabling device accounts failed: {e}", tenant=tenant,
                                   e=f.getErrorMessage()))

    def _tenant_down(self, tenant: str) -> None:
        self.hub.tenant_gone(tenant)
        if self.mqtt is not None and self.mqtt.provisioned and not self.tenants.served(tenant):
            ids = [d["id"] for d in self.devices.of_tenant(tenant)]
            self.mqtt.dynsec.enable(tenant, ids, False).addErrback(
                lambda f: log.warn("tenant {tenant}: disabling device accounts failed: {e}", tenant=tenant,
                                   e=f.getErrorMessage()))

    def _device_event(self, kind: str, device: dict) -> None:
        event = {"event": kind, "meta": {"service": device["tenant"], "timestamp": int(time.time() * 1000)},
                 "data": device}
        self.tenants.publish(device["tenant"], DEVICE_EVENTS, event)
        self.hub.deliver(device["tenant"], DEVICE_EVENTS, event)  # our own publications do not come back

    # ------------------------------------------------------- operations

    def _served(self, tenant: str) -> None:
        if not self.tenants.served(tenant):
            raise RegistryError(404, "no_such_tenant", f"tenant '{tenant}' is not served by this agent")

    @defer.inlineCallbacks
    def create_device(self, tenant: str, spec) -> dict:
        self._served(tenant)
        device = yield self.devices.create(tenant, spec)
        provisioned = yield self._provision(device)
        self._device_event("create", device)
        return {"device": device, "credentials": self.devices.credentials(device),
                "mqtt_provisioned": provisioned}

    @defer.inlineCallbacks
    def _provision(self, device, set_password: bool = False):
        if self.mqtt is None or not self.mqtt.control.connected:
            return False
        try:
            yield self.mqtt.dynsec.provision(self.account(device), set_password)
        except Exception as e:  # noqa: BLE001 - reconciled at the next control connection
            log.warn("device {tenant}:{id}: provisioning in the broker failed: {e}", tenant=device["tenant"],
                     id=device["id"], e=str(e))
            return False
        return True

    def account(self, device: dict) -> DeviceAccount:
        return DeviceAccount(device["tenant"], device["id"], self.devices.secret(device), device["generation"])

    def get_device(self, tenant: str, device_id: str):
        self._served(tenant)
        device = self.devices.get(tenant, device_id)
        if device is None:
            return defer.fail(RegistryError(404, "no_such_device", f"no device {device_id!r} in tenant {tenant!r}"))
        return defer.succeed(device)

    @defer.inlineCallbacks
    def update_device(self, tenant: str, device_id: str, spec):
        self._served(tenant)
        device = yield self.devices.update(tenant, device_id, spec)
        self._device_event("update", device)
        return device

    @defer.inlineCallbacks
    def delete_device(self, tenant: str, device_id: str):
        self._served(tenant)
        device = yield self.devices.delete(tenant, device_id)
        if self.mqtt is not None and self.mqtt.control.connected:
            try:
                yield self.mqtt.dynsec.remove(tenant, device_id)
            except Exception as e:  # noqa: BLE001
                log.warn("device {tenant}:{id}: removing it from the broker failed: {e}", tenant=tenant,
                         id=device_id, e=str(e))
        self._device_event("remove", device)
        return device

    @defer.inlineCallbacks
    def credentials(self, tenant: str, device_id: str, rotate: bool = False):
        self._served(tenant)
        if rotate:
            device = yield self.devices.rotate(tenant, device_id)
            yield self._provision(device, set_password=True)
        else:
            device = yield self.get_device(tenant, device_id)
        return {"device": device, "credentials": self.devices.credentials(device)}

    @defer.inlineCallbacks
    def actuate(self, tenant: str, device_id: str, attrs):
        device = yield self.get_device(tenant, device_id)
        if not isinstance(attrs, dict) or not attrs:
            raise RegistryError(400, "invalid_request", "actuation needs a non-empty object of attributes")
        types = self.devices.types.get((tenant, device_id))
        if types:
            try:
                attrs = {label: convert(label, types[label], value) if label in types else _undefined(label)
                         for label, value in attrs.items()}
            except Invalid as e:
                raise RegistryError(400, "invalid_request", str(e)) from None
        if self.mqtt is None:
            raise RegistryError(503, "unavailable", "this agent has no MQTT broker (--mqtt-host)")
        result = yield self.mqtt.actuate(device, attrs)
        self.counters["actuations"] += 1
        return result

    def now_ms(self) -> int:
        return int(self.reactor.seconds() * 1000)

    @defer.inlineCallbacks
    def page_history(self, tenant, device_id, attr, url, query=None, csv=False, **params):
        """The retriever's page (or its CSV rows); parameters are checked before the device."""
        parsed = PageQuery.parse(device_id, attr, now_ms=self.now_ms(), **params)
        yield self.get_device(tenant, device_id)
        rows, total = yield self.store.run(lambda tables: parsed.run(tables, tenant))
        if csv:
            return parsed.rows_for_csv(rows)
        return parsed.answer(rows, total, url, query)

    @defer.inlineCallbacks
    def legacy_history(self, tenant, device_id, attrs=(), **params):
        query = LegacyQuery.parse(device_id, attrs, now_ms=self.now_ms(), **params)
        yield self.get_device(tenant, device_id)
        found = yield self.store.run(lambda tables: query.run(tables, tenant))
        answer = query.answer(found)
        if answer is None:
            raise RegistryError(404, "no_data", "No data for the given attribute could be found")
        return answer

    # ---------------------------------------------------- WAMP procedures

    @staticmethod
    def _wamp(d: defer.Deferred) -> defer.Deferred:
        """Our refusals as WAMP errors with the agent's URIs."""
        def refuse(failure):
            if failure.check(RegistryError, BadQuery, Invalid, DojotError):
                raise _error(failure.value)
            return failure
        return d.addErrback(refuse)

    def wamp_device_create(self, tenant, spec=None, **kwargs):
        return self._wamp(defer.maybeDeferred(self.create_device, tenant, spec if spec is not None else kwargs))

    def wamp_device_update(self, tenant, device_id, spec=None, **kwargs):
        return self._wamp(defer.maybeDeferred(self.update_device, tenant, device_id,
                                              spec if spec is not None else kwargs))

    def wamp_device_get(self, tenant, device_id):
        return self._wamp(defer.maybeDeferred(self.get_device, tenant, device_id))

    def wamp_device_list(self, tenant):
        return self._wamp(defer.maybeDeferred(lambda: self.devices.of_tenant(tenant)))

    def wamp_device_delete(self, tenant, device_id):
        return self._wamp(defer.maybeDeferred(self.delete_device, tenant, device_id))

    def wamp_device_credentials(self, tenant, device_id, rotate=False):
        return self._wamp(defer.maybeDeferred(self.credentials, tenant, device_id, bool(rotate)))

    def wamp_device_actuate(self, tenant, device_id, attrs=None, **kwargs):
        return self._wamp(defer.maybeDeferred(self.actuate, tenant, device_id,
                                              attrs if attrs is not None else kwargs))

    def wamp_history_device(self, tenant, device_id, **params):
        return self._wamp(defer.maybeDeferred(self.page_history, tenant, device_id, None,
                                              f"/tss/v1/devices/{device_id}/data", **_dojot_names(params)))

    def wamp_history_attr(self, tenant, device_id, attr, **params):
        return self._wamp(defer.maybeDeferred(self.page_history, tenant, device_id, attr,
                                              f"/tss/v1/devices/{device_id}/attrs/{attr}/data",
                                              **_dojot_names(params)))

    def wamp_history_legacy(self, tenant, device_id, attr=(), **params):
        return self._wamp(defer.maybeDeferred(self.legacy_history, tenant, device_id,
                                              [attr] if isinstance(attr, str) else list(attr or ()),
                                              **_dojot_names(params)))


_PARAM_NAMES = {"date_from": "dateFrom", "date_to": "dateTo", "last_n": "lastN", "first_n": "firstN"}
_KNOWN = {"dateFrom", "dateTo", "lastN", "firstN", "limit", "page", "order"}


def _dojot_names(params: dict) -> dict:
    out = {_PARAM_NAMES.get(k, k): v for k, v in params.items()}
    unknown = sorted(set(out) - _KNOWN)
    if unknown:
        raise BadQuery(f"unknown parameter {unknown[0]!r}")
    return out


def _undefined(label):
    raise Invalid(f"the device has no attribute {label!r}")


class _TlsListener(service.Service):
    """The HTTP agent on TLS with a required client certificate (dojot's CN mode)."""

    def __init__(self, config: AgentConfig, root, reactor, lane) -> None:
        from twisted.internet import ssl
        from twisted.protocols.tls import TLSMemoryBIOFactory
        from twisted.web import server

        from relayrouter.api import check_private_file

        check_private_file(config.device_tls_key, "--device-tls-key")
        with open(config.device_tls_cert, "rb") as f:
            cert_pem = f.read()
        with open(config.device_tls_key, "rb") as f:
            key_pem = f.read()
        with open(config.device_tls_ca, "rb") as f:
            ca_pem = f.read()
        certificate = ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
        authorities = [ssl.Certificate.loadPEM(block) for block in _pem_blocks(ca_pem)]
        options = ssl.CertificateOptions(
            privateKey=certificate.privateKey.original, certificate=certificate.original,
            verify=True, caCerts=[a.original for a in authorities], requireCertificate=True,
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2)
        site = server.Site(root)
        site.requestFactory = http_api.AgentRequest
        site.log = lambda request: None
        self.factory = TLSMemoryBIOFactory(options, False, lane(site))
        self.reactor = reactor
        self.description = config.device_tls_listen
        self.port = None
        self.listening = defer.Deferred()

    def startService(self) -> None:
        super().startService()
        d = endpoints.serverFromString(self.reactor, self.description).listen(self.factory)
        d.addCallbacks(self._listening, self._failed)

    def _listening(self, port) -> None:
        self.port = port
        host = port.getHost()
        log.info("iot-agent device TLS listening: https://{host}:{port}/", host=host.host, port=host.port)
        self.listening.callback(port)

    def _failed(self, failure) -> None:
        log.failure("iot-agent: cannot listen on {d}", failure, d=self.description)
        self.listening.errback(failure)

    def stopService(self):
        super().stopService()
        if self.port is not None:
            return defer.maybeDeferred(self.port.stopListening)


def _pem_blocks(data: bytes) -> list[bytes]:
    marker = b"-----END CERTIFICATE-----"
    return [block + marker for block in data.split(marker) if b"-----BEGIN CERTIFICATE-----" in block]
