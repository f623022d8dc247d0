"""A real OpenAI-compatible chat-completions server on 127.0.0.1 with scripted replies, for tests of the real client."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    """One scripted answer: the assistant's message for status 200, else an error with that status."""

    status: int = 200
    content: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # e.g. {"Retry-After": "1"}
    delay_s: float = 0.0  # sleep before answering (to exceed a client timeout)
    stall_s: float = 0.0  # send the headers and half the body, then stall this long (a hung stream)
    top_logprobs: dict[str, float] | None = None  # first token's {token: logprob}, the chosen first; None: none
    error_type: str = "server_error"  # the error object's "type" for a status other than 200


def logprobs(top: dict[str, float] | None) -> dict | None:
    """A choice's logprobs: one token (the first of `top`) with `top` as its top logprobs; None without `top`."""
    if top is None:
        return None
    tops = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top.items()]
    return {"content": [{**tops[0], "top_logprobs": tops}], "refusal": None}


def completion(model: str, content: str, top_logprobs: dict[str, float] | None = None) -> dict:
    """A chat.completion object holding one assistant message, with the first token's logprobs if given."""
    message = {"role": "assistant", "content": content}
    choice = {"index": 0, "message": message, "logprobs": logprobs(top_logprobs), "finish_reason": "stop"}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [choice],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class ChatHandler(BaseHTTPRequestHandler):
    """POST /v1/chat/completions: records the request, then answers with the server's next reply."""

    server: ChatServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.track(body, self.headers.get("Authorization")):
            reply = self.server.next_reply(body)
            time.sleep(reply.delay_s)
            payload = (
                completion(body["model"], reply.content, reply.top_logprobs)
                if reply.status == 200
                else {"error": {"message": reply.content, "type": reply.error_type, "param": None, "code": None}}
            )
            data = json.dumps(payload).encode()
            self.send_response(reply.status if self.path == "/v1/chat/completions" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if reply.stall_s:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                time.sleep(reply.stall_s)
            self.wfile.write(data)

    def log_message(self, format, *args) -> None:  # keep test output quiet
        pass


class ChatServer(ThreadingHTTPServer):
    """Scripted replies in order (`Reply` or `(status, content)`); then `responder(body)`, if set; else 500."""

    daemon_threads = True

    def __init__(self, *replies: Reply | tuple[int, str], responder: Callable[[dict], Reply] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), ChatHandler)
        self.replies: deque[Reply | tuple[int, str]] = deque(replies)
        self.responder = responder
        self.requests: list[dict] = []  # request bodies, in arrival order
        self.authorizations: list[str | None] = []
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/v1"

    def next_reply(self, body: dict) -> Reply:
        try:
            reply = self.replies.popleft()
        except IndexError:
            return self.responder(body) if self.responder else Reply(500, "no scripted reply left")
        return reply if isinstance(reply, Reply) else Reply(*reply)

    @contextmanager
    def track(self, body: dict, authorization: str | None) -> Iterator[None]:
        """Record a request and count it as in flight while it is answered."""
        with self._lock:
            self.requests.append(body)
            self.authorizations.append(authorization)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1

    def handle_error(self, request, client_address) -> None:  # a client that timed out hung up mid-reply
        pass


# What llama-cpp-python's server (0.3) answers a response_format type other than "text" or "json_object": its route
# error handler turns the request's validation error into HTTP 500, type internal_server_error.
LLAMA_CPP_REJECTION = (
    "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input "
    "should be 'text' or 'json_object'\", 'input': 'json_schema', 'ctx': {'expected': \"'text' or 'json_object'\"}}"
)


def llama_cpp(answer: Callable[[dict], dict]) -> Callable[[dict], Reply]:
    """A responder like llama-cpp-python's server with a small model; `answer(body)` is the on-schema answer.

    json_schema: HTTP 500 with LLAMA_CPP_REJECTION. json_object with a "schema" whose properties hold the answer's
    keys: the answer (decoding is constrained to the schema). json_object alone: the answer wrapped in another
    object, off-schema JSON as small models write it.
    """

    def respond(body: dict) -> Reply:
        response_format = body.get("response_format") or {"type": "text"}
        if response_format["type"] not in ("text", "json_object"):
            return Reply(500, LLAMA_CPP_REJECTION, error_type="internal_server_error")
        content = answer(body)
        if set(content) <= set(response_format.get("schema", {}).get("properties", {})):
            return Reply(content=json.dumps(content))
        return Reply(content=json.dumps({"annotation": content}))

    return respond


def user_data(body: dict) -> dict:
    """The JSON object in a request's user message."""
    return json.loads(next(m["content"] for m in body["messages"] if m["role"] == "user"))


@contextmanager
def running(server: ChatServer) -> Iterator[ChatServer]:
    """Serve in a background thread; always shut down and close, even when the test fails."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
