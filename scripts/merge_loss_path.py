"""The training loss of every merge between two checkpoints, on each task's data: why a merge keeps
or loses a skill (toyland.policies.merge_path).

    python scripts/merge_loss_path.py BASE FINETUNED NAME=DATASET [NAME=DATASET ...] [--out DIR]

BASE and FINETUNED are checkpoint or training-run folders, as `toyland merge` takes them. Writes
DIR/loss_path.json and DIR/loss_path.png (loss against alpha, one line per dataset, log scale), and
prints a table with each curve's barrier (its rise above the straight line between its end points).
"""

import argparse
import json
import sys
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base")
    p.add_argument("finetuned")
    p.add_argument("datasets", nargs="+", metavar="NAME=DATASET")
    p.add_argument("--out", default="loss_path", help="output folder (default ./loss_path)")
    p.add_argument("--batches", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", default="ema", choices=["ema", "raw"])
    p.add_argument("--group", action="append", default=[], metavar="GROUP=ALPHA",
                   help="hold a module group at a fixed alpha while the others sweep (repeatable)")
    a = p.parse_args()
    bad = [d for d in a.datasets + a.group if "=" not in d]
    if bad:
        p.error(f"{bad}: datasets are NAME=PATH and groups GROUP=ALPHA")
    datasets = dict(d.split("=", 1) for d in a.datasets)
    groups = {g: float(v) for g, v in (x.split("=", 1) for x in a.group)}

    from toyland.policies.merge_path import barrier, loss_along_path
    from toyland.study.report import commit as code_commit

    curves = loss_along_path(a.base, a.finetuned, datasets, group_alphas=groups, weights=a.weights,
                             batches=a.batches, batch_size=a.batch_size, seed=a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    commit = code_commit()
    command = "python scripts/merge_loss_path.py " + " ".join(sys.argv[1:])
    (out / "loss_path.json").write_text(json.dumps(
        {"command": command, "commit": commit, "groups": groups,
         "curves": {n: {str(k): v for k, v in c.items()} for n, c in curves.items()}}, indent=1))
    alphas = sorted(next(iter(curves.values())))
    print("dataset".ljust(16) + "".join(f"{x:>9.3f}" for x in alphas) + "  barrier")
    for name, c in curves.items():
        print(name.ljust(16) + "".join(f"{c[x]:>9.4f}" for x in alphas) + f"  {barrier(c):.4f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, c in curves.items():
        ax.plot(alphas, [c[x] for x in alphas], marker="o", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("alpha (0 base, 1 fine-tuned)")
    ax.set_ylabel("training loss")
    ax.legend()
    ax.set_title(f"loss along the merge path ({commit})", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "loss_path.png", dpi=120)
    print(f"wrote {out / 'loss_path.json'} and {out / 'loss_path.png'}")


if __name__ == "__main__":
    main()
