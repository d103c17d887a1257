"""One URI matching index, shared by the broker (topics) and the dealer (procedures).

Theory of operation
-------------------
An entry is stored under its ``(uri, match)`` key, where ``match`` is one of
``exact``, ``prefix`` or ``wildcard``.  Three structures answer "which entries
match this concrete URI?" without scanning all of them:

* ``exact``: a dict from URI to entry; one lookup.
* ``prefix``: a dict from prefix to entry, plus the set of distinct prefix
  lengths in use.  A URI is matched by slicing it at each of those lengths and
  looking the slice up: cost grows with the number of *distinct lengths*, not
  with the number of prefixes.
* ``wildcard``: a trie over URI components where an empty component is the
  wildcard.  Patterns are only matched against URIs with the same number of
  components, and each level follows at most two branches (the concrete
  component and the wildcard).

For RPC the spec orders matches: "exact matching policy takes precedence over
prefix matching and prefix over wildcard"; among prefixes the longest wins,
among wildcards the one whose concrete components come first.
"""

from typing import Generic, Iterator, TypeVar

T = TypeVar("T")

EXACT = "exact"
PREFIX = "prefix"
WILDCARD = "wildcard"
MATCH_POLICIES = (EXACT, PREFIX, WILDCARD)


class _TrieNode:
    __slots__ = ("children", "entries")

    def __init__(self) -> None:
        self.children: dict[str, _TrieNode] = {}
        self.entries: dict[str, object] = {}


class _WildcardTrie(Generic[T]):
    """Wildcard patterns by component; '' in a pattern matches any one component."""

    __slots__ = ("_root", "_count")

    def __init__(self) -> None:
        self._root = _TrieNode()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, pattern: str, entry: T) -> None:
        node = self._root
        for part in pattern.split("."):
            node = node.children.setdefault(part, _TrieNode())
        if pattern not in node.entries:
            self._count += 1
        node.entries[pattern] = entry

    def remove(self, pattern: str) -> None:
        path = [self._root]
        parts = pattern.split(".")
        for part in parts:
            child = path[-1].children.get(part)
            if child is None:
                return
            path.append(child)
        if path[-1].entries.pop(pattern, None) is None:
            return
        self._count -= 1
        # Prune nodes left empty, deepest first.
        for depth in range(len(parts), 0, -1):
            node = path[depth]
            if node.entries or node.children:
                break
            del path[depth - 1].children[parts[depth - 1]]

    def get(self, pattern: str) -> T | None:
        node = self._root
        for part in pattern.split("."):
            node = node.children.get(part)
            if node is None:
                return None
        return node.entries.get(pattern)

    def match(self, uri: str) -> list[T]:
        parts = uri.split(".")
        found: list[T] = []
        self._collect(self._root, parts, 0, found)
        return found

    def _collect(self, node: _TrieNode, parts: list[str], depth: int, found: list) -> None:
        if depth == len(parts):
            found.extend(node.entries.values())
            return
        child = node.children.get(parts[depth])
        if child is not None:
            self._collect(child, parts, depth + 1, found)
        wild = node.children.get("")
        if wild is not None:
            self._collect(wild, parts, depth + 1, found)


def _wildcard_rank(pattern: str) -> tuple[bool, ...]:
    """Orders wildcard patterns: concrete components further left rank higher."""
    return tuple(part != "" for part in pattern.split("."))


class UriIndex(Generic[T]):
    """Entries keyed by (uri, match), found by concrete URI."""

    __slots__ = ("exact", "prefix", "_prefix_lengths", "_lengths_sorted", "_wildcard")

    def __init__(self) -> None:
        self.exact: dict[str, T] = {}
        self.prefix: dict[str, T] = {}
        # distinct prefix length -> how many prefixes have it
        self._prefix_lengths: dict[int, int] = {}
        self._lengths_sorted: tuple[int, ...] = ()
        self._wildcard: _WildcardTrie[T] = _WildcardTrie()

    def __len__(self) -> int:
        return len(self.exact) + len(self.prefix) + len(self._wildcard)

    def get(self, uri: str, match: str = EXACT) -> T | None:
        if match == EXACT:
            return self.exact.get(uri)
        if match == PREFIX:
            return self.prefix.get(uri)
        return self._wildcard.get(uri)

    def add(self, uri: str, match: str, entry: T) -> None:
        if match == EXACT:
            self.exact[uri] = entry
        elif match == PREFIX:
            if uri not in self.prefix:
                n = len(uri)
                self._prefix_lengths[n] = self._prefix_lengths.get(n, 0) + 1
                self._lengths_sorted = tuple(sorted(self._prefix_lengths))
            self.prefix[uri] = entry
        elif match == WILDCARD:
            self._wildcard.add(uri, entry)
        else:
            raise ValueError(f"unknown match policy {match!r}")

    def remove(self, uri: str, match: str) -> None:
        if match == EXACT:
            self.exact.pop(uri, None)
        elif match == PREFIX:
            if self.prefix.pop(uri, None) is not None:
                n = len(uri)
                left = self._prefix_lengths[n] - 1
                if left:
                    self._prefix_lengths[n] = left
                else:
                    del self._prefix_lengths[n]
                    self._lengths_sorted = tuple(sorted(self._prefix_lengths))
        elif match == WILDCARD:
            self._wildcard.remove(uri)

    def match(self, uri: str) -> list[T]:
        """Every entry matching ``uri``: exact first, then prefixes, then wildcards."""
        found: list[T] = []
        entry = self.exact.get(uri)
        if entry is not None:
            found.append(entry)
        if self._prefix_lengths:
            found.extend(self._prefixes_of(uri))
        if self._wildcard._count:
            found.extend(self._wildcard.match(uri))
        return found

    def best(self, uri: str) -> T | None:
        """The one entry a call goes to: exact, else longest prefix, else best wildcard."""
        entry = self.exact.get(uri)
        if entry is not None:
            return entry
        if self._prefix_lengths:
            longest = None
            for candidate in self._prefixes_of(uri):
                longest = candidate  # _prefixes_of yields shortest first
            if longest is not None:
                return longest
        if self._wildcard._count:
            matches = self._wildcard.match(uri)
            if matches:
                return max(matches, key=lambda entry: _wildcard_rank(entry.uri))
        return None

    def _prefixes_of(self, uri: str) -> Iterator[T]:
        prefix = self.prefix
        size = len(uri)
        for n in self._lengths_sorted:
            if n > size:
                break
            entry = prefix.get(uri[:n])
            if entry is not None:
                yield entry

    def entries(self) -> Iterator[T]:
        yield from self.exact.values()
        yield from self.prefix.values()
        yield from self._iter_trie(self._wildcard._root)

    def _iter_trie(self, node: _TrieNode) -> Iterator[T]:
        yield from node.entries.values()
        for child in node.children.values():
            yield from self._iter_trie(child)


def pattern_matches(pattern: str, match: str, uri: str) -> bool:
    """Whether one (pattern, match) entry matches the concrete ``uri``."""
    if match == EXACT:
        return pattern == uri
    if match == PREFIX:
        return uri.startswith(pattern)
    parts = uri.split(".")
    wanted = pattern.split(".")
    return len(parts) == len(wanted) and all(w == "" or w == p for w, p in zip(wanted, parts))
