"""Codes and constants of the event contract (version 2, docs/events.md).

The JSON field names (``ts``, ``venue``, ``type``, ``account``, ``broker``,
``owner``, ``symbol``, ``side``, ``price``, ``qty``, ``order_id``, ``match_id``,
``seq``, ``aggressor``) are a public contract; the integer codes below are internal and
also used by the binary frame format (changing them needs a new format version; new codes
are only ever appended).
"""

from __future__ import annotations

import numpy as np

VENUES: tuple[str, ...] = ("SSE", "SZSE", "BSE")
VENUE_CODE: dict[str, int] = {v: i for i, v in enumerate(VENUES)}

TYPES: tuple[str, ...] = ("order", "cancel", "trade", "index", "indicative")
TYPE_CODE: dict[str, int] = {t: i for i, t in enumerate(TYPES)}
#: ``INDICATIVE`` (contract version 2): a call auction's indicative price of a security
ORDER, CANCEL, TRADE, INDEX, INDICATIVE = 0, 1, 2, 3, 4

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

# bits of a record's match flags (``Batch.mflags``; the binary records of frame versions 3 to 6)
MF_HAS_MATCH_ID = 1
MF_MATCH_ID_INT = 2

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
#: a match id (the venue's execution id) is at most this many bytes of UTF-8, as an order id in a binary frame
MATCH_ID_MAX_BYTES = 24


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


# -- session phases -------------------------------------------------------------------------------------
# The A-share timetable of the three venues' trading rules (上海证券交易所交易规则, 深圳证券交易所交易规则,
# 北京证券交易所交易规则): opening call auction 09:15-09:25 (cancels accepted until 09:20, not from 09:20 to
# 09:25), 09:25-09:30 nothing is matched, continuous auction 09:30-11:30 and 13:00-14:57, closing call
# auction 14:57-15:00. Times are Asia/Shanghai exchange time; each interval includes its start, not its end.
PHASE_CLOSED = 0  #: before the opening call (00:00-09:15)
PHASE_OPENING_CALL = 1  #: opening call auction, 09:15-09:25
PHASE_PRE_OPEN = 2  #: after the opening call, before the continuous auction, 09:25-09:30
PHASE_CONTINUOUS = 3  #: continuous auction, 09:30-11:30 and 13:00-14:57
PHASE_LUNCH = 4  #: midday break, 11:30-13:00
PHASE_CLOSING_CALL = 5  #: closing call auction, 14:57-15:00
PHASE_AFTER_CLOSE = 6  #: 15:00-24:00
PHASES: tuple[str, ...] = ("closed", "opening_call", "pre_open", "continuous", "lunch", "closing_call",
                           "after_close")


def _hm(h: int, m: int) -> int:
    return (h * 3600 + m * 60) * NS_PER_SECOND


#: (start of each phase as nanoseconds after local midnight, phase code), in order; the same for every venue
_A_SHARE_TIMETABLE: tuple[tuple[int, int], ...] = (
    (0, PHASE_CLOSED), (_hm(9, 15), PHASE_OPENING_CALL), (_hm(9, 25), PHASE_PRE_OPEN),
    (_hm(9, 30), PHASE_CONTINUOUS), (_hm(11, 30), PHASE_LUNCH), (_hm(13, 0), PHASE_CONTINUOUS),
    (_hm(14, 57), PHASE_CLOSING_CALL), (_hm(15, 0), PHASE_AFTER_CLOSE),
)
#: each venue's timetable, by venue code (SSE, SZSE, BSE: one A-share timetable)
SESSION_TIMETABLES: tuple[tuple[tuple[int, int], ...], ...] = (_A_SHARE_TIMETABLE,) * len(VENUES)
#: in the opening call, cancels are accepted before 09:20 and not from 09:20 to its end (09:25): the phase is
#: one code; ``time_of_day_ns(ts) < OPENING_CALL_NO_CANCEL_NS`` tells the two parts apart
OPENING_CALL_NO_CANCEL_NS = _hm(9, 20)


def time_of_day_ns(ts) -> np.ndarray:
    """Nanoseconds since 00:00 Asia/Shanghai of each timestamp."""
    return (np.asarray(ts, dtype=np.int64) + SHANGHAI_OFFSET_NS) % NS_PER_DAY


def session_phase(ts, venue) -> np.ndarray:
    """The session phase (``PHASE_*``, uint8) of each event at exchange time ``ts`` (int64 ns) on ``venue``
    (venue codes; one code or an array like ``ts``). From the time of day only: whether the day is a trading
    day (weekends, holidays, suspensions) is not known from a timestamp."""
    tod = time_of_day_ns(ts)
    venue = np.broadcast_to(np.asarray(venue, dtype=np.uint8), tod.shape)
    out = np.empty(tod.shape, np.uint8)
    done = np.zeros(tod.shape, bool)
    for table in dict.fromkeys(SESSION_TIMETABLES):  # each distinct timetable once
        codes = [v for v, t in enumerate(SESSION_TIMETABLES) if t == table]
        m = np.isin(venue, codes) if len(codes) < len(VENUES) else ~done
        starts = np.array([s for s, _ in table], np.int64)
        phases = np.array([p for _, p in table], np.uint8)
        out[m] = phases[np.searchsorted(starts, tod[m], "right") - 1]
        done |= m
    out[~done] = PHASE_CLOSED  # an unknown venue code
    return out

