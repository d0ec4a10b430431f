"""Tests of the `finch` Python module against references we did not write: torchvision's
ResNet-18 loaded from the finch model file, torchvision's transforms and ImageFolder, and the
`finch predict --json` records. Run by ctest with Debian's /usr/bin/python3 and
PYTHONPATH=<build>/python; FINCH_CLI names the finch binary.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch
import torchvision
from PIL import Image

import finch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "parity"))
from finch_ref import load_safetensors  # noqa: E402

CLI = os.environ.get("FINCH_CLI", "finch")
MEAN, STD = [0.5, 0.4, 0.3], [0.25, 0.2, 0.3]
SIZE = 32


def make_imagefolder(root, classes, per_class, seed):
    """Each class is a bright square in its own place over noise (a CNN learns it at once)."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class{c}"), exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 90, (SIZE, SIZE, 3), dtype=np.uint8)
            x = 4 + 8 * c
            pixels[8:16, x:x + 8] = 230
            Image.fromarray(pixels).save(os.path.join(root, f"class{c}", f"{i:03d}.png"))


def recipe(root, extra_train=""):
    return {
        "seed": 3, "threads": 1,
        "data": {"format": "imagefolder", "root": root, "workers": 2, "val_fraction": 0.25,
                 "mean": MEAN, "std": STD,
                 "train_transforms": [{"type": "hflip", "p": 0.5}],
                 "eval_transforms": [{"type": "resize", "size": [SIZE, SIZE]}]},
        "model": {"backbone": "resnet18", "input_size": SIZE},
        "train": {"epochs": 1, "batch_size": 8, "eval_batch_size": 16, "progress": "none"},
        "optim": {"name": "adam", "lr": 0.001},
    }


def torchvision_transform():
    return torchvision.transforms.Compose([
        torchvision.transforms.ToTensor(), torchvision.transforms.Normalize(MEAN, STD)])


class FinchModuleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="finch-python-")
        cls.data = os.path.join(cls.dir, "data")
        make_imagefolder(os.path.join(cls.data, "train"), 3, 12, 1)
        make_imagefolder(os.path.join(cls.data, "test"), 3, 5, 2)
        cls.recipe_path = os.path.join(cls.dir, "recipe.yaml")
        with open(cls.recipe_path, "w") as f:
            json.dump(recipe(cls.data), f)  # JSON is YAML
        run = os.path.join(cls.dir, "run")
        result = subprocess.run([CLI, "train", "--config", cls.recipe_path, "--out", run],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError("finch train failed:\n" + result.stdout + result.stderr)
        cls.model_path = os.path.join(run, "best.safetensors")
        cls.model = finch.load_model(cls.model_path)
        cls.test_files = sorted(
            os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(cls.data, "test"))
            for f in fs)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def torchvision_model(self, features=False):
        tensors, meta = load_safetensors(self.model_path)
        info = json.loads(meta["finch"])
        model = torchvision.models.resnet18(num_classes=len(info["classes"]))
        model.load_state_dict({k.removeprefix("backbone.").replace("head.fc.", "fc."): v
                               for k, v in tensors.items()})
        if features:
            model.fc = torch.nn.Identity()
        return model.eval()

    def test_logits_and_embeddings_match_torchvision(self):
        images = [Image.open(p).convert("RGB") for p in self.test_files]
        batch = torch.stack([torchvision_transform()(im) for im in images])
        with torch.no_grad():
            want_logits = self.torchvision_model()(batch)
            want_features = self.torchvision_model(features=True)(batch)
        logits = self.model.logits(images)
        self.assertEqual(tuple(logits.shape), (15, 3))
        scale = want_logits.abs().max().item()
        self.assertLess((logits - want_logits).abs().max().item(), 1e-4 * max(1.0, scale))
        features = self.model.embed(images, normalize=False)
        self.assertLess((features - want_features).abs().max().item(),
                        1e-4 * max(1.0, want_features.abs().max().item()))
        unit = self.model.embed(images)
        torch.testing.assert_close(unit.norm(dim=1), torch.ones(15), atol=1e-5, rtol=0)
        torch.testing.assert_close(self.model.predict(images), torch.softmax(want_logits, 1),
                                   atol=1e-5, rtol=0)
        # The preprocessed batch is torchvision's ToTensor + Normalize.
        torch.testing.assert_close(self.model.preprocess(images), batch, atol=1e-6, rtol=0)

    def test_every_image_kind_gives_the_same_answer(self):
        path = self.test_files[0]
        pil = Image.open(path)
        array = np.asarray(pil.convert("RGB"))
        want = self.model.predict(path)
        self.assertEqual(tuple(want.shape), (3,))
        for image in (pil, array, torch.from_numpy(array.copy()), np.dstack([array, array[:, :, :1]])):
            torch.testing.assert_close(self.model.predict(image), want, atol=0, rtol=0)
        grey = Image.open(path).convert("L")
        torch.testing.assert_close(self.model.predict(grey),
                                   self.model.predict(np.asarray(grey.convert("RGB"))), atol=0, rtol=0)
        self.assertEqual(tuple(self.model.predict([path, pil]).shape), (2, 3))

    def test_top_k_matches_finch_predict_json(self):
        files = self.test_files[:4]
        # The module runs fp32 unless asked; the CLI's default is --dtype auto.
        result = subprocess.run([CLI, "predict", "--model", self.model_path, "--json", "--topk", "2",
                                 "--dtype", "fp32"]
                                + files, capture_output=True, text=True, check=True)
        records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        self.assertEqual(len(records), 4)
        ours = self.model.top_k(files, k=2)
        for record, top in zip(records, ours):
            self.assertEqual([t["class"] for t in top], [t["class"] for t in record["topk"]])
            for mine, theirs in zip(top, record["topk"]):
                self.assertAlmostEqual(mine["prob"], theirs["prob"], places=5)

    def test_eval_loader_matches_torchvision_imagefolder(self):
        loader = finch.Loader(recipe(self.data), "test", overrides=["train.eval_batch_size=4"])
        reference = torch.utils.data.DataLoader(
            torchvision.datasets.ImageFolder(os.path.join(self.data, "test"), torchvision_transform()),
            batch_size=4, shuffle=False)
        self.assertEqual(len(loader), len(reference))
        self.assertEqual(loader.classes, ["class0", "class1", "class2"])
        for (images, labels), (want_images, want_labels) in zip(loader, reference):
            self.assertEqual(images.dtype, torch.float32)
            torch.testing.assert_close(images, want_images, atol=1e-6, rtol=0)
            self.assertEqual(labels.tolist(), want_labels.tolist())

    def test_train_loader_epochs_are_reproducible_and_train_a_model(self):
        loader = finch.Loader(self.recipe_path, "train")
        self.assertEqual(loader.num_samples, 27)  # 36 images, a quarter carved for validation
        first = [(x.clone(), y.clone()) for x, y in loader]
        second = [(x.clone(), y.clone()) for x, y in loader]  # the next epoch
        self.assertEqual(sum(len(y) for _, y in first), 24)   # drop_last: 3 batches of 8
        self.assertNotEqual(torch.cat([y for _, y in first]).tolist(),
                            torch.cat([y for _, y in second]).tolist())
        loader.set_epoch(0)
        again = [(x.clone(), y.clone()) for x, y in loader]
        for (x, y), (x2, y2) in zip(first, again):
            torch.testing.assert_close(x, x2, atol=0, rtol=0)
            self.assertEqual(y.tolist(), y2.tolist())
        self.assertEqual(len(finch.Loader(self.recipe_path, "val")), 1)  # 9 images, batch 16
        # An ordinary PyTorch step on finch's batches lowers the loss.
        torch.manual_seed(0)
        net = torchvision.models.resnet18(num_classes=3)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        x, y = first[0]
        losses = []
        for _ in range(5):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        self.assertLess(losses[-1], losses[0])

    def test_open_dataset_gives_cub_records_with_parts_and_attributes(self):
        root = os.path.join(self.dir, "cub")
        os.makedirs(os.path.join(root, "images", "001.Albatross"))
        os.makedirs(os.path.join(root, "parts"))
        os.makedirs(os.path.join(root, "attributes"))
        for i in (1, 2):
            Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(
                os.path.join(root, "images", "001.Albatross", f"a{i}.jpg"))

        def write(name, text):
            with open(os.path.join(root, name), "w") as f:
                f.write(text)
        write("images.txt", "1 001.Albatross/a1.jpg\n2 001.Albatross/a2.jpg\n")
        write("classes.txt", "1 001.Albatross\n")
        write("image_class_labels.txt", "1 1\n2 1\n")
        write("train_test_split.txt", "1 1\n2 0\n")
        write("bounding_boxes.txt", "1 2.0 3.0 10.0 12.0\n2 0 0 30 20\n")
        write("parts/parts.txt", "1 beak\n2 tail\n")
        write("parts/part_locs.txt", "1 1 5.0 6.0 1\n1 2 0 0 0\n2 1 7 8 1\n2 2 9 10 1\n")
        write("attributes.txt", "1 has_bill_shape::dagger\n2 has_wing_color::blue\n")
        write("attributes/image_attribute_labels.txt",
              "1 1 1 3 1.0\n1 2 0 3 1.0\n2 1 0 3 1.0\n2 2 1 3 1.0\n")
        train = finch.open_dataset("cub", root, "train")
        self.assertEqual(len(train), 1)
        self.assertEqual(train.part_names, ["beak", "tail"])
        self.assertEqual(train.attribute_names, ["has_bill_shape::dagger", "has_wing_color::blue"])
        record = train[0]
        self.assertEqual(record["class"], "001.Albatross")
        self.assertTrue(record["path"].endswith("a1.jpg"))
        self.assertEqual(record["box"], [2.0, 3.0, 10.0, 12.0])  # x, y, width, height as CUB lists them
        self.assertEqual([(p["part"], p["x"], p["y"], p["visible"]) for p in record["parts"]],
                         [("beak", 5.0, 6.0, True), ("tail", 0.0, 0.0, False)])
        self.assertEqual(record["attributes"], [1, 0])
        self.assertEqual(train.image(0).shape, (20, 30, 3))
        self.assertEqual(finch.open_dataset("cub", root, "test")[0]["attributes"], [0, 1])
        self.assertIn("cub", finch.dataset_formats())

    def test_bad_input_raises_clear_errors(self):
        missing = os.path.join(self.dir, "no-such-model.safetensors")
        with self.assertRaisesRegex(ValueError, "no-such-model"):
            finch.load_model(missing)
        with self.assertRaisesRegex(ValueError, "dtype"):
            finch.load_model(self.model_path, dtype="int4")
        with self.assertRaisesRegex(ValueError, "shape"):
            self.model.predict(np.zeros((4, 4, 5), np.uint8))
        with self.assertRaisesRegex(ValueError, r"non-empty .* got shape \(0, 4, 3\)"):
            self.model.predict(np.zeros((0, 4, 3), np.uint8))
        with self.assertRaisesRegex(TypeError, "uint8"):
            self.model.predict(np.zeros((4, 4, 3), np.float32))
        with self.assertRaisesRegex(ValueError, "forward takes"):
            self.model.forward(torch.zeros(3, 32, 32))
        with self.assertRaisesRegex(ValueError, "imagefolder"):  # the error lists the formats
            finch.open_dataset("no-such-format", self.data)
        bad = recipe(self.data)
        bad["train"]["epocs"] = 3
        with self.assertRaisesRegex(ValueError, "epocs"):
            finch.Loader(bad, "train")
        with self.assertRaises(IndexError):
            finch.open_dataset("imagefolder", self.data, "test")[15]
        with self.assertRaisesRegex(ValueError, "not-an-image"):
            path = os.path.join(self.dir, "not-an-image.png")
            with open(path, "w") as f:
                f.write("hello")
            self.model.predict(path)


if __name__ == "__main__":
    unittest.main()
