"""Profile B6's handler without HTTP: ``python -m bench.prof_b6 sqlite|postgresql [N] [--time]``.

Calls ``twilio_hooks.receive_sms`` (lookup, ``receive_reply``, TwiML answers, commit) for N
texts on a 10k-patient database under cProfile, to say where a webhook's time goes;
``--time`` runs them without the profiler, whose overhead roughly doubles the cost.
"""

from __future__ import annotations

import cProfile
import math
import pstats
import random
import sys
import time
import uuid

from bench.b6_replies import BODIES
from bench.common import BENCH_NOW, bench_runtime, fresh_database, quiet_logs
from bench.datagen import phone_of, populate
from campaigns.models import utcnow
from campaigns.web.twilio_hooks import InboundSms, receive_sms


def main(db: str, n: int = 500, patients: int = 10_000, *, profile: bool = True) -> None:
    quiet_logs()
    with fresh_database(db, "prof") as url:
        rt = bench_runtime(url)
        populate(rt, patients, now=BENCH_NOW)
        rng = random.Random(1)
        texts = [
            InboundSms("SM" + uuid.uuid4().hex, phone_of(rng.randint(1, patients)),
                       rng.choice(BODIES), 0)
            for _ in range(n + 50)
        ]  # fmt: skip
        now = utcnow()
        for sms in texts[:50]:  # warm caches and the pool
            receive_sms(rt, sms, now=now, deadline=math.inf)
        prof = cProfile.Profile()
        started = time.perf_counter()
        if profile:
            prof.enable()
        for sms in texts[50:]:
            receive_sms(rt, sms, now=now, deadline=math.inf)
        prof.disable()
        elapsed = time.perf_counter() - started
        print(f"{db}: {n / elapsed:.0f} replies/s in process, {elapsed / n * 1000:.2f} ms each")
        if profile:
            pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
        rt.engine.dispose()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--time"]
    main(args[0], *(int(a) for a in args[1:2]), profile="--time" not in sys.argv)
