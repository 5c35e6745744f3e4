"""Drawing detections and writing inference outputs (images_annotated/, labels/); segmentation
overlays (class colours, outlines, legend) in segmentation.py."""
