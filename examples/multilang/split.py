"""A multilang split bolt with only the Python standard library.

Speaks Storm's multilang protocol on stdin/stdout: every message is one JSON value
followed by a line `end`. Splits the first field of every tuple into words, emits each
word anchored to the tuple, then acks it. Answers heartbeats with `sync`.
"""
import json
import os
import sys

_queued = []


def _read_raw():
    lines = []
    while True:
        line = sys.stdin.readline()
        if not line:  # the engine went away
            sys.exit(0)
        line = line.rstrip("\n")
        if line == "end":
            return json.loads("\n".join(lines))
        lines.append(line)


def read_command():
    """The next tuple or command; task id lists are answers to emits, skipped here."""
    while True:
        msg = _queued.pop(0) if _queued else _read_raw()
        if not isinstance(msg, list):
            return msg


def send(msg):
    sys.stdout.write(json.dumps(msg) + "\nend\n")
    sys.stdout.flush()


def main():
    handshake = _read_raw()
    open(os.path.join(handshake["pidDir"], str(os.getpid())), "w").close()
    send({"pid": os.getpid()})
    name = handshake["context"]["componentid"]
    send({"command": "log", "msg": "%s started (task %s)" % (name, handshake["context"]["taskid"])})
    while True:
        tup = read_command()
        if tup.get("stream") == "__heartbeat":
            send({"command": "sync"})
            continue
        if tup.get("stream") == "__tick":
            send({"command": "ack", "id": tup["id"]})
            continue
        for word in str(tup["tuple"][0]).split():
            send({"command": "emit", "anchors": [tup["id"]], "tuple": [word], "need_task_ids": False})
        send({"command": "ack", "id": tup["id"]})


if __name__ == "__main__":
    main()
