"""CLI verbs of the training side (train, predict, anchors, augment-preview)."""
