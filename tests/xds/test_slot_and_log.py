"""The two structures the gRPC adapter shares across threads, without a network."""

from __future__ import annotations

import asyncio
import threading

import pytest

from sut.xds.exchange_log import ExchangeLog, approximate_size
from sut.xds.slot import LatestValueSlot, LoopWaker
from sut.xds.stream import Exchange


def _exchange(seq: int, names: int = 10) -> Exchange:
    return Exchange(
        seq=seq,
        at=0.0,
        stream_id=1,
        direction="request",
        type_short="EDS",
        nonce="",
        version="",
        names=tuple(f"endpoints-{seq:04d}-{i:04d}" for i in range(names)),
    )


def test_a_slot_keeps_only_the_newest_value_and_wakes_the_loop_once() -> None:
    async def scenario() -> tuple[int | None, int | None, int]:
        loop = asyncio.get_running_loop()
        waker = LoopWaker(loop)
        slot: LatestValueSlot[int] = LatestValueSlot(waker)
        wakeups = 0
        drain = waker._drain

        def counted() -> None:
            nonlocal wakeups
            wakeups += 1
            drain()

        waker._drain = counted  # type: ignore[method-assign]

        def offer_many() -> None:
            for value in range(1000):
                slot.offer(value)

        offering = threading.Thread(target=offer_many)
        offering.start()
        await asyncio.to_thread(offering.join)
        await asyncio.wait_for(slot.ready.wait(), 5)
        newest = slot.take()
        again = slot.take()
        return newest, again, wakeups

    newest, again, wakeups = asyncio.run(scenario())
    assert newest == 999
    assert again is None
    assert wakeups == 1


def test_offering_to_a_closed_loop_neither_raises_nor_blocks() -> None:
    loop = asyncio.new_event_loop()
    waker = LoopWaker(loop)
    slot: LatestValueSlot[int] = LatestValueSlot(waker)
    loop.close()
    slot.offer(1)
    slot.offer(2)


def test_the_exchange_log_is_capped_in_bytes_and_keeps_the_newest() -> None:
    size = approximate_size(_exchange(1))
    log = ExchangeLog(max_bytes=size * 10)
    for seq in range(1, 101):
        log.append(_exchange(seq))
    assert log.approximate_bytes <= size * 10
    assert [e.seq for e in log] == list(range(91, 101))
    assert log.last_seq() == 100
    assert [e.seq for e in log.since(97)] == [98, 99, 100]
    assert log.since(100) == []


def test_long_name_lists_take_more_of_the_cap() -> None:
    assert approximate_size(_exchange(1, names=100)) > 5 * approximate_size(_exchange(1))


def test_an_entry_larger_than_the_cap_is_kept_alone() -> None:
    log = ExchangeLog(max_bytes=1)
    log.append(_exchange(1))
    log.append(_exchange(2))
    assert [e.seq for e in log] == [2]


def test_a_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ExchangeLog(max_bytes=0)
