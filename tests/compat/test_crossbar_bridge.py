"""Compatibility with Crossbar.io's HTTP bridge (crossbario/crossbar), case by case from its
source: ``src/crossbar/bridge/rest/common.py`` (what every bridge resource checks),
``publisher.py``, ``caller.py``, ``webhook.py`` and ``docs/HTTP-Bridge-Webhook.rst``; each
case names the file. The router runs in this process with ``error_status = "crossbar"``
(Crossbar's answers); clients are plain HTTP, curl as the docs write it, and the
published ``crossbarhttp3`` client."""

import json
import subprocess

import pytest
import pytest_twisted
import treq
from crossbarhttp import Client, ClientCallRuntimeError, ClientNoCalleeRegistered
from twisted.internet import defer, threads

from ..integration.test_http_bridge import BRIDGE_SECRET, backend, config, post, signed_query
from ..security_support import start, stop
from ..support import eventually


def crossbar_config(monkeypatch):
    data = config(monkeypatch, error_status="crossbar")
    data["realms"][0]["roles"].append(
        {"name": "hooks", "rules": [{"uri": "com.example.hooks.", "match": "prefix", "allow": ["publish"]}]})
    data["http_bridge"]["webhooks"].append({"realm": "realm1", "topic": "com.example.hooks.plain", "role": "hooks"})
    return data


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    running = pytest_twisted.blockon(start(crossbar_config(monkeypatch), tmp_path_factory.mktemp("state")))
    yield running
    pytest_twisted.blockon(stop(running))
    monkeypatch.undo()


@defer.inlineCallbacks
def service(router):
    """The bridge tests' WAMP service, and a procedure that returns nothing."""
    session, events = yield backend(router)
    yield session.register(lambda: None, "com.example.nothing_back")
    return session, events


@defer.inlineCallbacks
def leave(session):
    yield session.leave()


@defer.inlineCallbacks
def request(router, method, path, body=b"", headers=None, params=None):
    response = yield treq.request(method, router.http_url + path, data=body, params=params,
                                  headers={k: [v] for k, v in (headers or {}).items()}, timeout=30)
    content = yield treq.content(response)
    return response, content


def signed(body: dict, seq=1) -> tuple[bytes, dict]:
    data = json.dumps(body).encode()
    return data, signed_query(data, seq=seq)


# ------------------------------------------------------------ common.py


@pytest.mark.parametrize("method", ["GET", "DELETE", "PATCH"])
@pytest_twisted.inlineCallbacks
def test_methods_other_than_post_put_options_get_405_in_the_error_shape(router, method):
    """common.py _CommonResource.render: only POST, PUT and OPTIONS; else 405 with
    {"error", "args", "kwargs"} (ours also says Allow)."""
    for path in ("/publish", "/call", "/webhook"):
        response, content = yield request(router, method, path)
        assert response.code == 405, (path, content)
        answer = json.loads(content)
        assert set(answer) == {"error", "args", "kwargs"} and method in answer["args"][0]
        assert response.headers.getRawHeaders("allow") == ["POST, PUT, OPTIONS"]


@pytest_twisted.inlineCallbacks
def test_put_is_taken_as_post(router):
    """common.py render / _render_request: 'HTTP/POST|PUT'."""
    session, events = yield service(router)
    data, query = signed({"topic": "com.example.put", "args": [1]})
    response, content = yield request(router, "PUT", "/publish", data, {"Content-Type": "application/json"}, query)
    assert response.code == 200 and isinstance(json.loads(content)["id"], int)
    data, query = signed({"procedure": "com.example.add", "args": [2, 3]}, seq=2)
    response, content = yield request(router, "PUT", "/call", data, {"Content-Type": "application/json"}, query)
    assert json.loads(content) == {"args": [5]}
    yield eventually(lambda: events)
    yield leave(session)


@pytest_twisted.inlineCallbacks
def test_options_answers_without_a_body(router):
    """common.py render: OPTIONS is answered at once, no body."""
    response, content = yield request(router, "OPTIONS", "/publish")
    assert 200 <= response.code < 300 and content == b""


@pytest.mark.parametrize("content_type", ["text/plain", "application/json; charset=latin-1"])
@pytest_twisted.inlineCallbacks
def test_a_body_that_is_not_json_in_utf8_is_refused(router, content_type):
    """common.py _render_request: a Content-Type other than application/json, or a charset
    other than UTF-8, is refused with 400."""
    data, query = signed({"topic": "com.example.x"})
    response, content = yield request(router, "POST", "/publish", data, {"Content-Type": content_type}, query)
    assert response.code == 400 and "application/json in UTF-8" in json.loads(content)["args"][0]


@pytest_twisted.inlineCallbacks
def test_a_body_over_the_limit_is_413_in_the_error_shape(router):
    """common.py _render_request: post_body_limit -> 413 with {"error", "args", "kwargs"}."""
    code, answer = yield post(router, "/publish", b"x" * 5000, params=signed_query(b"x" * 5000))
    assert code == 413 and set(answer) == {"error", "args", "kwargs"} and "2048" in answer["args"][0]


@pytest.mark.parametrize("body, fragment", [(b"{not json", "not valid JSON"), (b"[1, 2]", "a JSON object")])
@pytest_twisted.inlineCallbacks
def test_a_body_that_is_not_a_json_object_is_400(router, body, fragment):
    """common.py _render_request: the body must parse as JSON (AR453) and be an object (AR454)."""
    code, answer = yield post(router, "/publish", body, params=signed_query(body))
    assert code == 400 and fragment in answer["args"][0]


@pytest_twisted.inlineCallbacks
def test_signed_requests_as_crossbar_checks_them(router):
    """common.py _render_request: key, timestamp (UTC ISO-8601 with fraction), seq and nonce
    (integers) and signature = base64url(HMAC-SHA256(secret, key|timestamp|seq|nonce|body));
    a missing field is 400, an unknown key or a wrong signature 401."""
    data, query = signed({"topic": "com.example.signed"})
    code, _ = yield post(router, "/publish", data, params=query)
    assert code == 200
    for change, status in ((dict(query, key="nobody"), 401), (dict(query, signature="AAAA"), 401),
                           ({k: v for k, v in query.items() if k != "seq"}, 400), (dict(query, nonce="x"), 400)):
        code, answer = yield post(router, "/publish", data, params=change)
        assert code == status and set(answer) == {"error", "args", "kwargs"}, (change, answer)


# --------------------------------------------------------- publisher.py


@pytest_twisted.inlineCallbacks
def test_publish_answers_the_publication_id_and_passes_options(router):
    """publisher.py _process: topic required (400), args/kwargs/options (exclude, eligible,
    their _authid/_authrole forms, retain) -> {"id": <publication id>}."""
    session, events = yield service(router)
    data, query = signed({"topic": "com.example.news", "args": ["hi"], "kwargs": {"n": 1},
                          "options": {"eligible": [session.session_id]}})
    code, answer = yield post(router, "/publish", data, params=query)
    assert code == 200 and isinstance(answer["id"], int)
    yield eventually(lambda: events)
    assert events == [(("hi",), {"n": 1})]
    data, query = signed({"topic": "com.example.news", "options": {"exclude": [session.session_id]}}, seq=2)
    code, _ = yield post(router, "/publish", data, params=query)
    data, query = signed({"args": [1]}, seq=3)
    code, answer = yield post(router, "/publish", data, params=query)
    assert code == 400 and "needs 'topic'" in answer["args"][0]
    assert len(events) == 1  # the excluded subscriber got nothing
    yield leave(session)


# ------------------------------------------------------------ caller.py


@pytest_twisted.inlineCallbacks
def test_call_results_in_crossbars_shape(router):
    """caller.py on_call_ok: one value -> {"args": [value]}; a call that returns nothing gives
    None -> {"args": [null]}; procedure required (AR455, 400)."""
    session, _ = yield service(router)
    for body, expected in (({"procedure": "com.example.add", "args": [2, 3]}, {"args": [5]}),
                           ({"procedure": "com.example.nothing_back"}, {"args": [None]})):
        data, query = signed(body)
        code, answer = yield post(router, "/call", data, params=query)
        assert (code, answer) == (200, expected)
    data, query = signed({"args": [1]})
    code, answer = yield post(router, "/call", data, params=query)
    assert code == 400 and "needs 'procedure'" in answer["args"][0]
    yield leave(session)


@pytest_twisted.inlineCallbacks
def test_every_wamp_error_is_answered_200_with_the_error(router):
    """caller.py on_call_error -> common.py _fail_request: an ApplicationError (the callee's
    own, or the router's: no such procedure) is 200 {"error", "args", "kwargs"}."""
    session, _ = yield service(router)
    data, query = signed({"procedure": "com.example.fail"})
    code, answer = yield post(router, "/call", data, params=query)
    assert (code, answer) == (200, {"error": "com.example.error.out_of_stock", "args": ["no more"],
                                    "kwargs": {"item": 7}})
    data, query = signed({"procedure": "com.example.nowhere"}, seq=2)
    code, answer = yield post(router, "/call", data, params=query)
    assert code == 200 and answer["error"] == "wamp.error.no_such_procedure"
    yield leave(session)


@pytest_twisted.inlineCallbacks
def test_the_published_crossbarhttp_client_works_unchanged(router):
    """caller.py / publisher.py, through crossbarhttp3 (the Python 3 build of the
    crossbarhttp client on PyPI): it signs, publishes, calls, and tells a missing procedure
    (ClientNoCalleeRegistered) from a callee's error (ClientCallRuntimeError) by the body."""
    session, events = yield service(router)
    publisher = Client(router.http_url + "/publish", key="foobar", secret=BRIDGE_SECRET, timeout=30)
    caller = Client(router.http_url + "/call", key="foobar", secret=BRIDGE_SECRET, timeout=30)
    publication = yield threads.deferToThread(publisher.publish, "com.example.from_client", "a", n=2)
    assert isinstance(publication, int)
    yield eventually(lambda: events)
    assert events == [(("a",), {"n": 2})]
    assert (yield threads.deferToThread(caller.call, "com.example.add", 20, 22)) == 42
    with pytest.raises(ClientNoCalleeRegistered):
        yield threads.deferToThread(caller.call, "com.example.nowhere")
    with pytest.raises(ClientCallRuntimeError) as info:
        yield threads.deferToThread(caller.call, "com.example.fail")
    assert str(info.value) == "no more"
    yield leave(session)


# ----------------------------------------------------------- webhook.py


@pytest_twisted.inlineCallbacks
def test_webhook_at_crossbars_path_publishes_crossbars_event(router):
    """webhook.py _process (decode_as_json = False): any body; the event's args[0] is
    {"body": <text>, "headers": {name: [values]}}; docs/HTTP-Bridge-Webhook.rst: POST /webhook.
    The webhook acts as its configured role ("hooks" here)."""
    session, events = yield service(router)
    response, content = yield request(router, "POST", "/webhook", b"fresh webhooks!",
                                      {"Content-Type": "text/plain", "X-Github-Event": "ping"})
    assert response.code == 202 and isinstance(json.loads(content)["id"], int)
    yield eventually(lambda: events)
    [(args, kwargs)] = events
    assert kwargs == {} and args[0]["body"] == "fresh webhooks!"
    assert args[0]["headers"]["X-Github-Event"] == ["ping"] and args[0]["headers"]["Content-Type"] == ["text/plain"]
    yield leave(session)


@pytest_twisted.inlineCallbacks
def test_the_webhook_curl_of_crossbars_docs_runs(router):
    """docs/HTTP-Bridge-Webhook.rst "Try it": the curl command, against this router."""
    session, events = yield service(router)
    command = f"curl -H \"Content-Type: text/plain\" -d 'fresh webhooks!' {router.http_url}/webhook"
    result = yield threads.deferToThread(subprocess.run, command, shell=True, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    yield eventually(lambda: events)
    assert events[0][0][0]["body"] == "fresh webhooks!"
    yield leave(session)
