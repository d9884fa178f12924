"""Measuring and looking at detections: COCO metrics against a collage's ground truth,
a run's outputs read back, heat maps, error tiles for retraining, and figures."""
