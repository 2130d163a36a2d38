"""``axedge demo``: run the main job on the embedded default and leave a readable dataset."""
