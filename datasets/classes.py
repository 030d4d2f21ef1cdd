"""Class names of the official datasets, in label order, and where each dataset comes from."""

from __future__ import annotations

# Label order of the ScanObjectNN h5 files (docs/formats.md).
SCANOBJECTNN_CLASSES: tuple[str, ...] = (
    "bag",
    "bin",
    "box",
    "cabinet",
    "chair",
    "desk",
    "display",
    "door",
    "shelf",
    "table",
    "bed",
    "pillow",
    "sink",
    "sofa",
    "toilet",
)

# Order of modelnet40_shape_names.txt; used when a layout comes without that file.
MODELNET40_CLASSES: tuple[str, ...] = (
    "airplane",
    "bathtub",
    "bed",
    "bench",
    "bookshelf",
    "bottle",
    "bowl",
    "car",
    "chair",
    "cone",
    "cup",
    "curtain",
    "desk",
    "door",
    "dresser",
    "flower_pot",
    "glass_box",
    "guitar",
    "keyboard",
    "lamp",
    "laptop",
    "mantel",
    "monitor",
    "night_stand",
    "person",
    "piano",
    "plant",
    "radio",
    "range_hood",
    "sink",
    "sofa",
    "stairs",
    "stool",
    "table",
    "tent",
    "toilet",
    "tv_stand",
    "vase",
    "wardrobe",
    "xbox",
)

SCANOBJECTNN_SOURCE = (
    "ScanObjectNN h5_files.zip from https://hkust-vgd.github.io/scanobjectnn/ (or make small "
    "files in the same layout: python tools/make_synthetic.py --format scanobjectnn --out DIR)"
)
MODELNET40_SOURCE = (
    "modelnet40_normal_resampled (with the preprocessed modelnet40_{train,test}_8192pts_fps.dat) "
    "from the Point-BERT DATASET.md links, or modelnet40_ply_hdf5_2048 from the PointNet "
    "release (or make small files in the same layout: python tools/make_synthetic.py "
    "--format modelnet40 --out DIR)"
)
FEWSHOT_SOURCE = (
    "ModelNetFewshot from the Point-BERT DATASET.md links (or make folds from a ModelNet40 "
    "folder: python tools/make_synthetic.py --format modelnet40_fewshot --source DIR --out DIR)"
)
SHAPENET55_SOURCE = (
    "ShapeNet55-34 (shapenet_pc/*.npy and ShapeNet-55/{train,test}.txt) from the Point-BERT DATASET.md "
    "links, as Point-MAE's DATASET.md says (or make small files in the same layout: python "
    "tools/make_synthetic.py --format shapenet55 --out DIR)"
)
