"""The zoomable viewer of a picture's run: a DeepZoom tile pyramid of the picture as it was
scored (:mod:`viewer.pyramid`) and a self-contained ``viewer.html`` that draws the run's boxes
over it with OpenSeadragon (:mod:`viewer.page`), from the files :mod:`viewer.assets` finds."""
from viewer.assets import ViewerAssets, load_assets
from viewer.page import page_data, viewer_html
from viewer.pyramid import PYRAMID_NAME, write_pyramid, write_pyramid_apart

__all__ = ["ViewerAssets", "load_assets", "page_data", "viewer_html", "write_pyramid", "write_pyramid_apart",
           "PYRAMID_NAME", "VIEWER_FILE"]

#: The page a run writes beside its other outputs.
VIEWER_FILE = "viewer.html"
