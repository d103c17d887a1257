"""CHANGELOG.md: Keep a Changelog headings, newest first, and the top one is the package's version."""

import re
from pathlib import Path

from packaging.version import Version

from relayrouter import __version__

CHANGELOG = Path(__file__).resolve().parents[1] / "CHANGELOG.md"
HEADING = re.compile(r"^## \[(?P<version>[^\]]+)\] - (?P<when>\d{4}-\d{2}-\d{2}|Unreleased)$", re.M)
KINDS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def _releases():
    return [(Version(m["version"]), m["when"]) for m in HEADING.finditer(CHANGELOG.read_text())]


def test_the_top_entry_is_the_package_version():
    (top, when), *_ = _releases()
    version = Version(__version__)
    assert top == Version(version.base_version), f"CHANGELOG's top entry is {top}, the package says {version}"
    # A development version is unreleased; a release has its date.
    assert (when == "Unreleased") == version.is_devrelease


def test_entries_are_newest_first_and_only_the_top_one_unreleased():
    releases = _releases()
    versions = [v for v, _ in releases]
    assert versions == sorted(versions, reverse=True) and len(set(versions)) == len(versions)
    assert all(when != "Unreleased" for _, when in releases[1:])


def test_each_entry_uses_the_keep_a_changelog_kinds():
    text = CHANGELOG.read_text()
    entries = HEADING.split(text)[1:]
    for body in entries[2::3]:
        kinds = set(re.findall(r"^### (.+)$", body, re.M))
        assert kinds and kinds <= KINDS, kinds - KINDS


def test_the_upgrade_notes_give_the_call_rule_for_router_procedures():
    text = CHANGELOG.read_text()
    notes = text[text.index("\n## Upgrading\n"):HEADING.search(text).start()]
    assert "relayrouter.denylist." in notes and 'allow = ["call"]' in notes
