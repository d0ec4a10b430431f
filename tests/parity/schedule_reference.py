"""Prints torch.optim.lr_scheduler.OneCycleLR's learning rates, one per step.

usage: schedule_reference.py TOTAL_STEPS PCT_START DIV_FACTOR FINAL_DIV_FACTOR   (max_lr 1.0)
"""
import sys

import torch

total, pct, div, final_div = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=total, pct_start=pct,
                                            div_factor=div, final_div_factor=final_div,
                                            cycle_momentum=False, anneal_strategy="cos")
lrs = []
for _ in range(total):
    lrs.append(opt.param_groups[0]["lr"])
    opt.step()
    sched.step()
print(" ".join("%.12g" % v for v in lrs))
