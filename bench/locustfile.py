"""A chat app's traffic for locust: logins, lists, searches, uploads and streamed answers.

Each simulated user registers once (or logs in, when it exists), then mixes what the Next.js app
sends: document and chat lists and ``me`` (25%), ``searchDocuments`` (40%), a streamed answer over
the websocket (15%, ``chatStream`` with a clientMessageId, timed to its final event), an upload
of a small text the workers ingest (10%) and a new login (10%). Run it against a deployment
(docker compose, or bench/services.py's local processes):

    python3.11 -m venv .locust && .locust/bin/pip install locust websockets
    .locust/bin/locust -f bench/locustfile.py --host http://127.0.0.1:8000 --headless -u 50 -r 10 -t 2m

(``WEB_HOSTS=http://a:8000,http://b:8001``: each user picks one, for web processes with no proxy.)

A streamed answer is reported as request type ``WS`` named ``chatStream``: its time is to the final
event, its failure a StreamFailed code or a lost socket. The RAG model answers with the server's
generator (``RAG_GENERATOR``; extractive needs no provider).
"""

import json
import os
import random
import time
import uuid

from locust import HttpUser, between, task

PASSWORD = "load test passphrase 123"
SEARCHES = ["how do plants store energy", "night trains to Vienna", "what does chlorophyll absorb",
            "sleeping car reservation", "errors should never pass silently"]
TEXT = ("Trains carry freight across the plains, burning diesel or drawing electric power from overhead "
        "lines. Plants turn sunlight into sugar with chlorophyll. Note {n}: {words}.")


class ChatAppUser(HttpUser):
    wait_time = between(0.5, 2.0)

    def on_start(self):
        hosts = [h for h in os.environ.get("WEB_HOSTS", "").split(",") if h]
        if hosts:  # several web processes without a proxy in front: each user sticks to one
            self.host = random.choice(hosts)
            self.client.base_url = self.host
        self.email = f"locust-{uuid.uuid4().hex[:12]}@example.com"
        self.client.get("/graphql/?query=%7B__typename%7D", name="csrf")  # the CSRF cookie, as a page's first query
        self.graphql(f'mutation {{ register(email: "{self.email}", password: "{PASSWORD}") {{ __typename }} }}',
                     name="register")
        self.login()
        token = self.graphql('mutation { createApiToken(name: "locust") { ... on NewApiToken { secret } } }',
                             name="createApiToken")
        self.token = token["data"]["createApiToken"]["secret"]
        chat = self.graphql('mutation { createChat(model: "rag-faiss") { ... on Chat { id } } }', name="createChat")
        self.chat_id = chat["data"]["createChat"]["id"]

    # --- HTTP ---------------------------------------------------------------------------------

    def graphql(self, query: str, variables: dict | None = None, *, name: str) -> dict:
        headers = {"X-CSRFToken": self.client.cookies.get("csrftoken", ""), "Referer": self.host}
        with self.client.post("/graphql/", json={"query": query, "variables": variables or {}}, headers=headers,
                              name=name, catch_response=True) as response:
            try:
                body = response.json()
            except ValueError:
                response.failure(f"HTTP {response.status_code}")
                return {}
            if body.get("errors"):
                response.failure(body["errors"][0].get("extensions", {}).get("code", "ERROR"))
            return body

    def login(self):
        self.client.get("/graphql/?query=%7B__typename%7D", name="csrf")
        self.graphql(f'mutation {{ login(email: "{self.email}", password: "{PASSWORD}") {{ __typename }} }}',
                     name="login")

    @task(10)
    def relogin(self):
        self.login()

    @task(25)
    def lists(self):
        self.graphql("{ me { email } documents(first: 20) { totalCount edges { node { title status } } } "
                     "chats(first: 20) { edges { node { id title } } } }", name="lists")

    @task(40)
    def search(self):
        self.graphql("query($q: String!) { searchDocuments(query: $q, k: 5, strategy: HYBRID) { score } }",
                     {"q": random.choice(SEARCHES)}, name="searchDocuments")

    @task(10)
    def upload(self):
        operations = json.dumps({"query": "mutation($file: Upload!) { uploadDocument(file: $file) { __typename } }",
                                 "variables": {"file": None}})
        text = TEXT.format(n=uuid.uuid4().hex, words=" ".join(random.choices(SEARCHES, k=5)))
        headers = {"X-CSRFToken": self.client.cookies.get("csrftoken", ""), "Referer": self.host}
        self.client.post("/graphql/", data={"operations": operations, "map": json.dumps({"0": ["variables.file"]})},
                         files={"0": ("note.txt", text.encode(), "text/plain")}, headers=headers,
                         name="uploadDocument")

    # --- websocket ----------------------------------------------------------------------------

    @task(15)
    def stream(self):
        from websockets.sync.client import connect

        url = self.host.replace("http", "ws", 1).rstrip("/") + "/graphql/"
        query = ("subscription($chat: ID!, $content: String!, $id: String) { chatStream(chatId: $chat, "
                 "content: $content, clientMessageId: $id) { __typename ... on StreamDone { message { status } } "
                 "... on StreamFailed { code } } }")
        started, error, length = time.perf_counter(), None, 0
        try:
            with connect(url, subprotocols=["graphql-transport-ws"], open_timeout=30) as ws:
                ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {self.token}"}}))
                json.loads(ws.recv(timeout=30))
                ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": {
                    "chat": self.chat_id, "content": random.choice(SEARCHES), "id": uuid.uuid4().hex}}}))
                while True:
                    message = ws.recv(timeout=120)
                    length += len(message)
                    message = json.loads(message)
                    if message["type"] != "next":
                        break
                    event = (message["payload"].get("data") or {}).get("chatStream") or {}
                    if event.get("__typename") == "StreamFailed":
                        error = event.get("code")
                    if message["payload"].get("errors"):
                        error = message["payload"]["errors"][0].get("extensions", {}).get("code", "ERROR")
        except Exception as exc:  # noqa: BLE001 - a lost stream is a failure in the report
            error = type(exc).__name__
        self.environment.events.request.fire(
            request_type="WS", name="chatStream", response_time=(time.perf_counter() - started) * 1000,
            response_length=length, exception=RuntimeError(error) if error else None, context={})
