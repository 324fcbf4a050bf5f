import pytest

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
