"""What each stage of `/v1/score` costs in process, per body format, at 10, 100 and 1000 candidates.

The full composition is on (segment calibration, 4 utility terms with a value term, 2 guardrails, 2
slate rules, top_k 20, drift accounting; served log off). Each stage is timed alone on inputs prepared
by the stage before it, many times, interleaved with the others; the table gives the min (robust to
other jobs on the machine) and the median, in µs. `whole request` is `app.api.score._answer` (decode,
answer, encode, metrics: everything but HTTP), and `beyond ort.run` is its cost minus `ort.run`'s, the
figure the issue's targets are stated in. With `--profile DIR`, each (format, size) is also run under
cProfile into DIR/<format>_<n>.prof.
Usage: python bench/stage_profile.py [--model demo|reference] [--repeats N] [--sizes 10,100,1000]
       [--profile DIR] [--session-nice N] [--record]   (--record appends the table to bench/RESULTS.md)
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.api.score import _answer
from app.monitoring.answers import AnswerMetrics
from app.protocol.arrow import ARROW_MEDIA_TYPE
from app.protocol.score import decode_score, encode_score
from app.serving.answer import answer
from app.serving.attributes import extract_attributes
from app.serving.scorer import score
from app.serving.utility import compose_utility
from bench.common import MODELS, append_results, load_average, machine, now, segmented_store
from bench.live import session_priority
from bench.score_bench import FORMATS, NO_DEADLINE, body_of, service_state

_LIMITS = {"max_candidates": 5000, "max_decoded_bytes": 256 << 20}


def stages(state: Any, fmt: str, n: int) -> dict[str, Callable[[], object]]:
    """name -> a call of that stage alone, on the inputs the stages before it produced."""
    body, _ = body_of(fmt, n)
    media = ARROW_MEDIA_TYPE if fmt == "arrow" else "application/json"
    arrow = fmt == "arrow"
    envelope, request = decode_score(body, media, **_LIMITS)
    snapshot = state.snapshot
    binding = snapshot.route(request.surface).binding(None)
    bundle, policy = binding.bundle, binding.policy
    scored = request.candidates
    encoded = bundle.encoder.encode(scored.features, scored.context_features)
    attributes = extract_attributes(scored.attributes, policy.file.attributes)
    logits = bundle.runner.run(encoded.numeric, encoded.categorical)
    probabilities = binding.calibration.apply(logits, encoded.categorical)
    metrics = AnswerMetrics(state.metrics, None)
    answered = answer(snapshot, request)

    def policy_stages() -> object:
        eff = policy.resolve(scored.context_attributes)
        return compose_utility(probabilities, attributes, policy, eff.weights)

    return {
        "whole request": lambda: _answer(state, body, media, arrow, time.perf_counter(), NO_DEADLINE),
        "decode (envelope, ids, checks)": lambda: decode_score(body, media, **_LIMITS),
        "features": lambda: bundle.encoder.encode(scored.features, scored.context_features),
        "attributes": lambda: extract_attributes(scored.attributes, policy.file.attributes),
        "ort.run": lambda: bundle.runner.run(encoded.numeric, encoded.categorical),
        "calibration": lambda: binding.calibration.apply(logits, encoded.categorical),
        "resolve + utility": policy_stages,
        "score() (features to slate)": lambda: score(binding, scored),
        "answer() (route, arm, score)": lambda: answer(snapshot, request),
        "metrics + drift": lambda: metrics.answered(answered),
        "encode answer": lambda: encode_score(envelope, answered, arrow=arrow),
    }


def measure(state: Any, fmt: str, n: int, repeats: int) -> dict[str, tuple[float, float]]:
    """stage -> (min µs, median µs) over `repeats` interleaved rounds."""
    cases = stages(state, fmt, n)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(max(5, repeats // 10)):
        for call in cases.values():
            call()
    gc.collect()
    gc.freeze()
    clock = time.perf_counter
    for _ in range(repeats):
        for name, call in cases.items():
            t0 = clock()
            call()
            samples[name].append(clock() - t0)
    gc.unfreeze()
    return {name: (min(v) * 1e6, statistics.median(v) * 1e6) for name, v in samples.items()}


def profile(state: Any, fmt: str, n: int, repeats: int, out: Path) -> None:
    """The whole request under cProfile, `repeats` times, into `out`."""
    whole = stages(state, fmt, n)["whole request"]
    for _ in range(20):
        whole()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeats):
        whole()
    profiler.disable()
    profiler.dump_stats(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="demo")
    parser.add_argument("--repeats", type=int, default=2000, help="rounds at 10 candidates (fewer above)")
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--profile", type=Path, help="folder for cProfile output per (format, size)")
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    parser.add_argument("--session-nice", type=int, help="niceness of the bench's own autogroup (needs setsid)")
    args = parser.parse_args()
    priority = session_priority(args.session_nice)
    sizes = [int(s) for s in args.sizes.split(",")]
    store = segmented_store(Path(tempfile.mkdtemp(prefix="fusionrank-stages-")), args.model)
    state = service_state(store)
    load_before = load_average()
    results = {}
    for n in sizes:
        repeats = max(100, args.repeats * 10 // n) if n > 10 else args.repeats
        for fmt in FORMATS:
            results[(fmt, n)] = measure(state, fmt, n, repeats)
            if args.profile is not None:
                args.profile.mkdir(parents=True, exist_ok=True)
                profile(state, fmt, n, min(repeats, 500), args.profile / f"{fmt}_{n}.prof")
    names = list(results[(FORMATS[0], sizes[0])])
    lines = [
        f"machine: {machine()}  ",
        f"date: {now()}; {MODELS[args.model]}; full composition, served log off; load average before "
        f"{load_before}, after {load_average()}; scheduling: {priority}  ",
        "Each stage alone, interleaved; min / median µs over many rounds (min is the figure least "
        "inflated by other jobs on the machine).",
        "",
        "| stage | " + " | ".join(f"{fmt} {n}" for n in sizes for fmt in FORMATS) + " |",
        "|---|" + "---:|" * (len(sizes) * len(FORMATS)),
    ]
    for name in names:
        cells = " | ".join(f"{results[(f, n)][name][0]:.1f} / {results[(f, n)][name][1]:.1f}"
                           for n in sizes for f in FORMATS)
        lines.append(f"| {name} | {cells} |")
    beyond = " | ".join(
        f"**{results[(f, n)]['whole request'][0] - results[(f, n)]['ort.run'][0]:.1f}** / "
        f"{results[(f, n)]['whole request'][1] - results[(f, n)]['ort.run'][1]:.1f}"
        for n in sizes for f in FORMATS
    )
    lines.append(f"| beyond ort.run (whole - ort.run) | {beyond} |")
    print("\n".join(lines))
    if args.record:
        append_results("bench/stage_profile.py", lines)


if __name__ == "__main__":
    main()
