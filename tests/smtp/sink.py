#!/usr/bin/env python3
"""An SMTP server for Chronicle's tests (aiosmtpd): accepts every message and writes it to a
directory, as the raw .eml and a .json of what a mailbox shows (to, subject, Message-ID, the
decoded text and HTML parts), and answers 550 to the recipients named with --reject.

    python3 tests/smtp/sink.py --port 2525 --dir /tmp/mails [--reject bounce@example.com]
"""
import argparse
import email
import email.policy
import json
import os
import signal
import threading
import uuid

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory, rejected):
        self.directory = directory
        self.rejected = {r.lower() for r in rejected}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.rejected:
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        parts = {}
        for part in message.walk():
            if part.get_content_maintype() == "text":
                parts[part.get_content_subtype()] = part.get_content()
        name = uuid.uuid4().hex
        # Written under a temporary name, then renamed: a reader never sees half a message.
        for suffix, data in (
            (".eml", raw),
            (".json", json.dumps({
                "rcpt_tos": envelope.rcpt_tos,
                "to": str(message["To"]),
                "from": str(message["From"]),
                "subject": str(message["Subject"]),
                "message_id": str(message["Message-ID"]),
                "content_type": message.get_content_type(),
                "text": parts.get("plain"),
                "html": parts.get("html"),
            }).encode()),
        ):
            temporary = os.path.join(self.directory, "." + name + suffix)
            with open(temporary, "wb") as f:
                f.write(data)
            os.rename(temporary, os.path.join(self.directory, name + suffix))
        return "250 Message accepted for delivery"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--reject", action="append", default=[])
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    controller = Controller(Sink(args.dir, args.reject), hostname="127.0.0.1", port=args.port)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
