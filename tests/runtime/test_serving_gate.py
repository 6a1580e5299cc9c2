"""The gate's own rules, without a server: how much request body it holds at once, and what an HTTP client is told when
the forwarded gRPC call fails."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("grpc")

from jarrn_deploy.runtime.serving_gate import ByteBudget, _grpc_refusal  # noqa: E402


def test_a_body_waits_unread_until_the_bodies_held_leave_room_for_it() -> None:
    async def scenario() -> list[str]:
        budget, events = ByteBudget(100), []
        first_done = asyncio.Event()

        async def first() -> None:
            async with budget.held(70):
                events.append("first holds 70")
                await first_done.wait()
            events.append("first released")

        async def second() -> None:
            async with budget.held(50):
                events.append(f"second holds 50 ({budget.used} in use)")

        tasks = [asyncio.create_task(first())]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(second()))
        await asyncio.sleep(0.01)
        events.append(f"second still waiting ({budget.used} in use)")
        first_done.set()
        await asyncio.gather(*tasks)
        events.append(f"{budget.used} in use")
        return events

    assert asyncio.run(scenario()) == ["first holds 70", "second still waiting (70 in use)", "first released",
                                       "second holds 50 (50 in use)", "0 in use"]


def test_a_waiting_body_whose_client_leaves_takes_no_room() -> None:
    async def scenario() -> int:
        budget = ByteBudget(100)
        async with budget.held(90):
            waiter = asyncio.create_task(_hold(budget, 50))
            await asyncio.sleep(0.01)
            waiter.cancel()  # aiohttp cancels the handler of a client that left
            with pytest.raises(asyncio.CancelledError):
                await waiter
        return budget.used

    assert asyncio.run(scenario()) == 0


async def _hold(budget: ByteBudget, size: int) -> None:
    async with budget.held(size):
        await asyncio.sleep(10)


def test_an_unreachable_triton_is_a_503_that_names_no_internal_address() -> None:
    status, message = _grpc_refusal("UNAVAILABLE", "failed to connect to all addresses; last error: UNKNOWN: "
                                                   "ipv4:127.0.0.1:40123: Connection refused")
    assert (status, message) == (503, "the inference server is not reachable now")


def test_tritons_own_errors_keep_their_message_and_its_http_status() -> None:
    assert _grpc_refusal("UNAVAILABLE", "Request timeout expired") == (503, "Request timeout expired")
    assert _grpc_refusal("INVALID_ARGUMENT", "item 1 of 2: sparse_depth: NaN") == (400, "item 1 of 2: sparse_depth: NaN")
    assert _grpc_refusal("NOT_FOUND", "") == (404, "NOT_FOUND")
