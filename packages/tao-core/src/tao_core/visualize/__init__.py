"""Drawing detections and writing inference outputs (images_annotated/, labels/)."""
