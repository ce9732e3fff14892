"""Toy generator and toy sets: determinism, validity, connectivity, physics from geometry, splits."""

import mujoco
import numpy as np
import pytest

from toyland.sim.toy_sets import ToySet, get_toy_set, toy_set_names
from toyland.sim.toys import KINDS, MAX_PARTS, PartSpec, ToyGenerator, ToySpec, add_toy, part_geoms

TOYS_PER_SET = 100


def compile_toy(toy: ToySpec) -> mujoco.MjModel:
    spec = mujoco.MjSpec()
    spec.compiler.degree = False
    add_toy(spec.worldbody, toy, "toy")
    return spec.compile()


def geom_volume(gtype: int, size: np.ndarray) -> float:
    if gtype == mujoco.mjtGeom.mjGEOM_SPHERE:
        return 4 / 3 * np.pi * size[0] ** 3
    if gtype == mujoco.mjtGeom.mjGEOM_BOX:
        return 8 * size[0] * size[1] * size[2]
    if gtype == mujoco.mjtGeom.mjGEOM_CYLINDER:
        return np.pi * size[0] ** 2 * 2 * size[1]
    if gtype == mujoco.mjtGeom.mjGEOM_CAPSULE:
        return np.pi * size[0] ** 2 * 2 * size[1] + 4 / 3 * np.pi * size[0] ** 3
    raise AssertionError(f"unexpected geom type {gtype}")


def test_same_seed_same_toy_and_different_seeds_differ():
    gen = ToyGenerator()
    assert gen.generate(7).to_dict() == gen.generate(7).to_dict()
    dicts = [gen.generate(s).to_dict() for s in range(20)]
    assert len({repr(d) for d in dicts}) == 20


def test_dict_round_trip_is_exact():
    toy = ToyGenerator().generate(3)
    assert ToySpec.from_dict(toy.to_dict()) == toy


PROCEDURAL_SETS = [n for n in toy_set_names() if isinstance(get_toy_set(n), ToySet)]


@pytest.mark.parametrize("set_name", PROCEDURAL_SETS)
def test_every_toy_set_builds_valid_connected_single_body_toys(set_name):
    toy_set = get_toy_set(set_name)
    gen = toy_set.generator
    for seed in range(toy_set.seeds[0], toy_set.seeds[0] + TOYS_PER_SET):
        toy = toy_set.toy(seed)
        assert 1 <= len(toy.parts) <= MAX_PARTS and set(toy.kinds) <= set(KINDS)
        assert gen.num_parts[0] <= len(toy.parts) <= gen.num_parts[1]
        top = max(toy.kinds.count(k) for k in toy.kinds)
        assert gen.min_same_kind <= top <= gen.max_same_kind
        model = compile_toy(toy)
        # one rigid body (world + toy) with one free joint
        assert model.nbody == 2 and model.njnt == 1 and model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE
        assert model.ngeom == sum(len(part_geoms(p)) for p in toy.parts)
        # mass from geometry: MuJoCo integrates each geom's volume at the toy's density
        volume = sum(geom_volume(model.geom_type[g], model.geom_size[g]) for g in range(model.ngeom))
        assert model.body_mass[1] == pytest.approx(volume * toy.density, rel=1e-6)
        assert np.all(model.body_inertia[1] > 0)
        # connected: every part touches or overlaps some other part (graph over parts is connected)
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        owners = [i for i, p in enumerate(toy.parts) for _ in part_geoms(p)]
        linked = {0}
        frontier = [0]
        while frontier:
            a = frontier.pop()
            for b in range(len(toy.parts)):
                if b in linked:
                    continue
                ga = [g for g in range(model.ngeom) if owners[g] == a]
                gb = [g for g in range(model.ngeom) if owners[g] == b]
                dist = min(mujoco.mj_geomDistance(model, data, i, j, 0.05, None) for i in ga for j in gb)
                if dist <= 1e-6:
                    linked.add(b)
                    frontier.append(b)
        assert linked == set(range(len(toy.parts))), f"{set_name} toy {seed} falls apart"


def test_held_out_sets_are_disjoint_from_train():
    train = get_toy_set("train")
    for name in ("heldout", "heldout_five_parts", "heldout_monokind"):
        (a, b), (c, d) = train.seeds, get_toy_set(name).seeds
        assert b <= c or d <= a, f"{name} seeds overlap train"
        with pytest.raises(ValueError, match="not in toy set"):
            train.toy(c)
    # composition hold-outs: no train toy can have their part count or kind multiplicity
    assert train.generator.num_parts[1] < 5 <= get_toy_set("heldout_five_parts").generator.num_parts[0]
    assert train.generator.max_same_kind < get_toy_set("heldout_monokind").generator.min_same_kind
    mono = get_toy_set("heldout_monokind")
    for seed in range(mono.seeds[0], mono.seeds[0] + 10):
        kinds = mono.toy(seed).kinds
        assert max(kinds.count(k) for k in kinds) > train.generator.max_same_kind


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: PartSpec("sphere", (0.5,)), "radius"),
        (lambda: PartSpec("cuboid", (0.02, 0.02, 0.0001)), "half_z"),
        (lambda: PartSpec("ring", (0.03, 0.05)), "tube_radius"),
        (lambda: PartSpec("cuboid", (0.05, 0.05, 0.05)), "grasp"),
        (lambda: PartSpec("pyramid", (0.02,)), "valid kinds"),
        (lambda: ToySpec(parts=tuple(PartSpec("sphere", (0.02,)) for _ in range(6))), "parts"),
        (lambda: ToySpec(parts=(PartSpec("sphere", (0.02,)),), density=1e5), "density"),
        (lambda: ToyGenerator(num_parts=(0, 3)), "num_parts"),
        (lambda: ToyGenerator(kinds=("sphere", "cone")), "cone"),
        (lambda: ToyGenerator(sphere_radius=(0.01, 0.2)), "sphere_radius"),
        (lambda: ToyGenerator.from_config({"num_partz": [1, 2]}), "num_partz"),
    ],
)
def test_unbuildable_toys_name_the_field(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_unknown_toy_set_lists_valid_names():
    with pytest.raises(KeyError) as err:
        get_toy_set("no_such_set")
    for name in toy_set_names():
        assert name in str(err.value)
