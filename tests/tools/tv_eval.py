#!/usr/bin/python3
"""Train a torchvision model and score it on a folder of JPEGs (test_eval_torchvision).

usage: tv_eval.py DIR

Writes, under DIR:
  images/<class>/NNN.jpg  the evaluation images: CLASSES classes, PER_CLASS JPEGs each, of mixed
                          sizes (one greyscale, one CMYK), drawn so that a briefly trained net scores between
                          chance and 100 %
  weights.safetensors     torchvision.models.resnet18(num_classes=CLASSES) after STEPS SGD steps on
                          other images of the same kind (state_dict names, running statistics and
                          num_batches_tracked included, as PyTorch saves them)
  torch.json              {"accuracy", "loss", "n", "pred"}: the model in eval mode on images/,
                          read with PIL and transformed by torchvision's own evaluation pipeline
                          Resize(RESIZE) + CenterCrop(SIZE) + ToTensor + Normalize(ImageNet)
The C side converts images/ with `eigenbatch convert imagefolder` and runs `eigenbatch eval`
with data.size = SIZE and data.eval_resize = RESIZE, which must give the same accuracy.
"""
import json
import os
import sys

import numpy as np
import torch
import torchvision
import torchvision.transforms as T
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
import safetensors_io  # noqa: E402

CLASSES, PER_CLASS = 4, 16
SIZE, RESIZE = 32, 40
STEPS, BATCH, LR = 40, 16, 0.05
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def image(rng, label):
    """A JPEG-able picture whose class shows in its colour balance and stripe direction, with
    enough noise that the classes overlap."""
    w, h = int(rng.integers(44, 90)), int(rng.integers(44, 90))
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    stripes = np.sin((x if label % 2 else y) * rng.uniform(0.3, 0.6) + rng.uniform(0, 6))
    base = rng.uniform(60, 190, size=3).astype(np.float32)
    base[label % 3] += 35.0 * (1 if label < 3 else -1)
    px = base[None, None, :] + 40.0 * stripes[..., None] + rng.normal(0, 45, size=(h, w, 3))
    return Image.fromarray(np.clip(px, 0, 255).astype(np.uint8), "RGB")


def main():
    out = sys.argv[1]
    torch.manual_seed(1)
    rng = np.random.default_rng(7)
    tf = T.Compose([T.Resize(RESIZE), T.CenterCrop(SIZE), T.ToTensor(), T.Normalize(MEAN, STD)])

    model = torchvision.models.resnet18(num_classes=CLASSES)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    model.train()
    for _ in range(STEPS):
        labels = rng.integers(0, CLASSES, size=BATCH)
        x = torch.stack([tf(image(rng, int(c))) for c in labels])
        loss = torch.nn.functional.cross_entropy(model(x), torch.from_numpy(labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    safetensors_io.save(os.path.join(out, "weights.safetensors"), state, metadata={"format": "pt"})

    paths, labels = [], []
    for c in range(CLASSES):
        folder = os.path.join(out, "images", "class%d" % c)
        os.makedirs(folder, exist_ok=True)
        for i in range(PER_CLASS):
            img = image(rng, c)
            if c == 0 and i == 0:
                img = img.convert("L")  # a greyscale JPEG: both sides make 3 channels of it
            elif c == 1 and i == 0:
                img = img.convert("CMYK")  # a CMYK JPEG (ImageNet has some): both make RGB
            path = os.path.join(folder, "%03d.jpg" % i)
            img.save(path, quality=92)
            paths.append(path)
            labels.append(c)

    model.eval()
    with torch.no_grad():
        x = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths])
        logits = model(x)
        y = torch.tensor(labels)
        loss = torch.nn.functional.cross_entropy(logits, y).item()
        pred = logits.argmax(1)
    correct = int((pred == y).sum())
    result = {"accuracy": correct / len(labels), "loss": loss, "n": len(labels),
              "pred": pred.tolist()}
    with open(os.path.join(out, "torch.json"), "w") as f:
        json.dump(result, f)
    print("tv_eval: torchvision accuracy %.4f loss %.6f on %d images" %
          (result["accuracy"], loss, len(labels)))


if __name__ == "__main__":
    main()
