import io

import numpy as np
import pytest
from PIL import Image

from fsnet.catalog.image_check import ImageRejected, check_image
from tests.images import GARBAGE, image_bytes, truncated

FORMATS = ["JPEG", "PNG"]


def test_good_images_give_format_and_size():
    assert check_image(image_bytes(60, 80, "JPEG"), FORMATS) == ("JPEG", 60, 80)
    assert check_image(image_bytes(33, 17, "PNG"), FORMATS) == ("PNG", 33, 17)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (GARBAGE, "undecodable"),
        (truncated(image_bytes(64, 64, "JPEG")), "truncated"),
        (truncated(image_bytes(64, 64, "PNG")), "truncated"),
        (image_bytes(16, 16, "BMP"), "unsupported_format"),
        (image_bytes(16, 16, "GIF"), "unsupported_format"),
    ],
)
def test_bad_images_are_rejected_with_their_reason(data, reason):
    with pytest.raises(ImageRejected) as err:
        check_image(data, FORMATS)
    assert err.value.reason == reason


def test_broken_jpeg_body():
    data = bytearray(image_bytes(64, 64, "JPEG"))
    data[400:600] = b"\xff" * 200  # markers where entropy-coded data should be
    with pytest.raises(ImageRejected) as err:
        check_image(bytes(data), FORMATS)
    assert err.value.reason in {"undecodable", "truncated"}


def _photo_like_jpeg() -> bytes:
    """A progressive JPEG with a 2 kB EXIF block and a 3 kB ICC profile, as cameras and editors write them: its
    header alone is ~5 kB, so many cuts fall before the first scan."""
    pixels = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x010F] = "fsnet test camera"
    exif[0x010E] = "x" * 2000  # ImageDescription
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", exif=exif.tobytes(), icc_profile=b"\0" * 3000, progressive=True)
    return buf.getvalue()


@pytest.mark.parametrize("where", ["2 bytes", "inside EXIF", "inside ICC", "before the scan", "half", "last byte"])
def test_a_jpeg_cut_anywhere_is_truncated_not_undecodable(where):
    """Wherever the cut falls (PIL fails in Image.open with "Truncated File Read" for cuts in the header, in
    load() with "image file is truncated" later), the reason is ``truncated``."""
    data = _photo_like_jpeg()
    scan = data.find(b"\xff\xda")  # start of scan: everything before it is header
    assert scan > 5000
    cut = {
        "2 bytes": 2,
        "inside EXIF": 1000,
        "inside ICC": 4000,
        "before the scan": scan - 10,
        "half": len(data) // 2,
        "last byte": len(data) - 1,
    }[where]
    with pytest.raises(ImageRejected) as err:
        check_image(data[:cut], FORMATS)
    assert err.value.reason == "truncated", err.value.detail
    assert f"ends after {cut:,} bytes" in err.value.detail
    assert check_image(data, FORMATS) == ("JPEG", 160, 120)  # the whole file is fine


def test_a_download_cut_short_into_a_zero_filled_file_is_truncated():
    data = _photo_like_jpeg()
    with pytest.raises(ImageRejected) as err:
        check_image(data[: len(data) // 2] + b"\0" * 4096, FORMATS)
    assert err.value.reason == "truncated"
    assert check_image(data + b"\0" * 100, FORMATS) == ("JPEG", 160, 120)  # padding after a whole JPEG is harmless


def test_a_png_cut_in_its_header_is_truncated():
    data = image_bytes(64, 64, "PNG")
    for cut in (10, 40, 200):
        with pytest.raises(ImageRejected) as err:
            check_image(data[:cut], FORMATS)
        assert err.value.reason == "truncated"


def test_a_whole_jpeg_with_a_garbled_header_is_undecodable():
    """All its bytes are there (it ends with FFD9), so it is damaged, not cut short."""
    data = bytearray(image_bytes(64, 64, "JPEG"))
    data[2:40] = b"\x00" * 38  # the JFIF segment and the start of the quantization tables
    with pytest.raises(ImageRejected) as err:
        check_image(bytes(data), FORMATS)
    assert err.value.reason == "undecodable"
