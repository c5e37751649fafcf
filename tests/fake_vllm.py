"""A stand-in for vLLM's OpenAI-compatible server, for the gateway's vLLM path in tests.

vLLM needs a GPU, which no machine of this project has, so this plays the part of its server as
vLLM documents it: ``GET /health``; ``POST /v1/chat/completions`` and ``/v1/completions`` behind
``--api-key`` (read from ``VLLM_API_KEY``); streams whose chunks carry ``usage`` when asked with
``stream_options.continuous_usage_stats`` and end with a usage-only chunk when asked with
``include_usage``. Its "model" answers with the words "tok0 tok1 ...", one token each, a few
milliseconds apart, and counts a prompt as its number of words.

    python tests/fake_vllm.py --host 127.0.0.1 --port 8000 --served-model-name NAME
"""

from __future__ import annotations

import argparse
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    model = "model"

    def log_message(self, *_: Any) -> None:
        pass

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        key = os.environ.get("VLLM_API_KEY")
        if key and self.headers.get("Authorization") != f"Bearer {key}":
            self._json(401, {"error": "Unauthorized"})
            return
        if body.get("model") != self.model:
            self._json(404, {"error": {"message": f"The model {body.get('model')} does not exist"}})
            return
        if "messages" in body:
            prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        else:
            prompt = len(str(body.get("prompt", "")).split())
        n = int(body.get("max_tokens") or 16)
        words = [f"tok{i}" for i in range(n)]
        chat = self.path == "/v1/chat/completions"
        if not body.get("stream"):
            text = " ".join(words)
            choice = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
            whole = {"choices": [{"index": 0, "finish_reason": "length", **choice}]}
            self._json(200, {**self._head(), **whole, "usage": _usage(prompt, n)})
            return
        options = body.get("stream_options") or {}
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for i, word in enumerate(words):
                delta = {"delta": {"content": word + " "}} if chat else {"text": word + " "}
                chunk = {**self._head(), "choices": [{"index": 0, **delta, "finish_reason": None}]}
                if options.get("continuous_usage_stats"):
                    chunk["usage"] = _usage(prompt, i + 1)
                self._event(chunk)
                time.sleep(0.005)
            if options.get("include_usage"):
                self._event({**self._head(), "choices": [], "usage": _usage(prompt, n)})
            self._send(b"data: [DONE]\n\n")
            self._send(b"")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway hung up: vLLM aborts the request

    def _head(self) -> dict[str, Any]:
        return {"id": "cmpl-1", "object": "chat.completion.chunk", "model": self.model}

    def _event(self, chunk: dict[str, Any]) -> None:
        self._send(b"data: " + json.dumps(chunk).encode() + b"\n\n")

    def _send(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-model-name", required=True)
    args, _ = parser.parse_known_args()
    Handler.model = args.served_model_name
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
