import numpy as np
import pytest

from source_fixtures import COLORS, H, W, write_color_tiles, write_value_masks
from mtl_tf.data.example import IGNORE
from mtl_tf.data.sources import build_source
from mtl_tf.data.sources.mask_folder import MaskFolderConfig
from mtl_tf.data.splits import balanced_split

COLOR_TABLE = [{"name": n, "color": c} for n, c in COLORS.items()]


def _color_source(root, size=(H // 2, W // 2), **kw):
    config = MaskFolderConfig(images=str(root / "images"), masks=str(root / "labels"), classes=COLOR_TABLE,
                              ignore_colors=[(0, 0, 0)], **kw)
    return build_source(config, size)


def test_colour_table_and_2x2_tiles(tmp_path):
    write_color_tiles(tmp_path, count=2)
    source = _color_source(tmp_path, tiles=(2, 2))
    assert source.config.class_names("mask") == ["building", "road", "tree"]
    assert len(source) == 8
    # Tiles in row-major order: building, road, tree, ignore; each a whole example.
    for index, expected in enumerate([0, 1, 2, IGNORE] * 2):
        example = source[index]
        assert example["image"].shape == (H // 2, W // 2, 3) and "mask" in example
        assert (example["mask"] == expected).all(), index
    from source_fixtures import image

    np.testing.assert_array_equal(source[1]["image"], _jpeg_roundtrip(image(20))[: H // 2, W // 2 :])


def _jpeg_roundtrip(array):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return np.asarray(Image.open(buffer).convert("RGB"))


def test_merged_names_in_a_value_table(tmp_path):
    write_value_masks(tmp_path, np.array([[1, 1, 1, 0]], bool))
    config = MaskFolderConfig(images=str(tmp_path / "images"), masks=str(tmp_path / "labels"),
                              classes=[{"name": "ground", "value": 0}, {"name": "plant", "value": 1},
                                       {"name": "plant", "value": 2}])
    source = build_source(config, (8, 8))
    mask = source[0]["mask"]
    assert source.config.class_names("mask") == ["ground", "plant"]
    assert mask[:, :3].tolist() == [[0, 1, 1]] * 8 and (mask[:, 3:] == IGNORE).all()


def _share_errors(presence, split, shares):
    """|images of class c in split s - share_s * images of class c| for every (s, c)."""
    per_split = np.stack([presence[split == s].sum(0) for s in range(len(shares))])
    return np.abs(per_split - np.array(shares)[:, None] * presence.sum(0)[None])


def test_balanced_split_puts_the_target_share_of_every_class_in_each_split():
    rng = np.random.default_rng(0)
    rarity = np.array([0.6, 0.3, 0.1, 0.05, 0.03])
    presence = rng.random((400, 5)) < rarity
    shares = (0.7, 0.15, 0.15)
    split = balanced_split(presence, shares, seed=1)
    assert np.bincount(split, minlength=3).tolist() == pytest.approx([280, 60, 60], abs=3)
    errors = _share_errors(presence, split, shares)
    assert errors.max() <= 2.0, errors
    # A plain random split with the same sizes does clearly worse on the same data.
    random_errors = [_share_errors(presence, rng.permutation(split), shares).max() for _ in range(20)]
    assert np.mean(random_errors) > 2 * errors.max()
    np.testing.assert_array_equal(split, balanced_split(presence, shares, seed=1))  # deterministic


def test_mask_folder_splits_are_disjoint_cover_everything_and_balance_a_rare_class(tmp_path):
    presence = np.zeros((20, 3), bool)
    presence[:, 0] = True
    presence[::2, 1] = True
    presence[:4, 2] = True  # rare: 4 images
    write_value_masks(tmp_path, presence)
    table = [{"name": f"c{k}", "value": k} for k in range(3)]
    stems = {}
    for split in ("train", "val", "test"):
        config = MaskFolderConfig(images=str(tmp_path / "images"), masks=str(tmp_path / "labels"), classes=table,
                                  split=split, split_shares=(0.5, 0.25, 0.25))
        source = build_source(config, (8, 8))
        stems[split] = {r[0].stem for r in source.records}
        rare = sum(2 in np.unique(source[i]["mask"]) for i in range(len(source)))
        assert rare == {"train": 2, "val": 1, "test": 1}[split]
    assert sum(len(s) for s in stems.values()) == 20
    assert len(stems["train"] | stems["val"] | stems["test"]) == 20


def test_class_table_must_not_mix_values_and_colours():
    with pytest.raises(ValueError, match="mixes value and color"):
        MaskFolderConfig(images="i", masks="m", classes=[{"name": "a", "value": 1}, {"name": "b", "color": [1, 2, 3]}])
