"""Every object set (toy sets and mesh sets) loads, compiles and can be lifted; mesh folders."""

import numpy as np
import pytest

from toyland.sim import make_env
from toyland.sim.mesh_objects import MeshSet
from toyland.sim.toy_sets import get_toy_set, toy_set_names


def write_box_obj(path, size):
    sx, sy, sz = (s / 2 for s in size)
    verts = [(x, y, z) for x in (-sx, sx) for y in (-sy, sy) for z in (-sz, sz)]
    faces = [(1, 2, 4, 3), (5, 7, 8, 6), (1, 5, 6, 2), (3, 4, 8, 7), (1, 3, 7, 5), (2, 6, 8, 4)]
    lines = [f"v {x} {y} {z}" for x, y, z in verts] + [f"f {' '.join(map(str, f))}" for f in faces]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("name", toy_set_names())
def test_every_object_set_compiles_into_the_env(name):
    env = make_env(toy_set=name, cameras=[])
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        scene = env.unwrapped.scene
        body = scene.object_bodies[0]
        assert scene.model.body_mass[body] > 0
        # resting on the table top after settling (round toys may still roll)
        assert abs(scene.lowest_point(scene.object_geoms[0])) < 0.01
    env.close()


def test_mesh_sets_scale_objects_to_graspable_size():
    for name in ("pybullet_household", "pybullet_random"):
        mesh_set = get_toy_set(name)
        assert isinstance(mesh_set, MeshSet)
        for seed in range(0, mesh_set.size, max(1, mesh_set.size // 25)):
            obj = mesh_set.toy(seed)
            from toyland.sim.mesh_objects import mesh_extent

            extent = np.sort(mesh_extent(obj.path) * obj.scale)
            assert extent[2] <= 0.09 + 1e-6 and extent[1] <= 0.05 + 1e-6 and extent[0] >= 0.008  # (float32 vertices)


def test_a_folder_of_meshes_is_an_object_set(tmp_path):
    write_box_obj(tmp_path / "long_box.obj", (0.4, 0.1, 0.08))
    write_box_obj(tmp_path / "cube.obj", (1.0, 1.0, 1.0))
    env = make_env(toy_set=str(tmp_path), cameras=[])
    names = set()
    for seed in range(6):
        obs, info = env.reset(seed=seed)
        names.add(obs["task"])
    assert names == {"pick up the long box", "pick up the cube"}


def test_a_mesh_folder_is_an_evaluation_cell_with_its_videos(tmp_path):
    from toyland.eval.harness import evaluate_suite

    folder = tmp_path / "my meshes"
    folder.mkdir()
    write_box_obj(folder / "cube.obj", (1.0, 1.0, 1.0))
    results = evaluate_suite("expert", {"task": "lift", "image_size": 32, "cameras": []},
                             {"base": {}, "toy_sets": [str(folder)]}, tmp_path / "eval", episodes=1, workers=1,
                             progress=False)
    cell = f"toy_set@{folder}"
    assert results["cells"][cell]["episodes"] == 1
    (video,) = results["videos"][cell].values()
    assert (tmp_path / "eval" / video).is_file() and video.count("/") == 1  # one file in videos/


def test_bad_mesh_folders_are_named_before_any_episode(tmp_path):
    with pytest.raises(ValueError, match="no .obj or .stl files"):
        make_env(toy_set=str(tmp_path), cameras=[])
    write_box_obj(tmp_path / "cube.obj", (1.0, 1.0, 1.0))
    (tmp_path / "broken.obj").write_text("this is not a mesh\n")
    write_box_obj(tmp_path / "sheet.obj", (1.0, 1.0, 0.01))
    with pytest.raises(ValueError, match="(?s)2 of 3 meshes cannot be objects.*broken.obj.*sheet.obj.*too thin"):
        make_env(toy_set=str(tmp_path), cameras=[])


def test_every_pybullet_random_mesh_but_the_named_unusable_ones_is_an_object():
    """The four left out are exactly those that cannot be objects: no episode can draw a mesh that
    stops it (one in 250 did, before)."""
    from pathlib import Path

    from toyland.sim.mesh_objects import UNUSABLE_RANDOM, _pybullet_data, unusable

    root = _pybullet_data() / "random_urdfs"
    everything = sorted(str(p) for p in root.glob("*/*.obj"))
    assert len(everything) == 1000
    bad = {Path(f).relative_to(root).as_posix() for f in unusable(everything, 0.09)}
    assert bad == set(UNUSABLE_RANDOM)
    assert get_toy_set("pybullet_random").size == 1000 - len(bad)


def test_mesh_objects_weigh_their_convex_hull():
    """Mass and inertia come from the convex hull, the shape that collides: MuJoCo's legacy rule gave
    open meshes a near-zero volume (34 mg instead of 24 g), and contact launched them off the table."""
    import mujoco

    from toyland.sim.mesh_objects import mesh_extent

    mesh_set = get_toy_set("pybullet_random")
    for seed in range(0, mesh_set.size, 20):
        obj = mesh_set.toy(seed)
        spec = mujoco.MjSpec()
        obj.add_to(spec, "obj")
        model = spec.compile()
        box = float(np.prod(mesh_extent(obj.path) * obj.scale))
        volume = model.body_mass[model.body("obj").id] / obj.density
        # a convex body fills between a sixth of its bounding box (a corner tetrahedron) and all of it
        assert box / 6 - 1e-9 <= volume <= box + 1e-9, (obj.path, volume, box)


def test_every_object_of_an_obj_file_is_drawn(tmp_path):
    """A convex decomposition saved as several OBJ objects is one mesh of all their faces: MuJoCo's own
    reader keeps the first object's faces, and 977 pybullet random meshes were drawn as one piece."""
    import mujoco

    from toyland.sim.mesh_objects import MeshObject

    box = tmp_path / "box.obj"
    write_box_obj(box, (0.02, 0.02, 0.02))
    lines = box.read_text().splitlines()
    verts, faces = [ln for ln in lines if ln.startswith("v ")], [ln for ln in lines if ln.startswith("f ")]
    shifted = [f"v {float(x) + 0.03} {y} {z}" for _, x, y, z in (ln.split() for ln in verts)]
    second = [f"f {' '.join(str(int(i) + 8) for i in ln.split()[1:])}" for ln in faces]
    two = tmp_path / "two.obj"
    two.write_text("\n".join(["o first", *verts, *faces, "o second", *shifted, *second]) + "\n")
    spec = mujoco.MjSpec()
    MeshObject(str(two), 1.0).add_to(spec, "obj")
    model = spec.compile()
    assert model.mesh_facenum[0] == 24  # 12 triangles from each object's six quads
    mujoco_own = mujoco.MjSpec()
    mujoco_own.add_mesh(name="m", file=str(two))
    mujoco_own.worldbody.add_body(name="b").add_geom(type=mujoco.mjtGeom.mjGEOM_MESH, meshname="m")
    assert mujoco_own.compile().mesh_facenum[0] == 12, "MuJoCo's reader now keeps every object: obj_surface can go"


def test_the_obj_reader_takes_slashes_negative_indices_comments_and_refuses_index_zero(tmp_path):
    from toyland.sim.mesh_objects import obj_surface

    path = tmp_path / "tri.obj"
    path.write_text("# a comment\nv 0 0 0\nv\t1 0 0\n  v 0 1 0\nvn 0 0 1\nvt 0 0\nv 0 0 1 # apex\n"
                    "f 1/1/1 2/1/1 3/1/1\nf -4//1 -3//1 -1//1\nl 1 2\n")
    verts, faces = obj_surface(str(path))
    assert len(verts) == 12 and faces == (0, 1, 2, 0, 1, 3)
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n")
    obj_surface.cache_clear()
    with pytest.raises(ValueError, match="line 4"):
        obj_surface(str(path))


def test_coloured_mesh_sets_change_colour_only_and_in_the_toys_range():
    import colorsys

    for name in ("pybullet_household", "pybullet_random"):
        grey, coloured = get_toy_set(name), get_toy_set(f"{name}_coloured")
        assert coloured.files == grey.files
        hues = set()
        for seed in range(min(grey.size, 40)):
            a, b = grey.toy(seed), coloured.toy(seed)
            assert a.rgba == (0.7, 0.7, 0.7, 1.0) and (a.path, a.scale, a.label) == (b.path, b.scale, b.label)
            assert coloured.toy(seed).rgba == b.rgba  # fixed by the object's index
            h, s, v = colorsys.rgb_to_hsv(*b.rgba[:3])
            assert s >= 0.55 - 1e-3 and v >= 0.55 - 1e-3
            hues.add(round(h, 2))
        assert len(hues) > min(grey.size, 40) // 2


def test_a_mesh_set_colour_that_does_not_exist_is_named(tmp_path):
    from toyland.sim.toy_sets import load_toy_set_file

    write_box_obj(tmp_path / "cube.obj", (1.0, 1.0, 1.0))
    (tmp_path / "mine.yaml").write_text(f"meshes: {{source: {tmp_path}, colour: red}}\n")
    with pytest.raises(ValueError, match=r"'colour' = 'red'; valid: grey, toys"):
        load_toy_set_file(tmp_path / "mine.yaml")
