"""KITTI data: indexing (numpy), augmentation (albumentations), target assignment, tf.data pipeline."""
