"""The ONNX Runtime peer's model: torchvision's ResNet-50 (random weights, seed 0, 1000
classes) exported with python3-torch's torch.onnx.export, opset 13, batch and image size
dynamic. Generated, never committed.

usage: /usr/bin/python3 export_resnet50_onnx.py OUT.onnx
"""
import sys

import torch
import torchvision


def main():
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval()
    torch.onnx.export(model, torch.randn(1, 3, 224, 224), sys.argv[1], input_names=["images"],
                      output_names=["logits"], opset_version=13,
                      dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"},
                                    "logits": {0: "batch"}})


if __name__ == "__main__":
    main()
