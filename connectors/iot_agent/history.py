"""dojot's history APIs over the data store: query parameters in, dojot's
response shapes out; free of I/O (the caller runs ``Query`` on the store).

* legacy history (``GET /history/device/{id}/history``): ``attr`` (repeatable;
  none = every attribute), ``lastN`` / ``firstN``, ``dateFrom`` / ``dateTo``
  (ISO-8601) -> one attribute: ``[{"device_id", "attr", "value", "ts"}]``,
  several: ``{"<attr>": [...]}``; newest first with ``lastN`` (the default),
  oldest first with ``firstN``.
* retriever (``GET /tss/v1/devices/{id}/data``, ``.../attrs/{attr}/data``):
  ``dateFrom``, ``dateTo``, ``limit`` (1..256, default 256), ``page`` (from 1),
  ``order`` (``desc`` default, ``asc``) -> ``{"data": [...], "paging": {...}}``.
"""

from dataclasses import dataclass

from .normalize import Invalid, format_timestamp, parse_timestamp
from .registry import PAGE_MAX, Tables

LEGACY_MAX = 10_000  # the most points one legacy history answer carries


class BadQuery(ValueError):
    pass


def _date(value, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return parse_timestamp(value)
    except Invalid:
        raise BadQuery(f"{name} must be an ISO-8601 date and time, not {value!r}") from None


def _count(value, name: str, low: int, high: int, default: int | None) -> int | None:
    if value is None or value == "":
        return default
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadQuery(f"{name} must be a whole number from {low} to {high}, not {value!r}")
    return value


def _attr_name(value) -> str:
    if not isinstance(value, str) or not value or '"' in value or "\\" in value:
        raise BadQuery(f"attr must be an attribute name, not {value!r}")
    return value


@dataclass(frozen=True)
class PageQuery:
    device: str
    attr: str | None
    date_from: int | None
    date_to: int | None
    limit: int
    page: int
    order: str

    @classmethod
    def parse(cls, device: str, attr=None, dateFrom=None, dateTo=None, limit=None, page=None,  # noqa: N803
              order=None) -> "PageQuery":
        order = order or "desc"
        if order not in ("asc", "desc"):
            raise BadQuery(f"order must be asc or desc, not {order!r}")
        date_from, date_to = _date(dateFrom, "dateFrom"), _date(dateTo, "dateTo")
        if date_from is not None and date_to is not None and date_from > date_to:
            raise BadQuery("dateFrom is after dateTo")
        return cls(device, None if attr is None else _attr_name(attr), date_from, date_to,
                   _count(limit, "limit", 1, PAGE_MAX, PAGE_MAX), _count(page, "page", 1, 10**9, 1), order)

    def run(self, tables: Tables, tenant: str):
        return tables.query_data(tenant, self.device, self.date_from, self.date_to, self.order, self.limit,
                                 (self.page - 1) * self.limit, self.attr)

    def answer(self, rows, total: int, url: str) -> dict:
        if self.attr is None:
            data = [{"ts": format_timestamp(ts), "attrs": [{"label": k, "value": v} for k, v in attrs.items()]}
                    for ts, attrs in rows]
        else:
            data = [{"ts": format_timestamp(ts), "value": attrs[self.attr]} for ts, attrs in rows]
        return {"data": data, "paging": self._paging(total, url)}

    def _paging(self, total: int, url: str) -> dict:
        pages = max(1, -(-total // self.limit))

        def page(number):
            if number < 1 or number > pages:
                return None
            return {"number": number, "url": f"{url}?page={number}&limit={self.limit}&order={self.order}"}
        return {"previous": page(self.page - 1), "current": page(self.page) or {"number": self.page, "url": None},
                "next": page(self.page + 1), "totalItems": total, "totalPages": pages,
                "limitPerPage": self.limit}


@dataclass(frozen=True)
class LegacyQuery:
    device: str
    attrs: tuple[str, ...]  # empty: every attribute
    newest_first: bool
    count: int
    date_from: int | None
    date_to: int | None

    @classmethod
    def parse(cls, device: str, attrs=(), lastN=None, firstN=None, dateFrom=None, dateTo=None):  # noqa: N803
        if lastN not in (None, "") and firstN not in (None, ""):
            raise BadQuery("give lastN or firstN, not both")
        last = _count(lastN, "lastN", 1, LEGACY_MAX, None)
        first = _count(firstN, "firstN", 1, LEGACY_MAX, None)
        if isinstance(attrs, str):
            attrs = [a for a in attrs.split(",") if a]
        return cls(device, tuple(_attr_name(a) for a in attrs), first is None, last or first or LEGACY_MAX,
                   _date(dateFrom, "dateFrom"), _date(dateTo, "dateTo"))

    def run(self, tables: Tables, tenant: str) -> dict:
        """{attr: [(ts, value)]} for each asked (or found) attribute."""
        order = "desc" if self.newest_first else "asc"
        out: dict[str, list] = {}
        for attr in self.attrs or (None,):
            rows, _ = tables.query_data(tenant, self.device, self.date_from, self.date_to, order,
                                        self.count if attr is not None else LEGACY_MAX, 0, attr)
            for ts, values in rows:
                for name, value in values.items():
                    if attr is None or name == attr:
                        points = out.setdefault(name, [])
                        if len(points) < self.count:
                            points.append((ts, value))
        return out

    def answer(self, found: dict):
        """dojot's shape, or None when nothing was found (404)."""
        def points(attr):
            return [{"device_id": self.device, "attr": attr, "value": value, "ts": format_timestamp(ts)}
                    for ts, value in found.get(attr, [])]
        if len(self.attrs) == 1:
            result = points(self.attrs[0])
            return result or None
        names = self.attrs or tuple(sorted(found))
        result = {attr: points(attr) for attr in names}
        return result if any(result.values()) else None
