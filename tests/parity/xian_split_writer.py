"""Writes a zero-shot split in the layout of Xian et al.'s xlsa17 archive with scipy.io.savemat.

  xian_split_writer.py OUT_DIR CLASS[,CLASS...] UNSEEN[,UNSEEN...] [--overlap]
OUT_DIR/att_splits.mat: allclasses_names (Cx1 cell of char), att (A x C double: one-hot position
attributes, A = C), trainval_loc / test_seen_loc / test_unseen_loc (1-based image indices, Nx1).
OUT_DIR/res101.mat: labels (Nx1, 1-based into allclasses_names), as the archive ships them next
to att_splits.mat. Three images per class; --overlap also puts an unseen-class image into
trainval_loc (an invalid split).
"""
import os
import sys

import numpy as np
from scipy.io import savemat


def main():
    out, classes, unseen = sys.argv[1], sys.argv[2].split(","), set(sys.argv[3].split(","))
    os.makedirs(out, exist_ok=True)
    names = np.empty((len(classes), 1), dtype=object)
    for i, c in enumerate(classes):
        names[i, 0] = c
    labels = np.repeat(np.arange(1, len(classes) + 1), 3).reshape(-1, 1).astype(np.float64)
    trainval, test_seen, test_unseen = [], [], []
    for index, label in enumerate(labels[:, 0], start=1):
        if classes[int(label) - 1] in unseen:
            test_unseen.append(index)
        elif index % 3 == 0:
            test_seen.append(index)
        else:
            trainval.append(index)
    if "--overlap" in sys.argv:
        trainval.append(test_unseen[0])
    column = lambda v: np.array(v, dtype=np.float64).reshape(-1, 1)
    savemat(os.path.join(out, "att_splits.mat"), {
        "allclasses_names": names,
        "att": np.eye(len(classes)) + 0.25 * np.arange(len(classes)).reshape(-1, 1),
        "trainval_loc": column(trainval),
        "test_seen_loc": column(test_seen),
        "test_unseen_loc": column(test_unseen),
    })
    savemat(os.path.join(out, "res101.mat"), {"labels": labels})
    print("wrote", out)


if __name__ == "__main__":
    main()
