"""Bulk screening benchmark: the cached screen against a naive per-number pipeline, one run.

    python bench/screen.py [--count 1000000] [--naive-count 100000] [--seed 7]

Both pipelines apply the same correction table and the same rules: the naive one parses
every number with phonenumbers, asks `time_zones_for_number`, applies the corrections,
looks up the region and computes the verdict with empty caches (zoneinfo and the holiday
calendar afresh per number). The screen parses and types every number too, but looks up
zones by prefix and verdicts by (zones, region, card facts). The naive pipeline runs on the
first `--naive-count` numbers (it is slow); verdicts are compared on those.
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from datetime import UTC, datetime

import phonenumbers

from routing_rules.outbound import (
    OutboundPolicy,
    OutboundTarget,
    Verdict,
    clear_caches,
    reference_verdict,
)
from telephony import numbers, screening

US_AREAS = ["212", "213", "305", "512", "713", "850", "448", "270", "364", "541", "458",
            "915", "928", "423", "812", "208", "605", "405", "206", "410", "504", "601",
            "801", "205", "215", "312", "702", "808", "907", "906", "308"]
CA_AREAS = ["416", "604", "250", "867", "403", "514", "709", "306", "418", "807"]


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def generate(count: int, seed: int) -> list[str]:
    """A deterministic mixed list: countries, formats, multi-zone codes, junk."""
    rng = random.Random(seed)
    makers = [
        (30, lambda: f"+1{rng.choice(US_AREAS)}{rng.randint(200, 999)}{_digits(rng, 4)}"),
        (3, lambda: f"+1 ({rng.choice(US_AREAS)}) {rng.randint(200, 999)}-{_digits(rng, 4)}"),
        (8, lambda: f"+1{rng.choice(CA_AREAS)}{rng.randint(200, 999)}{_digits(rng, 4)}"),
        (8, lambda: f"+447{rng.randint(400, 999)}{_digits(rng, 6)}"),
        (2, lambda: f"+44 20 7{_digits(rng, 3)} {_digits(rng, 4)}"),
        (12, lambda: f"+79{_digits(rng, 2)}{_digits(rng, 7)}"),
        (2, lambda: f"+7 916 {_digits(rng, 3)}-{_digits(rng, 2)}-{_digits(rng, 2)}"),
        (3, lambda: f"+74012{_digits(rng, 6)}"),
        (2, lambda: f"+7495{_digits(rng, 7)}"),
        (2, lambda: f"+78452{_digits(rng, 6)}"),
        (7, lambda: f"+48{rng.choice('5678')}{_digits(rng, 8)}"),
        (2, lambda: f"+4822{_digits(rng, 7)}"),
        (6, lambda: f"+3725{_digits(rng, 7)}"),
        (2, lambda: f"00 372 6{_digits(rng, 2)} {_digits(rng, 4)}"),
        (7, lambda: f"+614{_digits(rng, 8)}"),
        (2, lambda: f"+612{_digits(rng, 8)}"),
        (4, lambda: rng.choice(["anonymous", "client:bob", "12", "+999123", "not a number",
                                f"+1555{_digits(rng, 7)}", f"+372{_digits(rng, 2)}"])),
    ]
    weights = [w for w, _ in makers]
    pick = rng.choices(range(len(makers)), weights=weights, k=count)
    return [makers[i][1]() for i in pick]


def opt_outs(rows: list[str], seed: int) -> tuple[set[str], set[str]]:
    """About 2% of numbers opted out themselves, 1% whose client opted out."""
    rng = random.Random(seed + 1)
    by_number: set[str] = set()
    by_client: set[str] = set()
    for raw in rows[: min(len(rows), 200_000)]:
        roll = rng.random()
        if roll < 0.03:
            e164 = numbers.normalize(raw)
            if e164:
                (by_number if roll < 0.02 else by_client).add(e164)
    return by_number, by_client


def naive(rows: list[str], by_number: set[str], by_client: set[str],
          policy: OutboundPolicy, now: datetime) -> list[tuple[str | None, Verdict]]:
    out = []
    for raw in rows:
        number = numbers.parse(raw)  # phonenumbers.parse + is_valid_number
        if number is None:
            target = OutboundTarget(e164=None)
        else:
            e164 = numbers.e164_of(number)
            country, subdivision = numbers.region_of_number(number)
            target = OutboundTarget(
                e164=e164, country=country, subdivision=subdivision,
                zones=numbers.zones_of(number),  # time_zones_for_number + corrections
                client_opted_out=e164 in by_client, number_opted_out=e164 in by_number)
        out.append((target.e164, reference_verdict(target, policy, now)))
    return out


def parse_floor(rows: list[str]) -> float:
    """Seconds to only parse and type (= validate) each number: the per-number floor."""
    start = time.perf_counter()
    for raw in rows:
        number = numbers.parse_unchecked(raw)
        if number is not None:
            phonenumbers.number_type(number)
    return time.perf_counter() - start


def _key(e164: str | None, v: Verdict) -> tuple[object, ...]:
    return (e164, v.allowed, v.reason, v.next_allowed_at, v.next_allowed_local, v.zones)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--naive-count", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--now", default="2026-11-24T15:00:00+00:00")
    args = ap.parse_args(argv)
    now = datetime.fromisoformat(args.now).astimezone(UTC)
    policy = OutboundPolicy()

    rows = generate(args.count, args.seed)
    by_number, by_client = opt_outs(rows, args.seed)
    sample = rows[: min(args.naive_count, len(rows))]
    print(f"python {platform.python_version()}, {len(rows):,} numbers, naive on the first "
          f"{len(sample):,}, now={now.isoformat()}")

    start = time.perf_counter()
    slow = naive(sample, by_number, by_client, policy, now)
    naive_s = time.perf_counter() - start

    clear_caches()  # the screen starts cold, like a fresh process
    start = time.perf_counter()
    fast = []
    allowed = 0
    for i, result in enumerate(screening.screen(rows, by_number, by_client, policy=policy,
                                                now=now)):
        allowed += result.verdict.allowed
        if i < len(sample):
            fast.append(result)
    fast_s = time.perf_counter() - start

    floor_s = parse_floor(sample)
    same = sum(_key(r.e164, r.verdict) == _key(e, v) for r, (e, v) in zip(fast, slow, strict=False))
    fast_rate, naive_rate = len(rows) / fast_s, len(sample) / naive_s
    print(f"naive  : {len(sample):>9,} numbers in {naive_s:8.2f} s = {naive_rate:>10,.0f} /s")
    print(f"screen : {len(rows):>9,} numbers in {fast_s:8.2f} s = {fast_rate:>10,.0f} /s "
          f"({allowed:,} allowed)")
    print(f"ratio  : {fast_rate / naive_rate:.1f}x the naive pipeline's throughput")
    print(f"floor  : parse + type alone = {len(sample) / floor_s:,.0f} /s "
          f"(the screen reaches {fast_rate / (len(sample) / floor_s):.0%} of it)")
    verdict_line = "identical" if same == len(sample) else f"DIFFERENT on {len(sample) - same:,}"
    print(f"verdicts on the {len(sample):,} numbers both screened: {verdict_line}")
    return 0 if same == len(sample) else 1


if __name__ == "__main__":
    raise SystemExit(main())
