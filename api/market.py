"""Market data (shared by every tenant): instruments and bars of any timeframe."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel

from api.deps import TenantConn
from api.schemas import ERROR_RESPONSES
from pasar.errors import InvalidInput
from pasar.market import service as market
from pasar.market.frames import Timeframe

router = APIRouter(prefix="/v1/market", tags=["market"], responses=ERROR_RESPONSES)


class Instrument(BaseModel):
    symbol: str
    name: str
    exchange: str
    asset_class: str
    currency: str
    lot_size: int
    price_precision: int
    tick_rule: str
    calendar: str
    is_tradable: bool
    allows_short: bool


class InstrumentList(BaseModel):
    items: list[Instrument]


class Bar(BaseModel):
    ts: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class BarsResponse(BaseModel):
    symbol: str
    timeframe: Timeframe
    built_from: Timeframe | None
    bars: list[Bar]
    next_cursor: str | None


def _encode_cursor(start: datetime) -> str:
    return base64.urlsafe_b64encode(start.isoformat().encode()).decode()


def _decode_cursor(cursor: str) -> datetime:
    try:
        value = datetime.fromisoformat(base64.urlsafe_b64decode(cursor.encode()).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInput("invalid cursor", code="invalid_cursor") from exc
    if value.tzinfo is None:
        raise InvalidInput("invalid cursor", code="invalid_cursor")
    return value


@router.get("/instruments", response_model=InstrumentList)
async def list_instruments(
    conn: TenantConn,
    asset_class: Literal["equity", "fx", "crypto", "index"] | None = None,
    exchange: Annotated[str | None, Query(max_length=16)] = None,
) -> InstrumentList:
    rows = await market.list_instruments(conn, asset_class=asset_class, exchange_code=exchange)
    return InstrumentList(items=[Instrument.model_validate(row, from_attributes=True) for row in rows])


@router.get("/bars", response_model=BarsResponse)
async def read_bars(
    conn: TenantConn,
    symbol: Annotated[str, Query(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$")],
    timeframe: Timeframe = Timeframe.d1,
    start: AwareDatetime | None = None,
    end: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=market.MAX_BARS_PAGE)] = 1_000,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
) -> BarsResponse:
    """Bars in [start, end), oldest first, up to ``limit`` a page; a coarser timeframe than the stored one is
    built by bucketing in the exchange's time zone. Follow ``next_cursor`` for the next page."""
    page = await market.bars(
        conn,
        symbol=symbol,
        timeframe=timeframe,
        start=_decode_cursor(cursor) if cursor else start,
        end=end,
        limit=limit,
    )
    return BarsResponse(
        symbol=page.symbol,
        timeframe=page.timeframe,
        built_from=page.base_timeframe,
        bars=[Bar.model_validate(row) for row in page.bars],
        next_cursor=None if page.next_start is None else _encode_cursor(page.next_start),
    )
