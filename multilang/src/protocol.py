# Storm's multilang framing in Python (standard library only), for test scripts:
# read() returns the next message (exits on EOF), send(m) writes one, read_ids() returns
# the next list of task ids (keeping the messages before it for read()); Spout is a
# spout base class, with topo's opt-in to rewinding (position and seek).
import json, os, sys, threading

queued = []

def read_raw():
    lines = []
    while True:
        line = sys.stdin.readline()
        if not line:
            sys.exit(0)
        line = line.rstrip("\n")
        if line == "end":
            return json.loads("\n".join(lines))
        lines.append(line)

def read():
    if queued:
        return queued.pop(0)
    return read_raw()

def read_ids():
    while True:
        m = read_raw()
        if isinstance(m, list):
            return m
        queued.append(m)

def send(m):
    sys.stdout.write(json.dumps(m) + "\nend\n")
    sys.stdout.flush()

class Spout:
    # A spout: override next_tuple (emit with self.emit), and ack / fail with acking on.
    # One that rewinds (`rewinds = true` in its TOML) also overrides position(), which
    # returns any JSON value saying where it is (everything emitted so far is before it),
    # and seek(position), which goes back to one. Spout().run() speaks the protocol.
    def initialize(self, conf, context):
        pass

    def next_tuple(self):
        pass

    def ack(self, id):
        pass

    def fail(self, id):
        pass

    def position(self):
        raise NotImplementedError("this spout does not rewind")

    def seek(self, position):
        raise NotImplementedError("this spout does not rewind")

    def emit(self, values, id=None, stream=None):
        m = {"command": "emit", "tuple": values, "need_task_ids": False}
        if id is not None:
            m["id"] = id
        if stream is not None:
            m["stream"] = stream
        send(m)

    def log(self, text):
        send({"command": "log", "msg": text, "level": 2})

    def run(self):
        hs = read()
        send({"pid": os.getpid()})
        self.initialize(hs.get("conf", {}), hs.get("context", {}))
        while True:
            cmd = read()
            c = cmd.get("command")
            if c == "next":
                self.next_tuple()
            elif c == "ack":
                self.ack(cmd["id"])
            elif c == "fail":
                self.fail(cmd["id"])
            elif c == "position":
                send({"command": "position", "position": self.position()})
                continue
            elif c == "seek":
                self.seek(cmd["position"])
            send({"command": "sync"})
