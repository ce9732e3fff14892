"""``toyland <command> [hydra overrides]``: thin Hydra mains over library functions.

Commands and their configs (toyland/configs/<command>.yaml):
  demo      run the scripted expert on a task, print success per toy set, write a video
  collect   record the scripted expert's demonstrations into a LeRobotDataset
  train     train a policy on LeRobotDatasets, evaluate it in the env, print success
  eval      score a policy on a suite of factor cells: paired seeds, Wilson intervals, report
  report    `toyland report RUN [RUN ...] [--out DIR]`: rebuild and compare evaluation reports
  study     `toyland study NAME [key=value ...]`: collect, train over seeds, evaluate, report (configs/study/)
  augment   `toyland augment SRC output_dir=DST factors.camera_viewpoint=ood_1 ...`: re-render a dataset
  merge     `toyland merge BASE FINETUNED alpha=0.5 output_dir=DIR`: interpolate two checkpoints' weights
  export    `toyland export CHECKPOINT DST [weights=ema|model]`: a lerobot pretrained folder (lerobot-eval, lerobot-rollout)
  data      dataset utilities: `toyland data stats PATH [PATH ...]` (factor diversity, fragmentation)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf


def demo(cfg: DictConfig) -> dict:
    """Scripted expert over ``episodes`` seeded episodes per toy set: success rate, Wilson CI, video."""
    from tqdm import tqdm

    from toyland.eval.actors import ExpertActor
    from toyland.eval.runner import run_episode, write_video
    from toyland.eval.stats import wilson_interval
    from toyland.sim import make_env

    out = Path(cfg.output_dir)
    env_cfg = env_config(cfg)
    results = {}
    frames = []
    for toy_set in cfg.toy_sets:
        env = make_env(env_cfg, toy_set=toy_set, render_mode="rgb_array", render_size=[cfg.video.size, cfg.video.size])
        actor = ExpertActor()
        wins, first, cue, start = 0, 0, 0, time.perf_counter()
        bar = tqdm(range(cfg.episodes), desc=f"expert on {toy_set}", leave=False)
        for i in bar:
            record = cfg.video.enabled and toy_set == cfg.toy_sets[0] and i < cfg.video.episodes
            result, episode_frames = run_episode(env, actor, seed=cfg.seed + i, record=record)
            frames.extend(episode_frames)
            wins += result["success"]
            first += result["success"] and actor.expert.attempts == 1  # succeeded without re-planning a missed grasp
            cue += bool(result["outcome"].get("cue_success", False))
            bar.set_postfix(success=f"{wins}/{i + 1}")
        env.close()
        lo, hi = wilson_interval(wins, cfg.episodes)
        results[toy_set] = {"success": wins / cfg.episodes, "ci95": [lo, hi], "episodes": cfg.episodes,
                            "first_grasp": first / cfg.episodes}
        shortcut = ""
        if env_cfg.get("shortcut"):
            results[toy_set]["shortcut_rate"] = cue / cfg.episodes
            shortcut = f"  shortcut rate {cue}/{cfg.episodes}"
        print(
            f"{env_cfg.get('task', 'lift')} expert on {toy_set:>20s}: success {wins}/{cfg.episodes} = "
            f"{wins / cfg.episodes:.2f}  (95% CI {lo:.2f}-{hi:.2f}; {first} on the first grasp; "
            f"{time.perf_counter() - start:.1f} s){shortcut}"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    if frames:
        path = write_video(out / "expert.mp4", frames, fps=cfg.video.fps)
        print(f"video: {path}")
    return results


def env_config(cfg: DictConfig) -> dict:
    """The env config of a command: ``env`` with the chosen scenario split applied."""
    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    if cfg.get("scenario"):
        from toyland.sim.scenarios import split_env_config

        env_cfg.update(split_env_config(OmegaConf.to_container(cfg.scenario, resolve=True), cfg.split))
    return env_cfg


def collect(cfg: DictConfig):
    from toyland.data.collect import ActionNoise, ExpertFailing, collect as run

    env_cfg = env_config(cfg)
    provenance = {"split": cfg.split} if cfg.get("scenario") else {}
    try:
        summary = run(
            env_cfg, cfg.output_dir, cfg.episodes, seed=cfg.seed, workers=cfg.workers, keep=cfg.keep,
            post_success_steps=cfg.post_success_steps, checkpoint_every=cfg.checkpoint_every, video=cfg.video,
            repo_id=cfg.repo_id, provenance=provenance,
            action_noise=ActionNoise(cfg.action_noise, cfg.noise_correlation, cfg.noise_entries, cfg.noise_gated),
            launcher=cfg.launcher, ray_address=cfg.ray_address,
        )
    except ExpertFailing as exc:
        print(f"toyland collect: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(
        f"dataset {summary.root}: {summary.kept} episodes kept, {summary.discarded} discarded "
        f"(this run: {summary.kept_now} kept, {summary.discarded_now} discarded)"
    )
    if summary.interrupted:
        print(f"interrupted: run the same command again to resume to {cfg.episodes} episodes", file=sys.stderr)
        raise SystemExit(130)
    return summary


def data(argv: list[str]) -> None:
    """``toyland data stats PATH [PATH ...] [--bins N] [--json FILE]`` and ``toyland data check PATH [--repair]``
    (plain arguments, no Hydra)."""
    import argparse

    parser = argparse.ArgumentParser(prog="toyland data")
    sub = parser.add_subparsers(dest="action", required=True)
    stats = sub.add_parser("stats", help="factor diversity per dataset and fragmentation across them")
    stats.add_argument("paths", nargs="+", help="LeRobotDataset root folders (sub-datasets of one mixture)")
    stats.add_argument("--bins", type=int, default=8, help="bins per continuous factor axis")
    stats.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    check = sub.add_parser("check", help="verify a LeRobotDataset: files complete, metadata and episode log "
                                         "consistent, every episode readable (exit status 1 on a problem)")
    check.add_argument("path", help="a LeRobotDataset root folder")
    check.add_argument("--repair", action="store_true",
                       help="roll a toyland collection back to its last checkpoint, saying what it removes")
    args = parser.parse_args(argv)
    from toyland.data.frames import DatasetError

    if args.action == "check":
        from toyland.data.check import check_dataset, repair_dataset

        try:
            if args.repair:
                actions, report = repair_dataset(args.path)
                print("\n".join(actions) or f"{args.path}: nothing to roll back")
            else:
                report = check_dataset(args.path)
        except DatasetError as exc:
            parser.exit(2, f"toyland data check: {exc}\n")
        print(report.format())
        raise SystemExit(0 if report.ok else 1)
    from toyland.data.stats import dataset_stats, format_report

    try:
        report = dataset_stats(args.paths, bins=args.bins)
    except DatasetError as exc:
        parser.exit(2, f"toyland data stats: {exc}\n")
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def train(cfg: DictConfig):
    from toyland.train.trainer import train as run

    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("experiment", None)
    result = run(container)
    if result.final_eval:
        e = result.final_eval
        print(f"{cfg.policy.name} after {result.steps} steps: success {e['successes']}/{e['episodes']} = "
              f"{e['success_rate']:.2f} (95% CI {e['ci95'][0]:.2f}-{e['ci95'][1]:.2f}); checkpoint {result.output_dir}/checkpoints")
    return result


def evaluate(cfg: DictConfig):
    from toyland.eval.harness import evaluate_suite

    suite = OmegaConf.to_container(cfg.suite, resolve=True)
    suite.pop("description", None)
    results = evaluate_suite(
        cfg.actor, env_config(cfg), suite, cfg.output_dir, episodes=cfg.episodes, seed_start=cfg.seed_start,
        workers=cfg.workers, weights=cfg.weights, videos=cfg.videos, n_action_steps=cfg.n_action_steps,
        launcher=cfg.launcher, ray_address=cfg.ray_address, envs_per_worker=cfg.envs_per_worker,
    )
    print(f"{results['actor']}: {cfg.episodes} episodes per cell")
    for name, cell in results["cells"].items():
        gap = results["gaps"].get(name, {})
        extra = f"  gap vs id {gap['difference']:+.2f} (McNemar p {gap['mcnemar_p']:.3f})" if gap.get("n") else ""
        if cell.get("shortcut_rate") is not None:
            extra += f"  shortcut rate {cell['shortcut_rate']:.2f}"
        print(f"  {name:36s} success {cell['successes']}/{cell['episodes']} = {cell['success_rate']:.2f} "
              f"(95% CI {cell['ci95'][0]:.2f}-{cell['ci95'][1]:.2f}){extra}")
    print(f"report: {Path(cfg.output_dir) / 'report.md'}")
    return results


def report(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="toyland report", description="rebuild reports from evaluation records")
    parser.add_argument("runs", nargs="+", type=Path, help="evaluation run folders (the first is the baseline)")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: the first run)")
    args = parser.parse_args(argv)
    from toyland.eval.report import write_report

    try:
        path = write_report(args.runs, args.out or args.runs[0])
    except FileNotFoundError as exc:
        parser.exit(2, f"toyland report: {exc}\n")
    print(f"report: {path}")


COMMANDS = {"demo": demo, "collect": collect, "train": train, "eval": evaluate}
def study(argv: list[str]) -> None:
    from toyland.study.driver import main as run

    run(argv)


def _paths(argv: list[str], count: int, usage: str) -> list[str]:
    """The positional arguments of a plain command (those without ``=``); exactly ``count`` or the usage."""
    paths = [a for a in argv if "=" not in a]
    if len(paths) != count:
        raise SystemExit(usage)
    return paths


def _dotlist_config(command: str, argv: list[str]) -> dict:
    """configs/<command>.yaml with the ``key=value`` arguments merged in; unknown keys named."""
    from toyland.config_keys import reject_unknown_keys

    base = OmegaConf.load(Path(__file__).parent / "configs" / f"{command}.yaml")
    cfg = OmegaConf.to_container(OmegaConf.merge(base, OmegaConf.from_dotlist([a for a in argv if "=" in a])))
    reject_unknown_keys(cfg, base.keys(), "config")
    return cfg


def augment(argv: list[str]) -> None:
    """``toyland augment SRC key=value ...`` over configs/augment.yaml (OmegaConf dotlist)."""
    from omegaconf.errors import OmegaConfBaseException

    from toyland.data.episode_log import DatasetError
    from toyland.data.rerender import augment as run

    paths = _paths(argv, 1, "usage: toyland augment SRC output_dir=DST [factors.NAME=LEVEL ...] [seed=N] "
                             "[swap_from=PATH] [workers=N]")
    try:
        cfg = _dotlist_config("augment", argv)
        if not cfg["output_dir"]:
            raise ValueError("give output_dir=DST, a new folder for the re-rendered dataset")
        summary = run(paths[0], cfg["output_dir"], cfg["factors"], seed=cfg["seed"], workers=cfg["workers"],
                      swap_from=cfg["swap_from"], checkpoint_every=cfg["checkpoint_every"], repo_id=cfg["repo_id"])
    except (ValueError, DatasetError, OmegaConfBaseException) as exc:  # ReplayError is a ValueError
        print(f"toyland augment: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"dataset {summary.root}: {summary.episodes} episodes re-rendered ({summary.written_now} this run)")
    if not summary.complete:
        print("interrupted: the dataset is incomplete; run the same command again to resume", file=sys.stderr)
        raise SystemExit(130)


def merge(argv: list[str]) -> None:
    """``toyland merge BASE FINETUNED key=value ...`` over configs/merge.yaml (OmegaConf dotlist)."""
    from omegaconf.errors import OmegaConfBaseException

    from toyland.policies.merge import merge_checkpoints

    paths = _paths(argv, 2, "usage: toyland merge BASE FINETUNED output_dir=DIR [alpha=A] [alphas.GROUP=A ...] "
                            "[weights=ema|raw] [statistics=finetuned|base]")
    try:
        cfg = _dotlist_config("merge", argv)
        record = merge_checkpoints(*paths, cfg["output_dir"], alpha=cfg["alpha"], alphas=cfg["alphas"],
                                   weights=cfg["weights"], statistics=cfg["statistics"])
    except (ValueError, OSError, OmegaConfBaseException) as exc:  # IncompatibleCheckpoint is a ValueError
        print(f"toyland merge: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    differed = record["statistics"]["differed"]
    print(f"merged checkpoint {cfg['output_dir']}: alphas {record['alphas']}; statistics and bins of the "
          f"{record['statistics']['kept']} parent" + (f" (they differed in {differed})" if differed else ""))


def export(argv: list[str]) -> None:
    """``toyland export CHECKPOINT DST [weights=ema|model] [robot_type=NAME]``: the checkpoint as a lerobot
    policy folder (``robot_type``: the embodiment a policy told it acts as)."""
    usage = "usage: toyland export CHECKPOINT DST [weights=ema|model] [robot_type=NAME]"
    paths = _paths(argv, 2, usage)
    options = dict(a.split("=", 1) for a in argv if "=" in a)
    unknown = sorted(set(options) - {"weights", "robot_type"})
    if unknown:
        raise SystemExit(f"toyland export: unknown options {unknown}; {usage}")
    from toyland.plugins.export import export_checkpoint

    try:
        dst = export_checkpoint(*paths, weights=options.get("weights", "ema"), robot_type=options.get("robot_type"))
    except (ValueError, FileNotFoundError) as exc:
        print(f"toyland export: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"lerobot policy folder {dst}: run it with lerobot-eval --policy.path={dst} --env.type=toyland ... "
          f"or lerobot-rollout --policy.path={dst} --robot.type=...")


PLAIN_COMMANDS = {"augment": augment, "data": data, "export": export, "merge": merge, "report": report, "study": study}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PLAIN_COMMANDS:
        return PLAIN_COMMANDS[argv[0]](argv[1:])
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        raise SystemExit(2 if argv and argv[0] not in ("-h", "--help") else 0)
    name = argv.pop(0)
    sys.argv = [f"toyland {name}", *argv]
    hydra.main(config_path="configs", config_name=name, version_base="1.3")(COMMANDS[name])()


if __name__ == "__main__":
    main()
