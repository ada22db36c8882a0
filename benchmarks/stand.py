"""moto's S3 server in a process of its own, for ``compare.py``; never run by hand.

It serves S3 on 127.0.0.1 (moto's ``ThreadedMotoServer``) and prints its endpoint as
the first line of stdout. Its own CPU time is the server's, read by ``compare.py`` and
``driver.py`` from ``/proc/<pid>/stat``. Between measured runs ``compare.py`` seeds and
checks the buckets through this process's stdin, one JSON command a line, answered by
one JSON line, straight through moto's backend (an HTTP PUT per event would take
minutes for 100,000 events on moto):

- ``{"op": "make", "bucket": B}``: create bucket B (if missing).
- ``{"op": "put", "bucket": B, "keys": [...], "size": N}``: write each key, N bytes.
- ``{"op": "count", "bucket": B}``: the number of objects in B.
- ``{"op": "clear", "bucket": B}``: delete every object of B.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any


def main() -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    print(json.dumps({"endpoint": f"http://{host}:{port}"}), flush=True)
    for line in sys.stdin:
        command: dict[str, Any] = json.loads(line)
        op, bucket = command["op"], command.get("bucket", "")
        answer: dict[str, Any] = {"ok": True}
        if op == "make":
            if bucket not in backend.buckets:
                backend.create_bucket(bucket, "us-east-1")
        elif op == "put":
            body = b"x" * int(command.get("size", 64))
            for key in command["keys"]:
                backend.put_object(bucket, key, body)
        elif op == "count":
            answer["count"] = len(list(backend.get_bucket(bucket).keys))
        elif op == "clear":
            for key in list(backend.get_bucket(bucket).keys):
                backend.delete_object(bucket, key)
        else:
            answer = {"ok": False, "error": f"unknown op {op!r}"}
        print(json.dumps(answer), flush=True)
    server.stop()


if __name__ == "__main__":
    main()
