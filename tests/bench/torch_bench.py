"""icn's networks in PyTorch, trained like icn-classify (SGD, momentum 0.9, random data): the
reference for `make bench`. Prints images per second.

usage: torch_bench.py ARCH STEPS THREADS BATCH H W C   (ARCH: mnist or resnetN)"""
import os
import sys
import time

import torch

nn = torch.nn


def mnist_net(in_c, h, w, classes):
    """The paper's MNIST net (lib/net.h): 5x5 stride-2 convolutions, LeakyReLU(0.2), linear."""
    layers, c = [], in_c
    for oc in [64, 128, 256, 512]:
        layers += [nn.Conv2d(c, oc, 5, 2, 2), nn.LeakyReLU(0.2)]
        c, h, w = oc, (h - 1) // 2 + 1, (w - 1) // 2 + 1
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * h * w, classes))


class Block(nn.Module):
    """icn's pre-activation residual block (lib/layers.h): the projection shortcut, when the
    shape changes, starts from the pre-activated input."""

    def __init__(self, c, oc, stride):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c), nn.BatchNorm2d(oc)
        self.conv1 = nn.Conv2d(c, oc, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(oc, oc, 3, 1, 1, bias=False)
        self.proj = nn.Conv2d(c, oc, 1, stride, bias=False) if stride != 1 or c != oc else None

    def forward(self, x):
        a = torch.relu(self.bn1(x))
        out = self.conv2(torch.relu(self.bn2(self.conv1(a))))
        return out + (self.proj(a) if self.proj is not None else x)


def resnet(depth, in_c, classes):
    """resnetN (lib/net.h): conv3x3(16), 3 stages of (N-2)/6 blocks, BN-ReLU, pooling, linear."""
    n, c = (depth - 2) // 6, 16
    layers = [nn.Conv2d(in_c, 16, 3, 1, 1, bias=False)]
    for stage in range(3):
        for b in range(n):
            layers.append(Block(c, 16 << stage, 2 if stage > 0 and b == 0 else 1))
            c = 16 << stage
    layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes)]
    return nn.Sequential(*layers)


def build(arch, c, h, w, classes):
    return mnist_net(c, h, w, classes) if arch == "mnist" else resnet(int(arch[6:]), c, classes)


def main():
    arch = sys.argv[1]
    steps, threads, batch, h, w, c = (int(a) for a in sys.argv[2:8])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    net = build(arch, c, h, w, 10)
    opt = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9)
    n = max(2000, batch)
    x = torch.rand(n, c, h, w) * 2 - 1
    y = torch.randint(0, 10, (n,))
    warm = 5
    for i in range(steps + warm):
        if i == warm:
            t0 = time.time()
        idx = torch.randint(0, n, (batch,))
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
        loss.backward()
        opt.step()
    print("%.1f" % (steps * batch / (time.time() - t0)))


if __name__ == "__main__":
    main()
