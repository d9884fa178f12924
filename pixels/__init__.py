"""Reading pictures: headers without pixels, bands without the rest, whole decodes; all as
8-bit RGB, with a record of what reading did."""
from pixels.bands import read_band, read_reduced
from pixels.read import DEFAULT_MAX_PIXELS, READERS, ImageInfo, decode_image, probe_image, read_image, stored_version

__all__ = ["DEFAULT_MAX_PIXELS", "READERS", "ImageInfo", "decode_image", "probe_image", "read_band", "read_image",
           "read_reduced", "stored_version"]
