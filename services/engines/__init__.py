"""Local real engines for trying phaser without a GPU (``phaser engine``)."""
