"""A multilang split bolt written with pystorm: anchored emits, explicit ack and fail.

The first time any task sees a sentence containing "seven" it fails it (a marker file
in the working directory makes that once per sentence across tasks and restarts), so
the spout replays it; every other sentence is split into words anchored to it.
"""
import hashlib
import os

from pystorm import Bolt


class Split(Bolt):
    auto_ack = False
    auto_fail = True

    def process(self, tup):
        sentence = tup.values.sentence
        if "seven" in sentence and self.first_time(sentence):
            self.log("failing %r once" % sentence, level="warning")
            self.fail(tup)
            return
        for word in sentence.split():
            self.emit([word], anchors=[tup])
        self.ack(tup)

    @staticmethod
    def first_time(sentence):
        marker = "failed-" + hashlib.sha1(sentence.encode()).hexdigest()
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            return False


if __name__ == "__main__":
    Split().run()
