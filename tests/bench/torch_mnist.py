"""The paper's MNIST net in PyTorch, trained like icn-classify (SGD, momentum 0.9, batch 64):
the reference for `make bench`. Prints images per second."""
import sys, time, os
import torch

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 200
threads = int(sys.argv[2]) if len(sys.argv) > 2 else os.cpu_count()
torch.set_num_threads(threads)
torch.manual_seed(1)
layers = []
channels = [1, 64, 128, 256, 512]
for i in range(4):
    layers += [torch.nn.Conv2d(channels[i], channels[i + 1], 5, 2, 2), torch.nn.LeakyReLU(0.2)]
net = torch.nn.Sequential(*layers, torch.nn.Flatten(), torch.nn.Linear(2048, 10))
opt = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9)
x = torch.rand(2000, 1, 28, 28) * 2 - 1
y = torch.randint(0, 10, (2000,))
warm = 5
for i in range(steps + warm):
    if i == warm:
        t0 = time.time()
    idx = torch.randint(0, 2000, (64,))
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
    loss.backward()
    opt.step()
print("%.1f" % (steps * 64 / (time.time() - t0)))
