"""Tests for sdtrainer/dataset.py on images generated in tmp_path (no downloaded data)."""
import hashlib
import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from ldm.tokenizer import get_tokenizer
from sdtrainer import dataset
from sdtrainer.dataset import (
    ClassDataset, DatasetError, InstanceDataset, caption_for, class_caption_for, crop_box, load_image,
    list_images, prepare_images, prompt_lint, read_rgb, template_caption, to_tensor, token_advice, unique_name,
    validate_images,
)

RED = (255, 0, 0)


def scene(seed: int, size=(160, 120)) -> Image.Image:
    """A colourful, sharp, asymmetric picture: random ellipses on a random background."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(30):
        x, y = int(rng.integers(0, size[0])), int(rng.integers(0, size[1]))
        w, h = (int(v) for v in rng.integers(8, size[0] // 2, 2))
        draw.ellipse([x, y, x + w, y + h], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


def checkerboard(size=512, square=32) -> Image.Image:
    y, x = np.mgrid[:size, :size]
    on = ((x // square + y // square) % 2).astype(bool)
    pixels = np.where(on[..., None], np.array([240, 220, 40]), np.array([20, 30, 120])).astype(np.uint8)
    return Image.fromarray(pixels)


def save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def codes(report, path) -> set[str]:
    return {issue.code for issue in report.issues_for(path)}


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- validation

def test_truncated_and_random_bytes_are_errors_not_crashes(tmp_path):
    good = save(scene(0, (300, 300)), tmp_path / "good.jpg", quality=95)
    data = (tmp_path / "good.jpg").read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    noise = tmp_path / "noise.jpg"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    missing = tmp_path / "missing.png"

    report = validate_images([good, truncated, noise, missing], resolution=256)

    assert report.ok_paths == [good]
    assert {e.path for e in report.errors} == {truncated, noise, missing}
    assert all(e.code == "unreadable" and e.severity == "error" for e in report.errors)
    text = report.format()
    assert "4 images checked: 1 usable, 3 skipped." in text and "truncated.jpg" in text and "noise.jpg" in text


def png_announcing(path, width: int, height: int):
    """A tiny 16-bit PNG whose header announces width x height pixels (its data is far shorter)."""
    import struct
    import zlib
    save(Image.new("I;16", (8, 8)), path)
    data = bytearray(path.read_bytes())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])))
    path.write_bytes(bytes(data))
    return path


def test_too_many_pixels_is_refused_from_the_header_before_decoding(tmp_path, monkeypatch):
    from PIL import ImageFile
    big = png_announcing(tmp_path / "big.png", 11000, 10000)  # 110 MP: over our 100 MP, under Pillow's 179 MP
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self) or None)

    report = validate_images([big], resolution=64)

    assert [e.code for e in report.errors] == ["unreadable"]
    assert "100 megapixels" in report.errors[0].message and not decoded
    assert not report.ok_paths


def test_too_small_is_an_error_and_low_resolution_a_warning(tmp_path):
    tiny = save(scene(1, (32, 32)), tmp_path / "tiny.png")
    small = save(scene(2, (300, 400)), tmp_path / "small.png")
    report = validate_images([tiny, small], resolution=512)
    assert codes(report, tiny) == {"too_small"} and report.errors[0].severity == "error"
    assert "low_resolution" in codes(report, small) and report.ok_paths == [small]


def test_cmyk_jpeg_loads_as_rgb(tmp_path):
    path = save(Image.new("CMYK", (64, 48), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", quality=95)
    image = load_image(path, 32)
    assert image.mode == "RGB" and image.size == (32, 32)
    r, g, b = image.getpixel((16, 16))
    assert r > 200 and g < 60 and b < 60
    assert "cmyk" in codes(validate_images([path], 32), path)


def test_rgba_png_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))  # fully transparent black
    rgba.paste((0, 0, 255, 255), (32, 0, 64, 64))      # right half opaque blue
    path = save(rgba, tmp_path / "alpha.png")
    image = load_image(path, 64)
    assert image.mode == "RGB"
    assert image.getpixel((5, 30)) == (255, 255, 255)
    assert image.getpixel((60, 30)) == (0, 0, 255)
    assert "alpha" in codes(validate_images([path], 64), path)


def test_palette_and_grayscale_load_as_rgb(tmp_path):
    gray = save(scene(3).convert("L"), tmp_path / "gray.png")
    palette = save(scene(4).convert("P"), tmp_path / "palette.png")
    assert load_image(gray, 32).mode == load_image(palette, 32).mode == "RGB"
    report = validate_images([gray, palette], 64)
    assert "grayscale" in codes(report, gray) and "grayscale" not in codes(report, palette)


def test_exif_orientation_6_is_rotated(tmp_path):
    stored = Image.new("RGB", (80, 40), (0, 128, 0))
    stored.paste(RED, (36, 0, 44, 8))  # top edge, middle, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = save(stored, tmp_path / "rotated.jpg", exif=exif, quality=95)

    assert read_rgb(path).size == (40, 80)
    square = load_image(path, 40)  # rows 20..60 of the upright 40x80 image
    r, g, b = square.getpixel((36, 20))  # the marker now sits on the right edge, half way down
    assert r > 200 and g < 80 and b < 80
    assert square.getpixel((3, 20))[0] < 80
    assert "exif_rotated" in codes(validate_images([path], 40), path)


def test_blurred_image_is_flagged_sharp_checkerboard_is_not(tmp_path):
    sharp = save(checkerboard(), tmp_path / "sharp.png")
    blurred = save(checkerboard().filter(ImageFilter.GaussianBlur(4)), tmp_path / "blurred.png")
    report = validate_images([sharp, blurred], 512)
    assert "blurry" in codes(report, blurred)
    assert "blurry" not in codes(report, sharp)
    assert report.ok_paths == [sharp, blurred]  # a warning, not an error


def test_near_duplicate_pair_is_reported(tmp_path):
    original = save(scene(10, (320, 240)), tmp_path / "a.png")
    brighter = save(ImageEnhance.Brightness(scene(10, (320, 240))).enhance(1.1), tmp_path / "b.png")
    different = save(scene(11, (320, 240)), tmp_path / "c.png")
    report = validate_images([original, brighter, different], 128)
    assert [(a, b) for a, b, _ in report.duplicates] == [(original, brighter)]
    assert codes(report, brighter) == {"near_duplicate"}
    assert "a.png" in report.issues_for(brighter)[0].message
    assert "near_duplicate" not in codes(report, different) | codes(report, original)


def on_backdrop(seed: int, backdrop, size=128) -> Image.Image:
    """A different subject (a scene) in the middle of the same plain backdrop."""
    image = Image.new("RGB", (size, size), backdrop)
    image.paste(scene(seed, (size // 2, size // 2)), (size // 4, size // 4))
    return image


def test_same_background_everywhere_is_flagged_varied_backgrounds_are_not(tmp_path):
    studio = [save(on_backdrop(i, (230, 230, 225)), tmp_path / f"studio{i}.png") for i in range(4)]
    issues = dataset.subject_issues(studio, "dog")
    assert {(i.path, i.code) for i in issues} == {(p, "same_background") for p in studio}
    assert "3 of the other photos" in issues[0].message
    varied = [save(on_backdrop(i, colour), tmp_path / f"varied{i}.png")
              for i, colour in enumerate([(230, 230, 225), (20, 60, 30), (90, 40, 160), (200, 120, 20)])]
    assert dataset.subject_issues(varied, "dog") == []
    assert dataset.subject_issues(studio[:2], "dog") == []  # two photos say nothing about the set


def test_no_face_is_a_warning_for_person_classes_only(tmp_path, monkeypatch):
    photos = [save(scene(i, (96, 96)), tmp_path / f"p{i}.png") for i in range(2)]
    monkeypatch.setattr(dataset, "detect_faces", lambda image: [])
    assert [(i.path, i.code) for i in dataset.subject_issues(photos, "young woman")] == [
        (photos[0], "no_face"), (photos[1], "no_face")]
    assert dataset.subject_issues(photos, "dog") == []
    monkeypatch.setattr(dataset, "detect_faces", lambda image: [(10, 10, 30, 30)])
    assert dataset.subject_issues(photos, "person") == []


def test_squares_too_small_for_the_face_detector_are_checked_on_their_photo(tmp_path, monkeypatch):
    """At the demo model's 64 px every portrait was 'No face found': the detector needs larger faces."""
    photo = save(scene(1, (320, 400)), tmp_path / "portrait.jpg")
    square = save(scene(1, (64, 64)), tmp_path / "portrait.png")
    large_square = save(scene(1, (256, 256)), tmp_path / "large.png")
    monkeypatch.setattr(dataset, "detect_faces", lambda image: [(1, 1, 40, 40)] if min(image.size) >= 128 else [])
    originals = {square: photo, large_square: photo}
    assert dataset.subject_issues([square, large_square], "person", originals.get) == []
    assert [i.code for i in dataset.subject_issues([square], "person")] == ["no_face"]  # no photo to look at
    assert [i.code for i in dataset.subject_issues([square], "person", lambda p: None)] == ["no_face"]


# ---------------------------------------------------------------- cropping

def test_crop_box_geometry():
    assert crop_box((100, 50), 50, None) == (25, 0, 75, 50)
    assert crop_box((50, 120), 50, None) == (0, 35, 50, 85)
    assert crop_box((100, 50), 50, (95, 10)) == (50, 0, 100, 50)  # clamped inside the image
    assert crop_box((100, 50), 50, (40, 25)) == (15, 0, 65, 50)


def test_center_crop_resizes_short_side_then_takes_the_middle(tmp_path):
    gradient = np.tile(np.linspace(0, 255, 200), (100, 1)).astype(np.uint8)  # value = x across 200 px
    path = save(Image.fromarray(np.stack([gradient] * 3, -1)), tmp_path / "wide.png")
    square = np.asarray(load_image(path, 50))
    assert square.shape == (50, 50, 3)
    # resized to 100x50, the crop spans resized x 25..75, i.e. source x 50..150
    assert abs(int(square[25, 0, 0]) - 64) <= 4 and abs(int(square[25, -1, 0]) - 190) <= 4


def test_face_crop_centres_on_the_largest_face(tmp_path, monkeypatch):
    source = scene(5, (400, 100))
    path = save(source, tmp_path / "wide.png")
    monkeypatch.setattr(dataset, "detect_faces", lambda image: [(10, 10, 20, 20), (220, 30, 40, 40)])
    square = load_image(path, 50, crop="face")
    # scale 0.5: face centre (240, 50) -> (120, 25), so the 50 px window starts at x = 95
    expected = source.resize((200, 50), Image.Resampling.LANCZOS).crop((95, 0, 145, 50))
    assert np.array_equal(np.asarray(square), np.asarray(expected))

    monkeypatch.setattr(dataset, "detect_faces", lambda image: [])
    assert np.array_equal(np.asarray(load_image(path, 50, crop="face")), np.asarray(load_image(path, 50)))


def drawn_face(centre: tuple[int, int], r: int, size=(400, 300)) -> Image.Image:
    """A schematic frontal face (head, hair, brows, eyes, nose, mouth), softened: OpenCV's cascade finds it."""
    image = Image.new("L", size, 40)
    draw, (cx, cy) = ImageDraw.Draw(image), centre
    draw.ellipse((cx - 0.8 * r, cy - r, cx + 0.8 * r, cy + 1.1 * r), fill=190)
    draw.chord((cx - 0.85 * r, cy - 1.1 * r, cx + 0.85 * r, cy - 0.1 * r), 180, 360, fill=50)
    for side in (-1, 1):
        ex = cx + side * 0.33 * r
        draw.rectangle((ex - 0.2 * r, cy - 0.3 * r, ex + 0.2 * r, cy - 0.22 * r), fill=60)
        draw.ellipse((ex - 0.15 * r, cy - 0.15 * r, ex + 0.15 * r, cy + 0.02 * r), fill=50)
    draw.polygon([(cx, cy), (cx - 0.1 * r, cy + 0.35 * r), (cx + 0.1 * r, cy + 0.35 * r)], fill=150)
    draw.ellipse((cx - 0.3 * r, cy + 0.5 * r, cx + 0.3 * r, cy + 0.65 * r), fill=80)
    return image.filter(ImageFilter.GaussianBlur(2)).convert("RGB")


@pytest.mark.parametrize("centre, r, size", [((260, 150), 60, (400, 300)), ((110, 120), 40, (400, 300)),
                                             ((900, 500), 150, (1200, 900))])  # shrunk to 640 px to detect
def test_detect_faces_finds_a_drawn_face_where_it_is(centre, r, size):
    [(x, y, w, h)] = dataset.detect_faces(drawn_face(centre, r, size))
    assert abs(x + w / 2 - centre[0]) < 0.3 * r and abs(y + h / 2 - centre[1]) < 0.3 * r
    assert 1.5 * r < w < 3 * r


def test_detect_faces_finds_none_without_a_face():
    assert dataset.detect_faces(Image.new("RGB", (200, 150), (128, 128, 128))) == []
    assert dataset.detect_faces(scene(4, (400, 300))) == []


def test_face_crop_follows_a_real_detection(tmp_path):
    path = save(drawn_face((330, 150), 50, size=(400, 300)), tmp_path / "wide.png")
    square = np.asarray(load_image(path, 100, crop="face").convert("L")).astype(int)
    centred = np.asarray(load_image(path, 100).convert("L")).astype(int)
    # scale 1/3: the face's centre x 330 -> 110, so the 100 px window is pushed to the right edge
    expected = np.asarray(Image.open(path).resize((133, 100), Image.Resampling.LANCZOS).crop((33, 0, 133, 100))
                          .convert("L")).astype(int)
    assert np.abs(square - expected).max() <= 1 and np.abs(square - centred).mean() > 10


def test_unknown_crop_is_a_clear_error(tmp_path):
    path = save(scene(6), tmp_path / "a.png")
    with pytest.raises(DatasetError, match="center, face"):
        load_image(path, 32, crop="top")


# ---------------------------------------------------------------- preparing and listing

def test_list_images_sorted_case_insensitive_no_hidden(tmp_path):
    for name in ("b.png", "a.JPG", ".hidden.png", "notes.txt", "d.webp", "c.Bmp"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png", "c.Bmp", "d.webp"]
    with pytest.raises(DatasetError, match="does not exist"):
        list_images(tmp_path / "nope")


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


# ---------------------------------------------------------------- captions and advice

def test_captions(tmp_path):
    assert caption_for(tmp_path / "IMG_1234.jpg", "joepenna", "person") == "joepenna person"
    (tmp_path / "b.txt").write_text("  a photo of joepenna person smiling \n")
    assert caption_for(tmp_path / "b.jpg", "joepenna", "person") == "a photo of joepenna person smiling"
    assert caption_for(tmp_path / "photo of joepenna person at the beach (1).jpg", "joepenna", "person") \
        == "photo of joepenna person at the beach"
    assert caption_for(tmp_path / "photo_of_joepenna-person_02.png", "joepenna", "person") \
        == "photo of joepenna person"
    assert caption_for(tmp_path / "joepenna_at_the_beach.jpg", "joepenna", "person") \
        == "joepenna person at the beach"
    assert caption_for(tmp_path / "photo of a person at the beach.jpg", "joepenna", "person") == "joepenna person"
    assert class_caption_for(tmp_path / "b.jpg", "person") == "a photo of joepenna person smiling"
    assert class_caption_for(tmp_path / "c.jpg", "person") == "person"


def test_add_class_word_fixes_what_prompt_lint_finds():
    fixed = dataset.add_class_word("a photo of joepenna, and joepenna person smiling", "joepenna", "person")
    assert fixed == "a photo of joepenna person, and joepenna person smiling"
    assert prompt_lint(fixed, "joepenna", "person") is None
    assert dataset.add_class_word("a photo of joepenna", "joepenna", "") == "a photo of joepenna"


def test_prompt_lint():
    assert prompt_lint("a photo of joepenna person, 35mm", "joepenna", "person") is None
    assert prompt_lint("JoePenna  Person in the snow", "joepenna", "person") is None
    assert prompt_lint("a photo of a person", "joepenna", "person") is None
    warning = prompt_lint("a photo of joepenna", "joepenna", "person")
    assert warning is not None and "`joepenna person`" in warning and "not `joepenna` alone" in warning
    assert prompt_lint("joepenna person next to joepenna", "joepenna", "person") is not None
    assert prompt_lint("joepenna persons", "joepenna", "person") is not None


def test_token_advice_counts_tokens_and_warns_on_common_words():
    tok = get_tokenizer()
    assert "takes 3 CLIP tokens" in token_advice("joepenna", tok)[0]
    sks = token_advice("sks", tok)
    assert "takes 1 CLIP token " in sks[0] and any("overused" in note for note in sks)
    assert any("common word" in note for note in token_advice("dog", tok))
    assert not any("common word" in note for note in token_advice("ohwx", tok))
    assert any("rare token" in note for note in token_advice("ohwx", tok))


# ---------------------------------------------------------------- torch datasets

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


def test_instance_dataset_items(photos):
    data = InstanceDataset(photos, "joepenna", "person", 32, repeats=3)
    assert len(data) == 9
    item = data[4]
    assert item["pixel_values"].shape == (3, 32, 32) and item["pixel_values"].dtype == torch.float32
    assert item["pixel_values"].min() == -1.0 and item["pixel_values"].max() == 1.0
    assert item["caption"] == "joepenna person" and item["path"] == str(photos / "p1.png")
    assert len(InstanceDataset(photos, "joepenna", "person", 32, repeats=1)) == 3


def flip_pattern(data) -> list[bool]:
    base = to_tensor(load_image(data.paths[0], data.resolution))
    pattern = []
    for i in range(len(data)):
        pixels = data[i]["pixel_values"]
        assert torch.equal(pixels, base) or torch.equal(pixels, base.flip(-1))
        pattern.append(torch.equal(pixels, base.flip(-1)))
    return pattern


def test_flips_reproduce_per_epoch_and_change_across_epochs(photos):
    paths = [photos / "p0.png"]
    first = InstanceDataset(paths, "joepenna", "person", 16, repeats=24, seed=3)
    epoch0 = flip_pattern(first)
    assert 0 < sum(epoch0) < len(epoch0)
    again = InstanceDataset(paths, "joepenna", "person", 16, repeats=24, seed=3)
    assert flip_pattern(again) == epoch0
    again.set_epoch(1)
    assert flip_pattern(again) != epoch0
    again.set_epoch(0)
    assert flip_pattern(again) == epoch0
    assert not any(flip_pattern(InstanceDataset(paths, "t", "person", 16, repeats=8, flip_p=0.0)))


def test_dataset_error_for_only_bad_images(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.png"):
        (tmp_path / name).write_bytes(os.urandom(256))
    with pytest.raises(DatasetError, match=r"3 files were unreadable \(a.jpg, b.jpg, c.png\).*Add 5-20 photos"):
        InstanceDataset(tmp_path, "joepenna", "person", 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="No images found"):
        ClassDataset(tmp_path / "empty", "person", 32)


def test_class_dataset_keeps_report_and_uses_class_captions(photos):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (photos / "p2.txt").write_text("a person on a bike")
    data = ClassDataset(photos, "person", 32, flip_p=0.0)
    assert len(data) == 3 and [e.path.name for e in data.report.errors] == ["broken.jpg"]
    assert [data[i]["caption"] for i in range(3)] == ["person", "person", "a person on a bike"]


def test_a_taken_name_is_numbered_before_its_caption_template():
    taken: set[str] = set()
    names = [unique_name(stem, taken) for stem in ("a@S_at_the_beach", "A@S_at_the_beach", "a@S_at_the_beach", "b")]
    assert names == ["a@S_at_the_beach.png", "A_1@S_at_the_beach.png", "a_2@S_at_the_beach.png", "b.png"]
    assert {template_caption(n.removesuffix(".png"), "effy", "dog") for n in names[:3]} == {"effy at the beach"}


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "cp1252"])
def test_captions_saved_by_any_editor_keep_their_words(tmp_path, encoding):
    from sdtrainer.dataset import caption_text

    image = save(scene(1), tmp_path / "a.png")
    (tmp_path / "a.txt").write_bytes("ohwx person at the café".encode(encoding))
    assert caption_text(image) == "ohwx person at the café"
