"""Tests for cliplab.data: tiny datasets written in the real on-disk formats, loaded via get_dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fakedata import (
    write_caltech101,
    write_cifar10,
    write_cifar100,
    write_eurosat,
    write_food101,
    write_idx,
    write_image,
    write_image_folder,
    write_karpathy_json,
    write_pickle,
)
from PIL import Image
from torch.utils.data import DataLoader, random_split
from torchvision.transforms import ToTensor

import cliplab.data as data
from cliplab.data import (
    CIFAR100_CLASS_ORDER,
    MTIL_ORDER_1,
    MTIL_ORDER_2,
    ClassListMismatchError,
    CorruptFileError,
    CorruptImageError,
    CorruptImageWarning,
    DatasetNotFoundError,
    TensorImageDataset,
    UnknownDatasetError,
    get_dataset,
    load_metadata,
    registry,
    seeded_split_indices,
    to_pil,
)

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- digits


def test_digits_shapes_labels_and_names():
    train = get_dataset("digits", split="train", transform=ToTensor())
    image, label = train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert isinstance(label, int) and 0 <= label <= 9
    assert (len(train), train.num_classes) == (1438, 10)
    assert set(train.targets) == set(range(10))
    assert train.classnames == ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    assert train.train_template == train.templates[0] == 'a photo of the number: "{}".'
    small = get_dataset("digits", split="test", image_size=16, transform=ToTensor())
    assert small[0][0].shape == (3, 16, 16)


def test_digits_split_is_deterministic_disjoint_and_stratified():
    train, test = get_dataset("digits", split="train"), get_dataset("digits", split="test")
    again = get_dataset("digits", split="test")
    assert test.indices == again.indices and torch.equal(test.images, again.images)
    assert set(train.indices).isdisjoint(test.indices)
    assert sorted(train.indices + test.indices) == list(range(1797))
    everything = get_dataset("digits", split="all")
    assert np.bincount(everything.targets).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert test.targets == [everything.targets[i] for i in test.indices]
    assert np.bincount(test.targets).tolist() == [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]  # round(20 %) per class
    assert (len(train), len(test)) == (1438, 359)
    assert get_dataset("digits", split="test", seed=1).indices != test.indices


def test_digits_are_white_on_dark():
    images = get_dataset("digits", split="test").images.float()  # N×3×32×32, 0..255
    assert images[:, :, :3, :3].mean() < 5  # corners: background
    assert images[:, :, 12:20, 12:20].mean() > 60  # centre: ink
    assert images.max() == 255
    assert torch.equal(images[:, 0], images[:, 2])  # grey replicated to RGB


# ----------------------------------------------------------------------------- CIFAR pickle format


def test_cifar10_default_refuses_files_that_fail_md5(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(CorruptFileError, match="MD5") as info:
        get_dataset("cifar10", root=tmp_path, split="train")
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_1") in str(info.value)


def test_cifar10_loads_pickle_batches_with_checksums_off(tmp_path):
    rows = write_cifar10(tmp_path)
    with pytest.warns(UserWarning, match="checksums not verified"):
        train = get_dataset("cifar10", root=tmp_path, split="train", verify_checksums=False)
    assert len(train) == 10 and train.targets[:4] == [1, 4, 2, 5]
    with pytest.warns(UserWarning):
        test = get_dataset("cifar10", root=tmp_path, split="test", verify_checksums=False)
    assert test.targets == [3, 8, 0] and test.classnames[3] == "cat" and len(test.templates) == 18
    row = rows["test_batch"][1]  # planes: R[0:1024], G[1024:2048], B[2048:3072], row-major 32×32
    image = np.asarray(test[1][0])
    assert image.shape == (32, 32, 3)
    assert tuple(image[0, 0]) == (row[0], row[1024], row[2048])
    assert tuple(image[1, 2]) == (row[34], row[1024 + 34], row[2048 + 34])


def test_cifar100_names_come_from_meta_with_underscores_replaced(tmp_path):
    write_cifar100(tmp_path)
    with pytest.warns(UserWarning):
        train = get_dataset("cifar100", root=tmp_path, split="train", verify_checksums=False)
    assert train.targets == [1, 41, 99, 0] and len(train.classnames) == 100
    assert train.classnames[1] == "aquarium fish" and train.classnames[41] == "lawn mower"
    assert train.train_template == "a photo of a {}."


def test_cifar_unreadable_pickle_names_the_file(tmp_path):
    write_cifar100(tmp_path)
    (tmp_path / "cifar-100-python" / "test").write_bytes(b"\x80\x02garbage")
    with pytest.warns(UserWarning), pytest.raises(CorruptFileError) as info:
        get_dataset("cifar100", root=tmp_path, split="test", verify_checksums=False)
    assert str(tmp_path / "cifar-100-python" / "test") in str(info.value)


def test_cifar_meta_with_wrong_class_count_is_a_mismatch(tmp_path):
    write_cifar100(tmp_path)
    write_pickle(tmp_path / "cifar-100-python" / "meta", {"fine_label_names": [f"c{i}" for i in range(99)]})
    with pytest.warns(UserWarning), pytest.raises(ClassListMismatchError, match="100") as info:
        get_dataset("cifar100", root=tmp_path, split="test", verify_checksums=False)
    assert "99" in str(info.value)


def test_missing_cifar_names_path_and_remedy(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        get_dataset("cifar100", root=tmp_path, split="train")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(tmp_path / "cifar-100-python") in message
    assert "download=True" in message and "cifar-100-python/{train, test, meta}" in message


# ----------------------------------------------------------------------------- torchvision formats


def test_missing_mtil_dataset_error_contains_the_path(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        get_dataset("dtd", root=tmp_path, split="test")
    message = str(info.value)
    assert str(tmp_path / "dtd") in message and "labels/{train,val,test}1.txt" in message
    assert "download=True" in message
    assert not (tmp_path / "dtd").exists()  # nothing created on disk


def test_stanford_cars_error_explains_manual_download(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="cannot download Stanford Cars"):
        get_dataset("stanford_cars", root=tmp_path)


def test_eurosat_seeded_split_matches_zscl_over_torchvision_order(tmp_path):
    order = write_eurosat(tmp_path)  # 30 images
    train_idx, test_idx = seeded_split_indices(30)
    train = get_dataset("eurosat", root=tmp_path, split="train")
    test = get_dataset("eurosat", root=tmp_path, split="test")
    assert (len(train), len(test)) == (24, 6)
    assert train.paths == [order[i] for i in train_idx] and test.paths == [order[i] for i in test_idx]
    assert test.targets == [i // 3 for i in test_idx]
    assert test.classnames == list(load_metadata("eurosat").classnames) and test.classnames[9] == "lake or sea"
    assert test.templates[0] == "a centered satellite photo of {}."
    assert isinstance(test[0][0], Image.Image) and test[0][0].mode == "RGB"


def test_eurosat_corrupt_file_is_dropped_after_splitting(tmp_path):
    order = write_eurosat(tmp_path)
    _, test_idx = seeded_split_indices(30)
    broken = order[test_idx[0]]
    Path(broken).write_bytes(b"not a jpeg")
    with pytest.warns(CorruptImageWarning, match="skipped 1 unreadable"):
        test = get_dataset("eurosat", root=tmp_path, split="test")
    assert test.corrupt == [broken]
    assert test.paths == [order[i] for i in test_idx[1:]]  # the other test images are unchanged


def test_mnist_idx_files_load_as_rgb_with_torchvision_names(tmp_path):
    pixels = np.random.default_rng(3).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte", pixels)
    write_idx(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", np.array([7, 0, 7]))
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte"):  # torchvision needs all four
        get_dataset("mnist", root=tmp_path, split="test")
    write_idx(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte", pixels[:1])
    write_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.array([4]))
    test = get_dataset("mnist", root=tmp_path, split="test")
    image, label = test[2]
    assert (len(test), label, image.mode) == (3, 7, "RGB")
    assert np.array_equal(np.asarray(image)[:, :, 1], pixels[2])
    assert test.classnames[7] == "7 - seven" and test.train_template == 'a photo of the number: "{}".'


def test_food101_uses_torchvision_index_and_benchmark_names(tmp_path):
    keys = [n.replace(" ", "_") for n in load_metadata("food101").classnames]
    write_food101(tmp_path, keys)
    test = get_dataset("food101", root=tmp_path, split="test")
    assert len(test) == 202 and test.targets[:4] == [0, 0, 1, 1]
    assert test.classnames == list(load_metadata("food101").classnames) and test.classnames[0] == "apple pie"
    assert test.paths[2] == str(tmp_path / "food-101" / "images" / "baby_back_ribs" / "0.jpg")
    assert test.train_template == "a photo of a {}, a type of food."


def test_dataset_copy_with_other_class_count_is_a_mismatch(tmp_path):
    write_food101(tmp_path, ["apple_pie", "waffles"])
    with pytest.raises(ClassListMismatchError, match=r"101 class names but the dataset has 2 classes"):
        get_dataset("food101", root=tmp_path, split="test")


def test_caltech101_drops_background_and_uses_zscl_names(tmp_path):
    write_caltech101(tmp_path)  # 101 real category folders + BACKGROUND_Google, one image each
    everything = get_dataset("caltech101", root=tmp_path, split="all")
    assert len(everything) == 101 and everything.targets == list(range(101))
    assert everything.paths[0].endswith("Faces/image_0001.jpg")
    assert everything.classnames[:2] == ["off-center face", "centered face"]
    train, test = get_dataset("caltech101", root=tmp_path, split="train"), get_dataset("caltech101", root=tmp_path)
    assert (len(train), len(test)) == (80, 21) and set(train.paths).isdisjoint(test.paths)


# ----------------------------------------------------------------------------- ImageFolder


def test_imagefolder_skips_and_reports_a_corrupt_png(tmp_path):
    bad = write_image_folder(tmp_path)
    with pytest.warns(CorruptImageWarning) as record:
        test = get_dataset("imagefolder", root=tmp_path, split="test")
    message = str(record[0].message)
    assert "skipped 1 unreadable image(s) of 5" in message and str(bad) in message
    assert test.corrupt == [str(bad)]
    assert len(test) == 4 and test.targets == [0, 0, 1, 1]
    assert test.classnames == ["cat", "dog breed"] and test.train_template == "a photo of a {}."
    assert test[3][0].size == (6, 6)
    with pytest.warns(CorruptImageWarning):  # screening results are cached per file version, same verdict
        assert get_dataset("imagefolder", root=tmp_path, split="test").corrupt == [str(bad)]


def test_imagefolder_error_mode_names_the_corrupt_file(tmp_path):
    bad = write_image_folder(tmp_path)
    with pytest.raises(CorruptImageError) as info:
        get_dataset("imagefolder", root=tmp_path, split="test", on_corrupt="error")
    assert str(bad) in str(info.value) and info.value.path == bad


def test_imagefolder_splits_with_different_class_folders_are_rejected(tmp_path):
    write_image_folder(tmp_path)
    write_image(tmp_path / "val" / "cat" / "0000.png", 1)
    with pytest.raises(ClassListMismatchError, match="2 class folders but .* has 1") as info:
        get_dataset("imagefolder", root=tmp_path, split="train")
    assert "dog_breed" in str(info.value)


def test_imagefolder_missing_split_lists_what_is_there(tmp_path):
    write_image_folder(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="folders found in .*: test, train") as info:
        get_dataset("imagefolder", root=tmp_path, split="validation")
    assert str(tmp_path / "validation") in str(info.value)


# ----------------------------------------------------------------------------- class lists


def test_classname_override_with_wrong_count_is_an_error(tmp_path):
    write_image_folder(tmp_path)
    with pytest.raises(ClassListMismatchError, match=r"3 class names but the dataset has 2 classes"):
        get_dataset("imagefolder", root=tmp_path, split="train", classnames=["a", "b", "c"])
    with pytest.raises(ClassListMismatchError, match=r"9 != 10"):
        get_dataset("digits", classnames=["x"] * 9)
    renamed = get_dataset(
        "imagefolder", root=tmp_path, split="train", classnames=["kitty", "doggo"], templates=["a sketch of a {}."]
    )
    assert renamed.classnames == ["kitty", "doggo"] and renamed.train_template == "a sketch of a {}."


@pytest.mark.parametrize(
    "name, classes, templates",
    [
        ("aircraft", 100, 2),
        ("caltech101", 101, 34),
        ("cifar100", 100, 18),
        ("dtd", 47, 8),
        ("eurosat", 10, 3),
        ("flowers102", 102, 1),
        ("food101", 101, 1),
        ("mnist", 10, 1),
        ("oxford_pet", 37, 1),
        ("stanford_cars", 196, 9),
        ("sun397", 397, 2),
    ],
)
def test_mtil_metadata_counts(name, classes, templates):
    meta = load_metadata(name)
    assert (meta.num_classes, len(meta.templates)) == (classes, templates)
    assert len(set(meta.classnames)) == classes
    assert meta.train_template == meta.templates[0] and all(t.count("{}") == 1 for t in meta.templates)
    assert meta.sources["classnames"] and meta.sources["templates"]


def test_metadata_peculiarities_match_zscl():
    assert load_metadata("caltech101").classnames[:2] == ("off-center face", "centered face")
    assert load_metadata("mnist").classnames[7] == "7 - seven"
    assert load_metadata("sun397").classnames[8] == "apartment building/outdoor"
    assert load_metadata("stanford_cars").classnames[0] == "AM General Hummer SUV 2000"
    assert load_metadata("flowers102").classnames[92] == "ball moss"
    assert load_metadata("oxford_pet").train_template == "a photo of a {}, a type of pet."


def test_benchmark_orders():
    assert len(CIFAR100_CLASS_ORDER) == 100 and sorted(CIFAR100_CLASS_ORDER) == list(range(100))
    assert CIFAR100_CLASS_ORDER[:5] == [87, 0, 52, 58, 44] and CIFAR100_CLASS_ORDER[-1] == 39
    assert MTIL_ORDER_1[0] == "aircraft" and sorted(MTIL_ORDER_1) == MTIL_ORDER_1
    assert MTIL_ORDER_2[:3] == ["stanford_cars", "food101", "mnist"] and MTIL_ORDER_2[-1] == "cifar100"
    assert sorted(MTIL_ORDER_2) == sorted(MTIL_ORDER_1) and set(MTIL_ORDER_1) <= set(data.list_datasets())


# ----------------------------------------------------------------------------- seeded split


class _FakeDataset:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


def test_seeded_split_is_deterministic_and_equals_zscl_random_split():
    fake = _FakeDataset(103)
    train, test = seeded_split_indices(fake)
    assert (train, test) == seeded_split_indices(103)
    assert (len(train), len(test)) == (82, 21)
    assert set(train).isdisjoint(test) and sorted(train + test) == list(range(103))
    zscl_train, zscl_test = random_split(fake, [82, 21], generator=torch.Generator().manual_seed(42))
    assert [zscl_train[i] for i in range(82)] == train and [zscl_test[i] for i in range(21)] == test
    assert seeded_split_indices(103, seed=0)[1] != test


# ----------------------------------------------------------------------------- captions


def test_coco_karpathy_captions_and_index(tmp_path):
    write_karpathy_json(tmp_path, with_filepath=True)
    for i, f in enumerate("abcd"):
        write_image(tmp_path / "val2014" / f"{f}.jpg", i, "JPEG")
    test = get_dataset("coco_karpathy", root=tmp_path, split="test", transform=ToTensor())
    assert len(test) == 2
    assert test.captions == ["a dog runs", "a brown dog", "two birds", "birds on a wire", "a pair of birds"]
    assert test.text_image_index == [0, 0, 1, 1, 1]
    image, captions = test[1]
    assert image.shape == (3, 6, 6) and captions == ["two birds", "birds on a wire", "a pair of birds"]
    images, caption_lists = next(iter(DataLoader(test, batch_size=2, collate_fn=data.caption_collate)))
    assert images.shape == (2, 3, 6, 6) and [len(c) for c in caption_lists] == [2, 3]
    train = get_dataset("coco_karpathy", root=tmp_path, split="train")
    assert [Path(p).name for p in train.image_paths] == ["b.jpg", "d.jpg"]  # train includes restval


def test_flickr_karpathy_without_filepath_and_missing_image(tmp_path):
    write_karpathy_json(tmp_path, with_filepath=False)
    write_image(tmp_path / "flickr30k-images" / "a.jpg", 0, "JPEG")
    with pytest.warns(CorruptImageWarning, match="c.jpg"):
        test = get_dataset("flickr30k_karpathy", root=tmp_path, split="test")
    assert [Path(p).name for p in test.image_paths] == ["a.jpg"] and test.corrupt[0].endswith("c.jpg")
    assert test.text_image_index == [0, 0]


def test_csv_captions_groups_repeated_filepaths(tmp_path):
    write_image(tmp_path / "img" / "a.png", 1)
    write_image(tmp_path / "img" / "b.png", 2)
    (tmp_path / "captions.csv").write_text(
        'filepath,caption\nimg/a.png,a red circle\nimg/b.png,a blue square\nimg/a.png,"a circle, red"\n'
        "img/b.png,square\nimg/a.png,round red thing\n"
    )
    captions = get_dataset("csv_captions", root=tmp_path / "captions.csv")
    assert len(captions) == 2 and len(captions.captions) == 5
    assert captions.captions == ["a red circle", "a circle, red", "round red thing", "a blue square", "square"]
    assert captions.text_image_index == [0, 0, 0, 1, 1]
    assert captions[0][1] == ["a red circle", "a circle, red", "round red thing"]
    (tmp_path / "test.csv").write_text("filepath\ttitle\nimg/b.png\tcc style caption\n")
    tab = get_dataset("csv_captions", root=tmp_path, split="test")
    assert tab.captions == ["cc style caption"] and tab.image_paths == [str(tmp_path / "img" / "b.png")]


# ----------------------------------------------------------------------------- registry and tensors


def test_unknown_name_lists_known_names():
    with pytest.raises(UnknownDatasetError) as info:
        get_dataset("imagenet-21k")
    message = str(info.value)
    for known in ("digits", "cifar100", "sun397", "imagefolder", "coco_karpathy", "csv_captions"):
        assert known in message


def test_register_dataset_adds_a_name():
    def factory(root, split, transform, download, on_corrupt, **options):
        images = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
        return TensorImageDataset(images, [0, 1, 0, 1], ["a", "b"], ["{}"], transform, name=f"unit-{split}")

    data.register_dataset("unit-test-set", factory)
    try:
        assert get_dataset("unit-test-set", split="train").name == "unit-train"
        assert "unit-test-set" in data.list_datasets()
        with pytest.raises(ValueError, match="already registered"):
            data.register_dataset("unit-test-set", factory)
    finally:
        registry._REGISTRY.pop("unit-test-set")


def test_tensor_dataset_and_to_pil_round_trip():
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 3, 4, 5), dtype=np.uint8))
    dataset = TensorImageDataset(images, torch.tensor([2, 0, 1]), ["x", "y", "z"], ["a {}."], name="toy")
    pil, label = dataset[0]
    assert label == 2 and pil.size == (5, 4) and pil.mode == "RGB"
    assert np.array_equal(np.asarray(pil), images[0].permute(1, 2, 0).numpy())
    grey = to_pil(torch.full((1, 2, 2), 7, dtype=torch.uint8))
    assert np.asarray(grey).tolist() == [[[7, 7, 7]] * 2] * 2
    assert np.asarray(to_pil(np.ones((2, 2, 3)))).max() == 255  # floats are 0..1
    with pytest.raises(ClassListMismatchError, match="labels span 0..2"):
        TensorImageDataset(images, [2, 0, 1], ["x", "y"], ["a {}."])
    with pytest.raises(ValueError, match="on_corrupt"):
        get_dataset("digits", on_corrupt="ignore")
