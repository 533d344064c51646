"""Page images as BGR arrays: Pillow's exported memory read in place, or its packed pixels where it cannot export;
the same array either way."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from app.engines.pixels import _export, bgr_array


def reference(image: Image.Image) -> np.ndarray:
    """The packing path: Pillow's bytes of the RGB image, channels swapped."""
    return cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR)


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "CMYK", "1", "I;16"])
def test_every_mode_gives_the_pixels_of_its_rgb_conversion(mode: str) -> None:
    image = noise(37, 23).convert(mode)
    array = bgr_array(image)
    assert array.shape == (23, 37, 3) and array.dtype == np.uint8
    assert array.flags["C_CONTIGUOUS"] and array.flags["WRITEABLE"] and array.flags["OWNDATA"]
    assert np.array_equal(array, reference(image))


@pytest.mark.parametrize("size", [(1, 1), (1653, 3), (3, 1171), (1240, 1754)])
def test_an_exported_rgb_image_is_read_in_place(size: tuple[int, int]) -> None:
    image = noise(*size, seed=size[0])
    exported = _export(image)
    assert exported is not None, "Pillow did not export a one-block RGB image"
    view, _ = exported
    assert view.shape == (size[1], size[0], 4) and not view.flags["WRITEABLE"]
    assert np.array_equal(view[:, :, :3], np.asarray(image))  # Pillow's own memory, R G B then a pad byte
    assert np.array_equal(bgr_array(image), reference(image))


def test_a_decoded_png_is_exported_too() -> None:
    buffer = io.BytesIO()
    noise(300, 200, seed=3).save(buffer, "PNG")
    image = Image.open(io.BytesIO(buffer.getvalue()))  # not loaded yet: exporting loads it
    assert _export(image) is not None
    assert np.array_equal(bgr_array(image), reference(image))


def test_an_image_in_several_memory_blocks_takes_the_packing_path() -> None:
    """Larger than Pillow's block: its rows are not in one buffer, Pillow refuses to export, the result is the same."""
    side = int((Image.core.get_block_size() / 4) ** 0.5) + 64
    image = Image.new("RGB", (side, side), (10, 20, 30))
    image.putpixel((side - 1, side - 1), (200, 100, 50))
    assert _export(image) is None
    array = bgr_array(image)
    assert tuple(array[-1, -1]) == (50, 100, 200) and tuple(array[0, 0]) == (30, 20, 10)
    assert np.array_equal(array, reference(image))


def test_the_array_outlives_the_image() -> None:
    image = noise(64, 48, seed=5)
    expected = reference(image)
    array = bgr_array(image)
    del image
    assert np.array_equal(array, expected)
