"""TransFG's part selection and contrastive loss, written from the paper (He et al., AAAI 2022)
and the authors' code (TACJu/TransFG, models/modeling.py: Part_Attention, Encoder, con_loss)
on torchvision's ViT-B/16, for tests/unit/models/transfg_test.cpp.

usage: transfg_reference.py model STRIDE OUT.safetensors
       transfg_reference.py contrastive OUT.safetensors

model: torchvision's vit_b_16 for 64 px images (a 4 x 4 grid), 10 classes, random weights
perturbed as in transformer_reference.py, run with 16 px patches every STRIDE px (16: torchvision's
own model; 12: TransFG's overlapping patches, a 5 x 5 grid, conv_proj's stride changed and the
position embedding resized by torchvision's interpolate_embeddings). Every layer's attention
probabilities are taken from its self_attention (need_weights=True, average_attn_weights=False)
on what ln_1 gives it. The part selection then follows the authors' code: the product
a_{L-1} ... a_1 of layers 1..L-1 (the first layer's map first, each later one multiplied on the
left), per head the largest entry of the class token's row over the patch tokens, those tokens
of the hidden states entering the last layer after the class token, through the last layer and
encoder.ln; heads.head classifies the class token (finch's head.fc).
Tensors: "model.<torchvision name>" (the 64 px model's, as finch loads them), "input"
[2, 3, 64, 64], "selected" [2, 12] (token indices, 1 = the first patch), "rollout" [2, 12, grid^2]
(the class token's row over the patches), "embedding" [2, 768], "logits" [2, 10], and the plain
ViT path: "vit_logits" (heads.head on the full model's class token) and "stage.3" (the patch
tokens after encoder.ln as a [2, 768, grid, grid] map).

contrastive: "embeddings" [12, 16], "labels" [12], "loss" (the paper's 1/B^2 normalisation),
"code_loss" (con_loss of the authors' code: the same sum / B) and "grad" (d loss / d embeddings).
"""
import sys

import torch
import torchvision
from torchvision.models.vision_transformer import interpolate_embeddings

from finch_ref import save_safetensors
from transformer_reference import perturb, tokens_to_map

SIZE, PATCH, CLASSES = 64, 16, 10


def part_selection(attention):
    """The authors' Part_Attention: [B, heads] token indices (1-based over the patches) and the
    class token's row of a_{L-1} ... a_1 over the patches [B, heads, T-1]."""
    last_map = attention[0]
    for a in attention[1:]:
        last_map = torch.matmul(a, last_map)
    row = last_map[:, :, 0, 1:]
    top2 = row.topk(2, dim=2).values
    gap = (top2[..., 0] - top2[..., 1]) / top2[..., 0]
    return row.argmax(2) + 1, row, gap.min().item()


def run_model(stride, out_path):
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None, image_size=SIZE, num_classes=CLASSES)
    perturb(model)
    model.eval()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, SIZE, SIZE)
    grid = (SIZE - PATCH) // stride + 1
    # interpolate_embeddings makes a (image_size // patch) grid: ask for `grid` patches.
    pos = interpolate_embeddings(grid * PATCH, PATCH, model.state_dict())["encoder.pos_embedding"]
    model.conv_proj.stride = (stride, stride)
    layers = list(model.encoder.layers)
    with torch.no_grad():
        t = model.conv_proj(x)
        assert t.shape[2:] == (grid, grid), t.shape
        t = t.flatten(2).transpose(1, 2)
        h = torch.cat([model.class_token.expand(t.shape[0], -1, -1), t], dim=1) + pos
        attention = []
        for layer in layers[:-1]:
            y = layer.ln_1(h)
            _, a = layer.self_attention(y, y, y, need_weights=True, average_attn_weights=False)
            attention.append(a)
            h = layer(h)
        full = model.encoder.ln(layers[-1](h))
        vit_logits = model.heads(full[:, 0])

        if stride == PATCH:  # the hand-run layers are torchvision's forward
            torch.testing.assert_close(vit_logits, model(x), rtol=1e-5, atol=1e-5)

        selected, rollout, gap = part_selection(attention)
        parts = torch.stack([h[i, selected[i]] for i in range(h.shape[0])])
        part_tokens = model.encoder.ln(layers[-1](torch.cat([h[:, :1], parts], dim=1)))
        embedding = part_tokens[:, 0]
        logits = model.heads.head(embedding)
    tensors = {"model." + k: v for k, v in weights.items()}
    tensors.update({
        "input": x,
        "selected": selected.to(torch.int64).contiguous(),
        "rollout": rollout.contiguous(),
        "embedding": embedding.contiguous(),
        "logits": logits,
        "vit_logits": vit_logits,
        "stage.3": tokens_to_map(full, grid, grid).contiguous(),
    })
    save_safetensors(tensors, out_path)
    print("ok stride", stride, "grid", grid, "selected", selected.tolist(),
          "smallest relative top-2 gap %.2e" % gap)


def contrastive(z, labels, margin=0.4):
    """con_loss of the authors' code, with the sum divided by B^2 (the paper) instead of B."""
    b = z.shape[0]
    f = torch.nn.functional.normalize(z)
    cos = f.mm(f.t())
    same = torch.stack([labels == labels[i] for i in range(b)]).float()
    neg = cos - margin
    neg = torch.where(neg < 0, torch.zeros_like(neg), neg)
    total = ((1 - cos) * same).sum() + (neg * (1 - same)).sum()
    return total / (b * b), total / b


def run_contrastive(out_path):
    torch.manual_seed(1)
    # Correlated embeddings, so that some different-class pairs exceed the margin.
    z = (torch.randn(12, 16) + 1.5 * torch.randn(1, 16)).requires_grad_(True)
    labels = torch.tensor([0, 1, 2, 0, 1, 3, 0, 2, 4, 4, 1, 5], dtype=torch.int64)
    loss, code_loss = contrastive(z, labels)
    loss.backward()
    save_safetensors({"embeddings": z.detach(), "labels": labels, "loss": loss.detach().reshape(1),
                      "code_loss": code_loss.detach().reshape(1), "grad": z.grad}, out_path)
    print("ok contrastive loss %.6f (code's %.6f)" % (loss.item(), code_loss.item()))


def main():
    if sys.argv[1] == "model":
        run_model(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "contrastive":
        run_contrastive(sys.argv[2])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
