"""The deletion protocol under both fills, side by side: ROAD imputation (the default) against black pixels.

    python bench/fills.py [--out DIR] [-- MAIN_FLAGS]

Runs the trust task twice on the embedded demo (its committed checkpoint, the default 33-image protocol), once with
`deletion_fill=road` and once with `deletion_fill=black`, and prints per method the paired gains over the random
map (MoRF, LeRF, insertion: mean [95% interval], n), each fill's method ranking by MoRF and by LeRF, and Kendall's
tau between the rankings (MoRF against LeRF within a fill, and each order across fills). No bar: it reports what the
two protocols say on this model. Both runs also leave their trust.json under --out.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import main  # noqa: E402

GAINS = ("morf_gain", "lerf_gain", "insertion_gain")


def run_trust(out: Path, fill: str, extra: list[str]) -> tuple[dict, float]:
    """The trust task under one fill; its trust.json and seconds."""
    t0 = time.perf_counter()
    rc = main.main(["--task", "trust", "--out", str(out), "--device", "cpu", "--set", f"deletion_fill={fill}", *extra])
    if rc != 0:
        raise SystemExit(f"the trust task under fill={fill} failed with exit status {rc}")
    return json.loads((out / "trust.json").read_text(encoding="utf-8")), time.perf_counter() - t0


def ranking(vs: dict, key: str) -> list[str]:
    """Methods by their mean gain on `key`, best first (ties by name)."""
    return sorted(vs, key=lambda m: (-vs[m][key]["mean"], m))


def kendall(a: list[str], b: list[str]) -> float:
    """Kendall's tau between two rankings of the same items (no ties)."""
    pos = {m: i for i, m in enumerate(b)}
    n, s = len(a), 0
    for i in range(n):
        for j in range(i + 1, n):
            s += 1 if pos[a[i]] < pos[a[j]] else -1
    return s / (n * (n - 1) / 2) if n > 1 else float("nan")


def cell(g: dict) -> str:
    """'0.573 [0.485, 0.648] n=27'."""
    return f"{g['mean']:6.3f} [{g['lo']:6.3f}, {g['hi']:6.3f}] n={g['n']}"


def main_() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(REPO / ".cache" / "bench" / "fills"))
    p.add_argument("args", nargs="*", help="extra main.py flags after --")
    a = p.parse_args()
    res, secs = {}, {}
    for fill in ("road", "black"):
        res[fill], secs[fill] = run_trust(Path(a.out) / fill, fill, a.args)
    print(f"\ntrust task: ROAD {secs['road']:.1f} s, black {secs['black']:.1f} s")
    for fill in ("road", "black"):
        vs = {m: v for m, v in res[fill]["vs_random"].items() if all(isinstance(v.get(k), dict) for k in GAINS)}
        sat = res[fill].get("saturation") or {}
        print(f"\n{fill} fill: paired gain over random, mean [95% interval] (saturated left out: "
              f"{sat.get('n_saturated', '?')})")
        print(f"{'method':<22} {'MoRF':<30} {'LeRF':<30} {'insertion':<30}")
        for m in sorted(vs):
            print(f"{m:<22} " + " ".join(f"{cell(vs[m][k]):<30}" for k in GAINS))
        morf, lerf = ranking(vs, "morf_gain"), ranking(vs, "lerf_gain")
        print(f"ranking by MoRF: {', '.join(morf)}")
        print(f"ranking by LeRF: {', '.join(lerf)}")
        print(f"Kendall tau MoRF vs LeRF: {kendall(morf, lerf):.2f}")
        res[fill]["_rank"] = {"morf": morf, "lerf": lerf}
    common = [m for m in res["road"]["_rank"]["morf"] if m in res["black"]["_rank"]["morf"]]
    for order in ("morf", "lerf"):
        ra = [m for m in res["road"]["_rank"][order] if m in common]
        rb = [m for m in res["black"]["_rank"][order] if m in common]
        print(f"Kendall tau ROAD vs black, {order.upper()}: {kendall(ra, rb):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_())
