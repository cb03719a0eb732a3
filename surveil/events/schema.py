"""Codes and constants of the event contract.

The JSON field names (``ts``, ``venue``, ``type``, ``account``, ``broker``,
``owner``, ``symbol``, ``side``, ``price``, ``qty``, ``order_id``, ``seq``,
``aggressor``) are a public contract; the integer codes below are internal and
also used by the binary frame format (changing them needs a new format version).
"""

from __future__ import annotations

VENUES: tuple[str, ...] = ("SSE", "SZSE", "BSE")
VENUE_CODE: dict[str, int] = {v: i for i, v in enumerate(VENUES)}

TYPES: tuple[str, ...] = ("order", "cancel", "trade", "index")
TYPE_CODE: dict[str, int] = {t: i for i, t in enumerate(TYPES)}
ORDER, CANCEL, TRADE, INDEX = 0, 1, 2, 3

SIDES: tuple[str | None, ...] = (None, "B", "S")
SIDE_CODE: dict[str | None, int] = {None: 0, "B": 1, "S": 2}
SIDE_NONE, SIDE_B, SIDE_S = 0, 1, 2

#: money and prices are integers in 1/10000 yuan (index levels in 1/10000 points)
PRICE_SCALE = 10_000


def fen(value_units: int) -> int:
    """Money in price units (1/10000 yuan, price x qty) as integer fen (0.01 yuan), rounded half up: the unit
    of every amount in alerts (exchanges publish traded values to the fen)."""
    return (int(value_units) + 50) // 100

# flag bits of a record
F_HAS_AGGRESSOR = 1
F_AGGRESSOR = 2
F_HAS_SEQ = 4
F_ORDER_ID_INT = 8
F_HAS_PRICE = 16
F_HAS_QTY = 32
F_HAS_ORDER_ID = 64

NS_PER_SECOND = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SECOND
#: Asia/Shanghai has had a fixed UTC+08:00 offset without daylight saving since 1991,
#: so the trading day of a timestamp is the calendar day of ``ts + 8h``.
SHANGHAI_OFFSET_NS = 8 * 3600 * NS_PER_SECOND

#: accepted timestamp range: 1990-12-19 (SSE opening) .. 2100-01-01
TS_MIN = 661_564_800 * NS_PER_SECOND
TS_MAX = 4_102_444_800 * NS_PER_SECOND
#: prices above this (in yuan / index points) are rejected as implausible (and would overflow)
PRICE_MAX = 100_000_000_000
QTY_MAX = 10**15
ORDER_ID_MAX_BYTES = 24


def trading_day_index(ts_ns):
    """Days since 1970-01-01 of the Asia/Shanghai calendar day of ``ts_ns`` (int or numpy array)."""
    return (ts_ns + SHANGHAI_OFFSET_NS) // NS_PER_DAY


def day_start_ns(day_index: int) -> int:
    """Nanosecond timestamp of 00:00 Asia/Shanghai of a day index."""
    return day_index * NS_PER_DAY - SHANGHAI_OFFSET_NS


def day_str(day_index: int) -> str:
    import datetime as _dt

    return (_dt.date(1970, 1, 1) + _dt.timedelta(days=int(day_index))).isoformat()


def ns_to_iso(ts_ns: int) -> str:
    """ISO-8601 in Asia/Shanghai with nanoseconds, e.g. ``2024-02-19T09:30:00.000000000+08:00``."""
    import datetime as _dt

    local = ts_ns + SHANGHAI_OFFSET_NS
    secs, frac = divmod(int(local), NS_PER_SECOND)
    dt = _dt.datetime(1970, 1, 1) + _dt.timedelta(seconds=secs)
    return f"{dt.strftime('%Y-%m-%dT%H:%M:%S')}.{frac:09d}+08:00"
