"""`spikerun serve` against the official `openai` Python client and raw HTTP (loopback only).

Run: python3 Tests/Serve/test_openai.py   (after `swift build -c release`; the default model)
"""
import http.client
import json
import os
import sys
import time
import unittest

import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ALIAS, Server  # noqa: E402

KEY = "test-key-0123456789"
server = None


def setUpModule():
    global server
    server = Server("--parallel", "4", "-c", "512", "--metrics", "--max-body-bytes", "65536",
                    "--max-tokens", "256", key=KEY)


def tearDownModule():
    if server:
        server.stop()


def client(key=KEY):
    return openai.OpenAI(base_url=server.base + "/v1", api_key=key, max_retries=0, timeout=120)


CHAT = [{"role": "user", "content": "Name three colors."}]


class ChatAndCompletions(unittest.TestCase):
    def test_health_is_public_and_models_lists_the_alias(self):
        status, body, _ = server.request("GET", "/health", auth=False)
        self.assertEqual((status, json.loads(body)), (200, {"status": "ok"}))
        models = client().models.list()
        self.assertEqual([m.id for m in models.data], [ALIAS])

    def test_chat_non_streaming_and_streaming_agree(self):
        r = client().chat.completions.create(model=ALIAS, messages=CHAT, max_tokens=24, temperature=0)
        self.assertEqual(r.object, "chat.completion")
        self.assertEqual(r.choices[0].message.role, "assistant")
        text = r.choices[0].message.content
        self.assertTrue(text)
        self.assertIn(r.choices[0].finish_reason, ("stop", "length"))
        u = r.usage
        self.assertGreater(u.prompt_tokens, 5)
        self.assertLessEqual(u.completion_tokens, 24)
        self.assertEqual(u.total_tokens, u.prompt_tokens + u.completion_tokens)
        if r.choices[0].finish_reason == "length":
            self.assertEqual(u.completion_tokens, 24)

        stream = client().chat.completions.create(model=ALIAS, messages=CHAT, max_tokens=24, temperature=0,
                                                  stream=True, stream_options={"include_usage": True})
        pieces, reasons, usage = [], [], None
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for c in chunk.choices:
                if c.delta.content:
                    pieces.append(c.delta.content)
                if c.finish_reason:
                    reasons.append(c.finish_reason)
        self.assertEqual("".join(pieces), text)
        self.assertEqual(reasons, [r.choices[0].finish_reason])
        self.assertEqual((usage.prompt_tokens, usage.completion_tokens), (u.prompt_tokens, u.completion_tokens))

    def test_sse_ends_with_done(self):
        status, body, headers = server.request("POST", "/v1/chat/completions", {
            "messages": CHAT, "max_tokens": 4, "stream": True})
        self.assertEqual(status, 200)
        self.assertTrue(headers.get("Content-Type", "").startswith("text/event-stream"))
        events = [e for e in body.decode().split("\n\n") if e]
        self.assertTrue(all(e.startswith("data: ") for e in events), events)
        self.assertEqual(events[-1], "data: [DONE]")
        last = json.loads(events[-2][len("data: "):])
        self.assertEqual(last["choices"][0]["finish_reason"], "length")

    def test_completions_length_and_stream(self):
        r = client().completions.create(model=ALIAS, prompt="The capital of France is", max_tokens=6, temperature=0)
        self.assertEqual(r.object, "text_completion")
        self.assertEqual(r.choices[0].finish_reason, "length")
        self.assertEqual(r.usage.completion_tokens, 6)
        text = "".join(c.choices[0].text for c in client().completions.create(
            model=ALIAS, prompt="The capital of France is", max_tokens=6, temperature=0, stream=True) if c.choices)
        self.assertEqual(text, r.choices[0].text)
        # Token ids as the prompt: the same tokens, the same text.
        status, body, _ = server.request("POST", "/tokenize", {"content": "The capital of France is"})
        ids = json.loads(body)["tokens"]
        r2 = client().completions.create(model=ALIAS, prompt=ids, max_tokens=6, temperature=0)
        self.assertEqual(r2.choices[0].text, r.choices[0].text)

    def test_stop_strings(self):
        full = client().completions.create(model=ALIAS, prompt="1, 2, 3, 4,", max_tokens=24, temperature=0)
        text = full.choices[0].text
        self.assertIn("7", text)
        stop = "7"
        r = client().completions.create(model=ALIAS, prompt="1, 2, 3, 4,", max_tokens=24, temperature=0, stop=[stop])
        self.assertEqual(r.choices[0].text, text[:text.index(stop)])
        self.assertEqual(r.choices[0].finish_reason, "stop")
        chunks = client().completions.create(model=ALIAS, prompt="1, 2, 3, 4,", max_tokens=24, temperature=0,
                                             stop=stop, stream=True)
        self.assertEqual("".join(c.choices[0].text for c in chunks if c.choices), text[:text.index(stop)])

    def test_seeds(self):
        def sample(seed):
            return client().chat.completions.create(
                model=ALIAS, messages=[{"role": "user", "content": "Tell me a story."}], max_tokens=24,
                temperature=1.0, top_p=1.0, seed=seed,
                extra_body={"top_k": 0, "min_p": 0.0}).choices[0].message.content
        a = sample(1234)
        self.assertEqual(sample(1234), a)
        self.assertTrue(any(sample(s) != a for s in (1, 2, 3)))

    def test_ignore_eos_generates_exactly_max_tokens(self):
        # llama-server's extension (the serving benchmark relies on it): without it the greedy
        # answer ends at the end-of-generation token well before max_tokens; with it the same
        # answer continues past that point to exactly max_tokens.
        msgs = [{"role": "user", "content": "Reply with one word: is the sky blue?"}]
        plain = client().chat.completions.create(model=ALIAS, messages=msgs, max_tokens=48, temperature=0)
        self.assertEqual(plain.choices[0].finish_reason, "stop")
        self.assertLess(plain.usage.completion_tokens, 48)
        forced = client().chat.completions.create(model=ALIAS, messages=msgs, max_tokens=48, temperature=0,
                                                  extra_body={"ignore_eos": True})
        self.assertEqual(forced.choices[0].finish_reason, "length")
        self.assertEqual(forced.usage.completion_tokens, 48)
        self.assertTrue(forced.choices[0].message.content.startswith(plain.choices[0].message.content))
        s, b, _ = server.request("POST", "/v1/chat/completions", {"messages": msgs, "ignore_eos": "yes"})
        self.assertEqual(s, 400, b)
        self.assertEqual(json.loads(b)["error"]["param"], "ignore_eos")

    def test_tokenize_detokenize(self):
        status, body, _ = server.request("POST", "/tokenize", {"content": "Hello world"})
        self.assertEqual(status, 200)
        tokens = json.loads(body)["tokens"]
        self.assertTrue(tokens)
        status, body, _ = server.request("POST", "/detokenize", {"tokens": tokens})
        self.assertEqual((status, json.loads(body)["content"]), (200, "Hello world"))


class Errors(unittest.TestCase):
    def assertOpenAIError(self, status, body, expected_status, code=None, param=None):
        self.assertEqual(status, expected_status, body)
        err = json.loads(body)["error"]
        self.assertIsInstance(err["message"], str)
        self.assertTrue(err["message"])
        self.assertIsInstance(err["type"], str)
        if code:
            self.assertEqual(err["code"], code)
        if param:
            self.assertEqual(err["param"], param)

    def tearDown(self):
        # The server keeps serving after every error.
        r = client().completions.create(model=ALIAS, prompt="Hi", max_tokens=1, temperature=0)
        self.assertEqual(r.usage.completion_tokens, 1)

    def test_client_errors(self):
        with self.assertRaises(openai.NotFoundError) as e:
            client().chat.completions.create(model="gpt-4o", messages=CHAT, max_tokens=2)
        self.assertEqual(e.exception.body["code"], "model_not_found")
        with self.assertRaises(openai.AuthenticationError):
            client("wrong-key").chat.completions.create(model=ALIAS, messages=CHAT, max_tokens=2)
        with self.assertRaises(openai.BadRequestError) as e:
            client().chat.completions.create(model=ALIAS, messages=CHAT, max_tokens=100000)
        self.assertEqual(e.exception.body["param"], "max_tokens")
        with self.assertRaises(openai.BadRequestError):
            client().chat.completions.create(model=ALIAS, messages=CHAT, max_tokens=2, presence_penalty=0.5)
        with self.assertRaises(openai.BadRequestError):
            client().chat.completions.create(model=ALIAS, messages=CHAT, max_tokens=2, n=2)
        with self.assertRaises(openai.BadRequestError):
            client().chat.completions.create(model=ALIAS, messages=CHAT, max_tokens=2, temperature=5)

    def test_raw_errors(self):
        post = lambda body, **kw: server.request("POST", "/v1/chat/completions", body, **kw)  # noqa: E731
        s, b, _ = post(b"{not json", headers={"Content-Type": "application/json"})
        self.assertOpenAIError(s, b, 400, code="invalid_json")
        s, b, _ = post({"messages": "hello"})
        self.assertOpenAIError(s, b, 400, param="messages")
        s, b, _ = post({"messages": CHAT, "temperature": "hot"})
        self.assertOpenAIError(s, b, 400, param="temperature")
        s, b, _ = post({"messages": [{"role": "user", "content": 5}]})
        self.assertOpenAIError(s, b, 400, param="messages[0].content")
        s, b, _ = post({"model": ALIAS})
        self.assertOpenAIError(s, b, 400, code="missing_required_parameter", param="messages")
        s, b, _ = post({"messages": [{"role": "tool", "content": "x"}]})
        self.assertOpenAIError(s, b, 400, param="messages[0].role")
        s, b, _ = post({"messages": []})
        self.assertOpenAIError(s, b, 400, param="messages")
        s, b, _ = post(b"[]", headers={"Content-Type": "application/json"})
        self.assertOpenAIError(s, b, 400)
        s, b, h = post({"messages": [{"role": "user", "content": "x" * 100000}]})
        self.assertOpenAIError(s, b, 413, code="request_too_large")
        s, b, _ = post({"messages": [{"role": "user", "content": "word " * 3000}]})
        self.assertOpenAIError(s, b, 400, code="context_length_exceeded")
        s, b, _ = server.request("POST", "/v1/completions", {"prompt": [1, 2, 99999999]})
        self.assertOpenAIError(s, b, 400)
        s, b, _ = server.request("POST", "/detokenize", {"tokens": [-5]})
        self.assertOpenAIError(s, b, 400, param="tokens[0]")
        s, b, _ = server.request("GET", "/v1/nothing-here")
        self.assertOpenAIError(s, b, 404)
        s, b, h = server.request("GET", "/v1/models", auth=False)
        self.assertOpenAIError(s, b, 401, code="invalid_api_key")


class Disconnect(unittest.TestCase):
    def test_disconnect_mid_stream_frees_the_slot(self):
        before = server.metrics()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        conn.request("POST", "/v1/completions", body=json.dumps(
            {"prompt": "Once upon a time", "max_tokens": 250, "temperature": 0, "stream": True}),
            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        events = 0
        while events < 3:
            line = r.fp.readline()
            self.assertTrue(line, "stream ended early")
            if line.startswith(b"data: "):
                events += 1
        self.assertEqual(server.metrics()["spikerun_requests_running"], 1)
        conn.sock.shutdown(2)
        conn.close()
        server.wait_metric("spikerun_requests_running", lambda v: v == 0)
        after = server.metrics()
        self.assertEqual(after["spikerun_requests_cancelled_total"], before["spikerun_requests_cancelled_total"] + 1)
        self.assertLess(after["spikerun_generated_tokens_total"] - before["spikerun_generated_tokens_total"], 200)
        busy = [v for k, v in after.items() if k.startswith("spikerun_slot_busy")]
        self.assertEqual(busy, [0.0] * 4)


class Metrics(unittest.TestCase):
    def test_names(self):
        m = server.metrics()
        for name in ("spikerun_requests_running", "spikerun_requests_queued", "spikerun_prompt_tokens_total",
                     "spikerun_generated_tokens_total", "spikerun_generated_tokens_per_second",
                     'spikerun_kv_cache_tokens{slot="3"}', 'spikerun_kv_cache_usage_ratio{slot="0"}',
                     "vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:gpu_cache_usage_perc"):
            self.assertIn(name, m)


class QueueFull(unittest.TestCase):
    def test_busy_server_answers_503_with_retry_after(self):
        small = Server("--parallel", "1", "--queue", "0", "-c", "256", "--metrics")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", small.port, timeout=60)
            conn.request("POST", "/v1/completions", body=json.dumps(
                {"prompt": "Once upon a time", "max_tokens": 200, "stream": True}),
                headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            r.fp.readline()
            small.wait_metric("spikerun_requests_running", lambda v: v == 1)
            s, b, h = small.request("POST", "/v1/completions", {"prompt": "Hi", "max_tokens": 2})
            self.assertEqual(s, 503, b)
            self.assertEqual(json.loads(b)["error"]["code"], "server_busy")
            self.assertEqual(h.get("Retry-After"), "1")
            conn.close()
            small.wait_metric("spikerun_requests_running", lambda v: v == 0)
            s, b, _ = small.request("POST", "/v1/completions", {"prompt": "Hi", "max_tokens": 2})
            self.assertEqual(s, 200, b)
        finally:
            small.stop()


if __name__ == "__main__":
    start = time.monotonic()
    result = unittest.main(exit=False, verbosity=2).result
    print(f"serve tests: {time.monotonic() - start:.1f}s", file=sys.stderr)
    sys.exit(0 if result.wasSuccessful() else 1)
