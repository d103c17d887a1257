"""The security page's boundaries table holds to its word: each boundary names
where it is enforced and the tests that prove it, and every file and test it
names exists (a renamed or deleted test fails here, not silently on the page)."""

import re

from ..documentation import ROOT, page

# What the page must cover: each boundary a tenant, a pair, a token or an owner relies on.
BOUNDARIES = ("tenant", "pair", "admin", "mailbox owner", "mediator proxy's local API", "hostile input",
              "relay scope", "MQTT identity", "Micronets connections", "failed-login limits")
REFERENCE = re.compile(r"`((?:relayrouter|connectors|tests)/[\w/.]+\.py)(?:::(\w+))?")


def rows() -> dict[str, list[str]]:
    """boundary -> its cells (promise, enforced in, proved by)."""
    text = page("explanation/security.md").split("## Boundaries", 1)[1].split("\n## ", 1)[0]
    table = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| boundary")]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split(" | ")] for line in table)}


def test_every_boundary_has_a_promise_an_enforcement_and_a_proving_test():
    found = rows()
    for boundary in BOUNDARIES:
        matching = [name for name in found if name.startswith(boundary)]
        assert len(matching) == 1, (boundary, sorted(found))
        promise, enforced, proved = found[matching[0]]
        assert promise and REFERENCE.search(enforced), (boundary, enforced)
        assert any(path.startswith("tests/") for path, _ in REFERENCE.findall(proved)), (boundary, proved)


def test_every_file_and_test_the_page_names_exists():
    for cells in rows().values():
        for path, test in REFERENCE.findall(" ".join(cells)):
            assert (ROOT / path).is_file(), path
            if test:
                assert re.search(rf"^(async )?def {test}\(", (ROOT / path).read_text(), re.M), f"{path}::{test}"
