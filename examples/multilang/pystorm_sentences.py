"""A multilang spout written with pystorm: five sentences, each with a message id.

A failed sentence is emitted again. Once every sentence was acked the spout exits with
status 0, which ends its stream in topo (a bounded source).
"""
import sys

from pystorm import Spout

SENTENCES = [
    "the cow jumped over the moon",
    "an apple a day keeps the doctor away",
    "four score and seven years ago",
    "snow white and the seven dwarfs",
    "i am at two with nature",
]


class Sentences(Spout):
    def initialize(self, storm_conf, context):
        self.todo = list(range(len(SENTENCES)))
        self.pending = set()

    def next_tuple(self):
        if self.todo:
            i = self.todo.pop(0)
            self.pending.add(i)
            self.emit([SENTENCES[i]], tup_id=i)
        elif not self.pending:
            self.log("every sentence was acked; done")
            sys.exit(0)

    def ack(self, tup_id):
        self.pending.discard(tup_id)

    def fail(self, tup_id):
        self.log("sentence %s failed; emitting it again" % tup_id)
        self.pending.discard(tup_id)
        self.todo.append(tup_id)


if __name__ == "__main__":
    Sentences().run()
