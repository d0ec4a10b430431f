"""INT8 post-training static quantization of a torchvision ResNet with PyTorch's FX tools.

usage: int8_reference.py ARCH SIZE OUT.safetensors
The backbone (conv1 .. layer4) is prepared with prepare_fx, calibrated on "calibration"
images and converted with convert_fx, on the oneDNN engine, with the observers finch's int8
path implements: activations quint8 per-tensor affine from min/max (MinMaxObserver), weights
qint8 per-output-channel symmetric (PerChannelMinMaxObserver). BatchNorms (perturbed, so they
are not the identity) are folded by FX's conv-bn-relu fusion.
Tensors: "model.<torchvision name>", "calibration" [4, 3, S, S], "input" [2, 3, S, S], and
for each stage K in 1..4 "int8.stageK" (the quantized map, dequantized), "int8.scaleK" (its
quantum) and "fp32.stageK" (the float backbone's).
"""
import copy
import sys

import torch
import torchvision
from torch.ao.quantization import (MinMaxObserver, PerChannelMinMaxObserver, QConfig,
                                   QConfigMapping)
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

from finch_ref import perturb_batchnorm, save_safetensors


def fold_batchnorm_as_finch_does(model):
    """Folds every BatchNorm into its conv as finch does (per-channel factors in float64, rounded
    to float32, times the float32 weights), and leaves an identity
    BatchNorm (eps 0) that FX's float32 conv-bn fusion folds exactly: the two int8 paths then
    start from the same float32 weights, and what is compared is the quantization alone."""
    pairs = [(model.conv1, model.bn1)]
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in layer:
            pairs += [(block.conv1, block.bn1), (block.conv2, block.bn2)]
            if hasattr(block, "conv3"):
                pairs.append((block.conv3, block.bn3))
            if block.downsample is not None:
                pairs.append((block.downsample[0], block.downsample[1]))
    with torch.no_grad():
        for conv, bn in pairs:
            scale = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()
            conv.weight.copy_(conv.weight * scale.float().reshape(-1, 1, 1, 1))
            bn.bias.copy_((-bn.running_mean.double() * scale + bn.bias.double()).float())
            bn.weight.fill_(1)
            bn.running_mean.zero_()
            bn.running_var.fill_(1)
            bn.eps = 0.0


def main():
    arch, size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None)
    perturb_batchnorm(model)
    model.eval()
    layers = [model.conv1, model.bn1, model.relu, model.maxpool,
              model.layer1, model.layer2, model.layer3, model.layer4]
    calibration = torch.randn(4, 3, size, size)
    inputs = torch.randn(2, 3, size, size)

    torch.backends.quantized.engine = "onednn"
    qconfig = QConfig(
        activation=MinMaxObserver.with_args(dtype=torch.quint8, qscheme=torch.per_tensor_affine),
        weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8,
                                                  qscheme=torch.per_channel_symmetric))
    tensors = {"model." + k: v.clone() for k, v in model.state_dict().items()}
    fold_batchnorm_as_finch_does(model)
    tensors.update({"calibration": calibration, "input": inputs})
    # One quantized prefix per stage (the observers of a prefix see what the whole
    # backbone's would), so that a divergence can be located.
    for stage in range(1, 5):
        backbone = copy.deepcopy(torch.nn.Sequential(*layers[:4 + stage])).eval()
        prepared = prepare_fx(backbone, QConfigMapping().set_global(qconfig), (calibration,))
        with torch.no_grad():
            fp32 = backbone(inputs)
            prepared(calibration)
            quantized = convert_fx(prepared)
            # The graph dequantizes its output; its last requantization gives the quantum.
            scale = None
            for node in quantized.graph.nodes:
                if node.op == "call_function" and node.target == torch.ops.quantized.add_relu:
                    scale = getattr(quantized, node.args[2].target)
            int8 = quantized(inputs)
        tensors.update({f"int8.stage{stage}": int8, f"fp32.stage{stage}": fp32,
                        f"int8.scale{stage}": torch.tensor([float(scale)], dtype=torch.float32)})
        print(f"{arch} stage {stage}: |int8 - fp32| max {float((int8 - fp32).abs().max()):.4f}, "
              f"fp32 max {float(fp32.abs().max()):.4f}, last quantum {float(scale):.5f}")
    save_safetensors(tensors, out)


if __name__ == "__main__":
    main()
