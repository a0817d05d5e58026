"""CPU a sending process spends per message on the client side of each provider.

B4's limit is the worker's CPU per message, and most of it was the provider clients. This
measures them alone, ours beside the usual design in the same process, rounds interleaved:

* SMS: ``TwilioSmsTransport.send`` (twilio's ``Client`` on ``twilio_http.PooledHttpClient``,
  a kept-alive connection parsed by httptools, ``keepalive_http``) against twilio's stock
  ``TwilioHttpClient`` (requests), both talking real HTTP to the fake Twilio API served from
  a child process, so only the client's CPU is counted;
* email: ``email_wire.email_bytes`` against building a stdlib ``EmailMessage`` and flattening
  it (``email_headers.build_email`` + ``to_bytes``), for one real program step's text and HTML.

    python -m bench.client_cpu [--messages 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from config.settings import REPO_ROOT

SERVE_FAKE = (
    "import time\n"
    "from tests.fakes.twilio_api import running\n"
    "with running() as fake:\n"
    "    print(fake.base_url, flush=True)\n"
    "    time.sleep(3600)\n"
)
#: A real step's email, as its templates read (the placeholders do not change the cost).
STEP = REPO_ROOT / "templates/programs/retrain-the-alarm/steps/d17-the-pressure-you-carry"


def cpu_per_call(fn: Callable[[int], Any], n: int) -> float:
    """Microseconds of this process's CPU per call."""
    started = time.process_time()
    for i in range(n):
        fn(i)
    return (time.process_time() - started) / n * 1e6


def sms_senders(base_url: str) -> dict[str, Callable[[int], Any]]:
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    from campaigns.channels.base import OutgoingMessage
    from campaigns.channels.twilio_http import TWILIO_API
    from campaigns.channels.twilio_sms import TwilioSmsTransport
    from campaigns.enums import Channel
    from tests.fakes.twilio_api import ACCOUNT_SID, AUTH_TOKEN

    class StockClient(TwilioHttpClient):  # type: ignore[misc]
        """twilio's default HTTP layer, only pointed at the fake."""

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            return super().request(method, base_url + url[len(TWILIO_API) :], *args, **kwargs)

    callback = "https://clinic.example/webhooks/twilio/status"
    service = "MG" + "a" * 32
    ours = TwilioSmsTransport(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        status_callback=callback,
        messaging_service_sid=service,
        api_base_url=base_url,
    )
    stock = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=StockClient(timeout=15))
    body = "Day 3: notice the pain with curiosity, not alarm. Reply 0-10, or FLARE."

    def send_ours(i: int) -> Any:
        message = OutgoingMessage(i, i, Channel.SMS, "+15005550006", body, max_segments=3)
        return ours.send(message)

    def send_stock(i: int) -> Any:
        return stock.messages.create(
            to="+15005550006",
            body=body,
            status_callback=f"{callback}?outbox={i}",
            messaging_service_sid=service,
        )

    return {"ours": send_ours, "baseline": send_stock}


def email_builders() -> dict[str, Callable[[int], Any]]:
    from campaigns.channels.base import OutgoingMessage
    from campaigns.email_headers import build_email, to_bytes
    from campaigns.email_wire import email_bytes
    from campaigns.enums import Channel
    from tests.factories import EMAIL_IDENTITY

    now = datetime.now(UTC)
    text, html = ((STEP / name).read_text() for name in ("email.txt.j2", "email.html.j2"))

    def message(i: int) -> OutgoingMessage:
        subject = "Day 3: somatic tracking"
        return OutgoingMessage(i, i, Channel.EMAIL, f"p{i}@example.org", text, subject, html)

    return {
        "ours": lambda i: email_bytes(message(i), EMAIL_IDENTITY, now=now).data,
        "baseline": lambda i: to_bytes(build_email(message(i), EMAIL_IDENTITY, now=now)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--messages", type=int, default=2000, help="calls per measurement")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians reported")
    args = p.parse_args()
    fake = subprocess.Popen(
        [sys.executable, "-c", SERVE_FAKE], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert fake.stdout is not None
        cases = {"sms (client CPU per send)": sms_senders(fake.stdout.readline().strip())}
        cases["email (CPU to build the bytes)"] = email_builders()
        print(f"{'case':34} {'ours µs':>9} {'baseline µs':>12} {'x baseline':>11}")
        for name, pair in cases.items():
            for fn in pair.values():  # warm-up: connections, template caches
                cpu_per_call(fn, min(200, args.messages))
            rounds: dict[str, list[float]] = {"ours": [], "baseline": []}
            for _ in range(args.rounds):
                for label, fn in pair.items():
                    rounds[label].append(cpu_per_call(fn, args.messages))
            ours, base = (statistics.median(rounds[k]) for k in ("ours", "baseline"))
            print(f"{name:34} {ours:9.0f} {base:12.0f} {base / ours:10.2f}x")
    finally:
        fake.kill()
        fake.wait()


if __name__ == "__main__":
    main()
