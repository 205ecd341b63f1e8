"""The streaming client's decisions from Salesforce's replies (errors, advice), and how events are grouped
into wakes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sfsync import streaming
from sfsync.events import bursts
from sfsync.streaming import Advice, StreamingError, error_code

INVALID_REPLAY = (
    "400::The replayId {5} you provided was invalid. Please provide a valid ID, -2 to replay all events, "
    "or -1 to replay only new events."
)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ({"error": "403::Unknown client"}, (403, "Unknown client")),
        ({"error": "401::Authentication invalid"}, (401, "Authentication invalid")),
        ({"error": INVALID_REPLAY}, (400, INVALID_REPLAY[5:])),
        ({"error": "402:abc:Payment"}, (402, "Payment")),  # Bayeux's code:args:text
        (  # a denied handshake nests its cause
            {
                "error": "403::Handshake denied",
                "ext": {"sfdc": {"failureReason": "401::Authentication invalid"}},
            },
            (401, "Authentication invalid"),
        ),
        ({"successful": False}, (0, "")),
    ],
)
def test_error_codes(reply, expected):
    assert error_code(reply) == expected


def test_advice_updates_only_what_it_names_in_seconds():
    advice = Advice().updated({"interval": 0, "timeout": 2000, "reconnect": "retry"})
    assert advice == Advice("retry", 0.0, 2.0)
    assert advice.updated({"reconnect": "handshake"}) == Advice("handshake", 0.0, 2.0)
    assert advice.updated(None) == advice and Advice().timeout == 110.0


@pytest.mark.parametrize(
    ("reply", "decision"),
    [
        ({"error": "401::Authentication invalid", "advice": {"reconnect": "none"}}, streaming._LoginAgain),
        ({"error": "403::Unknown client", "advice": {"reconnect": "handshake"}}, streaming._HandshakeAgain),
        ({"error": "500::Anything", "advice": {"reconnect": "handshake"}}, streaming._HandshakeAgain),
        ({"error": "403::Forbidden"}, StreamingError),
    ],
)
def test_what_a_failed_reply_makes_the_client_do(reply, decision):
    with pytest.raises(decision):
        streaming._raise_for(reply, "Salesforce refused the subscription to /data/LeadChangeEvent", {})


def test_a_refused_subscription_says_what_to_fix():
    with pytest.raises(
        StreamingError,
        match=r"403::Forbidden \(the subscribing user \(salesforce_events, else salesforce_default\)"
        r" needs View All",
    ):
        streaming._raise_for({"error": "403::Forbidden"}, "refused", streaming._SUBSCRIBE_HINTS)


def test_a_reply_is_found_by_its_id():
    message = {"channel": "/meta/connect", "id": "7"}
    replies = [
        {"channel": "/data/LeadChangeEvent"},
        {"channel": "/meta/connect", "id": "7", "successful": True},
    ]
    assert streaming._meta(replies, message)["successful"]
    assert streaming._meta(replies[:1], message) == {
        "channel": "/meta/connect",
        "successful": False,
        "error": "no reply",
    }


def test_the_session_never_shows():
    session = streaming.Session("https://org", "00D!secret", "59.0", "005x")
    assert "secret" not in repr(session)


async def timed(*delays: float) -> AsyncIterator[int]:
    for number, delay in enumerate(delays):
        await asyncio.sleep(delay)
        yield number


def test_items_arriving_within_the_debounce_make_one_burst():
    async def scenario() -> list[list[int]]:
        found = []
        async for burst in bursts(timed(0, 0.02, 0.02, 0.3, 0.02), 0.15):
            found.append(burst)
            if len(found) == 2:
                return found
        raise AssertionError("the source ended")

    assert asyncio.run(scenario()) == [[0, 1, 2], [3, 4]]


def test_a_failing_source_fails_the_bursts():
    async def failing() -> AsyncIterator[int]:
        yield 1
        raise ConnectionError("gone")

    async def scenario() -> None:
        async for _ in bursts(failing(), 0.05):
            pass

    with pytest.raises(ConnectionError, match="gone"):
        asyncio.run(scenario())
