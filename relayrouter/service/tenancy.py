"""Wiring of tenants (core/tenancy.py) into a running router: the tenant
store in the state directory, realms built from templates with their auth,
roles and history, the procedures in the management realms, and the HTTP
endpoints ``GET /realms``, ``POST /realms``, ``DELETE /realms/<name>``."""

from twisted.internet import defer
from twisted.logger import Logger

from ..core import errors
from ..core.procedures import AdminPolicy, ProcedureError
from ..core.tenancy import NO_SUCH_TEMPLATE, REALM_EXISTS, Tenancy
from ..store.tenants import SqliteTenantStore
from ..httpinput import string_field
from ..transport import http_doc
from ..transport.tickets import HttpRefusal, _arg, _body, _json, _JsonResource

log = Logger(namespace="relayrouter")


class _PurgingBuilder:
    """The router's RealmBuilder, and a deleted tenant's stored data purged
    (the tenant store noted the purge with the delete: see store/tenants.py)."""

    def __init__(self, builder, durable, store) -> None:
        self.builder = builder
        self.durable = durable
        self.store = store
        self.stopped = False

    def build(self, name: str, template):
        return self.builder.build(name, template)

    def unbuild(self, realm) -> None:
        self.builder.unbuild(realm)
        self.purge(realm.name)

    def purge(self, name: str) -> None:
        self.durable.purge_realm(name, lambda: self._purged(name))

    def _purged(self, name: str) -> None:
        if not self.stopped:  # else it stays noted, and is done again (to no effect) at the next start
            self.store.purged(name)


class TenancyWiring:
    def __init__(self, config, router, security, builder, durable, store=None) -> None:
        """``builder``: the realms.RealmBuilder that makes configured realms, for tenants too."""
        self.security = security
        self.tenancy = None
        tenants = config.tenants
        if tenants is None:
            return
        revocation = security.config.revocation
        if tenants.admin_roles is None and tenants.admin_scope is None:
            admin = security.admin  # the router's admins, as a reload leaves them
        else:
            admin = AdminPolicy(
                frozenset(tenants.admin_roles if tenants.admin_roles is not None else revocation.admin_roles),
                tenants.admin_scope if tenants.admin_scope is not None else revocation.admin_scope)
        management = tenants.management_realms or tuple(r.name for r in config.realms)
        self.store = store if store is not None else SqliteTenantStore.in_state_dir(config.state_dir)
        self.purging = purging = _PurgingBuilder(builder, durable, self.store)
        self.tenancy = Tenancy(router, {t.name: t for t in tenants.templates}, self.store,
                               purging, admin, tenants.default_template, management)
        for name in management:
            self.tenancy.add_procedures(router.realms[name].procedures)
        self.tenancy.restore()
        if self.tenancy.tenants:
            log.info("Tenants restored: {names}", names=", ".join(self.tenancy.tenants))
        for name in self.store.purges():  # cut short by a stop or a crash: done now
            if name in self.tenancy.tenants:
                self.store.purged(name)  # made again since; the purge came first
            else:
                purging.purge(name)

    def http_resources(self) -> dict:
        if self.tenancy is None:
            return {}
        return {b"realms": RealmsResource(self.security, self.tenancy)}

    def stop(self) -> None:
        if self.tenancy is not None:
            self.purging.stopped = True
            self.store.close()


_STATUS = {REALM_EXISTS: 409, NO_SUCH_TEMPLATE: 400, errors.NO_SUCH_REALM: 404,
           errors.INVALID_ARGUMENT: 400, errors.NOT_AUTHORIZED: 403, errors.UNAVAILABLE: 503}


class RealmsResource(_JsonResource):
    """``GET /realms`` -> {"tenants", "seq"}; ``POST /realms`` {"name", "template"?}
    -> 200 {"tenant", "template", "seq"}; ``DELETE /realms/<name>`` (``?reason=``)
    -> {"tenant", "seq", "sessions_closed"}. An admin JWT, as for /denylist."""

    methods = "GET, POST, DELETE, OPTIONS"
    path_name = "realms"
    takes_path = 1  # DELETE /realms/<name>
    openapi = http_doc.REALMS

    def __init__(self, security, tenancy: Tenancy) -> None:
        super().__init__(security)
        self.tenancy = tenancy

    def render_GET(self, request):  # noqa: N802
        if _below(request):
            return _not_here(request)
        return self._serve(request, lambda r: self._admin(r, lambda: self.tenancy.list()))

    def render_POST(self, request):  # noqa: N802
        if _below(request):
            return _not_here(request)

        def create(r):
            body = _body(r)
            return self._admin(r, lambda: self.tenancy.create(string_field(body, "name", _arg(r, "name")),
                                                              string_field(body, "template", _arg(r, "template"))))
        return self._serve(request, create)

    def render_DELETE(self, request):  # noqa: N802
        def delete(r):
            name = r.postpath[0].decode("utf8", "replace") if r.postpath and r.postpath[0] else _arg(r, "name")
            return self._admin(r, lambda: self.tenancy.delete(name, _arg(r, "reason")))
        return self._serve(request, delete)

    @defer.inlineCallbacks
    def _admin(self, request, operation):
        realm = self.security.admin_realm()
        if realm is None:
            raise HttpRefusal(403, errors.NOT_AUTHORIZED,
                              "no realm verifies admin tokens (revocation.admin_realm)")
        accept = yield self._bearer_accept(request, realm)
        if not self.tenancy.admin.admits(accept.authrole, accept.permissions):
            raise HttpRefusal(403, errors.NOT_AUTHORIZED, "this token may not administer tenants")
        try:
            return operation()
        except ProcedureError as e:
            raise HttpRefusal(_STATUS.get(e.uri, 400), e.uri, e.message) from None


def _below(request) -> bool:
    """A path below /realms/ (only DELETE takes one: the tenant's name)."""
    return any(request.postpath)


def _not_here(request) -> bytes:
    return _json(request, 404, {"error": "relayrouter.error.not_found",
                                "message": "only DELETE takes a tenant's name in the path; GET or POST /realms"})
