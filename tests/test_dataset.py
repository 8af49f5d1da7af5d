"""sdtrainer/dataset.py: a subject's checked, captioned images, and prepared copies that leave the sources alone."""
import hashlib
import os

import pytest
from PIL import Image

from conftest import save, scene
from sdtrainer.captions import template_caption
from sdtrainer.dataset import class_set, instance_set, prepare_images, unique_name
from sdtrainer.images import DatasetError, load_image


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for n in range(3):
        image = scene(20 + n, (96, 64))
        image.paste((255, 255, 255), (0, 0, 20, 20))
        image.paste((0, 0, 0), (76, 44, 96, 64))
        save(image, folder / f"p{n}.png")
    return folder


def test_an_instance_set_holds_the_usable_photos_their_captions_and_squares(photos):
    (photos / "p1.txt").write_text("joepenna person at the beach")
    images = instance_set(photos, "joepenna", "person", 32, crop="center")
    assert images.paths == [photos / f"p{n}.png" for n in range(3)]
    assert images.captions == ["joepenna person", "joepenna person at the beach", "joepenna person"]
    square = images.square(1)
    assert square.size == (32, 32) and square.tobytes() == load_image(photos / "p1.png", 32).tobytes()
    with pytest.raises(DatasetError, match="token"):
        instance_set(photos, "", "person", 32)


def test_a_set_without_a_usable_image_says_why(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.png"):
        (tmp_path / name).write_bytes(os.urandom(256))
    with pytest.raises(DatasetError, match=r"3 files were unreadable \(a.jpg, b.jpg, c.png\).*Add 5-20 photos"):
        instance_set(tmp_path, "joepenna", "person", 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="No images found"):
        class_set(tmp_path / "empty", "person", 32)


def test_a_class_set_keeps_the_report_and_uses_class_captions(photos):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (photos / "p2.txt").write_text("a person on a bike")
    images = class_set(photos, "person", 32)
    assert len(images.paths) == 3 and [e.path.name for e in images.report.errors] == ["broken.jpg"]
    assert images.captions == ["person", "person", "a person on a bike"]


def test_prepare_images_writes_pngs_and_leaves_sources_alone(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    sources = [save(scene(7), src / "a.jpg"), save(scene(8), src / "a.png"), src / "bad.jpg"]
    sources[2].write_bytes(b"not an image")
    (src / "a.txt").write_text("joepenna person smiling\n")
    before = {p: digest(p) for p in src.iterdir()}

    result = prepare_images(sources, out, 32)

    assert [p.name for p in result.written] == ["a.png", "a_1.png"]
    assert all(Image.open(p).size == (32, 32) and Image.open(p).format == "PNG" for p in result.written)
    assert (out / "a.txt").read_text().strip() == "joepenna person smiling"
    assert [e.path for e in result.report.errors] == [sources[2]]
    assert {p: digest(p) for p in src.iterdir()} == before
    with pytest.raises(DatasetError, match="another folder"):
        prepare_images(sources, src, 32)


def test_a_taken_name_is_numbered_before_its_caption_template():
    taken: set[str] = set()
    names = [unique_name(stem, taken) for stem in ("a@S_at_the_beach", "A@S_at_the_beach", "a@S_at_the_beach", "b")]
    assert names == ["a@S_at_the_beach.png", "A_1@S_at_the_beach.png", "a_2@S_at_the_beach.png", "b.png"]
    assert {template_caption(n.removesuffix(".png"), "effy", "dog") for n in names[:3]} == {"effy at the beach"}
