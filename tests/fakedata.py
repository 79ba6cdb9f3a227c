"""Tiny fake datasets written in the REAL on-disk formats that cliplab's loaders read.

Every writer produces the files torchvision (or cliplab's own CIFAR / caption readers) parses, with
the real class lists (and, where the format carries names, the real names, so no "names differ"
warning fires), but only a handful of tiny images. Used by tests/test_data.py (format details) and
tests/test_real_scenarios.py (`write_mtil_root`: all 11 MTIL datasets + CIFAR-10 + captions,
for the real scenarios end to end).

Two formats carry MD5 sums that torchvision / cliplab check against the official release (CIFAR
batches, Flowers102's .mat files); `patch_checksums` points those expected sums at the fake files,
so the checks still run (and pass) instead of being switched off.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from cliplab.data import MTIL_ORDER_1, load_metadata

EUROSAT_FOLDERS = [
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
]

#: Caltech101's 101 category folders (torchvision sorts them; BACKGROUND_Google is dropped).
CALTECH101_FOLDERS = [
    "Faces",
    "Faces_easy",
    "Leopards",
    "Motorbikes",
    "accordion",
    "airplanes",
    "anchor",
    "ant",
    "barrel",
    "bass",
    "beaver",
    "binocular",
    "bonsai",
    "brain",
    "brontosaurus",
    "buddha",
    "butterfly",
    "camera",
    "cannon",
    "car_side",
    "ceiling_fan",
    "cellphone",
    "chair",
    "chandelier",
    "cougar_body",
    "cougar_face",
    "crab",
    "crayfish",
    "crocodile",
    "crocodile_head",
    "cup",
    "dalmatian",
    "dollar_bill",
    "dolphin",
    "dragonfly",
    "electric_guitar",
    "elephant",
    "emu",
    "euphonium",
    "ewer",
    "ferry",
    "flamingo",
    "flamingo_head",
    "garfield",
    "gerenuk",
    "gramophone",
    "grand_piano",
    "hawksbill",
    "headphone",
    "hedgehog",
    "helicopter",
    "ibis",
    "inline_skate",
    "joshua_tree",
    "kangaroo",
    "ketch",
    "lamp",
    "laptop",
    "llama",
    "lobster",
    "lotus",
    "mandolin",
    "mayfly",
    "menorah",
    "metronome",
    "minaret",
    "nautilus",
    "octopus",
    "okapi",
    "pagoda",
    "panda",
    "pigeon",
    "pizza",
    "platypus",
    "pyramid",
    "revolver",
    "rhino",
    "rooster",
    "saxophone",
    "schooner",
    "scissors",
    "scorpion",
    "sea_horse",
    "snoopy",
    "soccer_ball",
    "stapler",
    "starfish",
    "stegosaurus",
    "stop_sign",
    "strawberry",
    "sunflower",
    "tick",
    "trilobite",
    "umbrella",
    "watch",
    "water_lilly",
    "wheelchair",
    "wild_cat",
    "windsor_chair",
    "wrench",
    "yin_yang",
]

#: The 12 cat breeds of Oxford-IIIT Pet (species 1; the other 25 breeds are dogs, species 2).
PET_CATS = {
    "Abyssinian",
    "Bengal",
    "Birman",
    "Bombay",
    "British Shorthair",
    "Egyptian Mau",
    "Maine Coon",
    "Persian",
    "Ragdoll",
    "Russian Blue",
    "Siamese",
    "Sphynx",
}

IMAGE_SIZE = 8  # pixels per side of every fake image file (the model's transform resizes)


# ----------------------------------------------------------------------------- generic files


def image_bytes(seed: int, fmt: str = "PNG", size: int = 6) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def write_image(path: Path, seed: int, fmt: str = "PNG", size: int = 6) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(seed, fmt, size))
    return path


def write_jpeg(path: Path, seed: int) -> Path:
    return write_image(path, seed, "JPEG", IMAGE_SIZE)


def write_corrupt_png(path: Path) -> Path:
    """A PNG cut in half: the header parses, the data does not."""
    path.parent.mkdir(parents=True, exist_ok=True)
    good = image_bytes(99)
    path.write_bytes(good[: len(good) // 2])
    return path


def write_pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- CIFAR pickle batches


def cifar_rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def write_cifar10(root: Path) -> dict[str, np.ndarray]:
    """root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}: 10 train, 3 test images."""
    folder = root / "cifar-10-batches-py"
    rows = {}
    for i in range(1, 6):
        rows[f"data_batch_{i}"] = cifar_rows(2, i)
        write_pickle(
            folder / f"data_batch_{i}",
            {"batch_label": f"training batch {i} of 5", "data": rows[f"data_batch_{i}"], "labels": [i, (i + 3) % 10]},
        )
    rows["test_batch"] = cifar_rows(3, 0)
    write_pickle(
        folder / "test_batch", {"batch_label": "testing batch 1 of 1", "data": rows["test_batch"], "labels": [3, 8, 0]}
    )
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    write_pickle(folder / "batches.meta", {"label_names": names, "num_cases_per_batch": 10000, "num_vis": 3072})
    return rows


def write_cifar100(
    root: Path, train_labels: Sequence[int] = (1, 41, 99, 0), test_labels: Sequence[int] = (7, 1)
) -> None:
    """root/cifar-100-python/{train, test, meta} with the given fine labels (one image each)."""
    folder = root / "cifar-100-python"
    raw_names = [n.replace(" ", "_") for n in load_metadata("cifar100").classnames]  # as in the real meta file
    write_pickle(folder / "meta", {"fine_label_names": raw_names, "coarse_label_names": [f"c{i}" for i in range(20)]})
    for split, labels in (("train", list(train_labels)), ("test", list(test_labels))):
        write_pickle(
            folder / split,
            {
                "filenames": [f"x{i}.png" for i in range(len(labels))],
                "fine_labels": labels,
                "coarse_labels": [0] * len(labels),
                "data": cifar_rows(len(labels), 5),
            },
        )


# ----------------------------------------------------------------------------- torchvision layouts


def write_eurosat(root: Path, per_class: int = 3) -> list[str]:
    """root/eurosat/2750/<Class>/<Class>_<n>.jpg; returns paths in torchvision's (sorted) order."""
    paths = []
    for c, folder in enumerate(EUROSAT_FOLDERS):
        for n in range(1, per_class + 1):
            path = root / "eurosat" / "2750" / folder / f"{folder}_{n}.jpg"
            paths.append(str(write_image(path, 10 * c + n, "JPEG")))
    return paths


def write_idx(path: Path, array: np.ndarray) -> None:
    """MNIST's IDX format: magic (0, 0, 0x08 = uint8, ndim), big-endian int32 dims, raw bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, per_class: int = 1) -> None:
    """root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte: `per_class` 28×28 digits per class and split."""
    rng = np.random.default_rng(28)
    for prefix in ("train", "t10k"):
        labels = np.tile(np.arange(10), per_class)
        write_idx(
            root / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte",
            rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8),
        )
        write_idx(root / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte", labels)


def write_food101(root: Path, class_keys: list[str], per_class: int = 2, splits: Sequence[str] = ("test",)) -> None:
    """root/food-101/{images/<class>/<id>.jpg, meta/<split>.json}; each split gets its own images."""
    (root / "food-101" / "meta").mkdir(parents=True, exist_ok=True)
    for s, split in enumerate(splits):
        ids = [str(n) if s == 0 else f"{split}{n}" for n in range(per_class)]
        meta = {key: [f"{key}/{i}" for i in ids] for key in class_keys}
        (root / "food-101" / "meta" / f"{split}.json").write_text(json.dumps(meta))
        for c, key in enumerate(class_keys):
            for n, i in enumerate(ids):
                write_image(root / "food-101" / "images" / key / f"{i}.jpg", 1000 * s + per_class * c + n, "JPEG")


def write_caltech101(root: Path, folders: Sequence[str] = CALTECH101_FOLDERS, per_class: int = 1) -> None:
    """root/caltech101/101_ObjectCategories/<category>/image_0001.jpg (+ BACKGROUND_Google, which is dropped)."""
    for i, folder in enumerate(["BACKGROUND_Google", *folders]):
        for n in range(1, per_class + 1):
            write_image(
                root / "caltech101" / "101_ObjectCategories" / folder / f"image_{n:04d}.jpg",
                100 * i + n,
                "JPEG",
                IMAGE_SIZE,
            )


def write_aircraft(root: Path, per_class: int = 1) -> None:
    """root/fgvc-aircraft-2013b/data/{variants.txt, images_variant_{train,val,trainval,test}.txt, images/<id>.jpg}."""
    data = root / "fgvc-aircraft-2013b" / "data"
    variants = list(load_metadata("aircraft").classnames)
    data.mkdir(parents=True, exist_ok=True)
    (data / "variants.txt").write_text("".join(f"{v}\n" for v in variants))
    lines: dict[str, list[str]] = {}
    image_id = 1000000
    for split in ("train", "val", "test"):
        lines[split] = []
        for variant in variants:
            for _ in range(per_class):
                image_id += 1
                write_jpeg(data / "images" / f"{image_id:07d}.jpg", image_id)
                lines[split].append(f"{image_id:07d} {variant}\n")
    lines["trainval"] = lines["train"] + lines["val"]
    for split, rows in lines.items():
        (data / f"images_variant_{split}.txt").write_text("".join(rows))


def write_dtd(root: Path, per_class: int = 1) -> None:
    """root/dtd/dtd/{images/<class>/<class>_<n>.jpg, labels/{train,val,test}1.txt} (partition 1)."""
    folder = root / "dtd" / "dtd"
    classes = list(load_metadata("dtd").classnames)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    n = 0
    for split in ("train", "val", "test"):
        rows = []
        for cls in classes:
            for _ in range(per_class):
                n += 1
                write_jpeg(folder / "images" / cls / f"{cls}_{n:04d}.jpg", n)
                rows.append(f"{cls}/{cls}_{n:04d}.jpg\n")
        (folder / "labels" / f"{split}1.txt").write_text("".join(rows))


def write_flowers102(root: Path, per_class: int = 1) -> None:
    """root/flowers-102/{jpg/image_<id>.jpg, imagelabels.mat (1-based labels), setid.mat (trnid, valid, tstid)}."""
    from scipy.io import savemat

    folder = root / "flowers-102"
    ids: dict[str, list[int]] = {"trnid": [], "valid": [], "tstid": []}
    labels: list[int] = []
    for key in ids:
        for c in range(102):
            for _ in range(per_class):
                labels.append(c + 1)
                ids[key].append(len(labels))
                write_jpeg(folder / "jpg" / f"image_{len(labels):05d}.jpg", len(labels))
    savemat(folder / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    savemat(folder / "setid.mat", {k: np.array([v], dtype=np.uint16) for k, v in ids.items()})


def write_oxford_pet(root: Path, per_class: int = 1) -> None:
    """root/oxford-iiit-pet/{images/<Breed>_<n>.jpg, annotations/{trainval,test}.txt}.

    Annotation lines are "<image id> <class 1..37> <species 1 cat / 2 dog> <breed id>"."""
    folder = root / "oxford-iiit-pet"
    breeds = list(load_metadata("oxford_pet").classnames)
    (folder / "annotations").mkdir(parents=True, exist_ok=True)
    n = 0
    for split in ("trainval", "test"):
        rows = []
        for c, breed in enumerate(breeds):
            cat = breed in PET_CATS  # the data set capitalises cat breeds' file names only
            raw = breed.replace(" ", "_") if cat else breed.lower().replace(" ", "_")
            for _ in range(per_class):
                n += 1
                write_jpeg(folder / "images" / f"{raw}_{n}.jpg", n)
                rows.append(f"{raw}_{n} {c + 1} {1 if cat else 2} {c + 1}\n")
        (folder / "annotations" / f"{split}.txt").write_text("".join(rows))


def write_stanford_cars(root: Path, per_class: int = 1) -> None:
    """root/stanford_cars/{devkit/{cars_meta.mat, cars_train_annos.mat}, cars_train/, cars_test/,
    cars_test_annos_withlabels.mat}; annotations are MATLAB struct arrays (bbox_*, class 1-based, fname)."""
    from scipy.io import savemat

    folder = root / "stanford_cars"
    names = list(load_metadata("stanford_cars").classnames)
    (folder / "devkit").mkdir(parents=True, exist_ok=True)
    savemat(folder / "devkit" / "cars_meta.mat", {"class_names": np.array([names], dtype=object)})
    fields = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"), ("fname", "O")]
    for split, mat in (
        ("train", folder / "devkit" / "cars_train_annos.mat"),
        ("test", folder / "cars_test_annos_withlabels.mat"),
    ):
        records = []
        for c in range(len(names)):
            for _ in range(per_class):
                fname = f"{len(records) + 1:05d}.jpg"
                write_jpeg(folder / f"cars_{split}" / fname, 10 * len(records) + (split == "test"))
                records.append((1, 1, IMAGE_SIZE, IMAGE_SIZE, c + 1, fname))
        annotations = np.empty((1, len(records)), dtype=fields)
        for i, record in enumerate(records):
            annotations[0, i] = record
        savemat(mat, {"annotations": annotations})


def write_sun397(root: Path, per_class: int = 1) -> None:
    """root/SUN397/{ClassName.txt ("/a/abbey", ...), <letter>/<class path>/sun_<id>.jpg}."""
    folder = root / "SUN397"
    raw = [name.replace(" ", "_") for name in load_metadata("sun397").classnames]  # "apartment_building/outdoor"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ClassName.txt").write_text("".join(f"/{r[0]}/{r}\n" for r in raw))
    n = 0
    for r in raw:
        for _ in range(per_class):
            n += 1
            write_jpeg(folder / r[0] / r / f"sun_{n:08d}.jpg", n)


# ----------------------------------------------------------------------------- folders and captions


def write_image_folder(root: Path) -> Path:
    """root/{train,test}/{cat,dog_breed}/*.png plus one corrupt PNG in test/cat (returned)."""
    for split in ("train", "test"):
        for label, cls in enumerate(("cat", "dog_breed")):
            for n in range(2):
                write_image(root / split / cls / f"{n:04d}.png", 100 * label + n)
    return write_corrupt_png(root / "test" / "cat" / "0009.png")


def write_karpathy_json(root: Path, with_filepath: bool) -> None:
    """Karpathy's split file: dataset_coco.json (with filepath) or dataset_flickr30k.json (without)."""
    entries = [
        ("a.jpg", "test", ["a dog runs", "a brown dog"]),
        ("b.jpg", "train", ["a cat"]),
        ("c.jpg", "test", ["two birds", "birds on a wire", "a pair of birds"]),
        ("d.jpg", "restval", ["a car"]),
    ]
    images = []
    for filename, split, sentences in entries:
        item = {
            "filename": filename,
            "split": split,
            "imgid": len(images),
            "sentences": [{"raw": s, "tokens": s.split()} for s in sentences],
        }
        if with_filepath:
            item["filepath"] = "val2014"
        images.append(item)
    name = "dataset_coco.json" if with_filepath else "dataset_flickr30k.json"
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(json.dumps({"images": images, "dataset": "coco"}))


def write_coco_karpathy(root: Path) -> None:
    """root/dataset_coco.json + root/val2014/{a,b,c,d}.jpg (test split: a and c, 5 captions)."""
    write_karpathy_json(root, with_filepath=True)
    for i, f in enumerate("abcd"):
        write_image(root / "val2014" / f"{f}.jpg", i, "JPEG")


def write_reference_data(folder: Path) -> tuple[Path, Path]:
    """ZSCL-style reference data: an ImageFolder (ImageNet-train-like) and a Conceptual-Captions-like CSV."""
    images = folder / "imagenet"
    for c, cls in enumerate(("n01440764", "n01443537", "n01484850")):
        for n in range(2):
            write_image(images / "train" / cls / f"{cls}_{n}.JPEG", 50 + 2 * c + n, "JPEG")
    captions = folder / "cc" / "train.csv"
    for i in range(3):
        write_image(folder / "cc" / "img" / f"{i}.jpg", 70 + i, "JPEG")
    captions.write_text(
        "filepath\ttitle\nimg/0.jpg\ta dog on a beach\nimg/1.jpg\ta red car parked\n"
        "img/2.jpg\ta bowl of soup\nimg/0.jpg\ta puppy by the sea\n"
    )
    return images, captions


# ----------------------------------------------------------------------------- everything at once

MTIL_WRITERS = {
    "aircraft": write_aircraft,
    "caltech101": write_caltech101,
    "dtd": write_dtd,
    "flowers102": write_flowers102,
    "mnist": write_mnist,
    "oxford_pet": write_oxford_pet,
    "stanford_cars": write_stanford_cars,
    "sun397": write_sun397,
}


def write_mtil_root(root: Path, per_class: int = 1) -> Path:
    """All 11 MTIL datasets (CIFAR-100 included) under `root` in torchvision's layouts, plus CIFAR-10 (a
    probe) and COCO Karpathy (a retrieval probe). `per_class` images per class and split (seeded-split
    sets: per class in all); CIFAR-100 has `per_class` images of every class in train and in test."""
    root = Path(root)
    for name in MTIL_ORDER_1:
        if name == "cifar100":
            labels = list(range(100)) * per_class
            write_cifar100(root, train_labels=labels, test_labels=labels)
        elif name == "eurosat":
            write_eurosat(root, per_class=per_class)
        elif name == "food101":
            keys = [n.replace(" ", "_") for n in load_metadata("food101").classnames]
            write_food101(root, keys, per_class=per_class, splits=("train", "test"))
        else:
            MTIL_WRITERS[name](root, per_class=per_class)
    write_cifar10(root)
    write_coco_karpathy(root)
    return root


def patch_checksums(monkeypatch, root: Path) -> None:
    """Make the MD5 sums torchvision expects for CIFAR-10/100 and Flowers102 those of the fake files under `root`.

    The checks themselves keep running (a damaged fake file still fails); only the expected sums change.
    """
    from torchvision import datasets as tvd

    for cls in (tvd.CIFAR10, tvd.CIFAR100):
        folder = Path(root) / cls.base_folder
        if not folder.is_dir():
            continue
        for attr in ("train_list", "test_list"):
            monkeypatch.setattr(cls, attr, [[f, md5(folder / f)] for f, _ in getattr(cls, attr)])
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(folder / cls.meta["filename"])})
    flowers = Path(root) / "flowers-102"
    if flowers.is_dir():
        files = dict(tvd.Flowers102._file_dict)
        for key in ("label", "setid"):
            files[key] = (files[key][0], md5(flowers / files[key][0]))
        monkeypatch.setattr(tvd.Flowers102, "_file_dict", files)
