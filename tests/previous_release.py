"""The previous release's tree, for the upgrade tests: what it wrote must open with this one.

No release has been tagged yet: the previous one is the tree of PREVIOUS (0.1.0, the last commit
before the upgrade notes and the schema versions of the small SQLite files existed), taken out of
this repository's history with ``git archive``. A test runs that tree's code with ``PYTHONPATH``
pointing at it (and its working directory there: ``python -c`` puts it first on the path).
"""

import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS = "b5455c3b687812333165009b84facee723d89b12"  # relayrouter 0.1.0


@pytest.fixture(scope="session")
def previous_tree(tmp_path_factory) -> Path:
    found = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{PREVIOUS}^{{commit}}"], capture_output=True)
    if found.returncode != 0:
        pytest.fail(f"the previous release's commit {PREVIOUS[:12]} is not in this clone's history "
                    "(a shallow clone?): the upgrade test needs it", pytrace=False)
    tree = tmp_path_factory.mktemp("previous")
    archive = tree / "tree.tar"
    with open(archive, "wb") as out:
        subprocess.run(["git", "-C", str(ROOT), "archive", PREVIOUS], stdout=out, check=True, timeout=120)
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    archive.unlink()
    return tree
