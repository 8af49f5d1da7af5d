"""sdtrainer/images.py on pictures drawn in tmp_path: decoding, EXIF, colour modes, square crops, faces."""
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter

from conftest import save, scene
from sdtrainer import images
from sdtrainer.images import DatasetError, crop_box, detect_faces, list_images, load_image, read_rgb, to_tensor

RED = (255, 0, 0)


def test_cmyk_jpeg_loads_as_rgb(tmp_path):
    path = save(Image.new("CMYK", (64, 48), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", quality=95)
    image = load_image(path, 32)
    assert image.mode == "RGB" and image.size == (32, 32)
    r, g, b = image.getpixel((16, 16))
    assert r > 200 and g < 60 and b < 60


def test_rgba_png_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))  # fully transparent black
    rgba.paste((0, 0, 255, 255), (32, 0, 64, 64))      # right half opaque blue
    path = save(rgba, tmp_path / "alpha.png")
    image = load_image(path, 64)
    assert image.mode == "RGB"
    assert image.getpixel((5, 30)) == (255, 255, 255)
    assert image.getpixel((60, 30)) == (0, 0, 255)


def test_palette_and_grayscale_load_as_rgb(tmp_path):
    gray = save(scene(3).convert("L"), tmp_path / "gray.png")
    palette = save(scene(4).convert("P"), tmp_path / "palette.png")
    assert load_image(gray, 32).mode == load_image(palette, 32).mode == "RGB"


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


def test_a_square_becomes_pixels_in_minus_one_to_one():
    square = Image.new("RGB", (4, 4), (255, 0, 0))
    square.putpixel((3, 0), (0, 0, 0))
    pixels = to_tensor(square)
    assert pixels.shape == (3, 4, 4) and pixels.dtype == torch.float32
    assert pixels[:, 0, 0].tolist() == [1.0, -1.0, -1.0] and pixels[:, 0, 3].tolist() == [-1.0, -1.0, -1.0]


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
    monkeypatch.setattr(images, "detect_faces", lambda image: [(10, 10, 20, 20), (220, 30, 40, 40)])
    square = load_image(path, 50, crop="face")
    # scale 0.5: face centre (240, 50) -> (120, 25), so the 50 px window starts at x = 95
    expected = source.resize((200, 50), Image.Resampling.LANCZOS).crop((95, 0, 145, 50))
    assert np.array_equal(np.asarray(square), np.asarray(expected))

    monkeypatch.setattr(images, "detect_faces", lambda image: [])
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
    [(x, y, w, h)] = detect_faces(drawn_face(centre, r, size))
    assert abs(x + w / 2 - centre[0]) < 0.3 * r and abs(y + h / 2 - centre[1]) < 0.3 * r
    assert 1.5 * r < w < 3 * r


def test_detect_faces_finds_none_without_a_face():
    assert detect_faces(Image.new("RGB", (200, 150), (128, 128, 128))) == []
    assert detect_faces(scene(4, (400, 300))) == []


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


def test_list_images_sorted_case_insensitive_no_hidden(tmp_path):
    for name in ("b.png", "a.JPG", ".hidden.png", "notes.txt", "d.webp", "c.Bmp"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png", "c.Bmp", "d.webp"]
    with pytest.raises(DatasetError, match="does not exist"):
        list_images(tmp_path / "nope")
