"""How fast this machine's CPU runs right now: a fixed pure-Python work unit, timed in CPU time.

The benchmarks' figures are CPU-bound, and this 2-vCPU machine shares its physical cores with other work: with
nothing of ours running, the same unit took 3.5-4.2 ms of CPU in some seconds and 5.8-6.5 ms in others (27 samples
over 60 s, fifth session). CPU time per request moves with it, mostly: in five 20-s runs of bench.orders' load with
this probe sampled beside them, 94 % of the samples at full speed (under 4.6 ms) gave 435 orders/s, 89 % 404, 83 %
354, 61 % 297 and 39 % 255; but a 30-s run with 85 % gave 324. So bench.orders samples the probe in a process of its
own while its clients run (a few ms of CPU a second) and prints the samples' median and the share taken at full
speed beside its throughput: context for a figure, not a correction of it.

    python -m bench.cpu_probe [--units 30]                       one figure: the median of the units
    python -m bench.cpu_probe --sample-for 33 [--every 1.0]      a sample (the median of 3 units) every second
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

UNIT_ITEMS = 2_000


def _work_unit() -> int:
    encoded = {str(number): json.dumps({"n": number, "pair": [number, number + 1]}) for number in range(UNIT_ITEMS)}
    return len(encoded)


def probe_ms(units: int = 30) -> float:
    """The median CPU milliseconds of one work unit over ``units`` runs (~0.15 s on a quiet machine)."""
    timings = []
    for _ in range(units):
        started = time.process_time()
        _work_unit()
        timings.append((time.process_time() - started) * 1000.0)
    return statistics.median(timings)


def sample(duration: float, every: float, units: int = 3) -> list[float]:
    """A probe of ``units`` units every ``every`` seconds for ``duration`` seconds."""
    samples = []
    end = time.monotonic() + duration
    while time.monotonic() < end:
        samples.append(round(probe_ms(units), 3))
        time.sleep(every)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=30, help="work units timed (the median is printed)")
    parser.add_argument("--sample-for", type=float, default=0.0, help="seconds of sampling instead of one figure")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between samples")
    ns = parser.parse_args(argv)
    if ns.units < 1 or ns.sample_for < 0 or ns.every <= 0:
        parser.error("units and every must be positive, sample-for not negative")
    if ns.sample_for:
        samples = sample(ns.sample_for, ns.every)
        print(json.dumps({"bench": "cpu_probe", "samples_ms": samples, "every_s": ns.every}), flush=True)
        return 0
    figure = probe_ms(ns.units)
    print(f"CPU probe: {figure:.2f} ms of CPU per work unit")
    print(json.dumps({"bench": "cpu_probe", "probe_ms": round(figure, 3), "units": ns.units}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
