"""KITTI 2D evaluation to the official devkit rules (numpy only)."""
