"""VLA learning benchmark: each action head, with DetPool on and off, on language-conditioned Lift.

100 expert demonstrations of language_lift (the instructed toy among two distractors in other colours;
front and wrist cameras at 64x64 with the target's mask), `steps` of training per variant
(configs/experiment/learn_language_lift.yaml), 100 evaluation episodes on seeds disjoint from the
demonstrations. Prints one table: success with its 95% interval, the rate at which a distractor was
lifted instead, training time. Finished variants are kept in results.json and skipped when run again.

    .venv/bin/python benchmarks/learn_language_lift.py [--variants flow-detpool,flow-patches] [hydra overrides]
    .venv/bin/python benchmarks/learn_language_lift.py --out learn_language_lift_delta env.control_mode=ee_delta
    .venv/bin/python benchmarks/learn_language_lift.py --out learn_language_lift_dart --action-noise 0.02
    .venv/bin/python benchmarks/learn_language_lift.py --out lll_descent --action-noise 0.03 --noise-correlation 0.9 --noise-entries x,y --noise-gated
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

BENCHMARKS = Path(__file__).resolve().parent / "out"
VARIANTS = {
    f"{head}-{'detpool' if det else 'patches'}": [f"policy.head={head}", f"policy.det_pool={str(det).lower()}"]
    for det in (True, False) for head in ("flow", "discrete_diffusion", "autoregressive")
}


def config(label: str, overrides: list[str], out: Path) -> dict:
    with initialize_config_module("toyland.configs", version_base="1.3"):
        cfg = compose("train", overrides=["experiment=learn_language_lift", f"output_dir={out / 'runs' / label}",
                                          f"data.sources=[{{name: language_lift, path: {out / 'data'}}}]",
                                          *VARIANTS[label], *overrides])
    cfg = OmegaConf.to_container(cfg, resolve=True)
    cfg.pop("experiment", None)
    return cfg


def table(results: dict) -> str:
    lines = ["| variant | steps | train min | success (95% CI) | distractor lifted (95% CI) |", "|---|---|---|---|---|"]
    for label, r in results.items():
        f = r["final"]
        lines.append(f"| {label} | {f['step']} | {f['train_s'] / 60:.1f} | {f['successes']}/{f['episodes']} = "
                     f"{f['success_rate']:.2f} ({f['ci95'][0]:.2f}-{f['ci95'][1]:.2f}) | {f['wrong_object']}/{f['episodes']} "
                     f"({f['wrong_object_ci95'][0]:.2f}-{f['wrong_object_ci95'][1]:.2f}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--out", default="learn_language_lift",
                        help="folder under benchmarks/out for demos, runs and results (an override that changes the demos needs its own)")
    parser.add_argument("--action-noise", type=float, default=0.0,
                        help="DART-style demos: noise std on the executed arm actions (use with --out, its own demos)")
    parser.add_argument("--noise-correlation", type=float, default=0.0,
                        help="step-to-step correlation of that noise, in [0, 1) (see toyland.data.collect.ActionNoise)")
    parser.add_argument("--noise-entries", default=None, help="comma-separated action entries it perturbs, e.g. x,y")
    parser.add_argument("--noise-gated", action="store_true",
                        help="only where the expert takes it (Lift: over its descent onto the grasp, fading out)")
    parser.add_argument("--rerun", action="store_true", help="train variants again even when results exist")
    args, overrides = parser.parse_known_args()
    args.variants = args.variants.split(",")
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; valid: {', '.join(VARIANTS)}")
    from toyland.data.collect import ActionNoise, collect
    from toyland.train.trainer import train

    OUT = BENCHMARKS / args.out
    results_path = OUT / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    t0 = time.perf_counter()
    summary = collect(config(args.variants[0], overrides, OUT)["env"], OUT / "data", episodes=100, seed=0, workers=2,
                      progress=True, action_noise=ActionNoise(args.action_noise, args.noise_correlation,
                                                             args.noise_entries, args.noise_gated))
    print(f"demonstrations: {summary.kept} kept, {summary.discarded} discarded ({time.perf_counter() - t0:.0f} s this run)")
    for label in args.variants:
        if label in results and not args.rerun:
            continue
        result = train(config(label, overrides, OUT))
        results[label] = {"final": result.final_eval, "history": result.history, "overrides": VARIANTS[label] + overrides}
        results_path.write_text(json.dumps(results, indent=2))
        print(f"\n{label}: success over training time (optimization only):")
        for h in result.history:
            print(f"  {h['step']:5d}  {h['train_s'] / 60:6.1f} min  {h['successes']}/{h['episodes']} = {h['success_rate']:.2f}")
    print("\n" + table({k: results[k] for k in VARIANTS if k in results}))


if __name__ == "__main__":
    main()
