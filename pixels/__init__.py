"""Reading pictures: validated, converted to 8-bit RGB, with a record of what was done."""
from pixels.read import DEFAULT_MAX_PIXELS, ImageInfo, read_image

__all__ = ["DEFAULT_MAX_PIXELS", "ImageInfo", "read_image"]
