"""The method's maths, readable next to the paper: PEDCC points, the four losses, neighbour
mining, the metrics, the projection head and the augmentations (docs/METHOD.md)."""
