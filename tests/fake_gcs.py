"""A fake Google Cloud Storage for tests: `gs://` paths that work offline, in this process.

Two clients reach a `gs://` workdir in a real run, and both are pointed here:
- `etils.epath` (config files, metrics, TensorBoard logs, Orbax's metadata) goes through
  fsspec's `gs` protocol, here an in-memory file system (`BucketFileSystem`);
- TensorStore (Orbax's array data) speaks the GCS JSON API over HTTP; `FakeGCS` serves that
  API on localhost from the same in-memory objects (`TENSORSTORE_GCS_HTTP_URL` points
  TensorStore at it, `GOOGLE_AUTH_TOKEN_FOR_TESTING` stands in for credentials).

Orbax also asks `google.cloud.storage` whether a bucket has a hierarchical namespace; a
stand-in module answers no (`_StorageClient`).

The server implements what TensorStore's `gcs` driver calls: media download (with byte
ranges and generation preconditions), media upload, delete and list. Generations are derived
from the content, so objects written through either client carry one.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import sys
import threading
import types
import urllib.parse

import fsspec
from fsspec.implementations.memory import MemoryFileSystem


class BucketFileSystem(MemoryFileSystem):
    """fsspec's memory file system answering to `gs://` (its own store, not `memory://`'s).

    Paths come back as `bucket/key`, without the protocol, as gcsfs returns them.
    """

    protocol = ("gs", "gcs")
    store: dict = {}
    pseudo_dirs = [""]

    @classmethod
    def _strip_protocol(cls, path):
        path = str(path)
        for prefix in ("gs://", "gcs://"):
            path = path.removeprefix(prefix)
        return super()._strip_protocol(path)

    def glob(self, path, **kwargs):
        return [p.lstrip("/") for p in super().glob(path, **kwargs)]


def _generation(data: bytes) -> int:
    """A positive int64 that changes with the content."""
    return int.from_bytes(hashlib.sha256(data).digest()[:7], "big") | 1


class _Handler(http.server.BaseHTTPRequestHandler):
    fs: BucketFileSystem

    def log_message(self, *args):  # quiet
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict | None = None):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict):
        self._reply(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _parse(self):
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        parts = url.path.split("/")  # ['', ('upload',) 'storage', 'v1', 'b', B, 'o', NAME]
        bucket = parts[parts.index("b") + 1]
        name = urllib.parse.unquote(parts[-1]) if len(parts) > parts.index("b") + 3 else None
        return bucket, name, query

    def _current(self, bucket: str, name: str) -> bytes | None:
        key = f"/{bucket}/{name}"
        return self.fs.cat_file(key) if key in self.fs.store else None

    def _precondition_fails(self, query: dict, data: bytes | None) -> bool:
        generation = 0 if data is None else _generation(data)
        if "ifGenerationMatch" in query and int(query["ifGenerationMatch"]) != generation:
            return True
        return "ifGenerationNotMatch" in query and int(query["ifGenerationNotMatch"]) == generation

    def _metadata(self, bucket: str, name: str, data: bytes) -> dict:
        return {
            "bucket": bucket,
            "name": name,
            "size": str(len(data)),
            "generation": str(_generation(data)),
            "metageneration": "1",
        }

    def do_GET(self):  # noqa: N802
        bucket, name, query = self._parse()
        if name is None:
            return self._list(bucket, query)
        data = self._current(bucket, name)
        if data is None:
            return self._json(404, {"error": {"code": 404, "message": "No such object"}})
        if self._precondition_fails(query, data):
            code = 304 if "ifGenerationNotMatch" in query else 412
            return self._reply(code, headers={"x-goog-generation": _generation(data)})
        if query.get("alt") != "media":
            return self._json(200, self._metadata(bucket, name, data))
        headers = {"x-goog-generation": _generation(data), "x-goog-metageneration": 1}
        byte_range = self.headers.get("Range")
        if not byte_range:
            return self._reply(200, data, headers)
        start, _, end = byte_range.removeprefix("bytes=").partition("-")
        start, end = int(start or 0), min(int(end) if end else len(data) - 1, len(data) - 1)
        if start >= len(data) and len(data):
            return self._reply(416, headers=headers)
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return self._reply(206, data[start : end + 1], headers)

    def _list(self, bucket: str, query: dict):
        prefix = query.get("prefix", "")
        start, end = query.get("startOffset", ""), query.get("endOffset")
        items = []
        for key in sorted(self.fs.store):
            name = key.removeprefix(f"/{bucket}/")
            if name == key or not name.startswith(prefix) or name < start:
                continue
            if end is not None and name >= end:
                continue
            items.append(self._metadata(bucket, name, self.fs.cat_file(key)))
        return self._json(200, {"kind": "storage#objects", "items": items})

    def do_POST(self):  # noqa: N802
        bucket, _, query = self._parse()
        name = query["name"]
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self._precondition_fails(query, self._current(bucket, name)):
            return self._json(412, {"error": {"code": 412, "message": "Precondition Failed"}})
        self.fs.pipe_file(f"/{bucket}/{name}", body)
        return self._json(200, self._metadata(bucket, name, body))

    def do_DELETE(self):  # noqa: N802
        bucket, name, query = self._parse()
        data = self._current(bucket, name)
        if data is None:
            return self._json(404, {"error": {"code": 404, "message": "No such object"}})
        if self._precondition_fails(query, data):
            return self._json(412, {"error": {"code": 412, "message": "Precondition Failed"}})
        self.fs.rm_file(f"/{bucket}/{name}")
        return self._reply(204)


class _StorageClient:
    """`google.cloud.storage.Client` as far as Orbax uses it: a bucket's namespace setting."""

    def get_bucket(self, name: str):
        return types.SimpleNamespace(name=name, hierarchical_namespace_enabled=False)


@contextlib.contextmanager
def fake_gcs():
    """Serves the fake bucket store for the `with` block; yields the file system.

    Registers `BucketFileSystem` for fsspec's `gs`/`gcs` protocols and points TensorStore's
    GCS driver at the local server (environment variables, restored afterwards).
    """
    fs = BucketFileSystem()
    fs.store.clear()
    fs.pseudo_dirs[:] = [""]
    handler = type("Handler", (_Handler,), {"fs": fs})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {
        "TENSORSTORE_GCS_HTTP_URL": f"http://127.0.0.1:{server.server_address[1]}",
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "fake-token",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    for protocol in BucketFileSystem.protocol:
        fsspec.register_implementation(protocol, BucketFileSystem, clobber=True)
    storage = types.ModuleType("google.cloud.storage")
    storage.Client = _StorageClient
    saved_module = sys.modules.get("google.cloud.storage")
    sys.modules["google.cloud.storage"] = storage
    try:
        yield fs
    finally:
        server.shutdown()
        if saved_module is None:
            sys.modules.pop("google.cloud.storage", None)
        else:
            sys.modules["google.cloud.storage"] = saved_module
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
