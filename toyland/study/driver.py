"""``toyland study NAME``: one experiment from a config, run to its report.

A study (``configs/study/NAME.yaml``) names

- ``datasets``: demonstrations to collect, each a ``toyland collect`` (Hydra overrides of
  ``configs/collect.yaml``: env, scenario, DART noise, ...) with its episode count and first seed,
  or a ``toyland augment`` of an earlier one (``from: NAME`` with appearance ``factors``, a ``seed``
  and ``swap_from: NAME``): its episodes re-rendered, the same states and actions, new images;
- ``arms``: policies to train, each a ``toyland train`` (overrides of ``configs/train.yaml``) on
  some of those datasets, for several training seeds; an arm trains and is evaluated in the env its
  first dataset was collected in;
- ``suites``: evaluations of every trained arm and seed (``configs/suite/`` by name, or inline), or
  of the arms a suite's ``arms`` lists (a suite that needs inputs only some arms take).

Everything lives under ``outputs/studies/NAME/`` in folders named for what they hold:
``data/<dataset>``, ``arms/<arm>/seed_<k>`` (the training run) and ``arms/<arm>/seed_<k>/eval/<suite>``.
The driver runs what is missing and skips what is done: collection, training and evaluation each
resume from what they wrote, so a killed study continues where it stopped. A part whose config
changed since it was run is refused rather than mixed with the old one. Then ``report.md``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from toyland.config_keys import reject_unknown_keys
from toyland.files import write_json_atomic

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
STUDY_KEYS = {"description", "datasets", "arms", "suites", "workers", "launcher", "ray_address", "cpus_per_arm",
              "gpus_per_arm", "envs_per_worker", "seed_start", "series"}
SERIES_KEYS = {"arms", "cells", "metric", "suite", "x_label", "x_scale"}
X_SCALES = ("linear", "log")  # matplotlib axis scales a series may ask for
DATASET_KEYS = {"overrides", "episodes", "seed"}
DERIVED_KEYS = {"from", "factors", "seed", "swap_from"}  # a re-rendered dataset (toyland augment)
ARM_KEYS = {"data", "overrides", "seeds", "description", "init_from"}
MERGE_ARM_KEYS = {"merge", "seeds", "description"}  # an arm made by merging two trained arms, not by training
MERGE_KEYS = {"base", "finetuned", "alpha", "alphas", "weights", "statistics"}
SUITE_KEYS = {"suite", "episodes", "env", "arms", "contrasts"}


class StudyConfigError(ValueError):
    pass


@dataclass
class Study:
    name: str
    cfg: dict
    out: Path
    command: str = ""
    only: list[str] | None = None
    log: list[str] = field(default_factory=list)

    # --- config ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, name: str, overrides: list[str] | None = None, out: str | Path | None = None,
             only: list[str] | None = None) -> "Study":
        path = Path(name) if name.endswith(".yaml") else CONFIG_DIR / "study" / f"{name}.yaml"
        if not path.is_file():
            raise StudyConfigError(f"no study {name!r}; studies: {', '.join(study_names())} (configs/study/), "
                                   "or a path to a study .yaml")
        cfg = OmegaConf.merge(OmegaConf.create(yaml.safe_load(path.read_text())),
                              OmegaConf.from_dotlist(list(overrides or [])))
        cfg = OmegaConf.to_container(cfg, resolve=True)
        study = cls(path.stem, cfg, Path(out) if out else Path("outputs") / "studies" / path.stem,
                    command=" ".join(["toyland study", name, *(overrides or []),
                                      *(["--only", ",".join(only)] if only else [])]), only=only)
        study.validate()
        return study

    def validate(self) -> None:
        cfg = self.cfg
        reject_unknown_keys(cfg, STUDY_KEYS, f"study '{self.name}'")
        from toyland.parallel import check_launcher

        try:
            check_launcher(cfg.get("launcher", "local"), cfg.get("ray_address"))
        except ValueError as exc:
            raise StudyConfigError(f"study '{self.name}': {exc}") from None
        for key in ("datasets", "arms", "suites"):
            if not cfg.get(key):
                raise StudyConfigError(f"study '{self.name}' needs at least one entry under `{key}`")
        earlier: list[str] = []
        for name, d in cfg["datasets"].items():
            derived = "from" in d
            reject_unknown_keys(d, DERIVED_KEYS if derived else DATASET_KEYS, f"study '{self.name}' dataset '{name}'")
            for key in ("from", "swap_from") if derived else ():
                if d.get(key) is not None and d[key] not in earlier:
                    raise StudyConfigError(f"dataset '{name}': {key}: {d[key]!r} is not a dataset listed before it "
                                           f"({', '.join(earlier) or 'none'})")
            earlier.append(name)
        before: list[str] = []
        for name, arm in cfg["arms"].items():
            where = f"study '{self.name}' arm '{name}'"
            reject_unknown_keys(arm, MERGE_ARM_KEYS if "merge" in arm else ARM_KEYS, where)
            if not arm.get("seeds"):
                raise StudyConfigError(f"arm '{name}' needs `seeds`, a list of training seeds")
            parents = []
            if "merge" in arm:
                reject_unknown_keys(arm["merge"], MERGE_KEYS, f"{where} `merge`")
                self.validate_merge(where, arm["merge"])
                parents = [arm["merge"].get("base"), arm["merge"].get("finetuned")]
            elif arm.get("init_from") is not None:
                parents = [arm["init_from"]]
            for parent in parents:  # its parents' runs of the same seeds come first
                if parent not in before:
                    raise StudyConfigError(f"{where} builds on {parent!r}, which is not an arm listed before it "
                                           f"({', '.join(before) or 'none'})")
                if "merge" in cfg["arms"][parent]:
                    raise StudyConfigError(f"{where} builds on {parent!r}, a merged arm, which has no training run: "
                                           "build on the arms it merges")
                missing = sorted(set(arm["seeds"]) - set(cfg["arms"][parent]["seeds"]))
                if missing:
                    raise StudyConfigError(f"{where}: seeds {missing} are not seeds of its parent arm '{parent}'")
            before.append(name)
            unknown = [d for d in self.arm_data(name) if d not in cfg["datasets"]]
            if unknown:
                raise StudyConfigError(f"arm '{name}' trains on {unknown}, not datasets of this study "
                                       f"({', '.join(cfg['datasets'])})")
        for name, s in cfg["suites"].items():
            reject_unknown_keys(s, SUITE_KEYS, f"study '{self.name}' suite '{name}'")
            unknown = [a for a in (s.get("arms") or []) if a not in cfg["arms"]]
            if unknown or ("arms" in s and not s["arms"]):
                raise StudyConfigError(f"suite '{name}': arms {unknown or '[]'} are not arms of this study "
                                       f"({', '.join(cfg['arms'])}); leave `arms` out to evaluate every arm")
            if s.get("contrasts") is not None:
                self.validate_contrasts(name, s["contrasts"])
        for name, spec in (cfg.get("series") or {}).items():
            self.validate_series(name, spec)
        for arm in self.only or []:
            if arm not in cfg["arms"]:
                raise StudyConfigError(f"--only {arm}: no such arm; arms: {', '.join(cfg['arms'])}")

    @staticmethod
    def validate_merge(where: str, spec: dict) -> None:
        """A merged arm's settings, checked when the study loads rather than after its parents trained
        (the groups a policy type has are checked at the merge itself)."""
        from toyland.policies.merge import GROUPS, check_alpha_values, check_options

        groups = sorted({g for table in GROUPS.values() for g in table})
        try:
            check_alpha_values(spec.get("alpha", 0.5), spec.get("alphas") or {})
            check_options(spec.get("weights", "ema"), spec.get("statistics", "finetuned"))
        except ValueError as exc:
            raise StudyConfigError(f"{where} `merge`: {exc}") from None
        unknown = sorted(set(spec.get("alphas") or {}) - set(groups))
        if unknown:
            raise StudyConfigError(f"{where} `merge`: alphas for unknown groups {unknown}; groups: {', '.join(groups)}")

    def validate_contrasts(self, suite: str, contrasts) -> None:
        """``contrasts``: cell -> the cell it is paired against within each arm (e.g. a noisy cell against
        its clean twin): a cell of the suite, or ``OTHER_SUITE/CELL`` (every suite runs the same episode
        seeds, so episode i of both cells is the same scene)."""
        from toyland.eval.suite import build_suite

        where = f"suite '{suite}' `contrasts`"
        if not isinstance(contrasts, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in contrasts.items()):
            raise StudyConfigError(f"{where}: give a mapping of cell -> reference cell, e.g. {{noise_full: id}}")
        for cell, reference in contrasts.items():
            for name, (in_suite, c) in ((cell, (suite, cell)), (reference, split_reference(suite, reference))):
                if in_suite not in self.cfg["suites"]:
                    raise StudyConfigError(f"{where}: {name!r} names suite '{in_suite}', which this study does not "
                                           f"have ({', '.join(self.cfg['suites'])})")
                names = build_suite(self.suite_config(in_suite)[0]).names()
                if c not in names:
                    raise StudyConfigError(f"{where}: cells ['{c}'] are not in the suite '{in_suite}' ({', '.join(names)})")

    def validate_series(self, name: str, spec: dict) -> None:
        from toyland.study.report import METRICS

        where = f"study '{self.name}' series '{name}'"
        reject_unknown_keys(spec, SERIES_KEYS, where)
        missing = [k for k in ("arms", "cells", "metric", "suite") if not spec.get(k)]
        if missing:
            raise StudyConfigError(f"{where} needs {missing} (arms: arm -> x value, cells: a list, metric: "
                                   f"{' | '.join(METRICS)}, suite: one of {', '.join(self.cfg['suites'])})")
        if spec["metric"] not in METRICS:
            raise StudyConfigError(f"{where}: metric {spec['metric']!r}; metrics: {', '.join(METRICS)}")
        if spec["suite"] not in self.cfg["suites"]:
            raise StudyConfigError(f"{where}: suite {spec['suite']!r} is not one of this study's ({', '.join(self.cfg['suites'])})")
        unknown = [a for a in spec["arms"] if a not in self.cfg["arms"]]
        if unknown:
            raise StudyConfigError(f"{where}: arms {unknown} are not arms of this study")
        unevaluated = [a for a in spec["arms"] if spec["suite"] not in self.suites_of(a)]
        if unevaluated:
            raise StudyConfigError(f"{where}: suite '{spec['suite']}' does not evaluate arms {unevaluated} (its `arms`)")
        if not all(isinstance(x, (int, float)) for x in spec["arms"].values()):
            raise StudyConfigError(f"{where}: each arm maps to a number (its position on the x axis)")
        scale = spec.get("x_scale", "linear")
        if scale not in X_SCALES:
            raise StudyConfigError(f"{where}: x_scale {scale!r}; give one of {', '.join(X_SCALES)}")
        if scale == "log" and not all(x > 0 for x in spec["arms"].values()):
            raise StudyConfigError(f"{where}: x_scale log needs every arm's x above 0")
        from toyland.eval.suite import build_suite

        names = build_suite(self.suite_config(spec["suite"])[0]).names()
        absent = [c for c in spec["cells"] if c not in names]
        if absent:
            raise StudyConfigError(f"{where}: cells {absent} are not in suite '{spec['suite']}' ({', '.join(names)})")

    def arm_data(self, arm: str) -> dict[str, float]:
        """The datasets an arm trains on (a merged arm: its fine-tuned parent's)."""
        if "merge" in self.cfg["arms"][arm]:
            return self.arm_data(self.cfg["arms"][arm]["merge"]["finetuned"])
        data = self.cfg["arms"][arm].get("data")
        if isinstance(data, str):
            data = [data]
        if not data:
            raise StudyConfigError(f"arm '{arm}' needs `data`: the datasets it trains on")
        return {d: 1.0 for d in data} if isinstance(data, list) else {k: float(v) for k, v in data.items()}

    @property
    def arms(self) -> list[str]:
        return [a for a in self.cfg["arms"] if not self.only or a in self.only]

    def run_dir(self, arm: str, seed: int) -> Path:
        return self.out / "arms" / arm / f"seed_{seed}"

    def actor_dir(self, arm: str, seed: int) -> Path:
        """What an arm's evaluation acts with: its training run, or a merged arm's checkpoint."""
        return self.run_dir(arm, seed) / "merged" if "merge" in self.cfg["arms"][arm] else self.run_dir(arm, seed)

    def data_dir(self, dataset: str) -> Path:
        return self.out / "data" / dataset

    # --- the parts ------------------------------------------------------------------------------
    def collect_config(self, dataset: str) -> dict:
        from hydra import compose, initialize_config_module

        d = self.cfg["datasets"][dataset]
        with initialize_config_module("toyland.configs", version_base="1.3"):
            cfg = compose("collect", overrides=[*self.launch_overrides(), *d.get("overrides", []),
                                                f"episodes={int(d.get('episodes', 100))}", f"seed={int(d.get('seed', 0))}",
                                                f"output_dir={self.data_dir(dataset)}"])
        return cfg

    def launch_overrides(self) -> list[str]:
        """Where collection runs (it changes no episode): the study's workers, launcher and Ray address."""
        address = self.cfg.get("ray_address")
        return [f"workers={int(self.cfg.get('workers', 2))}", f"launcher={self.cfg.get('launcher', 'local')}",
                *([f"ray_address={address}"] if address else [])]

    def needed_datasets(self) -> list[str]:
        """What the selected arms train on and what those are re-rendered from or lent colours by, in config
        order (a source is listed before what is made from it)."""
        needed = {d for arm in self.arms for d in self.arm_data(arm)}
        for name in reversed(list(self.cfg["datasets"])):  # later ones first: their sources are added in time
            spec = self.cfg["datasets"][name]
            if name in needed:
                needed.update(spec[key] for key in ("from", "swap_from") if spec.get(key))
        return [d for d in self.cfg["datasets"] if d in needed]

    def source_dataset(self, dataset: str) -> str:
        """The collected dataset a re-rendered one comes from (itself for a collected one)."""
        while "from" in self.cfg["datasets"][dataset]:
            dataset = self.cfg["datasets"][dataset]["from"]
        return dataset

    def dataset_env(self, dataset: str) -> dict:
        from toyland.cli import env_config

        return env_config(self.collect_config(self.source_dataset(dataset)))

    def train_config(self, arm: str, seed: int) -> dict:
        """The arm's ``toyland train`` config (a merged arm: its fine-tuned parent's, whose env it acts in)."""
        from hydra import compose, initialize_config_module

        spec = self.cfg["arms"][arm]
        if "merge" in spec:
            return self.train_config(spec["merge"]["finetuned"], seed)
        if spec.get("init_from") is not None:  # before the arm's own overrides, which may set finetune.*
            spec = {**spec, "overrides": [f"finetune.from='{self.run_dir(spec['init_from'], seed)}'",
                                          *spec.get("overrides", [])]}
        sources = ",".join(f"{{name: {d}, path: '{self.data_dir(d)}', weight: {w}}}" for d, w in self.arm_data(arm).items())
        with initialize_config_module("toyland.configs", version_base="1.3"):
            cfg = compose("train", overrides=[*spec.get("overrides", []), f"seed={seed}",
                                              f"output_dir={self.run_dir(arm, seed)}", f"data.sources=[{sources}]",
                                              "eval.final_episodes=0", "resume=true"])
        cfg = OmegaConf.to_container(cfg, resolve=True)
        cfg.pop("experiment", None)
        cfg["env"] = self.dataset_env(next(iter(self.arm_data(arm))))  # trained and evaluated where its data came from
        return cfg

    def suites_of(self, arm: str) -> list[str]:
        """The suites that evaluate ``arm``: every suite, or those whose ``arms`` name it."""
        return [s for s, spec in self.cfg["suites"].items() if "arms" not in spec or arm in spec["arms"]]

    def suite_config(self, suite: str) -> tuple[dict, int, dict]:
        spec = self.cfg["suites"][suite]
        cells = spec.get("suite", "id_only")
        if isinstance(cells, str):
            path = CONFIG_DIR / "suite" / f"{cells}.yaml"
            if not path.is_file():
                names = sorted(p.stem for p in (CONFIG_DIR / "suite").glob("*.yaml"))
                raise StudyConfigError(f"suite '{suite}': no suite config {cells!r}; valid: {', '.join(names)}")
            cells = yaml.safe_load(path.read_text()) or {}
        cells = {k: v for k, v in cells.items() if k != "description"}
        return cells, int(spec.get("episodes", 100)), dict(spec.get("env") or {})

    def dataset_episodes(self, dataset: str) -> int:
        from toyland.data.episode_log import read_episode_log

        return len(read_episode_log(self.data_dir(dataset)).episodes)

    def collect(self, dataset: str) -> None:
        from toyland.cli import collect as collect_command

        self.say(f"dataset {dataset}: {self.data_dir(dataset)}")
        spec = self.cfg["datasets"][dataset]
        if "from" not in spec:
            collect_command(self.collect_config(dataset))
            return
        from toyland.data.rerender import augment

        swap = spec.get("swap_from")
        summary = augment(self.data_dir(spec["from"]), self.data_dir(dataset), dict(spec.get("factors") or {}),
                          seed=int(spec.get("seed", 0)), workers=int(self.cfg.get("workers", 2)),
                          swap_from=self.data_dir(swap) if swap else None)
        if not summary.complete:
            raise KeyboardInterrupt(f"toyland augment of {dataset} was interrupted; run the study again to resume")

    def trained(self, arm: str, seed: int) -> bool:
        from toyland.train.state import latest_checkpoint

        last = latest_checkpoint(self.run_dir(arm, seed))
        return last is not None and int(last.name.split("_")[-1]) >= int(self.train_config(arm, seed)["steps"])

    def check_parents(self, arm: str, seed: int) -> None:
        for parent in self.parents(arm):
            if not self.trained(parent, seed):
                raise StudyConfigError(f"arm {arm} seed {seed} builds on arm {parent} seed {seed}, which has not finished "
                                       f"training: run it first (--only {parent})")

    def merge(self, arm: str, seed: int) -> None:
        from toyland.policies.merge import merge_checkpoints

        spec = dict(self.cfg["arms"][arm]["merge"])
        out = self.actor_dir(arm, seed)
        base, finetuned = self.run_dir(spec.pop("base"), seed), self.run_dir(spec.pop("finetuned"), seed)
        self.say(f"arm {arm} seed {seed}: merging into {out}")
        # written again each run: the same parents and alphas give the same tensors, and an evaluation
        # of other weights is refused by its weights' sha256
        merge_checkpoints(base, finetuned, out, alpha=float(spec.get("alpha", 0.5)), alphas=spec.get("alphas") or {},
                          weights=spec.get("weights", "ema"), statistics=spec.get("statistics", "finetuned"))

    def train(self, arm: str, seed: int) -> None:
        from toyland.train.state import latest_checkpoint
        from toyland.train.trainer import train

        self.check_parents(arm, seed)
        if "merge" in self.cfg["arms"][arm]:
            return self.merge(arm, seed)
        cfg = self.train_config(arm, seed)
        run = self.run_dir(arm, seed)
        stored = run / "config.json"
        if stored.is_file():
            old, now = added_since(current_form(json.loads(stored.read_text()), run), cfg)
            changed = sorted(k for k in set(old) | set(now) if json.dumps(old.get(k), sort_keys=True, default=str)
                             != json.dumps(now.get(k), sort_keys=True, default=str))
            if changed:
                raise StudyConfigError(f"{run} was trained with a different config ({changed} differ); delete that "
                                       "folder to train it again, or run the study into a new --out")
        data = {d: self.dataset_episodes(d) for d in self.arm_data(arm)}
        if (run / "data.json").is_file() and json.loads((run / "data.json").read_text()) != data:
            raise StudyConfigError(f"{run} was trained on other datasets ({json.loads((run / 'data.json').read_text())}, "
                                   f"now {data}); delete that folder to train it again, or run the study into a new --out")
        run.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run / "data.json", data)
        last = latest_checkpoint(run)
        if last is not None and int(last.name.split("_")[-1]) >= int(cfg["steps"]):
            self.say(f"arm {arm} seed {seed}: trained ({last})")
            return
        self.say(f"arm {arm} seed {seed}: training {cfg['steps']} steps into {run}")
        train(cfg)

    def evaluate(self, arm: str, seed: int, suite: str) -> dict:
        from toyland.eval.harness import EVAL_SEED_START, check_same_run, evaluate_suite, run_record
        from toyland.eval.records import RESULTS

        cells, episodes, env_overrides = self.suite_config(suite)
        out = self.run_dir(arm, seed) / "eval" / suite
        env = {**self.train_config(arm, seed)["env"], **env_overrides}
        seed_start = int(self.cfg.get("seed_start", EVAL_SEED_START))
        actor = str(self.actor_dir(arm, seed))
        try:  # the same weights, env, cells and seeds, or a clear refusal (never old records under new settings)
            check_same_run(out, run_record(actor, env, cells, episodes, seed_start,
                                           envs_per_worker=int(self.cfg.get("envs_per_worker", 1))))
        except ValueError as exc:
            raise StudyConfigError(f"{exc} (rename the suite, delete that folder, or run the study into a new --out)")
        if (out / RESULTS).is_file():
            results = json.loads((out / RESULTS).read_text())
            if results.get("episodes_per_cell") == episodes and all(c["episodes"] == episodes
                                                                     for c in results["cells"].values()):
                return results
        self.say(f"arm {arm} seed {seed}: suite {suite}, {episodes} episodes per cell")
        return evaluate_suite(actor, env, cells, out, episodes=episodes, seed_start=seed_start,
                              workers=int(self.cfg.get("workers", 2)), progress=True,
                              launcher=self.cfg.get("launcher", "local"), ray_address=self.cfg.get("ray_address"),
                              envs_per_worker=int(self.cfg.get("envs_per_worker", 1)))

    def run(self) -> Path:
        """Collects, trains and evaluates what is missing, then writes the report."""
        from toyland.study.report import write_study_report

        self.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.out / "study.json", {"name": self.name, "config": self.cfg})
        for dataset in self.needed_datasets():
            self._timed(f"collect {dataset}", lambda: self.collect(dataset))
        units = [(arm, seed) for arm in self.arms for seed in self.cfg["arms"][arm]["seeds"]]
        if self.cfg.get("launcher", "local") == "ray":
            self._run_units_on_ray(units)
        else:
            for arm, seed in units:
                self.run_unit(arm, seed, lambda what, seconds: self._add_timing({what: seconds}))
        return write_study_report(self)

    def run_unit(self, arm: str, seed: int, timed=None) -> dict:
        """Trains one arm's seed and evaluates it on every suite; the wall time of each part, also
        handed to ``timed(what, seconds)`` as each part ends (a killed study keeps what finished)."""
        timing = {}
        for what, work in [(f"train {arm} {seed}", lambda: self.train(arm, seed)),
                           *((f"eval {arm} {seed} {suite}", lambda suite=suite: self.evaluate(arm, seed, suite))
                             for suite in self.suites_of(arm))]:
            t0 = time.perf_counter()
            work()
            timing[what] = time.perf_counter() - t0
            if timed is not None:
                timed(what, timing[what])
        return timing

    def parents(self, arm: str) -> list[str]:
        spec = self.cfg["arms"][arm]
        if "merge" in spec:
            return [spec["merge"]["base"], spec["merge"]["finetuned"]]
        return [spec["init_from"]] if spec.get("init_from") is not None else []

    def _run_units_on_ray(self, units: list[tuple[str, int]]) -> None:
        """Each arm's seed as a Ray task of ``cpus_per_arm`` CPUs (training and its evaluations on local
        workers inside it), started once the arms it builds on have finished. The study folder must
        be on a file system every node shares."""
        import ray

        from toyland.parallel import start_ray

        started = start_ray(self.cfg.get("ray_address"))  # a local instance: every CPU of this machine
        try:
            cpus = int(self.cfg.get("cpus_per_arm") or self.cfg.get("workers", 2))
            gpus = float(self.cfg.get("gpus_per_arm") or 0)
            nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
            if not any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
                raise StudyConfigError(f"no node of the Ray cluster has cpus_per_arm={cpus} CPUs and gpus_per_arm={gpus} "
                                       f"GPUs (nodes: {[(n.get('CPU', 0), n.get('GPU', 0)) for n in nodes]}); lower them")
            # Ray shows a task only the GPUs it asked for: without gpus_per_arm, device=auto trains on CPU
            task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_unit_task)  # a rerun resumes anyway
            inside = {**self.cfg, "launcher": "local", "ray_address": None, "workers": cpus}
            refs: dict[tuple[str, int], object] = {}
            for arm, seed in units:  # arms come after the arms they build on (validate checks the order)
                parents = [refs[(p, seed)] for p in self.parents(arm) if (p, seed) in refs]
                refs[(arm, seed)] = task.remote(self.name, inside, str(self.out), self.command, arm, seed, *parents)
                self.say(f"arm {arm} seed {seed}: submitted to Ray ({cpus} CPUs)")
            pending = {ref: unit for unit, ref in refs.items()}
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                arm, seed = pending.pop(ref)
                try:
                    self._add_timing(ray.get(ref))
                except ray.exceptions.RayTaskError as exc:
                    raise exc.as_instanceof_cause() from None
                self.say(f"arm {arm} seed {seed}: done on Ray")
        finally:
            if started:
                ray.shutdown()

    # --- helpers --------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        print(f"[study {self.name}] {text}", flush=True)

    def _timed(self, what: str, work) -> None:
        """Runs ``work`` and adds its wall time to ``timing.json`` (a resumed study adds the rest)."""
        t0 = time.perf_counter()
        work()
        self._add_timing({what: time.perf_counter() - t0})

    def _add_timing(self, seconds: dict) -> None:
        from toyland.data.writer import WriteLock

        path = self.out / "timing.json"
        # Two `--only` runs of one study may finish units at once: the lock keeps either's entry from being lost.
        with WriteLock(path):
            timing = json.loads(path.read_text()) if path.is_file() else {}
            for what, s in seconds.items():
                timing[what] = round(timing.get(what, 0.0) + s, 1)
            write_json_atomic(path, timing)


def split_reference(suite: str, reference: str) -> tuple[str, str]:
    """A contrast's reference, ``CELL`` of ``suite`` or ``OTHER_SUITE/CELL``, as (suite, cell)."""
    other, _, cell = reference.rpartition("/")
    return (other or suite), cell


def _unit_task(name: str, cfg: dict, out: str, command: str, arm: str, seed: int, *parents) -> dict:
    """A Ray task: one arm's seed of a study (``parents``: the finished tasks it builds on)."""
    return Study(name, cfg, Path(out), command=command).run_unit(arm, seed)


def current_form(cfg: dict, run: Path) -> dict:
    """A stored train config with its policy options brought to today's checkpoint format: options
    removed while off are dropped and training-only ones that moved are gone, as a checkpoint of that
    run would load (``toyland.policies.checkpoint.MIGRATIONS``); one removed while on is refused."""
    from toyland.policies.checkpoint import IncompatibleCheckpoint, migrate

    policy = dict(cfg.get("policy") or {})
    if "name" not in policy:
        return cfg
    name = policy.pop("name")
    try:  # the migrations are idempotent on a newer config, so the whole chain applies to any stored one
        migrated = migrate({"format_version": 1, "name": name, "config": policy}, str(run))["config"]
    except IncompatibleCheckpoint as exc:
        raise StudyConfigError(f"{run} was trained with a policy option toyland no longer has: {exc}") from None
    return {**cfg, "policy": {"name": name, **{k: v for k, v in migrated.items() if k in policy}}}  # no added defaults


def added_since(old: dict, cfg: dict) -> tuple[dict, dict]:
    """A stored train config and today's, with what toyland added since the run filled in as it was
    then: env options at their defaults (both envs resolved), and train keys the stored config lacks
    at today's default when today's config has that default (a run from before ``finetune`` existed
    was not a fine-tune; an arm that now fine-tunes differs from it)."""
    from hydra import compose, initialize_config_module

    from toyland.sim import resolved_env_config

    old, cfg = dict(old), dict(cfg)
    if isinstance(old.get("env"), dict) and isinstance(cfg.get("env"), dict):
        old["env"], cfg["env"] = resolved_env_config(old["env"]), resolved_env_config(cfg["env"])
    if json.dumps(old, sort_keys=True, default=str) != json.dumps(cfg, sort_keys=True, default=str):
        with initialize_config_module("toyland.configs", version_base="1.3"):
            defaults = OmegaConf.to_container(compose("train", overrides=["output_dir=."]), resolve=True)
        defaults["policy"] = policy_defaults((cfg.get("policy") or {}).get("name"), defaults.get("policy"))
        old = _fill_defaults(old, cfg, defaults)
    return old, cfg


def policy_defaults(name: str | None, fallback: dict | None) -> dict | None:
    """The defaults of the named policy's own config class (train.yaml's default policy is another's)."""
    import dataclasses

    from toyland.policies import POLICIES

    if name not in POLICIES.names():
        return fallback
    config = POLICIES.get(name).config_class()
    return {"name": name, **json.loads(json.dumps(dataclasses.asdict(config), default=str))}


def _fill_defaults(old: dict, cfg: dict, defaults: dict) -> dict:
    """``old`` with the keys it lacks (at any depth) taken from ``cfg`` where ``cfg`` holds the default."""
    same = lambda a, b: json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)
    old = dict(old)
    for key, value in cfg.items():
        default = defaults.get(key) if isinstance(defaults, dict) else None
        if key not in old:
            if isinstance(defaults, dict) and key in defaults and same(default, value):
                old[key] = value
        elif isinstance(value, dict) and isinstance(old[key], dict) and isinstance(default, dict) and key != "env":
            old[key] = _fill_defaults(old[key], value, default)
    return old


def study_names() -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / "study").glob("*.yaml"))


def main(argv: list[str]) -> None:
    """``toyland study NAME [key=value ...] [--out DIR] [--only ARM[,ARM]] [--report-only]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="toyland study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", help=f"a study of configs/study/ ({', '.join(study_names())}) or a .yaml path")
    parser.add_argument("overrides", nargs="*", help="study config overrides, e.g. arms.diffusion.seeds=[0] "
                                                     "suites.id.episodes=20")
    parser.add_argument("--out", default=None, help="study folder (default outputs/studies/NAME)")
    parser.add_argument("--only", default=None, help="comma-separated arms to run (the report covers what exists)")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from what has finished")
    args = parser.parse_intermixed_args(argv)  # options before, between or after the overrides
    if not args.name:
        for name in study_names():
            description = (yaml.safe_load((CONFIG_DIR / "study" / f"{name}.yaml").read_text()) or {}).get("description", "")
            print(f"{name:16s} {description.strip().splitlines()[0] if description else ''}")
        return
    try:
        study = Study.load(args.name, args.overrides, args.out, args.only.split(",") if args.only else None)
    except StudyConfigError as exc:
        parser.exit(2, f"toyland study: {exc}\n")
    if args.report_only:
        from toyland.study.report import write_study_report

        path = write_study_report(study)
    else:
        path = study.run()
    print(f"report: {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
