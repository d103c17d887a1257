"""Wiring of tenants (core/tenancy.py) into a running router: the tenant
store in the state directory, realms built from templates with their auth,
roles and history, the procedures in the management realms, and the HTTP
endpoints ``GET /realms``, ``POST /realms``, ``DELETE /realms/<name>``."""

from dataclasses import replace

from twisted.internet import defer
from twisted.logger import Logger

from .core import errors
from .core.procedures import AdminPolicy, ProcedureError
from .core.tenancy import NO_SUCH_TEMPLATE, REALM_EXISTS, Tenancy
from .realms import add_configured_realm
from .store.tenants import SqliteTenantStore
from .transport.tickets import HttpRefusal, _arg, _body, _JsonResource

log = Logger(namespace="relayrouter")


class _Builder:
    def __init__(self, router, security, durable) -> None:
        self.router = router
        self.security = security
        self.durable = durable

    def build(self, name: str, template):
        rc = replace(template, name=name)
        realm = add_configured_realm(self.router, rc)
        self.security.install_realm(realm, rc)
        self.durable.install_realm(realm, rc)
        return realm

    def unbuild(self, realm) -> None:
        self.security.forget_realm(realm.name)
        self.durable.forget_realm(realm)


class TenancyWiring:
    def __init__(self, config, router, security, durable, store=None) -> None:
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
        self.tenancy = Tenancy(router, {t.name: t for t in tenants.templates}, self.store,
                               _Builder(router, security, durable), admin,
                               tenants.default_template, management)
        for name in management:
            self.tenancy.add_procedures(router.realms[name].procedures)
        self.tenancy.restore()
        if self.tenancy.tenants:
            log.info("Tenants restored: {names}", names=", ".join(self.tenancy.tenants))

    def http_resources(self) -> dict:
        if self.tenancy is None:
            return {}
        return {b"realms": RealmsResource(self.security, self.tenancy)}

    def stop(self) -> None:
        if self.tenancy is not None:
            self.store.close()


_STATUS = {REALM_EXISTS: 409, NO_SUCH_TEMPLATE: 400, errors.NO_SUCH_REALM: 404,
           errors.INVALID_ARGUMENT: 400, errors.NOT_AUTHORIZED: 403}


class RealmsResource(_JsonResource):
    """``GET /realms`` -> {"tenants", "seq"}; ``POST /realms`` {"name", "template"?}
    -> 200 {"tenant", "template", "seq"}; ``DELETE /realms/<name>`` (``?reason=``)
    -> {"tenant", "seq", "sessions_closed"}. An admin JWT, as for /denylist."""

    methods = "GET, POST, DELETE, OPTIONS"
    path_name = "realms"

    def __init__(self, security, tenancy: Tenancy) -> None:
        super().__init__(security)
        self.tenancy = tenancy

    def render_GET(self, request):  # noqa: N802
        return self._serve(request, lambda r: self._admin(r, lambda: self.tenancy.list()))

    def render_POST(self, request):  # noqa: N802
        def create(r):
            body = _body(r)
            return self._admin(r, lambda: self.tenancy.create(body.get("name", _arg(r, "name")),
                                                              body.get("template", _arg(r, "template"))))
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
