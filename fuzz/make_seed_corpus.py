"""Writes a small seed corpus for every fuzz target (plain python3; python3-pil for images).

  python3 fuzz/make_seed_corpus.py OUT_ROOT     # OUT_ROOT/<target>/<seed>

Dataset seeds are valid miniature datasets in each format's exact layout, one file after
another in the order of the target's layout (fuzz/dataset_fuzz.cpp), cut by SEP. The .mat
files are MATLAB level-5 files written here byte by byte (fuzz/README.md).
"""
import gzip
import io
import json
import os
import struct
import sys

SEP = b"\n--finch-fuzz-file--\n"
SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
         "U8": 1, "BOOL": 1}


# --- safetensors -----------------------------------------------------------------------------

def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape)], laid out in order with bytes 0/1 (valid even for BOOL)."""
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape in tensors:
        count = 1
        for d in shape:
            count *= d
        raw = bytes(i % 2 for i in range(count * SIZES[dtype]))
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def safetensors_seeds():
    seeds = {"empty": safetensors([]),
             "metadata": safetensors([("w", "F32", [2, 2])], {"format": "pt", "epoch": "3"}),
             "scalar_and_empty": safetensors([("s", "F64", []), ("e", "F32", [0, 3])]),
             "all_dtypes": safetensors([(d.lower(), d, [2, 3]) for d in SIZES])}
    for dtype in SIZES:
        seeds["one_" + dtype] = safetensors([("t", dtype, [3])])
    return seeds


# --- MATLAB level-5 .mat ---------------------------------------------------------------------

MI_INT8, MI_INT32, MI_UINT16, MI_UINT32, MI_DOUBLE, MI_MATRIX = 1, 5, 4, 6, 9, 14
MX_CELL, MX_STRUCT, MX_CHAR, MX_DOUBLE = 1, 2, 4, 6


def element(kind, payload):
    return struct.pack("<II", kind, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def matrix(cls, dims, body, name=""):
    flags = element(MI_UINT32, struct.pack("<II", cls, 0))
    shape = element(MI_INT32, struct.pack("<%di" % len(dims), *dims))
    return element(MI_MATRIX, flags + shape + element(MI_INT8, name.encode()) + body)


def numbers(values, name="", column=False):
    dims = [len(values), 1] if column else [1, len(values)]
    return matrix(MX_DOUBLE, dims, element(MI_DOUBLE, struct.pack("<%dd" % len(values), *values)),
                  name)


def text(s, name=""):
    return matrix(MX_CHAR, [1, len(s)], element(MI_UINT16, s.encode("utf-16-le")), name)


def cell(items, name="", column=True):
    dims = [len(items), 1] if column else [1, len(items)]
    return matrix(MX_CELL, dims, b"".join(items), name)


def struct_array(fields, rows, name):
    """rows: one {field: matrix bytes} per element of a 1xN struct array."""
    width = 32
    names = b"".join(f.encode().ljust(width, b"\0") for f in fields)
    # The field name length is a "small data element" (type and size packed in one word).
    body = struct.pack("<HHi", MI_INT32, 4, width) + element(MI_INT8, names)
    for row in rows:
        body += b"".join(row[f] for f in fields)
    return matrix(MX_STRUCT, [1, len(rows)], body, name)


def mat_file(*variables):
    header = b"MATLAB 5.0 MAT-file, written by finch fuzz/make_seed_corpus.py".ljust(116, b" ")
    return header + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM" + b"".join(variables)


def car_annotations(rows, combined=False):
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class",
              "relative_im_path" if combined else "fname"] + (["test"] if combined else [])
    out = []
    for fname, x1, y1, x2, y2, cls, test in rows:
        row = {"bbox_x1": numbers([x1]), "bbox_y1": numbers([y1]), "bbox_x2": numbers([x2]),
               "bbox_y2": numbers([y2]), "class": numbers([cls]), "test": numbers([test])}
        row["relative_im_path" if combined else "fname"] = text(fname)
        out.append(row)
    return struct_array(fields, out, "annotations")


def dog_list(files, labels):
    return mat_file(cell([cell([text(f)]) for f in files], "file_list"),
                    cell([cell([text(f.rsplit(".", 1)[0])]) for f in files], "annotation_list"),
                    numbers(labels, "labels", column=True))


DOG_XML = ("<annotation><size><width>20</width><height>10</height></size><object><name>dog"
           "</name><bndbox><xmin>2</xmin><ymin>3</ymin><xmax>10</xmax><ymax>8</ymax></bndbox>"
           "</object></annotation>\n")


def mat_seeds():
    classes = cell([text("AM General Hummer SUV 2000"), text("Acura RL Sedan 2012")],
                   "class_names", column=False)
    train = car_annotations([("00001.jpg", 2, 3, 11, 7, 1, 0), ("00002.jpg", 1, 1, 20, 10, 2, 0)])
    test = car_annotations([("00001.jpg", 1, 1, 10, 10, 2, 0)])
    combined = car_annotations([("car_ims/000001.jpg", 1, 2, 11, 9, 1, 0),
                                ("car_ims/000002.jpg", 2, 2, 12, 9, 2, 1)], combined=True)
    chihuahua = "n02085620-Chihuahua/n02085620_1.jpg"
    spaniel = "n02085782-Japanese_spaniel/n02085782_1.jpg"
    return {
        "cars_fuzz": {"devkit": SEP.join([mat_file(classes), mat_file(train), mat_file(test), b""]),
                      "combined": SEP.join([b"", b"", b"", mat_file(combined, classes)])},
        "flowers102_fuzz": {"six": SEP.join([
            mat_file(numbers([3, 1, 2, 3, 2, 1], "labels")),
            mat_file(numbers([2, 5], "trnid"), numbers([1, 6], "valid"),
                     numbers([4, 3], "tstid"))])},
        "dogs_fuzz": {"two_breeds": SEP.join([dog_list([chihuahua, spaniel], [1, 2]),
                                              dog_list([spaniel], [2]), DOG_XML.encode()])},
    }


# --- text annotation formats -----------------------------------------------------------------

def lines(*rows):
    return ("\n".join(rows) + "\n").encode()


def cub_seed(nabirds=False):
    ids = ["1", "2", "3", "4"] if not nabirds else [
        "0000139e-21dc-4d0c-bfe1-4cae3c85c829", "0000d9fc-4e02-4c06-a0af-a55cfb16b12b",
        "00019306-9d83-4334-b255-a447742edce3", "0001afd4-99a1-4a67-b940-d419413e23b3"]
    files = [
        lines(*(f"{i} 001.Black_footed_Albatross/a_{n}.jpg" if n < 2 else
                f"{i} 002.Laysan_Albatross/b_{n}.jpg" for n, i in enumerate(ids))),
        lines(*(f"{i} {1 if n < 2 else 2}" for n, i in enumerate(ids))),
        lines(*(f"{i} {n % 2}" for n, i in enumerate(ids))),
        lines("1 001.Black_footed_Albatross", "2 002.Laysan_Albatross", "3 Albatrosses")
        if not nabirds else lines("0 Birds", "1 Black-footed Albatross", "2 Laysan Albatross",
                                  "3 Albatrosses"),
        lines(*(f"{i} 10.0 20.0 100.0 80.5" for i in ids)),
    ]
    if nabirds:
        files.append(lines("1 3", "2 3", "3 0"))
    files += [lines("1 back", "2 beak"), lines(*(f"{i} {p} 12.0 30.0 1" for i in ids for p in (1, 2)))]
    if not nabirds:
        files += [lines("1 has_bill_shape::curved", "2 has_bill_shape::dagger"),
                  lines(*(f"{i} {a} {(n + a) % 2} 3 2.5" for n, i in enumerate(ids) for a in (1, 2))),
                  lines("12.5 0.0", "0.0 87.1", "50.0 50.0")]
    return SEP.join(files)


def aircraft_seed():
    return SEP.join([
        lines("707-320", "A300B4"), lines("Boeing 707", "A300"), lines("Boeing", "Airbus"),
        lines("0034309", "0034958"), lines("0034309 707-320", "0034958 A300B4"),
        lines("0034309 Boeing 707", "0034958 A300"), lines("0034309 Boeing", "0034958 Airbus"),
        lines("0037511"), lines("0037511 A300B4"),
        lines("0034309 83 155 964 462", "0034958 8 124 1000 412", "0037511 1 1 50 40")]
        + [image_seeds()["rgb.jpg"]] * 3)  # its boxes are clipped to the image size


def inat_seed():
    def split(images):
        return json.dumps({
            "images": [{"id": i, "file_name": f"train/00000_Animalia/{i}.jpg", "width": 40,
                        "height": 30} for i in images],
            "annotations": [{"id": i, "image_id": i, "category_id": i % 2} for i in images],
            "categories": [{"id": 0, "name": "Felis catus", "supercategory": "Mammalia"},
                           {"id": 1, "name": "Canis lupus", "supercategory": "Mammalia"}]}).encode()
    return SEP.join([split([1, 2, 3]), split([4])])


def csv_seed():
    return SEP.join([
        lines("path,label,split,x,y,w,h", "a/1.jpg,red fox,train,1,2,30,40",
              "a/2.jpg,\"gray, fox\",train,0,0,10,10", "b/3.jpg,red fox,val,,,,"),
        lines("class,has_tail,is_grey", "red fox,1,0", "\"gray, fox\",1,1"),
        lines("class,parent", "red fox,Vulpes", "\"gray, fox\",Urocyon")])


# --- config, IDX, images ---------------------------------------------------------------------

def config_seeds():
    recipe = (b"model:\n  backbone: resnet50\n  method: wsdan\n  pretrained: imagenet\n"
              b"data:\n  format: cub\n  root: data/CUB_200_2011\n  image_size: 448\n"
              b"train:\n  epochs: 30\n  batch_size: 16\noptim:\n  name: sgd\n  lr: 0.01\n")
    return {"recipe": recipe,
            "recipe_with_sets": SEP.join([recipe, b"optim.lr=0.1", b"data.root=#weird",
                                          b"train.losses=[ce, center]", b"data.root=[a]"]),
            "flow": b"{data: {format: idx, root: /usr/share/fashion-mnist}, train: {epochs: 1}}"}


def idx_seeds():
    images = struct.pack(">I", 0x803) + struct.pack(">III", 2, 3, 3) + bytes(range(18))
    labels = struct.pack(">I", 0x801) + struct.pack(">I", 4) + bytes([0, 9, 3, 1])
    return {"images": images, "labels": labels, "images_gz": gzip.compress(images, mtime=0)}


def image_seeds():
    from PIL import Image  # python3-pil
    seeds = {}
    rgb = Image.new("RGB", (5, 3), (200, 30, 40))
    for name, mode, fmt, extra in [("rgb.png", "RGB", "PNG", {}), ("grey.png", "L", "PNG", {}),
                                   ("rgba.png", "RGBA", "PNG", {}), ("rgb.jpg", "RGB", "JPEG", {}),
                                   ("cmyk.jpg", "CMYK", "JPEG", {}), ("rgb.bmp", "RGB", "BMP", {}),
                                   ("rgb.tif", "RGB", "TIFF", {}), ("rgb.webp", "RGB", "WEBP", {}),
                                   ("i16.png", "I;16", "PNG", {}), ("p.gif", "P", "GIF", {})]:
        out = io.BytesIO()
        try:
            rgb.convert(mode).save(out, fmt, **extra)
        except (OSError, KeyError, ValueError):
            continue  # this PIL build lacks the codec
        seeds[name] = out.getvalue()
    return seeds


def tfjs_seeds():
    """model.json, NUL, the shard bytes (fuzz/tfjs_fuzz.cpp): every stored dtype."""
    def weight(name, shape, dtype="float32", quantization=None):
        w = {"name": name, "shape": shape, "dtype": dtype}
        if quantization:
            w["quantization"] = quantization
        return w
    weights = [weight("conv2d_1/kernel", [1, 1, 1, 2]), weight("step", [1], "int32"),
               weight("bn/gamma", [2], quantization={"dtype": "uint8", "min": -1, "scale": 0.1}),
               weight("bn/beta", [2], quantization={"dtype": "uint16", "min": 0, "scale": 0.5}),
               weight("dense/kernel", [2], quantization={"dtype": "float16"})]
    shard = (struct.pack("<2f", 1.0, -2.0) + struct.pack("<i", 3) + bytes([0, 255]) +
             struct.pack("<2H", 1, 65535) + struct.pack("<2e", 0.5, -1.5))
    model = {"format": "layers-model",
             "modelTopology": {"model_config": {"class_name": "Model", "config": {"layers": []}}},
             "weightsManifest": [{"paths": ["group1-shard1of1"], "weights": weights}]}
    return {"layers": json.dumps(model).encode() + b"\0" + shard}


def gguf_seeds():
    """A GGUF v3 file: one string and one u32 metadata value, an F32 and an F16 tensor."""
    def string(text):
        data = text.encode()
        return struct.pack("<Q", len(data)) + data
    kv = (string("general.architecture") + struct.pack("<I", 8) + string("mobilenet") +
          string("mobilenet.num_classes") + struct.pack("<I", 4) + struct.pack("<I", 3))
    # name, n_dims, dims (ggml order), type (0 F32, 1 F16), offset into the data section
    infos = (string("features.0.weight") + struct.pack("<I", 2) + struct.pack("<2Q", 2, 2) +
             struct.pack("<I", 0) + struct.pack("<Q", 0) +
             string("classifier.bias") + struct.pack("<I", 1) + struct.pack("<Q", 3) +
             struct.pack("<I", 1) + struct.pack("<Q", 32))
    header = b"GGUF" + struct.pack("<IQQ", 3, 2, 2) + kv + infos
    header += b"\0" * (-len(header) % 32)
    data = struct.pack("<4f", 1, 2, 3, 4) + b"\0" * 16 + struct.pack("<3e", 0.5, -1, 2)
    return {"v3": header + data}


def http_seeds():
    """One client connection each (first byte: 0 = open server, 1 = the one with a token)."""
    import base64
    import gzip
    png = image_seeds()["rgb.png"]
    jpg = image_seeds()["rgb.jpg"]

    def request(method, path, headers=(), body=b""):
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        for h in headers:
            head += h.encode() + b"\r\n"
        if body or method == "POST":
            head += f"Content-Length: {len(body)}\r\n".encode()
        return head + b"\r\n" + body

    boundary = "finchboundary"
    multipart = b""
    for i, data in enumerate([png, jpg]):
        multipart += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file{i}\"; "
                      f"filename=\"img{i}.png\"\r\nContent-Type: image/png\r\n\r\n").encode()
        multipart += data + b"\r\n"
    multipart += f"--{boundary}--\r\n".encode()
    b64 = base64.b64encode(png).decode()
    chunked = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n"
                       for part in [png[:20], png[20:]]) + b"0\r\n\r\n"
    return {
        "health": b"\0" + request("GET", "/healthz") + request("GET", "/metrics")
        + request("GET", "/v1/openapi.json"),
        "raw_png": b"\0" + request("POST", "/v1/predict?topk=3", ["Content-Type: image/png"], png),
        "multipart": b"\0" + request("POST", "/v1/embed", [
            f"Content-Type: multipart/form-data; boundary={boundary}"], multipart),
        "json_one": b"\0" + request("POST", "/v1/explain", ["Content-Type: application/json"],
                                    ('{"image": "%s"}' % b64).encode()),
        "json_list": b"\0" + request("POST", "/v1/search?k=2", ["Content-Type: application/json"],
                                     ('{"images": ["%s", "%s"]}' % (b64, "data:image/png;base64," + b64)).encode()),
        "chunked": b"\0" + request("POST", "/v1/predict", [
            "Content-Type: image/png", "Transfer-Encoding: chunked"], b"")[:-len("Content-Length: 0\r\n\r\n")]
        + b"\r\n" + chunked,
        "gzip_body": b"\0" + request("POST", "/v1/predict", [
            "Content-Type: image/png", "Content-Encoding: gzip"], gzip.compress(png, mtime=0)),
        "token": b"\1" + request("POST", "/v1/predict", [
            "Authorization: Bearer fuzz-token", "Content-Type: image/png"], png)
        + request("GET", "/healthz") + request("GET", "/v1/predict", ["Authorization: Bearer wrong"]),
    }


def main(out_root):
    corpora = {"safetensors_fuzz": safetensors_seeds(), "config_fuzz": config_seeds(),
               "idx_fuzz": idx_seeds(), "image_fuzz": image_seeds(),
               "base64_fuzz": {"padded": b"aGVsbG8=", "bare": b"aGVsbG8",
                               "data_url": b"data:image/png;base64,iVBORw0KGgo=\n"},
               "cub_fuzz": {"cub": cub_seed()}, "nabirds_fuzz": {"nabirds": cub_seed(True)},
               "aircraft_fuzz": {"aircraft": aircraft_seed()}, "inat_fuzz": {"inat": inat_seed()},
               "csv_fuzz": {"csv": csv_seed()}, "tfjs_fuzz": tfjs_seeds(),
               "gguf_fuzz": gguf_seeds(), "http_fuzz": http_seeds()}
    corpora.update(mat_seeds())
    for target, seeds in corpora.items():
        folder = os.path.join(out_root, target)
        os.makedirs(folder, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
        print(f"{target}: {len(seeds)} seeds in {folder}")


if __name__ == "__main__":
    main(sys.argv[1])
