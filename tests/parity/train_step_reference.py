"""One SGD training step of torchvision's resnet18 in PyTorch, for finch's trainer parity.

usage: train_step_reference.py OUT.safetensors [bf16-autocast]
With bf16-autocast the forward pass runs under torch.autocast("cpu", torch.bfloat16) and the
loss on the fp32 logits, as finch's train.precision: bf16-mixed does.
Stores the initial weights ("model.<name>"), the batch ("input", "labels"), the loss, the
gradients of the first and last layers ("grad.conv1.weight", "grad.fc.weight") and the
weights after one step of SGD(lr=0.1, momentum=0.9, weight_decay=1e-4) ("after.<name>").
"""
import sys

import torch
import torchvision

from finch_ref import save_safetensors

torch.manual_seed(1)
model = torchvision.models.resnet18(weights=None, num_classes=10)
model.train()
x = torch.randn(4, 3, 64, 64)
labels = torch.tensor([1, 7, 3, 1])
tensors = {"model." + k: v.clone() for k, v in model.state_dict().items()}
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
autocast = len(sys.argv) > 2 and sys.argv[2] == "bf16-autocast"
with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
    logits = model(x)
assert logits.dtype == (torch.bfloat16 if autocast else torch.float32)
loss = torch.nn.functional.cross_entropy(logits.float(), labels)
optimizer.zero_grad()
loss.backward()
tensors["grad.conv1.weight"] = model.conv1.weight.grad.clone()
tensors["grad.fc.weight"] = model.fc.weight.grad.clone()
optimizer.step()
for name in ("conv1.weight", "fc.weight", "bn1.running_mean", "layer4.1.bn2.running_var"):
    tensors["after." + name] = model.state_dict()[name].clone()
tensors["input"] = x
tensors["labels"] = labels
tensors["loss"] = loss.detach().reshape(1)
save_safetensors(tensors, sys.argv[1])
print("ok loss", loss.item())
