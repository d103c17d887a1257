"""``GET /metrics``: the router's figures in Prometheus text format, read at scrape time.

Nothing here runs per message.  The core keeps plain integers
(``router.stats``, ``realm.counters``, each connection's ``counters``, the
failed-login limiter's counters) and a scrape turns them into metric families
on the router's own registry (never prometheus_client's global one, so
several routers in one process, as in tests, do not mix).

Families (all prefixed ``relayrouter_``):

=========================================  =====================================================
``sessions{realm,transport}``              established sessions
``messages_received_total{type}``          WAMP messages accepted from peers, by type
``messages_sent_total{type}``              WAMP messages sent or queued to peers, by type
``bytes_received_total`` / ``_sent_``       serialized WAMP messages, both ways
``publications_total``                     publications routed (with EVENTs sent: the fan-out)
``call_duration_seconds``                  CALL to final RESULT/ERROR from a callee (histogram)
``realm_events_total{realm,event}``        refusals, drops and disconnects the realm counted
``auth_total{realm,method,outcome}``       joins and refused logins, by method and reason
``login_limiter_total{event}``             the failed-login limiter's counters
``outbound_queue_messages``                messages waiting for slow peers: max, and a histogram
``mailbox_depth{realm,mailbox}``           and ``mailbox_oldest_seconds``, ``mailbox_*_total``
``store_commits_total`` ...                the durable store's writer: commits, items, failures
=========================================  =====================================================

plus the process collector (CPU, memory, open files).
"""

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from ..core.stats import Histogram, traffic

# WAMP message type codes -> names, as the spec spells them.
MESSAGE_NAMES = {1: "HELLO", 2: "WELCOME", 3: "ABORT", 4: "CHALLENGE", 5: "AUTHENTICATE", 6: "GOODBYE",
                 8: "ERROR", 16: "PUBLISH", 17: "PUBLISHED", 32: "SUBSCRIBE", 33: "SUBSCRIBED",
                 34: "UNSUBSCRIBE", 35: "UNSUBSCRIBED", 36: "EVENT", 48: "CALL", 49: "CANCEL", 50: "RESULT",
                 64: "REGISTER", 65: "REGISTERED", 66: "UNREGISTER", 67: "UNREGISTERED", 68: "INVOCATION",
                 69: "INTERRUPT", 70: "YIELD"}
QUEUE_BOUNDS = (0, 1, 10, 100, 1000, 10000, 100000)


class RouterCollector:
    """A prometheus_client collector over a running RouterService."""

    def __init__(self, service) -> None:
        self.service = service

    def collect(self):
        router = self.service.router
        yield from self._sessions(router)
        yield from self._messages(router.stats)
        yield from self._realms(router)
        yield from self._auth(router)
        yield from self._queues()
        yield from self._mailboxes(router)
        yield from self._store()
        yield from self._cluster()

    def _sessions(self, router):
        sessions = GaugeMetricFamily("relayrouter_sessions", "Established WAMP sessions",
                                     labels=["realm", "transport"])
        for name, realm in router.realms.items():
            by_kind: dict[str, int] = {}
            for session in realm.sessions.values():
                kind = session.transport.kind or "unknown"
                by_kind[kind] = by_kind.get(kind, 0) + 1
            for kind, count in sorted(by_kind.items()):
                sessions.add_metric([name, kind], count)
        yield sessions

    def _messages(self, stats):
        for direction, counts, text in (("received", stats.received, "WAMP messages accepted from peers"),
                                        ("sent", stats.sent, "WAMP messages sent or queued to peers")):
            family = CounterMetricFamily(f"relayrouter_messages_{direction}", text, labels=["type"])
            for code, name in MESSAGE_NAMES.items():
                family.add_metric([name], counts[code])
            yield family
        bytes_in, bytes_out = traffic(stats, self.service.connections())
        yield CounterMetricFamily("relayrouter_bytes_received", "Bytes of WAMP messages read from peers",
                                  value=bytes_in)
        yield CounterMetricFamily("relayrouter_bytes_sent", "Bytes of WAMP messages sent or queued to peers",
                                  value=bytes_out)
        yield CounterMetricFamily("relayrouter_publications", "Publications routed (EVENTs sent / this = "
                                  "mean fan-out)", value=stats.publications)
        yield _histogram("relayrouter_call_duration_seconds",
                         "Seconds from a CALL to the callee's final RESULT or ERROR", stats.call_latency)

    def _realms(self, router):
        family = CounterMetricFamily("relayrouter_realm_events", "Refusals, drops and disconnects counted "
                                     "by the realm (names as in the meta API counters)", labels=["realm", "event"])
        for name, realm in router.realms.items():
            for event, count in sorted(realm.counters.items()):
                family.add_metric([name, event], count)
        yield family

    def _auth(self, router):
        family = CounterMetricFamily("relayrouter_auth", "Joins (outcome accepted) and refused logins "
                                     "(outcome = the ABORT reason), by realm and method",
                                     labels=["realm", "method", "outcome"])
        for name, realm in router.realms.items():
            for method, count in sorted(realm.joins_by_method.items()):
                family.add_metric([name, method, "accepted"], count)
        for (realm, method, reason), count in sorted(self.service.auth_refusals.items()):
            family.add_metric([realm, method, reason], count)
        yield family
        limiter = CounterMetricFamily("relayrouter_login_limiter", "The failed-login limiter: verified "
                                      "failures, successes and refusals", labels=["event"])
        for event, count in sorted(self.service.security.limiter.counters.items()):
            limiter.add_metric([event], count)
        yield limiter

    def _queues(self):
        depths = [conn.queued[0] for conn in self.service.connections()]
        yield GaugeMetricFamily("relayrouter_outbound_queue_messages_max", "The longest outbound queue "
                                "(messages waiting for a peer that is not reading)", value=max(depths, default=0))
        histogram = Histogram(QUEUE_BOUNDS)
        for depth in depths:
            histogram.observe(depth)
        yield _histogram("relayrouter_outbound_queue_messages", "Outbound queue lengths of the connections "
                         "now open", histogram)

    def _mailboxes(self, router):
        depth = GaugeMetricFamily("relayrouter_mailbox_depth", "Messages held", labels=["realm", "mailbox"])
        oldest = GaugeMetricFamily("relayrouter_mailbox_oldest_seconds", "Age of the oldest message held",
                                   labels=["realm", "mailbox"])
        totals = {name: CounterMetricFamily(f"relayrouter_mailbox_{name}", f"Mailbox {name}, kept across restarts",
                                            labels=["realm", "mailbox"])
                  for name in ("redeliveries", "drops", "expired")}
        for name, realm in router.realms.items():
            mailboxes = getattr(realm.broker, "mailboxes", None)
            for uri, mailbox in sorted(getattr(mailboxes, "mailboxes", {}).items()):
                stats = mailbox.stats()
                depth.add_metric([name, uri], stats["depth"])
                oldest.add_metric([name, uri], stats["oldest_age"])
                for key, family in totals.items():
                    family.add_metric([name, uri], stats[key])
        yield depth
        yield oldest
        yield from totals.values()

    def _store(self):
        store = self.service.durable.store
        writer = getattr(store, "writer", None)
        if writer is None:
            return
        for name, text in (("commits", "Group commits of the durable store"),
                           ("items", "Items the durable store's writer carried out"),
                           ("failures", "Store work that failed")):
            yield CounterMetricFamily(f"relayrouter_store_{name}", text, value=getattr(writer, name))
        latency = getattr(writer, "commit_latency", None)
        if latency is not None:
            yield _histogram("relayrouter_store_commit_seconds", "Seconds one group commit took "
                             "(the writer thread's, off the reactor)", latency)


    def _cluster(self):
        cluster = getattr(self.service, "cluster", None)
        if cluster is None:
            return
        yield GaugeMetricFamily("relayrouter_cluster_connected", "1 while this node is connected to NATS",
                                value=1 if cluster.connected else 0)
        yield GaugeMetricFamily("relayrouter_cluster_nodes", "Nodes in the cluster view: this one and those "
                                "heard from within heartbeat_ttl", value=1 + len(cluster.live_nodes()))
        events = CounterMetricFamily("relayrouter_cluster_events", "Events across nodes: out (sent to NATS), "
                                     "in (dispatched here), unmatched (received, no local subscription wanted "
                                     "it), dropped_out/dropped_in (messages not handed to NATS, NATS "
                                     "away or its buffer full / not taken from it, the reactor too far behind), "
                                     "dropped_outage (events published while this node was not connected to NATS: "
                                     "delivered on this node only), "
                                     "unserializable, invalid", labels=["kind"])
        counters = cluster.counters
        for kind in ("out", "in", "unmatched", "unserializable", "invalid"):
            events.add_metric([kind], counters[f"events_{kind}"])
        events.add_metric(["dropped_out"], cluster.bridge.dropped)
        events.add_metric(["dropped_in"], cluster.bridge.dropped_in)
        events.add_metric(["dropped_outage"], counters["events_dropped_outage"] + cluster.bridge.dropped_outage)
        yield events
        denials = CounterMetricFamily("relayrouter_cluster_denials", "Deny-list changes sent to and applied "
                                      "from other nodes", labels=["direction"])
        denials.add_metric(["out"], counters["denials_out"])
        denials.add_metric(["in"], counters["denials_in"])
        yield denials
        meta = CounterMetricFamily("relayrouter_cluster_meta_questions", "Meta API questions this node asked "
                                   "the other nodes and answered for them", labels=["direction"])
        meta.add_metric(["asked"], counters["meta_questions"])
        meta.add_metric(["answered"], counters["meta_answers"])
        yield meta
        yield CounterMetricFamily("relayrouter_cluster_testaments_published", "Testaments this node published "
                                  "for sessions of nodes that are gone", value=counters["testaments_published_for_others"])
        yield GaugeMetricFamily("relayrouter_cluster_testaments_stored", "This node's sessions whose testaments "
                                "are kept in NATS JetStream KV", value=cluster.view.testaments.stored_in_kv())
        yield from _cluster_nodes(cluster.nodes)
        yield from _cluster_calls(cluster.calls)
        yield from _cluster_state(cluster)
        yield from _cluster_mailboxes(getattr(self.service.durable, "peers", None))


def _cluster_nodes(nodes):
    """What each node of the view says of itself (cluster/nodes.py), labelled by node."""
    info = GaugeMetricFamily("relayrouter_cluster_node_info", "1 per node of the cluster view, with its "
                             "relayrouter version", labels=["node", "version"])
    figures = {name: GaugeMetricFamily(f"relayrouter_cluster_node_{name}", text, labels=["node"]) for name, text in (
        ("sessions", "Sessions on each node, all realms, as of its last heartbeat"),
        ("load", "CPU seconds each node's process used per second over its last heartbeat interval"),
        ("up_since_seconds", "When each node started (Unix time)"),
        ("last_heard_seconds", "When this node last heard each node's heartbeat (Unix time; now for itself)"))}
    for node, record, heard in nodes.records():
        info.add_metric([node, str(record.get("version"))], 1)
        for name, value in (("sessions", record.get("sessions")), ("load", record.get("load")),
                            ("up_since_seconds", record.get("since")), ("last_heard_seconds", heard)):
            if isinstance(value, (int, float)):
                figures[name].add_metric([node], value)
    yield info
    yield from figures.values()


def _cluster_mailboxes(peers):
    """Mailboxes kept in step with the other nodes (cluster/mailboxes.py, core/mailbox_sync.py)."""
    if peers is None:
        return
    notices = CounterMetricFamily("relayrouter_cluster_mailbox_notices", "Mailbox notices (a message committed, "
                                  "messages gone, a take started): out (sent to the other nodes), unsent (NATS "
                                  "was not connected; the nodes read their mailboxes back on reconnecting), in "
                                  "(heard from the other nodes)", labels=["direction"])
    shared = list(peers.realms.values())
    notices.add_metric(["out"], peers.sent)
    notices.add_metric(["unsent"], peers.unsent)
    notices.add_metric(["in"], sum(s.notices_in for s in shared))
    yield notices
    yield CounterMetricFamily("relayrouter_cluster_mailbox_reads", "Mailboxes read back from the database the "
                              "nodes share: at each take, on (re)connecting to NATS, and when a message came "
                              "ahead of one missing", value=sum(s.resyncs for s in shared))


def _cluster_calls(calls):
    c = calls.counters
    rpc = CounterMetricFamily("relayrouter_cluster_calls", "Calls across nodes: out (forwarded to a callee's "
                              "node), in (from another node to a callee here), answers_out/answers_in (results "
                              "and errors sent back / received), answers_late (arrived for a call already ended), "
                              "unsent (not forwarded: NATS away, arguments msgpack cannot carry), "
                              "in_no_callee (its callee left on the way), canceled_node_gone (waiting on a node "
                              "declared gone)", labels=["kind"])
    for kind in ("out", "in", "unsent", "in_no_callee", "canceled_node_gone"):
        rpc.add_metric([kind], c[f"calls_{kind}"])
    for kind in ("answers_out", "answers_in", "answers_late"):
        rpc.add_metric([kind], c[kind])
    yield rpc
    turns = CounterMetricFamily("relayrouter_cluster_turns", "Roundrobin choices made here and told to the "
                                "other nodes (out), and heard from them (in)", labels=["direction"])
    turns.add_metric(["out"], c["turns_out"])
    turns.add_metric(["in"], c["turns_in"])
    yield turns
    yield GaugeMetricFamily("relayrouter_cluster_calls_pending", "Calls from this node's callers waiting on "
                            "callees on other nodes", value=len(calls.forwarding.outgoing))
    yield GaugeMetricFamily("relayrouter_cluster_registrations", "Registrations in the cluster's directory, "
                            "as this node's copy has them", value=len(calls.values))
    directory = CounterMetricFamily("relayrouter_cluster_directory", "Changes this node asked of the "
                                    "registration directory (compare-and-set), those that failed (NATS away "
                                    "excepted), registrations of this node revoked because another node "
                                    "took the procedure while this one was cut off, and reconnections to NATS "
                                    "that kept the directory's watch (resumes)", labels=["kind"])
    directory.add_metric(["changes"], c["directory_changes"])
    directory.add_metric(["failures"], c["directory_failures"])
    directory.add_metric(["revoked"], c["revoked"])
    directory.add_metric(["resumes"], c["directory_resumes"])
    yield directory


def _cluster_state(cluster):
    state = cluster.state
    if state is None:
        return
    counters = cluster.counters
    yield GaugeMetricFamily("relayrouter_cluster_state_synced", "1 while this node's shared state (deny list, "
                            "tickets, retained events, tenants) is in sync with JetStream",
                            value=1 if state.synced else 0)
    yield CounterMetricFamily("relayrouter_cluster_state_resyncs", "Times this node synced its shared state "
                              "with JetStream (on connecting to NATS, and on reconnecting when its watches "
                              "could not be kept)",
                              value=counters["state_resyncs"])
    yield CounterMetricFamily("relayrouter_cluster_state_resumes", "Times this node kept its watches of the "
                              "shared state across a quick reconnection to NATS (no resync)",
                              value=counters["state_resumes"])
    tickets = CounterMetricFamily("relayrouter_cluster_tickets", "One-time tickets: shared (minted here, "
                                  "stored in JetStream), taken (joined with one from JetStream), refused "
                                  "(unknown, used or expired there), unavailable (JetStream not asked: away)",
                                  labels=["outcome"])
    for outcome in ("shared", "taken", "refused", "unavailable"):
        tickets.add_metric([outcome], counters[f"tickets_{outcome}"])
    yield tickets
    for what, text in (("retained", "Retained events written to JetStream (out) and taken from it (in)"),
                       ("tenants", "Tenant creations and deletions written to JetStream (out) and applied "
                                   "from it (in)")):
        family = CounterMetricFamily(f"relayrouter_cluster_{what}", text, labels=["direction"])
        family.add_metric(["out"], counters[f"{what}_out"])
        family.add_metric(["in"], counters[f"{what}_in"])
        yield family


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, documentation, buckets=histogram.cumulative(),
                                 sum_value=histogram.total)


class Metrics:
    """The registry of one router, and its text."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, service) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(RouterCollector(service))
        self.registry.register(ProcessCollector(registry=None))

    def text(self) -> bytes:
        return generate_latest(self.registry)
