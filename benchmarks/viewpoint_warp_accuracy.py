"""How close E0's viewpoint warp comes to the truth only a simulator has.

A Lift scene's front camera is rendered at its nominal pose; the camera is then moved by the
``camera_viewpoint`` factor's own mechanism (its ``apply``: an azimuth/elevation orbit about the
camera's look-at target) and the scene re-rendered; the nominal frame is warped by the same
(yaw, pitch) = (azimuth, elevation) offset with ``viewpoint_warp``, fixed-depth and depth-aware, and
compared with the re-render. Reported per offset: the mean absolute error in grey levels (0-255, over
RGB) on the re-render's table pixels and on its toy pixels that are not holes of the warp, beside
the error of not warping at all (the nominal frame against the re-render), and the warps' hole
shares, and, free of shading (MuJoCo's headlight moves with the camera, so even a perfect warp
leaves a grey-level error), the share of pixels whose warped segmentation label differs from the
re-render's. Offsets: the outer corners of the factor's train and OOD bands, its ood_3 edges one
axis at a time, and the ood_3 corner mirrored (camera moved down and to the other side).

    .venv/bin/python benchmarks/viewpoint_warp_accuracy.py [--size 96] [--seeds 0 1 2 3 4] [--no-headlight]

``--no-headlight`` turns MuJoCo's headlight off in both renders: it sits on the camera, so its
shading of the table moves with the camera and no warp can reproduce it. Takes a few seconds on one
CPU core.
"""

from __future__ import annotations

import argparse
import math
import time

import mujoco
import numpy as np
import torch

CAMERA = "front"
VARIANTS = {  # column name -> viewpoint_warp config
    "fixed": {},  # yaw about the world vertical, as the factor's azimuth
    "fixed cam-yaw": {"yaw_axis": "camera"},  # yaw about the camera's own up axis (E0's camera frame)
    "depth": {"depth_aware": True},
}


def offsets() -> list[tuple[str, float, float]]:
    """(label, azimuth, elevation) in degrees from the camera_viewpoint factor's bands."""
    from toyland.sim.factors import FACTORS, OOD_LEVELS

    axes = FACTORS.get("camera_viewpoint").axes
    az, el = axes["azimuth"], axes["elevation"]
    rows = [("train", az.train[1], el.train[1])]
    rows += [(level, az.ood[i][1], el.ood[i][1]) for i, level in enumerate(OOD_LEVELS)]
    rows += [("ood_3 az only", az.ood[2][1], 0.0), ("ood_3 el only", 0.0, el.ood[2][1]),
             ("ood_3 mirrored", -az.ood[2][1], -el.ood[2][1])]
    return rows


def render(env, size: int) -> dict:
    """RGB, depth, labels and the table's pixels of the front camera as the scene is now."""
    base = env.unwrapped
    scene = base.scene
    mujoco.mj_forward(scene.model, scene.data)  # camera poses follow the model's cam_pos and cam_quat
    obs = base._observation()  # the env's own rendering and labelling
    ids = base.renderers.render(scene.data, CAMERA, size, size, "segmentation")
    table = (ids[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM)) & (ids[..., 0] == scene.model.geom("table").id)
    return {"rgb": obs[f"observation.images.{CAMERA}"], "depth": obs[f"observation.depth.{CAMERA}"][..., 0],
            "labels": obs[f"observation.segmentation.{CAMERA}"], "table": table}


def warp(nominal: dict, azimuth: float, elevation: float, config: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nominal frame warped by the offset: RGB [H, W, 3] in 0-255, labels, and the mask of pixels with a source."""
    from toyland.augment.viewpoint import ViewpointWarp, ViewpointWarpConfig

    augmentation = ViewpointWarp(ViewpointWarpConfig(max_yaw_deg=abs(azimuth), max_pitch_deg=abs(elevation), **config))
    rgb = torch.from_numpy(nominal["rgb"]).permute(2, 0, 1)[None, None].float() / 255
    batch = {f"observation.images.{CAMERA}": rgb,
             f"observation.depth.{CAMERA}": torch.from_numpy(nominal["depth"])[None, None],
             f"observation.segmentation.{CAMERA}": torch.from_numpy(nominal["labels"])[None, None]}
    augmentation.check(batch)  # the range must be one the camera can show
    (_, model, _), = augmentation.camera_models(batch)
    ok = augmentation.warp(batch, CAMERA, model, torch.tensor([math.radians(azimuth)], dtype=torch.float64),
                           torch.tensor([math.radians(elevation)], dtype=torch.float64))
    return (batch[f"observation.images.{CAMERA}"][0, 0].permute(1, 2, 0).numpy() * 255,
            batch[f"observation.segmentation.{CAMERA}"][0, 0].numpy(), ok[0].numpy())


def error(image: np.ndarray, truth: np.ndarray, where: np.ndarray) -> float:
    if not where.any():
        return float("nan")
    return float(np.abs(image.astype(np.float64) - truth.astype(np.float64))[where].mean())


def measure(size: int, seeds: list[int], headlight: bool = True) -> list[dict]:
    from toyland.sim import make_env
    from toyland.sim.factors import FACTORS
    from toyland.sim.scene import FIRST_OBJECT_LABEL

    factor = FACTORS.get("camera_viewpoint")
    env = make_env({"task": "lift", "image_size": size, "cameras": [f"{CAMERA}:rgb+depth+segmentation"]})
    rows = {label: {"label": label, "azimuth": az, "elevation": el, "sums": {}} for label, az, el in offsets()}
    try:
        for seed in seeds:
            env.reset(seed=seed)
            if not headlight:  # MuJoCo's headlight sits on the camera: its shading moves with it
                env.unwrapped.scene.model.vis.headlight.active = 0
            factor.apply(env.unwrapped, factor.nominal)
            nominal = render(env, size)
            for label, az, el in offsets():
                factor.apply(env.unwrapped, {**factor.nominal, "azimuth": az, "elevation": el})
                truth = render(env, size)
                factor.apply(env.unwrapped, factor.nominal)
                parts = {"table": truth["table"], "toy": truth["labels"] >= FIRST_OBJECT_LABEL}
                cells = {}
                for part, where in parts.items():
                    cells[f"{part} none"] = error(nominal["rgb"], truth["rgb"], where)
                cells["labels none"] = float((nominal["labels"] != truth["labels"]).mean())
                for name, config in VARIANTS.items():
                    image, labels, ok = warp(nominal, az, el, config)
                    cells[f"holes {name}"] = float(1 - ok.mean())
                    cells[f"labels {name}"] = float((labels != truth["labels"])[ok].mean())
                    for part, where in parts.items():
                        cells[f"{part} {name}"] = error(image, truth["rgb"], where & ok)
                sums = rows[label]["sums"]
                for key, value in cells.items():
                    sums.setdefault(key, []).append(value)
    finally:
        env.close()
    for row in rows.values():
        row["mean"] = {k: float(np.nanmean(v)) for k, v in row.pop("sums").items()}
    return list(rows.values())


COLUMNS = {  # table -> columns
    "grey": ["table none", "table fixed", "table fixed cam-yaw", "table depth",
             "toy none", "toy fixed", "toy fixed cam-yaw", "toy depth"],
    "geometry": ["labels none", "labels fixed", "labels fixed cam-yaw", "labels depth",
                 "holes fixed", "holes fixed cam-yaw", "holes depth"],
}


def table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| offset | az, el (deg) | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 2)]
    for r in rows:
        m = r["mean"]
        cells = [f"{m[c]:.0%}" if c.startswith(("holes", "labels")) else f"{m[c]:.1f}" for c in columns]
        lines.append(f"| {r['label']} | {r['azimuth']:+g}, {r['elevation']:+g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--no-headlight", action="store_true",
                        help="render without MuJoCo's headlight, whose shading moves with the camera")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    rows = measure(args.size, args.seeds, headlight=not args.no_headlight)
    print(f"viewpoint_warp against re-renders: Lift, camera {CAMERA} at {args.size}x{args.size}, episode seeds "
          f"{args.seeds} (means over them), headlight {'off' if args.no_headlight else 'on'}; 'none' = the unwarped nominal frame, 'fixed' = plane at d0 with yaw about "
          "the world vertical, 'fixed cam-yaw' = yaw about the camera's up axis, 'depth' = depth-aware\n")
    print("Mean absolute error in grey levels (0-255, over RGB) on the re-render's table and toy pixels "
          "that have a source:\n")
    print(table(rows, COLUMNS["grey"]))
    print("\nGeometry: share of pixels with a source whose warped segmentation label differs from the re-render's "
          "(no shading in it), and share of the warped frame without a source (holes):\n")
    print(table(rows, COLUMNS["geometry"]))
    print(f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
