"""icn's networks in PyTorch, the reference for `make bench`, which times this whole process as it
times icn's (start to exit, /usr/bin/time, interpreter and import included).

usage: torch_bench.py train ARCH STEPS THREADS BATCH H W C   (ARCH: mnist or resnetN)
         trained like icn-classify: SGD, momentum 0.9, random data
       torch_bench.py synth ARCH STEPS THREADS BATCH H W C
         synthesis like icn-synthesize --stop 3 --max-steps STEPS: a batch of N(0, 0.3^2) inputs
         ascends one class's logit by Adam (lr 0.02, beta1 0.5) on the input, clamped to [-1, 1],
         the net in inference mode and its parameters frozen"""
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


def train(net, steps, batch, h, w, c):
    opt = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9)
    n = max(2000, batch)
    x = torch.rand(n, c, h, w) * 2 - 1
    y = torch.randint(0, 10, (n,))
    for _ in range(steps):
        idx = torch.randint(0, n, (batch,))
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
        loss.backward()
        opt.step()


def synth(net, steps, batch, h, w, c, k=3):
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    x = (torch.randn(batch, c, h, w) * 0.3).clamp_(-1, 1).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.02, betas=(0.5, 0.999), eps=1e-8)
    for _ in range(steps):
        opt.zero_grad()
        (-net(x)[:, k].sum()).backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(-1, 1)


def main():
    mode, arch = sys.argv[1], sys.argv[2]
    steps, threads, batch, h, w, c = (int(a) for a in sys.argv[3:9])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    net = build(arch, c, h, w, 10)
    t0 = time.time()
    (train if mode == "train" else synth)(net, steps, batch, h, w, c)
    print("torch %s %s: %.2f s in the loop" % (mode, arch, time.time() - t0), file=sys.stderr)


if __name__ == "__main__":
    main()
