#!/usr/bin/env python3
"""flood.py HOST PORT N SECONDS: hold N stalled TCP connections to HOST:PORT (loopback only)
for SECONDS, opening a new one whenever the server closes one; never sends a byte (a CURVE
greeting that never comes). Prints "opened O closed C" at the end."""
import errno, select, socket, sys, time

host, port, n, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
assert host.startswith("127."), "loopback only"
live, opened, closed = {}, 0, 0
poll = select.poll()
end = time.time() + secs
while time.time() < end:
    while len(live) < n:
        s = socket.socket()
        s.setblocking(False)
        r = s.connect_ex((host, port))
        if r not in (0, errno.EINPROGRESS):
            s.close()
            break
        live[s.fileno()] = s
        poll.register(s, select.POLLIN | select.POLLHUP | select.POLLERR)
        opened += 1
    for fd, ev in poll.poll(200):
        s = live.get(fd)
        if s is None:
            continue
        try:  # the server's greeting is read and ignored; only an end or an error closes
            if ev & select.POLLIN and s.recv(4096):
                continue
        except BlockingIOError:
            continue
        except OSError:
            pass
        del live[fd]
        poll.unregister(fd)
        s.close()
        closed += 1
for s in live.values():
    s.close()
print("opened %d closed %d" % (opened, closed))
