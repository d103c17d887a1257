from tests.connectors.conftest import router_faults  # noqa: F401 - routers run as processes here too
