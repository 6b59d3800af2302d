# Storm's multilang framing in Python (standard library only), for test scripts:
# read() returns the next message (exits on EOF), send(m) writes one, read_ids() returns
# the next list of task ids (keeping the messages before it for read()).
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
