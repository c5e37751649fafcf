"""The gateway's request checks and estimates, without a server."""

from __future__ import annotations

import json

import pytest

from backfill.inference.openai_shapes import Refused, count, counted_so_far, estimate, parse


def refusal(raw: bytes, kind: str = "chat.completions") -> tuple[int, dict[str, object]]:
    with pytest.raises(Refused) as refused:
        parse(raw, kind)
    response = refused.value.response
    return response.status_code, json.loads(bytes(response.body))["error"]


def test_a_well_formed_request_passes_and_a_bad_one_names_its_parameter() -> None:
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    assert parse(json.dumps(chat).encode(), "chat.completions")["model"] == "m"
    assert parse(b'{"model": "m", "prompt": "hi"}', "completions")["prompt"] == "hi"
    assert refusal(b"[1, 2]") == (
        400,
        {
            "message": "the body must be a JSON object",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_request",
        },
    )
    assert refusal(b"{oops")[0] == 400
    assert refusal(b'{"model": "m", "messages": []}')[1]["param"] == "messages"
    assert refusal(b'{"model": "m", "prompt": 5}', "completions")[1]["param"] == "prompt"
    bad_limit = b'{"model": "m", "messages": [{}], "max_tokens": true}'
    assert refusal(bad_limit)[1]["param"] == "max_tokens"
    assert refusal(b'{"model": "", "messages": [{}]}')[1]["param"] == "model"
    assert refusal(b'{"model": "m", "messages": [{}], "stream_options": 1}')[1]["param"] == (
        "stream_options"
    )
    assert refusal(b" " * (1024 * 1024 + 1))[0] == 413


def test_estimates_are_generous_and_counts_never_negative() -> None:
    raw = b"x" * 300
    assert estimate(raw, {"max_tokens": 50}, 2048) == (100, 50)
    assert estimate(raw, {"max_completion_tokens": 9000}, 2048) == (100, 2048)
    assert estimate(raw, {}, 2048) == (100, 2048)  # no max_tokens: the whole context
    assert [count(v) for v in (7, -1, "7", None, True)] == [7, 0, 0, 0, 0]


def test_the_engines_count_so_far_is_read_from_either_engines_chunks() -> None:
    vllm = {
        "choices": [{"delta": {"content": "a"}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3},
    }
    assert counted_so_far(vllm) == {"prompt_tokens": 9, "completion_tokens": 3}
    # llama-server's timings: the prompt is what it evaluated plus what its cache held.
    llama = {"choices": [], "timings": {"prompt_n": 7, "cache_n": 24, "predicted_n": 5}}
    assert counted_so_far(llama) == {"prompt_tokens": 31, "completion_tokens": 5}
    assert counted_so_far({"choices": []}) is None
    hostile = {"usage": {"prompt_tokens": -5, "completion_tokens": "9"}}
    assert counted_so_far(hostile) == {"prompt_tokens": 0, "completion_tokens": 0}
    assert counted_so_far({"timings": "nonsense"}) is None
