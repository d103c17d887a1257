"""dojot's history APIs over the data store: query parameters in, dojot's
response shapes out; free of I/O (the caller runs ``Query`` on the store).

* retriever (``GET /tss/v1/devices/{id}/data``, ``.../attrs/{attr}/data``):
  ``dateFrom`` (inclusive), ``dateTo`` (exclusive; default: now), ``limit``
  (default 256; 0 or none is the default, over 256 a 400), ``page`` (from 1),
  ``order`` (``desc`` default, ``asc``) -> ``{"data": [...], "paging": {...}}``;
  ``next`` is null when the page is not full (dojot's paginator counts
  nothing), as CSV with ``Accept: text/csv``.
* legacy history (dojot's history proxy, ``GET /history/device/{id}/history``):
  ``attr`` (repeatable or comma-separated; none = every attribute),
  ``lastN`` / ``firstN`` (``firstN`` wins; default 256 points), ``dateFrom`` /
  ``dateTo`` -> one attribute: ``[{"device_id", "ts", "value", "attr",
  "metadata"}]``, several: ``{"<attr>": [...]}``; newest first with ``lastN``,
  oldest first with ``firstN``.

Dates are RFC 3339 date-times (an offset is required), compared to the
nanosecond: a point at ``t`` ms is in ``[dateFrom, dateTo)`` when
``dateFrom <= t < dateTo`` exactly (so a sub-millisecond bound is never
rounded onto a point).
"""

from dataclasses import dataclass
from urllib.parse import quote

from .dojot_api import page_limit, page_number
from .normalize import format_timestamp, parse_date_time
from .registry import PAGE_MAX, Tables

LEGACY_MAX = 10_000  # the most points one legacy history answer carries
PAGE_PARAMETERS = ("dateFrom", "dateTo", "limit", "page", "order")


class BadQuery(ValueError):
    pass


def _bound(value, name: str) -> int | None:
    """A date parameter -> the first epoch ms at or after it (None: not given)."""
    if value is None:
        return None
    ns = parse_date_time(value)
    if ns is None:
        raise BadQuery(f'request.query.{name} should match format "date-time"')
    return -(-ns // 1_000_000)


def _attr_name(value) -> str:
    if not isinstance(value, str) or not value or '"' in value or "\\" in value:
        raise BadQuery(f"attr must be an attribute name, not {value!r}")
    return value


def _window(date_from, date_to, now_ms: int) -> tuple[int | None, int]:
    start, stop = _bound(date_from, "dateFrom"), _bound(date_to, "dateTo")
    stop = now_ms if stop is None else stop
    if start is not None and start > stop:
        raise BadQuery("dateFrom is after dateTo: the range is empty")
    return start, stop


@dataclass(frozen=True)
class PageQuery:
    device: str
    attr: str | None
    date_from: int | None  # ms, inclusive
    date_to: int  # ms, exclusive
    limit: int
    page: int
    order: str

    @classmethod
    def parse(cls, device: str, attr=None, dateFrom=None, dateTo=None, limit=None, page=None,  # noqa: N803
              order=None, now_ms: int = 0) -> "PageQuery":
        limit = page_limit(None if limit is None else str(limit), PAGE_MAX, PAGE_MAX)
        order = "desc" if order is None else order
        if order not in ("asc", "desc"):
            raise BadQuery("request.query.order should be equal to one of the allowed values: asc, desc")
        start, stop = _window(dateFrom, dateTo, now_ms)
        return cls(device, None if attr is None else _attr_name(attr), start, stop, limit,
                   page_number(None if page is None else str(page)), order)

    def run(self, tables: Tables, tenant: str):
        return tables.query_data(tenant, self.device, self.date_from, self.date_to, self.order, self.limit,
                                 (self.page - 1) * self.limit, self.attr)

    def points(self, rows) -> list:
        if self.attr is None:
            return [{"ts": format_timestamp(ts), "attrs": [{"label": k, "value": v} for k, v in attrs.items()]}
                    for ts, attrs in rows]
        return [{"ts": format_timestamp(ts), "value": attrs[self.attr]} for ts, attrs in rows]

    def rows_for_csv(self, rows) -> list[dict]:
        """The retriever's CSV rows: ``ts`` then each attribute (or ``value``)."""
        if self.attr is None:
            return [{"ts": format_timestamp(ts), **attrs} for ts, attrs in rows]
        return [{"ts": format_timestamp(ts), "value": attrs[self.attr]} for ts, attrs in rows]

    def answer(self, rows, total: int, url: str, query: dict | None = None) -> dict:
        return {"data": self.points(rows), "paging": self._paging(len(rows), total, url, query or {})}

    def _paging(self, count: int, total: int, url: str, query: dict) -> dict:
        def page(number):
            items = {**query, "page": number, "limit": self.limit}
            return {"number": number, "url": url + "?" + "&".join(f"{k}={_quote(v)}" for k, v in items.items())}
        return {"previous": page(self.page - 1) if self.page > 1 else None, "current": page(self.page),
                "next": page(self.page + 1) if count >= self.limit else None,
                "totalItems": total, "totalPages": max(1, -(-total // self.limit)), "limitPerPage": self.limit}


def _quote(value) -> str:
    return quote(str(value), safe="")


@dataclass(frozen=True)
class LegacyQuery:
    device: str
    attrs: tuple[str, ...]  # empty: every attribute
    newest_first: bool
    count: int
    date_from: int | None
    date_to: int

    @classmethod
    def parse(cls, device: str, attrs=(), lastN=None, firstN=None, dateFrom=None, dateTo=None,  # noqa: N803
              now_ms: int = 0):
        first = bool(firstN)  # dojot: a non-empty firstN wins over lastN
        wanted = firstN if first else (lastN or None)
        count = page_limit(None if wanted is None else str(wanted), PAGE_MAX, LEGACY_MAX)
        if isinstance(attrs, str):
            attrs = [a for a in attrs.split(",") if a]
        start, stop = _window(dateFrom, dateTo, now_ms)
        return cls(device, tuple(_attr_name(a) for a in attrs), not first, count, start, stop)

    def run(self, tables: Tables, tenant: str) -> dict:
        """{attr: [(ts, value)]} for each asked (or found) attribute; with none
        asked, the ``count`` newest (oldest) points of the device, every attribute."""
        order = "desc" if self.newest_first else "asc"
        out: dict[str, list] = {}
        for attr in self.attrs or (None,):
            rows, _ = tables.query_data(tenant, self.device, self.date_from, self.date_to, order,
                                        self.count, 0, attr)
            for ts, values in rows:
                for name, value in values.items():
                    if attr is None or name == attr:
                        out.setdefault(name, []).append((ts, value))
        return out

    def answer(self, found: dict):
        """dojot's shape, or None when nothing was found (404)."""
        def points(attr):
            return [{"device_id": self.device, "ts": format_timestamp(ts), "value": value, "attr": attr,
                     "metadata": {}} for ts, value in found.get(attr, [])]
        if len(self.attrs) == 1:
            result = points(self.attrs[0])
            return result or None
        names = self.attrs or tuple(found)
        result = {attr: points(attr) for attr in names}
        return result if any(result.values()) else None
