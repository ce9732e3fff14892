"""Learning benchmark: does toyland's diffusion policy learn Lift on two CPU cores?

100 expert demonstrations of Lift on the train toys (front and wrist cameras at 64x64), `steps` of training
(configs/experiment/learn_lift.yaml), evaluations of 20 episodes every 1000 steps and 100 at the
end, on seeds disjoint from the demonstrations. Prints the success curve over training time.

    .venv/bin/python benchmarks/learn_lift.py [hydra overrides, e.g. steps=3000 policy=lerobot_diffusion]
    .venv/bin/python benchmarks/learn_lift.py experiment=learn_lift_masks
    .venv/bin/python benchmarks/learn_lift.py out=learn_lift_delta env.control_mode=ee_delta steps=2500
    .venv/bin/python benchmarks/learn_lift.py out=learn_lift_dart action_noise=0.02
    .venv/bin/python benchmarks/learn_lift.py out=learn_lift_recovery action_noise=0.02 recovery=0.3
    .venv/bin/python benchmarks/learn_lift.py out=ll_descent action_noise=0.03 noise_correlation=0.9 noise_entries=x,y noise_gated=true
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

BENCHMARKS = Path(__file__).resolve().parent / "out"
OPTIONS = ("experiment=", "out=", "action_noise=", "noise_correlation=", "noise_entries=", "noise_gated=", "recovery=")  # this script's own arguments, not Hydra overrides


def main(overrides: list[str]) -> None:
    from toyland.data.collect import ActionNoise, collect
    from toyland.train.trainer import train

    # experiment=learn_lift_masks: the same with the target's mask as an input (its own demos)
    options = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in overrides if o.startswith(OPTIONS)}
    overrides = [o for o in overrides if not o.startswith(OPTIONS)]
    experiment = options.get("experiment", "learn_lift")
    # out=NAME: another folder under benchmarks/out for demos and run (an override that changes the demos needs one)
    folder = options.get("out", experiment)
    # action_noise=STD: DART-style demos, noise on the executed arm actions (use with out=, its own demos)
    # noise_correlation=RHO noise_entries=x,y noise_gated=true: that noise held for ~1/(1-RHO) steps, on those
    # action entries only, where the expert takes it (Lift: over its descent); see data.collect.ActionNoise
    action_noise = ActionNoise(float(options.get("action_noise", 0.0)), float(options.get("noise_correlation", 0.0)),
                               options.get("noise_entries"), options.get("noise_gated", "false").lower() in ("true", "1", "yes"))
    # recovery=FRACTION: that share of the demos recorded from a missed first grasp on (use with out=)
    recovery = float(options.get("recovery", 0.0))
    OUT = BENCHMARKS / folder
    run_dir = OUT / "run"
    with initialize_config_module("toyland.configs", version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", f"output_dir={run_dir}",
                                          f"data.sources=[{{name: lift, path: {OUT / 'data'}}}]", *overrides])
    cfg = OmegaConf.to_container(cfg, resolve=True)
    cfg.pop("experiment", None)
    t0 = time.perf_counter()
    summary = collect(cfg["env"], OUT / "data", episodes=100, seed=0, workers=2, progress=True,
                      action_noise=action_noise, recovery=recovery)
    print(f"demonstrations: {summary.kept} kept, {summary.discarded} discarded ({time.perf_counter() - t0:.0f} s this run)")
    result = train(cfg)
    train_s = result.final_eval["train_s"]
    print("\nsuccess over training time (optimization only; evaluations excluded):")
    print("  step   train time  success")
    for h in result.history:
        print(f"  {h['step']:5d}  {h['train_s'] / 60:6.1f} min  {h['successes']}/{h['episodes']} = {h['success_rate']:.2f}")
    final = result.final_eval
    print(f"final: {final['successes']}/{final['episodes']} = {final['success_rate']:.2f} "
          f"(95% CI {final['ci95'][0]:.2f}-{final['ci95'][1]:.2f}) after {result.steps} steps, {train_s / 60:.1f} min")
    (OUT / "results.json").write_text(json.dumps({"history": result.history, "final": final, "config": cfg}, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
