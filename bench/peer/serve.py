#!/usr/bin/python3
"""What users build instead of `finch serve`: FastAPI + uvicorn + PyTorch (Debian's
python3-fastapi, python3-uvicorn, python3-multipart, python3-torch, python3-torchvision).

  serve.py --weights W.safetensors --port P [--threads 2]

POST /v1/predict with the raw image body (as finch serve accepts it): PIL decode, torchvision's
ImageNet eval transforms (Resize 256, CenterCrop 224, ToTensor, Normalize), torchvision
ResNet-50 with the same weights in eval + inference mode, channels_last, softmax top-5 JSON.
One request, one forward (no batching): the usual hand-written service.
"""
import argparse
import io
import os
import sys

import torch
import torchvision
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "parity"))
from finch_ref import load_safetensors  # noqa: E402


def build(weights, threads):
    torch.set_num_threads(threads)
    model = torchvision.models.resnet50()
    tensors, _ = load_safetensors(weights)
    model.load_state_dict(tensors)
    model.eval()
    model = model.to(memory_format=torch.channels_last)
    transform = torchvision.transforms.Compose([
        torchvision.transforms.Resize(256), torchvision.transforms.CenterCrop(224),
        torchvision.transforms.ToTensor(),
        torchvision.transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    app = FastAPI()

    @app.post("/v1/predict")
    async def predict(request: Request):
        body = await request.body()
        try:
            image = Image.open(io.BytesIO(body)).convert("RGB")
        except Exception as e:  # noqa: BLE001
            return JSONResponse({"error": str(e)}, status_code=422)
        x = transform(image).unsqueeze(0).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            probs = torch.softmax(model(x), 1)[0]
        values, indices = probs.topk(5)
        return {"topk": [{"index": int(i), "prob": float(v)} for v, i in zip(values, indices)]}

    return app


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    uvicorn.run(build(args.weights, args.threads), host="127.0.0.1", port=args.port,
                log_level="warning", workers=1)


if __name__ == "__main__":
    main()
